"""Per-utterance prosody/spectral statistics: exactly ``AUDIO_DIM`` = 88 float32.

Lives in ``mlsan`` so training and the live app (``edge_app.audio.features`` re-exports it)
share one definition.

API::

    from mlsan.prosody import AUDIO_DIM, audio_features
    x = audio_features(segment.samples)     # (n,) float32 16 kHz -> (88,) float32, finite

Layout (fixed; the model team's config depends on it):

- ``[0:40]``  mean over frames of 40 log-mel band energies (25 ms window, 10 ms hop,
  0-8 kHz, natural log of power + 1e-6);
- ``[40:80]`` standard deviation over frames of the same bands;
- ``[80:88]`` prosody: frame energy in dB (mean, std, p90 - p10), pitch in semitones
  re 100 Hz over voiced frames (mean, std, p90 - p10, slope in semitones per second), voiced
  ratio (voiced frames / frames with energy). Pitch comes from the normalised autocorrelation
  (50-400 Hz) of 40 ms frames; a frame is voiced when its peak is >= 0.45 and its energy is
  within 40 dB of the loudest frame. Utterances with no voiced frame get 0 for pitch stats.

Pure numpy, no model, about 1 ms per second of audio; audio shorter than one frame is
zero-padded. The input's loudness is not normalised (loudness is part of the signal).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16_000

AUDIO_DIM = 88
N_MELS = 40
_WIN = 400  # 25 ms
_HOP = 160  # 10 ms
_NFFT = 512
_PITCH_WIN = 640  # 40 ms: two periods of 50 Hz
_FMIN, _FMAX = 50.0, 400.0


@lru_cache(maxsize=1)
def _mel_filterbank() -> np.ndarray:
    """(N_MELS, NFFT//2+1) triangular filters on the HTK mel scale."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, SAMPLE_RATE / 2, _NFFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    fb = np.zeros((N_MELS, len(freqs)), np.float64)
    for i in range(N_MELS):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0.0, None)
    return fb


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def _pct_range(v: np.ndarray) -> float:
    if len(v) < 2:
        return 0.0
    p10, p90 = np.percentile(v, [10, 90])
    return float(p90 - p10)


def audio_features(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, np.float64).reshape(-1)
    x = np.nan_to_num(x)
    out = np.zeros(AUDIO_DIM, np.float32)
    # Log-mel statistics.
    fr = _frames(x, _WIN, _HOP) * np.hanning(_WIN)[None]
    power = np.abs(np.fft.rfft(fr, n=_NFFT, axis=1)) ** 2  # (frames, 257)
    logmel = np.log(power @ _mel_filterbank().T + 1e-6)  # (frames, 40)
    out[0:40] = logmel.mean(axis=0)
    out[40:80] = logmel.std(axis=0)
    # Prosody.
    pf = _frames(x, _PITCH_WIN, _HOP)
    pf = pf - pf.mean(axis=1, keepdims=True)
    energy_db = 10 * np.log10(np.mean(pf**2, axis=1) + 1e-10)
    out[80] = energy_db.mean()
    out[81] = energy_db.std()
    out[82] = _pct_range(energy_db)
    loud = energy_db >= energy_db.max() - 40.0
    spec = np.fft.rfft(pf * np.hanning(_PITCH_WIN)[None], n=2 * _PITCH_WIN, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :_PITCH_WIN]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lag_lo = int(SAMPLE_RATE / _FMAX)
    lag_hi = int(SAMPLE_RATE / _FMIN)
    seg = ac[:, lag_lo : lag_hi + 1]
    k = np.argmax(seg, axis=1)
    peak = seg[np.arange(len(seg)), k]
    voiced = (peak >= 0.45) & loud & (energy_db > -60.0)
    if voiced.any():
        f0 = SAMPLE_RATE / (k[voiced] + lag_lo)
        st = 12.0 * np.log2(f0 / 100.0)
        out[83] = st.mean()
        out[84] = st.std()
        out[85] = _pct_range(st)
        t = np.nonzero(voiced)[0] * (_HOP / SAMPLE_RATE)
        if len(st) >= 2 and np.ptp(t) > 0:
            out[86] = np.polyfit(t, st, 1)[0]
    out[87] = float(voiced.sum()) / max(1, int(loud.sum()))
    return np.nan_to_num(out).astype(np.float32)

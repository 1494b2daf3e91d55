"""Kaldi-compatible log mel filterbank (80 bins), the input CAM++ was trained on, in numpy.

API::

    feats = kaldi_fbank(samples)      # (n,) float32 16 kHz in [-1, 1] -> (frames, 80) float32
    feats = feats - feats.mean(0)     # CAM++ wants per-segment mean normalisation (CMN)

Same settings and arithmetic as ``torchaudio.compliance.kaldi.fbank(num_mel_bins=80,
dither=0)`` and kaldifeat with 3D-Speaker's options: 25 ms frames every 10 ms, ``snip_edges``
(``1 + (n - 400) // 160`` frames), DC removal, pre-emphasis 0.97, Povey window, 512-point power
spectrum, 80 triangular mel bins from 20 Hz to 8 kHz (mel = 1127 ln(1 + f / 700)), natural log
floored at float32 epsilon. Checked numerically against senko's C++ extractor
(tests/test_audio_speaker.py, fixture ``fbank_reference.npz``).
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
FRAME_LEN = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
N_FFT = 512
N_MELS = 80
LOW_HZ = 20.0
PREEMPH = 0.97
_EPS = float(np.finfo(np.float32).eps)


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(400,) Povey window and (257, 80) mel weights (Nyquist column zero, as Kaldi)."""
    n = np.arange(FRAME_LEN, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_LEN - 1))) ** 0.85
    half = N_FFT // 2
    fft_mel = _mel(np.arange(half) * SAMPLE_RATE / N_FFT)  # (256,)
    lo, hi = _mel(LOW_HZ), _mel(SAMPLE_RATE / 2)
    delta = (hi - lo) / (N_MELS + 1)
    left = lo + np.arange(N_MELS) * delta
    centre, right = left + delta, left + 2 * delta
    up = (fft_mel[None, :] - left[:, None]) / (centre - left)[:, None]
    down = (right[:, None] - fft_mel[None, :]) / (right - centre)[:, None]
    weights = np.maximum(0.0, np.minimum(up, down))  # (80, 256)
    weights = np.concatenate([weights, np.zeros((N_MELS, 1))], axis=1)  # (80, 257)
    return window.astype(np.float32), weights.T.astype(np.float32)


def n_frames(n_samples: int) -> int:
    return 0 if n_samples < FRAME_LEN else 1 + (n_samples - FRAME_LEN) // FRAME_SHIFT


def kaldi_fbank(samples: np.ndarray) -> np.ndarray:
    """(n,) float 16 kHz -> (frames, 80) float32 log mel energies (no mean normalisation)."""
    x = np.asarray(samples, np.float32).reshape(-1)
    m = n_frames(len(x))
    if m == 0:
        return np.zeros((0, N_MELS), np.float32)
    idx = np.arange(FRAME_LEN)[None, :] + FRAME_SHIFT * np.arange(m)[:, None]
    frames = x[idx].astype(np.float64)  # (m, 400)
    frames -= frames.mean(axis=1, keepdims=True)
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)  # first sample: itself
    frames = frames - PREEMPH * prev
    window, weights = _tables()
    frames *= window
    spec = np.fft.rfft(frames, n=N_FFT, axis=1)  # (m, 257)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    mel = power @ weights  # (m, 80)
    return np.log(np.maximum(mel, _EPS)).astype(np.float32)

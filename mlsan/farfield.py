"""Simulated far-field recording of close-talk speech: room reverberation, stationary noise,
a lower level and a duller microphone.

Why: RAVDESS is studio speech one foot from the microphone; the live app hears meetings from
a laptop or a room microphone metres away. A voice-emotion model trained on studio clips only
reads the muffled, reverberant, quieter far-field voice as low-arousal (calm, sadness). Training
also on degraded copies of the same clips (same labels, same actors) teaches the voice path
that the room is not the emotion. Nothing here is learned or downloaded; every parameter is
drawn from ``rng`` so a clip's degraded copy is reproducible (``clip_rng``).

``degrade(samples, rng) -> samples``: float32 mono 16 kHz in, same length out.
"""

from __future__ import annotations

import hashlib

import numpy as np

SAMPLE_RATE = 16_000
# Ranges (uniform) chosen to span small offices to meeting rooms; not tuned on any test set.
RT60_S = (0.25, 0.9)  # reverberation time
DRR_DB = (-3.0, 9.0)  # direct-to-reverberant energy ratio
SNR_DB = (5.0, 25.0)  # speech to stationary noise
GAIN_DB = (-30.0, -8.0)  # peak level in dBFS (the AMI excerpts here peak at -24..-5 dBFS)
LOWPASS_HZ = (3_000.0, 7_500.0)  # microphone / distance high-frequency loss


def clip_rng(name: str, salt: str = "farfield") -> np.random.Generator:
    """A generator fixed by the clip's name (same degraded copy every time)."""
    digest = hashlib.sha256(f"{salt}\x00{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def room_impulse(rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """Exponentially decaying noise tail (60 dB down at ``rt60``) after a unit direct path,
    scaled so direct / reverberant energy is ``drr_db``; float32 [n]."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # first reflections arrive after the direct sound
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-12))
    tail[0] = 1.0
    return tail.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (x / max(float(np.sqrt(np.mean(x**2))), 1e-12)).astype(np.float32)


def lowpass(samples: np.ndarray, cutoff_hz: float) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(4, cutoff_hz, btype="low", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, samples).astype(np.float32)


def degrade(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One far-field version of ``samples`` (float32 [n], 16 kHz): reverb, low-pass, noise at
    a random SNR (measured on the reverberant speech), random gain, clipped to [-1, 1]."""
    from scipy.signal import fftconvolve

    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size == 0:
        return x
    rir = room_impulse(rng, rng.uniform(*RT60_S), rng.uniform(*DRR_DB))
    wet = fftconvolve(x, rir)[: x.size].astype(np.float32)
    wet = lowpass(wet, rng.uniform(*LOWPASS_HZ))
    active = np.abs(wet) > 0.05 * (np.abs(wet).max() + 1e-12)  # speech frames set the SNR
    speech_rms = float(np.sqrt(np.mean(wet[active] ** 2))) if active.any() else 1e-4
    noise = coloured_noise(rng, x.size, rng.uniform(0.0, 2.0))
    wet = wet + noise * speech_rms * 10 ** (-rng.uniform(*SNR_DB) / 20)
    peak = float(np.abs(wet).max()) + 1e-12
    target = 10 ** (rng.uniform(*GAIN_DB) / 20)  # peak level (dBFS) after the gain
    return np.clip(wet * (target / peak), -1.0, 1.0).astype(np.float32)

"""Simulated far-field copies of studio speech (mlsan.farfield) and how joint training uses
them: reproducible per clip, same length, really degraded, and a clip's enrollment never
draws on itself or its own studio / far-field twin."""

from __future__ import annotations

import numpy as np
import pytest

from mlsan.farfield import SAMPLE_RATE, clip_rng, degrade, room_impulse


def _speech_like(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)  # syllable-like bursts
    tone = np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 2200 * t)
    return (0.2 * envelope * tone + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


def test_degrade_is_reproducible_per_clip_and_keeps_length():
    x = _speech_like()
    a = degrade(x, clip_rng("03-01-05-02-01-01-21.flac"))
    b = degrade(x, clip_rng("03-01-05-02-01-01-21.flac"))
    c = degrade(x, clip_rng("03-01-05-02-01-02-21.flac"))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    assert not np.allclose(a, c)  # another clip, another room
    assert degrade(np.zeros(0, np.float32), clip_rng("x")).size == 0


def test_degraded_copy_is_reverberant_noisy_and_duller():
    x = _speech_like()
    y = degrade(x, clip_rng("clip"))
    silent = np.sin(2 * np.pi * 3 * np.arange(x.size) / SAMPLE_RATE) <= 0
    gap = silent & (np.arange(x.size) > SAMPLE_RATE // 2)
    scale = np.abs(y).max() / np.abs(x).max()
    # gaps between bursts fill with reverberation tail and noise
    assert np.sqrt(np.mean(y[gap] ** 2)) > 5 * scale * np.sqrt(np.mean(x[gap] ** 2))
    # the 2.2 kHz partial loses energy against the 180 Hz one more often than not
    spec_x, spec_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    f = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    hi = (f > 2100) & (f < 2300)
    lo = (f > 150) & (f < 210)
    ratio_x = spec_x[hi].sum() / spec_x[lo].sum()
    ratio_y = spec_y[hi].sum() / spec_y[lo].sum()
    assert ratio_y < ratio_x


def test_room_impulse_decays_60_db_by_rt60():
    h = room_impulse(np.random.default_rng(0), rt60=0.5, drr_db=0.0)
    assert h[0] == 1.0 and h.size == SAMPLE_RATE // 2
    tail = h[1:]
    assert np.sum(tail**2) == pytest.approx(1.0, rel=1e-3)  # DRR 0 dB: equal energies
    early, late = tail[:800], tail[-800:]
    assert 10 * np.log10(np.mean(early**2) / np.mean(late**2)) > 45


def test_enrollment_never_uses_the_clip_or_its_twin():
    from mlsan.joint import VoiceSet, enroll_rows

    n = 6  # one actor, 6 studio clips + their 6 far-field copies; feature = clip index
    x = np.concatenate([np.arange(n), 100 + np.arange(n)]).astype(np.float32)[:, None]
    voice = VoiceSet(
        x=x,
        text=np.zeros((2 * n, 1), np.float32),
        labels=np.zeros(2 * n, int),
        ravdess_labels=np.zeros(2 * n, int),
        actors=np.ones(2 * n, int),
        condition=np.repeat([0, 1], n),
    )

    class Cfg:
        speaker_dim, audio_dim, text_dim = 1 + 1 + 1 + 1, 1, 1

    rng = np.random.default_rng(0)
    for i in range(2 * n):
        row = enroll_rows(voice, np.array([i]), np.array([n - 1]), rng, Cfg)[0]
        others = [j for j in range(2 * n) if voice.condition[j] == voice.condition[i] and j != i]
        assert row[0] == pytest.approx(x[others, 0].mean())  # all n-1 others, same condition
    assert list(voice.where((1,), 1)) == list(range(n, 2 * n))
    assert list(voice.where((1,), None)) == list(range(2 * n))

"""The input recorder the live run calls (`mlsan-live --record-inputs FILE`, checked end to end in
test_live_replay.py), and recordings on disk."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from calibration import InputRecorder, Recording, RecordingError
from calibration.recording import split_batch
from engines.types import ModelSignature

SIG = ModelSignature(text_dim=6, audio_dim=4, visual_dim=3, speaker_dim=5, label_names=("a", "b"))


def _batch(b, t, value, pad=0):
    x = SIG.zeros(b, t)
    arrays = {n: np.full_like(a, value) for n, a in x.as_dict().items()}
    arrays["context_mask"] = np.ones((b, t), np.float32)
    if pad:
        arrays["context_mask"][:, t - pad :] = 0.0
    return type(x)(**arrays)


def test_split_batch_trims_padding_and_copies():
    x = _batch(2, 6, 1.0, pad=2)
    parts = split_batch(x)
    assert [p.context for p in parts] == [4, 4] and all(p.batch == 1 for p in parts)
    x.text[...] = 7.0  # caller reuses its buffer
    assert parts[0].text.max() == 1.0


def test_recorder_is_bounded_and_samples_the_whole_session():
    rec = InputRecorder(capacity=50, seed=0)
    for i in range(1000):
        rec.record(_batch(1, 3, float(i)))
    assert len(rec) == 50 and rec.seen == 1000
    kept = sorted(float(s.text[0, 0, 0]) for s in rec.snapshot().samples)
    # Reservoir sampling: kept samples span the session, not just its last 50 calls.
    assert kept[0] < 300 and kept[-1] > 700


def test_recorder_from_many_threads(tmp_path):
    rec = InputRecorder(capacity=10_000)

    def worker(k):
        for i in range(200):
            rec.record(_batch(1, 2, float(k * 1000 + i)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(rec) == rec.seen == 800
    values = {float(s.text[0, 0, 0]) for s in rec.snapshot().samples}
    assert len(values) == 800


def test_recording_round_trip(tmp_path):
    rec = InputRecorder(capacity=8)
    rec.record(_batch(2, 5, 0.5, pad=1))
    rec.record(_batch(1, 3, -2.0))
    path = rec.save(tmp_path / "rec.npz")
    loaded = Recording.load(path)
    original = rec.snapshot()
    assert loaded.source == "app" and len(loaded) == 3 and loaded.utterances() == 11
    assert loaded.digest() == original.digest()
    for a, b in zip(loaded.samples, original.samples, strict=True):
        for name, arr in a.as_dict().items():
            np.testing.assert_array_equal(arr, b.as_dict()[name])


def test_recording_errors_are_one_line(tmp_path):
    with pytest.raises(RecordingError, match="nothing recorded"):
        InputRecorder().save(tmp_path / "empty.npz")
    with pytest.raises(RecordingError, match="does not exist; fix"):
        Recording.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(RecordingError, match="not a readable recording"):
        Recording.load(tmp_path / "junk.npz")

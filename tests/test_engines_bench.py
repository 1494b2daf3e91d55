"""Benchmark input builders (the timing itself lives in bench/, never in tests)."""

from __future__ import annotations

import numpy as np
import pytest

from engines.bench import context_window, pad_batches
from engines.types import ModelSignature

SIG = ModelSignature(text_dim=4, audio_dim=2, visual_dim=2, speaker_dim=3, label_names=("a", "b"))


def _dialogue(t, value):
    x = SIG.zeros(1, t)
    arrays = {n: np.full_like(a, value) for n, a in x.as_dict().items()}
    arrays["context_mask"] = np.ones_like(x.context_mask)
    return type(x)(**arrays)


def test_context_window_joins_real_dialogues_in_order():
    samples = [_dialogue(3, 1.0), _dialogue(4, 2.0), _dialogue(5, 3.0)]
    x = context_window(samples, 8)
    assert x.batch == 1 and x.context == 8
    assert list(x.text[0, :, 0]) == [1, 1, 1, 2, 2, 2, 2, 3]
    with pytest.raises(ValueError, match="not enough"):
        context_window(samples, 13)


def test_pad_batches_pads_at_the_end_with_masks():
    samples = [_dialogue(t, float(t)) for t in (2, 5, 3)]
    (batch,) = pad_batches(samples, 16)
    assert batch.text.shape == (3, 5, 4)
    assert batch.context_mask.sum(1).tolist() == [2, 5, 3]
    assert batch.text[0, 2:].max() == 0 and batch.text[1].min() == 5
    assert [b.batch for b in pad_batches(samples, 2)] == [2, 1]

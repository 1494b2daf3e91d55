"""Training on small synthetic dialogues: context is learned, ablations train, losses behave."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsan.config import MLSANConfig
from mlsan.data import DialogueArrays
from mlsan.evaluate import compute_metrics, predict, save_confusion_png
from mlsan.losses import class_weights, classification_loss, speaker_consistency_loss
from mlsan.train import train_model

TINY = dict(
    text_dim=8,
    audio_dim=4,
    visual_dim=4,
    speaker_dim=9,
    hidden=32,
    speaker_hidden=8,
    context_heads=2,
    dropout=0.0,
    input_dropout=0.0,
    lr=1e-2,
    batch_dialogues=8,
    max_epochs=20,
    patience=3,
    label_names=("a", "b", "c"),
)


def _dialogues(n, seed, rule):
    """Utterances carry a one-hot 'cue' in text dims 0..2; ``rule`` maps cues to labels."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = 6
        cues = rng.integers(0, 3, t)
        text = rng.normal(0, 0.1, (t, 8)).astype(np.float32)
        text[np.arange(t), cues] += 1.0
        labels = rule(cues)
        mask = np.zeros((t, 3), np.float32)
        mask[:, 0] = 1
        out.append(
            DialogueArrays(
                f"s/{i}",
                text,
                np.zeros((t, 4), np.float32),
                np.zeros((t, 4), np.float32),
                mask,
                tuple("xy"[j % 2] for j in range(t)),
                labels.astype(np.int64),
            )
        )
    return out


def _previous_cue(cues):  # label = the cue of the utterance before (first: its own cue)
    return np.concatenate([cues[:1], cues[:-1]])


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_context_model_learns_a_rule_that_needs_the_previous_utterance(mode):
    train, dev = _dialogues(96, 0, _previous_cue), _dialogues(24, 1, _previous_cue)
    cfg = MLSANConfig(**TINY, context_mode=mode)
    res = train_model(cfg, train, dev)
    assert res.best_dev_weighted_f1 > 90
    no_ctx = train_model(cfg.with_(use_context=False, max_epochs=8), train, dev)
    assert no_ctx.best_dev_weighted_f1 < 70  # without context the rule is not learnable


@pytest.mark.parametrize("switch", ["use_film", "use_gate", "use_reg", "use_speaker"])
def test_each_ablation_trains(switch):
    own = lambda c: c  # noqa: E731
    train, dev = _dialogues(32, 2, own), _dialogues(8, 3, own)
    cfg = MLSANConfig(**(TINY | {"max_epochs": 4, "patience": 4, switch: False}))
    res = train_model(cfg, train, dev)
    assert res.best_dev_weighted_f1 > 50 and 1 <= res.best_epoch <= res.epochs_run <= 4


def test_id_speaker_source_trains_and_maps_unknown_speakers():
    own = lambda c: c  # noqa: E731
    train, dev = _dialogues(32, 4, own), _dialogues(8, 5, own)
    cfg = MLSANConfig(**(TINY | dict(speaker_source="id", speaker_dim=6, max_epochs=3)))
    res = train_model(cfg, train, dev)
    assert res.config.num_speaker_ids == 3 and res.speaker_ids == {"x": 1, "y": 2}
    y, p, gate = predict(res.model, dev, res.config, {})  # every speaker unknown -> id 0
    assert len(y) == len(p) == 48 and np.allclose(gate[:, 0], 1.0)


def test_losses():
    labels = np.array([0, 0, 0, 0, 1, 2, -1])
    w = class_weights(labels, 3, 1.0)
    assert w[1] > w[0] and w[2] == pytest.approx(float(w[1]))
    logits = torch.tensor([[4.0, 0, 0], [0, 4.0, 0]])
    y = torch.tensor([0, 1])
    for loss in ("ce", "balanced", "focal"):
        cfg = MLSANConfig(loss=loss, label_names=("a", "b", "c"))
        good = classification_loss(logits, y, cfg, w)
        bad = classification_loss(logits, torch.tensor([1, 0]), cfg, w)
        assert 0 < good < bad
    z = torch.tensor([[1.0, 0], [1.0, 0.1], [0, 1.0], [0.1, 1.0]])
    spk, lab = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1])
    consistent = speaker_consistency_loss(z, spk, lab, 0.2)
    swapped = speaker_consistency_loss(z[[0, 2, 1, 3]], spk, lab, 0.2)
    assert consistent < swapped
    assert speaker_consistency_loss(z, torch.arange(4), lab, 0.2) == 0  # no positives


def test_metrics_and_confusion_png(tmp_path):
    m = compute_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), ("a", "b", "c"))
    assert m["accuracy"] == 75.0 and m["per_class_f1"]["c"] == 100.0
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    png = save_confusion_png(m["confusion_matrix"], ("a", "b", "c"), tmp_path / "cm.png", "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Speaker history (stateful == vectorised), config JSON, checkpoints and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsan.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from mlsan.config import ConfigError, MLSANConfig
from mlsan.errors import CheckpointError, UserFacingError
from mlsan.model import build_model
from mlsan.speaker import SpeakerHistory, history_representations, voice_representation

SMALL = dict(
    text_dim=12,
    audio_dim=8,
    visual_dim=6,
    speaker_dim=13,
    hidden=16,
    speaker_hidden=8,
    context_heads=2,
)


def test_history_stateful_equals_vectorised_and_excludes_current_utterance():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(7, 4)).astype(np.float32)
    keys = ["a", "b", "a", "a", "c", "b", "a"]
    rows = history_representations(feats, keys)
    hist = SpeakerHistory(4)
    for t, key in enumerate(keys):
        np.testing.assert_allclose(hist.represent(key), rows[t], rtol=1e-6)
        hist.update(key, feats[t])
    assert np.all(rows[0] == 0) and np.all(rows[1] == 0)  # first turns: nothing known yet
    np.testing.assert_allclose(rows[3, :4], feats[[0, 2]].mean(0), rtol=1e-6)
    assert rows[3, 4] == pytest.approx(np.log1p(2))
    assert hist.count("a") == 4 and hist.represent("never-seen").sum() == 0


def test_history_decay_weights_recent_utterances_more():
    hist = SpeakerHistory(1, decay=0.5)
    hist.update("a", np.array([0.0]))
    hist.update("a", np.array([1.0]))
    assert hist.represent("a")[0] == pytest.approx(1.0 / 1.5)
    with pytest.raises(ValueError):
        hist.update("a", np.zeros(2))


def test_voice_representation_normalises():
    v = voice_representation(np.full(256, 3.0))
    assert np.linalg.norm(v) == pytest.approx(1.0)
    assert voice_representation(None).sum() == 0


def test_config_json_round_trip_and_validation(tmp_path):
    cfg = MLSANConfig(context_mode="bidirectional", use_film_text=True, hidden=64)
    assert MLSANConfig.from_json(cfg.to_json()) == cfg
    cfg.save(tmp_path / "c.json")
    assert MLSANConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match="--context"):
        MLSANConfig(context_mode="sideways")
    with pytest.raises(ConfigError, match="unknown"):
        MLSANConfig.from_dict({"nonsense": 1})
    assert isinstance(ConfigError("x"), UserFacingError)


@pytest.mark.parametrize("source", ["history", "id"])
def test_checkpoint_round_trip(tmp_path, source):
    cfg = MLSANConfig(**SMALL, speaker_source=source, num_speaker_ids=3 if source == "id" else 0)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = tmp_path / "m.pt"
    digest = save_checkpoint(path, model, cfg, {"seed": 3, "metrics": {"weighted_f1": 1.0}})
    assert (tmp_path / "m.pt.sha256").read_text().split()[0] == digest
    loaded = load_checkpoint(path)
    assert isinstance(loaded, LoadedCheckpoint)
    assert loaded.config == cfg and loaded.label_names == cfg.label_names
    assert loaded.trained_modalities == ("text",) and loaded.meta["seed"] == 3
    assert loaded.feature_dims == {"text": 12, "audio": 8, "visual": 6, "speaker": 13}
    b, t = 1, 3
    args = [torch.randn(b, t, 12), torch.randn(b, t, 8), torch.randn(b, t, 6), torch.ones(b, t, 3)]
    speaker = torch.tensor([[0, 1, 2]]) if source == "id" else torch.randn(b, t, 13)
    args += [speaker, torch.ones(b, t)]
    torch.testing.assert_close(model(*args)[0], loaded.model(*args)[0])


def test_checkpoint_errors_are_one_line_with_a_fix(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*fix"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable ML-SAN checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an ML-SAN checkpoint"):
        load_checkpoint(other)
    cfg = MLSANConfig(**SMALL)
    good = tmp_path / "good.pt"
    save_checkpoint(good, build_model(cfg), cfg)
    data = bytearray(good.read_bytes())
    data[-20] ^= 0xFF
    good.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sidecar") as info:
        load_checkpoint(good)
    assert "\n" not in str(info.value)


def test_identity_codes_tell_speakers_apart_without_a_table():
    from mlsan.speaker import identity_code

    a, a2, b = (
        identity_code("Ross", 32, "d1"),
        identity_code("Ross", 32, "d1"),
        identity_code("Rachel", 32, "d1"),
    )
    np.testing.assert_array_equal(a, a2)
    assert a @ a == pytest.approx(1.0, abs=1e-5) and abs(a @ b) < 0.7
    assert not np.allclose(a, identity_code("Ross", 32, "d2"))  # per dialogue/session
    feats = np.ones((3, 2), np.float32)
    rows = history_representations(feats, ["x", "y", "x"], identity_dim=4, salt="s")
    hist = SpeakerHistory(2, identity_dim=4, salt="s")
    assert rows.shape == (3, 7) and hist.dim == 7
    np.testing.assert_allclose(rows[0], hist.represent("x"))
    np.testing.assert_array_equal(rows[0, 3:], rows[2, 3:])

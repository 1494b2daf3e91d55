"""Real model, real data: the sentence encoder, the shipped checkpoint on a slice of MELD test,
the mlsan-eval CLI, and the live (one utterance at a time) path on a real dialogue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlsan.checkpoint import load_checkpoint
from mlsan.registry import default_registry, file_sha256
from mlsan.speaker import SpeakerHistory

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "mlsan" / "checkpoints" / "mlsan_meld.pt"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder():
    from mlsan.features import TextEncoder

    try:
        path = default_registry().resolve("text").path
    except Exception as exc:  # noqa: BLE001 - skip with the registry's own message
        pytest.skip(str(exc))
    return TextEncoder(kind="minilm-rich", model_path=path)


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} not trained yet (python -m mlsan.ablate --ship ...)")
    return load_checkpoint(SHIPPED)


def test_text_encoder_on_real_sentences(encoder):
    texts = ["Oh my God, he's lost it. He's totally lost it.", "What?", "I am so happy for you!"]
    feats = encoder.encode(texts)
    assert feats.shape == (3, 768) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats[:, :384], axis=1), 1.0, rtol=1e-5)
    st = encoder._st.encode(texts, convert_to_numpy=True)  # the library's own sentence embedding
    np.testing.assert_allclose(feats[:, :384], st, atol=1e-5)
    assert feats[0] @ feats[1] < feats[0] @ encoder.encode(["He's lost it, totally."])[0]


MULTIMODAL = SHIPPED.parent / "mlsan_multimodal.pt"


def test_registry_default_is_the_multimodal_checkpoint_with_its_licences():
    if not MULTIMODAL.is_file():
        pytest.skip(f"{MULTIMODAL} not trained yet (mlsan-ablate --ravdess ... --ship)")
    found = default_registry().resolve("mlsan", verify=True)
    assert found.path.resolve() == MULTIMODAL.resolve()
    digest = (MULTIMODAL.parent / "mlsan_multimodal.pt.sha256").read_text().split()[0]
    assert digest == file_sha256(MULTIMODAL)
    meta = json.loads(MULTIMODAL.with_suffix(".json").read_text())
    assert "CC BY-NC-SA 4.0" in meta["licence"] and "GPL-3.0" in meta["licence"]
    assert {"data", "protocol", "seed", "test_metrics", "command"} <= set(meta)
    loaded = load_checkpoint(MULTIMODAL)
    assert {"text", "audio"} <= set(loaded.trained_modalities)
    assert loaded.config.speaker_source == "enroll" and "calm" in loaded.label_names
    assert MULTIMODAL.stat().st_size < 40 * 2**20


def test_shipped_checkpoint_is_what_the_registry_finds(shipped):
    """The text-only checkpoint stays shipped beside the multimodal default."""
    assert (SHIPPED.parent / "mlsan_meld.pt.sha256").read_text().split()[0] == file_sha256(SHIPPED)
    meta = json.loads((SHIPPED.parent / "mlsan_meld.json").read_text())
    assert {"data", "protocol", "seed", "test_metrics"} <= set(meta)
    assert shipped.trained_modalities == ("text",)
    assert shipped.config.context_mode == "causal"
    assert SHIPPED.stat().st_size < 8 * 2**20


def test_mlsan_eval_cli_on_a_slice_of_meld_test(shared_data, shipped, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlsan.evaluate",
            "--data",
            str(shared_data / "meld"),
            "--split",
            "test",
            "--limit-dialogues",
            "40",
            "--json",
            "--cache-dir",
            str(tmp_path),
            "--confusion",
            str(tmp_path / "cm.png"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["mode"] == "causal" and result["dialogues"] == 40
    assert result["n"] > 300 and set(result["per_class_f1"]) == set(shipped.label_names)
    # A real, trained model: far above the majority class (neutral ~48% of test) in F1 terms.
    assert result["weighted_f1"] > 50 and result["accuracy"] > 55
    assert result["mean_gate"]["audio"] == 0 and result["mean_gate"]["text"] == 1
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert list(tmp_path.glob("meld-test-first40-*.npz"))  # features went to the given cache


def test_mlsan_eval_reports_a_bad_checkpoint_in_one_line(tmp_path, shared_data):
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlsan.evaluate",
            "--checkpoint",
            str(bad),
            "--data",
            str(shared_data / "meld"),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("mlsan-eval: error:") and out.stderr.count("\n") == 1


def test_live_path_one_utterance_at_a_time_matches_the_batch(
    shared_data, shipped, encoder, tmp_path
):
    """The live app: SpeakerHistory + growing causal context == the training-time batch."""
    from mlsan.data import load_meld, make_batch

    dialogue = load_meld(
        shared_data / "meld", "test", shipped.config, encoder, cache_dir=tmp_path, limit_dialogues=1
    )[0]
    batch = make_batch([dialogue], shipped.config)
    with torch.inference_mode():
        full_logits, full_gate = shipped.model(*batch.model_inputs())
    live = encoder.encode([])  # empty call works too
    assert live.shape == (0, 768)
    history = SpeakerHistory(shipped.config.text_dim)
    rows = []
    for t, speaker in enumerate(dialogue.speakers):
        rows.append(history.represent(speaker))
        history.update(speaker, dialogue.text[t])
        n = t + 1
        args = (
            torch.from_numpy(dialogue.text[None, :n]),
            torch.zeros(1, n, 88),
            torch.zeros(1, n, 112),
            torch.tensor([1.0, 0, 0]).expand(1, n, 3),
            torch.from_numpy(np.stack(rows)[None]),
            torch.ones(1, n),
        )
        with torch.inference_mode():
            logits, gate = shipped.model(*args)
        torch.testing.assert_close(logits[0, -1], full_logits[0, t], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gate[0, -1], full_gate[0, t])

"""ML-SAN network: shapes, gate semantics, causality, padding, ablation switches, id wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsan.config import MLSANConfig
from mlsan.model import MLSAN, MLSANWithSpeakerIds, build_model

SMALL = dict(
    text_dim=12,
    audio_dim=8,
    visual_dim=6,
    speaker_dim=5,
    hidden=16,
    speaker_hidden=8,
    context_heads=2,
    dropout=0.0,
    input_dropout=0.0,
)


def _inputs(b=2, t=6, cfg=None, seed=0):
    cfg = cfg or MLSANConfig(**SMALL)
    g = torch.Generator().manual_seed(seed)
    return dict(
        text=torch.randn(b, t, cfg.text_dim, generator=g),
        audio=torch.randn(b, t, cfg.audio_dim, generator=g),
        visual=torch.randn(b, t, cfg.visual_dim, generator=g),
        modality_mask=torch.ones(b, t, 3),
        speaker=torch.randn(b, t, cfg.speaker_dim, generator=g),
        context_mask=torch.ones(b, t),
    )


def _model(**changes):
    torch.manual_seed(0)
    cfg = MLSANConfig(**(SMALL | changes))
    # FiLM starts as the identity; perturb it so tests exercise a non-trivial calibration.
    model = MLSAN(cfg).eval()
    with torch.no_grad():
        for film in model.film.values():
            film.proj.weight.normal_(0, 0.3)
    return model


def test_shapes_and_gate_sums_to_one():
    model = _model()
    logits, gate = model(**_inputs())
    assert logits.shape == (2, 6, 7)
    assert gate.shape == (2, 6, 3)
    torch.testing.assert_close(gate.sum(-1), torch.ones(2, 6))


def test_missing_modality_gets_zero_trust_and_its_values_do_not_matter():
    model = _model()
    x = _inputs()
    x["modality_mask"][0, :, 1] = 0  # audio missing in dialogue 0
    x["modality_mask"][1, 2] = 0  # nothing present at one utterance
    logits, gate = model(**x)
    assert torch.all(gate[0, :, 1] == 0)
    assert torch.all(gate[1, 2] == 0)
    x2 = {k: v.clone() for k, v in x.items()}
    x2["audio"][0] = 100.0  # garbage in a masked modality changes nothing
    logits2, gate2 = model(**x2)
    torch.testing.assert_close(logits[0], logits2[0])
    torch.testing.assert_close(gate, gate2)


@pytest.mark.parametrize("field", ["text", "audio", "visual", "speaker"])
def test_causal_mode_never_looks_ahead(field):
    model = _model(context_mode="causal", context_layers=2)
    x = _inputs()
    logits, gate = model(**x)
    for t in range(5):
        x2 = {k: v.clone() for k, v in x.items()}
        x2[field][:, t + 1 :] += torch.randn_like(x2[field][:, t + 1 :]) * 3
        logits2, gate2 = model(**x2)
        torch.testing.assert_close(logits[:, : t + 1], logits2[:, : t + 1])
        torch.testing.assert_close(gate[:, : t + 1], gate2[:, : t + 1])
        assert not torch.allclose(logits[:, t + 1 :], logits2[:, t + 1 :])


def test_bidirectional_mode_uses_future_context():
    model = _model(context_mode="bidirectional")
    x = _inputs()
    logits, _ = model(**x)
    x["text"][:, -1] += 5.0
    logits2, _ = model(**x)
    assert not torch.allclose(logits[:, 0], logits2[:, 0])


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_padding_does_not_change_real_outputs(mode):
    model = _model(context_mode=mode)
    x = _inputs(b=1, t=4)
    logits, gate = model(**x)
    padded = {}
    for k, v in x.items():
        pad = torch.zeros((1, 3) + tuple(v.shape[2:]))
        padded[k] = torch.cat([v, pad + (7.0 if k in ("text", "speaker") else 0.0)], dim=1)
    logits_p, gate_p = model(**padded)
    torch.testing.assert_close(logits, logits_p[:, :4])
    torch.testing.assert_close(gate, gate_p[:, :4])
    assert torch.isfinite(logits_p).all()


def test_film_is_identity_at_init_and_speaker_matters_after():
    torch.manual_seed(0)
    model = MLSAN(MLSANConfig(**SMALL)).eval()
    x = _inputs()
    s = model.speaker_proj(x["speaker"])
    torch.testing.assert_close(model.film["audio"](x["audio"], s), x["audio"])
    model = _model()
    logits, _ = model(**x)
    x["speaker"] = x["speaker"] + 1.0
    assert not torch.allclose(logits, model(**x)[0])


def test_no_speaker_ignores_the_speaker_tensor():
    model = _model(use_speaker=False)
    x = _inputs()
    logits, gate = model(**x)
    x["speaker"] = torch.randn_like(x["speaker"]) * 10
    logits2, gate2 = model(**x)
    torch.testing.assert_close(logits, logits2)
    torch.testing.assert_close(gate, gate2)


def test_no_gate_gives_uniform_trust_over_present_modalities():
    model = _model(use_gate=False)
    x = _inputs()
    x["modality_mask"][:, :, 2] = 0
    _, gate = model(**x)
    torch.testing.assert_close(gate[..., :2], torch.full((2, 6, 2), 0.5))
    assert torch.all(gate[..., 2] == 0)


def test_ablations_change_the_parameter_set():
    full = {n for n, _ in _model().named_parameters()}
    assert not any(n.startswith("film.") for n, _ in _model(use_film=False).named_parameters())
    assert any(n.startswith("film.text") for n, _ in _model(use_film_text=True).named_parameters())
    assert any(n.startswith("film.audio") for n in full)
    assert not any(
        n.startswith("context.") for n, _ in _model(use_context=False).named_parameters()
    )


def test_speaker_id_wrapper_maps_ids_through_a_table():
    cfg = MLSANConfig(**(SMALL | dict(speaker_source="id", num_speaker_ids=4)))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model, MLSANWithSpeakerIds)
    x = _inputs(cfg=cfg)
    ids = torch.tensor([[0, 1, 2, 3, 1, 0], [2, 2, 2, 2, 2, 2]])
    del x["speaker"]
    logits, gate = model(**x, speaker_ids=ids)
    x_core = _inputs(cfg=cfg)
    x_core["speaker"] = model.table(ids)
    logits2, _ = model.core(**x_core)
    torch.testing.assert_close(logits, logits2)


def test_forward_exports_to_onnx_with_dynamic_batch_and_context(tmp_path):
    """The contract the engines package relies on: tensor-only forward, dynamic B and T."""
    ort = pytest.importorskip("onnxruntime")
    model = _model()
    names = ["text", "audio", "visual", "modality_mask", "speaker", "context_mask"]
    batch, utts = torch.export.Dim("batch"), torch.export.Dim("utterances")
    dynamic = {n: {0: batch, 1: utts} for n in names}
    path = tmp_path / "mlsan.onnx"
    torch.onnx.export(
        model,
        tuple(_inputs(b=2, t=5).values()),
        str(path),
        input_names=names,
        output_names=["logits", "gate"],
        dynamic_shapes=dynamic,
        dynamo=True,
        verbose=False,
    )
    x = _inputs(b=3, t=9, seed=1)
    x["modality_mask"][:, :, 2] = 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, gate = session.run(None, {n: v.numpy() for n, v in x.items()})
    ref_logits, ref_gate = model(**x)
    np.testing.assert_allclose(logits, ref_logits.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(gate, ref_gate.detach().numpy(), atol=1e-6)


def test_ensemble_predicts_the_members_mean_probability_and_round_trips(tmp_path):
    from mlsan.checkpoint import load_checkpoint, save_checkpoint
    from mlsan.model import MLSANEnsemble

    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(MLSAN(MLSANConfig(**SMALL)).eval())
    ensemble = MLSANEnsemble.from_members(members)
    x = _inputs()
    with torch.no_grad():
        log_p, gate = ensemble(**x)
        outs = [m(**x) for m in members]
    mean_p = torch.stack([torch.softmax(lg, -1) for lg, _ in outs]).mean(0)
    torch.testing.assert_close(torch.softmax(log_p, -1), mean_p)
    torch.testing.assert_close(gate, torch.stack([g for _, g in outs]).mean(0))
    assert not torch.allclose(outs[0][0], outs[1][0])  # two different members
    path = tmp_path / "ens.pt"
    save_checkpoint(path, ensemble, ensemble.config)
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, MLSANEnsemble) and loaded.config.ensemble_members == 2
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**x)[0], log_p)

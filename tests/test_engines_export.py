"""ONNX export: names, dynamic axes, sidecar, and ONNX Runtime == PyTorch on real MELD utterances.

Tolerance: probabilities and gate weights within 1e-4 absolute (float32 graph, reordered sums).
The model is the shipped checkpoint when present, else the real ML-SAN class with random weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engines.export import export_checkpoint
from engines.model import load_model
from engines.sidecar import Sidecar
from engines.trt_compat import check_tensorrt_compat
from engines.types import INPUT_NAMES, OUTPUT_NAMES, EmotionInputs
from mlsan.checkpoint import save_checkpoint
from mlsan.config import MLSANConfig
from mlsan.model import MLSAN
from mlsan.registry import file_sha256

SHIPPED = Path(__file__).resolve().parent.parent / "mlsan" / "checkpoints" / "mlsan_meld.pt"
ATOL = 1e-4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    if SHIPPED.is_file():
        return SHIPPED
    torch.manual_seed(0)
    cfg = MLSANConfig(dropout=0.0, input_dropout=0.0)
    model = MLSAN(cfg).eval()
    with torch.no_grad():
        for film in model.film.values():
            film.proj.weight.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("ckpt") / "mlsan.pt"
    save_checkpoint(path, model, cfg)
    return path


@pytest.fixture(scope="module")
def meld_inputs(shared_data, ckpt):
    """Three real MELD test dialogues: MiniLM text features + speaker history, padded batch."""
    from mlsan.data import DialogueArrays, make_batch  # make_batch adds the speaker history
    from mlsan.features import TextEncoder
    from mlsan.meld import read_meld_split

    config = load_model(ckpt).config
    encoder = TextEncoder(kind=config.text_feature)
    dialogues = read_meld_split(shared_data / "meld", "test")[:3]
    arrays = []
    for d in dialogues:
        n = len(d.utterances)
        arrays.append(
            DialogueArrays(
                dialogue_id=str(d.dialogue_id),
                text=encoder.encode([u.text for u in d.utterances]),
                audio=np.zeros((n, config.audio_dim), np.float32),
                visual=np.zeros((n, config.visual_dim), np.float32),
                modality_mask=np.tile(np.array([1, 0, 0], np.float32), (n, 1)),
                speakers=d.speakers,
                labels=np.asarray(d.labels),
            )
        )
    batch = make_batch(arrays, config)
    return EmotionInputs(*(t.numpy() for t in batch.model_inputs()))


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_onnxruntime_matches_pytorch_on_real_meld(ckpt, meld_inputs, tmp_path, mode):
    result = export_checkpoint(ckpt, tmp_path / f"m-{mode}.onnx", mode=mode)
    module = load_model(ckpt, mode=mode).module
    session = _ort(result.onnx_path)
    x = meld_inputs
    assert x.batch == 3 and x.context > 5 and x.text.std() > 0.01  # real, varied features
    cases = [
        x,
        x.slice_batch(0, 1),
        EmotionInputs(**{n: getattr(x, n)[:1, :1] for n in INPUT_NAMES}),
    ]
    for case in cases:
        feeds = case.as_dict()
        probs, gate = session.run(list(OUTPUT_NAMES), feeds)
        with torch.no_grad():
            ref_p, ref_g = module(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
        real = case.context_mask > 0
        np.testing.assert_allclose(probs[real], ref_p.numpy()[real], atol=ATOL)
        np.testing.assert_allclose(gate[real], ref_g.numpy()[real], atol=ATOL)
        assert np.array_equal(probs[real].argmax(-1), ref_p.numpy()[real].argmax(-1))


def test_causal_export_ignores_the_future(ckpt, meld_inputs, tmp_path):
    session = _ort(export_checkpoint(ckpt, tmp_path / "c.onnx", mode="causal").onnx_path)
    one = meld_inputs.slice_batch(0, 1).as_dict()
    t = int(one["context_mask"].sum())
    full = session.run(["probs"], one)[0]
    prefix = session.run(["probs"], {n: a[:, : t - 2] for n, a in one.items()})[0]
    np.testing.assert_allclose(prefix[0], full[0, : t - 2], atol=ATOL)


def test_graph_names_dynamic_axes_and_sidecar(ckpt, tmp_path):
    result = export_checkpoint(ckpt, tmp_path / "m.onnx")
    model = onnx.load(str(result.onnx_path))
    assert tuple(i.name for i in model.graph.input) == INPUT_NAMES
    assert tuple(o.name for o in model.graph.output) == OUTPUT_NAMES
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert (dims[0].dim_param, dims[1].dim_param) == ("batch", "context"), value.name
    sidecar = Sidecar.read(result.onnx_path)
    loaded = load_model(ckpt)
    assert sidecar.opset == 17 and sidecar.precision == "fp32" and sidecar.kind == "onnx"
    assert sidecar.checkpoint_sha256 == file_sha256(ckpt) == loaded.checkpoint_sha256
    assert sidecar.artifact_sha256 == file_sha256(result.onnx_path)
    assert [t.name for t in sidecar.inputs] == list(INPUT_NAMES)
    assert sidecar.inputs[0].shape == ("batch", "context", loaded.config.text_dim)
    assert sidecar.inputs[-1].shape == ("batch", "context")
    assert sidecar.outputs[0].shape == ("batch", "context", len(loaded.signature.label_names))
    assert all(t.dtype == "float32" for t in sidecar.inputs + sidecar.outputs)
    assert sidecar.label_names == loaded.signature.label_names
    assert sidecar.producer["torch"] == torch.__version__


def test_exported_graph_is_one_tensorrt_parses(ckpt, tmp_path):
    report = check_tensorrt_compat(export_checkpoint(ckpt, tmp_path / "m.onnx").onnx_path)
    assert report.ok, report.problems
    assert report.opset == 17
    assert "LayerNormalization" in report.ops  # opset-17 LayerNorm: one TensorRT layer, fp16-safe


MULTIMODAL = SHIPPED.parent / "mlsan_multimodal.pt"


@pytest.fixture(scope="module")
def voice_inputs(shared_data):
    """Real RAVDESS voice features (actor 21) with enroll rows of K = 0, 1 and 8 other clips."""
    if not MULTIMODAL.is_file():
        pytest.skip(f"{MULTIMODAL} not found (train it with mlsan-train --ravdess ...)")
    from mlsan.joint import load_voice, voice_batch

    config = load_model(MULTIMODAL).config
    voice = load_voice(shared_data / "ravdess", config, log=lambda m: None, actors=(21,),
                       per_actor=10)  # fmt: skip
    idx = np.arange(3)
    rng = np.random.default_rng(0)
    batch = voice_batch(voice, idx, np.array([0, 1, 8]), rng, config)
    return EmotionInputs(*(t.numpy() for t in batch))


def test_multimodal_onnx_matches_pytorch_on_real_voice(voice_inputs, tmp_path):
    """The new inputs (1536-d voice, enroll speaker rows: count-gated direct shift, gate)."""
    result = export_checkpoint(MULTIMODAL, tmp_path / "mm.onnx")
    module = load_model(MULTIMODAL).module
    feeds = voice_inputs.as_dict()
    assert feeds["modality_mask"][:, 0, 1].all() and feeds["speaker"][1:, 0].std() > 0
    probs, gate = _ort(result.onnx_path).run(list(OUTPUT_NAMES), feeds)
    with torch.no_grad():
        ref_p, ref_g = module(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    np.testing.assert_allclose(probs, ref_p.numpy(), atol=ATOL)
    np.testing.assert_allclose(gate, ref_g.numpy(), atol=ATOL)
    assert gate[:, 0, 1].min() > 0.0  # voice is present and trusted
    # Enrollment changes the answer (K = 8 vs K = 0 on the same clip).
    same = {n: a[:1].copy() for n, a in feeds.items()}
    k8 = dict(same, speaker=feeds["speaker"][2:3])
    p0 = _ort(result.onnx_path).run(["probs"], same)[0]
    p8 = _ort(result.onnx_path).run(["probs"], k8)[0]
    assert np.abs(p0 - p8).max() > 1e-4

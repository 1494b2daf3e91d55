"""TensorRT: what a CPU can check (the parser rules the ONNX graph must meet, the clear error when
tensorrt is absent) and, on an NVIDIA GPU, building, caching and running real engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from engines.backend import _has_module
from engines.errors import BackendUnavailableError
from engines.trt_compat import check_tensorrt_compat


def _graph(nodes, inits=(), opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_compat_flags_what_tensorrt_would_reject():
    ok = _graph([helper.make_node("Relu", ["x"], ["y"], name="r")])
    assert check_tensorrt_compat(ok).ok
    assert (
        "opset 18"
        in check_tensorrt_compat(
            _graph([helper.make_node("Relu", ["x"], ["y"])], opset=18)
        ).problems[0]
    )
    nonzero = _graph([helper.make_node("NonZero", ["x"], ["y"], name="nz")])
    assert any("NonZero" in p for p in check_tensorrt_compat(nonzero).problems)
    axes_from_input = _graph([helper.make_node("Unsqueeze", ["x", "x"], ["y"], name="u")])
    assert any(
        "axes must be a constant" in p for p in check_tensorrt_compat(axes_from_input).problems
    )
    # Asymmetric / uint8 Q/DQ (fine for the ORT CPU model, not for TensorRT).
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    for zp_type, zp, expect in (
        (TensorProto.UINT8, 128, "needs int8"),
        (TensorProto.INT8, 3, "zero point must be 0"),
    ):
        zero = helper.make_tensor("z", zp_type, [], [zp])
        q = _graph(
            [
                helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq"),
            ],
            [scale, zero],
        )
        assert any(expect in p for p in check_tensorrt_compat(q).problems)
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    q = _graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq"),
        ],
        [scale, zero],
    )
    assert check_tensorrt_compat(q).ok


@pytest.mark.skipif(_has_module("tensorrt"), reason="tensorrt is installed here")
def test_tensorrt_absent_is_one_clear_error():
    from engines.trt_common import import_tensorrt

    with pytest.raises(BackendUnavailableError) as info:
        import_tensorrt()
    message = str(info.value)
    assert (
        "\n" not in message
        and "pip install 'mlsan-live[tensorrt]'" in message
        and "JetPack" in message
    )


def _gpu_checkpoint(tmp_path):
    from mlsan.checkpoint import save_checkpoint
    from mlsan.config import MLSANConfig
    from mlsan.model import MLSAN

    torch.manual_seed(0)
    cfg = MLSANConfig(dropout=0.0, input_dropout=0.0)
    path = tmp_path / "m.pt"
    save_checkpoint(path, MLSAN(cfg).eval(), cfg)
    return path


@pytest.mark.gpu
def test_tensorrt_fp16_engine_builds_caches_and_matches_onnxruntime(tmp_path):
    from engines import create_backend
    from engines.model import load_model
    from engines.trt_build import ContextProfile, ensure_engine

    ckpt = _gpu_checkpoint(tmp_path)
    cache = tmp_path / "cache"
    loaded = load_model(ckpt)
    profile = ContextProfile(1, 32, 128, 8)
    path, sidecar, plan = ensure_engine(loaded, "fp16", profile, cache)
    assert plan.action == "build" and path.is_file() and sidecar.engine_key["precision"] == "fp16"
    _, _, again = ensure_engine(loaded, "fp16", profile, cache)
    assert again.action == "reuse"
    trt_b = create_backend("tensorrt", ckpt, cache_dir=cache, precision="fp16")
    ort_b = create_backend("onnxruntime", ckpt, cache_dir=cache, providers=("cpu",))
    rng = np.random.default_rng(0)
    for t in (1, 8, 32, 128):
        x = trt_b.signature.zeros(1, t)
        x = type(x)(
            **{
                n: rng.standard_normal(a.shape).astype(np.float32)
                if n in ("text", "speaker")
                else np.ones_like(a)
                for n, a in x.as_dict().items()
            }
        )
        np.testing.assert_allclose(trt_b.infer(x).probs, ort_b.infer(x).probs, atol=2e-2)
    trt_b.close()


@pytest.mark.gpu
def test_tensorrt_engine_from_another_checkpoint_is_refused(tmp_path):
    from engines import EngineMismatchError, create_backend
    from engines.model import load_model
    from engines.trt_build import DEFAULT_PROFILE, ensure_engine

    ckpt = _gpu_checkpoint(tmp_path)
    path, _, _ = ensure_engine(load_model(ckpt), "fp16", DEFAULT_PROFILE, tmp_path / "cache")
    other = tmp_path / "other"
    other.mkdir()
    from mlsan.checkpoint import save_checkpoint
    from mlsan.config import MLSANConfig
    from mlsan.model import MLSAN

    torch.manual_seed(1)
    save_checkpoint(other / "o.pt", MLSAN(MLSANConfig()).eval(), MLSANConfig())
    with pytest.raises(EngineMismatchError, match="mlsan-engine export"):
        create_backend("tensorrt", other / "o.pt", engine_path=path)

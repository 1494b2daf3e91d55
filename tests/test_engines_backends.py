"""Backend protocol, factory and errors; PyTorch vs ONNX Runtime on the real ML-SAN class."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from engines import (
    BackendUnavailableError,
    BadInputError,
    EmotionBackend,
    EmotionInputs,
    EngineMismatchError,
    UnknownBackendError,
    choose_auto,
    create_backend,
)
from engines.backend import _has_module
from engines.cli import main as engine_main
from engines.sidecar import Sidecar
from mlsan.checkpoint import save_checkpoint
from mlsan.config import MLSANConfig
from mlsan.errors import UserFacingError
from mlsan.model import MLSAN

SMALL = dict(hidden=32, speaker_hidden=16, context_heads=2, dropout=0.0, input_dropout=0.0)


def _random_checkpoint(path, seed=0, **changes):
    """ML-SAN (the real class) with random weights; FiLM perturbed so it is not the identity."""
    torch.manual_seed(seed)
    cfg = MLSANConfig(**(SMALL | changes))
    model = MLSAN(cfg).eval()
    with torch.no_grad():
        for film in model.film.values():
            film.proj.weight.normal_(0, 0.2)
    save_checkpoint(path, model, cfg, {"note": "engines test"})
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _random_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-cache")


def _inputs(sig, b=2, t=5, seed=0, missing=True) -> EmotionInputs:
    rng = np.random.default_rng(seed)
    dims = sig.feature_dims()
    arrays = {n: rng.standard_normal((b, t, w)).astype(np.float32) for n, w in dims.items()}
    arrays["modality_mask"] = np.ones((b, t, 3), np.float32)
    if missing:
        arrays["modality_mask"][0, :, 1] = 0.0  # audio missing in dialogue 0
    ctx = np.ones((b, t), np.float32)
    ctx[-1, t - 2 :] = 0.0  # padding at the end of the last dialogue
    return EmotionInputs(**arrays, context_mask=ctx)


def test_torch_and_onnxruntime_agree_and_follow_the_protocol(ckpt, cache):
    torch_b = create_backend("torch", ckpt, cache_dir=cache)
    ort_b = create_backend("onnxruntime", ckpt, cache_dir=cache)
    for backend in (torch_b, ort_b):
        assert isinstance(backend, EmotionBackend)
        assert backend.signature.label_names == MLSANConfig().label_names
    assert ort_b.name == "onnxruntime:CPUExecutionProvider:fp32"
    for b, t in ((1, 1), (2, 5), (3, 40)):
        x = _inputs(torch_b.signature, b, t, seed=t)
        a, o = torch_b.infer(x), ort_b.infer(x)
        assert a.probs.shape == (b, t, 7) and a.gate.shape == (b, t, 3)
        assert a.label_names == o.label_names
        np.testing.assert_allclose(o.probs, a.probs, atol=1e-5)
        np.testing.assert_allclose(o.gate, a.gate, atol=1e-5)
        np.testing.assert_allclose(a.probs.sum(-1), 1.0, atol=1e-5)
    x = _inputs(torch_b.signature, 2, 5)
    assert np.all(ort_b.infer(x).gate[0, :, 1] == 0.0)  # missing audio: zero trust


def test_backend_can_be_called_from_a_worker_thread(ckpt, cache):
    backend = create_backend("onnxruntime", ckpt, cache_dir=cache)
    x = _inputs(backend.signature, 1, 8)
    expected = backend.infer(x).probs
    got = {}
    worker = threading.Thread(target=lambda: got.setdefault("p", backend.infer(x).probs))
    worker.start()
    worker.join(timeout=30)
    np.testing.assert_array_equal(got["p"], expected)


def test_bad_inputs_give_one_line(ckpt, cache):
    backend = create_backend("onnxruntime", ckpt, cache_dir=cache)
    x = _inputs(backend.signature, 1, 4)
    bad = dataclasses.replace(x, text=x.text[..., :10])
    with pytest.raises(BadInputError, match=r"input 'text' has shape \(1, 4, 10\).*fix"):
        backend.infer(bad)


def test_unknown_and_unavailable_backends(ckpt, cache):
    with pytest.raises(UnknownBackendError, match="use one of auto, torch, onnxruntime, tensorrt"):
        create_backend("openvino", ckpt)
    with pytest.raises(BackendUnavailableError, match="int8"):
        create_backend("torch", ckpt, precision="int8")
    with pytest.raises(BackendUnavailableError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
        create_backend("onnxruntime", ckpt, cache_dir=cache, providers=("cuda",))
    if not _has_module("tensorrt"):
        with pytest.raises(
            BackendUnavailableError, match=r"tensorrt.*pip install 'mlsan-live\[tensorrt\]'"
        ):
            create_backend("tensorrt", ckpt, cache_dir=cache)


def test_auto_picks_fastest_available_and_says_why(ckpt, cache, caplog):
    choice = choose_auto()
    assert choice.reason
    with caplog.at_level(logging.INFO, logger="engines.backend"):
        backend = create_backend("auto", ckpt, cache_dir=cache)
    assert f"backend auto -> {choice.name}" in caplog.text
    if not _has_module("tensorrt"):
        assert choice.name == "onnxruntime" and "tensorrt not installed" in choice.reason
        assert backend.name.startswith("onnxruntime:")


def test_onnx_from_another_checkpoint_is_refused(ckpt, cache, tmp_path):
    other = _random_checkpoint(tmp_path / "other.pt", seed=1)
    own = create_backend("onnxruntime", ckpt, cache_dir=cache)
    with pytest.raises(EngineMismatchError, match="re-export with 'mlsan-engine export'"):
        create_backend("onnxruntime", other, onnx_path=own.onnx_path)
    # No sidecar: refuse rather than guess.
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(own.onnx_path.read_bytes())
    with pytest.raises(EngineMismatchError, match="has no sidecar"):
        create_backend("onnxruntime", ckpt, onnx_path=bare)
    # A stale cache entry (sidecar says another checkpoint) is re-exported, not used.
    sidecar = Sidecar.read(own.onnx_path)
    dataclasses.replace(sidecar, checkpoint_sha256="0" * 64).write(own.onnx_path)
    again = create_backend("onnxruntime", ckpt, cache_dir=cache)
    assert Sidecar.read(again.onnx_path).checkpoint_sha256 == own.checkpoint_sha256


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(UserFacingError, match="does not exist"):
        create_backend("torch", tmp_path / "nope.pt")


def test_cli_errors_are_one_line_exit_2(ckpt, cache, capsys):
    code = engine_main(["-q", "export", "--checkpoint", str(ckpt.parent / "missing.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mlsan-engine: error:") and "\n" not in err
    if not _has_module("tensorrt"):
        code = engine_main(["-q", "build", "--checkpoint", str(ckpt), "--cache-dir", str(cache)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "pip install 'mlsan-live[tensorrt]'" in err and "\n" not in err


def test_cli_export_check_info(ckpt, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "engines.cli",
            "-q",
            "export",
            "--checkpoint",
            str(ckpt),
            "--cache-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text_dim = MLSANConfig().text_dim
    assert "opset 17" in out.stdout and f"['batch', 'context', {text_dim}]" in out.stdout
    assert (
        engine_main(["-q", "check", "--checkpoint", str(ckpt), "--cache-dir", str(tmp_path)]) == 0
    )
    assert engine_main(["-q", "info", "--cache-dir", str(tmp_path)]) == 0

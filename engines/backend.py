"""The one protocol every ML-SAN runtime implements, and the factory that picks one by name.

``create_backend("torch" | "onnxruntime" | "tensorrt" | "auto", checkpoint_path)`` returns an
:class:`EmotionBackend`. ``auto`` takes the fastest backend this machine can run (TensorRT on an
NVIDIA GPU, else ONNX Runtime, else PyTorch) and logs which and why. An explicitly named backend
that cannot run raises one :class:`~engines.errors.BackendUnavailableError` naming the fix; no
backend falls back to another silently.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from engines.errors import BackendUnavailableError, UnknownBackendError
from engines.types import EmotionInputs, EmotionOutputs, ModelSignature

log = logging.getLogger(__name__)

BACKEND_NAMES: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
# Fastest first: what ``auto`` tries (see docs in README "Engines").
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "onnxruntime", "torch")


@runtime_checkable
class EmotionBackend(Protocol):
    """Runs ML-SAN: ``infer(EmotionInputs) -> EmotionOutputs``. Thread-compatible, not shared:
    one caller thread at a time."""

    name: str  # "torch", "onnxruntime:CPUExecutionProvider", "tensorrt:fp16", ...
    signature: ModelSignature

    def infer(self, inputs: EmotionInputs) -> EmotionOutputs: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendOptions:
    """Choices shared by the backends; defaults suit the live app on CPU."""

    # fp32 | fp16 | int8; None = the backend's default (torch/onnxruntime fp32, tensorrt fp16)
    precision: str | None = None
    device: str = "auto"  # torch: cpu | cuda | auto
    onnx_path: Path | None = None  # use this ONNX file instead of exporting to the cache
    engine_path: Path | None = None  # tensorrt: use this engine instead of the cache
    cache_dir: Path | None = None  # where exported ONNX files and engines live
    providers: tuple[str, ...] = ()  # onnxruntime EPs, fastest first; () = all usable ones
    threads: int = 0  # intra-op threads (0 = library default)
    max_context: int = 128  # longest context T the app sends (TensorRT profile max)
    mode: str | None = None  # "causal" | "bidirectional" | None = as the checkpoint says


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` picked and why (also logged)."""

    name: str
    reason: str


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _tensorrt_gpu() -> tuple[bool, str]:
    """Whether tensorrt + cuda-python can run here, and what was found (or what is missing)."""
    if not _has_module("tensorrt"):
        return False, "tensorrt not installed"
    if not (_has_module("cuda.bindings") or _has_module("cuda")):
        return False, "cuda-python not installed"
    from engines.trt_common import current_gpu, import_tensorrt

    try:
        trt = import_tensorrt()
        gpu = current_gpu()
    except BackendUnavailableError as exc:
        return False, str(exc).split(";")[0]
    return True, f"TensorRT {trt.__version__} on {gpu.name} ({gpu.sm})"


def choose_auto() -> AutoChoice:
    """The fastest backend this machine can run, with the reason in words."""
    ok, found = _tensorrt_gpu()
    if ok:
        return AutoChoice("tensorrt", f"fastest: {found}")
    skipped = [f"tensorrt ({found})"]
    if _has_module("onnxruntime"):
        return AutoChoice("onnxruntime", f"onnxruntime is installed; skipped {', '.join(skipped)}")
    skipped.append("onnxruntime (not installed)")
    return AutoChoice("torch", f"the only one left; skipped {', '.join(skipped)}")


def create_backend(
    name: str,
    checkpoint_path: str | Path | None = None,
    options: BackendOptions | None = None,
    **overrides,
) -> EmotionBackend:
    """The backend called ``name`` for the checkpoint (None: the registry's "mlsan" model).

    ``overrides`` are BackendOptions fields (e.g. ``precision="int8"``). Raises
    UnknownBackendError, BackendUnavailableError, EngineMismatchError or CheckpointError.
    """
    from dataclasses import replace

    opts = replace(options or BackendOptions(), **overrides)
    key = name.strip().lower()
    if key == "auto":
        choice = choose_auto()
        log.info("backend auto -> %s: %s", choice.name, choice.reason)
        key = choice.name
    if key in ("ort", "onnx"):
        key = "onnxruntime"
    if key in ("trt",):
        key = "tensorrt"
    if key not in BACKEND_NAMES:
        raise UnknownBackendError(
            f"unknown backend {name!r}; fix: use one of auto, {', '.join(BACKEND_NAMES)}"
        )
    ckpt = resolve_checkpoint(checkpoint_path)
    if key == "torch":
        from engines.torch_backend import TorchBackend

        return TorchBackend(ckpt, opts)
    if key == "onnxruntime":
        if not _has_module("onnxruntime"):
            raise BackendUnavailableError(
                "backend 'onnxruntime' needs the onnxruntime package; fix: pip install onnxruntime "
                "(or onnxruntime-gpu), or choose --backend torch"
            )
        from engines.ort_backend import OrtBackend

        return OrtBackend(ckpt, opts)
    from engines.trt_backend import TensorRTBackend

    return TensorRTBackend(ckpt, opts)


def resolve_checkpoint(checkpoint_path: str | Path | None) -> Path:
    """An explicit checkpoint path, or the registry's "mlsan" model (one-line error if none)."""
    from mlsan.registry import default_registry

    overrides = {"mlsan": checkpoint_path} if checkpoint_path is not None else None
    return Path(default_registry(overrides).resolve("mlsan").path)

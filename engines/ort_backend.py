"""ONNX Runtime backend: CPU EP everywhere; CUDA and TensorRT EPs when onnxruntime-gpu has them.

Precision ``fp32`` runs the exported graph; ``int8`` runs the statically quantized graph from
``calibration.ort_int8`` (its cache, or ``--onnx PATH``). An explicitly requested provider that is
not available is an error naming the fix, never a silent switch to CPU.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from engines.backend import BackendOptions
from engines.errors import BackendUnavailableError, EngineMismatchError
from engines.export import cached_onnx
from engines.model import load_model
from engines.sidecar import Sidecar
from engines.types import OUTPUT_NAMES, EmotionInputs, EmotionOutputs, check_inputs

log = logging.getLogger(__name__)

# Fastest first; "all usable" means the intersection of this with ort.get_available_providers().
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def resolve_providers(requested: tuple[str, ...], available: list[str]) -> list[str]:
    """Provider names to pass to InferenceSession (error if a requested one is unavailable)."""
    if not requested:
        return [p for p in PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]
    out = []
    for name in requested:
        full = _SHORT.get(name.lower(), name)
        if full not in available:
            raise BackendUnavailableError(
                f"onnxruntime has no {full} here (available: {', '.join(available)}); fix: "
                "pip install onnxruntime-gpu with matching CUDA/TensorRT, or drop --providers"
            )
        out.append(full)
    return out


def _provider_options(provider: str, opts: BackendOptions, signature, onnx_path: Path) -> dict:
    """Options per EP. TensorRT EP: one profile over context 1..max_context (batch 1..8), its
    engines cached beside our own (ORT keys them by model and GPU), INT8 from the Q/DQ graph."""
    if provider != "TensorrtExecutionProvider":
        return {}
    from engines.cache import default_engine_cache

    dims = {**signature.feature_dims(), "context_mask": None}

    def shapes(batch: int, context: int) -> str:
        return ",".join(f"{n}:{batch}x{context}" + (f"x{w}" if w else "") for n, w in dims.items())

    cache = (opts.cache_dir or default_engine_cache()) / "ort-tensorrt"
    cache.mkdir(parents=True, exist_ok=True)
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_fp16_enable": "True",
        "trt_int8_enable": "True" if opts.precision == "int8" else "False",
        "trt_profile_min_shapes": shapes(1, 1),
        "trt_profile_opt_shapes": shapes(1, min(32, opts.max_context)),
        "trt_profile_max_shapes": shapes(8, opts.max_context),
    }


class OrtBackend:
    def __init__(self, checkpoint_path: Path, options: BackendOptions | None = None) -> None:
        import onnxruntime as ort

        opts = options or BackendOptions()
        opts = replace(opts, precision=opts.precision or "fp32")
        if opts.precision not in ("fp32", "int8"):
            raise BackendUnavailableError(
                f"backend 'onnxruntime' runs fp32 or int8, not {opts.precision}; fix: use "
                "--backend tensorrt for fp16"
            )
        loaded = load_model(checkpoint_path, mode=opts.mode, max_context=opts.max_context)
        self.signature = loaded.signature
        self.checkpoint_sha256 = loaded.checkpoint_sha256
        self.mode = loaded.mode
        if opts.onnx_path is not None:
            onnx_path = Path(opts.onnx_path)
            if not onnx_path.is_file():
                raise BackendUnavailableError(
                    f"ONNX file {onnx_path} does not exist; fix the --onnx path"
                )
            sidecar = Sidecar.read(onnx_path)
            sidecar.require_checkpoint(loaded.checkpoint_sha256, onnx_path)
            if sidecar.precision != opts.precision:
                raise EngineMismatchError(
                    f"{onnx_path} is {sidecar.precision}, but {opts.precision} was asked for; "
                    f"fix: pass --precision {sidecar.precision} or the matching file"
                )
        elif opts.precision == "int8":
            from calibration.ort_int8 import cached_int8

            onnx_path = cached_int8(loaded, cache_dir=opts.cache_dir).onnx_path
        else:
            onnx_path = cached_onnx(loaded, cache_dir=opts.cache_dir).onnx_path
        self.onnx_path = onnx_path
        providers = resolve_providers(tuple(opts.providers), ort.get_available_providers())
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if opts.threads > 0:
            so.intra_op_num_threads = opts.threads
        so.inter_op_num_threads = 1
        provider_options = [
            _provider_options(p, opts, self.signature, onnx_path) for p in providers
        ]
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), so, providers=providers, provider_options=provider_options
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise EngineMismatchError(
                f"onnxruntime cannot load {onnx_path} ({type(exc).__name__}: {str(exc)[:120]}); "
                "fix: re-export with 'mlsan-engine export'"
            ) from None
        used = self._session.get_providers()
        self.providers = tuple(used)
        self.name = f"onnxruntime:{used[0]}:{opts.precision}"
        log.info("backend %s ready (%s)", self.name, onnx_path)

    def infer(self, inputs: EmotionInputs) -> EmotionOutputs:
        check_inputs(inputs, self.signature)
        probs, gate = self._session.run(list(OUTPUT_NAMES), inputs.as_dict())
        return EmotionOutputs(probs=probs, gate=gate, label_names=self.signature.label_names)

    def close(self) -> None:
        self._session = None

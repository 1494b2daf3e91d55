"""Build TensorRT engines from the exported ONNX file, and find or rebuild them in the cache.

``ensure_engine`` is what the runtime and ``mlsan-engine build`` call: it computes the
:class:`EngineKey` for this GPU, TensorRT release, checkpoint, precision and context profile,
reuses the cached engine when its sidecar's key matches, and otherwise builds (and says why).

Precision: ``fp16`` sets the FP16 builder flag on the fp32 graph. ``int8`` builds from the
explicitly quantized Q/DQ graph made by :mod:`calibration.trt_int8` (TensorRT's implicit
calibrators are deprecated since 10.1; with Q/DQ the scales travel inside the ONNX file and the
same file is checked on CPU), with INT8 and FP16 flags so layers without Q/DQ run in FP16.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from engines.cache import EngineKey, GpuInfo, engine_cache_path, sidecar_path
from engines.errors import EngineBuildError, EngineMismatchError
from engines.sidecar import Sidecar
from engines.versions import same_build
from mlsan.registry import file_sha256

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ContextProfile:
    """One TensorRT optimization profile over the context length T (batch 1..max_batch)."""

    min_context: int
    opt_context: int
    max_context: int
    max_batch: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.min_context <= self.opt_context <= self.max_context:
            raise EngineBuildError(
                f"bad context profile {self.min_context}:{self.opt_context}:{self.max_context}; "
                "fix: give MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX"
            )
        if self.max_batch < 1:
            raise EngineBuildError("max batch must be >= 1; fix: pass --max-batch 1 or more")

    @classmethod
    def parse(cls, text: str, max_batch: int = 8) -> ContextProfile:
        try:
            lo, opt, hi = (int(x) for x in text.split(":"))
        except ValueError:
            raise EngineBuildError(
                f"bad --profile {text!r}; fix: give MIN:OPT:MAX context lengths, e.g. 1:32:128"
            ) from None
        return cls(lo, opt, hi, max_batch)


# The live app keeps up to 128 utterances of context and sends batch 1; opt at 32 (typical).
DEFAULT_PROFILE = ContextProfile(1, 32, 128, 8)


@dataclass(frozen=True)
class EnginePlan:
    path: Path
    key: EngineKey
    action: str  # "reuse" | "build"
    reason: str


def engine_key(
    checkpoint_sha256: str,
    precision: str,
    gpu: GpuInfo,
    tensorrt_version: str,
    profile: ContextProfile,
    mode: str,
) -> EngineKey:
    return EngineKey(
        checkpoint_sha256=checkpoint_sha256,
        precision=precision,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        tensorrt_version=str(Version(tensorrt_version)),
        min_context=profile.min_context,
        opt_context=profile.opt_context,
        max_context=profile.max_context,
        max_batch=profile.max_batch,
        mode=mode,
    )


def plan_engine(key: EngineKey, cache_dir: Path, force: bool = False) -> EnginePlan:
    """Reuse the cached engine for ``key`` if its sidecar agrees, else build (with the reason)."""
    path = engine_cache_path(cache_dir, key)
    if force:
        return EnginePlan(path, key, "build", "rebuild requested (--force)")
    if not path.is_file():
        return EnginePlan(
            path, key, "build", f"no cached engine for this GPU/TensorRT/checkpoint ({path.name})"
        )
    if not sidecar_path(path).is_file():
        return EnginePlan(path, key, "build", "cached engine has no sidecar")
    try:
        sidecar = Sidecar.read(path)
        cached = EngineKey.from_json(sidecar.engine_key)
    except (EngineMismatchError, KeyError, TypeError, ValueError) as exc:
        return EnginePlan(path, key, "build", f"cached engine's sidecar unreadable ({exc})")
    differences = key.mismatches(cached)
    if differences:
        return EnginePlan(path, key, "build", "cached engine differs: " + "; ".join(differences))
    if sidecar.artifact_sha256 != file_sha256(path):
        return EnginePlan(
            path, key, "build", "cached engine file does not match its sidecar's sha256"
        )
    return EnginePlan(
        path, key, "reuse", "cached engine matches GPU, TensorRT, checkpoint and profile"
    )


def build_engine(
    onnx_path: Path,
    out_path: Path,
    key: EngineKey,
    onnx_sidecar: Sidecar,
    workspace_mib: int = 1024,
) -> Sidecar:
    """Parse ``onnx_path`` and serialize an engine for ``key`` to ``out_path`` (+ sidecar)."""
    from engines.trt_common import import_tensorrt

    trt = import_tensorrt()
    version = Version(trt.__version__)
    if not same_build(key.tensorrt_version, str(version)):
        raise EngineMismatchError(
            f"engine key is for TensorRT {key.tensorrt_version}, this is {version}; fix: "
            "rebuild on the machine that will run it"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if version < Version("10"):  # explicit batch is the only mode from 10.0 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(
            f"TensorRT {version} cannot parse {onnx_path}: {errors[:300]}; fix: check the graph "
            "with 'mlsan-engine check' and re-export"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if key.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if key.precision == "int8":
        # Explicit quantization: the Q/DQ nodes carry the scales; no calibrator is attached.
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        tail = tuple(tensor.shape)[2:]  # feature width (dynamic axes are batch, context)
        profile.set_shape(
            tensor.name,
            (1, key.min_context, *tail),
            (1, key.opt_context, *tail),
            (key.max_batch, key.max_context, *tail),
        )
    config.add_optimization_profile(profile)
    log.info(
        "building TensorRT %s engine (%s), this takes a while once per GPU",
        key.precision,
        out_path.name,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT {version} failed to build the {key.precision} engine from {onnx_path}; "
            "fix: see the TensorRT log above, try --precision fp16 or a larger --workspace-mib"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".engine", dir=out_path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(bytes(serialized))
    os.replace(tmp_name, out_path)
    sidecar = engine_sidecar(out_path, key, onnx_sidecar, str(version))
    sidecar.write(out_path)
    return sidecar


def engine_sidecar(
    engine_path: Path, key: EngineKey, onnx_sidecar: Sidecar, trt_version: str
) -> Sidecar:
    return Sidecar(
        kind="tensorrt",
        artifact=engine_path.name,
        artifact_sha256=file_sha256(engine_path),
        precision=key.precision,
        opset=onnx_sidecar.opset,
        mode=key.mode,
        checkpoint_sha256=key.checkpoint_sha256,
        checkpoint_path=onnx_sidecar.checkpoint_path,
        label_names=onnx_sidecar.label_names,
        inputs=onnx_sidecar.inputs,
        outputs=onnx_sidecar.outputs,
        producer={
            **onnx_sidecar.producer,
            "tensorrt": trt_version,
            "onnx_sha256": onnx_sidecar.artifact_sha256,
        },
        quantization=onnx_sidecar.quantization,
        engine_key=key.to_json(),
    )


def ensure_engine(
    loaded,
    precision: str,
    profile: ContextProfile,
    cache_dir: Path,
    force: bool = False,
    workspace_mib: int = 1024,
) -> tuple[Path, Sidecar, EnginePlan]:
    """The engine for ``loaded`` (engines.model.LoadedModel) here: reused or built now."""
    from engines.export import cached_onnx
    from engines.trt_common import current_gpu, import_tensorrt

    if precision not in PRECISIONS:
        raise EngineBuildError(
            f"unknown precision {precision!r}; fix: use one of {', '.join(PRECISIONS)}"
        )
    trt = import_tensorrt()
    gpu = current_gpu()
    key = engine_key(
        loaded.checkpoint_sha256, precision, gpu, trt.__version__, profile, loaded.mode
    )
    plan = plan_engine(key, cache_dir, force=force)
    log.info("TensorRT engine %s: %s (%s)", plan.path.name, plan.action, plan.reason)
    if plan.action == "reuse":
        return plan.path, Sidecar.read(plan.path), plan
    if precision == "int8":
        from calibration.trt_int8 import cached_qdq

        source = cached_qdq(loaded, cache_dir=cache_dir)
    else:
        source = cached_onnx(loaded, cache_dir=cache_dir)
    sidecar = build_engine(source.onnx_path, plan.path, key, source.sidecar, workspace_mib)
    return plan.path, sidecar, plan

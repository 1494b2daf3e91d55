"""Where exported ONNX files and TensorRT engines live, and the keys that make them reusable.

An engine is valid only for one GPU model (compute capability), one TensorRT release, one
checkpoint, one precision and one context-length profile. Its file name carries a short hash of
that key, and its JSON sidecar carries the key in full, so a Jetson builds once on first use and
reuses the engine afterwards, while a different GPU, TensorRT or checkpoint gets a new build
instead of a crash.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from engines.versions import release3
from mlsan.paths import user_cache_dir

ENGINE_CACHE_ENV = "MLSAN_ENGINE_CACHE"


def default_engine_cache() -> Path:
    """$MLSAN_ENGINE_CACHE, else $XDG_CACHE_HOME/mlsan-live/engines (~/.cache/...)."""
    return user_cache_dir("engines", ENGINE_CACHE_ENV)


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for."""

    name: str  # e.g. "NVIDIA H100 80GB HBM3", "Orin"
    compute_capability: tuple[int, int]  # e.g. (9, 0); Orin (8, 7)

    @property
    def sm(self) -> str:
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; equal keys mean the cached engine can be reused."""

    checkpoint_sha256: str
    precision: str  # fp16 | int8 | fp32
    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str  # as the library reports it; compared with packaging.version
    min_context: int
    opt_context: int
    max_context: int
    max_batch: int
    mode: str  # causal | bidirectional

    def digest(self) -> str:
        payload = asdict(self)
        # Engines differ by TensorRT major.minor.patch, not by build number ("10.3" == "10.3.0.26").
        payload["tensorrt_version"] = ".".join(map(str, release3(self.tensorrt_version)))
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def file_stem(self) -> str:
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")[:32]
        trt = ".".join(map(str, release3(self.tensorrt_version)))
        sm = f"sm{self.compute_capability[0]}{self.compute_capability[1]}"
        ckpt = self.checkpoint_sha256[:12]
        return f"mlsan-{ckpt}-{self.mode}-{self.precision}-{gpu}-{sm}-trt{trt}-{self.digest()}"

    def mismatches(self, other: EngineKey) -> list[str]:
        """Human-readable differences (empty when ``other`` is usable in place of self)."""
        out = []
        if self.gpu_name != other.gpu_name or self.compute_capability != other.compute_capability:
            out.append(
                f"GPU {other.gpu_name} (sm {other.compute_capability}) != "
                f"{self.gpu_name} (sm {self.compute_capability})"
            )
        if release3(self.tensorrt_version) != release3(other.tensorrt_version):
            out.append(f"TensorRT {other.tensorrt_version} != {self.tensorrt_version}")
        if self.checkpoint_sha256 != other.checkpoint_sha256:
            out.append(
                f"checkpoint {other.checkpoint_sha256[:12]} != {self.checkpoint_sha256[:12]}"
            )
        for field in (
            "precision",
            "mode",
            "min_context",
            "opt_context",
            "max_context",
            "max_batch",
        ):
            if getattr(self, field) != getattr(other, field):
                out.append(f"{field} {getattr(other, field)} != {getattr(self, field)}")
        return out

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["compute_capability"] = list(self.compute_capability)
        return payload

    @classmethod
    def from_json(cls, payload: dict) -> EngineKey:
        data = dict(payload)
        data["compute_capability"] = tuple(int(x) for x in data["compute_capability"])
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def onnx_cache_path(cache_dir: Path, checkpoint_sha256: str, mode: str, precision: str) -> Path:
    """Where the ONNX export of a checkpoint lives (its sidecar is the same stem + .json)."""
    return Path(cache_dir) / "onnx" / f"mlsan-{checkpoint_sha256[:16]}-{mode}-{precision}.onnx"


def engine_cache_path(cache_dir: Path, key: EngineKey) -> Path:
    return Path(cache_dir) / "tensorrt" / f"{key.file_stem()}.engine"


def sidecar_path(artifact: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    return artifact.with_name(artifact.name + ".json")

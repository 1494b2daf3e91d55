"""The JSON sidecar beside every exported ONNX file and TensorRT engine.

It says what the artifact is without opening it: tensor names, shapes (symbolic axes as names),
dtypes, precision, opset, the sha256 of the checkpoint it came from, and for engines the
TensorRT version and GPU (the :class:`~engines.cache.EngineKey`). Backends read it to refuse an
artifact that belongs to another checkpoint, GPU or TensorRT version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engines.cache import sidecar_path
from engines.errors import EngineMismatchError

SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[str | int, ...]  # e.g. ("batch", "context", 384)
    dtype: str  # numpy dtype name, e.g. "float32"


@dataclass(frozen=True)
class Sidecar:
    kind: str  # "onnx" | "tensorrt"
    artifact: str  # file name of the artifact beside this sidecar
    artifact_sha256: str
    precision: str  # fp32 | fp16 | int8
    opset: int
    mode: str  # causal | bidirectional
    checkpoint_sha256: str
    checkpoint_path: str
    label_names: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    producer: dict = field(default_factory=dict)  # library versions that made it
    quantization: dict = field(default_factory=dict)  # int8: method, format, calibration data
    engine_key: dict = field(default_factory=dict)  # tensorrt: EngineKey.to_json()
    format: int = SIDECAR_FORMAT

    def write(self, artifact: Path) -> Path:
        path = sidecar_path(artifact)
        payload = asdict(self)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, artifact: Path) -> Sidecar:
        path = sidecar_path(artifact)
        if not path.is_file():
            raise EngineMismatchError(
                f"{artifact} has no sidecar {path.name} (so its checkpoint, shapes and precision "
                "are unknown); fix: re-create it with 'mlsan-engine export' or 'mlsan-engine build'"
            )
        try:
            payload = json.loads(path.read_text())
            if payload.get("format") != SIDECAR_FORMAT:
                raise ValueError(f"format {payload.get('format')!r}")
            payload["inputs"] = tuple(
                TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in payload["inputs"]
            )
            payload["outputs"] = tuple(
                TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in payload["outputs"]
            )
            payload["label_names"] = tuple(payload["label_names"])
            return cls(**payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineMismatchError(
                f"sidecar {path} is unreadable ({exc}); fix: re-create the artifact with "
                "'mlsan-engine export' or 'mlsan-engine build'"
            ) from None

    def require_checkpoint(self, checkpoint_sha256: str, artifact: Path) -> None:
        if self.checkpoint_sha256 != checkpoint_sha256:
            raise EngineMismatchError(
                f"{artifact} was made from checkpoint {self.checkpoint_sha256[:12]}, not the one "
                f"in use ({checkpoint_sha256[:12]}); fix: re-export with 'mlsan-engine export' "
                "(or drop the explicit --onnx/--engine path to use the cache)"
            )

"""ONNX Runtime static INT8 on CPU (see calibration.quantize, target ``ort-cpu``)."""

from __future__ import annotations

from pathlib import Path

from calibration.quantize import cached_quantized
from calibration.recording import Recording
from engines.export import ExportResult


def cached_int8(
    loaded, cache_dir: Path | None = None, recording: Recording | None = None
) -> ExportResult:
    """The CPU INT8 model for ``loaded`` from the cache (or quantized now over ``recording``)."""
    return cached_quantized(loaded, "ort-cpu", cache_dir=cache_dir, recording=recording)

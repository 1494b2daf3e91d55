"""TensorRT INT8 by explicit quantization: a symmetric int8 Q/DQ ONNX graph TensorRT builds from.

Why explicit (Q/DQ) and not TensorRT's calibrators (IInt8EntropyCalibrator2 & co.): the implicit
calibrators are deprecated since TensorRT 10.1; with Q/DQ the scales live inside the ONNX file,
so they are computed once on any machine (here: on CPU, by ONNX Runtime, over recorded real
inputs), checked on CPU (``engines.trt_compat``; ORT can also run the same graph to measure its
accuracy), and the Jetson only builds. The ranges cache (``calibration/ranges-*.json``) plays the
part of TensorRT's calibration cache.
"""

from __future__ import annotations

from pathlib import Path

from calibration.quantize import cached_quantized
from calibration.recording import Recording
from engines.export import ExportResult


def cached_qdq(
    loaded, cache_dir: Path | None = None, recording: Recording | None = None
) -> ExportResult:
    """The TensorRT Q/DQ model for ``loaded``: cached, or quantized now over ``recording``."""
    return cached_quantized(loaded, "tensorrt", cache_dir=cache_dir, recording=recording)

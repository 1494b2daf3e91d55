"""Static INT8 quantization of the exported ONNX graph with ONNX Runtime, over recorded inputs.

Two targets, one calibration pass each (ranges cached):

* ``ort-cpu``: for ONNX Runtime's CPU kernels. QDQ format, uint8 asymmetric activations, int8
  per-channel weights (the CPU EP fuses Q/DQ around MatMul into integer MatMuls).
* ``tensorrt``: the explicitly quantized graph TensorRT builds INT8 engines from. QDQ with int8
  *symmetric* activations and weights (TensorRT requires zero-point 0), per-tensor weights.

Only MatMul/Gemm are quantized: they hold nearly all the FLOPs; LayerNorm, softmax and the
gating stay in float, where INT8 would cost accuracy for little speed.

Dynamic shapes: the exported graph has dynamic batch and context axes. Calibration feeds each
recorded dialogue at its own length (batch 1, T_i); ORT's calibrator reduces every tensor to a
min/max (or histogram) per run, so runs of different shapes merge without padding, and padding
never skews the ranges. Shape inference (``quant_pre_process``) keeps the axes symbolic.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from calibration.recording import Recording, RecordingError
from engines.cache import default_engine_cache, onnx_cache_path
from engines.errors import EngineMismatchError
from engines.export import ExportResult, cached_onnx
from engines.sidecar import Sidecar
from mlsan.registry import file_sha256

log = logging.getLogger(__name__)

TARGETS = ("ort-cpu", "tensorrt")
# The name each target's model has in the cache (engines.cache.onnx_cache_path "precision").
CACHE_TAG = {"ort-cpu": "int8", "tensorrt": "int8-qdq"}


class RecordingReader:
    """ORT CalibrationDataReader over a Recording: one batch-1 dialogue per get_next()."""

    def __init__(self, recording: Recording) -> None:
        self._samples = recording.samples
        self._pos = 0

    def get_next(self) -> dict | None:
        if self._pos >= len(self._samples):
            return None
        sample = self._samples[self._pos]
        self._pos += 1
        return sample.as_dict()

    def rewind(self) -> None:
        self._pos = 0

    def __len__(self) -> int:
        return len(self._samples)


@dataclass(frozen=True)
class QuantOptions:
    target: str = "ort-cpu"
    method: str = "minmax"  # minmax | entropy | percentile
    ops: tuple[str, ...] = ("MatMul", "Gemm")

    def settings(self) -> dict:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

        methods = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        if self.method not in methods:
            raise RecordingError(
                f"unknown calibration method {self.method!r}; fix: use one of {', '.join(methods)}"
            )
        if self.target == "ort-cpu":
            return dict(
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=methods[self.method],
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        if self.target == "tensorrt":
            return dict(
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=False,
                calibrate_method=methods[self.method],
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        raise RecordingError(
            f"unknown quantization target {self.target!r}; fix: use one of {', '.join(TARGETS)}"
        )


def calibration_cache_file(
    cache_dir: Path, float_sha: str, recording: Recording, opts: QuantOptions
) -> Path:
    """Ranges depend on the float graph, the data and the activation scheme; key on all three."""
    return (
        cache_dir
        / "calibration"
        / (f"ranges-{float_sha[:16]}-{recording.digest()[:16]}-{opts.target}-{opts.method}.json")
    )


def quantize_onnx(
    float_onnx: Path,
    out_path: Path,
    recording: Recording,
    opts: QuantOptions = QuantOptions(),
    cache_dir: Path | None = None,
) -> ExportResult:
    """Quantize ``float_onnx`` (with its sidecar) to ``out_path`` (+ sidecar) over ``recording``."""
    from onnxruntime.quantization import quant_pre_process, quantize_static

    if not len(recording):
        raise RecordingError("the recording is empty; fix: record inputs or calibrate from --data")
    float_sidecar = Sidecar.read(float_onnx)
    if float_sidecar.precision != "fp32":
        raise EngineMismatchError(
            f"{float_onnx} is {float_sidecar.precision}; fix: quantize the fp32 export"
        )
    settings = opts.settings()
    float_sha = file_sha256(float_onnx)
    cache_dir = cache_dir or default_engine_cache()
    ranges = calibration_cache_file(cache_dir, float_sha, recording, opts)
    ranges.parent.mkdir(parents=True, exist_ok=True)
    reused = ranges.is_file()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prepped = Path(tmp) / "prep.onnx"
        quant_pre_process(str(float_onnx), str(prepped), skip_symbolic_shape=False)
        staged = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepped),
            str(staged),
            calibration_data_reader=RecordingReader(recording),
            op_types_to_quantize=list(opts.ops),
            calibration_cache_path=str(ranges),
            **settings,
        )
        os.replace(staged, out_path)
    log.info(
        "quantized %s -> %s (%s, ranges %s)",
        float_onnx.name,
        out_path.name,
        opts.target,
        "reused" if reused else "computed",
    )
    sidecar = replace(
        float_sidecar,
        artifact=out_path.name,
        artifact_sha256=file_sha256(out_path),
        precision="int8",
        quantization={
            "target": opts.target,
            "format": "QDQ",
            "activations": "int8 symmetric" if opts.target == "tensorrt" else "uint8 asymmetric",
            "weights": "int8 symmetric "
            + ("per-channel" if settings["per_channel"] else "per-tensor"),
            "ops": list(opts.ops),
            "method": opts.method,
            "calibration_source": recording.source,
            "calibration_samples": len(recording),
            "calibration_utterances": recording.utterances(),
            "recording_sha256": recording.digest(),
            "float_onnx_sha256": float_sha,
            "ranges_cache": str(ranges),
            "ranges_reused": reused,
        },
    )
    sidecar.write(out_path)
    return ExportResult(out_path, sidecar)


def cached_quantized(
    loaded,
    target: str,
    cache_dir: Path | None = None,
    recording: Recording | None = None,
    method: str = "minmax",
) -> ExportResult:
    """The cached INT8 model of ``target`` for ``loaded`` (quantized now if ``recording`` given).

    Without a recording, a missing cached model is an error naming the command that makes it.
    """
    cache_dir = cache_dir or default_engine_cache()
    path = onnx_cache_path(cache_dir, loaded.checkpoint_sha256, loaded.mode, CACHE_TAG[target])
    if recording is None:
        if path.is_file():
            sidecar = Sidecar.read(path)
            sidecar.require_checkpoint(loaded.checkpoint_sha256, path)
            if sidecar.artifact_sha256 == file_sha256(path):
                return ExportResult(path, sidecar)
        raise RecordingError(
            f"no calibrated INT8 model ({target}) for checkpoint {loaded.checkpoint_sha256[:12]} "
            f"in {path.parent}; fix: run 'mlsan-engine calibrate --data ../shared/data/meld' "
            "(or --recording FILE from an app run) first"
        )
    float_export = cached_onnx(loaded, cache_dir=cache_dir)
    return quantize_onnx(
        float_export.onnx_path, path, recording, QuantOptions(target, method), cache_dir
    )


def read_ranges(path: Path) -> dict:
    return json.loads(Path(path).read_text())

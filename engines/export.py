"""Export a checkpoint to ONNX with named inputs/outputs, dynamic batch and context, and a sidecar.

Graph: inputs ``INPUT_NAMES`` (float32, axes 0 "batch" and 1 "context" dynamic), outputs
``probs`` [batch, context, C] and ``gate`` [batch, context, 3]. Opset :data:`EXPORT_OPSET` (17) so
TensorRT 8.6 (JetPack 6.0) and 10.x both parse it. Written to a temporary file first and renamed,
so concurrent processes sharing the cache never read a half-written model.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.cache import default_engine_cache, onnx_cache_path
from engines.errors import EngineMismatchError
from engines.model import LoadedModel, example_tensors, load_model
from engines.sidecar import Sidecar, TensorSpec
from engines.types import INPUT_NAMES, OUTPUT_NAMES, ModelSignature
from engines.versions import EXPORT_OPSET
from mlsan.registry import file_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    sidecar: Sidecar


def tensor_specs(
    signature: ModelSignature,
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    dims = signature.feature_dims()
    inputs = tuple(
        TensorSpec(
            n, ("batch", "context", dims[n]) if n in dims else ("batch", "context"), "float32"
        )
        for n in INPUT_NAMES
    )
    outputs = (
        TensorSpec("probs", ("batch", "context", signature.num_classes), "float32"),
        TensorSpec("gate", ("batch", "context", 3), "float32"),
    )
    return inputs, outputs


def _producer() -> dict:
    import onnx

    return {"torch": torch.__version__, "onnx": onnx.__version__}


def export_loaded(loaded: LoadedModel, out_path: Path, opset: int = EXPORT_OPSET) -> ExportResult:
    """Export ``loaded`` to ``out_path`` (+ ``.json`` sidecar) and check the graph with onnx."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    example = example_tensors(loaded.signature, batch=2, context=8)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _torch_export(loaded.module, example, tmp, opset)
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        _check_io_names(model, str(out_path))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    inputs, outputs = tensor_specs(loaded.signature)
    sidecar = Sidecar(
        kind="onnx",
        artifact=out_path.name,
        artifact_sha256=file_sha256(out_path),
        precision="fp32",
        opset=opset,
        mode=loaded.mode,
        checkpoint_sha256=loaded.checkpoint_sha256,
        checkpoint_path=str(loaded.checkpoint_path),
        label_names=loaded.signature.label_names,
        inputs=inputs,
        outputs=outputs,
        producer=_producer(),
    )
    sidecar.write(out_path)
    log.info("exported %s (opset %d, %s)", out_path, opset, loaded.mode)
    return ExportResult(out_path, sidecar)


def _torch_export(module: torch.nn.Module, example: tuple, path: Path, opset: int) -> None:
    """torch -> ONNX with axes 0 ("batch") and 1 ("context") dynamic on every input and output.

    Opset <= 17 uses the TorchScript exporter: the dynamo exporter emits opset 18 and its
    down-conversion breaks on this graph (Split's ``num_outputs``), while TensorRT 8.6 (JetPack
    6.0) parses at most opset 17. Opset >= 18 uses the dynamo exporter.
    """
    axes = {name: {0: "batch", 1: "context"} for name in INPUT_NAMES + OUTPUT_NAMES}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if opset <= 17:
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamo=False,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            context = torch.export.Dim("context", min=1, max=4096)
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={name: {0: batch, 1: context} for name in INPUT_NAMES},
                external_data=False,
                verbose=False,
            )


def _check_io_names(model, where: str) -> None:
    got_in = tuple(i.name for i in model.graph.input)
    got_out = tuple(o.name for o in model.graph.output)
    if got_in != INPUT_NAMES or got_out != OUTPUT_NAMES:
        raise EngineMismatchError(
            f"exported graph {where} has inputs {got_in} / outputs {got_out}, expected "
            f"{INPUT_NAMES} / {OUTPUT_NAMES}; fix: the checkpoint's forward() changed, update "
            "engines/model.py"
        )


def export_checkpoint(
    checkpoint_path: str | Path,
    out_path: str | Path | None = None,
    mode: str | None = None,
    cache_dir: Path | None = None,
    opset: int = EXPORT_OPSET,
) -> ExportResult:
    """Export a checkpoint; without ``out_path`` into the engine cache (see engines.cache)."""
    loaded = load_model(checkpoint_path, mode=mode)
    if out_path is None:
        out_path = onnx_cache_path(
            cache_dir or default_engine_cache(), loaded.checkpoint_sha256, loaded.mode, "fp32"
        )
    return export_loaded(loaded, Path(out_path), opset=opset)


def cached_onnx(
    loaded: LoadedModel, cache_dir: Path | None = None, opset: int = EXPORT_OPSET
) -> ExportResult:
    """The cached fp32 ONNX export of ``loaded`` (exported now if missing or stale)."""
    path = onnx_cache_path(
        cache_dir or default_engine_cache(), loaded.checkpoint_sha256, loaded.mode, "fp32"
    )
    if path.is_file():
        try:
            sidecar = Sidecar.read(path)
            if (
                sidecar.checkpoint_sha256 == loaded.checkpoint_sha256
                and sidecar.opset == opset
                and sidecar.artifact_sha256 == file_sha256(path)
            ):
                return ExportResult(path, sidecar)
            log.info("cached export %s is stale; re-exporting", path)
        except EngineMismatchError as exc:
            log.info("cached export unusable (%s); re-exporting", exc)
    return export_loaded(loaded, path, opset=opset)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

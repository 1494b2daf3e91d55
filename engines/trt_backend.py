"""TensorRT backend: deserialize an engine, bind device buffers by tensor name, run on a stream.

The engine comes from ``--engine PATH`` (must match this checkpoint, GPU and TensorRT, else
EngineMismatchError) or from the cache (:func:`engines.trt_build.ensure_engine`: reused when its
key matches, rebuilt otherwise). Device buffers are allocated once for the profile's largest
shape (max_batch x max_context) and reused; each call sets the actual input shapes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engines.backend import BackendOptions
from engines.cache import EngineKey, default_engine_cache
from engines.errors import BackendUnavailableError, BadInputError, EngineMismatchError
from engines.model import load_model
from engines.sidecar import Sidecar
from engines.trt_build import DEFAULT_PROFILE, ContextProfile, engine_key, ensure_engine
from engines.types import INPUT_NAMES, OUTPUT_NAMES, EmotionInputs, EmotionOutputs, check_inputs

log = logging.getLogger(__name__)


class TensorRTBackend:
    def __init__(self, checkpoint_path: Path, options: BackendOptions | None = None) -> None:
        from engines.trt_common import cuda_call, current_gpu, import_cudart, import_tensorrt

        opts = options or BackendOptions()
        precision = opts.precision or "fp16"
        trt = import_tensorrt()
        cudart = import_cudart()
        self._cudart, self._cuda_call = cudart, cuda_call
        gpu = current_gpu()
        loaded = load_model(checkpoint_path, mode=opts.mode, max_context=opts.max_context)
        self.signature = loaded.signature
        self.checkpoint_sha256 = loaded.checkpoint_sha256
        self.mode = loaded.mode
        profile = ContextProfile(
            1,
            min(DEFAULT_PROFILE.opt_context, opts.max_context),
            opts.max_context,
            DEFAULT_PROFILE.max_batch,
        )
        if opts.engine_path is not None:
            path = Path(opts.engine_path)
            if not path.is_file():
                raise BackendUnavailableError(
                    f"engine {path} does not exist; fix: build it with 'mlsan-engine build'"
                )
            sidecar = Sidecar.read(path)
            sidecar.require_checkpoint(loaded.checkpoint_sha256, path)
            built = EngineKey.from_json(sidecar.engine_key)
            here = engine_key(
                loaded.checkpoint_sha256,
                built.precision,
                gpu,
                trt.__version__,
                ContextProfile(
                    built.min_context, built.opt_context, built.max_context, built.max_batch
                ),
                built.mode,
            )
            differences = here.mismatches(built)
            if differences:
                raise EngineMismatchError(
                    f"engine {path} does not fit this machine ({'; '.join(differences)}); fix: "
                    "run 'mlsan-engine build' here (engines do not move between GPUs or "
                    "TensorRT versions)"
                )
            profile = ContextProfile(
                built.min_context, built.opt_context, built.max_context, built.max_batch
            )
        else:
            cache = opts.cache_dir or default_engine_cache()
            path, sidecar, _plan = ensure_engine(loaded, precision, profile, cache)
        self.engine_path = path
        self.profile = profile
        self.precision = sidecar.precision
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise EngineMismatchError(
                f"TensorRT {trt.__version__} cannot deserialize {path} (built by another TensorRT "
                "or GPU, or corrupt); fix: run 'mlsan-engine build --force'"
            )
        self._context = self._engine.create_execution_context()
        self._stream = cuda_call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, int] = {}
        widths = {
            **self.signature.feature_dims(),
            "context_mask": None,
            "probs": self.signature.num_classes,
            "gate": 3,
        }
        for name in INPUT_NAMES + OUTPUT_NAMES:
            width = widths[name]
            count = profile.max_batch * profile.max_context * (width or 1)
            self._buffers[name] = int(cuda_call(cudart.cudaMalloc(count * 4), "cudaMalloc"))
            self._context.set_tensor_address(name, self._buffers[name])
        self.name = f"tensorrt:{self.precision}"
        log.info("backend %s ready (%s on %s)", self.name, path.name, gpu.name)

    def infer(self, inputs: EmotionInputs) -> EmotionOutputs:
        check_inputs(inputs, self.signature)
        b, t = inputs.batch, inputs.context
        p = self.profile
        if not (p.min_context <= t <= p.max_context and b <= p.max_batch):
            raise BadInputError(
                f"batch {b} x context {t} is outside the engine's profile (batch <= {p.max_batch}, "
                f"context {p.min_context}..{p.max_context}); fix: keep at most {p.max_context} "
                "utterances of context or rebuild with 'mlsan-engine build --profile MIN:OPT:MAX'"
            )
        cudart, call = self._cudart, self._cuda_call
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        arrays = inputs.as_dict()
        for name in INPUT_NAMES:
            arr = arrays[name]
            self._context.set_input_shape(name, arr.shape)
            call(
                cudart.cudaMemcpyAsync(
                    self._buffers[name], arr.ctypes.data, arr.nbytes, h2d, self._stream
                ),
                "cudaMemcpyAsync",
            )
        if not self._context.execute_async_v3(self._stream):
            raise BadInputError("TensorRT execution failed; fix: see the TensorRT log above")
        outputs = {}
        for name in OUTPUT_NAMES:
            shape = tuple(self._context.get_tensor_shape(name))
            out = np.empty(shape, np.float32)
            call(
                cudart.cudaMemcpyAsync(
                    out.ctypes.data, self._buffers[name], out.nbytes, d2h, self._stream
                ),
                "cudaMemcpyAsync",
            )
            outputs[name] = out
        call(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return EmotionOutputs(
            probs=outputs["probs"], gate=outputs["gate"], label_names=self.signature.label_names
        )

    def close(self) -> None:
        if getattr(self, "_buffers", None):
            for ptr in self._buffers.values():
                self._cudart.cudaFree(ptr)
            self._buffers = {}
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = None
        self._engine = None

    def __del__(self) -> None:  # buffers are device memory: free them even if close() is forgotten
        try:
            self.close()
        except Exception:
            pass

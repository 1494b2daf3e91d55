"""PyTorch backend: the checkpoint's own module, eager, on CPU or CUDA."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engines.backend import BackendOptions
from engines.errors import BackendUnavailableError
from engines.model import load_model
from engines.types import INPUT_NAMES, EmotionInputs, EmotionOutputs, check_inputs

log = logging.getLogger(__name__)


class TorchBackend:
    def __init__(self, checkpoint_path: Path, options: BackendOptions | None = None) -> None:
        opts = options or BackendOptions()
        opts = replace(opts, precision=opts.precision or "fp32")
        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(
                "backend 'torch' on cuda needs a CUDA build of PyTorch and an NVIDIA GPU; "
                "fix: use --device cpu, or install a CUDA torch (Jetson: NVIDIA's JetPack wheel)"
            )
        if opts.precision not in ("fp32", "fp16"):
            raise BackendUnavailableError(
                f"backend 'torch' runs fp32 (and fp16 on cuda), not {opts.precision}; "
                "fix: use --backend onnxruntime or tensorrt for int8"
            )
        if opts.precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailableError(
                "backend 'torch' fp16 needs cuda; fix: use --precision fp32 on CPU"
            )
        if opts.threads > 0:
            torch.set_num_threads(opts.threads)
        self._loaded = load_model(checkpoint_path, mode=opts.mode, max_context=opts.max_context)
        self._dtype = torch.float16 if opts.precision == "fp16" else torch.float32
        self._device = torch.device(device)
        self._module = self._loaded.module.to(self._device, self._dtype)
        self.signature = self._loaded.signature
        self.checkpoint_sha256 = self._loaded.checkpoint_sha256
        self.mode = self._loaded.mode
        self.name = f"torch:{device}:{opts.precision}"
        log.info("backend %s ready (%s)", self.name, checkpoint_path)

    def infer(self, inputs: EmotionInputs) -> EmotionOutputs:
        check_inputs(inputs, self.signature)
        arrays = inputs.as_dict()
        tensors = [
            torch.from_numpy(arrays[name]).to(self._device, self._dtype) for name in INPUT_NAMES
        ]
        with torch.inference_mode():
            probs, gate = self._module(*tensors)
        return EmotionOutputs(
            probs=probs.float().cpu().numpy().astype(np.float32, copy=False),
            gate=gate.float().cpu().numpy().astype(np.float32, copy=False),
            label_names=self.signature.label_names,
        )

    def close(self) -> None:
        self._module = None

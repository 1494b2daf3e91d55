"""Run ML-SAN fast: ONNX export, TensorRT engines and one backend protocol.

``create_backend(name, checkpoint_path)`` -> :class:`EmotionBackend` with
``infer(EmotionInputs) -> EmotionOutputs``; names: ``torch``, ``onnxruntime``, ``tensorrt``,
``auto``. tensorrt and cuda-python are imported only by the TensorRT modules.
"""

from engines.backend import (
    AUTO_ORDER,
    BACKEND_NAMES,
    BackendOptions,
    EmotionBackend,
    choose_auto,
    create_backend,
)
from engines.errors import (
    BackendUnavailableError,
    BadInputError,
    EngineBuildError,
    EngineMismatchError,
    UnknownBackendError,
)
from engines.types import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    EmotionInputs,
    EmotionOutputs,
    ModelSignature,
)

__all__ = [
    "AUTO_ORDER",
    "BACKEND_NAMES",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "BackendOptions",
    "BackendUnavailableError",
    "BadInputError",
    "EmotionBackend",
    "EmotionInputs",
    "EmotionOutputs",
    "EngineBuildError",
    "EngineMismatchError",
    "ModelSignature",
    "UnknownBackendError",
    "choose_auto",
    "create_backend",
]

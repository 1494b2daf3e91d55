"""Errors of the engines package: each one line, what is wrong and the fix (UserFacingError)."""

from __future__ import annotations

from mlsan.errors import UserFacingError


class BackendUnavailableError(UserFacingError):
    """A backend's library (onnxruntime, tensorrt, cuda-python) or device is missing."""


class UnknownBackendError(UserFacingError):
    """A backend name that no factory knows."""


class EngineMismatchError(UserFacingError):
    """An engine/ONNX file built for another GPU, TensorRT version or checkpoint."""


class EngineBuildError(UserFacingError):
    """TensorRT could not parse the ONNX file or build the engine."""


class BadInputError(UserFacingError):
    """Inputs whose shapes do not match the model's signature."""

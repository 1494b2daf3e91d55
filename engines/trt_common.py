"""Imports and small helpers shared by the TensorRT builder and runtime.

tensorrt and cuda-python are imported here, inside functions, so that everything else in
``engines`` imports (and is tested) on machines without them. cuda-python moved its runtime
module from ``cuda.cudart`` (< 12.8) to ``cuda.bindings.runtime``; both are accepted.
"""

from __future__ import annotations

from engines.cache import GpuInfo
from engines.errors import BackendUnavailableError
from engines.versions import check_tensorrt_version

TRT_FIX = (
    "fix: pip install 'mlsan-live[tensorrt]' (tensorrt + cuda-python) on a CUDA machine, or on "
    "a Jetson use JetPack's python3-libnvinfer and pip install cuda-python; or choose "
    "--backend onnxruntime"
)


def import_tensorrt():
    """The tensorrt module, checked to be new enough (BackendUnavailableError otherwise)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'tensorrt' needs the tensorrt package ({exc}); {TRT_FIX}"
        ) from None
    check_tensorrt_version(trt.__version__)
    return trt


def import_cudart():
    """cuda-python's CUDA runtime bindings."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendUnavailableError(
                f"backend 'tensorrt' needs cuda-python for device buffers; {TRT_FIX}"
            ) from None
    return cudart


def cuda_call(result, what: str):
    """Unwrap a cuda-python ``(err, *values)`` tuple, raising on a non-success error code."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        raise BackendUnavailableError(
            f"CUDA call {what} failed with {err!r}; fix: check that an NVIDIA GPU and driver are "
            "visible (nvidia-smi) and that cuda-python matches the driver's CUDA version"
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def current_gpu(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device`` (BackendUnavailableError if none)."""
    cudart = import_cudart()
    count = cuda_call(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if not count:
        raise BackendUnavailableError(f"backend 'tensorrt' found no CUDA GPU; {TRT_FIX}")
    props = cuda_call(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(name=str(name).strip(), compute_capability=(int(props.major), int(props.minor)))

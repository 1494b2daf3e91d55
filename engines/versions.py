"""Version checks for the GPU stack, parsed with ``packaging.version`` (never compared as strings:
"10.10" > "10.9" as versions, but not as strings)."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from engines.errors import BackendUnavailableError, EngineMismatchError

# The oldest TensorRT whose Python API this code uses: named I/O tensors, set_input_shape,
# execute_async_v3 and memory-pool limits (8.5/8.6). JetPack 6.0 ships 8.6.2; JetPack 6.1+ 10.3.
MIN_TENSORRT = Version("8.6")
# ONNX opset we export: TensorRT 8.6 parses opsets 9..17, 10.x up to 20, ORT >= 1.14 all.
EXPORT_OPSET = 17
MAX_OPSET_BY_TENSORRT: tuple[tuple[Version, int], ...] = (
    (Version("8.6"), 17),
    (Version("10.0"), 20),
)


def parse_version(text: str, what: str) -> Version:
    """``Version(text)``, or a one-line error naming what reported the bad version string."""
    try:
        return Version(str(text).strip())
    except InvalidVersion:
        raise BackendUnavailableError(
            f"{what} reports version {text!r}, which is not a version number; fix: reinstall {what}"
        ) from None


def check_tensorrt_version(text: str) -> Version:
    """The parsed TensorRT version, or BackendUnavailableError when it is older than we support."""
    version = parse_version(text, "tensorrt")
    if version < MIN_TENSORRT:
        raise BackendUnavailableError(
            f"tensorrt {version} is older than {MIN_TENSORRT}, the oldest this code supports; "
            "fix: pip install -U 'tensorrt>=10' (desktop) or flash JetPack >= 6.0 (Jetson)"
        )
    return version


def max_opset_for(tensorrt_version: Version) -> int:
    """The newest ONNX opset this TensorRT's parser is known to read."""
    best = 0
    for since, opset in MAX_OPSET_BY_TENSORRT:
        if tensorrt_version >= since:
            best = opset
    return best


def same_build(built_with: str, running: str) -> bool:
    """Whether an engine serialized by TensorRT ``built_with`` deserializes under ``running``.

    TensorRT engines are tied to the exact release (major.minor.patch; the build number may
    differ) unless built version-compatible, which we do not do (it costs speed).
    """
    return release3(built_with) == release3(running)


def release3(text: str | Version) -> tuple[int, int, int]:
    """major.minor.patch of a version, zero-padded ("10.3" -> (10, 3, 0))."""
    release = Version(str(text)).release + (0, 0, 0)
    return release[0], release[1], release[2]


def require_same_build(built_with: str, running: str, engine: str) -> None:
    if not same_build(built_with, running):
        raise EngineMismatchError(
            f"engine {engine} was built with TensorRT {Version(built_with)}, this is "
            f"{Version(running)}; fix: run 'mlsan-engine build' to rebuild it here "
            "(engines do not move between TensorRT versions)"
        )

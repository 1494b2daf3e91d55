"""One way to open a small ONNX model for the CPU: quiet, a fixed number of threads.

The audio models (Silero VAD, segmentation-3.0, CAM++) each run on one stage thread; ONNX
Runtime's own inter-op pool would only compete with the other stages for the 2-4 cores.
"""

from __future__ import annotations

from pathlib import Path


def cpu_session(model_path: str | Path, threads: int, log_level: int = 4):
    """An ``onnxruntime.InferenceSession`` on the CPU provider with ``threads`` intra-op threads,
    one inter-op thread and only fatal log lines (4). Raises what ONNX Runtime raises for a
    missing or broken file: callers turn that into their own one-line error."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = log_level
    return ort.InferenceSession(
        str(model_path), sess_options=so, providers=["CPUExecutionProvider"]
    )

"""INT8 calibration for ML-SAN: recorded real inputs, ONNX Runtime static quantization on CPU,
the explicitly quantized (Q/DQ) graph for TensorRT INT8, and the accuracy of each against its
float original."""

from calibration.recorder import InputRecorder
from calibration.recording import Recording, RecordingError, meld_recording

__all__ = ["InputRecorder", "Recording", "RecordingError", "meld_recording"]

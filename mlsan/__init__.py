"""ML-SAN: the Multi-Level Speaker-Adaptive Network and everything to train and evaluate it.

Pure PyTorch + numpy: this package imports nothing from ``edge_app``, ``engines`` or
``calibration``.
"""

__version__ = "0.1.0"

"""mlsan-live: the live application (capture, perception, ML-SAN through an engine, UI)."""

__version__ = "0.1.0"

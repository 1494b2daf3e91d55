"""Record the inputs the live app really feeds the model, for calibration later.

The runtime calls ``recorder.record(inputs)`` after each inference (cheap: one copy of the
arrays under a lock). Memory is bounded: it keeps at most ``capacity`` dialogue samples, chosen by
reservoir sampling (each sample seen so far is kept with equal probability, so a long session is
represented evenly, not just its last minutes). ``save(path)`` writes a :class:`Recording`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from calibration.recording import Recording, split_batch
from engines.types import EmotionInputs


class InputRecorder:
    """Thread-safe, bounded (reservoir) recorder of model inputs."""

    def __init__(self, capacity: int = 512, seed: int = 0, source: str = "app") -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.source = source
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._samples: list[EmotionInputs] = []
        self._seen = 0

    @property
    def seen(self) -> int:
        """Samples offered so far (kept or not)."""
        with self._lock:
            return self._seen

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)

    def record(self, inputs: EmotionInputs) -> None:
        """Offer one batch (split into per-dialogue samples, padding trimmed)."""
        for sample in split_batch(inputs):  # split_batch copies, so callers may reuse buffers
            with self._lock:
                self._seen += 1
                if len(self._samples) < self.capacity:
                    self._samples.append(sample)
                else:
                    slot = int(self._rng.integers(0, self._seen))
                    if slot < self.capacity:
                        self._samples[slot] = sample

    def snapshot(self) -> Recording:
        with self._lock:
            samples = tuple(self._samples)
            seen = self._seen
        return Recording(samples, self.source, {"offered": seen, "capacity": self.capacity})

    def save(self, path: str | Path) -> Path:
        return self.snapshot().save(path)

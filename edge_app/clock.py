"""The one clock every message is stamped from.

Times are seconds on the *media clock*: 0.0 is the start of the run. Live sources read it from
``time.monotonic()``; file replay drives it from the file (sample or frame position), so a replay
stamps the same times on every run whatever the machine's speed. ``pace`` makes a replay wait
until the wall clock reaches a media time (real-time replay) or returns at once (as fast as
possible).
"""

from __future__ import annotations

import threading
import time


class MediaClock:
    """Shared by all sources of one run. Thread-safe: it only reads ``time.monotonic``."""

    def __init__(self, realtime: bool = True) -> None:
        self.realtime = realtime
        self._t0: float | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Fix media time 0 at the current wall time (idempotent: the first caller wins)."""
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()

    @property
    def started(self) -> bool:
        return self._t0 is not None

    def now(self) -> float:
        """Seconds since start on the wall clock (live sources stamp with this)."""
        self.start()
        assert self._t0 is not None
        return time.monotonic() - self._t0

    def wall_time_of(self, media_t: float) -> float:
        """The ``time.monotonic()`` value at which media time ``media_t`` is (or was) due."""
        self.start()
        assert self._t0 is not None
        return self._t0 + media_t

    def pace(self, media_t: float, stop: threading.Event | None = None) -> bool:
        """In real-time mode, wait until ``media_t`` is due; return False if ``stop`` was set.

        Waits on the stop event, not by sleep-polling, so shutdown interrupts it at once.
        """
        if not self.realtime:
            return not (stop is not None and stop.is_set())
        delay = self.wall_time_of(media_t) - time.monotonic()
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)

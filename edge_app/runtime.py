"""The one module that owns threads: sources, stage workers, bounded queues, stats, shutdown.

Shape of a run (built by ``edge_app.live_pipeline``)::

    source thread ──► StageQueue ──► stage worker ──► StageQueue(s) ──► ... ──► sink stage

* One thread per source (``iterate(stop)`` yields messages) and one per stage
  (``Stage.process(item) -> iterable`` and ``Stage.flush() -> iterable`` at end of stream), so a
  slow stage (speech recognition) never blocks another (face tracking, speaker embedding).
* Queues are bounded and say what they do when full (:class:`Overflow`): live audio waits a
  moment and then drops the chunk, *counting* the samples; video drops the oldest frame; stages
  behind them apply backpressure (block) so nothing else is lost.
* End of stream: a source that ends puts :data:`END` on its queue; each stage flushes and
  forwards it; a queue fed by several producers hands out END once all of them have ended. The
  run is over when every sink stage has seen END.
* Stopping. A failing stage or :meth:`Runtime.stop` sets one stop ``threading.Event``; every
  worker blocks on its queue with a timeout and checks it, so all stop within ``stop_timeout_s``.
  A stage that raises is reported by name (:class:`StageFailure`) and stops the run cleanly.
  Ctrl-C or SIGTERM (or :meth:`Runtime.interrupt`) *drains* instead: the sources stop and end
  their streams, so every stage finishes what was already heard (the VAD flushes its open
  segment, speech recognition transcribes it, its emotion is written), for at most
  ``drain_timeout_s``; a second signal cuts the drain short. While :meth:`Runtime.run` runs on
  the main thread it owns SIGINT and SIGTERM: a signal only counts (no exception lands inside a
  hook), so the on-stop hooks (summary record, gallery save) always run, once.
* Priority. A stage that has slack can be scheduled below the others (``add_stage(nice=N)``:
  its thread's nice value goes up by N, on Linux), so on a small CPU the stage on the critical
  path gets the cores first (the live run lowers the voice stage: see ``LiveOptions.voice_nice``).
* Stats (:meth:`Runtime.stats`) are immutable snapshots: queue depths, high-water marks, drops,
  per-stage item counts, latency (median/p95/last) and CPU seconds (thread CPU time).
"""

from __future__ import annotations

import enum
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mlsan.errors import UserFacingError


class _EndOfStream:
    _instance: _EndOfStream | None = None

    def __new__(cls) -> _EndOfStream:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "END"


END: Any = _EndOfStream()  # the end-of-stream marker that flows through every queue


def lower_thread_priority(by: int) -> bool:
    """Raise the calling thread's nice value by ``by`` (at most to 19). On Linux
    ``setpriority`` on a thread id changes that thread only, and lowering a priority needs no
    privileges. False (nothing changed) for ``by`` <= 0, on other systems, or if refused."""
    if by <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except OSError:
        return False
    return True


class StageFailure(UserFacingError):
    """A stage raised: the message names the stage and the error (one line)."""

    exit_code = 1


class Overflow(enum.Enum):
    BLOCK = "block"  # wait for room (backpressure); never loses anything
    DROP_OLDEST = "drop-oldest"  # make room by discarding the oldest item (video frames)
    DROP_NEWEST = "drop-newest-counted"  # wait up to put_timeout_s, then drop the new item, count


@dataclass(frozen=True)
class QueueStats:
    name: str
    policy: str
    depth: int
    maxsize: int
    high_water: int
    dropped: int  # items
    dropped_units: int  # what the items hold (audio samples, frames), per ``units_of``
    units: str


class StageQueue:
    """A bounded queue with a stated overflow policy, drop counters and multi-producer END."""

    def __init__(
        self,
        name: str,
        maxsize: int,
        policy: Overflow,
        *,
        producers: int = 1,
        put_timeout_s: float = 0.5,
        units_of: Callable[[Any], int] | None = None,
        units: str = "items",
        accepts: Callable[[Any], bool] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("a StageQueue must be bounded (maxsize >= 1)")
        self.name = name
        self.policy = policy
        self.maxsize = maxsize
        self.put_timeout_s = put_timeout_s
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._producers = producers
        self._ends_seen = 0
        self._units_of = units_of or (lambda _item: 1)
        self._units = units
        # Items this queue is not for (a stage feeding several queues with different kinds of
        # message) are passed over: not queued, not counted as dropped.
        self._accepts = accepts
        self._lock = threading.Lock()
        self.dropped = 0
        self.dropped_units = 0
        self.high_water = 0

    def _count_drop(self, item: Any) -> None:
        with self._lock:
            self.dropped += 1
            self.dropped_units += int(self._units_of(item))

    def _note_depth(self) -> None:
        depth = self._q.qsize()
        if depth > self.high_water:
            self.high_water = depth

    def put(self, item: Any, stop: threading.Event) -> bool:
        """Enqueue per the policy; False if the item was dropped, is not for this queue
        (``accepts``) or the run is stopping."""
        if item is END:
            return self._put_end(stop)
        if self._accepts is not None and not self._accepts(item):
            return False
        if self.policy is Overflow.DROP_OLDEST:
            while True:
                try:
                    self._q.put_nowait(item)
                    self._note_depth()
                    return True
                except queue.Full:
                    try:
                        old = self._q.get_nowait()
                    except queue.Empty:
                        continue
                    if old is END:  # never discard the end marker; keep it last
                        self._q.put_nowait(old)
                        self._count_drop(item)
                        return False
                    self._count_drop(old)
        deadline = None
        if self.policy is Overflow.DROP_NEWEST:
            deadline = time.monotonic() + self.put_timeout_s
        while not stop.is_set():
            timeout = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if timeout <= 0:
                self._count_drop(item)
                return False
            try:
                self._q.put(item, timeout=timeout)
                self._note_depth()
                return True
            except queue.Full:
                continue
        return False

    def _put_end(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                self._q.put(END, timeout=0.1)
                return True
            except queue.Full:
                if self.policy is Overflow.DROP_OLDEST:
                    try:
                        self._count_drop(self._q.get_nowait())
                    except queue.Empty:
                        pass
        return False

    def get(self, timeout: float) -> Any:
        """Next item, or END once every producer has ended; raises ``queue.Empty`` on timeout."""
        while True:
            item = self._q.get(timeout=timeout)
            if item is not END:
                return item
            with self._lock:
                self._ends_seen += 1
                if self._ends_seen >= self._producers:
                    return END

    def qsize(self) -> int:
        return self._q.qsize()

    def stats(self) -> QueueStats:
        with self._lock:
            return QueueStats(
                self.name,
                self.policy.value,
                self._q.qsize(),
                self.maxsize,
                self.high_water,
                self.dropped,
                self.dropped_units,
                self._units,
            )


# A source is any ``iterate(stop) -> Iterator[message]`` that returns when exhausted or when
# ``stop`` is set (``FileAudioSource.chunks``, ``CameraSource.frames``, ...).
SourceIter = Callable[[threading.Event], Iterator[Any]]


class Stage(Protocol):
    """A plain stateful object; knows nothing of threads or queues."""

    def process(self, item: Any) -> Iterable[Any]: ...

    def flush(self) -> Iterable[Any]: ...


@dataclass(frozen=True)
class StageStats:
    name: str
    items: int
    latency_median_ms: float | None  # wall time of ``process`` per item, over recent items
    latency_p95_ms: float | None
    latency_last_ms: float | None
    cpu_s: float  # thread CPU time spent so far
    alive: bool


@dataclass(frozen=True)
class RuntimeStats:
    wall_s: float
    queues: tuple[QueueStats, ...]
    stages: tuple[StageStats, ...]
    errors: tuple[str, ...]
    stopping: bool = False  # interrupted: the sources stopped, the stages finish what was heard

    def queue(self, name: str) -> QueueStats | None:
        return next((q for q in self.queues if q.name == name), None)

    def stage(self, name: str) -> StageStats | None:
        return next((s for s in self.stages if s.name == name), None)


class _Meter:
    """Per-thread counters, written by its own thread, read by any (values, not references)."""

    def __init__(self, window: int = 256) -> None:
        self.items = 0
        self.cpu_s = 0.0
        self._latencies: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()  # the deque is appended and copied on different threads

    def add_latency(self, seconds: float) -> None:
        with self._lock:
            self._latencies.append(seconds)

    def snapshot(self, name: str, alive: bool) -> StageStats:
        with self._lock:
            lat = np.asarray(self._latencies, dtype=np.float64)
        if lat.size:
            med, p95, last = (
                float(np.median(lat)) * 1e3,
                float(np.percentile(lat, 95)) * 1e3,
                float(lat[-1]) * 1e3,
            )
        else:
            med = p95 = last = None
        return StageStats(name, self.items, med, p95, last, self.cpu_s, alive)


@dataclass
class _Worker:
    name: str
    thread: threading.Thread
    meter: _Meter
    sink: bool


class Runtime:
    """Owns the threads of one run. Add sources and stages, then :meth:`run`."""

    # How often the main thread looks at the interrupt counter and the end of the run.
    POLL_S = 0.05

    def __init__(
        self,
        stop_timeout_s: float = 2.0,
        get_timeout_s: float = 0.1,
        drain_timeout_s: float = 2.0,
    ) -> None:
        self.stop_event = threading.Event()  # hard stop: every thread leaves at once
        # Sources only: set by a hard stop and by an interrupt (then the stages drain).
        self.sources_stop = threading.Event()
        self.stop_timeout_s = stop_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.get_timeout_s = get_timeout_s
        self._queues: list[StageQueue] = []
        self._workers: list[_Worker] = []
        self._errors: list[tuple[str, BaseException]] = []
        self._errors_lock = threading.Lock()
        self._sinks_left = 0
        self._sinks_lock = threading.Lock()
        self._all_done = threading.Event()
        self._t0: float | None = None
        self._on_stop: list[tuple[str, Callable[[], None]]] = []
        self.interrupted = False
        self.drained: bool | None = None  # after an interrupt: did every sink reach END in time
        self.unstopped: tuple[str, ...] = ()
        # Signals seen while running. A plain int written by the signal handler (which must not
        # take a lock the interrupted main thread may hold) and read by the main thread's loop.
        self._interrupts = 0

    # -- building -------------------------------------------------------------------------
    def queue(self, name: str, maxsize: int, policy: Overflow, **kwargs: Any) -> StageQueue:
        q = StageQueue(name, maxsize, policy, **kwargs)
        self._queues.append(q)
        return q

    def add_source(
        self,
        name: str,
        iterate: SourceIter,
        outputs: Iterable[StageQueue],
        *,
        on_item: Callable[[Any], None] | None = None,
    ) -> None:
        """A thread that runs ``iterate(stop)`` and puts each item on ``outputs``.

        ``on_item(item)`` is called first for each item (e.g. to note when audio arrived).
        """
        outs = tuple(outputs)
        meter = _Meter()

        def body() -> None:
            t_cpu = time.thread_time()
            try:
                # The source sees ``sources_stop``: on an interrupt it ends its stream normally
                # (END follows), so the stages behind it drain.
                for item in iterate(self.sources_stop):
                    if on_item is not None:
                        on_item(item)
                    meter.items += 1
                    meter.cpu_s = time.thread_time() - t_cpu
                    for q in outs:
                        q.put(item, self.stop_event)
                    if self.sources_stop.is_set():
                        break
            finally:
                meter.cpu_s = time.thread_time() - t_cpu
            for q in outs:  # only on a normal end: a failure stops the whole run instead
                q.put(END, self.stop_event)

        self._add_thread(name, body, meter, sink=False)

    def add_stage(
        self,
        name: str,
        stage: Stage,
        input: StageQueue,
        outputs: Iterable[StageQueue] = (),
        nice: int = 0,
    ) -> None:
        """A worker thread for ``stage``; each result goes to every output queue. With no
        outputs it is a sink: the run ends when every sink has seen END. ``nice`` > 0 schedules
        the thread that much below the rest of the run (:func:`lower_thread_priority`)."""
        outs = tuple(outputs)
        meter = _Meter()
        stop = self.stop_event
        get_timeout = self.get_timeout_s

        def emit(results: Iterable[Any] | None) -> None:
            for out in results or ():
                for q in outs:
                    q.put(out, stop)

        def body() -> None:
            lower_thread_priority(nice)
            t_cpu = time.thread_time()
            try:
                while not stop.is_set():
                    try:
                        item = input.get(timeout=get_timeout)
                    except queue.Empty:
                        continue
                    if item is END:
                        emit(stage.flush())
                        break
                    t = time.perf_counter()
                    results = list(stage.process(item) or ())
                    meter.add_latency(time.perf_counter() - t)
                    meter.items += 1
                    meter.cpu_s = time.thread_time() - t_cpu
                    emit(results)
            finally:
                meter.cpu_s = time.thread_time() - t_cpu
            for q in outs:  # only on a normal end: a failure stops the whole run instead
                q.put(END, stop)

        self._add_thread(name, body, meter, sink=not outs)

    def on_stop(self, name: str, func: Callable[[], None]) -> None:
        """Run ``func`` once after all threads stopped (flush events, save gallery), in order."""
        self._on_stop.append((name, func))

    def _add_thread(self, name: str, body: Callable[[], None], meter: _Meter, sink: bool) -> None:
        def guarded() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - reported by name, then the run stops
                with self._errors_lock:
                    self._errors.append((name, exc))
                self.stop_event.set()
            finally:
                if sink:
                    with self._sinks_lock:
                        self._sinks_left -= 1
                        if self._sinks_left <= 0:
                            self._all_done.set()
                self._wake()

        thread = threading.Thread(target=guarded, name=f"mlsan-{name}", daemon=True)
        self._workers.append(_Worker(name, thread, meter, sink))
        if sink:
            self._sinks_left += 1

    def _wake(self) -> None:
        if self.stop_event.is_set():
            self._all_done.set()

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        if not any(w.sink for w in self._workers):
            raise ValueError("a run needs at least one sink stage")
        self._t0 = time.monotonic()
        for w in self._workers:
            w.thread.start()

    def stop(self) -> None:
        """Ask every thread to stop now (idempotent, callable from any thread)."""
        self.stop_event.set()
        self.sources_stop.set()
        self._all_done.set()

    def interrupt(self) -> None:
        """Ctrl-C: stop the sources and drain (see the module docstring); a second call stops
        at once. Only counts, so it is safe in a signal handler; :meth:`run` acts on it."""
        self._interrupts += 1

    @contextmanager
    def _signals_counted(self):
        """On the main thread, SIGINT and SIGTERM only call :meth:`interrupt` while the run
        lasts (restored after), so no KeyboardInterrupt can cut a hook in half."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signum, _frame: self.interrupt())
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait_for_end(self, on_tick: Callable[[], None] | None, tick_s: float) -> None:
        """Main-thread loop: the end of the run, a failure, or an interrupt (then a bounded
        drain, cut short by a second interrupt)."""
        next_tick = time.monotonic() + tick_s
        drain_deadline: float | None = None
        while True:
            try:
                if self._all_done.wait(self.POLL_S):
                    break
            except KeyboardInterrupt:  # a caller's own SIGINT handler (not inside run())
                self.interrupt()
            now = time.monotonic()
            if self._interrupts and drain_deadline is None:
                self.interrupted = True
                self.sources_stop.set()
                drain_deadline = now + self.drain_timeout_s
            if drain_deadline is not None and (self._interrupts > 1 or now >= drain_deadline):
                break
            if on_tick is not None and now >= next_tick:
                next_tick = now + tick_s
                on_tick()
        if self._interrupts and not self.interrupted:  # came in as the run ended by itself
            self.interrupted = True
        if self.interrupted:
            with self._sinks_lock:
                self.drained = self._sinks_left <= 0 and not self.stop_event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (all sinks done, a failure, or stop). True when it ended."""
        return self._all_done.wait(timeout)

    def run(self, on_tick: Callable[[], None] | None = None, tick_s: float = 0.5) -> None:
        """Start, wait for the end (Ctrl-C stops it), shut down, run the on-stop hooks.

        Raises :class:`StageFailure` naming the first stage that failed.
        """
        with self._signals_counted():
            self.start()
            try:
                self._wait_for_end(on_tick, tick_s)
            finally:
                self.shutdown()
        self.raise_failure()

    def shutdown(self) -> None:
        """Set stop, join every thread within ``stop_timeout_s`` in total, then run the hooks."""
        self.stop()
        deadline = time.monotonic() + self.stop_timeout_s
        for w in self._workers:
            if w.thread.ident is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))
        self.unstopped = tuple(w.name for w in self._workers if w.thread.is_alive())
        for name, func in self._on_stop:
            try:
                func()
            except Exception as exc:  # noqa: BLE001 - a failing hook must not skip the others
                with self._errors_lock:
                    self._errors.append((name, exc))
        self._on_stop = []

    def raise_failure(self) -> None:
        failure = self.failure()
        if failure is not None:
            raise failure

    def failure(self) -> StageFailure | None:
        with self._errors_lock:
            errors = [(n, e) for n, e in self._errors if not isinstance(e, KeyboardInterrupt)]
        if not errors:
            return None
        name, exc = errors[0]
        if isinstance(exc, UserFacingError):
            return StageFailure(f"{name}: {exc}")
        detail = str(exc) or "(no message)"
        return StageFailure(f"stage '{name}' failed: {type(exc).__name__}: {detail}")

    def stage_exception(self) -> BaseException | None:
        """The original exception of the first failure (for --debug tracebacks)."""
        with self._errors_lock:
            return self._errors[0][1] if self._errors else None

    def stats(self) -> RuntimeStats:
        wall = 0.0 if self._t0 is None else time.monotonic() - self._t0
        with self._errors_lock:
            errors = tuple(f"{n}: {type(e).__name__}: {e}" for n, e in self._errors)
        return RuntimeStats(
            wall_s=wall,
            queues=tuple(q.stats() for q in self._queues),
            stages=tuple(w.meter.snapshot(w.name, w.thread.is_alive()) for w in self._workers),
            errors=errors,
            stopping=self._interrupts > 0,
        )

"""Audio sources: a microphone (PyAudio) and a file replay (PyAV), both 16 kHz mono float32.

API (both sources)::

    src = FileAudioSource("talk.wav", clock)          # or MicSource(clock, device="USB")
    for chunk in src.chunks(stop):                     # stop: threading.Event
        ...                                            # AudioChunk, times on the media clock
    src.stats()                                        # SourceStats: chunks, seconds, overruns,
    src.close()                                        #   dropped_samples

- ``chunks(stop)`` is a generator run by the caller's thread. It returns when ``stop`` is set,
  when the file ends, or (mic) after ``close()``. It never blocks longer than ``poll_s``
  without re-checking ``stop``.
- ``MicSource``: the PyAudio callback only copies the block into a bounded queue
  (``queue_s`` seconds of audio). Overflow policy: when the queue is full the NEW block is
  dropped and counted; the next chunk delivered carries ``dropped_before`` = samples lost, and
  ``stats()`` reports totals. PortAudio input overflows (the driver's own) are counted as
  ``overruns``. Chunks are stamped with ``clock.now()`` taken in the callback, minus the block's
  duration (the time of its first sample). A device that cannot do 16 kHz is opened at its
  native rate and resampled in the consumer thread, never in the callback.
- ``FileAudioSource``: decodes wav/flac/mp3/... or the first audio track of a video with PyAV,
  resampled to 16 kHz mono. Chunks are stamped from the sample position
  (``offset_s + n / 16000``), so replays are reproducible. With a real-time clock each chunk is
  released when its last sample is due (``clock.pace``); with ``MediaClock(realtime=False)`` as
  fast as possible.
- ``list_input_devices()`` lists microphones; ``load_audio(path)`` decodes a whole file.
- Errors the user can fix (missing/busy device, unreadable file, PyAudio missing) raise
  ``AudioSourceError`` (a ``UserFacingError``) with one line naming the fix.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.clock import MediaClock
from edge_app.messages import SAMPLE_RATE, AudioChunk
from edge_app.native_stderr import quiet_native_stderr
from mlsan.errors import UserFacingError

CHUNK_SAMPLES = 512  # 32 ms: one Silero VAD window at 16 kHz


class AudioSourceError(UserFacingError):
    """A microphone or audio file that cannot be used (message names the fix)."""


@dataclass(frozen=True)
class SourceStats:
    chunks: int  # chunks delivered
    seconds: float  # audio delivered, seconds
    overruns: int  # input overflows reported by the driver (PortAudio)
    dropped_samples: int  # samples lost because the consumer was too slow (queue full)


@dataclass(frozen=True)
class AudioDevice:
    index: int
    name: str
    max_input_channels: int
    default_sample_rate: float


# ----------------------------------------------------------------------------- microphone


def _pyaudio():
    try:
        import pyaudio  # heavy/hardware library: imported only where needed
    except ImportError as exc:
        raise AudioSourceError(
            f"PyAudio is not installed ({exc}); fix: apt-get install portaudio19-dev && "
            "pip install pyaudio"
        ) from None
    return pyaudio


def _new_pyaudio(pyaudio):
    with quiet_native_stderr():
        return pyaudio.PyAudio()


def list_input_devices() -> list[AudioDevice]:
    """Every PortAudio device with at least one input channel."""
    pyaudio = _pyaudio()
    pa = _new_pyaudio(pyaudio)
    try:
        out = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) > 0:
                out.append(
                    AudioDevice(
                        index=i,
                        name=str(info.get("name", f"device {i}")),
                        max_input_channels=int(info["maxInputChannels"]),
                        default_sample_rate=float(info.get("defaultSampleRate", 0.0)),
                    )
                )
        return out
    finally:
        pa.terminate()


def resolve_device(devices: list[AudioDevice], device: int | str | None) -> AudioDevice | None:
    """Pick an input device by index, by (case-insensitive) name substring, or None = default."""
    if device is None:
        return None
    listing = ", ".join(f"{d.index}: {d.name}" for d in devices) or "none"
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        idx = int(device)
        for d in devices:
            if d.index == idx:
                return d
        raise AudioSourceError(
            f"no microphone with index {idx} (inputs: {listing}); fix: pick one from "
            "`mlsan-live audio-devices`"
        )
    matches = [d for d in devices if device.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioSourceError(
            f"no microphone named like {device!r} (inputs: {listing}); fix: pick one from "
            "`mlsan-live audio-devices`"
        )
    raise AudioSourceError(
        f"{device!r} matches several microphones ({', '.join(d.name for d in matches)}); "
        "fix: give its index instead"
    )


class StreamResampler:
    """Stateful resampler for a live stream: anti-alias FIR (kept state) + linear interpolation.

    Runs in the consumer thread. Good enough for speech at 44.1/48 kHz -> 16 kHz.
    """

    def __init__(self, rate_in: float, rate_out: int = SAMPLE_RATE) -> None:
        from scipy.signal import firwin

        self.ratio = rate_in / rate_out
        cutoff = min(0.45 * rate_out, 0.45 * rate_in) / (rate_in / 2)
        self._taps = firwin(63, cutoff).astype(np.float64)
        self._zi = np.zeros(len(self._taps) - 1)
        self._pos = 0.0  # position of the next output sample, in input samples of `_tail`
        self._tail = np.zeros(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        y, self._zi = lfilter(self._taps, 1.0, x.astype(np.float64), zi=self._zi)
        buf = np.concatenate([self._tail, y])
        n_out = int(np.floor((len(buf) - 1 - self._pos) / self.ratio)) + 1
        if n_out <= 0:
            self._tail = buf
            return np.zeros(0, np.float32)
        pos = self._pos + self.ratio * np.arange(n_out)
        out = np.interp(pos, np.arange(len(buf)), buf)
        next_pos = self._pos + self.ratio * n_out
        keep = min(int(np.floor(next_pos)), len(buf))
        self._tail = buf[keep:]
        self._pos = next_pos - keep
        return out.astype(np.float32)


class MicSource:
    """Live microphone through PyAudio (see module docstring for the overflow policy)."""

    def __init__(
        self,
        clock: MediaClock,
        device: int | str | None = None,
        chunk_samples: int = CHUNK_SAMPLES,
        queue_s: float = 10.0,
        poll_s: float = 0.1,
    ) -> None:
        self.clock = clock
        self.device = device
        self.chunk_samples = chunk_samples
        self.poll_s = poll_s
        self._queue: queue.Queue[tuple[float, bytes]] = queue.Queue(
            maxsize=max(1, int(queue_s * SAMPLE_RATE / chunk_samples))
        )
        self._lock = threading.Lock()  # guards the counters the callback writes
        self._overruns = 0
        self._dropped = 0  # samples dropped since the last delivered chunk (at native rate)
        self._dropped_total = 0
        self._chunks = 0
        self._samples = 0
        self._pa = None
        self._stream = None
        self._rate = SAMPLE_RATE
        self._closed = threading.Event()
        self._open()

    def _open(self) -> None:
        pyaudio = _pyaudio()
        devices = list_input_devices()
        if not devices:
            raise AudioSourceError(
                "no microphone found (PortAudio lists no input device); fix: plug one in, check "
                "permissions (the 'audio' group), or replay a file with --audio FILE"
            )
        chosen = resolve_device(devices, self.device)
        self._pa = _new_pyaudio(pyaudio)
        index = chosen.index if chosen else None
        rates = [SAMPLE_RATE]
        native = chosen.default_sample_rate if chosen else devices[0].default_sample_rate
        if native and int(native) != SAMPLE_RATE:
            rates.append(int(native))
        last_exc: Exception | None = None
        for rate in rates:
            frames = max(1, int(round(self.chunk_samples * rate / SAMPLE_RATE)))
            try:
                self._stream = self._pa.open(
                    format=pyaudio.paFloat32,
                    channels=1,
                    rate=rate,
                    input=True,
                    input_device_index=index,
                    frames_per_buffer=frames,
                    stream_callback=self._callback,
                    start=False,
                )
                self._rate = rate
                break
            except (OSError, ValueError) as exc:
                last_exc = exc
        if self._stream is None:
            self._pa.terminate()
            name = chosen.name if chosen else "the default input"
            raise AudioSourceError(
                f"cannot open microphone {name!r} ({last_exc}); it may be busy or unplugged; "
                "fix: close other apps using it or pick another with --mic"
            )
        self._resampler = StreamResampler(self._rate) if self._rate != SAMPLE_RATE else None
        self._input_overflow_flag = pyaudio.paInputOverflow
        self._continue = pyaudio.paContinue

    # PortAudio's thread: copy and enqueue only; never block, never allocate much.
    def _callback(self, in_data, frame_count, time_info, status_flags):
        t_first = self.clock.now() - frame_count / self._rate
        if status_flags & self._input_overflow_flag:
            with self._lock:
                self._overruns += 1
        try:
            self._queue.put_nowait((t_first, in_data))
        except queue.Full:
            with self._lock:
                self._dropped += frame_count
                self._dropped_total += frame_count
        return (None, self._continue)

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]:
        assert self._stream is not None
        self.clock.start()
        self._stream.start_stream()
        try:
            while not stop.is_set() and not self._closed.is_set():
                try:
                    t_first, data = self._queue.get(timeout=self.poll_s)
                except queue.Empty:
                    continue
                samples = np.frombuffer(data, dtype=np.float32)
                if self._resampler is not None:
                    samples = self._resampler(samples)
                with self._lock:
                    dropped = self._dropped
                    self._dropped = 0
                dropped = int(round(dropped * SAMPLE_RATE / self._rate))
                yield AudioChunk(
                    t_start=t_first,
                    samples=samples.copy(),
                    index=self._chunks,
                    dropped_before=dropped,
                )
                self._chunks += 1
                self._samples += len(samples)
        finally:
            if self._stream is not None and not self._closed.is_set():
                self._stream.stop_stream()

    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(
                chunks=self._chunks,
                seconds=self._samples / SAMPLE_RATE,
                overruns=self._overruns,
                dropped_samples=int(round(self._dropped_total * SAMPLE_RATE / self._rate)),
            )

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._stream is not None:
            try:
                self._stream.stop_stream()
                self._stream.close()
            except OSError:
                pass
        if self._pa is not None:
            self._pa.terminate()


# ----------------------------------------------------------------------------- files


def _open_container(path: Path):
    import av

    if not path.exists():
        raise AudioSourceError(f"audio file {path} does not exist; fix: check the path")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioSourceError(
            f"cannot read {path} as audio ({exc}); fix: give a wav/flac/mp3 file or a video "
            "with an audio track"
        ) from None
    if not container.streams.audio:
        container.close()
        raise AudioSourceError(
            f"{path} has no audio track; fix: give a file with sound (or use --video for video "
            "only)"
        )
    return container


def _decode_16k(path: Path) -> Iterator[np.ndarray]:
    """Decoded blocks of 16 kHz mono float32 from the first audio track."""
    import av

    container = _open_container(path)
    try:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        except av.error.FFmpegError as exc:
            raise AudioSourceError(
                f"{path} is damaged: decoding failed ({exc}); fix: re-encode or replace it"
            ) from None
    finally:
        container.close()


def load_audio(path: str | Path) -> np.ndarray:
    """A whole file as (n,) float32, 16 kHz mono."""
    blocks = list(_decode_16k(Path(path)))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


class FileAudioSource:
    """Replay of an audio file or of a video's audio track (see module docstring)."""

    def __init__(
        self,
        path: str | Path,
        clock: MediaClock,
        chunk_samples: int = CHUNK_SAMPLES,
        offset_s: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.chunk_samples = chunk_samples
        self.offset_s = offset_s
        _open_container(self.path).close()  # fail now, with one line, if it cannot be read
        self._chunks = 0
        self._samples = 0

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]:
        self.clock.start()
        pending = np.zeros(0, np.float32)
        n = self.chunk_samples

        def emit(block: np.ndarray) -> AudioChunk:
            t0 = self.offset_s + self._samples / SAMPLE_RATE
            chunk = AudioChunk(t_start=t0, samples=block, index=self._chunks)
            self._chunks += 1
            self._samples += len(block)
            return chunk

        for block in _decode_16k(self.path):
            pending = np.concatenate([pending, block]) if len(pending) else block
            while len(pending) >= n:
                chunk = emit(pending[:n].copy())
                pending = pending[n:]
                if not self.clock.pace(chunk.t_end, stop):
                    return
                yield chunk
        if len(pending):
            chunk = emit(pending.copy())
            if self.clock.pace(chunk.t_end, stop):
                yield chunk

    def stats(self) -> SourceStats:
        return SourceStats(
            chunks=self._chunks,
            seconds=self._samples / SAMPLE_RATE,
            overruns=0,
            dropped_samples=0,
        )

    def close(self) -> None:
        """Nothing to release (the decoder is closed when ``chunks`` ends)."""

"""Frame sources (camera, video file) on the shared media clock, and a drop-oldest frame queue.

Sources own no threads: the runtime iterates ``frames(stop)`` on its capture thread and puts the
frames into a :class:`FrameQueue`; the face stage takes them out on its own thread. When the
face stage falls behind, the queue drops the *oldest* frame (live video should show now, not
the past) and counts it.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.clock import MediaClock
from edge_app.messages import VideoFrame
from mlsan.errors import UserFacingError


class CameraError(UserFacingError):
    """The camera cannot be opened or stopped delivering frames."""


class VideoFileError(UserFacingError):
    """A video file is missing or cannot be decoded."""


@dataclass(frozen=True)
class CameraOptions:
    index: int = 0  # OpenCV device index (/dev/video<index> on Linux)
    width: int = 640
    height: int = 480
    fps: float = 30.0
    open_timeout_s: float = 5.0  # bound on open + first frame (OpenCV can probe for long)
    read_timeout_s: float = 2.0  # a live camera that sends nothing for this long is an error


def _bounded_call(func, timeout_s: float, what: str):
    """Run ``func()`` with a time bound; raise TimeoutError if it does not return in time.

    OpenCV's open/read cannot be interrupted, so the call runs on a short-lived daemon helper; on
    timeout the helper is abandoned (it holds only the half-open device) and the caller fails.
    """
    result: list = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(func())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    helper = threading.Thread(target=target, name=f"bounded-{what}", daemon=True)
    helper.start()
    helper.join(timeout_s)
    if helper.is_alive():
        raise TimeoutError(what)
    if error:
        raise error[0]
    return result[0]


def _device_node_exists(index: int) -> bool:
    """False only when we know there is no such camera (Linux without /dev/video<index>)."""
    return not sys.platform.startswith("linux") or Path(f"/dev/video{index}").exists()


class CameraSource:
    """A live OpenCV camera; frames are stamped with ``clock.now()`` when read."""

    def __init__(self, options: CameraOptions, clock: MediaClock) -> None:
        self.options = options
        self.clock = clock
        self._cap = None
        self._first: np.ndarray | None = None
        self._index = 0

    def _fix(self) -> str:
        return (
            f"check the camera is connected and free (ls /dev/video*), or pick another with "
            f"--camera N; got --camera {self.options.index}"
        )

    def open(self) -> None:
        """Open the device and read one frame within ``open_timeout_s``; CameraError otherwise."""
        if self._cap is not None:
            return
        import cv2

        opt = self.options
        if opt.index < 0:
            raise CameraError(f"camera index must be >= 0: {self._fix()}")
        # On Linux a missing device node is certain failure: say so at once instead of probing.
        if not _device_node_exists(opt.index):
            raise CameraError(f"no camera /dev/video{opt.index}: {self._fix()}")

        def open_and_read():
            backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(opt.index, backend)
            if not cap.isOpened():
                cap.release()
                return None, None
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, opt.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, opt.height)
            cap.set(cv2.CAP_PROP_FPS, opt.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # we want the newest frame, not a backlog
            cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, opt.read_timeout_s * 1000)
            ok, image = cap.read()
            if not ok or image is None:
                cap.release()
                return None, None
            return cap, image

        try:
            cap, image = _bounded_call(open_and_read, opt.open_timeout_s, "camera-open")
        except TimeoutError:
            raise CameraError(
                f"camera {opt.index} did not deliver a frame within {opt.open_timeout_s:.0f} s: "
                f"{self._fix()}"
            ) from None
        if cap is None:
            raise CameraError(f"camera {opt.index} could not be opened or read: {self._fix()}")
        self._cap = cap
        self._first = image
        # The clock starts with the first frame handed out (``_frame``), not here: a caller may
        # open the camera early to fail fast, and media time 0 is when the run's threads start.

    def frames(self, stop: threading.Event) -> Iterator[VideoFrame]:
        """Yield frames until ``stop`` is set (opens the camera first if needed)."""
        self.open()
        assert self._cap is not None
        if self._first is not None:
            image, self._first = self._first, None
            yield self._frame(image)
        while not stop.is_set():
            # A plain read: V4L2 waits for a frame with select() and its own timeout, and
            # CAP_PROP_READ_TIMEOUT_MSEC bounds the other backends (set in open).
            ok, image = self._cap.read()
            if not ok or image is None:
                if stop.is_set():
                    return
                raise CameraError(
                    f"camera {self.options.index} stopped sending frames "
                    f"(read failed): {self._fix()}"
                )
            yield self._frame(image)

    def _frame(self, image: np.ndarray) -> VideoFrame:
        frame = VideoFrame(index=self._index, t=self.clock.now(), image=image)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoFileSource:
    """A video file replayed on the media clock: frame ``i`` is stamped ``t_offset + i / fps``.

    With ``clock.realtime`` each frame is held back until its media time is due (real-time
    replay, as a camera would deliver it); otherwise frames come as fast as they decode. Either
    way the stamps are the same, so a replay is reproducible.
    """

    def __init__(
        self,
        path: str | Path,
        clock: MediaClock,
        max_frames: int | None = None,
        t_offset: float = 0.0,
        fps: float | None = None,
    ) -> None:
        """``fps`` overrides the file's frame rate (a container that lies, or a faster replay)."""
        import cv2

        self.path = Path(path)
        self.clock = clock
        self.max_frames = max_frames
        self.t_offset = t_offset
        if not self.path.is_file():
            raise VideoFileError(f"video file not found: {self.path} (give an existing file)")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise VideoFileError(
                f"cannot decode video {self.path}: not a video OpenCV/FFmpeg can read "
                "(convert it with: ffmpeg -i IN -c:v libx264 OUT.mp4)"
            )
        file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if fps is not None:
            if not 0.1 <= fps <= 1000.0:
                cap.release()
                raise VideoFileError(f"replay frame rate must be in [0.1, 1000] fps, got {fps}")
            self._fps = float(fps)
        else:
            # Some containers report no or absurd rates; 30 fps is the camera default.
            self._fps = file_fps if 1.0 <= file_fps <= 240.0 else 30.0
        self._count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._size = (
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self._cap = cap
        self.frames_read = 0

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def frame_count(self) -> int:
        """Frames the container announces (may be approximate; 0 when unknown)."""
        return self._count

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self._size

    @property
    def duration(self) -> float:
        return self._count / self._fps if self._count else 0.0

    def frames(self, stop: threading.Event) -> Iterator[VideoFrame]:
        if self._cap is None:
            raise VideoFileError(f"video {self.path} is closed (make a new VideoFileSource)")
        self.clock.start()
        index = 0
        while not stop.is_set():
            if self.max_frames is not None and index >= self.max_frames:
                break
            ok, image = self._cap.read()
            if not ok or image is None:
                break
            t = self.t_offset + index / self._fps
            if not self.clock.pace(t, stop):
                break
            yield VideoFrame(index=index, t=t, image=image)
            index += 1
            self.frames_read = index
        if index == 0 and not stop.is_set():
            raise VideoFileError(f"video {self.path} has no decodable frames (is it corrupt?)")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameQueue:
    """Bounded, thread-safe FIFO of frames that drops the oldest frame when full.

    ``put`` never blocks (the capture thread must keep up with the camera); ``get(timeout)``
    blocks up to ``timeout`` and returns None on timeout or once the queue is closed and drained.
    """

    def __init__(self, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ValueError("FrameQueue maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: deque[VideoFrame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropped = 0
        self._put = 0

    def put(self, frame: VideoFrame) -> bool:
        """Add a frame; returns False when an older frame was dropped to make room."""
        with self._cond:
            if self._closed:
                raise RuntimeError("put on a closed FrameQueue")
            kept_all = True
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                self._dropped += 1
                kept_all = False
            self._items.append(frame)
            self._put += 1
            self._cond.notify()
            return kept_all

    def get(self, timeout: float | None = None) -> VideoFrame | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """No more frames will come; waiting ``get`` calls return None once drained."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def put_count(self) -> int:
        return self._put

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

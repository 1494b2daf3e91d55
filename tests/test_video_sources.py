"""Frame sources and the drop-oldest frame queue (fakes and the small real fixtures)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_app.clock import MediaClock
from edge_app.messages import VideoFrame
from edge_app.video.sources import (
    CameraError,
    CameraOptions,
    CameraSource,
    FrameQueue,
    VideoFileError,
    VideoFileSource,
    _bounded_call,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _frame(i: int) -> VideoFrame:
    return VideoFrame(index=i, t=i / 30, image=np.zeros((4, 4, 3), np.uint8))


def test_queue_drops_oldest_and_counts():
    q = FrameQueue(maxsize=2)
    assert q.put(_frame(0)) and q.put(_frame(1))
    assert not q.put(_frame(2))  # 0 dropped
    assert not q.put(_frame(3))  # 1 dropped
    assert q.dropped == 2 and q.put_count == 4
    assert [q.get(0).index, q.get(0).index] == [2, 3]
    assert q.get(timeout=0.01) is None  # empty: times out


def test_queue_get_wakes_on_put_and_on_close():
    q = FrameQueue(maxsize=1)
    got = []

    def consumer():
        while (frame := q.get(timeout=5)) is not None:
            got.append(frame.index)

    worker = threading.Thread(target=consumer)
    worker.start()
    for i in range(3):
        q.put(_frame(i))
        time.sleep(0.02)
    started = time.monotonic()
    q.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and time.monotonic() - started < 1.0
    assert got and got[-1] == 2
    with pytest.raises(RuntimeError):
        q.put(_frame(9))


def test_file_source_stamps_from_frame_position():
    source = VideoFileSource(FIXTURES / "single_face.mp4", MediaClock(realtime=False))
    assert source.fps == pytest.approx(30.0) and source.size == (640, 360)
    frames = list(source.frames(threading.Event()))
    assert len(frames) == source.frame_count == 72
    assert [f.index for f in frames] == list(range(72))
    assert np.allclose([f.t for f in frames], np.arange(72) / 30.0)
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8


def test_file_source_realtime_paces_and_stops_at_once():
    clock = MediaClock(realtime=True)
    source = VideoFileSource(FIXTURES / "single_face.mp4", clock, max_frames=9)
    started = time.monotonic()
    frames = list(source.frames(threading.Event()))
    elapsed = time.monotonic() - started
    assert len(frames) == 9
    assert 8 / 30 - 0.02 <= elapsed < 2.0  # the last frame is due at 8/30 s

    stop = threading.Event()
    slow = VideoFileSource(FIXTURES / "single_face.mp4", MediaClock(realtime=True), t_offset=30)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert list(slow.frames(stop)) == []  # first frame due in 30 s; stop interrupts the wait
    assert time.monotonic() - started < 1.0


def test_file_source_errors_are_one_line(tmp_path):
    with pytest.raises(VideoFileError, match="not found"):
        VideoFileSource(tmp_path / "missing.mp4", MediaClock())
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoFileError) as info:
        source = VideoFileSource(bogus, MediaClock(realtime=False))
        list(source.frames(threading.Event()))
    assert "\n" not in str(info.value)


def test_missing_camera_fails_fast_with_one_clear_error():
    started = time.monotonic()
    with pytest.raises(CameraError) as info:
        CameraSource(CameraOptions(index=57, open_timeout_s=3.0), MediaClock()).open()
    assert time.monotonic() - started < 3.5
    message = str(info.value)
    assert "--camera" in message and "\n" not in message


def test_bounded_call_gives_up_on_a_hung_open():
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        _bounded_call(lambda: release.wait(10), 0.2, "hung")
    assert time.monotonic() - started < 1.0
    release.set()
    assert _bounded_call(lambda: 42, 1.0, "quick") == 42


class FakeCapture:
    """Stands in for cv2.VideoCapture where no camera exists (CI): delivers N frames."""

    def __init__(self, frames: int = 5, hang: threading.Event | None = None, opened=True):
        self.left, self.hang, self.opened, self.released = frames, hang, opened, False

    def __call__(self, index, backend=None):
        if self.hang is not None:
            self.hang.wait(10)  # a driver that probes forever
        return self

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        return True

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((480, 640, 3), self.left % 256, np.uint8)

    def release(self):
        self.released = True


def test_camera_frames_are_stamped_on_the_clock_and_stop(monkeypatch):
    import cv2

    from edge_app.video import sources

    fake = FakeCapture(frames=1000)
    monkeypatch.setattr(sources, "_device_node_exists", lambda index: True)
    monkeypatch.setattr(cv2, "VideoCapture", fake)
    stop = threading.Event()
    camera = CameraSource(CameraOptions(index=0), MediaClock())
    frames = []
    for frame in camera.frames(stop):
        frames.append(frame)
        if len(frames) == 5:
            stop.set()
    camera.close()
    assert [f.index for f in frames] == list(range(5)) and fake.released
    assert all(b.t >= a.t for a, b in zip(frames, frames[1:], strict=False))


def test_camera_that_hangs_or_dies_gives_one_clear_error(monkeypatch):
    import cv2

    from edge_app.video import sources

    monkeypatch.setattr(sources, "_device_node_exists", lambda index: True)
    release = threading.Event()
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(hang=release))
    started = time.monotonic()
    with pytest.raises(CameraError, match="did not deliver a frame within"):
        CameraSource(CameraOptions(index=0, open_timeout_s=0.3), MediaClock()).open()
    assert time.monotonic() - started < 1.0
    release.set()
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(opened=False))
    with pytest.raises(CameraError, match="could not be opened"):
        CameraSource(CameraOptions(index=0), MediaClock()).open()
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(frames=3))
    camera = CameraSource(CameraOptions(index=0), MediaClock())
    with pytest.raises(CameraError, match="stopped sending frames"):
        list(camera.frames(threading.Event()))  # unplugged after 3 frames


def test_opening_a_camera_early_does_not_start_the_run_clock(monkeypatch):
    """The live app opens the camera before loading models (to fail fast); media time 0 must
    still be when frames start flowing, not when the camera was probed."""
    import cv2

    from edge_app.video import sources

    monkeypatch.setattr(sources, "_device_node_exists", lambda index: True)
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(frames=10))
    clock = MediaClock()
    camera = CameraSource(CameraOptions(index=0), clock)
    camera.open()
    assert not clock.started
    first = next(camera.frames(threading.Event()))
    camera.close()
    assert clock.started and first.t < 0.5

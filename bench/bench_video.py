"""Video front benchmark: face tracking fps at 640x480 with one and several faces, and the
share of frames dropped when a 30 fps file is replayed in real time through the drop-oldest
queue (capture thread -> FrameQueue -> face-stage thread, as the live app runs it).

    nice python bench/bench_video.py [--cores 2] [--frames 150]

Prints one JSON object. Media: tests/fixtures (see its README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge_app.clock import MediaClock
from edge_app.messages import VideoFrame
from edge_app.video.faces import LandmarkerOptions
from edge_app.video.sources import FrameQueue, VideoFileSource
from edge_app.video.stage import FaceTrackStage

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
W, H = 640, 480


def letterbox(image: np.ndarray) -> np.ndarray:
    """Fit into 640x480 (the camera default) without distortion."""
    h, w = image.shape[:2]
    scale = min(W / w, H / h)
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    out = np.zeros((H, W, 3), np.uint8)
    y0, x0 = (H - resized.shape[0]) // 2, (W - resized.shape[1]) // 2
    out[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized
    return out


def clip_frames(name: str, n: int) -> list[np.ndarray]:
    source = VideoFileSource(FIXTURES / name, MediaClock(realtime=False))
    frames = [letterbox(f.image) for f in source.frames(threading.Event())]
    source.close()
    return [frames[i % len(frames)] if (i // len(frames)) % 2 == 0 else frames[-1 - i % len(frames)]
            for i in range(n)]  # fmt: skip


def pan_frames(n: int) -> list[np.ndarray]:
    """Four people (multi_face.jpg, top-left 660x400) under a slow camera pan."""
    photo = cv2.imread(str(FIXTURES / "multi_face.jpg"))
    frames = []
    for i in range(n):
        k = i % 28 if i % 28 < 14 else 27 - i % 28  # back and forth
        frames.append(cv2.resize(photo[2 * k : 2 * k + 400, 3 * k : 3 * k + 660], (W, H)))
    return frames


def write_clip(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    for image in frames:
        writer.write(image)
    writer.release()
    return path


def tracking_fps(frames: list[np.ndarray], mode: str, num_faces: int) -> dict:
    stage = FaceTrackStage(LandmarkerOptions(num_faces=num_faces, running_mode=mode))
    stage.process(VideoFrame(0, 0.0, frames[0]))  # warm-up (graph start)
    faces = 0
    per_frame = []
    for i, image in enumerate(frames, start=1):
        started = time.perf_counter()
        result = stage.process(VideoFrame(i, i / 30.0, image))
        per_frame.append(time.perf_counter() - started)
        faces += len(result.faces) if result else 0
    stage.close()
    ms = np.array(per_frame) * 1000
    return {
        "mode": mode,
        "frames": len(frames),
        "mean_faces_per_frame": round(faces / len(frames), 2),
        "tracks": len(stage.tracker.summaries()),
        "fps": round(len(frames) / (ms.sum() / 1000), 1),
        "ms_per_frame_p50": round(float(np.percentile(ms, 50)), 2),
        "ms_per_frame_p95": round(float(np.percentile(ms, 95)), 2),
    }


def realtime_replay(name: str | Path, fps: float, queue_size: int, num_faces: int) -> dict:
    """Replay a file at ``fps`` in real time; the face stage runs on its own thread."""
    stage = FaceTrackStage(LandmarkerOptions(num_faces=num_faces))
    source = VideoFileSource(FIXTURES / name, MediaClock(realtime=True), fps=fps)
    queue = FrameQueue(maxsize=queue_size)
    stop = threading.Event()
    processed = []
    latency = []

    def consume() -> None:
        while (frame := queue.get(timeout=1.0)) is not None:
            stage.process(frame)
            processed.append(frame.index)
            latency.append(source.clock.now() - frame.t)

    worker = threading.Thread(target=consume, name="face-stage")
    worker.start()
    started = time.perf_counter()
    for frame in source.frames(stop):
        queue.put(frame)
    queue.close()
    worker.join()
    wall = time.perf_counter() - started
    stage.close()
    return {
        "file": Path(name).name,
        "size": list(source.size),
        "replay_fps": fps,
        "queue_size": queue_size,
        "frames_in": queue.put_count,
        "frames_processed": len(processed),
        "frames_dropped": queue.dropped,
        "drop_share": round(queue.dropped / max(queue.put_count, 1), 3),
        "processed_fps": round(len(processed) / wall, 1),
        "latency_ms_p50": round(float(np.percentile(latency, 50)) * 1000, 1),
        "latency_ms_p95": round(float(np.percentile(latency, 95)) * 1000, 1),
        "tracks": len(stage.finish()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to run on (2)")
    parser.add_argument("--frames", type=int, default=150, help="frames per fps case (150)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[: args.cores]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    one = clip_frames("single_face.mp4", args.frames)
    two = clip_frames("two_speakers.mp4", args.frames)
    four = pan_frames(args.frames)
    empty = clip_frames("no_face.mp4", args.frames)
    tmp = tempfile.TemporaryDirectory()
    four_clip = write_clip(pan_frames(300), Path(tmp.name) / "four_faces_pan.mp4", 30.0)
    report = {
        "bench": "video",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cores": cores,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),  # the CPU is shared: context
        "resolution": f"{W}x{H}",
        "tracking": {
            "one_face": tracking_fps(one, "video", 4),
            "one_face_live_stream": tracking_fps(one, "live_stream", 4),
            "two_faces": tracking_fps(two, "video", 4),
            "four_faces": tracking_fps(four, "video", 8),
            "no_face": tracking_fps(empty, "video", 4),
        },
        "replay_30fps": {
            "one_face": realtime_replay("single_face.mp4", 30.0, 2, 4),
            "two_faces": realtime_replay("two_speakers.mp4", 30.0, 2, 4),
            "four_faces": realtime_replay(four_clip, 30.0, 2, 8),
        },
    }
    tmp.cleanup()
    print(json.dumps(report))


if __name__ == "__main__":
    main()

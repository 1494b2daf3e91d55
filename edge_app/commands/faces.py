"""``mlsan-live faces FILE`` (or ``--camera N``): track faces, summarise each track.

With a camera it runs until Ctrl-C or ``--max-frames``; the summary comes at the end either way.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from mlsan.errors import UserFacingError

NAME = "faces"
HELP = "track the faces in a video file: one entry per track (id, first/last time, frames seen)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", nargs="?", help="video file (anything FFmpeg decodes)"
    )
    parser.add_argument("--camera", type=int, default=None, metavar="N", help="camera N instead")
    parser.add_argument("--width", type=int, default=640, help="camera width (640)")
    parser.add_argument("--height", type=int, default=480, help="camera height (480)")
    parser.add_argument("--camera-fps", type=float, default=30.0, help="camera frame rate (30)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--num-faces", type=int, default=4, help="most faces per frame (4)")
    parser.add_argument(
        "--max-frames", type=int, default=None, help="stop after this many frames (all)"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="replay at the file's frame rate (as a camera)"
    )
    parser.add_argument(
        "--face-model", metavar="PATH", default=None, help="explicit face_landmarker.task"
    )


def run(args: argparse.Namespace) -> int:
    from edge_app.clock import MediaClock
    from edge_app.video.faces import FaceModelError, LandmarkerOptions
    from edge_app.video.sources import VideoFileSource
    from edge_app.video.stage import FaceTrackStage

    if args.num_faces < 1:
        raise FaceModelError(f"--num-faces must be >= 1, got {args.num_faces}")
    model_path = None
    if args.face_model:
        from mlsan.registry import default_registry

        model_path = default_registry({"face": args.face_model}).resolve("face").path
    if (args.file is None) == (args.camera is None):
        raise UserFacingError("give a video FILE or --camera N (one of them)")
    stage = FaceTrackStage(LandmarkerOptions(model_path=model_path, num_faces=args.num_faces))
    if args.camera is not None:
        from edge_app.video.sources import CameraOptions, CameraSource

        options = CameraOptions(args.camera, args.width, args.height, args.camera_fps)
        source = CameraSource(options, MediaClock(realtime=True))
        try:
            source.open()
        except UserFacingError:
            stage.close()
            raise
        label, fps, size = f"camera {args.camera}", args.camera_fps, (args.width, args.height)
    else:
        try:
            source = VideoFileSource(
                args.file, MediaClock(realtime=args.realtime), max_frames=args.max_frames
            )
        except UserFacingError:
            stage.close()
            raise
        label, fps, size = str(args.file), source.fps, source.size
    stop = threading.Event()
    started = time.perf_counter()
    frames = with_faces = 0
    try:
        for frame in source.frames(stop):
            result = stage.process(frame)
            frames += 1
            with_faces += bool(result and result.faces)
            if args.max_frames is not None and frames >= args.max_frames:
                break
    except KeyboardInterrupt:
        if args.camera is None:
            raise  # a file run that is interrupted has no complete answer
    finally:
        source.close()
        stage.close()
    elapsed = time.perf_counter() - started
    tracks = stage.finish()
    summary = {
        "file": label,
        "fps": round(fps, 3),
        "size": list(size),
        "frames": frames,
        "frames_with_faces": with_faces,
        "processing_fps": round(frames / elapsed, 2) if elapsed > 0 else None,
        "tracks": [
            {
                "id": t.track_id,
                "first_t": round(t.first_t, 3),
                "last_t": round(t.last_t, 3),
                "frames": t.frames_seen,
            }
            for t in tracks
        ],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{label}: {frames} frames ({size[0]}x{size[1]} at {fps:.2f} fps), "
            f"faces in {with_faces}, {summary['processing_fps']} fps"
        )
        for t in summary["tracks"]:
            print(
                f"  track {t['id']}: {t['first_t']:.2f}-{t['last_t']:.2f} s, {t['frames']} frames"
            )
    return 0

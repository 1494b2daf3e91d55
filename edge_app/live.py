"""The live run: flags and entry point (threads and queues live in ``edge_app.runtime``, the
wiring in ``edge_app.live_pipeline``).

Examples::

    mlsan-live --camera 0                          # webcam + microphone, terminal UI
    mlsan-live --video talk.mp4                    # replay a video (its sound too) in real time
    mlsan-live --audio talk.wav --headless --events -   # no camera, no display: JSONL on stdout
    mlsan-live --audio talk.wav --fast --events out.jsonl --name spk1=Alice
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from mlsan.errors import UserFacingError
from mlsan.registry import MODEL_SPECS

BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")


def _default_gallery() -> Path:
    """$MLSAN_SPEAKERS_DIR/gallery.json, else $XDG_CACHE_HOME/mlsan-live/speakers/gallery.json."""
    from mlsan.paths import user_cache_dir

    return user_cache_dir("speakers", "MLSAN_SPEAKERS_DIR") / "gallery.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("sources (one of --camera, --video, --audio; or a mix)")
    src.add_argument(
        "--camera",
        type=int,
        metavar="INDEX",
        help="webcam index (OpenCV); audio from the microphone unless --audio is given",
    )
    src.add_argument("--video", metavar="FILE", help="replay a video file (its audio too)")
    src.add_argument("--audio", metavar="FILE", help="replay an audio file (wav/flac/...)")
    src.add_argument("--mic", metavar="DEVICE", help="microphone index or name (with --camera)")
    pace = src.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime",
        dest="realtime",
        action="store_true",
        default=True,
        help="replay files at the speed they were recorded (default)",
    )
    pace.add_argument(
        "--fast",
        dest="realtime",
        action="store_false",
        help="replay files as fast as the models go",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--headless",
        action="store_true",
        help="no terminal UI (one line per utterance unless --events -)",
    )
    out.add_argument(
        "--events", metavar="FILE", help="JSON Lines, one record per utterance ('-' for stdout)"
    )
    out.add_argument(
        "--refresh", type=float, default=4.0, metavar="HZ", help="UI redraws per second (default 4)"
    )
    out.add_argument("--debug", action="store_true", help="print tracebacks of stage failures")
    # After the run has flushed its events and saved the gallery, leave at once instead of
    # waiting 1-3 s for Python to tear down torch/CTranslate2/onnxruntime (Ctrl-C should feel
    # instant). In-process callers (tests) pass --no-fast-exit or set fast_exit=False.
    out.add_argument(
        "--no-fast-exit",
        dest="fast_exit",
        action="store_false",
        default=True,
        help=argparse.SUPPRESS,
    )

    emo = parser.add_argument_group("emotion")
    emo.add_argument(
        "--backend",
        default="auto",
        metavar="NAME",
        help=f"ML-SAN runtime: {', '.join(BACKEND_CHOICES)} (default auto)",
    )
    emo.add_argument(
        "--decay",
        type=float,
        default=6.0,
        metavar="SECONDS",
        help="half-life of a speaker's rolling emotion (0: no smoothing; default 6)",
    )
    emo.add_argument(
        "--hysteresis",
        type=float,
        default=0.08,
        metavar="P",
        help="lead in smoothed probability a new label needs (default 0.08)",
    )
    emo.add_argument(
        "--max-segment",
        type=float,
        default=6.0,
        metavar="SECONDS",
        help="cut longer stretches of speech here: lower bounds the latency of a turn that ends "
        "inside one without a pause or a change of voice; default 6, as `mlsan-live diarize` "
        "(README, Voices)",
    )
    emo.add_argument(
        "--context",
        type=int,
        default=16,
        metavar="N",
        help="utterances of dialogue context the model sees (default 16)",
    )

    spk = parser.add_argument_group("speakers")
    spk.add_argument(
        "--gallery",
        metavar="FILE",
        help=f"speaker gallery to load and save (default {_default_gallery()}). It keeps, per "
        "person: an id, an optional name, the mean voice vector of the voice model that made "
        "it, and seconds of speech; never audio or words. A voice takes a stored id only when "
        "it is clearly that person (similarity >= 0.6 and 0.1 above anyone else stored, after "
        "4 s of speech); otherwise it gets a new id. A gallery made with another voice model is "
        "refused, not mixed",
    )
    spk.add_argument(
        "--forget",
        action="append",
        default=[],
        metavar="ID|NAME",
        help="remove a person (id or name) from the gallery before the run (repeatable)",
    )
    spk.add_argument(
        "--no-gallery", action="store_true", help="start with nobody known and save nothing"
    )
    spk.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="ID=NAME",
        help="name a speaker, e.g. --name spk1=Alice (repeatable)",
    )

    models = parser.add_argument_group("models")
    for spec in MODEL_SPECS:
        models.add_argument(spec.flag, metavar="PATH", help=f"explicit path of the {spec.role}")


def _names(values: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for value in values:
        sid, sep, name = value.partition("=")
        if not sep or not sid.strip() or not name.strip():
            raise UserFacingError(f"--name {value!r} is not ID=NAME; fix: e.g. --name spk1=Alice")
        out.append((sid.strip(), name.strip()))
    return tuple(out)


def options_from_args(args: argparse.Namespace):
    """Validate the flags (one-line errors) and build :class:`LiveOptions`."""
    from edge_app.live_pipeline import LiveOptions

    if args.camera is None and args.video is None and args.audio is None:
        raise UserFacingError(
            "no source given; fix: pass --camera INDEX, --video FILE or --audio FILE"
        )
    if args.camera is not None and args.video is not None:
        raise UserFacingError("--camera and --video both give video; fix: keep one of them")
    for flag, value in (("--video", args.video), ("--audio", args.audio)):
        if value is not None and not Path(value).expanduser().is_file():
            raise UserFacingError(f"{flag} {value}: no such file; fix: check the path")
    if args.backend.strip().lower() not in (*BACKEND_CHOICES, "ort", "onnx", "trt"):
        raise UserFacingError(
            f"unknown backend {args.backend!r}; fix: use one of {', '.join(BACKEND_CHOICES)}"
        )
    if not (math.isfinite(args.decay) and args.decay >= 0):
        raise UserFacingError(f"--decay {args.decay}: must be >= 0 seconds (0 = no smoothing)")
    if not 0 <= args.hysteresis < 1:
        raise UserFacingError(f"--hysteresis {args.hysteresis}: must be in [0, 1)")
    if not 2.0 <= args.max_segment <= 30.0:
        raise UserFacingError(f"--max-segment {args.max_segment}: must be between 2 and 30 s")
    if not 1 <= args.context <= 128:
        raise UserFacingError(f"--context {args.context}: must be between 1 and 128 utterances")
    if not 0.5 <= args.refresh <= 30:
        raise UserFacingError(f"--refresh {args.refresh}: must be between 0.5 and 30 per second")
    if args.events == "-" and not args.headless:
        raise UserFacingError(
            "--events - writes to stdout, where the terminal UI draws; fix: add --headless or "
            "write the events to a file"
        )
    if args.forget and args.no_gallery:
        raise UserFacingError("--forget removes people from the gallery; fix: drop --no-gallery")
    gallery = None
    if not args.no_gallery:
        gallery = Path(args.gallery).expanduser() if args.gallery else _default_gallery()
        if gallery.is_dir():
            raise UserFacingError(f"--gallery {gallery} is a directory; fix: give a file path")
    model_paths = tuple(
        (spec.name, getattr(args, spec.flag.lstrip("-").replace("-", "_")))
        for spec in MODEL_SPECS
        if getattr(args, spec.flag.lstrip("-").replace("-", "_"), None)
    )
    return LiveOptions(
        camera=args.camera,
        video=Path(args.video).expanduser() if args.video else None,
        audio=Path(args.audio).expanduser() if args.audio else None,
        mic=args.mic,
        headless=args.headless,
        events=args.events,
        backend=args.backend,
        realtime=args.realtime,
        decay_s=args.decay,
        switch_margin=args.hysteresis,
        context=args.context,
        gallery=gallery,
        names=_names(args.name),
        forget=tuple(args.forget),
        model_paths=model_paths,
        refresh_hz=args.refresh,
        max_segment_s=args.max_segment,
        debug=args.debug,
    )


def _sigterm_like_ctrl_c() -> None:
    """``kill`` (SIGTERM) stops a run as cleanly as Ctrl-C: events flushed, gallery saved."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="mlsan-live: %(message)s")
    from edge_app.live_pipeline import LivePipeline

    pipeline = LivePipeline(options_from_args(args))
    _sigterm_like_ctrl_c()
    try:
        rc = pipeline.run()
    except UserFacingError as exc:
        if not getattr(args, "fast_exit", False):
            raise
        print(f"mlsan-live: error: {exc}", file=sys.stderr)
        rc = exc.exit_code
    finally:
        pipeline.close()
    if getattr(args, "fast_exit", False):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc

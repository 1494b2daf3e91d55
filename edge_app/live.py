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
from mlsan.whisper_encoder import ENCODER_HELP, ENCODERS

BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")


def _default_gallery() -> Path:
    """$MLSAN_SPEAKERS_DIR/gallery.json, else $XDG_CACHE_HOME/mlsan-live/speakers/gallery.json."""
    from mlsan.paths import user_cache_dir

    return user_cache_dir("speakers", "MLSAN_SPEAKERS_DIR") / "gallery.json"


def add_arguments(parser: argparse.ArgumentParser, sources: bool = True) -> None:
    """The live run's flags; ``sources=False`` leaves out the source flags (``demo``)."""
    title = "sources (one of --camera, --video, --audio; or a mix)"
    if not sources:
        title = "pace (the source is the packaged recording)"
    src = parser.add_argument_group(title)
    if sources:
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
        "--events",
        metavar="TARGET",
        action="append",
        help="JSON Lines ('-' for stdout): an 'utterance' record per utterance (its emotion), a "
        "'turn' record per speaker turn (who spoke when), a 'summary' at the end; or an MQTT "
        "broker mqtt[s]://HOST[:PORT]/PREFIX; repeat to give both a file and a broker",
    )
    _add_mqtt_arguments(parser)
    out.add_argument(
        "--refresh",
        type=float,
        default=1.0,
        metavar="HZ",
        help="UI redraws per second (default 1; a new emotion is drawn at once)",
    )
    out.add_argument("--debug", action="store_true", help="print tracebacks of stage failures")
    out.add_argument(
        "--record-inputs",
        metavar="FILE",
        help="save a sample of the model's real inputs (.npz) for INT8 calibration: "
        "mlsan-engine calibrate --recording FILE",
    )
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
        "--speculative-asr",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start speech recognition on the early guess of a turn's end (default on; "
        "--no-speculative-asr: wait until the end is sure): a turn that ends at a change of "
        "voice is ready up to one 0.25-s hop sooner, for the CPU of the guesses that were "
        "wrong; the voice stage embeds the same guesses ahead (README, Live latency)",
    )
    emo.add_argument(
        "--asr-encoder",
        choices=ENCODERS,
        default="auto",
        help=ENCODER_HELP,
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


def _add_mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_app.mqtt_sink import add_broker_arguments

    grp = parser.add_argument_group("events to an MQTT broker (--events mqtt://HOST/PREFIX)")
    grp.add_argument(
        "--device-id", metavar="ID", help="this device's topic level (default the host name)"
    )
    grp.add_argument(
        "--mqtt-buffer",
        type=int,
        default=1000,
        metavar="N",
        help="utterances (and, apart, as many turn records) kept while the broker is away; "
        "then the oldest are dropped (default 1000)",
    )
    grp.add_argument(
        "--mqtt-offline-start",
        action="store_true",
        help="start even if the broker cannot be reached now, buffering until it can",
    )
    add_broker_arguments(grp)


def _event_targets(args: argparse.Namespace):
    """--events values -> (file or '-' or None, MqttSinkOptions or None); one of each at most."""
    from edge_app import mqtt_sink

    files = [t for t in args.events or [] if not mqtt_sink.is_mqtt_url(t)]
    urls = [t for t in args.events or [] if mqtt_sink.is_mqtt_url(t)]
    if len(files) > 1 or len(urls) > 1:
        raise UserFacingError("--events: give at most one file (or '-') and one mqtt:// broker")
    if not urls:
        return (files[0] if files else None), None
    if not 1 <= args.mqtt_buffer <= 1_000_000:
        raise UserFacingError(f"--mqtt-buffer {args.mqtt_buffer}: must be between 1 and 1000000")
    device = args.device_id or mqtt_sink.default_device_id()
    sink = mqtt_sink.MqttSinkOptions(
        broker=mqtt_sink.broker_options_from_args(args, urls[0], "--events"),
        device_id=mqtt_sink.check_device_id(device),
        buffer=args.mqtt_buffer,
        offline_start=args.mqtt_offline_start,
    )
    return (files[0] if files else None), sink


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
        if value is not None and Path(value).expanduser().is_dir():
            raise UserFacingError(f"{flag} {value} is a directory; fix: give a media file in it")
        if value is not None and not Path(value).expanduser().is_file():
            raise UserFacingError(f"{flag} {value}: no such file; fix: check the path")
    if args.video is not None and args.audio is None:
        _check_has_sound(Path(args.video).expanduser())
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
    events, mqtt = _event_targets(args)
    if events == "-" and not args.headless:
        raise UserFacingError(
            "--events - writes to stdout, where the terminal UI draws; fix: add --headless or "
            "write the events to a file"
        )
    # Everything the run writes is checked now, not after minutes of loading or a session.
    from edge_app.events import check_writable, check_writable_target

    if events is not None:
        check_writable_target(events, "--events")
    if getattr(args, "record_inputs", None):
        check_writable(args.record_inputs, "--record-inputs")
    if args.forget and args.no_gallery:
        raise UserFacingError("--forget removes people from the gallery; fix: drop --no-gallery")
    gallery = None
    if not args.no_gallery:
        gallery = Path(args.gallery).expanduser() if args.gallery else _default_gallery()
        if gallery.is_dir():
            raise UserFacingError(f"--gallery {gallery} is a directory; fix: give a file path")
        check_writable(gallery, "--gallery", create_folders=True)
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
        events=events,
        mqtt=mqtt,
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
        speculative_asr=args.speculative_asr,
        asr_encoder=args.asr_encoder,
        debug=args.debug,
    )


def _check_has_sound(video: Path) -> None:
    """A video without a sound track cannot be replayed here: every emotion starts from speech
    (the words and the voice of a turn). Say so before anything loads."""
    try:
        import av

        with av.open(str(video)) as container:
            has_sound = bool(container.streams.audio)
    except Exception:  # noqa: BLE001 - unreadable: the video source reports it in one line
        return
    if not has_sound:
        raise UserFacingError(
            f"--video {video} has no sound track, and emotions here start from speech (who "
            "says what, in which voice); fix: give the conversation's sound with --audio FILE, "
            f"or track the faces alone with: mlsan-live faces {video}"
        )


class _Signals:
    """SIGINT/SIGTERM outside the threaded run (while loading, while printing the summary):
    the first raises KeyboardInterrupt (stop loading: exit 130), later ones are ignored so the
    clean-up is not cut in half. During the run ``Runtime.run`` owns both signals (drain)."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, signum, frame) -> None:
        self.seen += 1
        if self.seen == 1:
            raise KeyboardInterrupt

    def install(self) -> dict:
        """Handle both signals (main thread only); returns the handlers to put back."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def restore(previous: dict) -> None:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _LoadingLine:
    """A "loading <model>..." line on stderr while the models load (9-17 s on a small CPU), when
    stderr is a terminal; transient (erased when the run starts), so it never mixes with the UI."""

    def __init__(self, enabled: bool) -> None:
        self._status = None
        if enabled:
            from rich.console import Console

            self._status = Console(stderr=True).status("mlsan-live: opening the sources…")
            self._status.start()

    def model(self, found) -> None:
        if self._status is not None:
            self._status.update(f"mlsan-live: loading {found.spec.role}…")

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class _RecordingBackend:
    """The emotion backend, recording every input it is given (``--record-inputs``)."""

    def __init__(self, backend, recorder) -> None:
        self._backend = backend
        self._recorder = recorder

    def infer(self, inputs):
        out = self._backend.infer(inputs)
        self._recorder.record(inputs)
        return out

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _record_inputs(pipeline, path: Path) -> None:
    from calibration.recorder import InputRecorder

    recorder = InputRecorder()
    loaded = pipeline.loaded
    loaded.backend = _RecordingBackend(loaded.backend, recorder)

    def save() -> None:
        if len(recorder):
            recorder.save(path)
        else:
            print(f"mlsan-live: --record-inputs: no utterance, {path} not written", file=sys.stderr)

    pipeline.runtime.on_stop("record-inputs", save)


def run(args: argparse.Namespace) -> int:
    """The live run. Exit code: 0 finished, 1 a stage (or the gallery save) failed, 2 a bad
    flag/file/model, 130 interrupted (Ctrl-C or SIGTERM, while loading or running)."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="mlsan-live: %(message)s")
    from edge_app.live_pipeline import LivePipeline

    options = options_from_args(args)
    signals = _Signals()
    previous = signals.install()
    pipeline = LivePipeline(options)
    rc = 130
    try:
        loading = _LoadingLine(enabled=sys.stderr.isatty())
        pipeline.on_resolve = loading.model
        try:
            pipeline.open()  # sources, then every model (verified): one-line errors
        finally:
            loading.stop()
        if getattr(args, "record_inputs", None):
            _record_inputs(pipeline, Path(args.record_inputs).expanduser())
        rc = pipeline.run()
        if pipeline.runtime.interrupted:
            rc = 130
    except KeyboardInterrupt:
        print("mlsan-live: interrupted", file=sys.stderr)
        rc = 130
    except UserFacingError as exc:
        if not getattr(args, "fast_exit", False):
            raise
        print(f"mlsan-live: error: {exc}", file=sys.stderr)
        rc = exc.exit_code
    finally:
        pipeline.close()
        signals.restore(previous)
    if getattr(args, "fast_exit", False):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc

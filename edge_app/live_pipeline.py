"""The live run wired on the runtime: which stage runs on which thread, fed by which queue.

Threads and queues (policy when full)::

    audio source ─► [audio 256 chunks: drop newest after 0.5 s, counted (BLOCK when --fast)]
      └► vad ─┬─► [segments→asr 32: block] ─► asr (faster-whisper) ─────────┐
              │    (+ guesses of the next segment: speculative ASR)          │
              └─► [segments→voice 32: block] ─► voice (CAM++ + diarizer) ────┤
                   (+ the same guesses, and the open segment's audio so far  │
                    every 0.5 s: their CAM++ windows embedded ahead)         │
                                                   [utterance parts 64: block, 2 producers]
                                                                              ▼
                                 assemble (UtteranceAssembler, face binding) ─► [utterances 64:
                                 block] ─► emotion (features, ML-SAN backend, states, events)
    video source ─► [frames 2: drop oldest, counted (BLOCK when --fast)] ─► faces (MediaPipe +
                                                                 tracker + history)

The UI thread (``edge_app.ui.TerminalUI``) only reads snapshots. Speech recognition and the
voice stage run in parallel on separate threads so neither waits for the other; the face stage
never waits for audio (the assembler waits, bounded, for the faces of a turn's last frames:
``VideoFaceContext``). Backpressure from a slow model reaches the audio queue, the one place
where live input can be lost, and is counted there (and by the microphone source).

Speculative speech recognition (``LiveOptions.speculative_asr``, on by default; real-time
runs only): the VAD's early guess of where a turn ends (``StreamingVad.speculation``) goes to
the ASR stage, which transcribes it while the VAD makes sure, if no segment waits; the segment
handed on then gets those words at once when it is the same audio
(``WhisperTranscriber.transcribe_ahead``). The voice stage gets the same guesses, and the open
segment's audio so far every ``LiveOptions.voice_prefix_s`` (SegmentPrefix, which the ASR queue
passes over), and embeds their CAM++ windows while the turn goes on, when nothing waits; the
segment handed on then only runs CAM++ on the windows not done yet, usually the last
(``CamppEmbedder.embed_ahead``). The diarizer labels handed-on segments only.

Latency of an utterance = wall time when its emotion is ready minus wall time when the audio
of its last sample arrived (:class:`ArrivalLog`): the same meaning for a microphone and a
real-time replay (a ``--fast`` replay reads ahead, so there it includes the backlog).
"""

from __future__ import annotations

import bisect
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_app.clock import MediaClock
from edge_app.emotion_features import (
    MODALITIES,
    UI_NAMES,
    DialogueWindow,
    FeatureOptions,
    ModelInfo,
    UtteranceFeaturizer,
)
from edge_app.events import EmotionEvent, EventWriter, TurnEvent
from edge_app.messages import (
    AudioChunk,
    SegmentGuess,
    SegmentPrefix,
    SpeakerTurn,
    SpeechSegment,
)
from edge_app.runtime import Overflow, Runtime
from edge_app.states import SpeakerStates, StateOptions
from edge_app.ui import HeaderInfo, UiSnapshot
from edge_app.utterances import FaceEvidence, Utterance, UtteranceAssembler, VoicedSegment
from mlsan.errors import UserFacingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveOptions:
    """Everything the live run was asked to do (built from the CLI flags)."""

    camera: int | None = None
    video: Path | None = None
    audio: Path | None = None
    mic: str | None = None  # microphone index or name (live audio)
    headless: bool = False
    events: str | None = None  # JSONL path or "-"
    mqtt: object | None = None  # edge_app.mqtt_sink.MqttSinkOptions: events to a broker too
    backend: str = "auto"
    realtime: bool = True  # file replay paced in real time (False: as fast as possible)
    decay_s: float = 6.0
    switch_margin: float = 0.08
    context: int = 16
    gallery: Path | None = None
    names: tuple[tuple[str, str], ...] = ()
    forget: tuple[str, ...] = ()  # gallery ids / names removed before the run (--forget)
    model_paths: tuple[tuple[str, str], ...] = ()  # registry overrides (name, path)
    # UI redraws a second; a new emotion is drawn at once anyway (TerminalUI.poke). 4 cost
    # 0.03-0.05 CPU s per s more on 2 cores (bench/bench_live.py -ui1 vs -ui4).
    refresh_hz: float = 1.0
    # VAD cut for long stretches of speech: bounds the latency of a turn that ends inside one
    # (without a pause or a change of voice). 6 s, the same as `mlsan-live diarize`
    # (audio.vad.VadOptions.max_segment_s); the DER of these defaults is in README, Voices.
    max_segment_s: float = 6.0
    asr_threads: int = 2
    # Whisper's encoder: "auto" (PyTorch bfloat16 on CPUs with AMX, else CTranslate2),
    # "ctranslate2" or "bf16" (--asr-encoder; edge_app.audio.asr.AsrOptions.encoder).
    asr_encoder: str = "auto"
    # Speculative speech recognition (--speculative-asr, on by default): start on the VAD's
    # early guess of a turn's end while the VAD makes sure, keep the words when the guess was
    # right. On the sample it served 3 of 9 turns 0.24-0.39 s sooner (median of four
    # alternating pairs, the others within +-0.05 s), pooled median 1.09 vs 1.25 s (1.15 vs
    # 1.05 s in five earlier pairs), for 0.02 CPU s per s more (0.43-0.49 in all); it was off
    # while the CPU budget had no room (README, Live latency: bench/bench_live.py -spec /
    # -nospec). A turn that falls back to sampling may get other words in another replay
    # (the guesses change the sampler's draws).
    # Only on a real-time clock: a --fast replay's ASR is never idle.
    speculative_asr: bool = True
    # How far below the other stages the voice stage (CAM++ + diarizer) is scheduled
    # (Runtime.add_stage nice). At a turn's end it and Whisper's encoder (two threads) want the
    # 2 cores at once, and the voice stage has slack: it finishes long before the ASR. Taking
    # turns on each of 71 conversation turns with the voice stage beside the ASR, as live:
    # ASR 403 vs 466 ms wall a turn (median; 331 alone), the voice stage 191 vs 99 ms, still
    # done first (bench/bench_turn_end.py; README, Live latency). 0: the same priority.
    voice_nice: int = 10
    # The voice stage embeds the open turn's windows while it goes on (real-time runs only):
    # the VAD hands it the open segment's audio so far every this many seconds of it
    # (SegmentPrefix; CAM++'s windows are 1.5 s every 0.5 s), and it embeds the windows not yet
    # done when no segment waits. At the turn's end only the last window is left, so CAM++ no
    # longer takes a core from the ASR then. None: off (all windows at the turn's end).
    voice_prefix_s: float | None = 0.5
    debug: bool = False
    # audio.offline.AudioPipelineOptions; None: the defaults (bench_live compares variants)
    audio_options: object | None = None


class ArrivalLog:
    """When (wall clock) the audio up to each media time arrived; thread-safe."""

    def __init__(self, keep: int = 20_000) -> None:
        self._t: deque[float] = deque(maxlen=keep)  # chunk t_end, increasing
        self._wall: deque[float] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.media_t = 0.0
        self.dropped_samples = 0  # reported by the source (dropped_before)

    def note(self, chunk: AudioChunk) -> None:
        now = time.monotonic()
        with self._lock:
            self._t.append(chunk.t_end)
            self._wall.append(now)
            self.media_t = chunk.t_end
            self.dropped_samples += int(chunk.dropped_before)

    def wall_of(self, t: float) -> float:
        """Arrival time of the first chunk that reaches media time ``t`` (now if none yet)."""
        with self._lock:
            if not self._t:
                return time.monotonic()
            i = bisect.bisect_left(self._t, t - 1e-6)
            # Past the last chunk (a segment padded beyond the end of a file): the last arrival.
            return self._wall[min(i, len(self._t) - 1)]


class VadStage:
    """Audio -> speech segments; with ``guesses``, also the VAD's guess of the segment it is
    about to hand on (SegmentGuess, for the ASR and voice stages); with ``prefix_every_s``, the
    open segment's audio so far every that many seconds of it (SegmentPrefix, for the voice
    stage only)."""

    def __init__(self, vad, guesses: bool = False, prefix_every_s: float | None = None) -> None:
        self.vad = vad
        self.guesses = guesses
        self.prefix_every_s = prefix_every_s

    def process(self, chunk: AudioChunk) -> list[SpeechSegment | SegmentGuess | SegmentPrefix]:
        out: list[SpeechSegment | SegmentGuess | SegmentPrefix] = list(self.vad.process(chunk))
        if self.guesses:
            guess = self.vad.speculation()
            if guess is not None:
                out.append(SegmentGuess(guess))
        if self.prefix_every_s is not None:
            prefix = self.vad.open_prefix(self.prefix_every_s)
            if prefix is not None:
                out.append(SegmentPrefix(prefix))
        return out

    def flush(self) -> list[SpeechSegment]:
        return self.vad.flush()


class AsrStage:
    """Segments -> transcripts. A SegmentGuess is transcribed ahead (kept for the segment it
    guesses) only when no segment waits in ``backlog``: a guess never delays a real turn."""

    def __init__(self, asr, backlog: Callable[[], int] = lambda: 0) -> None:
        self.asr = asr
        self.backlog = backlog

    def process(self, item: SpeechSegment | SegmentGuess):
        if isinstance(item, SegmentGuess):
            if self.backlog():
                self.asr.ahead.skipped += 1
            else:
                self.asr.transcribe_ahead(item.segment)
            return []
        return [self.asr.transcribe(item)]

    def flush(self):
        return []


class TurnRecords:
    """The turns the voice stage labels -> ``turn`` records (:class:`edge_app.events.TurnEvent`)
    to the event sinks at once: the stream's who-spoke-when, before the words are known. Ids
    as labelled (a later merge shows in later records only); names as the utterances get them
    (``--name``, else the gallery's)."""

    def __init__(
        self,
        arrivals: ArrivalLog,
        names: dict[str, str],
        sinks: tuple[Callable[[TurnEvent], None], ...] = (),
    ) -> None:
        self.arrivals = arrivals
        self.names = names
        self.sinks = sinks
        self._lock = threading.Lock()  # counters read by the stats thread
        self.emitted = 0
        self.overlaps = 0
        self.latencies: deque[float] = deque(maxlen=5000)

    def announce(self, main: list[SpeakerTurn], extra: list[SpeakerTurn]) -> list[int]:
        """``main``: the diarizer's turns of one segment; ``extra``: its overlap turns. Returns
        the records' ``turn_id``s, in that order."""
        labelled = [(t, False) for t in main] + [(t, True) for t in extra]
        now = time.monotonic()
        ids = []
        for turn, overlap in labelled:
            latency = now - self.arrivals.wall_of(turn.t_end)
            with self._lock:
                turn_id = self.emitted
                self.emitted += 1
                self.overlaps += overlap
                self.latencies.append(latency)
            event = TurnEvent(
                turn_id=turn_id,
                segment_id=turn.segment_id,
                t_start=turn.t_start,
                t_end=turn.t_end,
                speaker=turn.speaker_id,
                speaker_name=self.names.get(turn.speaker_id) or turn.name,
                overlap=overlap,
                new_speaker=turn.is_new,
                similarity=turn.similarity,
                latency_s=latency,
            )
            for sink in self.sinks:
                sink(event)
            ids.append(turn_id)
        return ids

    def stats(self) -> dict:
        with self._lock:
            lat = np.asarray(self.latencies, np.float64)
            emitted, overlaps = self.emitted, self.overlaps
        return {
            "emitted": emitted,
            "overlap": overlaps,
            "latency_p50_s": round(float(np.median(lat)), 4) if lat.size else None,
            "latency_p95_s": round(float(np.percentile(lat, 95)), 4) if lat.size else None,
        }


class VoiceStage:
    """Voice windows -> online diarizer -> overlap turns (audio.speakers.SpeakerStage, the same
    stage `mlsan-live diarize` runs); each segment's turns also go to ``turns`` (the event
    stream's turn records) as soon as they are labelled. A SegmentGuess or SegmentPrefix is
    embedded ahead (its windows kept for the segment it belongs to) only when nothing waits in
    ``backlog``: a segment must not wait for it, and a later guess or prefix holds more of the
    turn."""

    def __init__(
        self,
        speaker_stage,
        backlog: Callable[[], int] = lambda: 0,
        turns: TurnRecords | None = None,
    ) -> None:
        self.speaker_stage = speaker_stage
        self.backlog = backlog
        self.turns = turns

    def process(self, item: SpeechSegment | SegmentGuess | SegmentPrefix) -> list[VoicedSegment]:
        if isinstance(item, SegmentGuess | SegmentPrefix):
            if not self.backlog():
                self.speaker_stage.embed_ahead(item.segment, isinstance(item, SegmentGuess))
            return []
        main, extra = self.speaker_stage.process_split(item)
        ids = self.turns.announce(main, extra) if self.turns is not None else ()
        return [VoicedSegment(item, tuple(main + extra), tuple(ids))]

    def flush(self):
        return []


class VideoProgress:
    """How far (media time) the face stage has looked; waiters block on a Condition."""

    def __init__(self, stop: threading.Event) -> None:
        self._cond = threading.Condition()
        self._t = -1.0
        self._finished = False
        self._stop = stop

    def advance(self, t: float) -> None:
        with self._cond:
            self._t = max(self._t, t)
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def wait_until(self, t: float, timeout: float) -> bool:
        """Block until frames up to ``t`` were processed (or the video ended, or the run stops,
        or ``timeout``). True if the video got there."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._t < t and not self._finished and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))  # 0.1: re-check the stop event
            return self._t >= t


class FaceStage:
    """MediaPipe faces + tracker; results go to the stage's history (read by the assembler)."""

    def __init__(self, face_stage, progress: VideoProgress) -> None:
        self.stage = face_stage
        self.progress = progress
        self.frames = 0
        self.faces_in_view = 0  # in the last processed frame (an int: read by the UI thread)

    def process(self, frame):
        faces = self.stage.process(frame)
        if faces is not None:
            self.faces_in_view = len(faces.faces)
        self.frames += 1
        self.progress.advance(frame.t)
        return []

    def flush(self):
        self.stage.finish()
        self.progress.finish()
        return []


class VideoFaceContext:
    """Binding + pooled visual features for the assembler (shares the face stage's lock).

    Before binding a turn it waits until the face stage has seen the turn's frames: at most
    ``wait_s`` (short when live: the camera is normally ahead of speech recognition; long for a
    fast replay, where video decoding may lag the audio), so a replay binds the same way
    whatever the machine's speed.
    """

    def __init__(self, face_stage, progress: VideoProgress, wait_s: float) -> None:
        self.stage = face_stage
        self.progress = progress
        self.wait_s = wait_s
        self.late = 0  # turns bound before the video had reached their end

    def evidence(self, turn: SpeakerTurn) -> FaceEvidence:
        st = self.stage
        if not self.progress.wait_until(turn.t_end, self.wait_s):
            self.late += 1
        with st.lock:
            binding = st.binder.update(turn, st.history)
            feats = st.history.features(binding.track_id, turn.t_start, turn.t_end)
        return FaceEvidence(
            track_id=binding.track_id,
            binding_confidence=float(binding.confidence),
            visual=None if feats.absent else feats.vector,
            coverage=float(feats.coverage),
            expression=getattr(feats, "expression", None),  # face-expression encoder, pooled
        )


class EmotionStage:
    """Utterance -> features -> ML-SAN (causal context) -> rolling state -> event sinks."""

    def __init__(
        self,
        featurizer: UtteranceFeaturizer,
        window: DialogueWindow,
        backend,
        states: SpeakerStates,
        arrivals: ArrivalLog,
        sinks: tuple[Callable[[EmotionEvent], None], ...],
    ) -> None:
        self.featurizer = featurizer
        self.window = window
        self.backend = backend
        self.labels = tuple(backend.signature.label_names)
        self.states = states
        self.arrivals = arrivals
        self.sinks = sinks
        self._lock = threading.Lock()
        self.latencies: deque[float] = deque(maxlen=5000)  # recent utterances (long sessions)

    def process(self, utt: Utterance) -> list:
        feats = self.featurizer.features(utt)
        inputs, row = self.window.inputs(utt, feats)
        out = self.backend.infer(inputs)
        self.window.commit(utt, feats, row)
        probs = np.asarray(out.probs[0, -1], np.float64)
        gate = np.asarray(out.gate[0, -1], np.float64)
        trust = tuple((UI_NAMES[m], float(g)) for m, g in zip(MODALITIES, gate, strict=True))
        face = utt.face
        state = self.states.update(
            utt.speaker,
            utt.t_end,
            probs,
            self.labels,
            text=utt.text,
            name=utt.speaker_name,
            trust=trust,
            face_track=face.track_id,
            face_seen=face.visual is not None,
            binding_confidence=face.binding_confidence,
        )
        latency = time.monotonic() - self.arrivals.wall_of(utt.t_end)
        best = int(np.argmax(probs))
        event = EmotionEvent(
            utterance_id=utt.utterance_id,
            turn_id=utt.turn_id,
            t_start=utt.t_start,
            t_end=utt.t_end,
            speaker=utt.speaker,
            speaker_name=state.name,
            text=utt.text,
            emotion=self.labels[best],
            confidence=float(probs[best]),
            probs=tuple((lab, float(p)) for lab, p in zip(self.labels, probs, strict=True)),
            state=state.label or self.labels[best],
            state_confidence=state.confidence,
            trust=trust,
            masked=feats.masked,
            face_track=face.track_id,
            binding_confidence=face.binding_confidence,
            context=int(inputs.context),
            latency_s=latency,
        )
        with self._lock:
            self.latencies.append(latency)
        for sink in self.sinks:
            sink(event)
        return []

    def flush(self) -> list:
        return []

    def latency_stats(self) -> tuple[float | None, float | None, int]:
        with self._lock:
            lat = np.asarray(self.latencies, np.float64)
        if not lat.size:
            return None, None, 0
        return float(np.median(lat)), float(np.percentile(lat, 95)), int(lat.size)


def human_line(event: EmotionEvent) -> str:
    """One readable line per utterance (headless without --events -)."""
    who = f"{event.speaker_name} ({event.speaker})" if event.speaker_name else event.speaker
    trust = " ".join(f"{k}={v:.2f}" for k, v in event.trust)
    return (
        f"[{event.t_start:7.2f}-{event.t_end:7.2f}] {who}: {event.text!r} -> {event.emotion} "
        f"{event.confidence:.0%} (state {event.state}; trust {trust}; "
        f"latency {event.latency_s:.2f}s)"
    )


@dataclass
class Loaded:
    """Everything opened before the threads start (so errors come before anything runs)."""

    clock: MediaClock
    audio_source: object
    audio_label: str
    video_source: object | None
    video_label: str | None
    info: ModelInfo
    backend: object
    vad: object = None
    asr: object = None
    embedder: object = None
    diarizer: object = None
    speaker_stage: object = None
    text_encoder: object = None
    face_stage: object | None = None


class LivePipeline:
    """Opens sources and models (one-line errors), wires the runtime, runs it, reports."""

    def __init__(self, options: LiveOptions) -> None:
        self.options = options
        self.states = SpeakerStates(StateOptions(options.decay_s, options.switch_margin))
        self.arrivals = ArrivalLog()
        self.runtime = Runtime(stop_timeout_s=2.0)
        self.writer: EventWriter | None = None
        self.mqtt = None  # edge_app.mqtt_sink.MqttSink, connected in open()
        self.loaded: Loaded | None = None
        self.emotion: EmotionStage | None = None
        self.assembler: UtteranceAssembler | None = None
        self.turns: TurnRecords | None = None
        self.face_stage_adapter: FaceStage | None = None
        self.status = "starting"
        self.header: HeaderInfo | None = None
        self.events_written = 0
        self._cpu0 = time.process_time()
        self._closers: list[Callable[[], None]] = []  # what ``open`` opened, to release at the end
        self.on_resolve: Callable | None = None  # registry hook: "loading <model>" (edge_app.live)

    # -- opening ----------------------------------------------------------------------------
    def open(self) -> Loaded:
        """Open sources, then the emotion backend, then the perception models."""
        opts = self.options
        from engines.backend import BACKEND_NAMES

        if opts.backend.strip().lower() not in (*BACKEND_NAMES, "auto", "ort", "onnx", "trt"):
            from engines.errors import UnknownBackendError

            raise UnknownBackendError(
                f"unknown backend {opts.backend!r}; fix: use one of auto, "
                f"{', '.join(BACKEND_NAMES)}"
            )
        from mlsan.registry import default_registry

        registry = default_registry(dict(opts.model_paths), on_resolve=self.on_resolve)
        if opts.mqtt is not None and self.mqtt is None:
            # First: an unreachable broker fails in a second, before any model loads.
            from edge_app.mqtt_sink import MqttSink

            self.mqtt = MqttSink(opts.mqtt, speaker_state=self.states.get)
            self._closers.append(self.mqtt.close)
        # A camera is live: everything then runs on the wall clock, whatever --fast says.
        clock = MediaClock(realtime=True if opts.camera is not None else opts.realtime)
        video_source = video_label = None
        closers = self._closers
        if opts.camera is not None:
            from edge_app.video.sources import CameraOptions, CameraSource

            # Open (and read one frame) now so a missing camera fails before any model loads;
            # opening does not start the clock, so media time 0 stays when the threads start.
            cam = CameraSource(CameraOptions(index=opts.camera), clock)
            closers.append(cam.close)
            cam.open()
            video_source, video_label = cam, f"camera {opts.camera}"
        elif opts.video is not None:
            from edge_app.video.sources import VideoFileSource

            vid = VideoFileSource(opts.video, clock)
            closers.append(vid.close)
            video_source, video_label = vid, f"video {opts.video.name}"
        from edge_app.audio.sources import FileAudioSource, MicSource

        audio_path = opts.audio or opts.video
        if audio_path is not None:
            audio_source = FileAudioSource(audio_path, clock)
            pace = "real time" if clock.realtime else "fast"
            audio_label = f"audio {Path(audio_path).name} ({pace})"
        else:
            audio_source = MicSource(clock, device=opts.mic)
            closers.append(audio_source.close)
            audio_label = f"mic {opts.mic if opts.mic is not None else 'default'}"

        ckpt = registry.resolve("mlsan").path
        info = ModelInfo.from_checkpoint(ckpt)
        from engines.backend import create_backend

        # Causal whatever the checkpoint's training mode: live, only the past is known. One
        # thread: an utterance is a [1, T<=context] batch, and the other cores are busy.
        backend = create_backend(
            opts.backend, ckpt, max_context=max(opts.context, 1), mode="causal", threads=1
        )
        closers.append(backend.close)
        info.check_signature(backend.signature)
        loaded = Loaded(clock, audio_source, audio_label, video_source, video_label, info, backend)

        from dataclasses import replace as _replace

        from edge_app.audio.gallery import SpeakerGallery
        from edge_app.audio.offline import (
            AudioPipelineOptions,
            make_embedder,
            make_speaker_stage,
            make_vad,
            make_vad_model,
        )

        # The same stages and defaults as `mlsan-live diarize` (audio.offline); only the
        # segment cut is a flag here. The gallery before the heavy models: a corrupt one, or one
        # made with another voice model, fails at once (it is never overwritten).
        audio_opts = opts.audio_options or AudioPipelineOptions()
        if opts.speculative_asr and clock.realtime:  # early guesses only where they are used
            from edge_app.audio.segmentation import TENTATIVE_CONTEXT_S

            audio_opts = _replace(
                audio_opts,
                segmentation=_replace(
                    audio_opts.segmentation, tentative_context_s=TENTATIVE_CONTEXT_S
                ),
            )
        audio_opts = _replace(
            audio_opts,
            vad=_replace(audio_opts.vad, max_segment_s=opts.max_segment_s),
            vad_model=str(registry.resolve("segmentation").path),
            voice_model=str(registry.resolve("speaker").path),
        )
        gallery = None
        if opts.gallery is not None:
            from edge_app.audio.speaker import EMBED_DIM, model_id_of

            gallery = SpeakerGallery(
                opts.gallery,
                model_id=model_id_of(audio_opts.voice_model),
                embedding_dim=EMBED_DIM,
            )
            for who in opts.forget:
                gallery.forget(who)
            gallery.load()

        import torch

        torch.set_num_threads(1)  # 2 cores: whisper takes its own threads; torch stages share one
        from edge_app.audio.asr import AsrOptions, WhisperTranscriber
        from mlsan.features import TextEncoder

        loaded.vad = make_vad(audio_opts, make_vad_model(audio_opts))
        loaded.asr = WhisperTranscriber(
            AsrOptions(
                model=str(registry.resolve("asr").path),
                cpu_threads=opts.asr_threads,
                encoder=opts.asr_encoder,
            )
        )
        loaded.embedder = make_embedder(
            audio_opts.embedder, audio_opts.voice, audio_opts.voice_model
        )
        loaded.speaker_stage = make_speaker_stage(audio_opts, loaded.embedder, gallery)
        loaded.diarizer = loaded.speaker_stage.diarizer
        known = {p.speaker_id for p in loaded.diarizer.speakers()}
        for sid, name in opts.names:
            if sid in known:
                loaded.diarizer.rename(sid, name)
        _quiet_hf()
        loaded.text_encoder = TextEncoder(info.text_feature, registry.resolve("text").path)
        if video_source is not None:
            from edge_app.video.expression import ExpressionOptions
            from edge_app.video.faces import LandmarkerOptions
            from edge_app.video.stage import FaceTrackStage

            # The face-expression encoder runs on every face only when the checkpoint reads
            # its embedding (a model that never saw faces masks them: no CPU spent on it).
            expression = None
            if info.visual_feature == "face-expression" and "visual" in info.trained_modalities:
                expression = ExpressionOptions(model_path=registry.resolve("face_expression").path)
            loaded.face_stage = FaceTrackStage(
                LandmarkerOptions(model_path=registry.resolve("face").path),
                expression=expression,
            )
            closers.append(loaded.face_stage.close)
        self._warm_up(loaded)
        self.loaded = loaded
        return loaded

    def _warm_up(self, loaded: Loaded) -> None:
        """One pass through each model so the first utterance is not charged for lazy setup."""
        from edge_app.messages import SAMPLE_RATE

        rng = np.random.default_rng(0)
        noise = (0.01 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
        seg = SpeechSegment(-1, 0.0, 1.0, noise)
        loaded.asr.transcribe(seg)
        loaded.embedder.embed_segment(seg)
        loaded.text_encoder.encode(["warm up"])
        loaded.backend.infer(_one_row(loaded.backend.signature))

    # -- wiring -----------------------------------------------------------------------------
    def build(self) -> Runtime:
        opts = self.options
        ld = self.loaded or self.open()
        rt = self.runtime
        audio_policy = Overflow.DROP_NEWEST if ld.clock.realtime else Overflow.BLOCK
        audio_q = rt.queue(
            "audio",
            256,
            audio_policy,
            put_timeout_s=0.5,
            units_of=lambda c: len(c.samples),
            units="samples",
        )
        # The open segment's audio so far (SegmentPrefix) is for the voice stage only.
        asr_q = rt.queue(
            "segments→asr",
            32,
            Overflow.BLOCK,
            accepts=lambda item: not isinstance(item, SegmentPrefix),
        )
        voice_q = rt.queue("segments→voice", 32, Overflow.BLOCK)
        parts_q = rt.queue("utterance parts", 64, Overflow.BLOCK, producers=2)
        utt_q = rt.queue("utterances", 64, Overflow.BLOCK)

        # The event sinks: utterance records (emotion stage) and turn records (voice stage).
        record_sinks: list[Callable] = []
        # The gallery is saved before the summary is written, so a failed save shows there.
        rt.on_stop("gallery", self._save_gallery)
        if opts.events is not None:
            self.writer = EventWriter(opts.events)
            rt.on_stop("events", self._close_events)
            record_sinks.append(self.writer.write)
        if self.mqtt is not None:
            if self.writer is None:
                rt.on_stop("events", self._close_events)
            record_sinks.append(self.mqtt.write)
        self.turns = TurnRecords(self.arrivals, dict(opts.names), tuple(record_sinks))

        rt.add_source("audio-source", ld.audio_source.chunks, [audio_q], on_item=self.arrivals.note)
        guesses = opts.speculative_asr and ld.clock.realtime
        prefix_s = opts.voice_prefix_s if ld.clock.realtime else None  # --fast: never idle
        rt.add_stage("vad", VadStage(ld.vad, guesses, prefix_s), audio_q, [asr_q, voice_q])
        rt.add_stage("asr", AsrStage(ld.asr, asr_q.qsize), asr_q, [parts_q])
        rt.add_stage(
            "voice",
            VoiceStage(ld.speaker_stage, voice_q.qsize, self.turns),
            voice_q,
            [parts_q],
            nice=opts.voice_nice,
        )
        faces = progress = None
        if ld.face_stage is not None:
            progress = VideoProgress(rt.stop_event)
            faces = VideoFaceContext(ld.face_stage, progress, 0.5 if ld.clock.realtime else 60.0)
        self.assembler = UtteranceAssembler(faces, dict(opts.names), ld.diarizer.resolve)
        rt.add_stage("assemble", self.assembler, parts_q, [utt_q])

        features = FeatureOptions(max_context=opts.context)
        featurizer = UtteranceFeaturizer(
            ld.info, ld.text_encoder, features, voice_states=ld.asr.voice_states
        )
        window = DialogueWindow(ld.info, features)
        sinks = list(record_sinks)
        if opts.headless and opts.events != "-":
            sinks.append(lambda ev: print(human_line(ev), flush=True))
        self.emotion = EmotionStage(
            featurizer, window, ld.backend, self.states, self.arrivals, tuple(sinks)
        )
        rt.add_stage("emotion", self.emotion, utt_q)

        if ld.video_source is not None:
            # Live: the newest frame wins. Fast replay: nothing is live, so no frame is dropped.
            video_policy = Overflow.DROP_OLDEST if ld.clock.realtime else Overflow.BLOCK
            frames_q = rt.queue("frames", 2, video_policy, units="frames")
            self.face_stage_adapter = FaceStage(ld.face_stage, progress)
            rt.add_source("video-source", ld.video_source.frames, [frames_q])
            rt.add_stage("faces", self.face_stage_adapter, frames_q)
        # Never release a model under a thread that did not stop (native code could crash).
        rt.on_stop("close", self.close)

        sources = ld.audio_label + (f" + {ld.video_label}" if ld.video_label else "")
        trained = "+".join(ld.info.trained_modalities)
        self.header = HeaderInfo(
            sources=sources,
            backend=str(getattr(ld.backend, "name", opts.backend)),
            model=f"{ld.info.path.name} [{trained}, {ld.info.context_mode}, "
            f"speaker={ld.info.speaker_source}, context {opts.context}]",
            notes=featurizer.notes,
        )
        return rt

    def _save_gallery(self) -> None:
        ld = self.loaded
        if ld is None or ld.diarizer.gallery is None:
            return
        known = {p.speaker_id for p in ld.diarizer.speakers()}
        for sid, name in self.options.names:
            if sid in known:
                ld.diarizer.rename(sid, name)
        ld.diarizer.save()

    def _close_events(self) -> None:
        rt = self.runtime
        self.status = "failed" if rt.failure() else "interrupted" if rt.interrupted else "finished"
        if self.mqtt is not None:  # what reached the broker is final before the summary
            self.mqtt.drain(self.options.mqtt.drain_s)
        summary = self.summary_record()
        if self.mqtt is not None:
            self.mqtt.write(summary)
            self.mqtt.close()
        if self.writer is not None:
            self.writer.write(summary)
            self.events_written = self.writer.count
            self.writer.close()

    def close(self) -> None:
        """Release sources and models, unless a thread is still inside one (native code could
        crash under it; the process is about to exit anyway)."""
        if not self.runtime.unstopped:
            self._close_all()

    def _close_all(self) -> None:
        """Release what ``open`` opened (idempotent; also after a failed ``open``)."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing is best effort at the end
                log.debug("close failed", exc_info=True)

    # -- reporting --------------------------------------------------------------------------
    def snapshot(self) -> UiSnapshot:
        assert self.header is not None
        stats = self.runtime.stats()
        p50, p95, n = self.emotion.latency_stats() if self.emotion else (None, None, 0)
        fps = None
        faces = stats.stage("faces")
        if faces is not None and stats.wall_s > 0:
            fps = faces.items / stats.wall_s
        dropped = self.arrivals.dropped_samples
        audio_q = stats.queue("audio")
        if audio_q is not None:
            dropped += audio_q.dropped_units
        return UiSnapshot(
            header=self.header,
            speakers=self.states.snapshot(),
            stats=stats,
            media_t=self.arrivals.media_t,
            video_fps=fps,
            faces_in_view=(
                self.face_stage_adapter.faces_in_view if self.face_stage_adapter else None
            ),
            latency_p50_s=p50,
            latency_p95_s=p95,
            utterances=n,
            audio_dropped_s=dropped / 16000,
            status=self.status,
        )

    def summary_record(self) -> dict:
        snap = self.snapshot()
        stats = snap.stats
        # Process CPU time: counts the native threads of CTranslate2/torch/onnxruntime too.
        cpu = time.process_time() - self._cpu0
        asm = self.assembler
        ahead = getattr(getattr(self.loaded, "asr", None), "ahead", None)
        voice_ahead = getattr(getattr(self.loaded, "embedder", None), "ahead", None)
        return {
            "type": "summary",
            "media_s": round(snap.media_t, 3),
            "wall_s": round(stats.wall_s, 3),
            "cpu_s": round(cpu, 3),
            "utterances": snap.utterances,
            "speakers": [s.speaker for s in snap.speakers],
            "latency_p50_s": None if snap.latency_p50_s is None else round(snap.latency_p50_s, 4),
            "latency_p95_s": None if snap.latency_p95_s is None else round(snap.latency_p95_s, 4),
            "audio_samples_dropped": int(round(snap.audio_dropped_s * 16000)),
            "drops": {q.name: q.dropped for q in stats.queues},
            # Turn records (who spoke when): emitted, of them overlap turns, latency from the
            # turn's end to its record
            "turns": self.turns.stats() if self.turns is not None else None,
            "skipped_no_words": asm.skipped_no_words if asm else 0,
            # Speculative ASR: guesses transcribed, kept (exact / near), transcribed again, skipped
            "asr_ahead": asdict(ahead) if ahead is not None else None,
            # CAM++ windows the voice stage embedded ahead, and of the handed-on segments'
            # windows those reused from them / computed at hand-on (CamppEmbedder.embed_ahead)
            "voice_ahead": asdict(voice_ahead) if voice_ahead is not None else None,
            # Who ran Whisper's encoder: "bf16" (PyTorch, CPUs with AMX) or "ctranslate2"
            "asr_encoder": getattr(getattr(self.loaded, "asr", None), "encoder_kind", None),
            "stages": {
                s.name: {
                    "items": s.items,
                    "latency_median_ms": None
                    if s.latency_median_ms is None
                    else round(s.latency_median_ms, 2),
                    "latency_p95_ms": None
                    if s.latency_p95_ms is None
                    else round(s.latency_p95_ms, 2),
                    "cpu_s": round(s.cpu_s, 3),
                }
                for s in stats.stages
            },
            "status": self.status,
            "error": (str(self.runtime.failure()) if self.runtime.failure() else None),
            **({"mqtt": self.mqtt.stats()} if self.mqtt is not None else {}),
        }

    def summary_line(self) -> str:
        r = self.summary_record()
        lat = (
            "—"
            if r["latency_p50_s"] is None
            else f"p50 {r['latency_p50_s']:.2f}s p95 {r['latency_p95_s']:.2f}s"
        )
        drops = {k: v for k, v in r["drops"].items() if v}
        return (
            f"mlsan-live: {r['utterances']} utterances from {len(r['speakers'])} speakers in "
            f"{r['media_s']:.1f}s of media ({r['wall_s']:.1f}s wall, {r['cpu_s']:.1f} CPU s); "
            f"utterance end -> emotion {lat}; drops: {drops or 'none'}, audio samples lost "
            f"{r['audio_samples_dropped']}"
        )

    # -- running ----------------------------------------------------------------------------
    def run(self) -> int:
        """Open, build, run to the end (or Ctrl-C); one line on stderr at the end."""
        rt = self.build()
        ui = None
        if not self.options.headless:
            from edge_app.ui import TerminalUI

            ui = TerminalUI(self.snapshot, refresh_hz=self.options.refresh_hz)
            self.emotion.sinks = (*self.emotion.sinks, lambda _event: ui.poke())
        self.status = "running"
        self._cpu0 = time.process_time()
        failure: UserFacingError | None = None
        try:
            if ui is not None:
                ui.start()
            rt.run()
            self.status = "interrupted" if rt.interrupted else "finished"
        except UserFacingError as exc:
            self.status = "failed"
            failure = exc
        finally:
            if ui is not None:
                ui.stop()
        if ui is not None and ui.error is not None:
            print(f"mlsan-live: warning: the terminal UI failed: {ui.error!r}", file=sys.stderr)
        if rt.unstopped:
            print(
                f"mlsan-live: warning: stage(s) {', '.join(rt.unstopped)} did not stop within "
                f"{rt.stop_timeout_s:.0f}s",
                file=sys.stderr,
            )
        if failure is not None:
            if self.options.debug and rt.stage_exception() is not None:
                import traceback

                exc = rt.stage_exception()
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            raise failure
        print(self.summary_line(), file=sys.stderr, flush=True)
        return 0


def _quiet_hf() -> None:
    """No Hugging Face progress bars or banners on the terminal the UI draws on."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def _one_row(signature):
    """A one-utterance input with text present (warm-up)."""
    from engines.types import EmotionInputs

    z = signature.zeros(1, 1)
    mask = np.zeros((1, 1, 3), np.float32)
    mask[..., 0] = 1.0
    return EmotionInputs(z.text, z.audio, z.visual, mask, z.speaker, np.ones((1, 1), np.float32))

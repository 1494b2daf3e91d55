"""The audio stages chained sequentially over one file (no threads): VAD -> speaker stage
(voice -> diarizer -> overlap) (-> ASR). Used by ``mlsan-live diarize``, the benchmark and the
tests; the live runtime builds the same stages with the same options (``make_vad``,
``make_speaker_stage``) and chains them on its own threads.

API::

    stages = AudioStages.load(AudioPipelineOptions(), transcribe=True)   # loads the models once
    result = process_file("talk.wav", stages)                             # FileResult
    result.turns, result.segments, result.transcripts
    write_rttm(result.turns, "talk", out_path)

Defaults (``AudioPipelineOptions()``, the same for ``diarize`` and the live run): pyannote
segmentation-3.0 speech detection, CAM++ voices, the online diarizer, overlap turns, 6 s
segment cut. ``LEGACY`` is the previous pipeline (Silero, resemblyzer), kept for the benchmark.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_app.audio.asr import AsrOptions, WhisperTranscriber
from edge_app.audio.diarizer import LEGACY_DIARIZER, DiarizerOptions, OnlineDiarizer
from edge_app.audio.gallery import SpeakerGallery
from edge_app.audio.segmentation import SegmentationOptions, SegmentationVad
from edge_app.audio.sources import FileAudioSource
from edge_app.audio.speaker import CamppEmbedder
from edge_app.audio.speakers import OverlapOptions, SpeakerStage
from edge_app.audio.vad import SileroVad, StreamingVad, VadOptions
from edge_app.audio.voice import VoiceEmbedder, VoiceOptions
from edge_app.clock import MediaClock
from edge_app.messages import SpeakerTurn, SpeechSegment, Transcript
from mlsan.errors import UserFacingError


@dataclass(frozen=True)
class AudioPipelineOptions:
    vad: VadOptions = field(default_factory=VadOptions)
    voice: VoiceOptions = field(default_factory=VoiceOptions)
    diarizer: DiarizerOptions = field(default_factory=DiarizerOptions)
    asr: AsrOptions = field(default_factory=AsrOptions)
    # "segmentation" (default; pyannote segmentation-3.0 on a rolling window, registry
    # "segmentation") or "silero" (the previous VAD, registry "vad"; misses ~40 % of AMI speech).
    vad_engine: str = "segmentation"
    segmentation: SegmentationOptions = field(default_factory=SegmentationOptions)
    vad_model: str | None = None  # None: the registry's model for vad_engine
    voice_model: str | None = None  # None: registry "voice" (resemblyzer) / "speaker" (CAM++)
    # "campplus" (default; registry "speaker") or "resemblyzer" (the previous model, registry
    # "voice"; kept for comparison: at chance on far-field AMI speech, see bench_diarization).
    embedder: str = "campplus"
    overlap: OverlapOptions = field(default_factory=OverlapOptions)


# The previous pipeline (Silero VAD with its sample-tuned values, resemblyzer windows, the
# diarizer's resemblyzer thresholds, no overlap turns), kept for bench/bench_diarization.py.
LEGACY = AudioPipelineOptions(
    vad=VadOptions(threshold=0.55, neg_threshold=None, pad_s=0.05, max_segment_s=6.0),
    voice=VoiceOptions(window_s=2.0, hop_s=0.25, min_segment_s=0.3),
    diarizer=LEGACY_DIARIZER,
    vad_engine="silero",
    embedder="resemblyzer",
    overlap=OverlapOptions(enabled=False),
)


@dataclass
class AudioStages:
    """Loaded models (reusable across files); the diarizer is made per file or per gallery."""

    options: AudioPipelineOptions
    vad_model: SileroVad | SegmentationVad
    embedder: VoiceEmbedder | CamppEmbedder
    asr: WhisperTranscriber | None

    @classmethod
    def load(cls, options: AudioPipelineOptions, transcribe: bool = False) -> AudioStages:
        from mlsan.blas_threads import one_blas_thread

        one_blas_thread()  # as the live run (LivePipeline.open, via the ASR): no spinning worker
        return cls(
            options=options,
            vad_model=make_vad_model(options),
            embedder=make_embedder(options.embedder, options.voice, options.voice_model),
            asr=WhisperTranscriber(options.asr) if transcribe else None,
        )


EMBEDDERS = ("campplus", "resemblyzer")
VAD_ENGINES = ("segmentation", "silero")


def make_vad_model(options: AudioPipelineOptions) -> SileroVad | SegmentationVad:
    """The frame-probability model of ``options.vad_engine`` (see ``VAD_ENGINES``)."""
    if options.vad_engine == "segmentation":
        return SegmentationVad(options.segmentation, options.vad_model)
    if options.vad_engine == "silero":
        return SileroVad(options.vad_model)
    raise UserFacingError(
        f"unknown VAD {options.vad_engine!r}; fix: use one of {', '.join(VAD_ENGINES)}"
    )


def make_vad(options: AudioPipelineOptions, model: SileroVad | SegmentationVad) -> StreamingVad:
    return StreamingVad(options.vad, model)


def make_speaker_stage(
    options: AudioPipelineOptions,
    embedder,
    gallery: SpeakerGallery | None = None,
) -> SpeakerStage:
    """Embedder -> diarizer (with the gallery) -> overlap turns (from the p(two speakers) the
    speech detection attaches to each segment)."""
    diarizer = OnlineDiarizer(options.diarizer, gallery, model_id=embedder.model_id)
    return SpeakerStage(embedder, diarizer, options.overlap)


def make_embedder(name: str, options: VoiceOptions, weights=None) -> VoiceEmbedder | CamppEmbedder:
    """The voice embedder called ``name`` (see ``EMBEDDERS``); weights None: the registry's."""
    if name == "campplus":
        return CamppEmbedder(options, weights)
    if name == "resemblyzer":
        return VoiceEmbedder(options, weights)
    raise UserFacingError(
        f"unknown speaker embedder {name!r}; fix: use one of {', '.join(EMBEDDERS)}"
    )


@dataclass(frozen=True)
class FileResult:
    duration: float
    segments: tuple[SpeechSegment, ...]
    turns: tuple[SpeakerTurn, ...]
    transcripts: tuple[Transcript, ...]
    diarizer: OnlineDiarizer
    # Second-speaker turns in overlapped speech (speakers.SpeakerStage); ``turns`` are the
    # diarizer's own turns (time order, disjoint). An RTTM / the live run carry both.
    overlaps: tuple[SpeakerTurn, ...] = ()
    # segment_id -> media time (s) at which the VAD emitted the segment: the end of the audio
    # chunk that completed it (None: at the end of the stream). A turn's ``emitted - t_end`` is
    # the wait the speech detection adds to the live latency (bench_diarization "turn_wait").
    emitted_at: dict[int, float | None] = field(default_factory=dict)

    @property
    def all_turns(self) -> tuple[SpeakerTurn, ...]:
        return tuple(sorted(self.turns + self.overlaps, key=lambda t: (t.t_start, t.t_end)))


def process_file(
    path: str | Path,
    stages: AudioStages,
    gallery: SpeakerGallery | None = None,
    realtime: bool = False,
    stop: threading.Event | None = None,
    resolve_merged: bool = True,
) -> FileResult:
    """``resolve_merged``: report turns under the surviving id of a speaker merged later (split
    repair), as a file report wants; False keeps each turn's id exactly as it was emitted live."""
    stop = stop or threading.Event()
    clock = MediaClock(realtime=realtime)
    source = FileAudioSource(path, clock)
    stages.vad_model.reset()
    vad = make_vad(stages.options, stages.vad_model)
    speaker = make_speaker_stage(stages.options, stages.embedder, gallery)
    diarizer = speaker.diarizer
    segments: list[SpeechSegment] = []
    turns: list[SpeakerTurn] = []
    transcripts: list[Transcript] = []
    overlaps: list[SpeakerTurn] = []
    emitted_at: dict[int, float | None] = {}

    def handle(segs: list[SpeechSegment], now: float | None) -> None:
        for seg in segs:
            segments.append(seg)
            emitted_at[seg.segment_id] = now
            main, extra = speaker.process_split(seg)
            turns.extend(main)
            overlaps.extend(extra)
            if stages.asr is not None:
                transcripts.append(stages.asr.transcribe(seg))

    for chunk in source.chunks(stop):
        handle(vad.process(chunk), chunk.t_end)
    handle(vad.flush(), None)

    # Ids may have been merged after a turn was emitted: report the surviving ids.
    def resolved(items: list[SpeakerTurn]) -> tuple[SpeakerTurn, ...]:
        if not resolve_merged:
            return tuple(items)
        return tuple(
            t
            if diarizer.resolve(t.speaker_id) == t.speaker_id
            else replace(t, speaker_id=diarizer.resolve(t.speaker_id))
            for t in items
        )

    return FileResult(
        duration=source.stats().seconds,
        segments=tuple(segments),
        turns=resolved(turns),
        transcripts=tuple(transcripts),
        diarizer=diarizer,
        overlaps=resolved(overlaps),
        emitted_at=emitted_at,
    )


def write_rttm(turns: tuple[SpeakerTurn, ...] | list[SpeakerTurn], uri: str, path: str | Path):
    """One ``SPEAKER`` line per turn (NIST RTTM)."""
    lines = [
        f"SPEAKER {uri} 1 {t.t_start:.3f} {t.t_end - t.t_start:.3f} <NA> <NA> {t.speaker_id} "
        "<NA> <NA>\n"
        for t in turns
        if t.t_end > t.t_start
    ]
    out = Path(path)
    if str(out) == "-":
        import sys

        sys.stdout.writelines(lines)
    else:
        out.write_text("".join(lines))

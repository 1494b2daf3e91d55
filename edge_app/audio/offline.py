"""The audio stages chained sequentially over one file (no threads): VAD -> voice -> diarizer
(-> ASR). Used by ``mlsan-live diarize``, the benchmark and the tests; the live runtime chains
the same stages on its own threads.

API::

    stages = AudioStages.load(AudioPipelineOptions(), transcribe=True)   # loads the models once
    result = process_file("talk.wav", stages)                             # FileResult
    result.turns, result.segments, result.transcripts
    write_rttm(result.turns, "talk", out_path)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from edge_app.audio.asr import AsrOptions, WhisperTranscriber
from edge_app.audio.diarizer import DiarizerOptions, OnlineDiarizer
from edge_app.audio.gallery import SpeakerGallery
from edge_app.audio.sources import FileAudioSource
from edge_app.audio.vad import SileroVad, StreamingVad, VadOptions
from edge_app.audio.voice import VoiceEmbedder, VoiceOptions
from edge_app.clock import MediaClock
from edge_app.messages import SpeakerTurn, SpeechSegment, Transcript


@dataclass(frozen=True)
class AudioPipelineOptions:
    vad: VadOptions = field(default_factory=VadOptions)
    voice: VoiceOptions = field(default_factory=VoiceOptions)
    diarizer: DiarizerOptions = field(default_factory=DiarizerOptions)
    asr: AsrOptions = field(default_factory=AsrOptions)
    vad_model: str | None = None  # None: registry "vad"
    voice_model: str | None = None  # None: registry "voice"


@dataclass
class AudioStages:
    """Loaded models (reusable across files); the diarizer is made per file or per gallery."""

    options: AudioPipelineOptions
    vad_model: SileroVad
    embedder: VoiceEmbedder
    asr: WhisperTranscriber | None

    @classmethod
    def load(cls, options: AudioPipelineOptions, transcribe: bool = False) -> AudioStages:
        return cls(
            options=options,
            vad_model=SileroVad(options.vad_model),
            embedder=VoiceEmbedder(options.voice, options.voice_model),
            asr=WhisperTranscriber(options.asr) if transcribe else None,
        )


@dataclass(frozen=True)
class FileResult:
    duration: float
    segments: tuple[SpeechSegment, ...]
    turns: tuple[SpeakerTurn, ...]
    transcripts: tuple[Transcript, ...]
    diarizer: OnlineDiarizer


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
    vad = StreamingVad(stages.options.vad, stages.vad_model)
    diarizer = OnlineDiarizer(stages.options.diarizer, gallery)
    segments: list[SpeechSegment] = []
    turns: list[SpeakerTurn] = []
    transcripts: list[Transcript] = []

    def handle(segs: list[SpeechSegment]) -> None:
        for seg in segs:
            segments.append(seg)
            turns.extend(diarizer.process(stages.embedder.embed_segment(seg)))
            if stages.asr is not None:
                transcripts.append(stages.asr.transcribe(seg))

    for chunk in source.chunks(stop):
        handle(vad.process(chunk))
    handle(vad.flush())
    # Ids may have been merged after a turn was emitted: report the surviving ids.
    turns = (
        turns
        if not resolve_merged
        else [
            t
            if diarizer.resolve(t.speaker_id) == t.speaker_id
            else SpeakerTurn(
                t.segment_id,
                t.t_start,
                t.t_end,
                diarizer.resolve(t.speaker_id),
                t.embedding,
                t.similarity,
                t.is_new,
                t.name,
            )
            for t in turns
        ]
    )
    return FileResult(
        duration=source.stats().seconds,
        segments=tuple(segments),
        turns=tuple(turns),
        transcripts=tuple(transcripts),
        diarizer=diarizer,
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

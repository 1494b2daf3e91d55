"""Utterance assembly: speech segment + transcript + speaker turns + bound face -> Utterance.

The VAD's segments fan out to two workers that run in parallel: speech recognition
(-> :class:`~edge_app.messages.Transcript`) and voice/diarization (-> :class:`VoicedSegment`,
the segment with its speaker turns). Both land in one queue; :class:`UtteranceAssembler` joins
them by ``segment_id`` and emits one :class:`Utterance` per speaker turn:

* words go to the turn that holds their midpoint (a segment in which the speaker changes is
  split where the diarizer put the change); a transcript without word times goes whole to the
  longest turn;
* a segment too short for a voice embedding (no turns) goes to the previous speaker;
* a turn with no words is skipped and counted (the emotion model needs words for now; see
  ``skipped_no_words``);
* with video, each turn updates the face-voice binding and takes the bound face's pooled
  features over the turn (``FaceContext``); the face is "seen" when it covered enough of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge_app.messages import SAMPLE_RATE, SpeakerTurn, SpeechSegment, Transcript, Word


@dataclass(frozen=True)
class VoicedSegment:
    """A speech segment with the speaker turns the diarizer found in it (may be empty)."""

    segment: SpeechSegment
    turns: tuple[SpeakerTurn, ...]
    # the ``turn_id`` of each turn's record in the event stream (live run), parallel to turns;
    # empty when no records were written (diarize, tests)
    turn_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class FaceEvidence:
    """The bound face of a speaker over one utterance."""

    track_id: int | None  # None: unbound (or no video)
    binding_confidence: float
    visual: np.ndarray | None  # (VISUAL_DIM,) float32 pooled features; None when absent
    coverage: float  # share of the utterance's frames in which the face was seen
    expression: np.ndarray | None = None  # (D,) pooled face-expression embedding, None if absent


NO_FACE = FaceEvidence(None, 0.0, None, 0.0)


class FaceContext(Protocol):
    """What the assembler needs from the video side (see ``live_pipeline.VideoFaceContext``)."""

    def evidence(self, turn: SpeakerTurn) -> FaceEvidence: ...


@dataclass(frozen=True)
class Utterance:
    """One speaker's stretch of speech, everything the emotion stage needs."""

    utterance_id: int
    segment_id: int
    t_start: float
    t_end: float
    speaker: str
    speaker_name: str | None
    text: str
    words: tuple[Word, ...]
    samples: np.ndarray  # (n,) float32 SAMPLE_RATE, the audio of [t_start, t_end)
    voice: np.ndarray | None  # (256,) d-vector of the turn (the previous one's if too short)
    face: FaceEvidence
    new_speaker: bool = False  # this utterance enrolled its speaker
    segment_t_end: float = 0.0  # end of its VAD segment (> t_end when the speaker changed inside)
    turn_id: int | None = None  # the turn record it lies in (None: no record, or no turn)

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start


def _slice(segment: SpeechSegment, t0: float, t1: float) -> np.ndarray:
    a = max(0, int(round((t0 - segment.t_start) * SAMPLE_RATE)))
    b = min(len(segment.samples), int(round((t1 - segment.t_start) * SAMPLE_RATE)))
    return segment.samples[a:b] if b > a else segment.samples[:0]


def _join(words: Iterable[Word]) -> str:
    # Words carry their punctuation ("Hello," "there."); spaces may or may not be included.
    return " ".join(w.text.strip() for w in words if w.text.strip())


def split_words(transcript: Transcript, turns: tuple[SpeakerTurn, ...]) -> list[tuple[Word, ...]]:
    """The words of each turn (by word midpoint; nearest turn for words outside all turns)."""
    out: list[list[Word]] = [[] for _ in turns]
    if not turns:
        return []
    if not transcript.words:
        longest = max(range(len(turns)), key=lambda i: turns[i].t_end - turns[i].t_start)
        if transcript.text.strip():
            out[longest].append(Word(transcript.text, transcript.t_start, transcript.t_end, 1.0))
        return [tuple(w) for w in out]
    for word in transcript.words:
        mid = (word.t_start + word.t_end) / 2
        dist = [
            0.0 if t.t_start <= mid < t.t_end else min(abs(mid - t.t_start), abs(mid - t.t_end))
            for t in turns
        ]
        out[int(np.argmin(dist))].append(word)
    return [tuple(w) for w in out]


class UtteranceAssembler:
    """Joins transcripts and voiced segments by segment id (a runtime Stage: process/flush)."""

    def __init__(
        self,
        faces: FaceContext | None = None,
        names: dict[str, str] | None = None,
        resolve_speaker=None,  # callable(speaker_id) -> surviving id (diarizer merges)
    ) -> None:
        self.faces = faces
        self.names = dict(names or {})
        self._resolve = resolve_speaker or (lambda sid: sid)
        self._transcripts: dict[int, Transcript] = {}
        self._voiced: dict[int, VoicedSegment] = {}
        self._next_id = 0
        self._last_speaker: SpeakerTurn | None = None
        self._lock = threading.Lock()  # counters read by the stats thread
        self.skipped_no_words = 0
        self.skipped_no_speaker = 0
        self.emitted = 0

    def process(self, item: Transcript | VoicedSegment) -> list[Utterance]:
        if isinstance(item, Transcript):
            self._transcripts[item.segment_id] = item
            sid = item.segment_id
        elif isinstance(item, VoicedSegment):
            self._voiced[item.segment.segment_id] = item
            sid = item.segment.segment_id
        else:
            raise TypeError(f"assembler got {type(item).__name__}")
        if sid in self._transcripts and sid in self._voiced:
            return self._assemble(self._transcripts.pop(sid), self._voiced.pop(sid))
        return []

    def flush(self) -> list[Utterance]:
        """End of stream: segments that only got one half are dropped (counted)."""
        with self._lock:
            self.skipped_no_speaker += len(set(self._transcripts) - set(self._voiced))
        self._transcripts.clear()
        self._voiced.clear()
        return []

    def _assemble(self, transcript: Transcript, voiced: VoicedSegment) -> list[Utterance]:
        seg = voiced.segment
        turns = voiced.turns
        if not turns:
            if self._last_speaker is None or not transcript.text.strip():
                with self._lock:
                    self.skipped_no_speaker += bool(transcript.text.strip())
                return []
            prev = self._last_speaker
            turns = (
                SpeakerTurn(
                    seg.segment_id,
                    seg.t_start,
                    seg.t_end,
                    prev.speaker_id,
                    prev.embedding,
                    0.0,
                    False,
                    prev.name,
                ),
            )
        out: list[Utterance] = []
        ids = voiced.turn_ids if len(voiced.turn_ids) == len(turns) else (None,) * len(turns)
        for turn, words, turn_id in zip(turns, split_words(transcript, turns), ids, strict=True):
            turn = self._resolved(turn)
            self._last_speaker = turn
            text = _join(words)
            if not text:
                with self._lock:
                    self.skipped_no_words += 1
                continue
            t0, t1 = turn.t_start, turn.t_end
            face = self.faces.evidence(turn) if self.faces is not None else NO_FACE
            out.append(
                Utterance(
                    utterance_id=self._next_id,
                    segment_id=seg.segment_id,
                    t_start=t0,
                    t_end=t1,
                    speaker=turn.speaker_id,
                    speaker_name=self.names.get(turn.speaker_id) or turn.name,
                    text=text,
                    words=words,
                    samples=_slice(seg, t0, t1),
                    voice=turn.embedding,
                    face=face,
                    new_speaker=turn.is_new,
                    segment_t_end=seg.t_end,
                    turn_id=turn_id,
                )
            )
            self._next_id += 1
        with self._lock:
            self.emitted += len(out)
        return out

    def _resolved(self, turn: SpeakerTurn) -> SpeakerTurn:
        sid = self._resolve(turn.speaker_id)
        if sid == turn.speaker_id:
            return turn
        return SpeakerTurn(
            turn.segment_id,
            turn.t_start,
            turn.t_end,
            sid,
            turn.embedding,
            turn.similarity,
            turn.is_new,
            turn.name,
        )

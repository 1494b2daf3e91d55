"""Typed, timestamped messages that cross stage boundaries (frozen dataclasses).

Times are seconds on the media clock (see ``edge_app.clock``). Arrays are numpy; shapes are in
the comments. Stages add their own message types in their own modules when nobody else needs
them; types that two stages exchange live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000  # Hz, mono float32 in [-1, 1] everywhere in the audio path


@dataclass(frozen=True)
class AudioChunk:
    """A block of audio from a source."""

    t_start: float
    samples: np.ndarray  # (n,) float32, SAMPLE_RATE
    index: int = 0  # running chunk number of its source
    dropped_before: int = 0  # samples the source lost just before this chunk (overrun)

    @property
    def t_end(self) -> float:
        return self.t_start + len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechSegment:
    """A span of speech found by the VAD."""

    segment_id: int
    t_start: float
    t_end: float
    samples: np.ndarray  # (n,) float32, SAMPLE_RATE, the audio of [t_start, t_end)
    truncated: bool = False  # cut at the maximum segment length; speech goes on after it
    # Starts where the VAD cut the previous segment because another voice took over (no pause
    # between; see VadStateMachine's speaker-change cut).
    after_change: bool = False
    # p(two speakers) over the segment as the speech detection saw it when handing it on:
    # (time of the first 32-ms frame, (n,) float32); None when not read (StreamingVad.overlap).
    # Read then, not by the voice thread later, so the overlap turns do not depend on how far
    # the speech detection has got in the meantime (live and `diarize` give the same turns).
    overlap: tuple[float, np.ndarray] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SegmentGuess:
    """The VAD's guess of the segment it is about to hand on (``StreamingVad.speculation``),
    sent to speech recognition, which starts on it while the VAD makes sure, and to the voice
    stage, which embeds its windows ahead; its ``segment.segment_id`` is -1."""

    segment: SpeechSegment


@dataclass(frozen=True)
class SegmentPrefix:
    """The audio of the segment the VAD has open, so far (``StreamingVad.open_prefix``), sent
    to the voice stage only, which embeds its complete windows while the turn goes on; its
    ``segment.segment_id`` is -1."""

    segment: SpeechSegment


@dataclass(frozen=True)
class Word:
    text: str
    t_start: float
    t_end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    """What was said in one speech segment."""

    segment_id: int
    t_start: float
    t_end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class SpeakerTurn:
    """Who spoke (part of) a speech segment, from the voice."""

    segment_id: int
    t_start: float
    t_end: float
    speaker_id: str  # stable id, persisted in the gallery ("spk1", ...)
    embedding: np.ndarray  # (256,) float32, L2-normalised voice d-vector of this span
    similarity: float  # cosine similarity to the speaker's centroid when assigned
    is_new: bool = False  # enrolled by this turn
    name: str | None = None  # the name the user gave, if any


@dataclass(frozen=True)
class VideoFrame:
    index: int
    t: float
    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8 BGR


@dataclass(frozen=True)
class FaceObservation:
    """One tracked face in one frame."""

    track_id: int
    t: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in [0, 1] image coordinates
    blendshapes: np.ndarray  # (52,) float32 in [0, 1], MediaPipe's order
    pose: np.ndarray  # (3,) float32 yaw, pitch, roll in degrees
    mouth_activity: float  # >= 0, how much the mouth is moving now
    expression: np.ndarray | None = field(default=None, repr=False)  # (D,) float32 face embedding
    expression_reason: str | None = None  # why expression is None (too small, turned away, ...)


@dataclass(frozen=True)
class FrameFaces:
    """All faces seen in one frame (empty ``faces`` when none)."""

    frame_index: int
    t: float
    faces: tuple[FaceObservation, ...]

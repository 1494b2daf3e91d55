"""The event stream: one JSON object per line (JSON Lines), flushed as each is written.

Record types (field ``type``):

``utterance`` (one per utterance, when its emotion is ready)::

    {"type": "utterance", "utterance_id": 3, "turn_id": 5, "t_start": 8.32, "t_end": 10.02,
     "speaker": "spk1", "speaker_name": "Alice" | null, "text": "...",
     "emotion": "joy", "confidence": 0.61, "probs": {"neutral": 0.2, "joy": 0.61, ...},
     "state": "joy", "state_confidence": 0.48,          # rolling per-speaker label (smoothed)
     "trust": {"voice": 0.3, "face": 0.0, "words": 0.7}, # gate weights; 0 for a masked modality
     "masked": ["face"], "face_track": 2 | null, "binding_confidence": 0.8,
     "context": 5, "latency_s": 0.41}

``t_start``/``t_end`` are seconds on the media clock; ``latency_s`` is wall seconds from the
end of the utterance (its ``t_end`` being due on the wall clock) to its emotion being ready.
``turn_id``: the ``turn`` record the utterance's words belong to (null for a segment too short
to label, whose words go to the previous speaker).

``turn`` (who spoke when: one per speaker turn, as soon as the voice stage has labelled it,
before its words are known)::

    {"type": "turn", "turn_id": 7, "segment_id": 5, "t_start": 8.32, "t_end": 10.41,
     "speaker": "spk1", "speaker_name": "Alice" | null, "overlap": false,
     "new_speaker": false, "similarity": 0.62, "latency_s": 0.31}

The turns are the diarizer's output (``mlsan-live diarize`` writes the same turns as RTTM),
the stream's who-spoke-when record: they hold speech without words and, with
``"overlap": true``, the second voice where two people talk at once (``similarity`` 0: the
voice is inferred from the neighbouring turn, not measured). An utterance spans the turn
whose words it holds (its ``turn_id``); a turn without words, as most overlap turns are, has
none.
``speaker`` is the id as the turn was labelled; a later merge of two ids shows in later
records only. ``latency_s``: wall seconds from the turn's end being due to the record.

``summary`` (one, when the run ends): ``media_s``, ``wall_s``, ``cpu_s``, ``utterances``,
``turns`` (records, overlap ones, latency), ``drops`` (per queue), ``audio_samples_dropped``,
``stages`` (per-stage latency), ``error``.

``-`` writes to stdout. Writes are serialised by a lock; ``close`` flushes and (for a file)
closes. ``mqtt://HOST/PREFIX`` publishes the same records to a broker
(:class:`edge_app.mqtt_sink.MqttSink`); both follow :class:`EventSink`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from mlsan.errors import UserFacingError


@dataclass(frozen=True)
class EmotionEvent:
    """The emotion of one utterance, as the stage hands it to the sinks."""

    utterance_id: int
    t_start: float
    t_end: float
    speaker: str
    speaker_name: str | None
    text: str
    emotion: str
    confidence: float
    probs: tuple[tuple[str, float], ...]  # (label, probability), model order
    state: str  # smoothed per-speaker label after this utterance
    state_confidence: float
    trust: tuple[tuple[str, float], ...]  # (modality, gate weight)
    masked: tuple[str, ...]  # modalities the model did not get for this utterance
    face_track: int | None
    binding_confidence: float
    context: int  # utterances of dialogue context the model saw (this one included)
    latency_s: float
    turn_id: int | None = None  # the turn record the utterance lies in (None: no record)

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "utterance",
            "utterance_id": self.utterance_id,
            "turn_id": self.turn_id,
            "t_start": round(self.t_start, 3),
            "t_end": round(self.t_end, 3),
            "speaker": self.speaker,
            "speaker_name": self.speaker_name,
            "text": self.text,
            "emotion": self.emotion,
            "confidence": _r(self.confidence),
            "probs": {k: _r(v) for k, v in self.probs},
            "state": self.state,
            "state_confidence": _r(self.state_confidence),
            "trust": {k: _r(v) for k, v in self.trust},
            "masked": list(self.masked),
            "face_track": self.face_track,
            "binding_confidence": _r(self.binding_confidence),
            "context": self.context,
            "latency_s": _r(self.latency_s),
        }


@dataclass(frozen=True)
class TurnEvent:
    """One speaker turn, as the voice stage hands it to the sinks (see the module doc)."""

    turn_id: int
    segment_id: int
    t_start: float
    t_end: float
    speaker: str
    speaker_name: str | None
    overlap: bool  # the second voice of an overlap (SpeakerStage's overlap turns)
    new_speaker: bool  # this turn enrolled its speaker
    similarity: float  # cosine to the speaker's centroid when labelled (0 for an overlap turn)
    latency_s: float

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "turn",
            "turn_id": self.turn_id,
            "segment_id": self.segment_id,
            "t_start": round(self.t_start, 3),
            "t_end": round(self.t_end, 3),
            "speaker": self.speaker,
            "speaker_name": self.speaker_name,
            "overlap": self.overlap,
            "new_speaker": self.new_speaker,
            "similarity": _r(self.similarity),
            "latency_s": _r(self.latency_s),
        }


Event = EmotionEvent | TurnEvent


def _r(x: float, nd: int = 4) -> float | None:
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def check_writable(path: str | os.PathLike[str], flag: str, create_folders: bool = False) -> None:
    """Fail now, in one line, if ``path`` could not be written at the end of a run (before
    minutes of model loading, or a whole session's enrollment, are spent). Writes nothing
    that stays: a probe file in the folder is created and removed (that is what an atomic save
    needs; root passes permission checks, so asking is not enough). ``create_folders``: the
    writer creates missing folders (the gallery), so the nearest existing one is probed."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UserFacingError(f"{flag} {path} is a directory; fix: give a file path")
    folder = target.parent
    if not create_folders and not folder.is_dir():
        raise UserFacingError(
            f"{flag} {path}: folder {folder} does not exist; fix: create it first"
        )
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserFacingError(f"{flag} {path}: {folder} is not a folder; fix: give another path")
    if target.exists() and not os.access(target, os.W_OK):
        raise UserFacingError(f"{flag} {path} is read-only; fix: check its permissions")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mlsan-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserFacingError(
            f"{flag} {path}: cannot write in {folder} ({exc.strerror}); fix: check its "
            "permissions or give another path"
        ) from None


def check_writable_target(target: str, flag: str = "--events") -> None:
    """:func:`check_writable` for an event target ('-' is stdout: nothing to check)."""
    if target != "-":
        check_writable(target, flag)


class EventSink(Protocol):
    """What the pipeline writes records to: a JSON Lines file/stdout or an MQTT broker."""

    count: int  # records accepted so far

    def write(self, record: dict[str, Any] | Event) -> None: ...

    def close(self) -> None: ...


class EventWriter:
    """Writes records as JSON Lines to a file or stdout (``-``), flushing each line."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self.count = 0
        if target == "-":
            self._fh: IO[str] = sys.stdout
            self._owned = False
        else:
            path = Path(target).expanduser()
            if path.is_dir():
                raise UserFacingError(f"--events {target} is a directory; give a file path or '-'")
            if not path.parent.exists():
                raise UserFacingError(
                    f"--events {target}: folder {path.parent} does not exist; create it first"
                )
            try:
                self._fh = path.open("w", encoding="utf-8", buffering=1)
            except OSError as exc:
                raise UserFacingError(f"--events {target}: cannot write ({exc.strerror})") from None
            self._owned = True
        self._closed = False

    def write(self, record: dict[str, Any] | Event) -> None:
        if isinstance(record, EmotionEvent | TurnEvent):
            record = record.to_record()
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        with self._lock:
            if self._closed:
                return
            self._fh.write(line + "\n")
            self._fh.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._fh.flush()
            finally:
                if self._owned:
                    self._fh.close()

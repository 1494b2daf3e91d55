"""Rolling emotion state per speaker: decayed average, hysteresis, short history.

Each utterance's class probabilities are folded into the speaker's running estimate with an
exponential decay on the *media* clock (``half_life_s``: evidence this many seconds old counts
half as much as new evidence), so a replay gives the same states on every run. The label shown
changes only when another class beats the shown one by ``switch_margin`` in the smoothed
probabilities (hysteresis: two nearly equal classes do not make the label flicker). The history
keeps the last ``history_s`` seconds of points for the UI's trend.

Thread-safety: one writer (the emotion stage) and any number of readers (UI, events); readers
get immutable :class:`SpeakerState` snapshots.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StateOptions:
    half_life_s: float = 6.0  # decay; 0 = no smoothing (the label follows each utterance)
    switch_margin: float = 0.08  # hysteresis on the smoothed probabilities, in [0, 1)
    history_s: float = 60.0  # how far back the trend goes (media seconds)
    history_max: int = 240  # cap on points kept per speaker

    def __post_init__(self) -> None:
        if not (self.half_life_s >= 0 and math.isfinite(self.half_life_s)):
            raise ValueError(f"half_life_s must be >= 0, got {self.half_life_s}")
        if not 0 <= self.switch_margin < 1:
            raise ValueError(f"switch_margin must be in [0, 1), got {self.switch_margin}")


@dataclass(frozen=True)
class EmotionPoint:
    """One utterance's contribution, as the trend shows it."""

    t: float  # media time of the utterance end
    label: str  # the label shown after this point (smoothed, with hysteresis)
    confidence: float  # smoothed probability of ``label``
    raw_label: str  # the model's own argmax for this utterance


@dataclass(frozen=True)
class SpeakerState:
    """Everything the UI shows for one speaker; immutable."""

    speaker: str  # stable id ("spk1")
    name: str | None
    label: str | None  # smoothed label with hysteresis; None before the first utterance
    confidence: float
    probs: tuple[float, ...]  # smoothed, in ``labels`` order
    labels: tuple[str, ...]
    raw_label: str | None  # last utterance's own argmax
    raw_confidence: float
    trust: tuple[tuple[str, float], ...]  # (modality, gate weight) of the last utterance
    last_text: str
    last_t: float  # media time of the last utterance end
    n_utterances: int
    history: tuple[EmotionPoint, ...]
    face_track: int | None  # bound face track id, if any
    face_seen: bool  # the bound face was seen during the last utterance
    binding_confidence: float

    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.speaker})" if self.name else self.speaker


@dataclass
class _Running:
    speaker: str
    labels: tuple[str, ...]
    acc: np.ndarray  # decayed sum of probabilities
    weight: float  # decayed sum of weights
    last_t: float
    label: str | None = None
    name: str | None = None
    raw_label: str | None = None
    raw_confidence: float = 0.0
    trust: tuple[tuple[str, float], ...] = ()
    last_text: str = ""
    n: int = 0
    face_track: int | None = None
    face_seen: bool = False
    binding_confidence: float = 0.0
    history: deque = None  # type: ignore[assignment]


class SpeakerStates:
    """Per-speaker rolling states. ``update`` from one thread; ``snapshot`` from any."""

    def __init__(self, options: StateOptions | None = None) -> None:
        self.options = options or StateOptions()
        self._lock = threading.Lock()
        self._speakers: dict[str, _Running] = {}
        self._order: list[str] = []  # first-seen order, so panels do not jump around

    def update(
        self,
        speaker: str,
        t: float,
        probs: np.ndarray,
        labels: tuple[str, ...],
        *,
        text: str = "",
        name: str | None = None,
        trust: tuple[tuple[str, float], ...] = (),
        face_track: int | None = None,
        face_seen: bool = False,
        binding_confidence: float = 0.0,
    ) -> SpeakerState:
        """Fold one utterance (ending at media time ``t``) into ``speaker``'s state."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        if p.shape[0] != len(labels):
            raise ValueError(f"{p.shape[0]} probabilities for {len(labels)} labels")
        p = np.clip(p, 0.0, None)
        total = p.sum()
        p = p / total if total > 0 else np.full_like(p, 1.0 / len(p))
        opts = self.options
        with self._lock:
            run = self._speakers.get(speaker)
            if run is None or run.labels != tuple(labels):
                run = _Running(speaker, tuple(labels), np.zeros_like(p), 0.0, t)
                run.history = deque(maxlen=opts.history_max)
                if speaker not in self._speakers:
                    self._order.append(speaker)
                self._speakers[speaker] = run
            dt = max(0.0, t - run.last_t)
            decay = 0.0 if opts.half_life_s == 0 else 0.5 ** (dt / opts.half_life_s)
            run.acc = run.acc * decay + p
            run.weight = run.weight * decay + 1.0
            run.last_t = max(run.last_t, t)
            smoothed = run.acc / run.weight
            best = int(np.argmax(smoothed))
            if run.label is None:
                run.label = labels[best]
            else:
                shown = labels.index(run.label)
                if smoothed[best] - smoothed[shown] >= opts.switch_margin:
                    run.label = labels[best]
            raw = int(np.argmax(p))
            run.raw_label, run.raw_confidence = labels[raw], float(p[raw])
            run.name = name or run.name
            run.trust = tuple(trust)
            run.last_text = text
            run.n += 1
            if face_track is not None:
                run.face_track = face_track
                run.binding_confidence = binding_confidence
            run.face_seen = face_seen
            conf = float(smoothed[labels.index(run.label)])
            run.history.append(EmotionPoint(t, run.label, conf, run.raw_label))
            return self._freeze(run)

    def rename(self, speaker: str, name: str) -> None:
        with self._lock:
            if speaker in self._speakers:
                self._speakers[speaker].name = name

    def _freeze(self, run: _Running) -> SpeakerState:
        smoothed = run.acc / run.weight if run.weight > 0 else run.acc
        horizon = run.last_t - self.options.history_s
        history = tuple(pt for pt in run.history if pt.t >= horizon)
        conf = float(smoothed[run.labels.index(run.label)]) if run.label else 0.0
        return SpeakerState(
            speaker=run.speaker,
            name=run.name,
            label=run.label,
            confidence=conf,
            probs=tuple(float(x) for x in smoothed),
            labels=run.labels,
            raw_label=run.raw_label,
            raw_confidence=run.raw_confidence,
            trust=run.trust,
            last_text=run.last_text,
            last_t=run.last_t,
            n_utterances=run.n,
            history=history,
            face_track=run.face_track,
            face_seen=run.face_seen,
            binding_confidence=run.binding_confidence,
        )

    def snapshot(self) -> tuple[SpeakerState, ...]:
        """All speakers in first-seen order (immutable; safe to hand to another thread)."""
        with self._lock:
            return tuple(self._freeze(self._speakers[s]) for s in self._order)

    def get(self, speaker: str) -> SpeakerState | None:
        with self._lock:
            run = self._speakers.get(speaker)
            return None if run is None else self._freeze(run)

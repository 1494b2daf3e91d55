"""Which face is talking: bind face tracks to voice speakers.

For each speaker turn from the audio front, the binder builds that speaker's voice activity over
the turn plus ``context_s`` either side (1 inside the speaker's turns, 0 elsewhere: silence or other
speakers) and correlates it, frame by frame, with each visible track's mouth activity. The
face that moves its mouth when this voice speaks and keeps still when it does not gets a high
correlation. Evidence is accumulated per (speaker, track) over turns, weighted by speech time
and slowly forgotten (``decay`` per turn), so a binding holds over time and can move when
another face keeps winning. A speaker is bound only when the best track's score is high enough,
clearly ahead of the runner-up, and backed by enough speech; otherwise it is unbound. A track
is bound to at most one speaker (the one with the stronger evidence).

Call ``update`` once the video has reached the turn's end (better: ``t_end + context_s``);
frames not yet seen simply do not count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge_app.messages import SpeakerTurn
from edge_app.video.visual_features import VisualHistory


@dataclass(frozen=True)
class BindingOptions:
    context_s: float = 2.0  # non-speech context either side of a turn (the contrast)
    min_visible: float = 0.5  # a track must be seen in this share of the window's frames
    min_score: float = 0.3  # correlation over the speaker's speech needed to bind
    min_margin: float = 0.1  # lead over the runner-up needed to bind
    min_evidence_s: float = 1.0  # seconds of the speaker's speech seen with the face
    decay: float = 0.85  # evidence kept per new turn of the same speaker
    max_turn_weight_s: float = 10.0  # one long turn cannot outweigh many short ones
    max_turns_kept: int = 200  # per speaker, for the voice-activity signal


@dataclass(frozen=True)
class Binding:
    """The face of one speaker, or None when unsure."""

    speaker_id: str
    track_id: int | None
    confidence: float  # in [0, 1]: score x lead x evidence
    score: float  # correlation of the best track over the speaker's speech ([-1, 1]; 0: none)
    margin: float  # best score minus the runner-up's
    evidence_s: float  # weighted speech seconds behind the best track


@dataclass
class _Evidence:
    """Decayed sums of one speaker's turns: per track sum(w * r) and sum(w); all turns' sum(w).

    A track's score is sum(w * r) over ALL the speaker's (decayed) speech, so a face that was
    not there for recent turns loses its score as they come in, and a new face gains.
    """

    weighted_r: dict[int, float] = field(default_factory=dict)  # track -> sum(w * r)
    weight: dict[int, float] = field(default_factory=dict)  # track -> sum(w) where seen
    total: float = 0.0  # sum(w) over the speaker's turns with contrast

    def decay(self, factor: float) -> None:
        self.total *= factor
        for k in list(self.weight):
            self.weighted_r[k] *= factor
            self.weight[k] *= factor
            if self.weight[k] < 1e-3:  # a face long gone: forget it (bounded memory)
                del self.weight[k], self.weighted_r[k]

    def add(self, track_id: int, r: float, w: float) -> None:
        self.weighted_r[track_id] = self.weighted_r.get(track_id, 0.0) + w * r
        self.weight[track_id] = self.weight.get(track_id, 0.0) + w

    def scores(self) -> dict[int, tuple[float, float]]:
        """track -> (score: correlation averaged over all the speaker's speech, weight seen)."""
        if self.total <= 1e-9:
            return {}
        return {k: (self.weighted_r[k] / self.total, w) for k, w in self.weight.items()}


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Correlation of two (n,) series; None when either is constant or too short."""
    if len(x) < 3:
        return None
    sx, sy = x.std(), y.std()
    if sx < 1e-9 or sy < 1e-9:
        return None
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


class FaceVoiceBinder:
    """Keeps a face binding per speaker from the speaker turns and the visual history."""

    def __init__(self, options: BindingOptions | None = None) -> None:
        self.options = options or BindingOptions()
        self._turns: dict[str, list[tuple[float, float]]] = {}
        self._evidence: dict[str, _Evidence] = {}
        self._bindings: dict[str, Binding] = {}

    def update(self, turn: SpeakerTurn, history: VisualHistory) -> Binding:
        """Add one speaker turn; returns that speaker's binding after it."""
        return self.update_span(turn.speaker_id, turn.t_start, turn.t_end, history)

    def update_span(
        self, speaker_id: str, t_start: float, t_end: float, history: VisualHistory
    ) -> Binding:
        """Like ``update`` for a bare (speaker, span)."""
        opt = self.options
        turns = self._turns.setdefault(speaker_id, [])
        turns.append((t_start, t_end))
        del turns[: max(0, len(turns) - opt.max_turns_kept)]
        evidence = self._evidence.setdefault(speaker_id, _Evidence())
        w0, w1 = t_start - opt.context_s, t_end + opt.context_s
        times = history.frame_times(w0, w1)
        voice = self._voice_activity(speaker_id, times)
        # Without frames, or with this voice on over the whole window (no silence to contrast
        # with), the turn says nothing about which face it is.
        if len(times) >= 3 and voice.std() > 1e-9:
            speech_s = min(t_end - t_start, opt.max_turn_weight_s)
            evidence.decay(opt.decay)
            evidence.total += speech_s
            for track_id in history.track_ids(w0, w1):
                _, mouth = history.mouth_series(track_id, w0, w1)
                seen = ~np.isnan(mouth)
                if seen.mean() < opt.min_visible:
                    continue
                # None: the voice is constant over the frames where this face is seen, or the
                # mouth never moves; either way no support.
                r = pearson(mouth[seen], voice[seen]) or 0.0
                evidence.add(track_id, r * float(seen.mean()), speech_s)
        self._decide()
        return self.binding(speaker_id)

    def _voice_activity(self, speaker_id: str, times: np.ndarray) -> np.ndarray:
        """(n,) 1.0 where ``speaker_id`` is in one of its turns at ``times``, else 0.0."""
        voice = np.zeros(len(times))
        for a, b in self._turns[speaker_id]:
            voice[(times >= a) & (times <= b)] = 1.0
        return voice

    def _candidate(self, speaker_id: str, exclude: set[int]) -> Binding:
        opt = self.options
        scores = {k: v for k, v in self._evidence[speaker_id].scores().items() if k not in exclude}
        if not scores:
            return Binding(speaker_id, None, 0.0, 0.0, 0.0, 0.0)
        ranked = sorted(scores.items(), key=lambda kv: kv[1][0], reverse=True)
        best_id, (best, weight) = ranked[0]
        runner = ranked[1][1][0] if len(ranked) > 1 else 0.0
        margin = best - max(runner, 0.0)
        confidence = (
            float(np.clip(best, 0.0, 1.0))
            * float(np.clip(margin / max(opt.min_margin * 3, 1e-9), 0.0, 1.0))
            * (1.0 - math.exp(-weight / opt.min_evidence_s))
        )
        sure = best >= opt.min_score and margin >= opt.min_margin and weight >= opt.min_evidence_s
        return Binding(
            speaker_id=speaker_id,
            track_id=best_id if sure else None,
            confidence=confidence if sure else min(confidence, 0.5),
            score=best,
            margin=margin,
            evidence_s=weight,
        )

    def _decide(self) -> None:
        """Re-derive all bindings, one track per speaker, strongest evidence first."""
        taken: set[int] = set()
        decided: dict[str, Binding] = {}
        pending = set(self._evidence)
        while pending:
            candidates = [self._candidate(s, taken) for s in pending]
            best = max(candidates, key=lambda b: (b.track_id is not None, b.confidence))
            decided[best.speaker_id] = best
            pending.discard(best.speaker_id)
            if best.track_id is not None:
                taken.add(best.track_id)
        self._bindings = decided

    def binding(self, speaker_id: str) -> Binding:
        return self._bindings.get(speaker_id, Binding(speaker_id, None, 0.0, 0.0, 0.0, 0.0))

    def bindings(self) -> dict[str, Binding]:
        return dict(self._bindings)

    def speaker_of(self, track_id: int) -> str | None:
        """The speaker bound to a track, if any."""
        for b in self._bindings.values():
            if b.track_id == track_id:
                return b.speaker_id
        return None

    def track_of(self, speaker_id: str) -> int | None:
        return self.binding(speaker_id).track_id

"""Which face is talking: bind face tracks to voice speakers.

For each speaker turn from the audio front, the binder builds that speaker's voice activity over
the turn plus ``context_s`` either side (1 inside the speaker's turns, 0 elsewhere: silence or other
speakers) and correlates it, frame by frame, with each visible track's mouth activity. The
face that moves its mouth when this voice speaks and keeps still when it does not gets a high
correlation. Evidence is accumulated per (speaker, track) over turns, weighted by speech time
and slowly forgotten (``decay`` per turn), so a binding holds over time and can move when
another face keeps winning. A speaker is bound only when the best track's score is high enough,
clearly ahead of the runner-up, backed by enough speech, and not matched by chance (below);
otherwise it is unbound. A track is bound to at most one speaker (the one with the stronger
evidence).

Chance check: the same sums are kept for each track with its mouth series taken ``d`` seconds
earlier (``null_shifts_s``): the voice pattern laid over motion it cannot have caused. A face
whose real score does not beat every such shifted score is not bound, whatever the score. Why:
a few seconds of on/off mouth motion correlate with an on/off voice pattern by chance more
often than the fixed gates assume, and the check is what lets ``min_evidence_s`` be 0.75 s
instead of 1.0 s (a person's first short turn gets a face). On tests/fixtures/two_speakers.mp4
(reference turns bound as live): 9 of 10 turns bound right, none wrong (8 with the gates alone
at 1.0 s); with the video shifted 3-27 s against the sound (17 shifts, so every binding is an
error) 17 of 170 turns bound, against 22 (gates alone, 1.0 s) and 28 (gates alone, 0.75 s).

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
    # Seconds of the speaker's speech seen with the face. 0.75 with the chance check below
    # (1.0 without it): binds a person's first short turn (0.8-1 s) when it is clear.
    min_evidence_s: float = 0.75
    decay: float = 0.85  # evidence kept per new turn of the same speaker
    max_turn_weight_s: float = 10.0  # one long turn cannot outweigh many short ones
    max_turns_kept: int = 200  # per speaker, for the voice-activity signal
    # Chance check (module docstring): mouth series shifted this far back; a shift counts once
    # the history reaches back that far, and a face is bound only with >= min_null_shifts.
    null_shifts_s: tuple[float, ...] = (
        2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 9.0, 10.0,
    )  # fmt: skip
    min_null_shifts: int = 3
    # A shift counts only if it breaks the voice's own pattern: the voice over the window and
    # the voice d earlier correlate below this (a speaker with a regular rhythm would otherwise
    # make the true face's earlier motion match as well as its own).
    null_max_voice_r: float = 0.5


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
    # track -> shift (s) -> [sum(w * r), sum(w)] with the mouth series taken that much earlier
    shifted: dict[int, dict[float, list[float]]] = field(default_factory=dict)

    def decay(self, factor: float) -> None:
        self.total *= factor
        for k in list(self.weight):
            self.weighted_r[k] *= factor
            self.weight[k] *= factor
            for acc in self.shifted.get(k, {}).values():
                acc[0] *= factor
                acc[1] *= factor
            if self.weight[k] < 1e-3:  # a face long gone: forget it (bounded memory)
                del self.weight[k], self.weighted_r[k]
                self.shifted.pop(k, None)

    def add(self, track_id: int, r: float, w: float) -> None:
        self.weighted_r[track_id] = self.weighted_r.get(track_id, 0.0) + w * r
        self.weight[track_id] = self.weight.get(track_id, 0.0) + w

    def add_shifted(self, track_id: int, shift_s: float, r: float, w: float) -> None:
        acc = self.shifted.setdefault(track_id, {}).setdefault(shift_s, [0.0, 0.0])
        acc[0] += w * r
        acc[1] += w

    def chance(self, track_id: int) -> tuple[float, int]:
        """(best score of this track over the shifts seen, number of shifts seen)."""
        scores = [a / w for a, w in self.shifted.get(track_id, {}).values() if w > 1e-9]
        return (max(scores), len(scores)) if scores else (float("-inf"), 0)

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
            # shift -> the speaker's voice over the window, sampled at the frames d earlier
            # (the same for every track: computed once)
            voice_at = {
                d: self._voice_activity(speaker_id, history.frame_times(w0 - d, w1 - d) + d)
                for d in self._null_shifts(speaker_id, history, times, voice)
            }
            for track_id in history.track_ids(w0, w1):
                r = self._correlation(history, track_id, w0, w1, voice)
                if r is None:
                    continue
                evidence.add(track_id, r, speech_s)
                for d, voice_d in voice_at.items():
                    rd = self._correlation(history, track_id, w0 - d, w1 - d, voice_d)
                    if rd is not None:
                        evidence.add_shifted(track_id, d, rd, speech_s)
        self._decide()
        return self.binding(speaker_id)

    def _null_shifts(
        self, speaker_id: str, history: VisualHistory, times: np.ndarray, voice: np.ndarray
    ) -> list[float]:
        """The shifts the chance check can use for this window (see BindingOptions)."""
        first_t = history.first_t
        out = []
        for d in self.options.null_shifts_s:
            if first_t is None or times[0] - d < first_t:
                continue  # the history does not reach back that far (yet)
            then = self._voice_activity(speaker_id, times - d)
            r = pearson(voice, then)
            if r is None or r < self.options.null_max_voice_r:
                out.append(d)
        return out

    def _correlation(
        self, history: VisualHistory, track_id: int, t0: float, t1: float, voice: np.ndarray
    ) -> float | None:
        """Seen-weighted correlation of the track's mouth over the frames of [t0, t1] with
        ``voice`` (one value per such frame); None when the face is seen too little."""
        _, mouth = history.mouth_series(track_id, t0, t1)
        seen = ~np.isnan(mouth)
        if len(mouth) < 3 or seen.mean() < self.options.min_visible:
            return None
        # None: the voice is constant over the frames where this face is seen, or the mouth
        # never moves; either way no support.
        return (pearson(mouth[seen], voice[seen]) or 0.0) * float(seen.mean())

    def _voice_activity(self, speaker_id: str, times: np.ndarray) -> np.ndarray:
        """(n,) 1.0 where ``speaker_id`` is in one of its turns at ``times``, else 0.0."""
        voice = np.zeros(len(times))
        if len(times) == 0:
            return voice
        lo, hi = float(times.min()), float(times.max())
        for a, b in self._turns[speaker_id]:
            if b >= lo and a <= hi:  # only the turns that reach the window (cost: the check)
                voice[(times >= a) & (times <= b)] = 1.0
        return voice

    def _candidate(self, speaker_id: str, exclude: set[int]) -> Binding:
        opt = self.options
        evidence = self._evidence[speaker_id]
        scores = {k: v for k, v in evidence.scores().items() if k not in exclude}
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
        chance, shifts = evidence.chance(best_id)
        sure = (
            best >= opt.min_score
            and margin >= opt.min_margin
            and weight >= opt.min_evidence_s
            and shifts >= opt.min_null_shifts
            and best > chance
        )
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

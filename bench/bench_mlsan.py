"""ML-SAN CPU benchmark: training time per epoch, and one-utterance inference vs context length.

    python bench/bench_mlsan.py [--checkpoint PATH] [--data ../shared/data/meld] [--threads 1 2]

Prints one JSON object. Training uses real MELD train/dev (cached MiniLM features) when
``--data`` exists, else synthetic dialogues of MELD's size and shapes (``"data"`` says which).
Inference times the live path: the causal model on the newest utterance with 8, 32 and 128
utterances of context (batch 1, PyTorch eager, inference_mode), for each thread count, plus
the bidirectional model for comparison. Median and p90 over repeated runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlsan.config import MLSANConfig  # noqa: E402
from mlsan.data import DialogueArrays  # noqa: E402
from mlsan.model import MLSAN  # noqa: E402


def _synthetic(n_dialogues: int, cfg: MLSANConfig, seed: int) -> list[DialogueArrays]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_dialogues):
        t = int(rng.integers(1, 25))
        mask = np.zeros((t, 3), np.float32)
        mask[:, 0] = 1
        out.append(
            DialogueArrays(
                f"syn/{i}",
                rng.normal(size=(t, cfg.text_dim)).astype(np.float32),
                np.zeros((t, cfg.audio_dim), np.float32),
                np.zeros((t, cfg.visual_dim), np.float32),
                mask,
                tuple(f"s{j % 3}" for j in range(t)),
                rng.integers(0, cfg.num_classes, t).astype(np.int64),
            )
        )
    return out


def bench_training(cfg: MLSANConfig, data: str | None, epochs: int) -> dict:
    from mlsan.train import train_model

    source = "synthetic (MELD-sized)"
    if data and Path(data).is_dir():
        from mlsan.data import load_meld

        train = load_meld(data, "train", cfg)
        dev = load_meld(data, "dev", cfg)
        source = f"MELD train ({sum(len(d) for d in train)} utterances)"
    else:
        train, dev = _synthetic(1038, cfg, 0), _synthetic(114, cfg, 1)
    started = time.perf_counter()
    res = train_model(cfg.with_(max_epochs=epochs, patience=epochs + 1), train, dev)
    return {
        "data": source,
        "epochs": res.epochs_run,
        "seconds_per_epoch": round(res.seconds_per_epoch, 3),
        "seconds_total_with_dev_eval": round(time.perf_counter() - started, 2),
    }


def bench_inference(model: MLSAN, contexts: list[int], repeats: int) -> dict:
    cfg = model.config
    out = {}
    g = torch.Generator().manual_seed(0)
    for t in contexts:
        x = (
            torch.randn(1, t, cfg.text_dim, generator=g),
            torch.zeros(1, t, cfg.audio_dim),
            torch.zeros(1, t, cfg.visual_dim),
            torch.tensor([1.0, 0.0, 0.0]).expand(1, t, 3).contiguous(),
            torch.randn(1, t, cfg.speaker_dim, generator=g),
            torch.ones(1, t),
        )
        times = []
        with torch.inference_mode():
            for _ in range(5):
                model(*x)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(*x)
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[str(t)] = {
            "median_ms": round(statistics.median(times), 3),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the registry's mlsan model")
    parser.add_argument("--data", default="../shared/data/meld")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--contexts", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    from mlsan.checkpoint import load_checkpoint

    path = args.checkpoint
    if path is None:
        from mlsan.registry import default_registry

        path = default_registry().resolve("mlsan").path
    loaded = load_checkpoint(path)
    cfg = loaded.config
    result: dict = {
        "machine": {
            "cpu_count": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "checkpoint": {
            "path": str(path),
            "sha256": loaded.sha256,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "context_mode": cfg.context_mode,
        },
        "inference_one_utterance": {},
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        model = loaded.model.eval()
        bi = MLSAN(cfg.with_(context_mode="bidirectional")).eval()
        bi.load_state_dict(model.state_dict())
        result["inference_one_utterance"][f"threads={threads}"] = {
            "causal": bench_inference(model, args.contexts, args.repeats),
            "bidirectional": bench_inference(bi, args.contexts, args.repeats),
        }
    torch.set_num_threads(1)
    result["training"] = {"threads": 1, **bench_training(cfg.with_(seed=0), args.data, args.epochs)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

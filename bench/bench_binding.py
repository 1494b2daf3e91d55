"""Cost of the face binder's chance check: time per ``update`` with and without it, in one run.

    python bench/bench_binding.py [--faces 4] [--speakers 3] [--minutes 10]

A synthetic conversation (``--speakers`` voices taking turns of 0.5-4 s with 0.1-1.5 s gaps,
``--faces`` faces at 15 fps whose mouths move at random) is bound turn by turn, as the live
pipeline does, by ``FaceVoiceBinder`` with the defaults (chance check on) and with the check
off (``null_shifts_s=()``). The figures that matter are from the last turns, when each speaker
has a long history. Prints one JSON object with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FPS = 15.0


def conversation(faces: int, speakers: int, seconds: float, seed: int = 0):
    from edge_app.messages import FaceObservation, FrameFaces
    from edge_app.video.visual_features import VisualHistory

    rng = np.random.default_rng(seed)
    history = VisualHistory()  # the live default: the last 120 s
    frames = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        obs = tuple(
            FaceObservation(
                track_id=k,
                t=t,
                box=(0.1, 0.1, 0.3, 0.3),
                blendshapes=np.full(52, 0.2, np.float32),
                pose=np.zeros(3, np.float32),
                mouth_activity=float(rng.random()),
            )
            for k in range(1, faces + 1)
        )
        frames.append(FrameFaces(frame_index=i, t=t, faces=obs))
    turns, t, k = [], 1.0, 0
    while t < seconds - 5.0:
        d = float(rng.uniform(0.5, 4.0))
        turns.append((f"spk{k % speakers + 1}", t, t + d))
        t += d + float(rng.uniform(0.1, 1.5))
        k += 1
    return history, frames, turns


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=4)
    p.add_argument("--speakers", type=int, default=3)
    p.add_argument("--minutes", type=float, default=10.0)
    args = p.parse_args()
    from edge_app.video.binding import BindingOptions, FaceVoiceBinder

    load_before = os.getloadavg()
    variants = {
        "chance_check (default)": BindingOptions(),
        "no_check": BindingOptions(null_shifts_s=(), min_null_shifts=0),
    }
    result: dict = {"faces": args.faces, "speakers": args.speakers, "minutes": args.minutes}
    for name, options in variants.items():
        history, frames, turns = conversation(args.faces, args.speakers, args.minutes * 60)
        binder, ms, i = FaceVoiceBinder(options), [], 0
        for speaker, a, b in turns:
            while i < len(frames) and frames[i].t <= b + options.context_s:
                history.add(frames[i])
                i += 1
            t0 = time.perf_counter()
            binder.update_span(speaker, a, b, history)
            ms.append(1000 * (time.perf_counter() - t0))
        last = ms[-50:]
        result[name] = {
            "turns": len(ms),
            "ms_per_update_last50_median": round(float(np.median(last)), 3),
            "ms_per_update_last50_p95": round(float(np.percentile(last, 95)), 3),
        }
    result["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

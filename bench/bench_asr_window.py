"""Whisper's encoder window for the ASR: the shipped 30 s against a 10-s window, in one run.

    python bench/bench_asr_window.py [--meld ../shared/data/meld] [--ravdess ../shared/data/ravdess]
        [--n 120] [--threads 1]

faster-whisper pads every segment to a 30-s window, so the encoder's cost does not shrink with
the speech (segments here are at most 6 s). CTranslate2 accepts a shorter input; this bench cuts
the window to ``--window`` seconds (the feature extractor steps through the audio that far at a
time and each padded window is cut back before the encoder) and compares, on the same audio:

- ``espeak_meld``: ``--n`` MELD test utterances (4-25 words, text known) spoken by espeak-ng
  (en-us and en-gb in turn), word error rate against the MELD text;
- ``ravdess``: every 6th clip of actors 21-24 (the two known sentences), word error rate;
- CPU ms per utterance (process time, all threads) of the whole transcribe pass with word
  timestamps, as the live ASR runs it.

Not shipped: the live voice feature is pooled from the same encoder pass, and with a 10-s window
it scored lower on the RAVDESS cross-validation that chose it (see the README, "Live latency").
Prints one JSON object with the machine and its load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCES = {1: "kids are talking by the door", 2: "dogs are sitting by the door"}


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower().replace("\u2019", "'")).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        new = [i]
        for j, h in enumerate(hyp, 1):
            new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (r != h)))
        row = new
    return row[-1]


def cut_window(model, seconds: int) -> None:
    """Make a faster_whisper.WhisperModel encode ``seconds``-long windows (see the docstring)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    frames = seconds * 100  # 10-ms log-mel frames
    model.feature_extractor = FeatureExtractor(**{**model.feat_kwargs, "chunk_length": seconds})
    encode = model.encode
    model.encode = lambda features: encode(features[..., :frames])


def espeak_set(meld: Path, n: int) -> list[tuple[str, np.ndarray]]:
    import soundfile as sf

    with open(meld / "test_sent_emo.csv", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    random.Random(0).shuffle(rows)
    texts = [r["Utterance"] for r in rows if 4 <= len(words(r["Utterance"])) <= 25][:n]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            raw, wav = f"{tmp}/{i}.raw.wav", f"{tmp}/{i}.wav"
            voice = "en-us" if i % 2 else "en-gb"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", raw, text], check=True)
            subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", wav], check=True)
            out.append((text, sf.read(wav, dtype="float32")[0]))
    return out


def ravdess_set(root: Path) -> list[tuple[str, np.ndarray]]:
    from mlsan.ravdess import list_clips, load_audio

    clips = list_clips(root, (21, 22, 23, 24))[::6]
    return [(SENTENCES[c.statement], load_audio(c.path)) for c in clips]


def score(model, items) -> dict:
    errors = total = 0
    cpu = []
    for text, audio in items:
        t = time.process_time()
        parts, _ = model.transcribe(
            audio,
            language="en",
            beam_size=1,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        hyp = " ".join(p.text for p in parts)
        cpu.append(1000 * (time.process_time() - t))
        errors += edits(words(text), words(hyp))
        total += len(words(text))
    return {
        "wer": round(errors / max(total, 1), 4),
        "words": total,
        "cpu_ms_median": round(float(np.median(cpu)), 1),
        "cpu_ms_mean": round(float(np.mean(cpu)), 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meld", default="../shared/data/meld")
    p.add_argument("--ravdess", default="../shared/data/ravdess")
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    from faster_whisper import WhisperModel

    from mlsan.registry import default_registry

    load_before = os.getloadavg()
    sets = {"espeak_meld": espeak_set(Path(args.meld), args.n)}
    sets["ravdess"] = ravdess_set(Path(args.ravdess))
    path = str(default_registry().resolve("asr").path)
    result: dict = {"sets": {k: len(v) for k, v in sets.items()}}
    for window in (30, args.window):
        model = WhisperModel(
            path, device="cpu", compute_type="int8", cpu_threads=args.threads, local_files_only=True
        )
        if window != 30:
            cut_window(model, window)
        score(model, sets["ravdess"][:1])  # warm-up
        result[f"window_{window}s"] = {name: score(model, items) for name, items in sets.items()}
    result["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

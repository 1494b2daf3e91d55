"""Cost per utterance of each voice-emotion feature candidate on this CPU, in one run.

    python bench/bench_voice.py [--data ../shared/data/ravdess] [--n 20] [--threads 1]

Candidates (see mlsan/checkpoints/voice_candidates.md for their RAVDESS scores):

- ``whisper_encoder``: Whisper tiny.en int8 encoder pass (CTranslate2, the ASR's model) + pooling.
  The live app does not pay this: the ASR's own pass is reused (``whisper_pool_only``).
- ``whisper_pool_only``: pooling the ASR pass's encoder states (what the live stage adds).
- ``asr_transcribe`` / ``asr_transcribe_with_capture``: the ASR itself, without and with the
  encoder-output capture, to show the capture is free.
- ``prosody88``: ``mlsan.prosody.audio_features`` (numpy).
- ``dvector``: resemblyzer GE2E d-vector of the utterance (the app's voice model).

Prints one JSON object: per candidate p50/p95 ms over ``--n`` real RAVDESS clips, the machine,
its load average before and after, and the thread count.
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


def timed(fn, clips) -> dict:
    fn(clips[0])  # warm-up
    ts = []
    for c in clips:
        t = time.perf_counter()
        fn(c)
        ts.append(1000 * (time.perf_counter() - t))
    return {
        "p50_ms": round(float(np.percentile(ts, 50)), 2),
        "p95_ms": round(float(np.percentile(ts, 95)), 2),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/ravdess")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from mlsan.prosody import audio_features
    from mlsan.ravdess import list_clips, load_audio
    from mlsan.voice_features import WhisperVoiceEncoder, capture_encoder, pool_states

    load_before = os.getloadavg()
    clips_all = list_clips(args.data)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(clips_all), size=min(args.n, len(clips_all)), replace=False)
    clips = [load_audio(clips_all[i].path) for i in pick]
    enc = WhisperVoiceEncoder.from_registry(threads=args.threads)
    states = {id(c): enc.encoder_states(c) for c in clips}
    out = {
        "whisper_encoder": timed(enc.feature, clips),
        "whisper_pool_only": timed(lambda c: pool_states(states[id(c)], len(c)), clips),
    }

    def transcribe(c):
        segs, _ = enc.model.transcribe(
            c,
            language="en",
            beam_size=1,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        return [s.text for s in segs]

    out["asr_transcribe"] = timed(transcribe, clips)
    take = capture_encoder(enc.model)

    def transcribe_capture(c):
        transcribe(c)
        return pool_states(take(), len(c))

    out["asr_transcribe_with_capture"] = timed(transcribe_capture, clips)
    out["prosody88"] = timed(audio_features, clips)
    import warnings

    from mlsan.registry import default_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder, preprocess_wav
    ve = VoiceEncoder(
        device="cpu", verbose=False, weights_fpath=default_registry().resolve("voice").path
    )
    out["dvector"] = timed(lambda c: ve.embed_utterance(preprocess_wav(c, source_sr=16000)), clips)
    print(
        json.dumps(
            {
                "bench": "voice features, cost per utterance",
                "clips": len(clips),
                "mean_clip_s": round(float(np.mean([len(c) / 16000 for c in clips])), 2),
                "threads": args.threads,
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                "load_avg_before": [round(x, 2) for x in load_before],
                "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                "candidates": out,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

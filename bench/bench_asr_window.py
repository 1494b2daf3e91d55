"""Whisper's encoder window for the ASR: the shipped 30-s pass against cheaper ones, in one run.

    python bench/bench_asr_window.py [--meld ../shared/data/meld] [--ravdess ../shared/data/ravdess]
        [--n 120] [--windows 10,15] [--approx] [--float32] [--silver DIR] [--texts FILE]
        [--best-of 5] [--bf16] [--blas] [--threads 2]

faster-whisper pads every segment to a 30-s window, so the encoder's cost does not shrink with
the speech (live segments are at most 6 s). Alternatives, on the same audio:

- ``window_Ns``: the window cut to N s (the feature extractor steps through the audio that far
  at a time and each padded window is cut back before the encoder; CTranslate2 accepts it);
- ``--approx``: the 30-s window from ``whisper_window_approx.WindowEncoder`` (exact at the
  audio's positions, padding interpolated between anchors; ``approx_M_S``: M exact positions past
  the audio, an anchor every S), and ``exact_float32``: the same code computing every position
  (so a difference from the shipped pass that ``exact_float32`` does not show is the
  approximation's);
- ``--float32``: the shipped 30-s pass at float32 instead of int8 (``float32_30s``): how far the
  words move for a change that loses nothing, the yardstick for ``vs_30s``;
- ``--bf16``: the 30-s pass with Whisper's encoder in PyTorch bfloat16 (``bf16_30s``,
  ``mlsan.whisper_encoder``: what ``AsrOptions.encoder="auto"`` runs on CPUs with AMX) and
  CTranslate2 decoding on one thread; ``voice_feature_bf16`` compares its encoder states and
  pooled voice feature with CTranslate2's int8 pass (``window_30s``, what ML-SAN was trained
  on) and, with ``--float32``, its float32 pass; ``bf16_alternating``: wall and CPU ms per
  conversation turn of the two whole passes taking turns on each turn (order swapped every turn);
- ``--blas``: the shipped pass (``bf16_30s`` with ``--bf16``, else ``window_30s``) with numpy's
  BLAS pool at one thread (``mlsan.blas_threads``, what the pipelines run) against the pool
  numpy starts with (one thread per core), taking turns on each conversation turn
  (``blas_alternating``: wall and CPU ms per turn);
- ``--best-of N``: the shipped 30-s pass drawing N hypotheses at each fallback temperature
  instead of ``AsrOptions.best_of`` (``best_of_N``). Every pass reports how many turns fell back
  to sampling (``turns_fallback``) and their wall ms (``fallback_ms_median``).

``--silver DIR``: a larger faster-whisper model (for example Whisper base, 30-s window, beam 5)
whose words stand in for the missing reference on conversation: every alternative also gets
``vs_silver`` (its word error rate against them; on the read sets the silver model's own WER is
reported, to show it is the better model). For each short window, ``voice_feature_windows``
compares the pooled voice feature with the 30-s pass's (cosine per turn). ``--texts`` writes
every alternative's words for reading.

Sets:

- ``espeak_meld``: ``--n`` MELD test utterances (4-25 words, text known) spoken by espeak-ng
  (en-us and en-gb in turn), word error rate against the MELD text;
- ``ravdess``: every 6th clip of actors 21-24 (the two known sentences), word error rate;
- ``conversation``: the reference turns of ``sample.wav`` and the ten AMI excerpts (0.5 s or
  longer, cut at 6 s as the live speech detection cuts), real conversational speech with no
  reference words: words changed against the 30-s pass (``vs_30s``), turns whose text differs,
  and turns holding a repeated run of 3+ words (Whisper looping).

Per set and alternative: wall ms per turn (median) of the whole transcribe pass with word
timestamps, as the live ASR runs it. Prints one JSON object with the machine and its load.
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
from bench_live import _cpu_jiffies, _steal_share  # noqa: E402  (this folder: /proc/stat)

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


def conversation_set(diarization: Path) -> list[tuple[str, np.ndarray]]:
    """Reference turns of sample.wav and the AMI excerpts (>= 0.5 s, cut at 6 s); no words."""
    import soundfile as sf

    from edge_app.audio.scoring import read_rttm

    refs = read_rttm(diarization / "sample.rttm") | read_rttm(diarization / "ami" / "train.rttm")
    out = []
    for uri in ["sample"] + sorted(u for u in refs if u != "sample"):
        wav = diarization / "sample.wav" if uri == "sample" else diarization / "ami" / f"{uri}.wav"
        x, sr = sf.read(wav, dtype="float32")
        x = x.mean(axis=1) if x.ndim > 1 else x
        # In the file's order (the track is the RTTM line number).
        for seg, _, _ in sorted(refs[uri].itertracks(yield_label=True), key=lambda t: t[1]):
            if seg.duration >= 0.5:
                end = seg.end if seg.duration < 6.0 else seg.start + 6.0
                out.append(("", x[int(seg.start * sr) : int(end * sr)]))
    return out


def loops(text: str) -> bool:
    """A run of 3+ words said twice in a row (Whisper repeating itself)."""
    w = words(text)
    return any(
        w[i : i + k] == w[i + k : i + 2 * k]
        for k in range(3, len(w) // 2 + 1)
        for i in range(len(w) - 2 * k + 1)
    )


def transcribe(model, audio: np.ndarray, window: int | None, best_of: int | None = None) -> str:
    from edge_app.audio.asr import AsrOptions

    parts, _ = model.transcribe(
        audio,
        chunk_length=window,
        language="en",
        beam_size=1,
        best_of=AsrOptions.best_of if best_of is None else best_of,
        word_timestamps=True,
        vad_filter=False,
        condition_on_previous_text=False,
    )
    return " ".join(p.text.strip() for p in parts)


def word_error_rate(reference: list[str], texts: list[str]) -> float:
    errors = sum(edits(words(r), words(h)) for r, h in zip(reference, texts, strict=True))
    return round(errors / max(1, sum(len(words(r)) for r in reference)), 4)


class CountingGenerate:
    """Wraps a CTranslate2 Whisper model: counts ``generate`` calls (more than one per turn:
    the greedy text was rejected and the sampling fallback ran)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, *args, **kwargs):
        self.calls += 1
        return self.inner.generate(*args, **kwargs)


def run_set(
    model,
    items,
    window: int | None,
    reference: list[str] | None,
    silver: list[str] | None = None,
    best_of: int | None = None,
) -> tuple[dict, list]:
    import ctranslate2

    ctranslate2.set_random_seed(0)  # the sampling fallback: same draws for every alternative
    if not isinstance(model.model, CountingGenerate):
        model.model = CountingGenerate(model.model)
    texts, wall, fallback = [], [], []
    for _, audio in items:
        model.current_samples = len(audio)
        calls = model.model.calls
        t = time.perf_counter()
        texts.append(transcribe(model, audio, window, best_of))
        wall.append(1000 * (time.perf_counter() - t))
        if model.model.calls - calls > 1:
            fallback.append(wall[-1])
    out = {
        "ms_median": round(float(np.median(wall)), 1),
        "words": sum(len(words(t)) for t in texts),
        "turns_fallback": len(fallback),
        "fallback_ms_median": round(float(np.median(fallback)), 1) if fallback else None,
    }
    if items[0][0]:
        out["wer"] = word_error_rate([ref for ref, _ in items], texts)
    if reference is not None:
        out["vs_30s"] = word_error_rate(reference, texts)
        out["turns_changed"] = sum(r != h for r, h in zip(reference, texts, strict=True))
    if silver is not None:
        out["vs_silver"] = word_error_rate(silver, texts)
    out["turns_looping"] = sum(loops(t) for t in texts)
    return out, texts


def voice_feature_check(path: str, items, threads: int) -> dict:
    """The pooled voice feature from the approximate encoder's audio positions (anchors every
    16) against CTranslate2's int8 pass over the whole window: cosine and wall ms per turn."""
    from whisper_window_approx import WindowEncoder, WindowEncoderOptions

    from mlsan.voice_features import WhisperVoiceEncoder, n_states, pool_states

    full = WhisperVoiceEncoder.from_registry(path, threads=threads)
    approx = WindowEncoder.from_ct2(path, WindowEncoderOptions(16, 0, threads))
    cos, ms_full, ms_approx = [], [], []
    for _, audio in items:
        t = time.perf_counter()
        exact = pool_states(full.encoder_states(audio), len(audio))
        ms_full.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        near = pool_states(approx.states(full.window(audio), n_states(len(audio))), len(audio))
        ms_approx.append(1000 * (time.perf_counter() - t))
        cos.append(float(exact @ near / np.linalg.norm(exact) / np.linalg.norm(near)))
    return {
        "turns": len(cos),
        "cosine_min": round(min(cos), 4),
        "cosine_p5": round(float(np.percentile(cos, 5)), 4),
        "cosine_median": round(float(np.median(cos)), 4),
        "ms_median_full_pass": round(float(np.median(ms_full)), 1),
        "ms_median_approx": round(float(np.median(ms_approx)), 1),
    }


def alternating_check(
    passes: dict, items, rounds: int = 1, blas: dict[str, int] | None = None
) -> dict:
    """Wall and process CPU ms per turn of whole transcribe passes, the alternatives taking
    turns on each turn (so a shared machine's slow minutes hit both alike). ``blas``: numpy's
    BLAS pool size during each alternative's passes (the pipeline's, one, when not given)."""
    import ctranslate2
    from threadpoolctl import threadpool_limits

    wall: dict[str, list[float]] = {k: [] for k in passes}
    cpu: dict[str, list[float]] = {k: [] for k in passes}
    ctranslate2.set_random_seed(0)
    for r in range(rounds):
        for i, (_, audio) in enumerate(items):
            order = list(passes) if (i + r) % 2 == 0 else list(passes)[::-1]
            for name in order:
                with threadpool_limits((blas or {}).get(name, 1), user_api="blas"):
                    t, c = time.perf_counter(), time.process_time()
                    transcribe(passes[name], audio, 30)
                    wall[name].append(1000 * (time.perf_counter() - t))
                    cpu[name].append(1000 * (time.process_time() - c))
    return {
        name: {
            "wall_ms_median": round(float(np.median(wall[name])), 1),
            "cpu_ms_median": round(float(np.median(cpu[name])), 1),
            "cpu_ms_mean": round(float(np.mean(cpu[name])), 1),
            "passes": len(wall[name]),
        }
        for name in passes
    }


def bf16_feature_check(model, float32_model, bf16, items) -> dict:
    """The bf16 encoder's states (whole window) and pooled voice feature against CTranslate2's
    int8 pass (``model``) and float32 pass (``float32_model``, if any): cosine per turn, and
    the encoder's wall ms per turn each way (alternating, same window)."""
    from mlsan.voice_features import WhisperVoiceEncoder, pool_states

    enc = WhisperVoiceEncoder(model)
    out: dict = {"turns": len(items)}
    cos: dict[str, list[float]] = {}
    ms: dict[str, list[float]] = {"int8": [], "bf16": []}

    def cosine(a, b) -> float:
        a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    for _, audio in items:
        mel = enc.window(audio)
        t = time.perf_counter()
        int8 = np.array(model.encode(mel), np.float32)[0]
        ms["int8"].append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        states = bf16.encode(mel)
        ms["bf16"].append(1000 * (time.perf_counter() - t))
        refs = {"int8": int8}
        if float32_model is not None:
            refs["float32"] = np.array(float32_model.encode(mel), np.float32)[0]
            cos.setdefault("int8_vs_float32_states", []).append(cosine(int8, refs["float32"]))
            cos.setdefault("int8_vs_float32_feature", []).append(
                cosine(pool_states(int8, len(audio)), pool_states(refs["float32"], len(audio)))
            )
        for name, ref in refs.items():
            cos.setdefault(f"bf16_vs_{name}_states", []).append(cosine(states, ref))
            cos.setdefault(f"bf16_vs_{name}_feature", []).append(
                cosine(pool_states(states, len(audio)), pool_states(ref, len(audio)))
            )
    for name, c in cos.items():
        out[name] = {
            "min": round(min(c), 5),
            "p5": round(float(np.percentile(c, 5)), 5),
            "median": round(float(np.median(c)), 5),
        }
    out["encode_ms_median"] = {k: round(float(np.median(v)), 1) for k, v in ms.items()}
    return out


def window_feature_check(model, items, windows: list[int]) -> dict:
    """The pooled voice feature from each short window's encoder pass against the 30-s pass's
    (what ML-SAN was trained on): cosine per turn."""
    from mlsan.voice_features import WhisperVoiceEncoder, pool_states

    enc = WhisperVoiceEncoder(model)
    cos: dict[int, list[float]] = {w: [] for w in windows}
    for _, audio in items:
        mel = enc.window(audio)  # (80, 3000)
        full = pool_states(np.array(model.encode(mel), np.float32)[0], len(audio))
        for w in windows:
            short = np.array(model.encode(np.ascontiguousarray(mel[:, : w * 100])), np.float32)
            near = pool_states(short[0], len(audio))
            cos[w].append(float(full @ near / np.linalg.norm(full) / np.linalg.norm(near)))
    return {
        f"window_{w}s": {
            "turns": len(c),
            "cosine_min": round(min(c), 4),
            "cosine_p5": round(float(np.percentile(c, 5)), 4),
            "cosine_median": round(float(np.median(c)), 4),
        }
        for w, c in cos.items()
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meld", default="../shared/data/meld")
    p.add_argument("--ravdess", default="../shared/data/ravdess")
    p.add_argument("--diarization", default="../shared/data/diarization")
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--windows", default="10,15", help="short windows to try, in seconds")
    p.add_argument("--approx", action="store_true", help="also the approximate 30-s encoder")
    p.add_argument(
        "--float32",
        action="store_true",
        help="also the 30-s pass at float32 (how far words move for a change that loses nothing)",
    )
    p.add_argument(
        "--silver",
        default=None,
        help="a larger faster-whisper model directory: its 30-s beam-5 words are the stand-in "
        "reference (vs_silver) where no one wrote the words down (conversation)",
    )
    p.add_argument("--texts", default=None, help="write every alternative's words here (JSON)")
    p.add_argument(
        "--best-of",
        type=int,
        default=None,
        help="also the 30-s pass drawing this many hypotheses per fallback temperature",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="also the 30-s pass with the PyTorch bfloat16 encoder (AsrOptions.encoder)",
    )
    p.add_argument(
        "--blas",
        action="store_true",
        help="also the shipped pass (bf16 with --bf16) with numpy's BLAS pool at one thread, as "
        "the pipelines set it, against the pool numpy starts with, taking turns on each "
        "conversation turn (blas_alternating)",
    )
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import ctranslate2
    import torch
    from faster_whisper import WhisperModel

    from mlsan.blas_threads import blas_threads, one_blas_thread
    from mlsan.ct2_cpu import ENV, cpu_name, prefer_cpu_isa
    from mlsan.registry import default_registry

    prefer_cpu_isa()  # the kernels the live ASR runs
    blas_start = one_blas_thread() or 1  # numpy's BLAS pool as the live ASR has it
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    machine_before = _cpu_jiffies()
    sets = {
        "espeak_meld": espeak_set(Path(args.meld), args.n),
        "ravdess": ravdess_set(Path(args.ravdess)),
        "conversation": conversation_set(Path(args.diarization)),
    }
    path = str(default_registry().resolve("asr").path)
    model = WhisperModel(
        path, device="cpu", compute_type="int8", cpu_threads=args.threads, local_files_only=True
    )
    encode = model.encode

    def cut(features):  # the feature extractor's chunk: the whole 3000 frames at 30 s
        return encode(features[..., : model.feature_extractor.nb_max_frames])

    # name -> (model, encoder, window s, hypotheses per fallback temperature; None: shipped)
    alternatives: dict = {"window_30s": (model, cut, 30, None)}
    if args.best_of is not None:
        alternatives[f"best_of_{args.best_of}"] = (model, cut, 30, args.best_of)
    for w in [int(v) for v in args.windows.split(",") if v.strip()]:
        alternatives[f"window_{w}s"] = (model, cut, w, None)
    if args.float32:
        other = WhisperModel(
            path,
            device="cpu",
            compute_type="float32",
            cpu_threads=args.threads,
            local_files_only=True,
        )
        alternatives["float32_30s"] = (other, other.encode, 30, None)
    bf16 = None
    if args.bf16:
        from mlsan.whisper_encoder import Bf16WhisperEncoder, use_encoder

        bf16 = Bf16WhisperEncoder.from_ct2(path, args.threads)
        decoder = WhisperModel(  # CTranslate2 only decodes: one thread (AsrOptions.encoder)
            path, device="cpu", compute_type="int8", cpu_threads=1, local_files_only=True
        )
        use_encoder(decoder, bf16)
        alternatives["bf16_30s"] = (decoder, decoder.encode, 30, None)
    if args.approx:
        from whisper_window_approx import WindowEncoder, WindowEncoderOptions

        from mlsan.voice_features import n_states

        def storage(states: np.ndarray):
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(states[None]))

        exact = WindowEncoder.from_ct2(path)
        alternatives["exact_float32"] = (model, lambda f: storage(exact.exact(f)), 30, None)
        for margin, stride in ((0, 16), (0, 4), (250, 8)):
            enc = WindowEncoder.from_ct2(path, WindowEncoderOptions(stride, margin, args.threads))
            alternatives[f"approx_{margin}_{stride}"] = (
                model,
                lambda f, enc=enc: storage(
                    enc.states(np.asarray(f), n_states(model.current_samples), whole=True)
                ),
                30,
                None,
            )
    result: dict = {"sets": {k: len(v) for k, v in sets.items()}}
    reference: dict[str, list[str]] = {}
    silver: dict[str, list[str]] = {}
    all_texts: dict[str, dict[str, list[str]]] = {}
    if args.silver:
        big = WhisperModel(
            args.silver,
            device="cpu",
            compute_type="int8",
            cpu_threads=args.threads,
            local_files_only=True,
        )
        ctranslate2.set_random_seed(0)
        for set_name, items in sets.items():
            silver[set_name] = [
                " ".join(
                    part.text.strip()
                    for part in big.transcribe(
                        a,
                        language="en",
                        beam_size=5,
                        vad_filter=False,
                        condition_on_previous_text=False,
                    )[0]
                )
                for _, a in items
            ]
        all_texts["silver"] = silver
        result["silver"] = {"model": args.silver}
        for set_name, texts in silver.items():
            result["silver"][set_name] = {"words": sum(len(words(t)) for t in texts)}
            if sets[set_name][0][0]:
                result["silver"][set_name]["wer"] = word_error_rate(
                    [ref for ref, _ in sets[set_name]], texts
                )
        del big
    model.encode = cut
    transcribe(model, sets["ravdess"][0][1], 30)  # warm-up
    for name, (whisper, encoder, window, best_of) in alternatives.items():
        whisper.encode = encoder
        result[name] = {}
        for set_name, items in sets.items():
            scored, texts = run_set(
                whisper, items, window, reference.get(set_name), silver.get(set_name), best_of
            )
            result[name][set_name] = scored
            all_texts.setdefault(name, {})[set_name] = texts
            reference.setdefault(set_name, texts)
        print(name, json.dumps(result[name]), file=sys.stderr, flush=True)
    model.encode = encode
    short = [int(v) for v in args.windows.split(",") if v.strip()]
    if short:
        result["voice_feature_windows"] = {
            set_name: window_feature_check(model, sets[set_name], short)
            for set_name in ("ravdess", "conversation")
        }
    if args.approx:
        result["voice_feature"] = voice_feature_check(path, sets["conversation"], args.threads)
    if bf16 is not None:
        bf16_model = alternatives["bf16_30s"][0]
        result["bf16_alternating"] = alternating_check(
            {"window_30s": model, "bf16_30s": bf16_model}, sets["conversation"]
        )
        other = alternatives.get("float32_30s", (None,))[0]
        result["voice_feature_bf16"] = {
            set_name: bf16_feature_check(model, other, bf16, sets[set_name])
            for set_name in ("ravdess", "conversation")
        }
    if args.blas:
        shipped = alternatives["bf16_30s"][0] if bf16 is not None else model
        result["blas_alternating"] = alternating_check(
            {"blas_1": shipped, f"blas_{blas_start}": shipped},
            sets["conversation"],
            blas={"blas_1": 1, f"blas_{blas_start}": blas_start},
        )
    result["machine"] = {
        "cpu": cpu_name() or platform.processor() or platform.machine(),
        "ct2_cpu_isa": os.environ.get(ENV),
        "blas_threads": blas_threads(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "steal_share": _steal_share(machine_before),
    }
    if args.texts:
        Path(args.texts).write_text(json.dumps(all_texts, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Audio front benchmark: cost of each stage and end-of-speech -> label delay. One JSON object.

    python bench/bench_audio.py [--wav ../shared/data/diarization/sample.wav] [--no-realtime]

1. Cost: CPU seconds (process time, all threads) per second of audio for VAD, voice embedding,
   diarizer and ASR over the sample, with alternatives side by side (ASR beam 1 vs 5, ASR
   threads 1 vs 2, voice hop 0.25 vs 0.5 s). ASR also reports its wall-clock real-time factor
   (< 1 keeps up).
2. DER (pyannote.metrics, no collar and 0.25 s collar, with missed / false alarm / confusion):
   ``der_sample`` on the sample; ``der_robustness`` on the sample, the sample at -12 dB, the
   sample shifted by 1.3 s and a two-voice espeak-ng conversation, each with the defaults, the
   defaults' labels exactly as emitted live (no alias resolution) and the previous diarizer
   rules; ``der_sensitivity``: a window length x cluster threshold grid and one-at-a-time
   changes on the sample and the espeak-ng conversation ("DER/labels found").
3. Delay: a real-time replay (the sample followed by synthesized speech in two voices from
   espeak-ng, so there are enough segments), with the source+VAD on one thread, ASR on one
   worker and voice+diarizer on another, as in the live app. Delay = wall time when the result
   is ready minus the wall time at which the segment's last sample was due. Median and p95.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_app.audio.asr import AsrOptions, WhisperTranscriber  # noqa: E402
from edge_app.audio.diarizer import OnlineDiarizer  # noqa: E402
from edge_app.audio.offline import AudioPipelineOptions, AudioStages, process_file  # noqa: E402
from edge_app.audio.sources import FileAudioSource, load_audio  # noqa: E402
from edge_app.audio.vad import SileroVad, StreamingVad  # noqa: E402
from edge_app.clock import MediaClock  # noqa: E402
from edge_app.messages import SAMPLE_RATE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "diarization" / "sample.wav"


def cpu_timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def segments_of(path: Path, opts: AudioPipelineOptions, model: SileroVad):
    vad = StreamingVad(opts.vad, model)
    out = []
    for chunk in FileAudioSource(path, MediaClock(realtime=False)).chunks(threading.Event()):
        out += vad.process(chunk)
    return out + vad.flush()


def read_rttm(path: Path, shift: float = 0.0):
    """The reference turns of the one recording an RTTM file describes."""
    from edge_app.audio.scoring import read_rttm as read_all

    (ref,) = read_all(path, shift).values()
    return ref


def der(path: Path, ref, stages: AudioStages, resolve_merged: bool = True) -> dict:
    """DER of one file (pyannote.metrics), no collar and 0.25 s collar, with its parts."""
    from pyannote.core import Annotation

    from edge_app.audio.scoring import der_parts, rounded

    if not isinstance(ref, Annotation):
        ref = read_rttm(ref)
    r = process_file(path, stages, resolve_merged=resolve_merged)
    out = {"speakers_found": len({t.speaker_id for t in r.turns})}
    for collar in (0.0, 0.25):
        out[f"collar_{collar}"] = rounded(der_parts(ref, r.turns, r.duration, collar))
    return out


def with_options(stages: AudioStages, opts: AudioPipelineOptions, fn):
    base = stages.options
    stages.options = opts
    stages.embedder.options = opts.voice
    try:
        return fn()
    finally:
        stages.options = base
        stages.embedder.options = base.voice


def vary(opts: AudioPipelineOptions, part: str, **kw) -> AudioPipelineOptions:
    return replace(opts, **{part: replace(getattr(opts, part), **kw)})


# The diarizer as it was before the robustness rules (split repair needed no centroid
# similarity, a new-only cluster needed new_threshold whatever its length, no adoption).
PREVIOUS = {"merge_threshold": -1.0, "enroll_s": 1e9, "adopt_threshold": 2.0}


def test_set(tmp: Path, wav: Path, rttm: Path) -> list[tuple[str, Path, object]]:
    """The sample and variants that must not change who spoke when, plus a second conversation
    (two espeak-ng voices, centroid cosine ~0.82 like the sample's two people, with 0.3-0.4 s
    interjections): guards against tuning to one 30-s clip."""
    import soundfile as sf

    audio = load_audio(wav)
    quiet, shifted = tmp / "quiet.wav", tmp / "shifted.wav"
    sf.write(quiet, audio * 0.25, SAMPLE_RATE)  # -12 dB
    noise = 0.002 * np.random.default_rng(0).standard_normal(int(1.3 * SAMPLE_RATE))
    sf.write(shifted, np.concatenate([noise.astype(np.float32), audio]), SAMPLE_RATE)
    cases = [
        ("sample", wav, read_rttm(rttm)),
        ("sample_-12dB", quiet, read_rttm(rttm)),
        ("sample_shift_1.3s", shifted, read_rttm(rttm, 1.3)),
    ]
    if shutil.which("espeak-ng"):
        conv, ref = make_espeak_conversation(tmp)
        cases.append(("espeak_2_voices", conv, ref))
    return cases


def make_espeak_conversation(tmp: Path):
    """Two espeak-ng voices taking turns (gaps 0.15-0.7 s, so some turns share one VAD
    segment), with short interjections; the reference is each utterance's non-silent span."""
    import soundfile as sf
    from pyannote.core import Annotation, Segment

    a, b = "en-us+m3", "en-gb+f2"
    script = [
        (
            a,
            "I looked at the numbers again this morning and the second quarter is much "
            "better than we expected.",
            0.6,
        ),
        (b, "Really? That is good news.", 0.15),
        (
            a,
            "Yes, mostly because the new store opened early and the online orders kept "
            "growing all spring.",
            0.7,
        ),
        (b, "Right.", 0.15),
        (a, "So I think we can hire two more people before the summer starts.", 0.6),
        (
            b,
            "I agree, but we should check the budget with finance first, they were worried "
            "last month about the rent.",
            0.5,
        ),
        (a, "Okay.", 0.2),
        (
            b,
            "And the warehouse lease ends in October, so there will be a new contract to "
            "sign as well.",
            0.6,
        ),
        (a, "Fine, let us meet on Thursday and go through all of it together.", 0.15),
        (b, "Sure.", 0.6),
    ]
    parts = [np.zeros(SAMPLE_RATE // 2, np.float32)]
    t = 0.5
    ref = Annotation()
    for voice, text, gap in script:
        out = tmp / "say.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(out), text], check=True)
        x = load_audio(out)
        loud = np.nonzero(np.abs(x) > 0.01)[0]
        x = x[loud[0] : loud[-1] + 1]
        ref[Segment(t, t + len(x) / SAMPLE_RATE)] = voice
        parts += [x, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        t += len(x) / SAMPLE_RATE + gap
    path = tmp / "espeak_conversation.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE)
    return path, ref


def robustness(cases, stages: AudioStages) -> list[dict]:
    """Every test file with the defaults, the defaults' labels exactly as emitted live (no
    alias resolution), and the previous diarizer rules."""
    rows = []
    base = stages.options
    previous = replace(base, diarizer=replace(base.diarizer, **PREVIOUS))
    for name, path, ref in cases:
        for label, opts, resolve in (
            ("default", base, True),
            ("default_as_emitted", base, False),
            ("previous_rules", previous, True),
        ):
            d = with_options(stages, opts, lambda p=path, r=ref, rs=resolve: der(p, r, stages, rs))
            rows.append(
                {
                    "file": name,
                    "setting": label,
                    "der": d["collar_0.0"]["der"],
                    "der_collar_0.25": d["collar_0.25"]["der"],
                    "missed_s": d["collar_0.0"]["missed_s"],
                    "false_alarm_s": d["collar_0.0"]["false_alarm_s"],
                    "confusion_s": d["collar_0.0"]["confusion_s"],
                    "speakers": d["speakers_found"],
                }
            )
    return rows


def sensitivity(cases, stages: AudioStages) -> dict:
    """No-collar DER (and labels found) of nearby settings on the sample and the espeak-ng
    conversation: how much the default owes to tuning. A grid of window length x cluster
    threshold, then one-at-a-time VAD and diarizer changes; each with the previous rules too."""
    base = stages.options
    picked = [c for c in cases if c[0] in ("sample", "espeak_2_voices")]

    def score(opts):
        out = {}
        for name, path, ref in picked:
            d = with_options(stages, opts, lambda p=path, r=ref: der(p, r, stages))
            out[name] = f"{d['collar_0.0']['der']:.3f}/{d['speakers_found']}"
        return out

    grid = []
    for rules in ("default", "previous_rules"):
        b = base if rules == "default" else vary(base, "diarizer", **PREVIOUS)
        for window in (1.5, 2.0, 2.5):
            for thr in (0.67, 0.70, 0.73, 0.76, 0.79):
                opts = vary(vary(b, "voice", window_s=window), "diarizer", cluster_threshold=thr)
                grid.append(
                    {"rules": rules, "window_s": window, "cluster_threshold": thr, **score(opts)}
                )
    singles = []
    variants = [
        ("vad", "threshold", 0.35),
        ("vad", "threshold", 0.55),
        ("vad", "pad_s", 0.0),
        ("vad", "pad_s", 0.2),
        ("vad", "min_silence_s", 0.3),
        ("vad", "long_after_s", 3.0),
        ("vad", "long_after_s", 5.0),
        ("vad", "max_segment_s", 8.0),
        ("vad", "max_segment_s", 15.0),
        ("voice", "hop_s", 0.5),
        ("diarizer", "min_turn_s", 0.5),
        ("diarizer", "new_threshold", 0.75),
        ("diarizer", "merge_threshold", 0.9),
        ("diarizer", "enroll_s", 3.0),
    ]
    for rules in ("default", "previous_rules"):
        b = base if rules == "default" else vary(base, "diarizer", **PREVIOUS)
        for part, name, value in variants:
            if rules != "default" and name in PREVIOUS:
                continue
            singles.append(
                {
                    "rules": rules,
                    "change": f"{part}.{name}={value}",
                    **score(vary(b, part, **{name: value})),
                }
            )
    return {"format": "DER/labels found (2 is right)", "grid": grid, "one_at_a_time": singles}


def costs(path: Path, opts: AudioPipelineOptions, vad_model, embedder, threads_note) -> dict:
    audio_s = len(load_audio(path)) / SAMPLE_RATE
    res: dict = {"audio_s": round(audio_s, 2)}
    segs, cpu, wall = cpu_timed(lambda: segments_of(path, opts, vad_model))
    res["vad"] = {"cpu_s_per_audio_s": round(cpu / audio_s, 4), "segments": len(segs)}
    speech_s = sum(s.t_end - s.t_start for s in segs)
    res["speech_s"] = round(speech_s, 2)
    for hop in (0.25, 0.5):
        embedder.options = replace(opts.voice, hop_s=hop)
        voices, cpu, _ = cpu_timed(lambda: [embedder.embed_segment(s) for s in segs])
        res[f"voice_hop_{hop}"] = {"cpu_s_per_audio_s": round(cpu / audio_s, 4)}
        if hop == opts.voice.hop_s:
            default_voices = voices
    embedder.options = opts.voice
    reps = 20  # the diarizer is cheap: repeat for a measurable time
    _, cpu, _ = cpu_timed(
        lambda: [
            [d.process(v) for v in default_voices]
            for d in [OnlineDiarizer(opts.diarizer) for _ in range(reps)]
        ]
    )
    res["diarizer"] = {"cpu_s_per_audio_s": round(cpu / reps / audio_s, 5)}
    for beam, threads in ((1, 2), (5, 2), (1, 1)):
        asr = WhisperTranscriber(replace(opts.asr, beam_size=beam, cpu_threads=threads))
        asr.transcribe(segs[0])  # warm-up
        trs, cpu, wall = cpu_timed(lambda a=asr: [a.transcribe(s) for s in segs])
        res[f"asr_beam{beam}_threads{threads}"] = {
            "cpu_s_per_audio_s": round(cpu / audio_s, 4),
            "wall_s_per_speech_s": round(wall / speech_s, 4),
            "words": sum(len(t.words) for t in trs),
        }
    res["note"] = threads_note
    return res


def make_replay_file(tmp: Path, wav: Path) -> Path:
    """The sample, then sentences in two espeak-ng voices with pauses (more segments)."""
    parts = [load_audio(wav)]
    sentences = [
        ("en-us", "Good morning, how was the drive in today?"),
        ("en-us+f3", "Slow. There was a long queue at the bridge again."),
        ("en-us", "They are repairing the east lane until next month."),
        ("en-us+f3", "Then I will take the train tomorrow, it is quicker."),
        ("en-us", "Good idea. Did you finish the report for Friday?"),
        ("en-us+f3", "Almost. I still need the numbers from the second quarter."),
        ("en-us", "I can send them after lunch."),
        ("en-us+f3", "Thanks, that would help a lot."),
    ]
    if shutil.which("espeak-ng"):
        for voice, text in sentences:
            out = tmp / "s.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", "160", "-w", str(out), text], check=True
            )
            parts += [np.zeros(int(0.8 * SAMPLE_RATE), np.float32), load_audio(out)]
    import soundfile as sf

    path = tmp / "replay.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE)
    return path


def delays(path: Path, stages: AudioStages) -> dict:
    """Real-time replay with the live app's thread layout; see module docstring."""
    clock = MediaClock(realtime=True)
    stop = threading.Event()
    vad = StreamingVad(stages.options.vad, stages.vad_model)
    diar = OnlineDiarizer(stages.options.diarizer)
    asr_q: queue.Queue = queue.Queue(maxsize=64)
    voice_q: queue.Queue = queue.Queue(maxsize=64)
    done: dict[tuple[str, int], float] = {}
    ends: dict[int, float] = {}
    lock = threading.Lock()

    def worker(q, fn, kind):
        while True:
            try:
                seg = q.get(timeout=0.5)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if seg is None:
                return
            fn(seg)
            with lock:
                done[(kind, seg.segment_id)] = time.monotonic()

    asr_t = threading.Thread(target=worker, args=(asr_q, stages.asr.transcribe, "asr"))
    voice_t = threading.Thread(
        target=worker,
        args=(voice_q, lambda s: diar.process(stages.embedder.embed_segment(s)), "speaker"),
    )
    asr_t.start()
    voice_t.start()
    source = FileAudioSource(path, clock)
    c0 = time.process_time()
    w0 = time.monotonic()
    for chunk in source.chunks(stop):
        for seg in vad.process(chunk):
            ends[seg.segment_id] = clock.wall_time_of(seg.t_end)
            asr_q.put(seg, timeout=5)
            voice_q.put(seg, timeout=5)
    for seg in vad.flush():
        ends[seg.segment_id] = clock.wall_time_of(seg.t_end)
        asr_q.put(seg, timeout=5)
        voice_q.put(seg, timeout=5)
    asr_q.put(None)
    voice_q.put(None)
    asr_t.join(timeout=120)
    voice_t.join(timeout=120)
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    out: dict = {
        "audio_s": round(source.stats().seconds, 2),
        "segments": len(ends),
        "cpu_load_cores": round(cpu / wall, 3),
    }
    for kind in ("asr", "speaker"):
        d = np.array([done[(kind, i)] - ends[i] for i in ends if (kind, i) in done])
        out[f"{kind}_delay_s"] = {
            "median": round(float(np.median(d)), 3),
            "p95": round(float(np.percentile(d, 95)), 3),
            "max": round(float(d.max()), 3),
            "n": int(len(d)),
        }
    both = np.array(
        [
            max(done[("asr", i)], done[("speaker", i)]) - ends[i]
            for i in ends
            if ("asr", i) in done and ("speaker", i) in done
        ]
    )
    out["transcript_and_label_delay_s"] = {
        "median": round(float(np.median(both)), 3),
        "p95": round(float(np.percentile(both, 95)), 3),
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wav", type=Path, default=SAMPLE)
    ap.add_argument("--rttm", type=Path, default=SAMPLE.with_suffix(".rttm"))
    ap.add_argument("--no-realtime", action="store_true", help="skip the real-time replay")
    args = ap.parse_args()
    opts = AudioPipelineOptions(asr=AsrOptions(cpu_threads=2))
    stages = AudioStages.load(opts, transcribe=True)
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "defaults": {
            "vad": asdict(opts.vad),
            "voice": asdict(opts.voice),
            "diarizer": asdict(opts.diarizer),
            "asr": asdict(opts.asr),
        },
        "der_sample": der(args.wav, args.rttm, stages),
        "cost_sample": costs(
            args.wav,
            opts,
            stages.vad_model,
            stages.embedder,
            "process CPU time incl. all threads; the machine is shared, so expect noise",
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cases = test_set(Path(tmp), args.wav, args.rttm)
        result["der_robustness"] = robustness(cases, stages)
        result["der_sensitivity"] = sensitivity(cases, stages)
    if not args.no_realtime:
        with tempfile.TemporaryDirectory() as tmp:
            result["realtime_replay"] = delays(make_replay_file(Path(tmp), args.wav), stages)
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

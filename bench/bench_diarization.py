"""Diarization on real meetings: DER of the old and new pipelines in one run. One JSON object.

    python bench/bench_diarization.py [--halves] [--gallery] [--perturb N] [--gain G,G...]
        [--ravdess N] [--events]

Files: the ten AMI excerpts (``../shared/data/diarization/ami``: far-field room microphone,
1-4 speakers, 21 % of the speech time overlapped) and ``sample.wav`` (two people, close talk).
Pipelines (``edge_app.audio.offline``): ``new`` = the defaults (segmentation-3.0 speech
detection on a rolling window, CAM++ voices, online diarizer, overlap turns; the same stages and
options as the live run) and ``old`` = ``LEGACY`` (Silero, resemblyzer, the previous
thresholds). ``new`` is scored twice: ``diarize`` (ids resolved after later merges, as
``mlsan-live diarize`` writes them) and ``live`` (each turn's id exactly as emitted live).

Per file and pooled (AMI: time-weighted over the ten files; sample alone): DER with no collar
and with a 0.25 s collar (pyannote.metrics ``collar=0.25``, i.e. +-0.125 s around reference
boundaries), missed / false alarm / confusion seconds, speakers found vs true, and CPU seconds
(process time) per audio second of VAD + voice + diarizer (ASR excluded; see bench_live.py),
and ``turn_wait_media_s``: media seconds from each turn's end to the moment the speech detection
hands its segment on (median, p95, max; AMI and sample), the part of the live latency that does
not depend on the CPU's speed (bench_live.py measures the whole).

HONESTY: the new defaults were chosen on these same eleven files (there is no other labelled
meeting audio here). ``--halves`` shows how much that matters: for each of four tuned knobs
(VAD threshold, cluster threshold, overlap threshold, the threshold at which segment edges
grow when re-judged), the value best on AMI half A (trn00-04) is scored on half B (trn05-09)
and vice versa, next to the defaults.
``--perturb N``: the defaults again on N copies of the AMI excerpts with -120 dBFS of Gaussian
noise added (inaudible, far below the rooms' own noise): the spread of the pooled DER is how
much one run's number owes to the online labelling's sensitivity, not to the method.
``--gain G,G...``: the defaults again on the eleven files scaled by each gain (0.1 = -20 dB; the
excerpts' speech is at -36 to -62 dBFS already; floats, so nothing clips): another microphone or
room is louder or quieter, and the DER should not move with the level alone.
``--ravdess N``: N conversations made of RAVDESS clips (``../shared/data/ravdess``: real voices,
acted, close-talk studio level, about -20 to -45 dBFS; CC BY-NC-SA 4.0), 2-3 actors each, 12
turns with 0.1-0.7 s of silence between them, no overlap; even conversations among actors 1-20,
odd ones among actors 21-24 (``edge_app.audio.scoring.clip_conversation``: each seeded by its
number; no take used twice in one conversation). Reference turns: the frames of each take within
35 dB of its loudest 10-ms frame, so the missed / false-alarm parts are approximate; confusion
and speakers found vs true are what this checks (other people and another room than the tuning
files). Old and new pipelines.
``--events``: the live run's event stream scored as who spoke when (``--fast`` replays
through the whole live pipeline; each record's ``speaker``, ``t_start``, ``t_end`` one turn):
its ``turn`` records (the stream's who-spoke-when: the diarizer's turns as labelled live, ids
as first given) and its ``utterance`` records (one speaker's words in a segment, so a second
voice in an overlap and speech without words are not in them).
``--gallery``: enroll the people of trn00, trn06, trn07; replay files with other people (trn04,
trn05) and with the same people (trn03, trn08, trn09); count stored ids given to the wrong /
right person.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_app.audio.gallery import SpeakerGallery  # noqa: E402
from edge_app.audio.offline import (  # noqa: E402
    LEGACY,
    AudioPipelineOptions,
    AudioStages,
    process_file,
)
from edge_app.audio.scoring import (  # noqa: E402
    der_parts,
    majority_person,
    read_rttm,
    rounded,
)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "diarization"
AMI = [f"trn{i:02d}" for i in range(10)]
HALF_A, HALF_B = AMI[:5], AMI[5:]


def load_refs() -> dict:
    """{uri: reference Annotation} for the ten AMI excerpts and the sample."""
    return read_rttm(DATA / "ami" / "train.rttm") | read_rttm(DATA / "sample.rttm")


def wav_of(uri: str) -> Path:
    return DATA / "sample.wav" if uri == "sample" else DATA / "ami" / f"{uri}.wav"


def score(ref, turns, duration: float) -> dict:
    out = {
        "speakers_found": len({t.speaker_id for t in turns if t.t_end > t.t_start}),
        "speakers_true": len(ref.labels()),
    }
    for collar in (0.0, 0.25):
        out[f"collar_{collar}"] = rounded(der_parts(ref, turns, duration, collar))
    return out


def pooled(rows: list[dict]) -> dict:
    out = {}
    for key in ("collar_0.0", "collar_0.25"):
        tot = {k: sum(r[key][k] for r in rows) for k in rows[0][key] if k != "der"}
        err = tot["missed_s"] + tot["false_alarm_s"] + tot["confusion_s"]
        out[key] = {
            "der": round(err / tot["scored_s"], 4),
            **{k: round(v / tot["scored_s"], 4) for k, v in tot.items() if k != "scored_s"},
        }
    out["speakers_found_vs_true"] = [(r["speakers_found"], r["speakers_true"]) for r in rows]
    return out


def _wait_stats(waits: list[float]) -> dict:
    import numpy as np

    if not waits:
        return {"median": None, "p95": None, "max": None, "n": 0}
    w = np.asarray(waits)
    return {
        "median": round(float(np.median(w)), 3),
        "p95": round(float(np.percentile(w, 95)), 3),
        "max": round(float(w.max()), 3),
        "n": int(w.size),
    }


def turn_waits(r) -> tuple[list[float], int]:
    """Media seconds from each diarizer turn's end to the VAD's emission of its segment (turns
    emitted at the end of the stream left out), and how many turns ended inside their segment
    (> 0.05 s before its end). This is the part of the live latency the speech detection adds,
    before recognition and the emotion model; it does not depend on the CPU's speed."""
    ends = {s.segment_id: s.t_end for s in r.segments}
    waits, inside = [], 0
    for t in r.turns:
        at = r.emitted_at.get(t.segment_id)
        if at is None:
            continue
        waits.append(at - t.t_end)
        inside += ends[t.segment_id] - t.t_end > 0.05
    return waits, inside


def run_pipeline(stages: AudioStages, refs, uris, modes=("diarize",)) -> dict:
    files: dict[str, dict] = {m: {} for m in modes}
    cpu = audio = 0.0
    waits: dict[str, list[float]] = {"ami": [], "sample": []}
    inside = {"ami": 0, "sample": 0}
    for uri in uris:
        c0 = time.process_time()
        r = process_file(wav_of(uri), stages, resolve_merged=True)
        cpu += time.process_time() - c0
        audio += r.duration
        w, n_in = turn_waits(r)
        key = "sample" if uri == "sample" else "ami"
        waits[key] += w
        inside[key] += n_in
        files["diarize"][uri] = (
            score(refs[uri], r.all_turns, r.duration) if "diarize" in modes else None
        )
        if "live" in modes:
            live = process_file(wav_of(uri), stages, resolve_merged=False)
            files["live"][uri] = score(refs[uri], live.all_turns, live.duration)
    out = {
        "cpu_s_per_audio_s": round(cpu / max(audio, 1e-9), 4),
        "turn_wait_media_s": {
            k: {**_wait_stats(waits[k]), "ended_inside_segment": inside[k]} for k in waits
        },
    }
    for m in modes:
        ami = [files[m][u] for u in uris if u != "sample"]
        out[m] = {
            "per_file": files[m],
            "ami_pooled": pooled(ami) if ami else None,
            "sample": files[m].get("sample"),
        }
    return out


def der_of(stages, refs, uris) -> float:
    rows = []
    for uri in uris:
        r = process_file(wav_of(uri), stages)
        rows.append(score(refs[uri], r.all_turns, r.duration))
    return pooled(rows)["collar_0.0"]["der"]


def halves(refs) -> dict:
    """One knob at a time: best value on one AMI half, scored on the other."""
    base = AudioPipelineOptions()
    knobs = {
        "vad.threshold": [
            (v, replace(base, vad=replace(base.vad, threshold=v, neg_threshold=v - 0.05)))
            for v in (0.6, 0.7, 0.8)
        ],
        "diarizer.cluster_threshold": [
            (v, replace(base, diarizer=replace(base.diarizer, cluster_threshold=v)))
            for v in (0.4, 0.45, 0.5)
        ],
        "overlap.threshold": [
            (v, replace(base, overlap=replace(base.overlap, threshold=v))) for v in (0.2, 0.3, 0.5)
        ],
        "vad.grow_threshold": [  # None: segment edges not re-judged
            (v, replace(base, vad=replace(base.vad, grow_threshold=v)))
            for v in (None, 0.7, 0.8, 0.9)
        ],
    }
    stages = AudioStages.load(base)
    out = {}
    for name, options in knobs.items():
        table = []
        for value, opts in options:
            stages.options = opts
            stages.embedder.options = opts.voice
            table.append(
                {
                    "value": value,
                    "A": der_of(stages, refs, HALF_A),
                    "B": der_of(stages, refs, HALF_B),
                }
            )
        best_a = min(table, key=lambda r: r["A"])
        best_b = min(table, key=lambda r: r["B"])
        out[name] = {
            "grid": table,
            "chosen_on_A_scored_on_B": {"value": best_a["value"], "der_B": best_a["B"]},
            "chosen_on_B_scored_on_A": {"value": best_b["value"], "der_A": best_b["A"]},
        }
    stages.options = base
    return out


def gallery_check(refs) -> dict:
    def people(uri, turns):
        return majority_person(refs[uri], turns)

    stages = AudioStages.load(AudioPipelineOptions())
    with tempfile.TemporaryDirectory() as tmp:
        gal = SpeakerGallery(Path(tmp) / "g.json", model_id=stages.embedder.model_id)
        stored: dict[str, str] = {}
        for uri in ("trn00", "trn06", "trn07"):
            r = process_file(wav_of(uri), stages, gallery=gal)
            r.diarizer.save()
            who = people(uri, r.all_turns)
            stored.update(
                {s.speaker_id: who[s.speaker_id] for s in gal.load() if s.speaker_id in who}
            )
        snapshot = gal.path.read_text()
        replays = {}
        for uri in ("trn04", "trn05", "trn03", "trn08", "trn09"):
            gal.path.write_text(snapshot)
            r = process_file(wav_of(uri), stages, gallery=gal)
            who = people(uri, r.all_turns)
            reused = {sid: who[sid] for sid in who if sid in stored}
            replays[uri] = {
                "reused": {sid: {"stored_as": stored[sid], "now": p} for sid, p in reused.items()},
                "wrong": sum(stored[sid] != p for sid, p in reused.items()),
                "stored_people_present": sorted(set(stored.values()) & set(refs[uri].labels())),
            }
    return {"stored": stored, "replays": replays}


def _score_copies(refs, stages: AudioStages, audio: dict, change) -> dict:
    """Score rows of ``process_file`` on copies of ``audio`` ({uri: samples}) made by
    ``change(samples)``, written as float WAVs (nothing clips)."""
    import numpy as np
    import soundfile as sf

    from edge_app.messages import SAMPLE_RATE

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for uri, x in audio.items():
            path = Path(tmp) / f"{uri}.wav"
            sf.write(path, change(x).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
            r = process_file(path, stages)
            rows[uri] = score(refs[uri], r.all_turns, r.duration)
    return rows


def perturbed(refs, seeds: int, level: float = 1e-6) -> dict:
    """The defaults on copies of the AMI excerpts with Gaussian noise of ``level`` RMS added
    (1e-6: -120 dBFS, far below the recordings' own noise floor): how much of the pooled DER
    is the online labelling's sensitivity to inaudible differences rather than the method."""
    import numpy as np

    from edge_app.audio.sources import load_audio

    stages = AudioStages.load(AudioPipelineOptions())
    audio = {uri: load_audio(wav_of(uri)) for uri in AMI}
    out = {"level_rms": level, "runs": []}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)  # used in file order, as the copies are made
        rows = _score_copies(
            refs,
            stages,
            audio,
            lambda x, rng=rng: x + rng.normal(0.0, level, len(x)).astype(np.float32),
        )
        out["runs"].append(
            {
                "seed": seed,
                "ami_pooled_der": pooled(list(rows.values()))["collar_0.0"]["der"],
                "per_file_der": {u: rows[u]["collar_0.0"]["der"] for u in AMI},
            }
        )
    ders = [r["ami_pooled_der"] for r in out["runs"]]
    out["ami_pooled_der_min_mean_max"] = [min(ders), round(sum(ders) / len(ders), 4), max(ders)]
    return out


def rescaled(refs, gains: list[float]) -> dict:
    """The defaults on the eleven files scaled by each of ``gains``: AMI pooled and sample DER,
    per file (a recording level the defaults were not chosen at)."""
    import numpy as np

    from edge_app.audio.sources import load_audio

    stages = AudioStages.load(AudioPipelineOptions())
    audio = {uri: load_audio(wav_of(uri)) for uri in [*AMI, "sample"]}
    out = {}
    for gain in gains:
        rows = _score_copies(refs, stages, audio, lambda x, g=np.float32(gain): x * g)
        out[str(gain)] = {
            "ami_pooled_der": pooled([rows[u] for u in AMI])["collar_0.0"]["der"],
            "sample_der": rows["sample"]["collar_0.0"]["der"],
            "per_file_der": {u: rows[u]["collar_0.0"]["der"] for u in AMI},
        }
    return out


RAVDESS = REPO.parent / "shared" / "data" / "ravdess"


def ravdess_check(n: int) -> dict:
    """The defaults and LEGACY on ``n`` RAVDESS conversations (see ``--ravdess``)."""
    from edge_app.audio.scoring import clip_conversation

    convs = [(f"rav{k:02d}", *clip_conversation(RAVDESS, k)) for k in range(n)]
    refs = {uri: ref for uri, _, ref in convs}
    audio = {uri: x for uri, x, _ in convs}
    out: dict = {"conversations": n, "actors": {u: sorted(r.labels()) for u, r in refs.items()}}
    for name, options in (("new", AudioPipelineOptions()), ("old", LEGACY)):
        rows = _score_copies(refs, AudioStages.load(options), audio, lambda x: x)
        even = [rows[u] for k, u in enumerate(rows) if k % 2 == 0]
        odd = [rows[u] for k, u in enumerate(rows) if k % 2 == 1]
        out[name] = {
            "pooled": pooled(list(rows.values())),
            "pooled_actors_1_20": pooled(even),
            "pooled_actors_21_24": pooled(odd) if odd else None,
            "per_conversation": rows,
        }
    return out


def events_check(refs, uris) -> dict:
    """DER of the live run's event stream as who spoke when: a ``--fast`` replay of each file
    through the whole live pipeline (speech recognition, emotion), scored twice: its ``turn``
    records (the diarizer's turns as the voice stage labels them, overlap turns included) and
    its ``utterance`` records (one speaker's words in a segment: speech without words is not
    in them, nor a second voice in an overlap), each record's speaker, t_start, t_end one
    turn."""
    from types import SimpleNamespace

    import soundfile as sf

    from edge_app.live_pipeline import LiveOptions, LivePipeline, _quiet_hf

    _quiet_hf()
    rows: dict[str, dict] = {"turn": {}, "utterance": {}}
    for uri in uris:
        pipe = LivePipeline(
            LiveOptions(audio=wav_of(uri), headless=True, events=None, gallery=None, realtime=False)
        )
        pipe.open()
        rt = pipe.build()
        records: dict[str, list] = {"turn": [], "utterance": []}
        pipe.emotion.sinks = (records["utterance"].append,)
        pipe.turns.sinks = (records["turn"].append,)
        rt.run()
        pipe.close()
        duration = sf.info(wav_of(uri)).duration
        for kind, events in records.items():
            turns = [
                SimpleNamespace(speaker_id=e.speaker, t_start=e.t_start, t_end=e.t_end)
                for e in events
            ]
            rows[kind][uri] = {"records": len(events), **score(refs[uri], turns, duration)}
    out = {}
    for kind, by_file in rows.items():
        ami = [by_file[u] for u in uris if u != "sample"]
        out[kind] = {"files": by_file, "ami_pooled": pooled(ami) if ami else None}
    return out


def _gains(text: str) -> list[float]:
    try:
        gains = [float(g) for g in text.split(",")]
    except ValueError:
        msg = f"{text!r} is not a comma-separated list of numbers"
        raise argparse.ArgumentTypeError(msg) from None
    if not gains or any(not 0 < g < 1e3 for g in gains):
        raise argparse.ArgumentTypeError(f"{text!r}: each gain must be above 0 and below 1000")
    return gains


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--halves", action="store_true", help="tune-on-one-half check (slow)")
    ap.add_argument("--gallery", action="store_true", help="AMI gallery reuse check")
    ap.add_argument(
        "--perturb",
        type=int,
        default=0,
        metavar="N",
        help="also score the defaults on N copies of AMI with -120 dBFS noise added (seeds 0..N-1)",
    )
    ap.add_argument(
        "--gain",
        type=_gains,
        default=[],
        metavar="G,G",
        help="also score the defaults on the files scaled by these gains (e.g. 0.1,0.03)",
    )
    ap.add_argument(
        "--ravdess",
        type=int,
        default=0,
        metavar="N",
        help="also score both pipelines on N conversations built from RAVDESS clips",
    )
    ap.add_argument(
        "--events",
        action="store_true",
        help="also score the live run's turn and utterance records (--fast replays, whole "
        "pipeline)",
    )
    args = ap.parse_args()
    if args.ravdess < 0:
        ap.error(f"--ravdess {args.ravdess}: the number of conversations must be 0 or more")
    if args.ravdess and not (RAVDESS / "Actor_01").is_dir():
        ap.error(f"--ravdess: no RAVDESS takes in {RAVDESS} (see ../shared/data/README.md)")
    if args.perturb < 0:
        ap.error(f"--perturb {args.perturb}: the number of noisy copies must be 0 or more")
    import torch

    torch.set_num_threads(1)
    refs = load_refs()
    uris = [*AMI, "sample"]
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "threads": "1 (torch, onnxruntime)",
        },
        "note": "defaults tuned on these same 11 files; see --halves",
        "defaults_new": {k: v for k, v in asdict(AudioPipelineOptions()).items() if k != "asr"},
    }
    new = AudioStages.load(AudioPipelineOptions())
    result["new"] = run_pipeline(new, refs, uris, modes=("diarize", "live"))
    old = AudioStages.load(LEGACY)
    result["old"] = run_pipeline(old, refs, uris)
    if args.halves:
        result["halves"] = halves(refs)
    if args.gallery:
        result["gallery"] = gallery_check(refs)
    if args.perturb:
        result["perturbed"] = perturbed(refs, args.perturb)
    if args.gain:
        result["rescaled"] = rescaled(refs, args.gain)
    if args.ravdess:
        result["ravdess"] = ravdess_check(args.ravdess)
    if args.events:
        result["events"] = events_check(refs, uris)
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

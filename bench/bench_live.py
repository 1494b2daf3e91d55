"""Benchmark of the whole live pipeline: replay a recording in real time, measure latency.

Prints one JSON object. Per configuration (compared in the same run, same file, same machine):

* ``ready_s``: wall seconds from the arrival of an utterance's last audio sample to its emotion
  being ready (events written), median and p95;
* ``ready_s_segment_end`` / ``ready_s_inside_segment``: the same, split by whether the turn
  ended its speech segment or ended inside one (a change of speaker with no pause);
* ``on_screen_s``: the same, until the terminal UI (rendered to a buffer; redrawn 4 times a
  second and at once when an emotion is ready, as in the live run) first draws a frame that
  contains it: what a viewer waits for;
* ``cpu_s_per_media_s``: process CPU seconds (all threads, native ones included) per second of
  replayed audio, from the first chunk to the end of the run (model loading excluded);
* ``drops``: items dropped per queue and audio samples lost (should all be 0);
* ``end_of_file_to_stop_s``: from the last audio chunk to every thread stopped (the last
  utterance is still transcribed and scored in between);
* ``turn_record_s``: wall seconds from the arrival of a speaker turn's last audio sample to its
  ``turn`` record (who spoke when; the voice stage writes it before the words are known),
  median and p95;
* per-stage median latency (ms), utterances, speakers;
* ``turns``: (media time of the utterance's end, latency) per utterance, to pair the same turns
  across configurations (a list per run when ``--repeat`` > 1).

Usage::

    python bench/bench_live.py [--audio ../shared/data/diarization/sample.wav] \
        [--configs ort-seg6-asr2,torch-seg6-asr2,ort-seg6-asr1,ort-seg10-asr2] [--repeat 2]

Configurations are ``<backend>[-seg<N>][-asr<K>][-text]``: emotion backend (ort = onnxruntime,
torch), the VAD's maximum segment length N seconds (default 10 as in the app; a turn that
ends inside a longer stretch of speech waits for the cut)
and the speech recogniser's CPU threads K (default 2; 1 leaves a core to the voice stage);
``-text`` runs the text-only checkpoint (``mlsan_meld.pt``) instead of the default multimodal
one (voice features from the ASR's encoder pass), to show what voice costs; ``-look25`` the
speech detection before issue 12's change (0.25 s look-ahead, speaker changes judged with it);
``-recheckS`` judges speaker changes again until they have S seconds of right context
(``SegmentationOptions.change_recheck_s``); ``-ccS`` judges a speaker change once it has S
seconds of right context (``SegmentationOptions.change_context_s``); ``-nogrow`` hands segments on
with their first-score edges (``VadOptions.grow_threshold=None``); ``-uiH`` redraws the UI H times a
second (``LiveOptions.refresh_hz``; it also redraws at once for every new emotion); ``-spec`` /
``-nospec`` turns speculative speech recognition on / off (``--speculative-asr``;
``asr_ahead`` counts what became of the guesses: with it on, the ``asr`` stage median mixes
guess passes and turns served from a guess at once); ``-encct2`` / ``-encbf16`` picks who runs
Whisper's encoder (``--asr-encoder``; default auto: bf16 on CPUs with AMX); ``-blasN`` sets
numpy's BLAS pool to N threads once the pipeline opened (it runs one: ``mlsan.blas_threads``;
``blas2`` is the pool numpy starts with on 2 cores), recorded as ``blas_threads``; ``-vnN`` runs
the voice stage N below the other stages (``LiveOptions.voice_nice``; ``vn0``: the same priority);
``-decK`` gives CTranslate2's decoder K threads (``AsrOptions.decoder_threads``; the live run:
``--asr-threads``), recorded as ``decoder_threads``; ``-novahead`` keeps the voice stage from
embedding anything ahead (``CamppEmbedder.embed_ahead``: neither guesses nor the open segment's
audio so far), ``-vpS`` hands it the open segment's audio every S seconds
(``LiveOptions.voice_prefix_s``; ``vp0``: never); ``voice_ahead`` counts the CAM++ windows embedded
ahead, and of the handed-on segments' windows those reused from them and those computed at
hand-on (the ``voice``
stage median then mixes the passes ahead in), ``voice_prefix_s`` is recorded.
``steal_share``: the share of the machine's CPU time the hypervisor gave to other guests during
the run (/proc/stat), because on a shared VM the same code runs slower when it is high.
``--cores`` pins the process to those CPU cores (to measure "2 cores" on a bigger machine).
``load_avg_1m_before`` is recorded because the CPU may be shared with other work.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# Knob prefix -> the SegmentationOptions field it sets, in seconds (-recheckS, -ccS).
SEGMENTATION_KNOBS = {"recheck": "change_recheck_s", "cc": "change_context_s"}
BACKENDS = {"ort": "onnxruntime", "torch": "torch", "auto": "auto", "trt": "tensorrt"}


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p95": None, "n": 0}
    arr = np.asarray(values, np.float64)
    return {
        "median": round(float(np.median(arr)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "max": round(float(arr.max()), 3),
        "n": int(arr.size),
    }


def _cpu_jiffies() -> list[int]:
    """[all CPU time, stolen CPU time] of the machine so far (Linux /proc/stat), or []."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return []
    return [sum(fields[:8]), fields[7]] if len(fields) >= 8 else []


def _steal_share(before: list[int]) -> float | None:
    """The share of the machine's CPU time the hypervisor gave to other guests since
    ``before`` (a ``_cpu_jiffies()`` reading): on a shared VM the same code runs slower."""
    after = _cpu_jiffies()
    if not before or not after:
        return None
    total, stolen = (b - a for a, b in zip(before, after, strict=True))
    return round(stolen / max(1, total), 3)


def run_config(name: str, audio: Path, context: int) -> dict:
    from dataclasses import asdict, replace

    from rich.console import Console

    from edge_app.audio.offline import AudioPipelineOptions
    from edge_app.live_pipeline import LiveOptions, LivePipeline
    from edge_app.ui import TerminalUI
    from mlsan.blas_threads import blas_threads

    backend_key, *knobs = name.split("-")
    seg, asr_threads, refresh_hz = 10.0, 2, LiveOptions.refresh_hz
    model_paths: tuple[tuple[str, str], ...] = ()
    audio_opts = AudioPipelineOptions()
    speculative = LiveOptions.speculative_asr
    encoder = LiveOptions.asr_encoder
    blas = None
    voice_nice = LiveOptions.voice_nice
    decoder_threads = None  # AsrOptions.decoder_threads: the live default
    voice_prefix_s = LiveOptions.voice_prefix_s
    voice_ahead = True
    for knob in knobs:
        if knob == "text":
            model_paths = (("mlsan", str(REPO / "mlsan" / "checkpoints" / "mlsan_meld.pt")),)
            continue
        if knob == "look25":  # the speech detection before the late change cut (issue 12)
            audio_opts = replace(
                audio_opts,
                segmentation=replace(
                    audio_opts.segmentation,
                    lookahead_s=0.25,
                    change_context_s=0.25,
                    change_recheck_s=0,
                ),
            )
            continue
        if knob in ("spec", "nospec"):  # speculative speech recognition (--speculative-asr)
            speculative = knob == "spec"
            continue
        if knob.startswith("enc"):  # Whisper's encoder (--asr-encoder): encct2, encbf16
            encoder = {"ct2": "ctranslate2"}.get(knob[3:], knob[3:])
            continue
        if knob.startswith("vn"):  # the voice stage's priority (LiveOptions.voice_nice): vn0
            voice_nice = int(knob[2:])
            continue
        if knob.startswith("blas"):  # numpy's BLAS pool after the pipeline opened: blas2
            blas = int(knob[4:])
            continue
        if knob.startswith("dec"):  # CTranslate2's decoder threads (AsrOptions): dec1
            decoder_threads = int(knob[3:])
            continue
        if knob == "novahead":  # nothing embedded ahead by the voice stage
            voice_ahead = False
            continue
        if knob.startswith("vp"):  # the open segment's audio to the voice stage every S s: vp0
            voice_prefix_s = float(knob[2:]) or None
            continue
        if knob == "nogrow":  # segment edges not re-judged at hand-on (VadOptions)
            audio_opts = replace(audio_opts, vad=replace(audio_opts.vad, grow_threshold=None))
            continue
        prefix = next((k for k in SEGMENTATION_KNOBS if knob.startswith(k)), None)
        if prefix is not None:
            value = {SEGMENTATION_KNOBS[prefix]: float(knob[len(prefix) :])}
            audio_opts = replace(audio_opts, segmentation=replace(audio_opts.segmentation, **value))
            continue
        if knob.startswith("seg"):
            seg = float(knob[3:])
        elif knob.startswith("asr"):
            asr_threads = int(knob[3:])
        elif knob.startswith("ui"):
            refresh_hz = float(knob[2:])
        else:
            raise SystemExit(f"unknown knob {knob!r} in config {name!r}")
    options = LiveOptions(
        audio=audio,
        headless=True,
        events=None,
        backend=BACKENDS[backend_key],
        realtime=True,
        gallery=None,
        context=context,
        max_segment_s=seg,
        asr_threads=asr_threads,
        refresh_hz=refresh_hz,
        speculative_asr=speculative,
        asr_encoder=encoder,
        voice_nice=voice_nice,
        voice_prefix_s=voice_prefix_s,
        model_paths=model_paths,
        audio_options=audio_opts,
    )
    pipe = LivePipeline(options)
    t_load = time.monotonic()
    pipe.open()
    load_s = time.monotonic() - t_load
    if decoder_threads is not None:  # the live run's transcriber, but for the decoder threads
        from edge_app.audio.asr import WhisperTranscriber

        asr = pipe.loaded.asr
        pipe.loaded.asr = WhisperTranscriber(replace(asr.options, decoder_threads=decoder_threads))
    if not voice_ahead:
        pipe.loaded.speaker_stage.embed_ahead = lambda part, ends_here=True: None
    if blas is not None:  # the pipeline set one thread (mlsan.blas_threads): undo for comparison
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas, user_api="blas")
    ready: list[tuple[float, float]] = []  # (ready wall time, latency)
    ids: list[int] = []
    turns: list[tuple[float, float]] = []  # (utterance t_end, latency): paired across configs
    lock = threading.Lock()

    def on_event(event) -> None:
        with lock:
            ready.append((time.monotonic(), event.latency_s))
            ids.append(event.utterance_id)
            turns.append((round(event.t_end, 3), round(event.latency_s, 3)))

    rt = pipe.build()
    turn_records: list[float] = []  # latency of each turn record
    pipe.turns.sinks = (lambda turn: turn_records.append(turn.latency_s),)
    frames: list[tuple[float, int]] = []  # (time the frame was on screen, utterances in it)

    def snapshot():
        snap = pipe.snapshot()
        frames.append((time.monotonic(), sum(s.n_utterances for s in snap.speakers)))
        return snap

    inner: dict[int, float] = {}  # utterance id -> seconds its segment went on after it
    process = pipe.emotion.process

    def process_and_note(utt):
        inner[utt.utterance_id] = utt.segment_t_end - utt.t_end
        return process(utt)

    pipe.emotion.process = process_and_note
    ui = TerminalUI(
        snapshot, options.refresh_hz, Console(file=io.StringIO(), width=140, force_terminal=True)
    )
    pipe.emotion.sinks = (on_event, lambda _event: ui.poke())  # as the live run does
    cpu0 = time.process_time()
    machine0 = _cpu_jiffies()
    ui.start()
    pipe.status = "running"
    rt.run()
    stopped = time.monotonic()
    end_of_file_to_stop = stopped - pipe.arrivals.wall_of(float("inf"))
    ui.stop()
    cpu = time.process_time() - cpu0
    steal = _steal_share(machine0)
    snap = pipe.snapshot()
    on_screen = []
    for k, (t_ready, latency) in enumerate(ready):
        arrival = t_ready - latency
        shown = next((t for t, n in frames if n >= k + 1 and t >= t_ready), None)
        if shown is not None:
            on_screen.append(shown - arrival)
    stats = snap.stats
    pairs = list(zip([lat for _, lat in ready], ids, strict=True))
    seg_end = [lat for lat, i in pairs if inner[i] < 0.05]
    inside = [lat for lat, i in pairs if inner[i] >= 0.05]
    return {
        "config": name,
        "backend": snap.header.backend,
        "checkpoint": "text-only" if model_paths else "multimodal (default)",
        "max_segment_s": options.max_segment_s,
        "asr_threads": options.asr_threads,
        "asr_encoder": pipe.loaded.asr.encoder_kind,
        "blas_threads": blas_threads(),
        "voice_nice": options.voice_nice,
        "voice_prefix_s": options.voice_prefix_s,
        "load_s": round(load_s, 2),
        "media_s": round(snap.media_t, 2),
        "wall_s": round(stats.wall_s, 2),
        "utterances": len(ready),
        "speakers": [s.speaker for s in snap.speakers],
        "ready_s": _percentiles([lat for _, lat in ready]),
        # Split: turns that ended their VAD segment vs. turns that ended inside one (a change
        # of speaker without a pause: they wait for the segment's end).
        "ready_s_segment_end": _percentiles(seg_end),
        "ready_s_inside_segment": _percentiles(inside),
        "on_screen_s": _percentiles(on_screen),
        "turn_record_s": _percentiles(turn_records),
        "cpu_s_per_media_s": round(cpu / max(snap.media_t, 1e-9), 3),
        # Share of the machine's CPU time the hypervisor gave to other guests during the run
        # (/proc/stat "steal"): on a shared VM the same code runs slower when this is high.
        "steal_share": steal,
        "end_of_file_to_stop_s": round(end_of_file_to_stop, 3),
        "drops": {q.name: q.dropped for q in stats.queues},
        "audio_samples_lost": int(round(snap.audio_dropped_s * 16000)),
        "stage_median_ms": {
            s.name: None if s.latency_median_ms is None else round(s.latency_median_ms, 1)
            for s in stats.stages
        },
        "ui_refresh_hz": options.refresh_hz,
        "ui_frames": ui.frames,
        # Speculative ASR: guesses transcribed, kept (exact / near), transcribed again, skipped.
        "speculative_asr": options.speculative_asr,
        "asr_ahead": asdict(pipe.loaded.asr.ahead),
        # CAM++ windows embedded ahead by the voice stage; of the handed-on segments' windows,
        # reused from those / computed at hand-on.
        "voice_ahead": asdict(pipe.loaded.embedder.ahead)
        if hasattr(pipe.loaded.embedder, "ahead")
        else None,
        "decoder_threads": pipe.loaded.asr.ct2_threads,
        "turns": turns,
        "_ready_s": [lat for _, lat in ready],
        "_ready_s_segment_end": seg_end,
        "_ready_s_inside_segment": inside,
        "_on_screen_s": on_screen,
        "_turn_record_s": turn_records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", default=str(REPO.parent / "shared/data/diarization/sample.wav"))
    parser.add_argument(
        "--configs", default="ort-seg6-asr2,torch-seg6-asr2,ort-seg6-asr1,ort-seg10-asr2"
    )
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="runs per config (pooled)")
    parser.add_argument("--cores", default=None, help="pin to these CPU ids, e.g. 0,1")
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    import logging

    logging.basicConfig(level=logging.WARNING)
    from edge_app.live_pipeline import _quiet_hf
    from mlsan.ct2_cpu import ENV, cpu_name

    _quiet_hf()
    results = []
    for name in args.configs.split(","):
        runs = []
        for _ in range(max(1, args.repeat)):
            load = os.getloadavg()[0]
            runs.append(run_config(name.strip(), Path(args.audio), args.context))
            runs[-1]["load_avg_1m_before"] = round(load, 2)
        result = runs[0]
        if len(runs) > 1:  # pool the per-utterance latencies of all runs
            result["runs"] = len(runs)
            # each run's own median and p95 (what its summary record reports), then pooled
            per_run = [(r["ready_s"]["median"], r["ready_s"]["p95"]) for r in runs]
            result["ready_s_per_run"] = per_run
            result["steal_share_per_run"] = [r["steal_share"] for r in runs]
            result["cpu_s_per_media_s_per_run"] = [r["cpu_s_per_media_s"] for r in runs]
            pooled = ("ready_s", "on_screen_s", "ready_s_segment_end", "ready_s_inside_segment")
            for key in (*pooled, "turn_record_s"):
                result[key] = _percentiles([x for r in runs for x in r["_" + key]])
            for key in ("cpu_s_per_media_s", "steal_share"):
                values = [r[key] for r in runs if r[key] is not None]
                result[key] = round(float(np.mean(values)), 3) if values else None
            result["load_avg_1m_before"] = [r["load_avg_1m_before"] for r in runs]
            result["drops"] = {k: sum(r["drops"][k] for r in runs) for k in result["drops"]}
            result["audio_samples_lost"] = sum(r["audio_samples_lost"] for r in runs)
            result["turns"] = [r["turns"] for r in runs]
            result["asr_ahead"] = {
                k: sum(r["asr_ahead"][k] for r in runs) for k in result["asr_ahead"]
            }
            if result["voice_ahead"] is not None:
                result["voice_ahead"] = {
                    k: sum(r["voice_ahead"][k] for r in runs) for k in result["voice_ahead"]
                }
        for r in runs:
            for key in [k for k in r if k.startswith("_")]:
                r.pop(key)
        results.append(result)
    print(
        json.dumps(
            {
                "bench": "live",
                "audio": str(args.audio),
                "cpus_usable": len(os.sched_getaffinity(0)),
                "cpu_count": os.cpu_count(),
                "cpu": cpu_name(),
                # CTranslate2's kernels for the ASR (mlsan.ct2_cpu; unset: its own AVX2 choice)
                "ct2_cpu_isa": os.environ.get(ENV),
                "goal": {"median_s": 0.8, "p95_s": 1.5},
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()

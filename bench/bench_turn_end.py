"""At a turn's end: the speech recogniser and the voice stage at once, with the voice stage's
priority (and the decoder's threads) taken in turns, in one process.

    python bench/bench_turn_end.py [--diarization ../shared/data/diarization] [--nice 0,10]
        [--rounds 1] [--decoder-threads 1,2] [--ahead]

When the speech detection hands a segment on, the live run gives it to two threads at once:
speech recognition (Whisper: the encoder on two threads, then CTranslate2 decoding) and
the voice stage (CAM++ and the online diarizer, one thread). On 2 cores they compete, and the
turn's emotion waits for the slower one, the ASR. This replays that moment on each
conversation turn (the reference turns of ``sample.wav`` and the ten AMI excerpts, cut at 6 s,
as ``bench_asr_window.py``), with the models the live run loads (``LivePipeline.open``), and
compares:

- ``alone``: the ASR with nothing beside it (the floor);
- ``nice_N``: the ASR with the voice stage running beside it in its own thread at nice N
  (``LiveOptions.voice_nice``; 0: the same priority);
- with ``--ahead``, ``nice_N_ahead``: the same, but the turn's whole CAM++ windows were
  embedded before it ended (the live run's voice stage does that while the turn goes on:
  ``LiveOptions.voice_prefix_s``), so beside the ASR the voice stage only runs the window
  aligned to the turn's end and the diarizer (the windows done ahead are neither timed nor in
  the CPU figure);
- with ``--decoder-threads 1,2``, each of those per CTranslate2 decoder thread count
  (``AsrOptions.decoder_threads``; suffix ``_decK``), one transcriber each.

The alternatives take turns on every turn (the order rotates), so a shared machine's slow
minutes hit all alike. Prints one JSON object: per alternative the ASR's wall ms a turn
(median, mean), the voice stage's wall ms, when both were done, the process CPU ms (both
threads), and on how many turns the words equal the first alternative's (a turn that falls
back to sampling may differ even between two calls of one transcriber); the machine, its load
and the share of its CPU time the hypervisor gave to other guests (``steal_share``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_asr_window import conversation_set  # noqa: E402
from bench_live import _cpu_jiffies, _steal_share  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--diarization", default="../shared/data/diarization")
    p.add_argument("--nice", default="0,10", help="voice stage nice values to compare")
    p.add_argument("--rounds", type=int, default=1, help="passes over the turns")
    p.add_argument(
        "--decoder-threads",
        default="",
        help="CTranslate2 decoder threads to compare (AsrOptions.decoder_threads), e.g. 1,2; "
        "empty: the live default only",
    )
    p.add_argument(
        "--ahead",
        action="store_true",
        help="also each nice value with the turn's whole CAM++ windows embedded before it ends "
        "(the live run's voice stage: LiveOptions.voice_prefix_s), suffix _ahead",
    )
    args = p.parse_args()

    from dataclasses import replace

    from edge_app.audio.asr import WhisperTranscriber
    from edge_app.live_pipeline import LiveOptions, LivePipeline, _quiet_hf
    from edge_app.messages import SAMPLE_RATE, SpeechSegment
    from edge_app.runtime import lower_thread_priority
    from mlsan.ct2_cpu import cpu_name

    _quiet_hf()
    root = Path(args.diarization)
    turns = conversation_set(root)
    pipe = LivePipeline(
        LiveOptions(audio=root / "sample.wav", headless=True, events=None, gallery=None)
    )
    loaded = pipe.open()  # the live run's models, threads and BLAS settings
    nices = [None] + [int(n) for n in args.nice.split(",") if n.strip()]
    # One transcriber per decoder thread count (the live run's is the first when none given).
    decoders = [int(d) for d in args.decoder_threads.split(",") if d.strip()]
    asrs = (
        {None: loaded.asr}
        if not decoders
        else {
            d: WhisperTranscriber(replace(loaded.asr.options, decoder_threads=d)) for d in decoders
        }
    )
    # name -> (transcriber, the voice stage's nice or None: the ASR alone, windows ahead)
    alternatives = {
        ("alone" if nice is None else f"nice_{nice}")
        + ("_ahead" if ahead else "")
        + ("" if d is None else f"_dec{d}"): (asr, nice, ahead)
        for d, asr in asrs.items()
        for nice in nices
        for ahead in ((False, True) if args.ahead and nice is not None else (False,))
    }
    names = list(alternatives)
    times: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in names}
    texts: dict[str, list[str]] = {n: [] for n in names}  # per turn, in turn order
    load_before, machine_before = os.getloadavg(), _cpu_jiffies()
    t_media, segment_id = 0.0, 0
    for r in range(args.rounds):
        for i, (_, audio) in enumerate(turns):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                seg = SpeechSegment(segment_id, t_media, t_media + len(audio) / SAMPLE_RATE, audio)
                segment_id += 1
                t_media = seg.t_end + 1.0
                voice_s: list[float] = []

                def voice(nice: int, seg=seg, voice_s=voice_s) -> None:
                    lower_thread_priority(nice)
                    t = time.perf_counter()
                    loaded.speaker_stage.process(seg)
                    voice_s.append(time.perf_counter() - t)

                asr, nice, ahead = alternatives[name]
                if ahead:  # live, these ran while the turn went on (not timed, not counted)
                    loaded.speaker_stage.embed_ahead(seg, ends_here=False)
                t0, c0 = time.perf_counter(), time.process_time()
                thread = None
                if nice is not None:
                    thread = threading.Thread(target=voice, args=(nice,))
                    thread.start()
                texts[name].append(asr.transcribe(seg).text)
                asr_s = time.perf_counter() - t0
                if thread is not None:
                    thread.join()
                both_s = time.perf_counter() - t0
                cpu_s = time.process_time() - c0  # the process: both stages' threads
                times[name].append((asr_s, voice_s[0] if voice_s else 0.0, both_s, cpu_s))
    result = {}
    for name, rows in times.items():
        arr = 1000 * np.asarray(rows)
        result[name] = {
            "asr_wall_ms_median": round(float(np.median(arr[:, 0])), 1),
            "asr_wall_ms_mean": round(float(arr[:, 0].mean()), 1),
            "voice_wall_ms_median": round(float(np.median(arr[:, 1])), 1),
            "both_done_ms_median": round(float(np.median(arr[:, 2])), 1),
            "cpu_ms_median": round(float(np.median(arr[:, 3])), 1),
            "cpu_ms_mean": round(float(arr[:, 3].mean()), 1),
            "turns": len(rows),
            # turns whose words equal the first alternative's (sampling fallbacks may differ)
            f"same_words_as_{names[0]}": sum(
                a == b for a, b in zip(texts[name], texts[names[0]], strict=True)
            ),
        }
    result["machine"] = {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "asr_encoder": loaded.asr.encoder_kind,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "steal_share": _steal_share(machine_before),
    }
    pipe.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

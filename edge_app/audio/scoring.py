"""Scoring speaker turns against reference turns (RTTM) with pyannote.metrics.

One definition for the tests that assert the README's DER bounds and the benchmarks that
measure them (``bench/bench_diarization.py``, ``bench/bench_audio.py``). pyannote.metrics is
in the ``dev`` extra, so it is imported here, inside the functions, never by the app itself.

    refs = read_rttm(path)                          # {uri: Annotation}
    parts = der_parts(refs["trn00"], turns, 30.0)   # der and its parts in seconds
    rounded(parts)                                  # the same as a report prints it
    who = majority_person(refs["trn00"], turns)     # {speaker id: reference person}
    audio, ref = clip_conversation(ravdess, 10)     # a labelled conversation from RAVDESS takes
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path


def read_rttm(path: str | Path, shift: float = 0.0) -> dict:
    """``SPEAKER`` lines of an RTTM file -> {uri: pyannote Annotation}; ``shift`` (seconds) is
    added to every start (a reference for a shifted copy of the audio)."""
    from pyannote.core import Annotation, Segment

    refs: dict[str, Annotation] = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        f = line.split()
        if f and f[0] == "SPEAKER":
            t0 = float(f[3]) + shift
            # One track per line (see ``hypothesis``): two people with the same times both count.
            refs.setdefault(f[1], Annotation(uri=f[1]))[Segment(t0, t0 + float(f[4])), i] = f[7]
    return refs


def hypothesis(turns: Iterable, rename: Callable[[str], str] | None = None):
    """Speaker turns (``t_start``, ``t_end``, ``speaker_id``) -> Annotation; ``rename`` maps
    each speaker id to the name scored (e.g. the diarizer's ``resolve``: merged ids)."""
    from pyannote.core import Annotation, Segment

    hyp = Annotation()
    for i, t in enumerate(turns):
        if t.t_end > t.t_start:
            # One track per turn: ``hyp[segment] = label`` alone would use one default track,
            # so an overlap turn with the same start and end as a main turn would replace it.
            hyp[Segment(t.t_start, t.t_end), i] = rename(t.speaker_id) if rename else t.speaker_id
    return hyp


def der_parts(
    ref,
    turns: Iterable,
    duration: float,
    collar: float = 0.0,
    rename: Callable[[str], str] | None = None,
) -> dict:
    """DER of ``turns`` against ``ref`` over [0, duration] with ``collar``: the rate and its
    parts in seconds (missed, false alarm, confusion, scored), unrounded (``rounded`` for
    reports)."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    d = DiarizationErrorRate(collar=collar)(
        ref,
        hypothesis(turns, rename),
        uem=Timeline([Segment(0.0, duration)]),
        detailed=True,
    )
    return {
        "der": d["diarization error rate"],
        "missed_s": d["missed detection"],
        "false_alarm_s": d["false alarm"],
        "confusion_s": d["confusion"],
        "scored_s": d["total"],
    }


def rounded(parts: dict) -> dict:
    """``der_parts`` as reported: the rate to 4 decimals, seconds to the millisecond."""
    return {k: round(v, 4 if k == "der" else 3) for k, v in parts.items()}


def majority_person(ref, turns: Iterable) -> dict[str, str]:
    """{speaker id: the reference person it overlaps longest}."""
    overlap: dict[str, Counter] = defaultdict(Counter)
    for t in turns:
        for seg, _, who in ref.itertracks(yield_label=True):
            ov = min(seg.end, t.t_end) - max(seg.start, t.t_start)
            if ov > 0:
                overlap[t.speaker_id][who] += ov
    return {sid: c.most_common(1)[0][0] for sid, c in overlap.items()}


def speech_span(x) -> tuple[int, int]:
    """Samples [a, b) of a clip from its first to its last 10-ms frame within 35 dB of its
    loudest one (a studio take: silence, then one sentence, then silence)."""
    import numpy as np

    n = len(x) // 160
    rms = np.sqrt((np.asarray(x[: n * 160], np.float64).reshape(n, 160) ** 2).mean(axis=1))
    db = 20 * np.log10(rms + 1e-12)
    on = np.nonzero(db > db.max() - 35.0)[0]
    return int(on[0]) * 160, (int(on[-1]) + 1) * 160


def clip_conversation(folder: str | Path, k: int, turns: int = 12):
    """Conversation ``k`` (seeded by ``k`` alone: the same audio every time) built from the
    RAVDESS takes in ``folder`` (``Actor_NN/*.flac``): 2 or 3 actors, among actors 1-20 for
    even ``k`` and 21-24 for odd ``k``, ``turns`` takes in a row, never the same actor twice
    in a row (no take twice), 0.1-0.7 s of digital silence between them, no overlap. Each take
    keeps 50 ms of its own room tone around its speech span. Takes whose speech is below
    -45 dBFS (a few very soft ones, where the 35-dB rule would take room tone for speech) are
    not used. Returns ((n,) float32 audio at 16 kHz, the reference Annotation: each take's
    speech span, labelled ``actorNN``)."""
    import numpy as np
    from pyannote.core import Annotation, Segment

    from edge_app.audio.sources import load_audio
    from edge_app.messages import SAMPLE_RATE

    rng = np.random.default_rng([2026, k])
    pool = np.arange(1, 21) if k % 2 == 0 else np.arange(21, 25)
    actors = [int(a) for a in rng.choice(pool, size=int(rng.choice([2, 3])), replace=False)]
    takes = {  # each actor's takes in a shuffled order, each used once
        a: [
            Path(t)
            for t in rng.permutation(sorted((Path(folder) / f"Actor_{a:02d}").glob("*.flac")))
        ]
        for a in actors
    }
    if not all(takes.values()):
        raise FileNotFoundError(
            f"no RAVDESS takes (Actor_NN/*.flac) in {folder}; fix: point at the ravdess folder "
            "of ../shared/data"
        )
    ref = Annotation(uri=f"rav{k:02d}")
    parts = [np.zeros(SAMPLE_RATE // 2, np.float32)]
    t, prev = 0.5, None
    for _ in range(turns):
        who = int(rng.choice([a for a in actors if a != prev]))
        prev = who
        while True:  # (a take list never runs out: 60 takes an actor, 12 turns)
            x = load_audio(takes[who].pop())
            a, b = speech_span(x)
            if 20 * np.log10(np.sqrt(np.mean(x[a:b] ** 2)) + 1e-12) > -45.0:
                break
        x = x[max(0, a - 800) : b + 800]
        a, b = speech_span(x)
        ref[Segment(t + a / SAMPLE_RATE, t + b / SAMPLE_RATE)] = f"actor{who:02d}"
        gap = np.zeros(int(rng.uniform(0.1, 0.7) * SAMPLE_RATE), np.float32)
        parts += [x, gap]
        t += (len(x) + len(gap)) / SAMPLE_RATE
    return np.concatenate(parts).astype(np.float32), ref

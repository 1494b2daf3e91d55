"""RAVDESS (audio-only speech, 24 actors, 8 emotions): clips, labels, cached voice features.

API::

    clips = list_clips("../shared/data/ravdess")        # 1,440 Clip records, sorted
    store = voice_store(root, kind="whisper")           # cached features (see ``KINDS``)
    store.x, store.labels, store.actors                 # (N, D) float32, (N,) int, (N,) int

Labels (written down once, here): the model predicts ``RAVDESS_LABELS``' 8 classes on RAVDESS
and the joint model's classes are MELD's 7 plus ``calm`` (``JOINT_LABELS``). Calm is kept as its
own class because on the speaker-independent protocol it is recognised from the voice (8-class
logistic regression on the Whisper feature: calm F1 reported in
``mlsan/checkpoints/voice_candidates.md``) and folding it into neutral would make "neutral" half
calm clips (96 neutral vs 192 calm) and change the published 8-class task. On MELD (which has
no calm) a calm prediction counts as neutral (``fold_calm``).

Protocol (speaker-independent): actors 21-24 are the test speakers and are never used for
training or model selection; selection is cross-validation over actors 1-20 (folds of 5
actors); ``FOLDS4`` gives the 4-fold report (actors 1-6, 7-12, 13-18, 19-24 held out in turn).

Feature kinds (all computed from the clip's own 16 kHz audio, cached as one .npz per kind under
the feature cache (``$MLSAN_FEATURE_CACHE`` or ``~/.cache/mlsan-live/features``), keyed by the clip
list
and the feature definition):
``whisper`` (Whisper tiny.en int8 encoder states pooled by ``mlsan.voice_features``; the cache
holds the state sequences as float16 so every pooling can be measured), ``prosody``
(``mlsan.prosody``, 88), ``dvector`` (resemblyzer GE2E, 256, the app's voice model);
``whisper-farfield``: the ``whisper`` feature of each clip's simulated far-field copy
(``mlsan.farfield``: reverb, noise, level, low-pass; fixed per clip).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsan.errors import UserFacingError

RAVDESS_LABELS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
# The joint model's classes: MELD's 7 (same order as mlsan.config.MELD_LABELS) + calm.
JOINT_LABELS: tuple[str, ...] = (
    "neutral",
    "surprise",
    "fear",
    "sadness",
    "joy",
    "disgust",
    "anger",
    "calm",
)
# RAVDESS class -> joint class index.
RAVDESS_TO_JOINT: tuple[int, ...] = tuple(
    JOINT_LABELS.index(n)
    for n in ("neutral", "calm", "joy", "sadness", "anger", "fear", "disgust", "surprise")
)
TEST_ACTORS: tuple[int, ...] = (21, 22, 23, 24)
TRAIN_ACTORS: tuple[int, ...] = tuple(range(1, 21))
CV_FOLDS: tuple[tuple[int, ...], ...] = tuple(tuple(range(a, a + 5)) for a in (1, 6, 11, 16))
FOLDS4: tuple[tuple[int, ...], ...] = tuple(tuple(range(a, a + 6)) for a in (1, 7, 13, 19))
KINDS = ("whisper", "prosody", "dvector", "whisper-farfield")
FEATURE_VERSION = 1


class RavdessError(UserFacingError):
    """The RAVDESS folder is missing or malformed."""


@dataclass(frozen=True)
class Clip:
    path: Path
    emotion: int  # 0..7 in RAVDESS_LABELS order
    intensity: int  # 1 normal, 2 strong
    statement: int
    repetition: int
    actor: int  # 1..24


def parse_name(path: Path) -> Clip | None:
    parts = path.stem.split("-")
    if len(parts) != 7 or parts[0] != "03" or parts[1] != "01":
        return None
    try:
        _, _, e, i, s, r, a = (int(p) for p in parts)
    except ValueError:
        return None
    if not 1 <= e <= 8:
        return None
    return Clip(path, e - 1, i, s, r, a)


def list_clips(
    root: str | Path, actors: tuple[int, ...] | None = None, per_actor: int | None = None
) -> list[Clip]:
    """All clips (sorted by path); ``actors``/``per_actor`` select a small real slice (tests)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RavdessError(
            f"RAVDESS folder {root} does not exist; fix: pass the folder that holds "
            "Actor_01..Actor_24 (--ravdess for mlsan-train, mlsan-ablate and mlsan-engine; --data "
            "for mlsan-eval --dataset ravdess; see ../shared/data/README.md)"
        )
    clips = [c for p in sorted(root.glob("Actor_*/*")) if (c := parse_name(p)) is not None]
    if actors:
        clips = [c for c in clips if c.actor in actors]
    if per_actor:
        # Spread the slice over emotions: every k-th clip of each actor.
        out = []
        for a in sorted({c.actor for c in clips}):
            mine = [c for c in clips if c.actor == a]
            step = max(1, len(mine) // per_actor)
            out += mine[::step][:per_actor]
        clips = out
    if not clips:
        raise RavdessError(
            f"no RAVDESS clips (03-01-EE-II-SS-RR-AA.flac/.wav) under {root}; fix: check --data"
        )
    return clips


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz; other rates are an error (the data README gives the sox line)."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != 16_000:
        raise RavdessError(
            f"{path} is {sr} Hz; fix: convert to 16 kHz mono "
            "(sox IN -r 16000 -c 1 -b 16 OUT.flac remix - rate -v 16000)"
        )
    return x.mean(axis=1)


@dataclass(frozen=True)
class VoiceStore:
    kind: str
    x: np.ndarray  # (N, D) float32 (whisper: pooled with ``pooling``)
    labels: np.ndarray  # (N,) int, RAVDESS_LABELS order
    actors: np.ndarray  # (N,) int 1..24
    names: tuple[str, ...]
    seconds_per_clip: float  # mean extraction cost measured when the cache was written


def _cache_path(root: Path, clips: list[Clip], kind: str) -> Path:
    from mlsan.paths import user_cache_dir

    h = hashlib.sha256()
    h.update(f"{kind}:{FEATURE_VERSION}".encode())
    for c in clips:
        h.update(c.path.name.encode())
    return (
        user_cache_dir("features", "MLSAN_FEATURE_CACHE")
        / f"ravdess-{kind}-{h.hexdigest()[:16]}.npz"
    )


def _extract(kind: str, clips: list[Clip], log=print) -> dict:
    farfield = kind.endswith("-farfield")  # the same feature of a simulated far-field copy
    if farfield:
        from mlsan.farfield import clip_rng, degrade

        kind = kind.removesuffix("-farfield")
    if kind == "whisper":
        from mlsan.voice_features import WhisperVoiceEncoder, n_states

        enc = WhisperVoiceEncoder.from_registry()
        seqs, lens = [], []
    elif kind == "prosody":
        from mlsan.prosody import audio_features
    elif kind == "dvector":
        import warnings

        from mlsan.registry import default_registry

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder, preprocess_wav
        ve = VoiceEncoder(
            device="cpu", verbose=False, weights_fpath=default_registry().resolve("voice").path
        )
    else:
        raise ValueError(kind)
    rows, cost = [], 0.0
    for i, c in enumerate(clips):
        audio = load_audio(c.path)
        if farfield:
            audio = degrade(audio, clip_rng(c.path.name))
        t0 = time.perf_counter()
        if kind == "whisper":
            states = enc.encoder_states(audio)[: n_states(len(audio))]
            seqs.append(states.astype(np.float16))
            lens.append(len(audio))
        elif kind == "prosody":
            rows.append(audio_features(audio))
        else:
            rows.append(ve.embed_utterance(preprocess_wav(audio, source_sr=16_000)))
        cost += time.perf_counter() - t0
        if (i + 1) % 100 == 0:
            log(f"ravdess {kind}: {i + 1}/{len(clips)} ({cost / (i + 1) * 1000:.0f} ms/clip)")
    out = {"seconds_per_clip": np.float64(cost / len(clips))}
    if kind == "whisper":  # also for whisper-farfield (the suffix was removed above)
        out["states"] = np.concatenate(seqs)
        out["offsets"] = np.cumsum([0] + [len(s) for s in seqs])
        out["n_samples"] = np.asarray(lens)
    else:
        out["x"] = np.stack(rows).astype(np.float32)
    return out


def load_cache(
    root: str | Path, kind: str, log=print, actors=None, per_actor=None
) -> tuple[list[Clip], dict]:
    clips = list_clips(root, actors, per_actor)
    path = _cache_path(Path(root), clips, kind)
    full = list_clips(root)
    full_path = _cache_path(Path(root), full, kind)
    if (actors or per_actor) and full_path.exists() and not path.exists():
        # A slice of clips whose whole-set cache exists: take its rows (same features).
        data = dict(np.load(full_path))
        pos = {c.path.name: i for i, c in enumerate(full)}
        rows = [pos[c.path.name] for c in clips]
        if kind.startswith("whisper"):
            off = data["offsets"]
            seqs = [data["states"][off[i] : off[i + 1]] for i in rows]
            data["states"] = np.concatenate(seqs)
            data["offsets"] = np.cumsum([0] + [len(q) for q in seqs])
            data["n_samples"] = data["n_samples"][rows]
        else:
            data["x"] = data["x"][rows]
    elif path.exists():
        data = dict(np.load(path))
    else:
        log(f"extracting {kind} features for {len(clips)} RAVDESS clips -> {path}")
        data = _extract(kind, clips, log)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **data)
        tmp.replace(path)
    return clips, data


def voice_store(
    root: str | Path,
    kind: str = "whisper",
    pooling: str | None = None,
    log=print,
    actors=None,
    per_actor=None,
) -> VoiceStore:
    """Cached features of every clip; kinds may be joined with '+' (concatenated)."""
    parts = kind.split("+")
    xs, clips, cost = [], None, 0.0
    for k in parts:
        clips, data = load_cache(root, k, log, actors, per_actor)
        cost += float(data["seconds_per_clip"])
        if k.startswith("whisper"):
            from mlsan.voice_features import POOLING, pool_states

            off = data["offsets"]
            xs.append(
                np.stack(
                    [
                        pool_states(data["states"][off[i] : off[i + 1]], 10**9, pooling or POOLING)
                        for i in range(len(clips))
                    ]
                )
            )
        else:
            xs.append(data["x"])
    return VoiceStore(
        kind=kind,
        x=np.concatenate(xs, axis=1).astype(np.float32),
        labels=np.array([c.emotion for c in clips]),
        actors=np.array([c.actor for c in clips]),
        names=tuple(c.path.name for c in clips),
        seconds_per_clip=cost,
    )


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [(train - mu) / sd] + [(o - mu) / sd for o in others]


def logreg_scores(
    x: np.ndarray, y: np.ndarray, actors: np.ndarray, test_actors, c: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Plain logistic regression (standardised features) trained on every actor not in
    ``test_actors`` -> (y_true, y_pred) on ``test_actors``."""
    from sklearn.linear_model import LogisticRegression

    te = np.isin(actors, test_actors)
    xtr, xte = standardize(x[~te], x[te])
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(xtr, y[~te])
    return y[te], clf.predict(xte)


def wf1(y_true, y_pred) -> float:
    from sklearn.metrics import f1_score

    return round(100 * float(f1_score(y_true, y_pred, average="weighted")), 2)


def candidate_report(root, kinds, poolings, cs=(0.01, 0.1, 1.0), log=print) -> list[dict]:
    """Each (feature, pooling): C chosen on 4-fold CV over actors 1-20 (5 actors per fold),
    then test on actors 21-24 (trained on 1-20) and the 4-fold report (FOLDS4, same C)."""
    from sklearn.metrics import f1_score

    rows = []
    for kind in kinds:
        for pooling in poolings if "whisper" in kind else (None,):
            st = voice_store(root, kind, pooling, log)
            dev = st.actors <= 20
            cv = {}
            for c in cs:
                scores = [
                    wf1(*logreg_scores(st.x[dev], st.labels[dev], st.actors[dev], f, c))
                    for f in CV_FOLDS
                ]
                cv[c] = float(np.mean(scores))
            c = max(cv, key=cv.get)
            yt, yp = logreg_scores(st.x, st.labels, st.actors, TEST_ACTORS, c)
            folds = [wf1(*logreg_scores(st.x, st.labels, st.actors, f, c)) for f in FOLDS4]
            per_class = f1_score(yt, yp, average=None, labels=range(8))
            # Label mapping check: calm folded into neutral (7 classes) on the same predictions.
            fold = np.array([0, 0, 2, 3, 4, 5, 6, 7])
            row = {
                "feature": kind,
                "pooling": pooling,
                "dim": int(st.x.shape[1]),
                "C": c,
                "cv_actors_1_20": round(cv[c], 2),
                "test_actors_21_24": wf1(yt, yp),
                "folds4": folds,
                "folds4_mean": round(float(np.mean(folds)), 2),
                "folds4_std": round(float(np.std(folds)), 2),
                "calm_f1": round(100 * float(per_class[1]), 2),
                "neutral_f1": round(100 * float(per_class[0]), 2),
                "test_calm_folded_7class": wf1(fold[yt], fold[yp]),
                "extract_ms_per_clip": round(1000 * st.seconds_per_clip, 1),
            }
            log(json.dumps(row))
            rows.append(row)
    return rows


def fixed_rule_curve(
    x: np.ndarray,
    y: np.ndarray,
    actors: np.ndarray,
    test_actors,
    ks=(0, 1, 2, 4, 8, 16),
    c: float = 0.1,
    draws: int = 5,
) -> dict[int, float]:
    """The issue's fixed input-level rule: logistic regression where each training actor is
    centred on their own mean and each test clip on the mean of K OTHER clips of its actor
    (unlabelled); K = 0 is the plain model. Mean weighted F1 over ``draws`` random draws."""
    from sklearn.linear_model import LogisticRegression

    te = np.isin(actors, test_actors)
    out = {}
    for k in ks:
        xtr = x[~te].copy()
        if k > 0:
            for a in np.unique(actors[~te]):
                m = actors[~te] == a
                xtr[m] -= xtr[m].mean(0)
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        clf = LogisticRegression(C=c, max_iter=2000).fit((xtr - mu) / sd, y[~te])
        idx = np.flatnonzero(te)
        scores = []
        for d in range(draws if k > 0 else 1):
            rng = np.random.default_rng(1000 + d)
            xte = x[idx].copy()
            if k > 0:
                for j, i in enumerate(idx):
                    pool = np.flatnonzero((actors == actors[i]) & (np.arange(len(x)) != i))
                    xte[j] -= x[rng.choice(pool, size=k, replace=False)].mean(0)
            scores.append(wf1(y[idx], clf.predict((xte - mu) / sd)))
        out[k] = round(float(np.mean(scores)), 2)
    return out


def main() -> None:
    """python -m mlsan.ravdess extract DATA [kind ...] | candidates DATA [kind ...] |
    fixed-rule DATA [test|dev] | farfield DATA"""
    import sys

    cmd = sys.argv[1] if len(sys.argv) > 1 else "extract"
    root = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/ravdess"
    kinds = sys.argv[3:] or list(KINDS)
    if cmd == "extract":
        for kind in kinds:
            t = time.time()
            _, data = load_cache(root, kind)
            row = {"kind": kind, "s_per_clip": float(data["seconds_per_clip"])}
            print(json.dumps(row | {"wall_s": time.time() - t}), flush=True)
    elif cmd == "fixed-rule":  # fixed-rule DATA [test|dev]: the enrollment reference curve
        from mlsan.voice_features import POOLING

        which = sys.argv[3] if len(sys.argv) > 3 else "test"
        st = voice_store(root, "whisper", POOLING)
        if which == "test":
            curve = fixed_rule_curve(st.x, st.labels, st.actors, TEST_ACTORS)
        else:  # design only: train actors 1-16, score actors 17-20; test actors never used
            keep = st.actors <= 20
            curve = fixed_rule_curve(st.x[keep], st.labels[keep], st.actors[keep], (17, 18, 19, 20))
        print(json.dumps({"pooling": POOLING, "actors": which, "weighted_f1_by_k": curve}))
    elif cmd == "farfield":  # farfield DATA: studio-trained vs studio+far-trained, both tested
        print(json.dumps(farfield_report(root)))
    else:
        rows = candidate_report(root, kinds, POOLINGS_TRIED)
        print(json.dumps(rows))


def farfield_report(root, c: float = 0.1) -> list[dict]:
    """Logistic regression on the Whisper feature, trained on actors 1-20's studio clips or on
    studio + far-field copies, scored on actors 21-24's studio clips and their far-field copies
    (weighted F1, and how often each class is predicted: the far-field collapse shows there)."""
    from sklearn.linear_model import LogisticRegression

    studio, far = voice_store(root, "whisper"), voice_store(root, "whisper-farfield")
    te = np.isin(studio.actors, TEST_ACTORS)
    sets = {
        "studio": (studio.x[~te], studio.labels[~te]),
        "studio+farfield": (
            np.concatenate([studio.x[~te], far.x[~te]]),
            np.concatenate([studio.labels[~te], far.labels[~te]]),
        ),
    }
    rows = []
    for name, (x, y) in sets.items():
        mu, sd = x.mean(0), x.std(0) + 1e-6
        clf = LogisticRegression(C=c, max_iter=3000, random_state=0).fit((x - mu) / sd, y)
        for test_name, xt in (("studio", studio.x[te]), ("farfield", far.x[te])):
            pred = clf.predict((xt - mu) / sd)
            rows.append(
                {
                    "trained_on": name,
                    "tested_on": test_name,
                    "weighted_f1": wf1(studio.labels[te], pred),
                    "predicted": dict(
                        zip(RAVDESS_LABELS, np.bincount(pred, minlength=8).tolist(), strict=True)
                    ),
                }
            )
    return rows


POOLINGS_TRIED = ("mean", "meanstd", "meanstdmax", "meanstd_halves")


if __name__ == "__main__":
    main()

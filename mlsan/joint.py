"""Joint multimodal training of ML-SAN on MELD text, RAVDESS voice and FER2013 faces.

API::

    sources = load_sources(config, meld="../shared/data/meld", ravdess=..., face=npz or None)
    result = train_joint(config, sources, log=print)    # -> JointResult (best by dev score)
    ravdess_enroll_eval(model, config, sources.voice, TEST_ACTORS, k=8, draws=5)

Sources and what each sample holds (modality mask):

- MELD dialogues: text (+ causal context), speaker = the ``enroll`` row built from the speaker's
  own earlier utterances in the dialogue (text mean; no voice in MELD).
- RAVDESS clips: voice (pooled Whisper encoder states, ``mlsan.voice_features``) + text (the
  sentence the actor said: one of two neutral sentences, so the words carry no emotion and
  teach the gate to weigh voice against words) as single utterances. Speaker = the ``enroll``
  row from K *other* clips of the same actor, unlabelled, K drawn per sample at random from
  ``K_CHOICES`` every step, so the model learns to use a mean of 1, 2, ... 16 clips (and K = 0,
  the stranger).
- FER2013 faces (npz from ``python -m mlsan.fer2013 features``: embeddings, labels, usage):
  face only, no speaker (zeros, K = 0), single images.

Balancing: every step takes one batch of each source and the loss is the plain sum of the
per-source means (each with its own class weights, ``(1/freq)^0.5``), so each source weighs the
same per step whatever its size (MELD 10k utterances, RAVDESS 1.1k clips, FER2013 29k faces)
and none drowns the others; an epoch is one pass over MELD's training dialogues. The
speaker-consistency loss runs inside MELD (speaker = name within dialogue) and RAVDESS (actor);
FER2013 has no speaker. Model selection: mean of the present sources' dev weighted F1 (MELD dev;
RAVDESS actors ``DEV_ACTORS`` at K = 8, held out of training; FER2013 PublicTest). Actors 21-24
and FER2013 PrivateTest are never seen in training or selection.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlsan.config import MLSANConfig
from mlsan.ravdess import RAVDESS_TO_JOINT

DEV_ACTORS: tuple[int, ...] = (19, 20)
K_CHOICES: tuple[int, ...] = (0, 0, 1, 2, 3, 4, 6, 8, 12, 16)
RAVDESS_SENTENCES = {1: "Kids are talking by the door.", 2: "Dogs are sitting by the door."}
# FER2013 label order -> joint class index (angry, disgust, fear, happy, sad, surprise, neutral).
FER_TO_JOINT: tuple[int, ...] = (6, 5, 2, 4, 3, 1, 0)


@dataclass(frozen=True)
class VoiceSet:
    x: np.ndarray  # (N, Da) float32 pooled Whisper features
    text: np.ndarray  # (N, Dt) features of the sentence said
    labels: np.ndarray  # (N,) joint class index
    ravdess_labels: np.ndarray  # (N,) RAVDESS class index (8)
    actors: np.ndarray  # (N,)
    # (N,) 0 = the studio clip, 1 = its simulated far-field copy (mlsan.farfield); a clip's
    # enrollment comes from other clips of its actor in the same condition (the same room)
    condition: np.ndarray | None = None

    @property
    def conditions(self) -> tuple[tuple[int, str], ...]:
        """(condition, metric name prefix) of what this set holds: studio clips always, their
        far-field copies when loaded."""
        far = self.condition is not None and bool((self.condition == 1).any())
        return ((0, "ravdess"), (1, "ravdess_far")) if far else ((0, "ravdess"),)

    def where(self, actors, condition: int | None = 0) -> np.ndarray:
        """Indices of ``actors``' clips in ``condition`` (None: both)."""
        keep = np.isin(self.actors, actors)
        if condition is not None and self.condition is not None:
            keep &= self.condition == condition
        return np.flatnonzero(keep)


@dataclass(frozen=True)
class FaceSet:
    x: np.ndarray  # (N, Dv) float32 embeddings
    labels: np.ndarray  # (N,) joint class index
    usage: np.ndarray  # (N,) str Training / PublicTest / PrivateTest
    source: str


@dataclass(frozen=True)
class Sources:
    meld_train: list | None
    meld_dev: list | None
    voice: VoiceSet | None
    face: FaceSet | None


def load_voice(
    root: str | Path,
    config: MLSANConfig,
    text_encoder=None,
    log=print,
    actors=None,
    per_actor=None,
    farfield: bool = False,
) -> VoiceSet:
    """RAVDESS clips with their voice features (cached) and sentence text features;
    ``actors``/``per_actor``: a small real slice (tests); ``farfield``: append every clip's
    simulated far-field copy (``condition`` 1, same label and actor)."""
    from mlsan.features import TextEncoder
    from mlsan.ravdess import list_clips, voice_store

    store = voice_store(root, "whisper", log=log, actors=actors, per_actor=per_actor)
    if store.x.shape[1] != config.audio_dim:
        raise ValueError(f"voice features are {store.x.shape[1]}-d, config {config.audio_dim}")
    clips = list_clips(root, actors, per_actor)
    enc = text_encoder or TextEncoder(config.text_feature)
    sent = {k: enc.encode([v])[0] for k, v in RAVDESS_SENTENCES.items()}
    text = np.stack([sent[c.statement] for c in clips]).astype(np.float32)
    voice = VoiceSet(
        store.x,
        text,
        np.asarray(RAVDESS_TO_JOINT)[store.labels],
        store.labels,
        store.actors,
        np.zeros(len(store.x), int),
    )
    if not farfield:
        return voice
    far = voice_store(root, "whisper-farfield", log=log, actors=actors, per_actor=per_actor)
    if far.names != store.names:  # the same clips in the same order, or the pairing is wrong
        from mlsan.ravdess import RavdessError

        raise RavdessError(
            f"the far-field feature cache of {root} does not hold the same clips as the studio "
            "one; fix: delete ravdess-whisper-farfield-*.npz in the feature cache "
            "($MLSAN_FEATURE_CACHE or ~/.cache/mlsan-live/features) and rerun"
        )
    twice = [np.concatenate([a, a]) for a in (voice.text, voice.labels, voice.ravdess_labels)]
    return VoiceSet(
        np.concatenate([voice.x, far.x]),
        *twice,
        np.concatenate([voice.actors, voice.actors]),
        np.repeat([0, 1], len(store.x)),
    )


def load_face(path: str | Path) -> FaceSet:
    data = np.load(path, allow_pickle=False)
    labels = np.asarray(data["labels"]).astype(int)
    names = [str(n) for n in data["label_names"]] if "label_names" in data else None
    if names is not None and [n.lower() for n in names][:7] != [
        "angry",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
        "neutral",
    ]:
        raise ValueError(f"unexpected FER2013 label order {names}")
    return FaceSet(
        np.asarray(data["embeddings"], np.float32),
        np.asarray(FER_TO_JOINT)[labels],
        np.asarray(data["usage"]).astype(str),
        str(path),
    )


def enroll_rows(
    voice: VoiceSet, idx: np.ndarray, ks: np.ndarray, rng: np.random.Generator, config
) -> np.ndarray:
    """Speaker rows for clips ``idx``: mean voice feature of ``ks[i]`` OTHER clips of the same
    actor in the same condition (never the clip itself, nor its own studio / far-field twin),
    unlabelled; text part empty (K_text = 0)."""
    from mlsan.speaker import enroll_row

    out = np.zeros((len(idx), config.speaker_dim), np.float32)
    for j, (i, k) in enumerate(zip(idx, ks, strict=True)):
        if k <= 0:
            continue
        same = voice.actors == voice.actors[i]
        if voice.condition is not None:
            same &= voice.condition == voice.condition[i]
        pool = np.flatnonzero(same & (np.arange(len(voice.x)) != i))
        pick = rng.choice(pool, size=min(int(k), len(pool)), replace=False)
        out[j] = enroll_row(
            voice.x[pick].mean(0), len(pick), None, 0, config.audio_dim, config.text_dim
        )
    return out


def voice_batch(voice: VoiceSet, idx, ks, rng, config, with_text: bool = True):
    """Single-utterance model inputs [B,1,...] for RAVDESS clips ``idx``."""
    b = len(idx)
    text = voice.text[idx] if with_text else np.zeros((b, config.text_dim), np.float32)
    mask = np.zeros((b, 3), np.float32)
    mask[:, 0] = 1.0 if with_text else 0.0
    mask[:, 1] = 1.0
    speaker = enroll_rows(voice, idx, ks, rng, config)
    if not config.use_speaker:
        speaker = np.zeros_like(speaker)
    t = torch.from_numpy
    return (
        t(text[:, None].astype(np.float32)),
        t(voice.x[idx][:, None]),
        torch.zeros(b, 1, config.visual_dim),
        t(mask[:, None]),
        t(speaker[:, None]),
        torch.ones(b, 1),
    )


def face_batch(face: FaceSet, idx, config):
    b = len(idx)
    mask = np.zeros((b, 1, 3), np.float32)
    mask[..., 2] = 1.0
    return (
        torch.zeros(b, 1, config.text_dim),
        torch.zeros(b, 1, config.audio_dim),
        torch.from_numpy(face.x[idx][:, None]),
        torch.from_numpy(mask),
        torch.zeros(b, 1, config.speaker_dim),
        torch.ones(b, 1),
    )


def predict_voice(model, voice: VoiceSet, idx, k: int, seed: int, config, batch: int = 256):
    """Joint-class predictions and gates for clips ``idx`` with K-clip enrollment (one draw)."""
    rng = np.random.default_rng(seed)
    preds, gates, probs = [], [], []
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            part = idx[s : s + batch]
            inputs = voice_batch(voice, part, np.full(len(part), k), rng, config)
            logits, gate = model(*inputs)
            probs.append(torch.softmax(logits[:, 0], -1).numpy())
            preds.append(logits[:, 0].argmax(-1).numpy())
            gates.append(gate[:, 0].numpy())
    return np.concatenate(preds), np.concatenate(gates), np.concatenate(probs)


def joint_to_ravdess(pred: np.ndarray) -> np.ndarray:
    inv = np.zeros(len(RAVDESS_TO_JOINT), int)
    for r, j in enumerate(RAVDESS_TO_JOINT):
        inv[j] = r
    return inv[pred]


def ravdess_enroll_eval(
    model,
    config,
    voice: VoiceSet,
    actors: Sequence[int],
    k: int,
    draws: int = 5,
    condition: int = 0,
) -> dict:
    """8-class weighted F1 on ``actors``' clips in ``condition`` (0 studio, 1 far-field copy)
    with K-clip enrollment; mean ± std over ``draws``."""
    from mlsan.evaluate import compute_metrics
    from mlsan.ravdess import RAVDESS_LABELS

    idx = voice.where(actors, condition)
    runs = []
    gates = []
    for d in range(draws if k > 0 else 1):
        pred, gate, _ = predict_voice(model, voice, idx, k, 1000 + d, config)
        runs.append(
            compute_metrics(voice.ravdess_labels[idx], joint_to_ravdess(pred), RAVDESS_LABELS)
        )
        gates.append(gate.mean(0))
    out = dict(runs[0])
    for key in ("weighted_f1", "accuracy", "macro_f1"):
        vals = [r[key] for r in runs]
        out[key] = round(float(np.mean(vals)), 2)
        out[key + "_std"] = round(float(np.std(vals)), 2)
    out["per_class_f1"] = {
        n: round(float(np.mean([r["per_class_f1"][n] for r in runs])), 2) for n in RAVDESS_LABELS
    }
    out["draws"] = len(runs)
    out["mean_gate"] = dict(
        zip(config.modalities, np.mean(gates, 0).round(4).tolist(), strict=True)
    )
    return out


def face_eval(model, config, face: FaceSet, usage: str) -> dict:
    from mlsan.evaluate import compute_metrics

    idx = np.flatnonzero(face.usage == usage)
    model.eval()
    preds = []
    with torch.inference_mode():
        for s in range(0, len(idx), 1024):
            logits, _ = model(*face_batch(face, idx[s : s + 1024], config))
            preds.append(logits[:, 0].argmax(-1).numpy())
    pred = np.concatenate(preds)
    fer_names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    inv = {j: f for f, j in enumerate(FER_TO_JOINT)}
    y = np.array([inv[j] for j in face.labels[idx]])
    p = np.array([inv.get(int(j), 6) for j in pred])  # calm (no FER class) counts as neutral
    return compute_metrics(y, p, fer_names)


def meld_eval(model, config, dialogues) -> dict:
    from mlsan.evaluate import compute_metrics, predict

    y, p, g = predict(model, dialogues, config)
    p = fold_calm(p, config.label_names)
    out = compute_metrics(y, p, config.label_names[:7])
    out["mean_gate"] = dict(zip(config.modalities, g.mean(0).round(4).tolist(), strict=True))
    return out


def fold_calm(pred: np.ndarray, label_names) -> np.ndarray:
    """MELD has no calm: a calm prediction counts as neutral."""
    if "calm" in label_names:
        pred = np.where(pred == list(label_names).index("calm"), 0, pred)
    return pred


@dataclass(frozen=True)
class JointResult:
    model: torch.nn.Module
    config: MLSANConfig
    best_epoch: int
    epochs_run: int
    dev: dict
    seconds: float
    history: tuple[dict, ...]


def set_feature_norm(model, sources: Sources, train_actors) -> None:
    """Standardisation buffers from the training data only (voice: training actors)."""
    with torch.no_grad():
        if sources.voice is not None and hasattr(model, "audio_mu"):
            x = sources.voice.x[sources.voice.where(train_actors, None)]
            model.audio_mu.copy_(torch.from_numpy(x.mean(0)))
            model.audio_sd.copy_(torch.from_numpy(x.std(0) + 1e-3))
        if sources.face is not None and hasattr(model, "visual_mu"):
            x = sources.face.x[sources.face.usage == "Training"]
            model.visual_mu.copy_(torch.from_numpy(x.mean(0)))
            model.visual_sd.copy_(torch.from_numpy(x.std(0) + 1e-3))


def dev_scores(model, config, sources: Sources, dev_actors) -> dict:
    out = {}
    if sources.meld_dev:
        out["meld"] = meld_eval(model, config, sources.meld_dev)["weighted_f1"]
    voice = sources.voice
    if voice is not None and len(dev_actors):
        for cond, tag in voice.conditions:
            for k, draws in ((8, 2), (0, 1)):
                out[f"{tag}_k{k}"] = ravdess_enroll_eval(
                    model, config, voice, dev_actors, k, draws, cond
                )["weighted_f1"]
    if sources.face is not None:
        out["fer2013"] = face_eval(model, config, sources.face, "PublicTest")["weighted_f1"]
    vals = [out[k] for k in ("meld", "fer2013") if k in out]
    if "ravdess_k8" in out:  # studio and (when trained on it) far-field weigh the same
        tags = ["ravdess"] + (["ravdess_far"] if "ravdess_far_k8" in out else [])
        vals.append(float(np.mean([(out[f"{t}_k8"] + out[f"{t}_k0"]) / 2 for t in tags])))
    out["score"] = round(float(np.mean(vals)), 2)
    return out


def train_joint(
    config: MLSANConfig,
    sources: Sources,
    train_actors: Sequence[int] = tuple(a for a in range(1, 21) if a not in DEV_ACTORS),
    dev_actors: Sequence[int] = DEV_ACTORS,
    steps_per_epoch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> JointResult:
    from mlsan.data import make_batch
    from mlsan.losses import class_weights, classification_loss, speaker_consistency_loss
    from mlsan.model import build_model
    from mlsan.train import _length_bucketed_batches, seed_everything

    config = config.with_(ensemble_members=1)  # members are trained one at a time
    seed_everything(config.seed)
    model = build_model(config)
    set_feature_norm(model, sources, train_actors)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    c = config.num_classes
    w = {}
    meld = sources.meld_train or []
    if meld:
        w["meld"] = class_weights(
            np.concatenate([d.labels for d in meld]), c, config.class_weight_power
        )
    v_idx = f_idx = None
    if sources.voice is not None:
        v_idx = sources.voice.where(train_actors, None)  # studio clips and far-field copies
        w["voice"] = class_weights(sources.voice.labels[v_idx], c, config.class_weight_power)
    if sources.face is not None:
        f_idx = np.flatnonzero(sources.face.usage == "Training")
        w["face"] = class_weights(sources.face.labels[f_idx], c, config.class_weight_power)
    steps = steps_per_epoch or (
        len(_length_bucketed_batches(meld, config.batch_dialogues, rng)) if meld else 40
    )
    group_map: dict[str, int] = {}
    row_cache: dict[str, np.ndarray] = {}
    best, best_epoch, best_state, best_dev = -1.0, 0, None, {}
    history = []
    started = time.perf_counter()
    v_order = f_order = np.zeros(0, int)
    meld_batches: list = []
    epoch = 0
    use_reg = config.use_reg and config.use_speaker and config.reg_weight > 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        total = 0.0
        for _ in range(steps):
            loss = torch.zeros(())
            if meld:
                if not meld_batches:
                    meld_batches = _length_bucketed_batches(meld, config.batch_dialogues, rng)
                chunk = meld_batches.pop()
                batch = make_batch([meld[i] for i in chunk], config, None, group_map, row_cache)
                logits, _, latent = model.forward_with_latent(*batch.model_inputs())
                real = batch.labels >= 0
                loss = loss + config.source_weights[0] * classification_loss(
                    logits[real], batch.labels[real], config, w["meld"]
                )
                if use_reg:
                    loss = loss + config.reg_weight * speaker_consistency_loss(
                        latent[real],
                        batch.speaker_group[real],
                        batch.labels[real],
                        config.reg_temperature,
                    )
            if v_idx is not None:
                if len(v_order) < 64:
                    v_order = rng.permutation(v_idx)
                idx, v_order = v_order[:64], v_order[64:]
                ks = rng.choice(K_CHOICES, size=len(idx))
                inputs = voice_batch(sources.voice, idx, ks, rng, config)
                logits, _, latent = model.forward_with_latent(*inputs)
                y = torch.from_numpy(sources.voice.labels[idx])
                loss = loss + config.source_weights[1] * classification_loss(
                    logits[:, 0], y, config, w["voice"]
                )
                if use_reg:
                    loss = loss + config.reg_weight * speaker_consistency_loss(
                        latent[:, 0],
                        torch.from_numpy(sources.voice.actors[idx]),
                        y,
                        config.reg_temperature,
                    )
            if f_idx is not None:
                if len(f_order) < 128:
                    f_order = rng.permutation(f_idx)
                idx, f_order = f_order[:128], f_order[128:]
                logits, _ = model(*face_batch(sources.face, idx, config))
                y = torch.from_numpy(sources.face.labels[idx])
                loss = loss + config.source_weights[2] * classification_loss(
                    logits[:, 0], y, config, w["face"]
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach())
        dev = dev_scores(model, config, sources, dev_actors)
        history.append({"epoch": epoch, "loss": round(total / steps, 4)} | dev)
        if log:
            log(f"epoch {epoch}: loss {total / steps:.4f} dev {dev}")
        if dev["score"] > best:
            best, best_epoch, best_dev = dev["score"], epoch, dev
            best_state = copy.deepcopy(model.state_dict())
        if epoch - best_epoch >= config.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return JointResult(
        model, config, best_epoch, epoch, best_dev, time.perf_counter() - started, tuple(history)
    )


def load_sources(
    config: MLSANConfig,
    meld: str | Path | None,
    ravdess: str | Path | None,
    face: str | Path | None,
    cache_dir=None,
    limit_dialogues: int | None = None,
    log=print,
    ravdess_actors=None,
    ravdess_per_actor=None,
    farfield: bool = False,
) -> Sources:
    from mlsan.data import load_meld
    from mlsan.features import TextEncoder

    enc = TextEncoder(config.text_feature) if (meld or ravdess) else None
    mt = md = None
    if meld:
        mt = load_meld(meld, "train", config, enc, None, cache_dir, False, limit_dialogues)
        md = load_meld(meld, "dev", config, enc, None, cache_dir, False, limit_dialogues)
    voice = (
        load_voice(ravdess, config, enc, log, ravdess_actors, ravdess_per_actor, farfield)
        if ravdess
        else None
    )
    faces = load_face(face) if face else None
    return Sources(mt, md, voice, faces)

"""Train ML-SAN: ``mlsan-train`` (``python -m mlsan.train``).

Seeds everything, trains on MELD train with AdamW, evaluates weighted F1 on dev after every
epoch, keeps the best epoch's weights and stops early after ``patience`` epochs without a
better dev score. Writes a self-describing checkpoint (``mlsan.checkpoint``) whose meta says
which data, protocol, seed and metrics produced it.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlsan.checkpoint import save_checkpoint
from mlsan.config import MLSANConfig
from mlsan.data import DialogueArrays, make_batch, speaker_id_map
from mlsan.errors import UserFacingError
from mlsan.evaluate import compute_metrics, predict
from mlsan.features import text_dim
from mlsan.losses import class_weights, classification_loss, speaker_consistency_loss


@dataclass(frozen=True)
class TrainResult:
    """The best model (by dev weighted F1) and how training went."""

    model: torch.nn.Module
    config: MLSANConfig
    best_dev_weighted_f1: float
    best_epoch: int
    epochs_run: int
    seconds_per_epoch: float
    speaker_ids: dict[str, int]
    history: tuple[dict, ...]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _length_bucketed_batches(
    dialogues: Sequence[DialogueArrays], size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of dialogues of similar length (less padding), in shuffled order."""
    lengths = np.array([len(d) for d in dialogues]) + rng.uniform(0, 2, len(dialogues))
    order = np.argsort(lengths)
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def train_model(
    config: MLSANConfig,
    train: Sequence[DialogueArrays],
    dev: Sequence[DialogueArrays],
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config`` on ``train`` with early stopping on ``dev`` weighted F1."""
    from mlsan.model import build_model

    seed_everything(config.seed)
    id_map: dict[str, int] = {}
    if config.speaker_source == "id":
        id_map = speaker_id_map(train, min_count=5)
        config = config.with_(num_speaker_ids=len(id_map) + 1)
    model = build_model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    all_labels = np.concatenate([d.labels for d in train])
    weights = class_weights(all_labels, config.num_classes, config.class_weight_power)
    ema = None
    if config.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    group_map: dict[str, int] = {}
    row_cache: dict[str, np.ndarray] = {}
    dev_cache: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(config.seed)
    best_f1, best_epoch, best_state = -1.0, 0, None
    history: list[dict] = []
    epoch_seconds: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.max_epochs, desc="mlsan-train", unit="epoch", file=sys.stderr)
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        total, steps = 0.0, 0
        for chunk in _length_bucketed_batches(train, config.batch_dialogues, rng):
            batch = make_batch(
                [train[i] for i in chunk],
                config,
                id_map,
                group_map,
                row_cache,
            )
            logits, _, latent = model.forward_with_latent(*batch.model_inputs())
            real = batch.labels >= 0
            loss = classification_loss(logits[real], batch.labels[real], config, weights)
            if config.use_reg and config.reg_weight > 0:
                loss = loss + config.reg_weight * speaker_consistency_loss(
                    latent[real],
                    batch.speaker_group[real],
                    batch.labels[real],
                    config.reg_temperature,
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            total += float(loss.detach())
            steps += 1
        epoch_seconds.append(time.perf_counter() - started)
        scored = model if ema is None else ema.module
        y_true, y_pred, _ = predict(scored, dev, config, id_map, row_cache=dev_cache)
        dev_f1 = compute_metrics(y_true, y_pred, config.label_names)["weighted_f1"]
        history.append({"epoch": epoch, "loss": total / max(steps, 1), "dev_weighted_f1": dev_f1})
        if dev_f1 > best_f1:
            best_f1, best_epoch = dev_f1, epoch
            best_state = copy.deepcopy(scored.state_dict())
        if bar is not None:
            bar.set_postfix(
                loss=f"{total / max(steps, 1):.3f}",
                dev_wf1=f"{dev_f1:.2f}",
                best=f"{best_f1:.2f}@{best_epoch}",
            )
            bar.update(1)
        if log is not None:
            log(f"epoch {epoch}: loss {total / max(steps, 1):.4f} dev weighted F1 {dev_f1:.2f}")
        if epoch - best_epoch >= config.patience:
            break
    if bar is not None:
        bar.close()
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        config=config,
        best_dev_weighted_f1=best_f1,
        best_epoch=best_epoch,
        epochs_run=epoch,
        seconds_per_epoch=float(np.mean(epoch_seconds)),
        speaker_ids=id_map,
        history=tuple(history),
    )


def config_from_args(args: argparse.Namespace) -> MLSANConfig:
    """The MLSANConfig that the ablation switches and options describe."""
    base = MLSANConfig()
    speaker_source = "none" if args.no_speaker else args.speaker_source
    tdim = text_dim(args.text_feature)
    if speaker_source == "history":
        sdim = tdim + 1 + args.speaker_identity_dim
    elif speaker_source == "voice":
        sdim = 256
    elif speaker_source == "id":
        sdim = 64
    else:
        sdim = base.speaker_dim
    return base.with_(
        text_feature=args.text_feature,
        text_dim=tdim,
        speaker_source=speaker_source,
        speaker_identity_dim=args.speaker_identity_dim if speaker_source == "history" else 0,
        speaker_dim=sdim,
        context_mode=args.context,
        use_film=not args.no_film,
        use_film_text=args.film_text,
        use_gate=not args.no_gate,
        use_reg=not args.no_reg,
        use_speaker=not args.no_speaker,
        use_context=not args.no_context,
        loss=args.loss,
        seed=args.seed,
        max_epochs=args.epochs,
        patience=args.patience,
        hidden=args.hidden,
        lr=args.lr,
        reg_weight=args.reg_weight,
        dropout=args.dropout,
        context_key_dropout=args.context_key_dropout,
        ema_decay=args.ema,
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    d = MLSANConfig()
    parser.add_argument(
        "--data",
        default=None,
        help="MELD CSV folder (*_sent_emo.csv); 'none' trains without MELD (with --ravdess "
        "or --face); not needed with --erc-pickle",
    )
    parser.add_argument("--out", default=None, help="checkpoint path to write (.pt)")
    parser.add_argument(
        "--features",
        default=None,
        help="folder with {train,dev,test}.npz audio/visual feature stores",
    )
    parser.add_argument("--cache-dir", default=None, help="text feature cache folder")
    parser.add_argument("--text-feature", default=d.text_feature, choices=["minilm", "minilm-rich"])
    parser.add_argument(
        "--speaker-source", default=d.speaker_source, choices=["history", "id", "voice", "none"]
    )
    parser.add_argument(
        "--speaker-identity-dim",
        type=int,
        default=d.speaker_identity_dim,
        help="history speaker source: append a per-speaker random identity code of this size",
    )
    parser.add_argument("--context", default=d.context_mode, choices=["causal", "bidirectional"])
    parser.add_argument("--no-film", action="store_true", help="ablate input-level FiLM")
    parser.add_argument("--film-text", action="store_true", help="FiLM also calibrates text")
    parser.add_argument("--no-gate", action="store_true", help="ablate modality gating")
    parser.add_argument("--no-reg", action="store_true", help="ablate speaker-consistency loss")
    parser.add_argument("--no-speaker", action="store_true", help="no speaker information")
    parser.add_argument("--no-context", action="store_true", help="no dialogue context")
    parser.add_argument(
        "--erc-pickle",
        default=None,
        help="train/test on an ERC feature pickle (MELD/IEMOCAP *_features_raw.pkl) instead of "
        "the MELD CSVs; its last 10%% of training dialogues are the dev split",
    )
    parser.add_argument("--loss", default=d.loss, choices=["ce", "balanced", "focal"])
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--epochs", type=int, default=d.max_epochs)
    parser.add_argument("--patience", type=int, default=d.patience)
    parser.add_argument("--hidden", type=int, default=d.hidden)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--reg-weight", type=float, default=d.reg_weight)
    parser.add_argument("--dropout", type=float, default=d.dropout)
    parser.add_argument("--context-key-dropout", type=float, default=d.context_key_dropout)
    parser.add_argument("--ema", type=float, default=d.ema_decay, help="weight EMA decay (0=off)")
    parser.add_argument(
        "--ravdess", default=None, help="multimodal: also train on RAVDESS voice (folder)"
    )
    parser.add_argument(
        "--face", default=None, help="multimodal: also train on FER2013 face embeddings (.npz)"
    )
    parser.add_argument(
        "--gate-no-speaker", action="store_true", help="ablate the speaker input of the gate"
    )
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="joint training")
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="joint: train N members (seeds seed..seed+N-1) and ship their mean as one model",
    )
    parser.add_argument(
        "--source-weights",
        type=float,
        nargs=3,
        default=None,
        metavar=("MELD", "RAVDESS", "FER"),
        help="joint: weight of each source's mean loss per step (default 1 1 1)",
    )
    parser.add_argument(
        "--ravdess-actors",
        type=lambda v: tuple(int(a) for a in v.split(",")),
        default=None,
        help="joint: only these RAVDESS actors (a small real slice, e.g. 1,2,19,21)",
    )
    parser.add_argument(
        "--ravdess-per-actor", type=int, default=None, help="joint: at most N clips per actor"
    )
    parser.add_argument(
        "--limit-dialogues", type=int, default=None, help="joint: first N MELD dialogues only"
    )
    parser.add_argument(
        "--farfield",
        action="store_true",
        help="joint: also train on a simulated far-field copy of every RAVDESS training clip "
        "(mlsan.farfield: reverb, noise, level, low-pass)",
    )


def require_data(args) -> None:
    """No default folder outside the package: MELD must be named (or 'none', or a pickle);
    far-field copies need the RAVDESS clips they copy; an ensemble is of joint models."""
    if args.data is None and not args.erc_pickle:
        raise UserFacingError(
            "no training data given; fix: pass --data MELD_DIR (the folder with "
            "*_sent_emo.csv), or --erc-pickle FILE, or --data none with --ravdess/--face"
        )
    if getattr(args, "farfield", False) and not getattr(args, "ravdess", None):
        raise UserFacingError(
            "--farfield makes far-field copies of RAVDESS clips; fix: also pass --ravdess DIR"
        )
    ensemble = getattr(args, "ensemble", 1)
    if ensemble < 1:
        raise UserFacingError(f"--ensemble {ensemble}: fix: pass 1 (one model) or more")
    if ensemble > 1 and not (getattr(args, "ravdess", None) or getattr(args, "face", None)):
        raise UserFacingError(
            f"--ensemble {ensemble} trains joint (voice/face) models; fix: also pass --ravdess "
            "DIR or --face NPZ, or drop --ensemble"
        )


def load_splits(args, config, splits=("train", "dev", "test")):
    """MELD splits as DialogueArrays for ``config`` (text cached; optional feature stores)."""
    from mlsan.data import load_meld
    from mlsan.feature_store import read_feature_store
    from mlsan.features import TextEncoder

    encoder = None
    out = {}
    for split in splits:
        store = None
        if args.features:
            path = Path(args.features) / f"{split}.npz"
            store = read_feature_store(path) if path.is_file() else None
        if encoder is None:
            encoder = TextEncoder()
        out[split] = load_meld(args.data, split, config, encoder, store, args.cache_dir, True)
    return out


def erc_pickle_splits(args, config: MLSANConfig) -> tuple[MLSANConfig, dict]:
    """Config adapted to the pickle's feature sizes/labels, and its train/dev/test dialogues."""
    from mlsan.erc_pickle import erc_dialogue_arrays, read_erc_pickle

    data = read_erc_pickle(args.erc_pickle)
    dims = data.dims()
    config = config.with_(
        text_feature=f"erc-pickle:{data.dataset}",
        text_dim=dims["text"],
        audio_dim=dims["audio"],
        visual_dim=max(dims["visual"], 1),
        label_names=data.label_names,
        speaker_dim=(
            dims["text"] + 1 + config.speaker_identity_dim
            if config.speaker_source == "history"
            else config.speaker_dim
        ),
    )
    n_dev = max(1, len(data.train_ids) // 10)
    splits = {
        "train": erc_dialogue_arrays(data, data.train_ids[:-n_dev]),
        "dev": erc_dialogue_arrays(data, data.train_ids[-n_dev:]),
        "test": erc_dialogue_arrays(data, data.test_ids),
    }
    return config, splits


def joint_config(args: argparse.Namespace, config: MLSANConfig) -> MLSANConfig:
    """The multimodal config: enroll speaker tensor, pooled-Whisper voice, face embeddings."""
    from mlsan.ravdess import JOINT_LABELS
    from mlsan.speaker import enroll_dim
    from mlsan.voice_features import VOICE_FEATURE, feature_dim

    audio_dim = feature_dim()
    visual_dim = config.visual_dim
    if args.face:
        try:
            with np.load(args.face) as data:
                visual_dim = int(data["embeddings"].shape[1])  # width read from the data
        except (OSError, KeyError, ValueError) as exc:
            raise UserFacingError(
                f"cannot read face embeddings {args.face} ({type(exc).__name__}); fix: pass "
                "--face with the face encoder's npz (embeddings, labels, usage)"
            ) from None
    modalities = [
        m for m, on in (("text", True), ("audio", args.ravdess), ("visual", args.face)) if on
    ]
    # Joint-mode defaults chosen on RAVDESS actors 15-20 (train 1-14; never 21-24) and MELD dev:
    # dropout 0.5 on the voice input (K=0 dev wF1 71 vs 65 at 0.1; dropout 0.5 everywhere cost
    # MELD dev ~2 points) and the direct shift starting from "centre on the speaker's mean"
    # (alpha = 1; from 0 it barely moved in the epochs we train); rel(K) starting at
    # sigmoid(2 log(1+K) - 3) (0.15 at K=1, 0.8 at K=8): with rel(1) = 0.4 one enrollment clip
    # made dev actors 15-20 worse than none (mean of 2 seeds 66.8 vs 68.3 at K=0; now 68.4 / 67.8).
    return config.with_(
        audio_input_dropout=0.5,
        direct_init=1.0,
        direct_rel_init=(2.0, -3.0),
        source_weights=tuple(args.source_weights or config.source_weights),
        speaker_source="none" if args.no_speaker else "enroll",
        speaker_dim=enroll_dim(audio_dim, config.text_dim),
        audio_dim=audio_dim,
        audio_feature=VOICE_FEATURE,
        visual_dim=visual_dim,
        visual_feature="face-expression" if args.face else config.visual_feature,
        feature_norm=True,
        film_direct=not args.no_film,
        use_gate_speaker=not args.gate_no_speaker,
        use_reg=config.use_reg and not args.no_speaker,
        label_names=JOINT_LABELS,
        trained_modalities=tuple(modalities),
    )


def save_joint(out, result, args, test: dict, command: str) -> str:
    """Write a joint checkpoint + JSON sidecar (data, licences, protocol, metrics, command)."""
    config = result.config
    meld = None if args.data in ("", "none") else args.data
    data = []
    if meld:
        data.append(
            "MELD text (declare-lab/MELD CSVs, commit 2d2011b; GPL-3.0): train to fit, dev "
            "for selection"
        )
    if args.ravdess:
        data.append(
            "RAVDESS speech (Livingstone & Russo 2018; CC BY-NC-SA 4.0; acted): actors 1-18 to "
            "fit, 19-20 for selection, 21-24 never seen (test)"
            + (
                "; plus a simulated far-field copy of every clip (mlsan.farfield), same split"
                if args.farfield
                else ""
            )
        )
    if args.face:
        data.append(
            f"FER2013 face embeddings {args.face} (research use only): Training to fit, "
            "PublicTest for selection, PrivateTest reported"
        )
    licence = "GPL-3.0 (MELD)" if meld else ""
    if args.ravdess:
        licence += "; NON-COMMERCIAL: CC BY-NC-SA 4.0 (RAVDESS)"
    if args.face:
        licence += "; research use only (FER2013)"
    meta = {
        "data": data,
        "licence": licence.strip("; "),
        "protocol": "joint training (mlsan.joint): one batch per source per step, loss = "
        f"weighted sum of per-source means {list(config.source_weights)}; voice = pooled "
        f"Whisper tiny.en int8 encoder states ({config.audio_feature}); speaker = enroll (K "
        f"other unlabelled clips, random K per sample); {config.context_mode} context on MELD",
        "seed": config.seed,
        "best_epoch": result.best_epoch,
        "dev": result.dev,
        "test_metrics": test,
        "command": command,
    }
    if config.ensemble_members > 1:
        meta["ensemble"] = (
            f"{config.ensemble_members} members, seeds {config.seed}.."
            f"{config.seed + config.ensemble_members - 1}, each early-stopped on dev; the "
            "prediction is the mean of their class probabilities (trust: mean of their gates)"
        )
    if args.face:
        with np.load(args.face) as face:  # which face encoder made the training embeddings
            if "encoder_sha256" in face:
                meta["face_encoder_sha256"] = str(face["encoder_sha256"])
    digest = save_checkpoint(out, result.model, config, meta)
    Path(out).with_suffix(".json").write_text(
        json.dumps(meta | {"sha256": digest}, indent=2) + "\n"
    )
    return digest


def train_ensemble(first, config, sources, args, log):
    """``args.ensemble`` members: ``first`` (seed ``config.seed``) plus seeds seed+1, ...
    trained alike, each with its own early stopping on dev; the checkpoint holds them all
    and predicts with their mean probability (``MLSANEnsemble``); dev scored on the whole."""
    from dataclasses import replace

    from mlsan.joint import DEV_ACTORS, dev_scores, train_joint
    from mlsan.model import MLSANEnsemble

    results = [first]
    for i in range(1, args.ensemble):
        member = config.with_(seed=config.seed + i)
        results.append(train_joint(member, sources, steps_per_epoch=args.steps_per_epoch, log=log))
    model = MLSANEnsemble.from_members([r.model for r in results])
    dev = dev_scores(model, model.config, sources, DEV_ACTORS)
    dev["members"] = [{"seed": r.config.seed, "best_epoch": r.best_epoch} | r.dev for r in results]
    return replace(
        first,
        model=model,
        config=model.config,
        dev=dev,
        seconds=sum(r.seconds for r in results),
        epochs_run=sum(r.epochs_run for r in results),
    )


def run_joint(args: argparse.Namespace) -> dict:
    """Joint MELD + RAVDESS (+ FER2013) training (mlsan.joint); test on the held-out parts."""
    from mlsan.joint import (
        face_eval,
        load_sources,
        meld_eval,
        ravdess_enroll_eval,
        train_joint,
    )
    from mlsan.ravdess import TEST_ACTORS

    torch.set_num_threads(1)
    config = joint_config(args, config_from_args(args))
    meld = None if args.data in ("", "none") else args.data
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    sources = load_sources(
        config,
        meld,
        args.ravdess,
        args.face,
        args.cache_dir,
        args.limit_dialogues,
        log=log or (lambda m: None),
        ravdess_actors=args.ravdess_actors,
        ravdess_per_actor=args.ravdess_per_actor,
        farfield=args.farfield,
    )
    result = train_joint(config, sources, steps_per_epoch=args.steps_per_epoch, log=log)
    if args.ensemble > 1:
        result = train_ensemble(result, config, sources, args, log)
        config = result.config
    test: dict = {}
    if sources.voice is not None:
        for cond, tag in sources.voice.conditions:
            for k in (0, 8):
                r = ravdess_enroll_eval(
                    result.model, config, sources.voice, TEST_ACTORS, k, condition=cond
                )
                test[f"{tag}_k{k}"] = {
                    x: r[x] for x in ("weighted_f1", "weighted_f1_std", "accuracy")
                }
    if sources.face is not None:
        r = face_eval(result.model, config, sources.face, "PrivateTest")
        test["fer2013_private"] = {x: r[x] for x in ("weighted_f1", "accuracy")}
    if meld and not args.limit_dialogues:
        from mlsan.data import load_meld

        dialogues = load_meld(meld, "test", config, cache_dir=args.cache_dir)
        r = meld_eval(result.model, config, dialogues)
        test["meld_test"] = {x: r[x] for x in ("weighted_f1", "accuracy", "per_class_f1")}
    summary = {
        "config": config.to_dict(),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.seconds, 1),
        "dev": result.dev,
        "test": test,
    }
    if args.out:
        summary["sha256"] = save_joint(
            args.out, result, args, test, "mlsan-train " + " ".join(sys.argv[1:])
        )
        summary["checkpoint"] = str(args.out)
    return summary


def run(args: argparse.Namespace) -> dict:
    if getattr(args, "ravdess", None) or getattr(args, "face", None):
        return run_joint(args)
    config = config_from_args(args)
    if args.erc_pickle:
        config, splits = erc_pickle_splits(args, config)
    else:
        splits = load_splits(args, config)
    present = sorted(
        {
            m
            for d in splits["train"]
            for i, m in enumerate(config.modalities)
            if d.modality_mask[:, i].any()
        },
        key=config.modalities.index,
    )
    config = config.with_(trained_modalities=tuple(present))
    result = train_model(config, splits["train"], splits["dev"], progress=not args.quiet)
    y_true, y_pred, _ = predict(result.model, splits["test"], result.config, result.speaker_ids)
    test = compute_metrics(y_true, y_pred, config.label_names)
    summary = {
        "config": result.config.to_dict(),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "dev_weighted_f1": round(result.best_dev_weighted_f1, 2),
        "test": test,
    }
    if args.out:
        meta = {
            "data": (
                f"ERC feature pickle {args.erc_pickle}: its train ids (last 10% as dev), test ids"
                if args.erc_pickle
                else "MELD (declare-lab/MELD data/MELD CSVs, commit 2d2011b): train for "
                "training, dev for early stopping/model selection, test reported"
            ),
            "protocol": f"{config.context_mode} context; text features {config.text_feature} "
            f"(all-MiniLM-L6-v2, frozen); modalities present in training: {present}",
            "seed": config.seed,
            "best_epoch": result.best_epoch,
            "dev_weighted_f1": summary["dev_weighted_f1"],
            "test_metrics": test,
            "speaker_ids": result.speaker_ids,
            "command": "mlsan-train " + " ".join(sys.argv[1:]),
        }
        digest = save_checkpoint(args.out, result.model, result.config, meta)
        summary["checkpoint"] = str(args.out)
        summary["sha256"] = digest
        sidecar = Path(args.out).with_suffix(".json")
        sidecar.write_text(
            json.dumps(
                {k: v for k, v in meta.items() if k != "speaker_ids"} | {"sha256": digest}, indent=2
            )
            + "\n"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlsan-train", description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        require_data(args)
        summary = run(args)
    except UserFacingError as exc:
        print(f"mlsan-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(summary))
    else:
        t = summary["test"]
        print(
            f"best epoch {summary['best_epoch']} (dev weighted F1 {summary['dev_weighted_f1']}); "
            f"test weighted F1 {t['weighted_f1']:.2f}, accuracy {t['accuracy']:.2f} "
            f"({summary['seconds_per_epoch']} s/epoch)"
        )
        if "checkpoint" in summary:
            print(f"wrote {summary['checkpoint']} (sha256 {summary['sha256'][:16]}…)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluate ML-SAN: ``mlsan-eval`` (``python -m mlsan.evaluate``).

Weighted F1 (%), accuracy (%), macro F1, per-class F1 and a confusion-matrix PNG, computed with
scikit-learn, in the checkpoint's context mode (causal or bidirectional). With ``--json`` it
prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlsan.config import MLSANConfig
from mlsan.errors import UserFacingError


def predict(
    model: torch.nn.Module,
    dialogues: Sequence,
    config: MLSANConfig,
    id_map: dict[str, int] | None = None,
    batch_dialogues: int = 64,
    row_cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (labels [N], predictions [N], gates [N,3]) over all real utterances, in order."""
    from mlsan.data import make_batch

    was_training = model.training
    model.eval()
    ys, ps, gs = [], [], []
    with torch.inference_mode():
        for start in range(0, len(dialogues), batch_dialogues):
            batch = make_batch(
                dialogues[start : start + batch_dialogues], config, id_map, row_cache=row_cache
            )
            logits, gate = model(*batch.model_inputs())
            real = batch.context_mask > 0
            ys.append(batch.labels[real].numpy())
            ps.append(logits[real].argmax(-1).numpy())
            gs.append(gate[real].numpy())
    model.train(was_training)
    return np.concatenate(ys), np.concatenate(ps), np.concatenate(gs)


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> dict:
    """Weighted/macro F1 and accuracy in percent, per-class F1 (percent), confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(range(len(label_names)))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "weighted_f1": round(
            100 * f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0), 2
        ),
        "macro_f1": round(
            100 * f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0), 2
        ),
        "accuracy": round(100 * accuracy_score(y_true, y_pred), 2),
        "per_class_f1": {
            n: round(100 * float(f), 2) for n, f in zip(label_names, per_class, strict=True)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n": int(len(y_true)),
    }


def save_confusion_png(
    matrix: Sequence[Sequence[int]], label_names: Sequence[str], path, title: str
) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j,
                i,
                int(m[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate_checkpoint(
    checkpoint: str | Path | None,
    data: str | Path,
    split: str = "test",
    features: str | Path | None = None,
    cache_dir: str | Path | None = None,
    limit_dialogues: int | None = None,
) -> dict:
    """Load a checkpoint (default: the registry's) and score it on a MELD split."""
    from mlsan.checkpoint import load_checkpoint
    from mlsan.data import load_meld
    from mlsan.feature_store import read_feature_store

    if checkpoint is None:
        from mlsan.registry import default_registry

        checkpoint = default_registry().resolve("mlsan").path
    loaded = load_checkpoint(checkpoint)
    store = None
    if features:
        path = Path(features) / f"{split}.npz"
        store = read_feature_store(path) if path.is_file() else None
    dialogues = load_meld(
        data,
        split,
        loaded.config,
        feature_store=store,
        cache_dir=cache_dir,
        limit_dialogues=limit_dialogues,
    )
    id_map = loaded.meta.get("speaker_ids") or {}
    y_true, y_pred, gates = predict(loaded.model, dialogues, loaded.config, id_map)
    names = loaded.label_names
    if "calm" in names:  # the multimodal model's 8th class (RAVDESS); MELD has none
        from mlsan.joint import fold_calm

        y_pred, names = fold_calm(y_pred, names), tuple(n for n in names if n != "calm")
    out = compute_metrics(y_true, y_pred, names)
    out.update(
        mode=loaded.config.context_mode,
        split=split,
        dialogues=len(dialogues),
        checkpoint=str(checkpoint),
        sha256=loaded.sha256,
        trained_modalities=list(loaded.trained_modalities),
        mean_gate={
            m: round(float(g), 4)
            for m, g in zip(loaded.config.modalities, gates.mean(0), strict=True)
        },
    )
    return out


RAVDESS_PROTOCOL = (
    "RAVDESS speech (acted), speaker-independent: actors 21-24 never seen in training or model "
    "selection; 8 classes; the test speaker's representation is the mean voice feature of K "
    "OTHER unlabelled clips of that actor (never the clip classified), {draws} random draws, "
    "mean (and std) of weighted F1"
)


def _default_checkpoint(checkpoint):
    if checkpoint is None:
        from mlsan.registry import default_registry

        checkpoint = default_registry().resolve("mlsan").path
    return checkpoint


def _needs_voice(loaded, checkpoint) -> None:
    if "audio" not in loaded.trained_modalities or loaded.config.speaker_source not in (
        "enroll",
        "none",
    ):
        raise UserFacingError(
            f"checkpoint {checkpoint} was not trained on voice features; fix: pass --checkpoint "
            "with a multimodal checkpoint (mlsan-train --ravdess ...)"
        )


def evaluate_ravdess(
    checkpoint, data, enroll: int = 0, draws: int = 5, farfield: bool = False
) -> dict:
    """Score a multimodal checkpoint on RAVDESS actors 21-24 with K-clip enrollment
    (``farfield``: on the clips' simulated far-field copies, enrollment from copies too)."""
    from mlsan.checkpoint import load_checkpoint
    from mlsan.joint import load_voice, ravdess_enroll_eval
    from mlsan.ravdess import RAVDESS_LABELS, TEST_ACTORS

    checkpoint = _default_checkpoint(checkpoint)
    loaded = load_checkpoint(checkpoint)
    _needs_voice(loaded, checkpoint)
    torch.set_num_threads(1)
    # Only the test actors' clips are read (the model carries its own feature standardisation).
    voice = load_voice(
        data,
        loaded.config,
        log=lambda m: print(m, file=sys.stderr),
        actors=TEST_ACTORS,
        farfield=farfield,
    )
    out = ravdess_enroll_eval(
        loaded.model, loaded.config, voice, TEST_ACTORS, enroll, draws, int(farfield)
    )
    protocol = RAVDESS_PROTOCOL.format(draws=out["draws"])
    if farfield:
        protocol += (
            "; every clip (and every enrollment clip) replaced by its simulated far-field copy "
            "(mlsan.farfield: room reverberation, stationary noise, level, low-pass; fixed per "
            "clip)"
        )
    out.update(
        dataset="ravdess",
        enroll=enroll,
        condition="farfield" if farfield else "studio",
        classes=list(RAVDESS_LABELS),
        per_class=out["per_class_f1"],
        protocol=protocol,
        checkpoint=str(checkpoint),
        sha256=loaded.sha256,
    )
    return out


def evaluate_ravdess_folds(checkpoint, data, enroll: int = 0, draws: int = 5) -> dict:
    """--folds 4: RETRAINS the checkpoint's config on RAVDESS voice alone once per fold
    (actors 1-6, 7-12, 13-18, 19-24 held out in turn; the last two remaining actors select
    the epoch) and scores the held-out fold. Explicit, never silent: the JSON says so."""
    from mlsan.checkpoint import load_checkpoint
    from mlsan.joint import Sources, load_voice, ravdess_enroll_eval, train_joint
    from mlsan.ravdess import FOLDS4, RAVDESS_LABELS

    checkpoint = _default_checkpoint(checkpoint)
    loaded = load_checkpoint(checkpoint)
    _needs_voice(loaded, checkpoint)
    torch.set_num_threads(1)
    config = loaded.config
    voice = load_voice(data, config, log=lambda m: print(m, file=sys.stderr))
    folds = []
    for held in FOLDS4:
        rest = [a for a in range(1, 25) if a not in held]
        res = train_joint(config, Sources(None, None, voice, None), rest[:-2], rest[-2:])
        r = ravdess_enroll_eval(res.model, config, voice, held, enroll, draws)
        folds.append({"actors": list(held), "weighted_f1": r["weighted_f1"]})
    vals = [f["weighted_f1"] for f in folds]
    return {
        "dataset": "ravdess",
        "enroll": enroll,
        "folds": folds,
        "weighted_f1_mean": round(float(np.mean(vals)), 2),
        "weighted_f1_std": round(float(np.std(vals)), 2),
        "weighted_f1": round(float(np.mean(vals)), 2),
        "classes": list(RAVDESS_LABELS),
        "protocol": "4-fold speaker-independent (actors 1-6, 7-12, 13-18, 19-24 held out in "
        "turn); the checkpoint's config RETRAINED per fold on RAVDESS voice only (MELD/FER2013 "
        "not used in these folds; one model per fold, never an ensemble). "
        + RAVDESS_PROTOCOL.format(draws=draws if enroll else 1),
        "checkpoint": str(checkpoint),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlsan-eval", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default="meld",
        choices=["meld", "ravdess", "fer2013"],
        help="meld (default), ravdess (speaker-independent, --enroll K), fer2013 (PrivateTest)",
    )
    parser.add_argument("--enroll", type=int, default=0, help="ravdess: K enrollment clips")
    parser.add_argument("--draws", type=int, default=5, help="ravdess: random enrollment draws")
    parser.add_argument("--folds", type=int, default=0, help="ravdess: 4 = the 4-fold report")
    parser.add_argument(
        "--farfield",
        action="store_true",
        help="ravdess: score the clips' simulated far-field copies (mlsan.farfield)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="ML-SAN checkpoint (default: the registry's mlsan_meld.pt)",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="the dataset's folder: MELD CSVs (*_sent_emo.csv), RAVDESS (Actor_*), or FER2013 "
        "(fer2013.npz)",
    )
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--features", default=None, help="folder with <split>.npz feature store")
    parser.add_argument("--cache-dir", default=None, help="text feature cache folder")
    parser.add_argument(
        "--limit-dialogues", type=int, default=None, help="evaluate only the first N dialogues"
    )
    parser.add_argument("--confusion", default=None, help="write the confusion matrix PNG here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.dataset == "fer2013":  # face-expression encoder on PrivateTest (mlsan.fer2013)
        from mlsan.fer2013 import eval_cli

        return eval_cli(args.data, args.checkpoint, args.json, args.confusion)
    if args.dataset == "ravdess":
        try:
            if args.folds not in (0, 4):
                raise UserFacingError("--folds must be 4 (the 4-fold report); fix: --folds 4")
            if args.enroll < 0 or args.enroll > 16:
                raise UserFacingError("--enroll must be 0..16 (clips of the test actor)")
            if args.folds:
                if args.farfield:
                    raise UserFacingError("--farfield scores actors 21-24; fix: drop --folds")
                result = evaluate_ravdess_folds(args.checkpoint, args.data, args.enroll, args.draws)
            else:
                result = evaluate_ravdess(
                    args.checkpoint, args.data, args.enroll, args.draws, args.farfield
                )
        except UserFacingError as exc:
            print(f"mlsan-eval: error: {exc}", file=sys.stderr)
            return exc.exit_code
        result.pop("confusion_matrix", None) if args.folds else None
        if args.json:
            print(json.dumps(result))
        else:
            print(f"RAVDESS actors 21-24, K={args.enroll}: weighted F1 {result['weighted_f1']:.2f}")
        return 0
    try:
        result = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            args.split,
            args.features,
            args.cache_dir,
            args.limit_dialogues,
        )
    except UserFacingError as exc:
        print(f"mlsan-eval: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.confusion:
        save_confusion_png(
            result["confusion_matrix"],
            list(result["per_class_f1"]),
            args.confusion,
            f"ML-SAN on MELD {args.split} ({result['mode']}), "
            f"weighted F1 {result['weighted_f1']:.1f}",
        )
        result["confusion_png"] = args.confusion
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"MELD {args.split} ({result['mode']} context, {result['n']} utterances): "
        f"weighted F1 {result['weighted_f1']:.2f}  accuracy {result['accuracy']:.2f}  "
        f"macro F1 {result['macro_f1']:.2f}"
    )
    for name, f1 in result["per_class_f1"].items():
        print(f"  {name:<9} F1 {f1:6.2f}")
    if args.confusion:
        print(f"confusion matrix: {args.confusion}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

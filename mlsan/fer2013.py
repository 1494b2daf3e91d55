"""FER2013: loading, training the face-expression encoder, evaluation, the handoff feature store.

``python -m mlsan.fer2013 train --data ../shared/data/fer2013 --out DIR`` trains on ``Training``
only, scores ``PublicTest`` after every epoch (model selection: the best epoch by PublicTest
accuracy is kept as ``DIR/best.pt``) and never looks at ``PrivateTest``. ``evaluate_fer2013``
reports on ``PrivateTest`` (``mlsan-eval --dataset fer2013``). ``write_feature_store`` writes the
per-image embeddings of all 35,887 images for the multimodal model (``FACE_INTERFACE.md``).

Data: FER2013 (Goodfellow et al., 2013), challenge data for research use; a checkpoint trained on it
inherits that (research use only).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlsan.errors import CheckpointError, UserFacingError
from mlsan.face_expression import FER_LABELS

SPLITS = ("Training", "PublicTest", "PrivateTest")
DEFAULT_DATA = "../shared/data/fer2013"
PROTOCOL = (
    "FER2013 official split: trained on Training (28,709), model selection (epoch) on "
    "PublicTest (3,589), reported on PrivateTest (3,589); single model, 48x48 input, "
    "horizontal-flip test-time augmentation inside the model"
)
ENSEMBLE_PROTOCOL = (
    "FER2013 official split: each member trained on Training (28,709) with its epoch selected on "
    "PublicTest (3,589); members and flip test-time augmentation chosen on PublicTest within the "
    "speed budget (--max-runs network runs per face); reported on PrivateTest (3,589); 48x48 "
    "input, logits averaged over members (and views), embeddings concatenated"
)


class FER2013Error(UserFacingError):
    """The FER2013 file is missing or not in the expected layout."""


@dataclass(frozen=True)
class FER2013:
    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,), FER order
    usage: np.ndarray  # str (N,), Training / PublicTest / PrivateTest
    label_names: tuple[str, ...]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        keep = self.usage == name
        return self.images[keep], self.labels[keep]


def resolve_npz(data: str | Path) -> Path:
    """A directory holding fer2013.npz, or the file itself."""
    path = Path(data)
    if path.is_dir():
        path = path / "fer2013.npz"
    if not path.is_file():
        raise FER2013Error(
            f"FER2013 not found at {data}; fix: pass --data ../shared/data/fer2013 "
            "(the folder with fer2013.npz)"
        )
    return path


def load_fer2013(data: str | Path) -> FER2013:
    path = resolve_npz(data)
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = np.asarray(npz["images"], dtype=np.uint8)
            labels = np.asarray(npz["labels"], dtype=np.int64)
            usage = np.asarray(npz["usage"]).astype(str)
            names = tuple(str(n) for n in npz["label_names"])
    except (KeyError, ValueError, OSError) as exc:
        raise FER2013Error(
            f"{path} is not a FER2013 npz ({exc}); fix: use ../shared/data/fer2013/fer2013.npz"
        ) from exc
    if images.ndim != 3 or images.shape[1:] != (48, 48) or len(labels) != len(images):
        raise FER2013Error(f"{path}: images {images.shape}, labels {labels.shape}; fix: re-export")
    if names != FER_LABELS:
        raise FER2013Error(f"{path}: label_names {names} != {FER_LABELS}; fix: re-export")
    return FER2013(images=images, labels=labels, usage=usage, label_names=names)


# ----------------------------------------------------------------------------- training


def _augment(x, generator):
    """Batched augmentation on (B,1,48,48) float in [0,255]: random flip, rotation +-10 deg,
    scale 0.85-1.15, shift +-10 %, then random erasing (p 0.5) of one patch (filled with the
    crop's mean grey)."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    ang = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(10)
    scale = 1.0 / (0.85 + torch.rand(b, generator=generator) * 0.30)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    tx = (torch.rand(b, generator=generator) * 2 - 1) * 0.2
    ty = (torch.rand(b, generator=generator) * 2 - 1) * 0.2
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # random erasing: one rectangle of 2-20 % of the area, aspect 0.3-3.3
    erase = torch.rand(b, generator=generator) < 0.5
    area = (0.02 + torch.rand(b, generator=generator) * 0.18) * 48 * 48
    aspect = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * math.log(3.3))
    h = (area * aspect).sqrt().clamp(4, 40).long()
    w = (area / aspect).sqrt().clamp(4, 40).long()
    y0 = (torch.rand(b, generator=generator) * (48 - h + 1)).long()
    x0 = (torch.rand(b, generator=generator) * (48 - w + 1)).long()
    yy = torch.arange(48).view(1, 48, 1)
    xx = torch.arange(48).view(1, 1, 48)
    mask = (
        (yy >= y0.view(-1, 1, 1))
        & (yy < (y0 + h).view(-1, 1, 1))
        & (xx >= x0.view(-1, 1, 1))
        & (xx < (x0 + w).view(-1, 1, 1))
        & erase.view(-1, 1, 1)
    ).unsqueeze(1)
    fill = out.mean(dim=(1, 2, 3), keepdim=True).expand_as(out)
    return torch.where(mask, fill, out)


def _lr_at(progress: float, peak: float, warmup: float = 0.15) -> float:
    """One-cycle: linear warm-up from peak/10 to peak, then cosine to ~0."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return peak * (0.1 + 0.9 * progress / warmup)
    t = (progress - warmup) / (1 - warmup)
    return peak * (0.5 * (1 + math.cos(math.pi * t))) + 1e-5


def accuracy_on(model, images: np.ndarray, labels: np.ndarray) -> float:
    from mlsan.face_expression import encode_crops

    logits, _ = encode_crops(model, images)
    return float((logits.argmax(1) == labels).mean())


def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from mlsan.face_expression import (
        FaceEncoderConfig,
        FaceExpressionNet,
        FaceExpressionTTA,
        load_face_checkpoint,
        save_face_checkpoint,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    init_from = None
    if args.init:
        # warm restart: a second one-cycle schedule from a trained single network; its
        # architecture wins over --widths/--embed-dim/--dropout
        loaded = load_face_checkpoint(args.init)
        if loaded.members != 1:
            raise CheckpointError(
                f"--init {args.init} holds {loaded.members} networks; fix: pass one "
                "network's checkpoint (a training run's best.pt)"
            )
        net = loaded.core
        init_from = {"path": str(args.init), "sha256": loaded.sha256}
    else:
        config = FaceEncoderConfig(
            widths=tuple(args.widths), embed_dim=args.embed_dim, dropout=args.dropout
        )
        net = FaceExpressionNet(config)
    data = load_fer2013(args.data)
    x_train, y_train = data.split("Training")
    x_pub, y_pub = data.split("PublicTest")
    xt = torch.from_numpy(x_train).float().unsqueeze(1)
    yt = torch.from_numpy(y_train)
    net = net.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for p in net.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget_s = args.time_budget_min * 60 if args.time_budget_min else None
    steps_per_epoch = math.ceil(len(xt) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    command = "python -m mlsan.fer2013 " + " ".join(sys.argv[1:])
    history: list[dict[str, Any]] = []
    best = -1.0
    start = time.time()
    step = 0
    epoch = 0
    done = False
    while not done and epoch < args.epochs:
        epoch += 1
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(perm), args.batch_size):
            progress = step / total_steps
            if budget_s:
                progress = max(progress, (time.time() - start) / budget_s)
            if progress >= 1.0:
                done = True
                break
            lr = _lr_at(progress, args.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = perm[i : i + args.batch_size]
            xb = _augment(xt[idx], gen).contiguous(memory_format=torch.channels_last)
            yb = yt[idx]
            logits, _ = net(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        net.eval()
        pub_tta = accuracy_on(FaceExpressionTTA(net), x_pub, y_pub)
        row = {
            "epoch": epoch,
            "steps": step,
            "train_loss": round(loss_sum / max(seen, 1), 4),
            "train_acc": round(correct / max(seen, 1), 4),
            "public_acc_tta": round(pub_tta, 4),
            "lr": round(lr, 5),
            "elapsed_s": round(time.time() - start, 1),
            "partial_epoch": done,
        }
        history.append(row)
        print(json.dumps(row), flush=True)
        meta = {
            "data": "FER2013 (Goodfellow et al., 2013), ../shared/data/fer2013/fer2013.npz",
            "licence": "FER2013 is challenge data for research use only; so is this checkpoint",
            "protocol": PROTOCOL,
            "command": command,
            "epoch": epoch,
            "public_acc_tta": pub_tta,
            "history": history,
            "seed": args.seed,
            "init": init_from,
        }
        save_face_checkpoint(out / "last.pt", net, meta)
        if pub_tta > best:
            best = pub_tta
            save_face_checkpoint(out / "best.pt", net, meta)
            print(json.dumps({"best": epoch, "public_acc_tta": pub_tta}), flush=True)
    summary = {"best_public_acc_tta": best, "epochs": epoch, "elapsed_s": time.time() - start}
    (out / "history.json").write_text(json.dumps({"history": history, **summary}, indent=1))
    return summary


# ----------------------------------------------------------------------------- evaluation


def default_checkpoint() -> Path:
    """The shipped encoder's torch checkpoint: the ``.pt`` beside the registry's
    ``face_expression`` ONNX model (flag/env, cache, package), which was exported from it."""
    from mlsan.registry import default_registry

    return default_registry().resolve("face_expression").path.with_suffix(".pt")


def evaluate_fer2013(
    data_dir: str | Path, checkpoint: str | Path | None = None, split: str = "PrivateTest"
) -> dict[str, Any]:
    """Score a shipped/self-describing encoder on a FER2013 split (never trains).

    -> {"accuracy", "weighted_f1", "macro_f1", "per_class", "classes", "protocol", ...}
    (percentages, like the MELD evaluation).
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    from mlsan.face_expression import encode_crops, load_face_checkpoint

    if split not in SPLITS:
        raise FER2013Error(f"unknown split {split!r}; fix: one of {', '.join(SPLITS)}")
    data = load_fer2013(data_dir)
    images, labels = data.split(split)
    ckpt_path = Path(checkpoint) if checkpoint else default_checkpoint()
    t0 = time.time()
    if ckpt_path.suffix == ".onnx":  # the exported graph, through ONNX Runtime (one thread)
        from mlsan.face_expression import onnx_encode
        from mlsan.registry import file_sha256

        logits, _ = onnx_encode(ckpt_path, images)
        meta, sha = {}, file_sha256(ckpt_path)
    else:
        loaded = load_face_checkpoint(ckpt_path)
        logits, _ = encode_crops(loaded.model, images)
        meta, sha = loaded.meta, loaded.sha256
    pred = logits.argmax(1)
    classes = list(FER_LABELS)
    prec, rec, f1, support = precision_recall_fscore_support(
        labels, pred, labels=list(range(7)), zero_division=0
    )
    return {
        "dataset": "fer2013",
        "split": split,
        "n": int(len(labels)),
        "accuracy": round(100 * float((pred == labels).mean()), 2),
        "weighted_f1": round(100 * float(f1_score(labels, pred, average="weighted")), 2),
        "macro_f1": round(100 * float(f1_score(labels, pred, average="macro")), 2),
        "per_class": {
            c: {
                "f1": round(100 * float(f1[i]), 2),
                "precision": round(100 * float(prec[i]), 2),
                "recall": round(100 * float(rec[i]), 2),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "classes": classes,
        "confusion": confusion_matrix(labels, pred, labels=list(range(7))).tolist(),
        "protocol": meta.get("protocol", PROTOCOL),
        "checkpoint": str(ckpt_path),
        "checkpoint_sha256": sha,
        "selected_epoch": meta.get("epoch"),
        "public_acc": meta.get("public_acc", meta.get("public_acc_tta")),
        "licence": "FER2013: research use only",
        "seconds": round(time.time() - t0, 2),
    }


def write_feature_store(data_dir: str | Path, checkpoint: str | Path, out: str | Path) -> dict:
    """Embeddings + logits of every FER2013 image in file order -> an npz for the fused model."""
    from mlsan.face_expression import encode_crops, load_face_checkpoint

    loaded = load_face_checkpoint(checkpoint)
    data = load_fer2013(data_dir)
    logits, emb = encode_crops(loaded.model, data.images)
    out = Path(out)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(
        tmp,
        embeddings=emb.astype(np.float32),
        logits=logits.astype(np.float32),
        labels=data.labels.astype(np.int64),
        usage=data.usage.astype(str),
        label_names=np.asarray(FER_LABELS),
        encoder_sha256=np.asarray(loaded.sha256),
    )
    tmp.replace(out)
    return {"path": str(out), "n": len(emb), "dim": int(emb.shape[1]), "sha256": loaded.sha256}


def build_ensemble(
    members: Sequence[str | Path], data: str | Path, out: str | Path, max_runs: int = 2
) -> dict[str, Any]:
    """Combine PublicTest-selected encoders into one checkpoint. Every non-empty subset of
    ``members``, with and without the flip, that costs at most ``max_runs`` network runs per face
    (members x views) is scored on PublicTest; the best is written to ``out``. PrivateTest is
    not looked at. -> {"variants": [...], "chosen": {...}}"""
    import itertools

    from mlsan.face_expression import (
        combine,
        encode_crops,
        load_face_checkpoint,
        save_face_checkpoint,
    )

    if max_runs < 1:
        raise FER2013Error(f"--max-runs {max_runs}: fix: 1 or more")
    loaded = [load_face_checkpoint(m, tta=False) for m in members]
    if any(lf.members != 1 for lf in loaded):
        raise FER2013Error("ensemble members must be single encoders (checkpoints of one network)")
    x_pub, y_pub = load_fer2013(data).split("PublicTest")
    # Each network runs once per view; a variant's logits are the mean over its members (and
    # views), exactly what the ensemble and flip wrappers compute.
    flips = (False, True) if max_runs >= 2 else (False,)
    views = [
        [encode_crops(lf.model, x_pub[:, :, ::-1] if f else x_pub)[0] for f in flips]
        for lf in loaded
    ]
    variants = []
    for k in range(1, len(loaded) + 1):
        for subset in itertools.combinations(range(len(loaded)), k):
            for tta in (False, True):
                runs = k * (2 if tta else 1)
                if runs > max_runs:
                    continue
                logits = np.mean([v for i in subset for v in views[i][: 1 + tta]], axis=0)
                acc = float((logits.argmax(1) == y_pub).mean())
                variants.append(
                    {"members": list(subset), "tta": tta, "runs": runs, "public_acc": round(acc, 4)}
                )
    chosen = max(variants, key=lambda v: v["public_acc"])  # first best: fewer members first
    picked = chosen["members"]
    meta = {
        "data": "FER2013 (Goodfellow et al., 2013), ../shared/data/fer2013/fer2013.npz",
        "licence": "FER2013 is challenge data for research use only; so is this checkpoint",
        "protocol": ENSEMBLE_PROTOCOL,
        "command": "python -m mlsan.fer2013 " + " ".join(sys.argv[1:]),
        "public_acc": chosen["public_acc"],
        "max_runs": max_runs,
        "variants": variants,
        "members": [
            {
                "path": str(m),
                "sha256": lf.sha256,
                "command": lf.meta.get("command"),
                "seed": lf.meta.get("seed"),
                "epoch": lf.meta.get("epoch"),
                "public_acc_tta": lf.meta.get("public_acc_tta"),
                "epochs_run": len(lf.meta.get("history", [])),
                "train_seconds": (lf.meta.get("history") or [{}])[-1].get("elapsed_s"),
            }
            for m, lf in ((members[i], loaded[i]) for i in picked)
        ],
    }
    save_face_checkpoint(
        out, combine([loaded[i].model for i in picked], False), meta, chosen["tta"]
    )
    return {"variants": variants, "chosen": chosen, "out": str(out)}


def ship(source: str | Path, data: str | Path, dest: str | Path) -> dict[str, Any]:
    """Copy an encoder into ``dest`` as face_expression.pt, export face_expression.onnx
    (parity-checked), score PrivateTest (report only) and write the JSON sidecar
    face_expression.json (data, licence, protocol, metrics, commands).

    ``source``: a training run's folder (its PublicTest-selected ``best.pt``) or a checkpoint
    file (for example one written by ``ensemble``)."""
    import shutil

    from mlsan.face_expression import export_onnx, load_face_checkpoint

    source, dest = Path(source), Path(dest)
    run_dir = source if source.is_dir() else None
    dest.mkdir(parents=True, exist_ok=True)
    pt = dest / "face_expression.pt"
    shutil.copyfile(source / "best.pt" if run_dir else source, pt)
    loaded = load_face_checkpoint(pt)
    Path(str(pt) + ".sha256").write_text(f"{loaded.sha256}  {pt.name}\n")
    exported = export_onnx(pt, dest / "face_expression.onnx")
    private = evaluate_fer2013(data, pt)  # reported only; selection was on PublicTest
    run_file = run_dir / "history.json" if run_dir else None  # the whole run
    history = (
        json.loads(run_file.read_text())["history"]
        if run_file and run_file.is_file()
        else loaded.meta.get("history", [])
    )
    c = loaded.config
    members = (
        f"{loaded.members} networks on the same crop (logits averaged, embeddings concatenated), "
        "each a "
        if loaded.members > 1
        else ""
    )
    public = loaded.meta.get("public_acc", loaded.meta.get("public_acc_tta"))
    meta = {
        "model": f"face-expression encoder: {members}4-stage VGG-style CNN, 48x48 grey input, "
        f"widths {list(c.widths)}, embedding D={loaded.embed_dim} "
        "(penultimate layer, BatchNorm+ReLU, raw, not L2-normalised), 7 logits in FER order; "
        + ("flip test-time augmentation inside the model" if loaded.tta else "no flip"),
        "data": "FER2013 (Goodfellow et al., 2013, ICML Challenges in Representation Learning), "
        "../shared/data/fer2013/fer2013.npz, official Training/PublicTest/PrivateTest split",
        "licence": "FER2013 is challenge data for research use only (no explicit licence): this "
        "checkpoint and its ONNX export are for research use only",
        "protocol": loaded.meta.get("protocol", PROTOCOL),
        "command": loaded.meta.get("command"),
        # a warm restart (train --init): the network it started from (its own run's command
        # is in that checkpoint's meta)
        "init": loaded.meta.get("init"),
        "ship_command": f"python -m mlsan.fer2013 ship --run {source} --data {data} --dest {dest}",
        "members": loaded.meta.get("members", loaded.members),
        "tta": loaded.tta,
        "embed_dim": loaded.embed_dim,
        "selected_epoch": loaded.meta.get("epoch"),
        "epochs_run": len(history),
        "train_seconds": history[-1]["elapsed_s"] if history else None,
        "history": history,
        "variants": loaded.meta.get("variants"),
        "metrics": {
            "PrivateTest": {k: private[k] for k in ("accuracy", "weighted_f1", "macro_f1")},
            "PrivateTest_per_class": private["per_class"],
            "PrivateTest_confusion": private["confusion"],
            "PublicTest_accuracy_at_selection": round(100 * public, 2),
        },
        "checkpoint_sha256": loaded.sha256,
        "onnx_sha256": exported["sha256"],
        "onnx_opset": exported["opset"],
        "onnx_parity": {k: v for k, v in exported.items() if k.startswith("max_abs")},
        "label_names": list(FER_LABELS),
    }
    (dest / "face_expression.json").write_text(json.dumps(meta, indent=1) + "\n")
    return {
        "private_accuracy": private["accuracy"],
        "public_accuracy": round(100 * public, 2),
        "checkpoint_sha256": loaded.sha256,
        "onnx_sha256": exported["sha256"],
    }


def eval_cli(
    data: str | Path | None, checkpoint: str | None, as_json: bool, confusion: str | None
) -> int:
    """``mlsan-eval --dataset fer2013``: PrivateTest metrics of the shipped (or given) encoder."""
    import torch

    from mlsan.errors import run_guarded

    def run() -> int:
        torch.set_num_threads(1)
        result = evaluate_fer2013(data or DEFAULT_DATA, checkpoint)
        if confusion:
            from mlsan.evaluate import save_confusion_png

            save_confusion_png(
                result["confusion"],
                result["classes"],
                confusion,
                f"face encoder on FER2013 PrivateTest, accuracy {result['accuracy']:.1f} %",
            )
            result["confusion_png"] = confusion
        if as_json:
            print(json.dumps(result))
            return 0
        print(
            f"FER2013 {result['split']} ({result['n']} faces): accuracy {result['accuracy']:.2f}  "
            f"weighted F1 {result['weighted_f1']:.2f}  macro F1 {result['macro_f1']:.2f}"
        )
        for name, row in result["per_class"].items():
            print(f"  {name:<9} F1 {row['f1']:6.2f}  recall {row['recall']:6.2f}")
        return 0

    return run_guarded("mlsan-eval", run)


def torch_threads(n: int = 1) -> None:
    import torch

    torch.set_num_threads(n)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlsan.fer2013", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the face-expression encoder on FER2013 Training")
    t.add_argument("--data", default=DEFAULT_DATA)
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument(
        "--time-budget-min",
        type=float,
        default=None,
        help="schedule the one-cycle LR over this wall time and stop when it ends",
    )
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--dropout", type=float, default=0.3)
    t.add_argument("--widths", type=int, nargs=4, default=[24, 48, 96, 192])
    t.add_argument("--embed-dim", type=int, default=128)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--init",
        default=None,
        help="start from this trained network (.pt) instead of random weights (warm restart)",
    )
    f = sub.add_parser("features", help="write the per-image embedding store (handoff npz)")
    f.add_argument("--data", default=DEFAULT_DATA)
    f.add_argument("--checkpoint", default=None)
    f.add_argument("--out", required=True)
    e = sub.add_parser("export", help="export a checkpoint to ONNX (+ parity check, .sha256)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", required=True)
    s = sub.add_parser("ship", help="copy an encoder into the package, export, describe")
    s.add_argument("--run", required=True, help="a training run folder (its best.pt) or a .pt")
    s.add_argument("--data", default=DEFAULT_DATA)
    s.add_argument("--dest", default=str(Path(__file__).parent / "checkpoints"))
    n = sub.add_parser(
        "ensemble", help="combine PublicTest-selected encoders (chosen on PublicTest)"
    )
    n.add_argument("--members", nargs="+", required=True, help="single-encoder .pt files")
    n.add_argument("--data", default=DEFAULT_DATA)
    n.add_argument("--out", required=True)
    n.add_argument(
        "--max-runs",
        type=int,
        default=2,
        help="speed budget: network runs per face (members x 2 with the flip); 2 = one "
        "network with the flip or two without (about 1.7 ms per face on one x86 thread)",
    )
    args = p.parse_args(argv)

    def run() -> int:
        if args.cmd == "ensemble":
            torch_threads()
            print(json.dumps(build_ensemble(args.members, args.data, args.out, args.max_runs)))
        elif args.cmd == "train":
            print(json.dumps(train(args)))
        elif args.cmd == "ship":
            torch_threads()
            print(json.dumps(ship(args.run, args.data, args.dest)))
        elif args.cmd == "export":
            from mlsan.face_expression import export_onnx

            print(json.dumps(export_onnx(args.checkpoint, args.out)))
        else:
            torch_threads()
            ckpt = args.checkpoint or default_checkpoint()
            print(json.dumps(write_feature_store(args.data, ckpt, args.out)))
        return 0

    from mlsan.errors import run_guarded

    return run_guarded("mlsan-fer2013", run)


if __name__ == "__main__":
    sys.exit(main())

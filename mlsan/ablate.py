"""The README results: full ML-SAN and each ablation, both context modes, several seeds.

``python -m mlsan.ablate --data ../shared/data/meld --seeds 0 1 2 --out runs/ablation.json``
trains every (variant, mode, seed) on MELD train with early stopping on dev, scores MELD test,
adds the logistic-regression baseline on the same frozen sentence embeddings (one utterance at a
time, C chosen on dev), writes all per-run metrics plus mean ± std to JSON as it goes, prints
markdown tables, and with ``--ship PATH`` saves the full causal model with the best dev score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no-film": ["--no-film"],
    "no-gate": ["--no-gate"],
    "no-reg": ["--no-reg"],
    "no-speaker": ["--no-speaker"],
    "no-context": ["--no-context"],
    "film-text": ["--film-text"],
    "speaker-ids": ["--speaker-source", "id"],
}


# The multimodal model's ablations (issue 11): each removes one level of speaker adaptation.
MM_VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no-film": ["--no-film"],
    "gate-no-speaker": ["--gate-no-speaker"],
    "no-reg": ["--no-reg"],
    "no-speaker": ["--no-speaker"],  # no speaker tensor anywhere: FiLM, gate, fused, loss
}


def multimodal_ablation(args, rest: list[str], base_parser) -> dict:
    """Joint MELD + RAVDESS (+ FER2013) runs for every variant and seed: RAVDESS actors 21-24
    at K = 0 and K = 8 (5 draws), FER2013 PrivateTest, MELD test (causal); results JSON is
    rewritten after every run."""
    import torch

    from mlsan.data import load_meld
    from mlsan.joint import face_eval, load_sources, meld_eval, ravdess_enroll_eval, train_joint
    from mlsan.ravdess import TEST_ACTORS
    from mlsan.train import config_from_args, joint_config

    torch.set_num_threads(args.threads)
    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    variants = list(MM_VARIANTS)
    if args.variants != list(VARIANTS):  # an explicit --variants list
        variants = [v for v in args.variants if v in MM_VARIANTS]
    results: dict = {
        "command": "mlsan-ablate " + " ".join(sys.argv[1:]),
        "variants": variants,
        "runs": [],
        "summary": {},
    }
    first = base_parser.parse_args(rest)
    config0 = joint_config(first, config_from_args(first))
    meld = None if first.data in ("", "none") else first.data
    sources = load_sources(
        config0,
        meld,
        first.ravdess,
        first.face,
        first.cache_dir,
        first.limit_dialogues,
        log=lambda m: None,
        ravdess_actors=first.ravdess_actors,
        ravdess_per_actor=first.ravdess_per_actor,
        farfield=first.farfield,
    )
    ship = None
    meld_test = None
    if meld and not first.limit_dialogues:
        meld_test = load_meld(meld, "test", config0, cache_dir=first.cache_dir)
    for variant in variants:
        runs = []
        for seed in args.seeds:
            vargs = base_parser.parse_args(rest + MM_VARIANTS[variant] + ["--seed", str(seed)])
            config = joint_config(vargs, config_from_args(vargs))
            t0 = time.perf_counter()
            res = train_joint(config, sources, steps_per_epoch=vargs.steps_per_epoch)
            run = {"variant": variant, "seed": seed, "best_epoch": res.best_epoch, "dev": res.dev}
            test = {}
            if sources.voice is not None:
                for cond, tag in sources.voice.conditions:
                    for k in (0, 8):
                        r = ravdess_enroll_eval(
                            res.model, config, sources.voice, TEST_ACTORS, k, 5, cond
                        )
                        test[f"{tag}_k{k}"] = r["weighted_f1"]
            if sources.face is not None:
                test["fer2013"] = face_eval(res.model, config, sources.face, "PrivateTest")[
                    "weighted_f1"
                ]
            if meld_test is not None:
                r = meld_eval(res.model, config, meld_test)
                test["meld"] = r["weighted_f1"]
                test["meld_fear"] = r["per_class_f1"]["fear"]
                test["meld_disgust"] = r["per_class_f1"]["disgust"]
            run["test"] = test
            run["seconds"] = round(time.perf_counter() - t0, 1)
            if args.ship and variant == "full" and (ship is None or res.dev["score"] > ship[0]):
                ship = (res.dev["score"], res, run, vargs)
            runs.append(run)
            results["runs"].append(run)
            print(f"{variant}/seed{seed}: {json.dumps(test)} ({run['seconds']}s)", flush=True)
            results["summary"][variant] = {
                k: {
                    "mean": round(float(np.mean([r["test"][k] for r in runs])), 2),
                    "std": round(float(np.std([r["test"][k] for r in runs])), 2),
                    "n": len(runs),
                }
                for k in runs[0]["test"]
            }
            results_path.write_text(json.dumps(results, indent=1))
    if ship is not None:
        from mlsan.train import save_joint

        _, res, run, vargs = ship
        digest = save_joint(args.ship, res, vargs, run["test"], results["command"])
        results["shipped"] = {"path": args.ship, "sha256": digest, "seed": run["seed"]}
        results_path.write_text(json.dumps(results, indent=1))
        print(f"shipped {args.ship} (seed {run['seed']}, dev score {res.dev['score']})", flush=True)
    table = multimodal_markdown(results)
    results_path.with_suffix(".md").write_text(table + "\n")
    print(table)
    return results


def multimodal_markdown(results: dict) -> str:
    cols = [
        ("ravdess_k8", "RAVDESS wF1, K=8"),
        ("ravdess_k0", "RAVDESS wF1, K=0"),
        ("ravdess_far_k8", "far-field RAVDESS wF1, K=8"),
        ("ravdess_far_k0", "far-field RAVDESS wF1, K=0"),
        ("fer2013", "FER2013 wF1"),
        ("meld", "MELD wF1 (causal)"),
        ("meld_fear", "MELD fear F1"),
        ("meld_disgust", "MELD disgust F1"),
    ]
    present = [c for c in cols if any(c[0] in s for s in results["summary"].values())]
    lines = [
        "| variant | " + " | ".join(n for _, n in present) + " |",
        "| --- |" + " --- |" * len(present),
    ]
    for variant, s in results["summary"].items():
        cells = [f"{s[k]['mean']:.2f} ± {s[k]['std']:.2f}" if k in s else "-" for k, _ in present]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def logistic_baseline(splits, seed: int = 0) -> dict:
    """Logistic regression on one utterance's text features; C picked on dev weighted F1."""
    from sklearn.linear_model import LogisticRegression

    from mlsan.evaluate import compute_metrics

    def xy(split):
        ds = splits[split]
        return np.concatenate([d.text for d in ds]), np.concatenate([d.labels for d in ds])

    (xtr, ytr), (xdv, ydv), (xte, yte) = xy("train"), xy("dev"), xy("test")
    names = None
    best = None
    for c in (0.25, 1.0, 4.0):
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(xtr, ytr)
        from sklearn.metrics import f1_score

        dev = 100 * f1_score(ydv, clf.predict(xdv), average="weighted")
        if best is None or dev > best[0]:
            best = (dev, c, clf)
    from mlsan.config import MELD_LABELS

    names = MELD_LABELS
    out = compute_metrics(yte, best[2].predict(xte), names)
    out.update(C=best[1], dev_weighted_f1=round(best[0], 2))
    return out


def summarise(runs: list[dict]) -> dict:
    def ms(values):
        return {"mean": round(float(np.mean(values)), 2), "std": round(float(np.std(values)), 2)}

    keys = ("weighted_f1", "accuracy", "macro_f1")
    out = {k: ms([r["test"][k] for r in runs]) for k in keys}
    out["dev_weighted_f1"] = ms([r["dev_weighted_f1"] for r in runs])
    out["per_class_f1"] = {
        name: ms([r["test"]["per_class_f1"][name] for r in runs])
        for name in runs[0]["test"]["per_class_f1"]
    }
    out["seconds_per_epoch"] = ms([r["seconds_per_epoch"] for r in runs])
    out["seeds"] = [r["seed"] for r in runs]
    return out


def markdown(results: dict) -> str:
    def cell(stat):
        return f"{stat['mean']:.2f} ± {stat['std']:.2f}"

    lines = [
        "| variant | causal dev wF1 | causal test wF1 | causal test acc "
        "| bidir. dev wF1 | bidir. test wF1 | bidir. test acc |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variant in results["variants"]:
        cells = []
        for mode in ("causal", "bidirectional"):
            s = results["summary"].get(f"{variant}/{mode}")
            if s is None:
                cells += ["-", "-", "-"]
            else:
                cells += [cell(s["dev_weighted_f1"]), cell(s["weighted_f1"]), cell(s["accuracy"])]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    for name, base in results.get("baselines", {}).items():
        lines.append(
            f"| {name}, one utterance | {base['dev_weighted_f1']:.2f} | {base['weighted_f1']:.2f} "
            f"| {base['accuracy']:.2f} | | | |"
        )
    labels = None
    rows = []
    for key, s in results["summary"].items():
        labels = list(s["per_class_f1"])
        rows.append(
            f"| {key} | "
            + " | ".join(f"{s['per_class_f1'][n]['mean']:.1f}" for n in labels)
            + f" | {s['macro_f1']['mean']:.1f} |"
        )
    for name, base in results.get("baselines", {}).items():
        rows.append(
            f"| {name} | "
            + " | ".join(f"{base['per_class_f1'][n]:.1f}" for n in labels or base["per_class_f1"])
            + f" | {base['macro_f1']:.1f} |"
        )
    if labels:
        lines += [
            "",
            "| per-class F1 (mean over seeds) | " + " | ".join(labels) + " | macro |",
            "| --- |" + " --- |" * (len(labels) + 1),
        ] + rows
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    from mlsan.checkpoint import save_checkpoint
    from mlsan.evaluate import compute_metrics, predict
    from mlsan.train import add_train_arguments, config_from_args, load_splits, train_model

    parser = argparse.ArgumentParser(prog="mlsan-ablate", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["causal", "bidirectional"])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=sorted(set(VARIANTS) | set(MM_VARIANTS)),
    )
    parser.add_argument("--results", default="runs/ablation.json")
    parser.add_argument("--ship", default=None, help="save the best full causal model here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-baseline", action="store_true")
    base_parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(base_parser)
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="only merge these results JSON files into one table and exit",
    )
    args, rest = parser.parse_known_args(argv)
    if args.merge:
        merged: dict = {"variants": [], "runs": [], "summary": {}, "baselines": {}, "commands": []}
        for path in args.merge:
            part = json.loads(Path(path).read_text())
            merged["variants"] += [v for v in part["variants"] if v not in merged["variants"]]
            merged["runs"] += part["runs"]
            merged["summary"].update(part["summary"])
            merged["baselines"].update(part.get("baselines", {}))
            merged["commands"].append(part["command"])
            if "shipped" in part:
                merged["shipped"] = part["shipped"]
        Path(args.results).write_text(json.dumps(merged, indent=1))
        table = markdown(merged)
        Path(args.results).with_suffix(".md").write_text(table + "\n")
        print(table)
        return 0
    from mlsan.train import require_data

    checked = base_parser.parse_args(rest)
    require_data(checked)
    if checked.ensemble != 1:
        from mlsan.errors import UserFacingError

        # the variants are compared as single models (seed spread is the yardstick); an
        # ensemble here would be silently trained as one model
        raise UserFacingError(
            f"--ensemble {checked.ensemble}: mlsan-ablate compares single models over --seeds; "
            "fix: drop --ensemble (train the shipped ensemble with mlsan-train --ensemble N)"
        )
    if "--ravdess" in rest or "--face" in rest:  # the multimodal model (issue 11)
        multimodal_ablation(args, rest, base_parser)
        return 0
    torch.set_num_threads(args.threads)
    common = base_parser.parse_args(rest)
    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": "python -m mlsan.ablate " + " ".join(argv or sys.argv[1:]),
        "variants": args.variants,
        "runs": [],
        "summary": {},
        "baselines": {},
    }
    splits = load_splits(common, config_from_args(common))
    if not args.no_baseline:
        t0 = time.perf_counter()
        results["baselines"][f"logreg ({common.text_feature})"] = logistic_baseline(splits)
        if common.text_feature != "minilm":
            minimal = base_parser.parse_args(rest + ["--text-feature", "minilm"])
            plain = load_splits(minimal, config_from_args(minimal))
            results["baselines"]["logreg (minilm)"] = logistic_baseline(plain)
        print(
            f"baselines in {time.perf_counter() - t0:.0f}s: "
            + json.dumps({k: v["weighted_f1"] for k, v in results["baselines"].items()}),
            flush=True,
        )
    best_ship = None
    for mode in args.modes:
        for variant in args.variants:
            runs = []
            for seed in args.seeds:
                vargs = base_parser.parse_args(
                    rest + VARIANTS[variant] + ["--context", mode, "--seed", str(seed)]
                )
                config = config_from_args(vargs)
                t0 = time.perf_counter()
                res = train_model(config, splits["train"], splits["dev"])
                y, p, _ = predict(res.model, splits["test"], res.config, res.speaker_ids)
                run = {
                    "variant": variant,
                    "mode": mode,
                    "seed": seed,
                    "dev_weighted_f1": round(res.best_dev_weighted_f1, 2),
                    "best_epoch": res.best_epoch,
                    "epochs_run": res.epochs_run,
                    "seconds_per_epoch": round(res.seconds_per_epoch, 3),
                    "test": compute_metrics(y, p, config.label_names),
                }
                runs.append(run)
                results["runs"].append(run)
                print(
                    f"{variant}/{mode}/seed{seed}: dev {run['dev_weighted_f1']:.2f} test "
                    f"{run['test']['weighted_f1']:.2f} ({time.perf_counter() - t0:.0f}s)",
                    flush=True,
                )
                if (
                    args.ship
                    and variant == "full"
                    and mode == "causal"
                    and (best_ship is None or run["dev_weighted_f1"] > best_ship[0])
                ):
                    best_ship = (run["dev_weighted_f1"], res, run)
            results["summary"][f"{variant}/{mode}"] = summarise(runs)
            results_path.write_text(json.dumps(results, indent=1))
    if args.ship and best_ship is not None:
        _, res, run = best_ship
        meta = {
            "data": "MELD text annotations (declare-lab/MELD data/MELD CSVs, commit 2d2011b): "
            "train to fit, dev for early stopping and for picking the seed, test reported",
            "protocol": f"{res.config.context_mode} context, speaker source "
            f"{res.config.speaker_source}, text features {res.config.text_feature} "
            "(frozen all-MiniLM-L6-v2); audio and visual absent (masked) in training",
            "seed": run["seed"],
            "best_epoch": run["best_epoch"],
            "dev_weighted_f1": run["dev_weighted_f1"],
            "test_metrics": {
                k: run["test"][k] for k in ("weighted_f1", "accuracy", "macro_f1", "per_class_f1")
            },
            "command": results["command"],
        }
        digest = save_checkpoint(args.ship, res.model, res.config, meta)
        Path(args.ship).with_suffix(".json").write_text(
            json.dumps(meta | {"sha256": digest}, indent=2) + "\n"
        )
        results["shipped"] = {"path": args.ship, "sha256": digest, "seed": run["seed"]}
        results_path.write_text(json.dumps(results, indent=1))
        print(f"shipped {args.ship} (seed {run['seed']}, sha256 {digest[:16]}…)", flush=True)
    table = markdown(results)
    Path(results_path.with_suffix(".md")).write_text(table + "\n")
    print(table)
    return 0


def _guarded_main(argv: list[str] | None = None) -> int:
    """Entry point: a missing --data (or any other user error) is one line, exit 2."""
    from mlsan.errors import UserFacingError

    try:
        return main(argv)
    except UserFacingError as exc:
        print(f"mlsan-ablate: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(_guarded_main())

"""``mlsan-engine``: export, check, build, calibrate, record, bench and info for ML-SAN engines.

Errors the user can fix print one line ``mlsan-engine: error: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mlsan.errors import UserFacingError, run_guarded

PROG = "mlsan-engine"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _meld_dir(args) -> Path:
    """--data, asked for only by the steps that read MELD (nothing defaults to a folder outside
    the package)."""
    if args.data is None:
        raise UserFacingError(
            "this step reads MELD; fix: pass --data MELD_DIR (the folder with *_sent_emo.csv)"
        )
    return args.data


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="ML-SAN checkpoint (default: the registry's 'mlsan' model)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="engine cache (default $MLSAN_ENGINE_CACHE or ~/.cache/mlsan-live/engines)",
    )
    p.add_argument(
        "--mode",
        choices=("causal", "bidirectional"),
        default=None,
        help="context mode to export (default: the checkpoint's)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Export, build, calibrate and benchmark ML-SAN engines."
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("export", help="checkpoint -> ONNX (+ .json sidecar)")
    _common(p)
    p.add_argument("--out", type=Path, default=None, help="ONNX path (default: in the cache)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")

    p = sub.add_parser("check", help="check an ONNX file against TensorRT 8.6+'s parser rules")
    _common(p)
    p.add_argument(
        "--onnx", type=Path, default=None, help="ONNX file (default: export the checkpoint)"
    )

    p = sub.add_parser("build", help="build (or reuse) the TensorRT engine for this GPU")
    _common(p)
    p.add_argument("--precision", choices=("fp16", "int8", "fp32"), default="fp16")
    p.add_argument(
        "--profile", default="1:32:128", help="context lengths MIN:OPT:MAX (default 1:32:128)"
    )
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--workspace-mib", type=int, default=1024)
    p.add_argument(
        "--force", action="store_true", help="rebuild even if a matching engine is cached"
    )

    p = sub.add_parser("record", help="write a recording of real model inputs from MELD")
    _common(p)
    p.add_argument("--data", type=Path, default=None, help="MELD CSV folder (*_sent_emo.csv)")
    p.add_argument("--split", default="train", choices=("train", "dev", "test"))
    p.add_argument("--dialogues", type=int, default=256, help="dialogues to sample (0 = all)")
    p.add_argument("--out", type=Path, required=True, help="recording .npz to write")

    p = sub.add_parser("calibrate", help="INT8: quantize for ONNX Runtime CPU and TensorRT (Q/DQ)")
    _common(p)
    p.add_argument("--data", type=Path, default=None, help="MELD CSV folder (*_sent_emo.csv)")
    p.add_argument(
        "--recording",
        type=Path,
        default=None,
        help="calibrate on this recording (from an app run) instead of MELD train",
    )
    p.add_argument(
        "--dialogues", type=int, default=256, help="MELD train dialogues to calibrate on"
    )
    p.add_argument(
        "--ravdess",
        type=Path,
        default=None,
        help="RAVDESS folder: also calibrate on training actors' voice clips and report voice "
        "agreement on the test actors (needed for a model that hears voice)",
    )
    p.add_argument(
        "--face",
        type=Path,
        default=None,
        help="FER2013 embeddings npz of the checkpoint's face encoder (python -m mlsan.fer2013 "
        "features): also calibrate on Training faces, report on PrivateTest (needed for a "
        "model that sees faces)",
    )
    p.add_argument(
        "--farfield",
        action="store_true",
        help="with --ravdess: also the simulated far-field copies (mlsan.farfield)",
    )
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    p.add_argument("--no-eval", action="store_true", help="skip the MELD test accuracy report")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("bench", help="all backends side by side: latency, throughput, accuracy")
    _common(p)
    p.add_argument("--data", type=Path, default=None, help="MELD CSV folder (*_sent_emo.csv)")
    p.add_argument("--contexts", default="8,32,128", help="context lengths to time")
    p.add_argument("--seconds", type=float, default=1.0, help="timing seconds per case")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads per backend (default 1, as the live app; 0 = library default)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("info", help="list cached ONNX files and engines with their sidecars")
    _common(p)
    return parser


def _cache(args) -> Path:
    from engines.cache import default_engine_cache

    return args.cache_dir or default_engine_cache()


def cmd_export(args) -> int:
    from engines.backend import resolve_checkpoint
    from engines.export import export_checkpoint
    from engines.versions import EXPORT_OPSET

    result = export_checkpoint(
        resolve_checkpoint(args.checkpoint),
        args.out,
        args.mode,
        _cache(args),
        args.opset or EXPORT_OPSET,
    )
    s = result.sidecar
    print(f"{result.onnx_path}  opset {s.opset}  {s.mode}  checkpoint {s.checkpoint_sha256[:12]}")
    for t in s.inputs + s.outputs:
        print(f"  {t.name:<14} {list(t.shape)} {t.dtype}")
    return 0


def cmd_check(args) -> int:
    from engines.backend import resolve_checkpoint
    from engines.export import cached_onnx
    from engines.model import load_model
    from engines.trt_compat import check_tensorrt_compat

    path = args.onnx
    if path is None:
        path = cached_onnx(
            load_model(resolve_checkpoint(args.checkpoint), args.mode), _cache(args)
        ).onnx_path
    report = check_tensorrt_compat(path)
    print(f"{path}: opset {report.opset}, ops {', '.join(report.ops)}")
    if report.ok:
        print("ok: TensorRT 8.6+ should parse this graph")
        return 0
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1


def cmd_build(args) -> int:
    from engines.backend import resolve_checkpoint
    from engines.model import load_model
    from engines.trt_build import ContextProfile, ensure_engine

    profile = ContextProfile.parse(args.profile, args.max_batch)
    loaded = load_model(resolve_checkpoint(args.checkpoint), args.mode, profile.max_context)
    path, sidecar, plan = ensure_engine(
        loaded, args.precision, profile, _cache(args), args.force, args.workspace_mib
    )
    print(f"{path}  ({plan.action}: {plan.reason})")
    return 0


def cmd_record(args) -> int:
    from calibration.recording import meld_recording
    from engines.backend import resolve_checkpoint
    from engines.model import load_model

    loaded = load_model(resolve_checkpoint(args.checkpoint), args.mode)
    rec = meld_recording(_meld_dir(args), loaded.config, args.split, args.dialogues)
    rec.save(args.out)
    print(f"{args.out}: {len(rec)} dialogues, {rec.utterances()} utterances from {rec.source}")
    return 0


def _voice_face_sources(args, ckpt: Path, config):
    """RAVDESS / FER2013 inputs for calibrating a model that hears voice or sees faces (None for
    a text-only model). Calibrating such a model on MELD text alone leaves the voice and face
    layers' ranges unmeasured (measured on the shipped multimodal model: INT8 agreed with float
    on 85-88 % of RAVDESS test clips and 87 % of FER2013 faces, against 99 % on MELD), so it is
    refused unless the data (or an app recording, which holds real voice and face inputs) is
    given."""
    from calibration.recording import RecordingError, voice_face_sources

    trained = set(config.trained_modalities)
    hears, sees = "audio" in trained, "visual" in trained
    if not (hears or sees):
        return None
    needs = (("--ravdess DIR", hears, args.ravdess), ("--face NPZ", sees, args.face))
    missing = [flag for flag, need, have in needs if need and not have]
    if missing and args.recording is None:
        raise RecordingError(
            f"{ckpt.name} reads {'voice' if hears else ''}{' and ' if hears and sees else ''}"
            f"{'faces' if sees else ''}; MELD text alone leaves those inputs uncalibrated "
            f"(INT8 would disagree with float on 12-15 % of them); fix: also pass "
            f"{' and '.join(missing)}, or --recording from an app run (--record-inputs)"
        )
    if args.ravdess is None and args.face is None:
        return None
    face = args.face if sees else None
    encoder = None
    if face is not None:  # which face encoder the model learned from (the checkpoint's meta)
        from mlsan.checkpoint import load_checkpoint

        encoder = load_checkpoint(ckpt).meta.get("face_encoder_sha256")
    return voice_face_sources(
        config,
        args.ravdess if hears else None,
        face,
        farfield=args.farfield,
        face_encoder_sha256=encoder,
    )


def cmd_calibrate(args) -> int:
    from calibration.accuracy import compare, meld_eval_set, predict, voice_face_eval_sets
    from calibration.quantize import cached_quantized
    from calibration.recording import Recording, meld_recording, merged, voice_face_recording
    from engines.backend import create_backend, resolve_checkpoint
    from engines.model import load_model

    ckpt = resolve_checkpoint(args.checkpoint)
    loaded = load_model(ckpt, args.mode)
    sources = _voice_face_sources(args, ckpt, loaded.config)
    if args.recording is not None:
        rec = Recording.load(args.recording)
    else:
        rec = meld_recording(_meld_dir(args), loaded.config, "train", args.dialogues)
        if sources is not None:
            rec = merged(rec, voice_face_recording(loaded.config, sources))
    out = {
        "checkpoint": str(ckpt),
        "calibration": {
            "source": rec.source,
            "dialogues": len(rec),
            "utterances": rec.utterances(),
        },
        "models": {},
    }
    made = {}
    for target in ("ort-cpu", "tensorrt"):
        result = cached_quantized(loaded, target, _cache(args), rec, args.method)
        made[target] = result
        out["models"][target] = {"onnx": str(result.onnx_path), **result.sidecar.quantization}
    if not args.no_eval:
        evalsets = [meld_eval_set(_meld_dir(args), loaded.config, "test")]
        if sources is not None:
            evalsets += voice_face_eval_sets(loaded.config, sources)
        common = {"cache_dir": args.cache_dir, "mode": args.mode, "providers": ("cpu",)}
        ref = create_backend("onnxruntime", ckpt, precision="fp32", **common)
        quantized = {
            target: create_backend(
                "onnxruntime", ckpt, precision="int8", onnx_path=result.onnx_path, **common
            )
            for target, result in made.items()
        }
        out["accuracy"] = []
        for evalset in evalsets:
            ref_probs = predict(ref.infer, evalset.samples)
            for target, q in quantized.items():
                acc = compare(
                    f"int8-{target}",
                    "onnxruntime-fp32",
                    predict(q.infer, evalset.samples),
                    ref_probs,
                    evalset.labels,
                )
                out["accuracy"].append({"eval": evalset.split, **acc.__dict__})
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for target, info in out["models"].items():
            print(
                f"{target}: {info['onnx']} "
                f"(ranges {'reused' if info['ranges_reused'] else 'computed'})"
            )
        for acc in out.get("accuracy", []):
            print(
                f"{acc['name']}: weighted F1 {acc['weighted_f1']:.2f} vs float "
                f"{acc['reference_weighted_f1']:.2f}, agreement {100 * acc['agreement']:.1f}% "
                f"on {acc['eval']} ({acc['utterances']} utterances)"
            )
    return 0


def cmd_bench(args) -> int:
    from engines.bench import BenchOptions, run_bench

    try:
        contexts = tuple(int(x) for x in args.contexts.split(","))
    except ValueError:
        raise UserFacingError(
            f"bad --contexts {args.contexts!r}; fix: give integers like 8,32,128"
        ) from None
    report = run_bench(
        BenchOptions(
            args.checkpoint,
            _meld_dir(args),
            contexts,
            args.seconds,
            cache_dir=args.cache_dir,
            threads=args.threads,
        )
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, r in report["backends"].items():
            lat = "  ".join(f"T={k}: {v:.2f} ms" for k, v in r["ms_per_utterance"].items())
            print(
                f"{name:<32} {lat}  {r['throughput_utterances_per_s']:.0f} utt/s  "
                f"wF1 {r['weighted_f1']:.2f}"
            )
        for name, why in report["skipped"].items():
            print(f"{name:<32} skipped: {why}")
    return 0


def cmd_info(args) -> int:
    from engines.sidecar import Sidecar

    cache = _cache(args)
    files = sorted(list(cache.glob("onnx/*.onnx")) + list(cache.glob("tensorrt/*.engine")))
    if not files:
        print(f"{cache}: empty")
    for f in files:
        try:
            s = Sidecar.read(f)
            extra = (
                f" trt {s.engine_key.get('tensorrt_version')} {s.engine_key.get('gpu_name')}"
                if s.engine_key
                else ""
            )
            print(
                f"{f}  {s.precision} opset {s.opset} {s.mode} "
                f"ckpt {s.checkpoint_sha256[:12]}{extra}"
            )
        except UserFacingError as exc:
            print(f"{f}  ({exc})")
    return 0


COMMANDS = {
    "export": cmd_export,
    "check": cmd_check,
    "build": cmd_build,
    "record": cmd_record,
    "calibrate": cmd_calibrate,
    "bench": cmd_bench,
    "info": cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"{PROG}: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("onnxruntime", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_guarded(PROG, lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())

"""``mlsan-live extract-meld CLIPS --out FILE.npz``: per-utterance audio/visual/voice features
of a MELD.Raw split folder (``dia{D}_utt{U}.mp4``), written as an mlsan feature store
(``mlsan/feature_store.py``) that ``mlsan-train --features DIR`` reads as ``DIR/{split}.npz``.

Visual: the 112 blendshape/pose statistics of the face that speaks (``edge_app/video``);
audio: the 88 log-mel/prosody statistics (``edge_app/audio/features.py``); voice: the
resemblyzer d-vector (``--no-voice`` to skip). A clip that cannot be read is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from mlsan.errors import UserFacingError

NAME = "extract-meld"
HELP = "extract per-utterance audio/visual/voice features from MELD.Raw clips to a feature store"

CLIP_NAME = re.compile(r"^dia(\d+)_utt(\d+)\.mp4$")


class ExtractError(UserFacingError):
    """The clip folder or the output cannot be used."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "clips", metavar="CLIPS", help="a MELD.Raw split folder with dia{D}_utt{U}.mp4 files"
    )
    parser.add_argument(
        "--out", required=True, help="feature store to write, e.g. features/train.npz"
    )
    parser.add_argument("--fps", type=float, default=10.0, help="frames a second to track (10)")
    parser.add_argument("--num-faces", type=int, default=4, help="most faces per frame (4)")
    parser.add_argument("--no-voice", action="store_true", help="skip the voice d-vectors")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    parser.add_argument(
        "--resume", action="store_true", help="keep the rows of an existing --out, skip them"
    )
    parser.add_argument(
        "--save-every", type=int, default=200, help="rewrite --out every N clips (200)"
    )
    parser.add_argument("--face-model", metavar="PATH", default=None)
    parser.add_argument("--voice-model", metavar="PATH", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")


def find_clips(folder: Path) -> list[tuple[int, int, Path]]:
    """(dialogue id, utterance id, path) of every clip under ``folder``, sorted."""
    if not folder.is_dir():
        raise ExtractError(
            f"clip folder {folder} does not exist; fix: give a MELD.Raw split folder, e.g. "
            "MELD.Raw/train/train_splits"
        )
    clips = []
    for path in folder.rglob("*.mp4"):
        match = CLIP_NAME.match(path.name)  # "._dia0_utt0.mp4" (macOS litter) does not match
        if match:
            clips.append((int(match.group(1)), int(match.group(2)), path))
    if not clips:
        raise ExtractError(
            f"no dia{{D}}_utt{{U}}.mp4 clips under {folder}; fix: give the folder MELD.Raw "
            "unpacks each split into (train_splits, dev_splits_complete, "
            "output_repeated_splits_test)"
        )
    return sorted(clips)


def run(args: argparse.Namespace) -> int:
    from edge_app.video.clip_features import ClipFeatureExtractor, ClipOptions
    from edge_app.video.faces import LandmarkerOptions
    from mlsan.feature_store import FeatureStoreWriter, read_feature_store
    from mlsan.registry import default_registry

    clips = find_clips(Path(args.clips))
    if args.limit is not None:
        clips = clips[: args.limit]
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ExtractError(f"--out must end in .npz (numpy.savez adds it), got {out}")
    registry = default_registry({"face": args.face_model, "voice": args.voice_model})
    options = ClipOptions(
        target_fps=args.fps,
        landmarker=LandmarkerOptions(
            model_path=registry.resolve("face").path, num_faces=args.num_faces
        ),
    )
    embedder = None
    if not args.no_voice:
        from edge_app.audio.voice import VoiceEmbedder

        embedder = VoiceEmbedder(weights=registry.resolve("voice").path)
    extractor = ClipFeatureExtractor(options, embedder)
    writer = FeatureStoreWriter(
        extractors={
            "visual": f"edge_app.video mediapipe face_landmarker, {args.fps:g} fps, "
            "speaker = most mouth activity",
            "audio": "edge_app.audio.features.audio_features",
            "voice": None if args.no_voice else "resemblyzer GE2E (edge_app.audio.voice)",
        }
    )
    done: set[tuple[int, int]] = set()
    if args.resume and out.is_file():
        store = read_feature_store(out)
        for d, u in zip(store.dialogue_id.tolist(), store.utterance_id.tolist(), strict=True):
            row = store.lookup(d, u)
            writer.add(d, u, audio=row.audio, visual=row.visual, voice=row.voice)
            done.add((d, u))
    counts = {"clips": len(clips), "extracted": 0, "skipped_done": 0, "failed": 0}
    counts |= {"visual_present": 0, "audio_present": 0, "voice_present": 0}
    failures: list[str] = []
    started = time.perf_counter()
    for n, (d, u, path) in enumerate(clips, start=1):
        if (d, u) in done:
            counts["skipped_done"] += 1
            continue
        try:
            clip = extractor.extract(path)
        except UserFacingError as exc:
            counts["failed"] += 1
            failures.append(f"{path.name}: {exc}")
            print(f"{NAME}: skipped {path.name}: {exc}", file=sys.stderr)
            continue
        visual = None if clip.visual.absent else clip.visual.vector
        writer.add(d, u, audio=clip.audio, visual=visual, voice=clip.voice)
        counts["extracted"] += 1
        counts["visual_present"] += visual is not None
        counts["audio_present"] += clip.audio is not None
        counts["voice_present"] += clip.voice is not None
        if args.save_every and n % args.save_every == 0:
            writer.save(out)
    if len(writer) == 0:
        raise ExtractError(f"no clip under {args.clips} could be read; see the messages above")
    writer.save(out)
    summary = {
        "out": str(out),
        "rows": len(writer),
        **counts,
        "seconds": round(time.perf_counter() - started, 1),
        "failures": failures[:20],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{out}: {summary['rows']} rows ({counts['extracted']} extracted, "
            f"{counts['failed']} failed, {counts['skipped_done']} kept) in {summary['seconds']} s; "
            f"visual in {counts['visual_present']}, audio in {counts['audio_present']}, "
            f"voice in {counts['voice_present']}"
        )
    return 0 if counts["failed"] == 0 else 1

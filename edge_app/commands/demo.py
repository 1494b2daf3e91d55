"""``mlsan-live demo``: replay the conversation that ships inside the package.

A real 30 s, two-person English conversation (``edge_app/demo/sample.wav``, MIT, see
``edge_app/demo/README.md``) goes through the whole live pipeline, exactly as
``mlsan-live --audio FILE`` would: it needs no camera, microphone, data folder or checkout, so
it is the first thing to run after ``pip install``. It takes every live-run flag but the sources
(``--headless --events -`` for JSON Lines on stdout, ``--fast``, ``--backend``, ...). It saves
no speaker gallery unless ``--gallery FILE`` is given: the demo's two voices should not become
people the app greets in your own sessions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlsan.errors import UserFacingError

NAME = "demo"
HELP = "replay the packaged two-person conversation (30 s) through the live pipeline"

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
SAMPLE = DEMO_DIR / "sample.wav"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_app import live

    live.add_arguments(parser, sources=False)


def sample_path() -> Path:
    """The packaged recording, checked against its ``.sha256`` (one-line error otherwise)."""
    from mlsan.registry import file_sha256

    sidecar = SAMPLE.with_name(SAMPLE.name + ".sha256")
    fix = "fix: reinstall mlsan-live (pip install --force-reinstall mlsan-live)"
    if not SAMPLE.is_file() or not sidecar.is_file():
        raise UserFacingError(f"the demo recording {SAMPLE} is not installed; {fix}")
    expected = (sidecar.read_text().split() or [""])[0].lower()
    if file_sha256(SAMPLE) != expected:
        raise UserFacingError(f"the demo recording {SAMPLE} is corrupt (sha256 mismatch); {fix}")
    return SAMPLE


def run(args: argparse.Namespace) -> int:
    from edge_app import live

    args.audio = str(sample_path())
    args.camera = args.video = args.mic = None
    if args.gallery is None:
        args.no_gallery = True
    return live.run(args)

"""The live run: flags and entry point (the runtime lives in ``edge_app.runtime``)."""

from __future__ import annotations

import argparse

from mlsan.errors import UserFacingError
from mlsan.registry import MODEL_SPECS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("sources")
    src.add_argument("--camera", type=int, metavar="INDEX", help="webcam index (OpenCV)")
    src.add_argument("--video", metavar="FILE", help="replay a video file (its audio too)")
    src.add_argument("--audio", metavar="FILE", help="replay an audio file (wav/flac/...)")
    out = parser.add_argument_group("output")
    out.add_argument("--headless", action="store_true", help="no terminal UI")
    out.add_argument("--events", metavar="FILE", help="JSON Lines events ('-' for stdout)")
    models = parser.add_argument_group("models")
    for spec in MODEL_SPECS:
        models.add_argument(spec.flag, metavar="PATH", help=f"explicit path of the {spec.role}")


def run(args: argparse.Namespace) -> int:
    raise UserFacingError("the live runtime is not built yet")

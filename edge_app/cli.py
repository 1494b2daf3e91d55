"""``mlsan-live``: the live app (default) and its subcommands.

``mlsan-live [run flags]`` runs the live pipeline; ``mlsan-live SUBCOMMAND ...`` runs a tool
(``models``, ...). Errors the user can fix print one line ``mlsan-live: error: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from edge_app.commands import audio_devices as audio_devices_command
from edge_app.commands import demo as demo_command
from edge_app.commands import diarize as diarize_command
from edge_app.commands import extract_meld as extract_meld_command
from edge_app.commands import faces as faces_command
from edge_app.commands import models as models_command
from edge_app.commands import watch as watch_command
from mlsan.errors import run_guarded

# Each module: NAME, HELP, add_arguments(parser), run(args) -> int.
COMMANDS: tuple[ModuleType, ...] = (
    demo_command,
    models_command,
    faces_command,
    extract_meld_command,
    diarize_command,
    audio_devices_command,
    watch_command,
)

PROG = "mlsan-live"


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _subcommand_epilog() -> str:
    lines = ["subcommands (mlsan-live SUBCOMMAND --help for their flags):"]
    lines += [f"  {cmd.NAME:<10} {cmd.HELP}" for cmd in COMMANDS]
    return "\n".join(lines)


def build_live_parser() -> argparse.ArgumentParser:
    """Flags of the live run (the default command)."""
    parser = OneLineArgumentParser(
        prog=PROG,
        description="Watch and listen to a conversation and show how each person feels, live.",
        epilog=_subcommand_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from edge_app import live

    live.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenCV's FFmpeg prints its own lines ("moov atom not found") to the terminal before our
    # one-line error about the same file; keep those quiet (set before cv2 is imported).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    argv = list(sys.argv[1:] if argv is None else argv)
    by_name = {cmd.NAME: cmd for cmd in COMMANDS}
    if argv and argv[0] in by_name:
        cmd = by_name[argv[0]]
        parser = OneLineArgumentParser(prog=f"{PROG} {cmd.NAME}", description=cmd.HELP)
        cmd.add_arguments(parser)
        cmd_args = parser.parse_args(argv[1:])
        return run_guarded(PROG, lambda: cmd.run(cmd_args))
    from edge_app import live

    args = build_live_parser().parse_args(argv)
    return run_guarded(PROG, lambda: live.run(args))


if __name__ == "__main__":
    sys.exit(main())

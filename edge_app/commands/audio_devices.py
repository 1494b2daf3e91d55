"""``mlsan-live audio-devices``: the microphones PortAudio sees (index, name, channels, rate)."""

from __future__ import annotations

import argparse
import json

NAME = "audio-devices"
HELP = "list microphones (use the index or a name with --mic)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from edge_app.audio.sources import list_input_devices

    devices = list_input_devices()
    if args.json:
        print(json.dumps({"devices": [asdict(d) for d in devices]}))
        return 0
    if not devices:
        print("no microphone found (PortAudio lists no input device)")
        return 1
    for d in devices:
        print(
            f"{d.index:>3}  {d.name}  ({d.max_input_channels} ch, {d.default_sample_rate:.0f} Hz)"
        )
    return 0

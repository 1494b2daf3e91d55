"""``mlsan-live models``: where each model was found, its size and sha256, or why it is missing."""

from __future__ import annotations

import argparse
import json

from mlsan.registry import MODEL_SPECS, ModelRegistry

NAME = "models"
HELP = "list every model the app uses: where it was found, size, sha256, or how to fix it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for spec in MODEL_SPECS:
        parser.add_argument(
            spec.flag, metavar="PATH", default=None, help=f"explicit path of the {spec.role}"
        )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def overrides_from_args(args: argparse.Namespace) -> dict[str, str | None]:
    """Model path flags (``--asr-model`` ...) as registry overrides."""
    return {
        spec.name: getattr(args, spec.flag.lstrip("-").replace("-", "_"), None)
        for spec in MODEL_SPECS
    }


def run(args: argparse.Namespace) -> int:
    registry = ModelRegistry(overrides=overrides_from_args(args))
    statuses = registry.statuses()
    if args.json:
        print(
            json.dumps(
                {
                    "cache_dir": str(registry.cache_dir),
                    "models": [
                        {
                            "name": s.spec.name,
                            "role": s.spec.role,
                            "found": s.found is not None,
                            "source": s.found.source if s.found else None,
                            "path": str(s.found.path) if s.found else None,
                            "size_bytes": s.size_bytes,
                            "sha256": s.sha256,
                            "problem": s.problem,
                        }
                        for s in statuses
                    ],
                }
            )
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"mlsan-live models (cache: {registry.cache_dir})")
        for column in ("model", "role", "status", "source", "size", "sha256", "path / fix"):
            table.add_column(column, overflow="fold")
        for s in statuses:
            if s.found is None:
                status = "[red]missing[/red]"
            elif s.problem:
                status = "[red]checksum mismatch[/red]"
            else:
                status = "[green]found[/green]"
            table.add_row(
                s.spec.name,
                s.spec.role,
                status,
                s.found.source if s.found else "-",
                f"{s.size_bytes / 1e6:.1f} MB" if s.size_bytes is not None else "-",
                s.sha256[:16] if s.sha256 else "-",
                s.problem or str(s.found.path if s.found else ""),
            )
        Console(width=200).print(table)
    return 0 if all(s.problem is None for s in statuses) else 1

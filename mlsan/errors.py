"""Errors a user can fix.

Every exception here carries a one-line message that says what is wrong and how to fix it; the
CLIs print ``str(exc)`` on one line and exit non-zero. Other packages derive their own errors
from :class:`UserFacingError` so the CLI handles them the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserFacingError(Exception):
    """An error whose message is one line: what went wrong, then how to fix it."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep the promise of one line even if a caller formats a multi-line detail.
        super().__init__(" ".join(str(message).split()))


class ModelNotFoundError(UserFacingError):
    """A model the app needs is neither at the given path, in the cache, nor in a package."""


class ModelChecksumError(UserFacingError):
    """A model file exists but its sha256 is not the one the registry expects."""


class CheckpointError(UserFacingError):
    """A checkpoint file is missing, corrupt, or not an ML-SAN checkpoint."""


def run_guarded(prog: str, func: Callable[[], int | None]) -> int:
    """Run a CLI's work: a UserFacingError becomes one ``prog: error: ...`` line and its exit code;
    Ctrl-C becomes exit 130."""
    try:
        return int(func() or 0)
    except UserFacingError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130

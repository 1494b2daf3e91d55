"""Where the project keeps per-user caches (models, text features, TensorRT engines)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(kind: str, env_var: str) -> Path:
    """``$env_var`` if set, else ``$XDG_CACHE_HOME/mlsan-live/<kind>`` (``~/.cache/...``)."""
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mlsan-live" / kind

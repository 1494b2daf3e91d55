"""Self-describing ML-SAN checkpoints: weights + config + label names + feature dims + meta.

File format (``torch.save`` of a plain dict, loadable with ``weights_only=True``)::

    {"format": "mlsan-checkpoint", "version": 1,
     "config": MLSANConfig.to_dict(),          # all shapes, switches, label names
     "label_names": [...], "trained_modalities": [...],
     "feature_dims": {"text": 384, "audio": 88, "visual": 112, "speaker": 385},
     "state_dict": {...},                       # MLSAN (or MLSANWithSpeakerIds) weights
     "meta": {...}}                             # JSON-able: data, protocol, seed, metrics...

``save_checkpoint`` also writes ``<file>.sha256`` (the registry checks it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlsan.config import ConfigError, MLSANConfig
from mlsan.errors import CheckpointError
from mlsan.model import build_model
from mlsan.registry import file_sha256, zip_crc_problem

FORMAT = "mlsan-checkpoint"
VERSION = 1


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A loaded checkpoint; ``model`` is in eval mode on CPU."""

    model: nn.Module
    config: MLSANConfig
    label_names: tuple[str, ...]
    trained_modalities: tuple[str, ...]
    feature_dims: dict[str, int]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None


def save_checkpoint(
    path: str | Path, model: nn.Module, config: MLSANConfig, meta: dict[str, Any] | None = None
) -> str:
    """Write the checkpoint and its ``.sha256`` sidecar atomically; returns the hex digest."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "label_names": list(config.label_names),
        "trained_modalities": list(config.trained_modalities),
        "feature_dims": {
            "text": config.text_dim,
            "audio": config.audio_dim,
            "visual": config.visual_dim,
            "speaker": config.speaker_dim,
        },
        # Plain tensors, detached and contiguous, so the file is small and portable.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    return save_payload(path, payload)


def save_payload(path: str | Path, payload: dict[str, Any]) -> str:
    """``torch.save`` atomically (temp file + rename) and write ``<file>.sha256``; returns the
    hex digest. Every checkpoint this project ships (ML-SAN, face encoder) is written here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    digest = file_sha256(path)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def load_checkpoint(path: str | Path, verify: bool = True) -> LoadedCheckpoint:
    """Load and rebuild the model; raises ``CheckpointError`` (one line with the fix)."""
    path = Path(path)
    fix = "fix: pass --checkpoint with a file written by mlsan-train, or retrain with mlsan-train"
    if not path.is_file():
        raise CheckpointError(f"ML-SAN checkpoint {path} does not exist; {fix}")
    digest = file_sha256(path)
    sidecar = path.with_name(path.name + ".sha256")
    if verify and sidecar.is_file():
        expected = (sidecar.read_text().split() or [""])[0].lower()
        if expected and expected != digest:
            raise CheckpointError(
                f"ML-SAN checkpoint {path} has sha256 {digest[:16]}…, its sidecar says "
                f"{expected[:16]}… (corrupt or replaced); {fix}"
            )
    # torch.load does not check the zip's CRCs: a flipped byte would load and change results.
    if verify and (problem := zip_crc_problem(path)) is not None:
        raise CheckpointError(f"ML-SAN checkpoint {path} is corrupt ({problem}); {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise CheckpointError(
            f"{path} is not a readable ML-SAN checkpoint ({type(exc).__name__}); {fix}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not an ML-SAN checkpoint; {fix}")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has ML-SAN checkpoint version {payload.get('version')}, this code reads "
            f"{VERSION}; {fix}"
        )
    try:
        config = MLSANConfig.from_dict(payload["config"])
        model = build_model(config)
        model.load_state_dict(payload["state_dict"])
    except (ConfigError, KeyError, RuntimeError, TypeError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot rebuild the ML-SAN model ({detail}); {fix}"
        ) from None
    model.eval()
    return LoadedCheckpoint(
        model=model,
        config=config,
        label_names=tuple(payload.get("label_names", config.label_names)),
        trained_modalities=tuple(payload.get("trained_modalities", config.trained_modalities)),
        feature_dims=dict(payload.get("feature_dims", {})),
        meta=dict(payload.get("meta", {})),
        path=path,
        sha256=digest,
    )

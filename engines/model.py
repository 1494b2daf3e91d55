"""Load an ML-SAN checkpoint as the module every backend and export runs.

The wrapper turns ``MLSAN.forward -> (logits, gate)`` into ``(probs, gate)`` so that softmax is part
of the graph: every backend then returns the same thing and TensorRT fuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engines.types import INPUT_NAMES, ModelSignature


class ProbsAndGate(nn.Module):
    """``(text, audio, visual, modality_mask, speaker, context_mask) -> (probs, gate)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, text, audio, visual, modality_mask, speaker, context_mask):
        logits, gate = self.model(text, audio, visual, modality_mask, speaker, context_mask)
        return torch.softmax(logits, dim=-1), gate


@dataclass(frozen=True, eq=False)
class LoadedModel:
    module: ProbsAndGate  # eval mode, CPU, float32
    signature: ModelSignature
    checkpoint_path: Path
    checkpoint_sha256: str
    mode: str  # causal | bidirectional
    config: object  # mlsan.config.MLSANConfig


def checkpoint_sha256(path: Path) -> str:
    from mlsan.registry import digest_path

    return digest_path(Path(path))


def load_model(
    checkpoint_path: str | Path, mode: str | None = None, max_context: int = 128
) -> LoadedModel:
    """The checkpoint's model wrapped as :class:`ProbsAndGate` (CheckpointError if unreadable).

    ``mode`` ("causal"/"bidirectional") overrides the checkpoint's context mode; the weights are
    the same for both (the mode only changes the attention mask).
    """
    from mlsan.checkpoint import load_checkpoint

    path = Path(checkpoint_path)
    loaded = load_checkpoint(path)
    config = loaded.config
    model = loaded.model
    if mode is not None and mode != config.context_mode:
        model = _with_mode(loaded, mode)
        config = config.with_(context_mode=mode)
    model = model.float().eval().cpu()
    signature = ModelSignature(
        text_dim=int(config.text_dim),
        audio_dim=int(config.audio_dim),
        visual_dim=int(config.visual_dim),
        speaker_dim=int(config.speaker_dim),
        label_names=tuple(loaded.label_names),
        max_context=max_context,
    )
    return LoadedModel(
        module=ProbsAndGate(model).eval(),
        signature=signature,
        checkpoint_path=path,
        checkpoint_sha256=checkpoint_sha256(path),
        mode=config.context_mode,
        config=config,
    )


def _with_mode(loaded, mode: str) -> nn.Module:
    """The same weights in a model built for the other context mode."""
    from mlsan.model import build_model

    config = loaded.config.with_(context_mode=mode)
    model = build_model(config)
    model.load_state_dict(loaded.model.state_dict())
    return model


def example_tensors(signature: ModelSignature, batch: int = 2, context: int = 8, seed: int = 0):
    """Random but well-formed inputs (all modalities present) as a tuple in INPUT_NAMES order."""
    gen = torch.Generator().manual_seed(seed)
    dims = signature.feature_dims()
    out = []
    for name in INPUT_NAMES:
        if name == "context_mask":
            out.append(torch.ones(batch, context))
        elif name == "modality_mask":
            out.append(torch.ones(batch, context, 3))
        else:
            out.append(torch.randn(batch, context, dims[name], generator=gen))
    return tuple(out)

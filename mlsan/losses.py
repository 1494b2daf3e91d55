"""Training losses: a long-tail classification loss and the speaker-consistency loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mlsan.config import MLSANConfig


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> torch.Tensor:
    """weight_c ∝ (1 / freq_c) ** power, scaled so the mean weight over the samples is 1."""
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64)
    w = (1.0 / np.maximum(counts, 1.0)) ** power
    w = w / (w[labels[labels >= 0]].mean())
    return torch.tensor(w, dtype=torch.float32)


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, config: MLSANConfig, weights: torch.Tensor | None
) -> torch.Tensor:
    """logits [N,C], labels [N] (no padding) -> scalar. ``ce`` ignores ``weights``."""
    if config.loss == "ce":
        return F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
    if config.loss == "balanced":
        return F.cross_entropy(
            logits, labels, weight=weights, label_smoothing=config.label_smoothing
        )
    # focal: down-weights easy (mostly neutral) examples; class weights as alpha.
    logp = F.log_softmax(logits, dim=-1)
    logp_true = logp.gather(1, labels[:, None]).squeeze(1)
    focal = (1.0 - logp_true.exp()).clamp(min=0.0) ** config.focal_gamma
    alpha = weights[labels] if weights is not None else 1.0
    return -(alpha * focal * logp_true).mean()


def speaker_consistency_loss(
    latent: torch.Tensor, speaker: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Supervised contrastive loss that keeps each speaker's latent features consistent.

    latent [N,H], speaker [N] (global speaker index), labels [N]. For an anchor utterance, the
    positives are the *same speaker's* other utterances with the same emotion; every other
    utterance in the batch is a negative. So a speaker's expressions of one emotion cluster,
    apart from their other emotions and from other speakers. Anchors without a positive are
    skipped; returns 0 when there are none.
    """
    n = latent.shape[0]
    if n < 2:
        return latent.sum() * 0.0
    z = F.normalize(latent, dim=-1)
    sim = z @ z.t() / temperature  # [N,N]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, -1e4)
    pos = (speaker[:, None] == speaker[None, :]) & (labels[:, None] == labels[None, :]) & ~eye
    has_pos = pos.any(1)
    if not bool(has_pos.any()):
        return latent.sum() * 0.0
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    mean_pos = (log_prob * pos).sum(1) / pos.sum(1).clamp(min=1)
    return -(mean_pos[has_pos]).mean()

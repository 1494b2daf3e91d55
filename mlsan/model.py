"""ML-SAN: Multi-Level Speaker-Adaptive Network (arXiv 2604.25383), tensor-in / tensor-out.

Per utterance: text, audio and visual feature vectors (any may be missing, ``modality_mask``
says which) and a continuous speaker representation. Three levels of speaker adaptation:

1. input level: FiLM. The speaker code predicts per-feature (gamma, beta) that calibrate the
   audio and visual features (and optionally text) before fusion: ``x * (1 + gamma) + beta``;
   initialised to the identity.
2. interaction level: gating. From the speaker code and the encoded modalities, a softmax over
   the *present* modalities gives each modality's trust weight (missing -> exactly 0). The
   weights are the model's second output so the live UI can show them.
3. output level: a speaker-consistency loss on the latent (``mlsan.losses``), used in training.

With ``speaker_source == "enroll"`` the speaker tensor is the open-set enrollment summary
``[mean voice feature of the speaker's K earlier utterances (Da), log(1+K), mean text feature
(Dt), log(1+K_text)]`` (``mlsan.speaker.EnrollHistory``). The model standardises the voice
mean like the voice input (``feature_norm`` buffers, set from the training data) and, with
``film_direct``, FiLM adds a per-feature shift ``-alpha * rel(K) * mean`` to the voice input,
where ``rel(K) = sigmoid(a log(1+K) + b)`` (0 for K = 0) is learned: the fixed "centre on the
speaker's mean" rule is the special case alpha = 1, rel = 1, and training with random K per
sample teaches how far to trust a mean of 1, 2, ... clips.

A dialogue-context encoder (pre-LN self-attention with a learned relative-position bias) reads
each utterance in the light of the others: ``causal`` (only earlier utterances: what the live
app can do) or ``bidirectional`` (the whole dialogue). Padding (``context_mask`` 0) is never
attended to, so outputs at real positions do not depend on how much padding follows.

``MLSAN.forward`` takes and returns tensors only, so it exports to ONNX. The benchmark's
learned per-speaker-id embedding is the wrapper ``MLSANWithSpeakerIds`` (ids -> table -> the
same speaker tensor).
"""

from __future__ import annotations

import torch
from torch import nn

from mlsan.config import MODALITIES, MLSANConfig

_NEG = -1e4  # additive mask value; finite so fully masked rows never produce NaN


class FiLM(nn.Module):
    """Speaker code [B,T,Hs] -> (gamma, beta) [B,T,D]; identity at initialisation."""

    def __init__(self, speaker_hidden: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(speaker_hidden, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(s).chunk(2, dim=-1)
        return x * (1.0 + gamma) + beta


class DirectShift(nn.Module):
    """Count-gated per-feature shift by the speaker's mean voice: -alpha * rel(K) * mean."""

    def __init__(self, dim: int, init: float = 0.0, rel_init=(1.0, -1.0)) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((dim,), float(init)))  # 0 = identity
        self.rel = nn.Linear(1, 1)  # rel(K) = sigmoid(a * log(1+K) + b)
        nn.init.constant_(self.rel.weight, float(rel_init[0]))
        nn.init.constant_(self.rel.bias, float(rel_init[1]))

    def forward(self, mean: torch.Tensor, log_count: torch.Tensor) -> torch.Tensor:
        rel = torch.sigmoid(self.rel(log_count)) * (log_count > 0).to(mean.dtype)
        return -self.alpha * rel * mean


class ModalityEncoder(nn.Module):
    """[B,T,D] -> [B,T,H]."""

    def __init__(self, dim: int, hidden: int, input_dropout: float, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(input_dropout),
            nn.Linear(dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ContextLayer(nn.Module):
    """One pre-LN self-attention + feed-forward block over the utterances of a dialogue."""

    def __init__(self, hidden: int, heads: int, max_distance: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.max_distance = max_distance
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        # One learned bias per head and clipped signed distance i - j in [-R, R].
        self.rel_bias = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1))
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, 2 * hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x [B,T,H]; allowed [B,T,T] float (1 = query i may attend key j)."""
        b, t, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q = q.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)  # [B,h,T,d]
        k = k.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) * (self.head_dim**-0.5)  # [B,h,T,T]
        pos = torch.arange(t, device=x.device)
        dist = (pos.unsqueeze(1) - pos.unsqueeze(0)).clamp(-self.max_distance, self.max_distance)
        scores = scores + self.rel_bias[:, dist + self.max_distance].unsqueeze(0)
        scores = scores + (1.0 - allowed.unsqueeze(1)) * _NEG
        attn = torch.softmax(scores, dim=-1)
        ctx = (attn @ v).transpose(1, 2).reshape(b, t, h)
        x = x + self.drop(self.out(ctx))
        return x + self.drop(self.ffn(self.norm2(x)))


class MLSAN(nn.Module):
    """The ML-SAN network; see the module docstring. Shapes come from ``MLSANConfig``."""

    def __init__(self, config: MLSANConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        dims = c.modality_dims()
        if c.feature_norm:  # set from the training data (mlsan.joint); identity until then
            for m in ("audio", "visual"):
                self.register_buffer(f"{m}_mu", torch.zeros(dims[m]))
                self.register_buffer(f"{m}_sd", torch.ones(dims[m]))
        self.direct = (
            DirectShift(c.audio_dim, c.direct_init, c.direct_rel_init)
            if (c.film_direct and c.use_film)
            else None
        )
        self.speaker_proj = nn.Sequential(
            nn.Linear(c.speaker_dim, c.speaker_hidden), nn.LayerNorm(c.speaker_hidden), nn.GELU()
        )
        film_modalities = [m for m in ("audio", "visual") if c.use_film]
        if c.use_film_text:
            film_modalities.insert(0, "text")
        self.film_modalities = tuple(film_modalities)
        self.film = nn.ModuleDict({m: FiLM(c.speaker_hidden, dims[m]) for m in film_modalities})
        self.encoders = nn.ModuleDict(
            {
                m: ModalityEncoder(
                    dims[m],
                    c.hidden,
                    c.audio_input_dropout
                    if (m == "audio" and c.audio_input_dropout is not None)
                    else c.input_dropout,
                    c.dropout,
                )
                for m in MODALITIES
            }
        )
        self.gate_net = nn.Sequential(
            nn.Linear(c.speaker_hidden + 3 * c.hidden, c.hidden), nn.GELU(), nn.Linear(c.hidden, 3)
        )
        self.speaker_to_hidden = nn.Linear(c.speaker_hidden, c.hidden)
        self.context = nn.ModuleList(
            ContextLayer(c.hidden, c.context_heads, c.max_relative_distance, c.dropout)
            for _ in range(c.context_layers if c.use_context else 0)
        )
        self.context_norm = nn.LayerNorm(c.hidden)
        self.head = nn.Sequential(
            nn.Dropout(c.dropout),
            nn.Linear(2 * c.hidden, c.hidden),
            nn.GELU(),
            nn.Dropout(c.dropout),
        )
        self.classifier = nn.Linear(c.hidden, c.num_classes)

    def _attention_mask(self, context_mask: torch.Tensor) -> torch.Tensor:
        """[B,T] -> [B,T,T] float: key is real, (causal: key not in the future), or i == j."""
        t = context_mask.shape[1]
        allowed = context_mask.unsqueeze(1).expand(-1, t, -1)
        eye = torch.eye(t, device=context_mask.device, dtype=context_mask.dtype)
        if self.config.causal:
            allowed = allowed * torch.tril(torch.ones_like(eye))
        return torch.maximum(allowed, eye.unsqueeze(0))

    def forward_with_latent(
        self,
        text: torch.Tensor,
        audio: torch.Tensor,
        visual: torch.Tensor,
        modality_mask: torch.Tensor,
        speaker: torch.Tensor,
        context_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``forward``, plus the latent [B,T,H] the speaker-consistency loss acts on."""
        c = self.config
        if not c.use_speaker:
            speaker = torch.zeros_like(speaker)
        shift = None
        if c.feature_norm:
            audio = (audio - self.audio_mu) / self.audio_sd
            visual = (visual - self.visual_mu) / self.visual_sd
        if c.speaker_source == "enroll":
            a = c.audio_dim
            log_k = speaker[..., a : a + 1]
            mean = speaker[..., :a]
            if c.feature_norm:  # the mean of standardised features = standardised mean
                mean = (mean - self.audio_mu) / self.audio_sd * (log_k > 0).to(mean.dtype)
            if self.direct is not None:
                shift = self.direct(mean, log_k)
            speaker = torch.cat([mean, speaker[..., a:]], dim=-1)
        s = self.speaker_proj(speaker)  # [B,T,Hs]
        inputs = {"text": text, "audio": audio, "visual": visual}
        encoded = []
        for i, name in enumerate(MODALITIES):
            x = inputs[name]
            if name in self.film_modalities:
                x = self.film[name](x, s)
                if name == "audio" and shift is not None:
                    x = x + shift
            present = modality_mask[..., i : i + 1]
            if self.training and not bool(present.any()):
                # Training speed-up only (eval/export always runs the encoder): a modality absent
                # from the whole batch encodes to exactly zero anyway.
                encoded.append(x.new_zeros(x.shape[:-1] + (c.hidden,)))
                continue
            encoded.append(self.encoders[name](x * present) * present)
        h = torch.stack(encoded, dim=2)  # [B,T,3,H]
        if c.use_gate:
            s_gate = s if c.use_gate_speaker else torch.zeros_like(s)
            logits_g = self.gate_net(torch.cat([s_gate, h.flatten(2)], dim=-1))  # [B,T,3]
            logits_g = logits_g + (1.0 - modality_mask) * _NEG
            gate = torch.softmax(logits_g, dim=-1) * modality_mask
        else:
            gate = modality_mask
        gate = gate / gate.sum(-1, keepdim=True).clamp(min=1e-6)  # all missing -> all 0
        fused = (gate.unsqueeze(-1) * h).sum(2)  # [B,T,H]
        if c.use_speaker:
            fused = fused + self.speaker_to_hidden(s)
        ctx = fused
        if len(self.context):
            allowed = self._attention_mask(context_mask)
            if self.training and c.context_key_dropout > 0:
                # Regulariser: hide random other utterances from each query (never itself).
                keep = (torch.rand_like(allowed) >= c.context_key_dropout).float()
                eye = torch.eye(allowed.shape[-1], dtype=allowed.dtype, device=allowed.device)
                allowed = allowed * torch.maximum(keep, eye)
            for layer in self.context:
                ctx = layer(ctx, allowed)
        ctx = self.context_norm(ctx)
        # The head sees the utterance itself and its context reading side by side.
        latent = self.head(torch.cat([fused, ctx], dim=-1))
        return self.classifier(latent), gate, latent

    def forward(
        self,
        text: torch.Tensor,
        audio: torch.Tensor,
        visual: torch.Tensor,
        modality_mask: torch.Tensor,
        speaker: torch.Tensor,
        context_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B,T,Dt], audio [B,T,Da], visual [B,T,Dv], modality_mask [B,T,3] (1 = present),
        speaker [B,T,Ds], context_mask [B,T] (1 = real utterance) -> (logits [B,T,C],
        gate [B,T,3] modality trust weights, 0 for missing modalities)."""
        logits, gate, _ = self.forward_with_latent(
            text, audio, visual, modality_mask, speaker, context_mask
        )
        return logits, gate


class MLSANWithSpeakerIds(nn.Module):
    """The benchmark form: speaker ids [B,T] long -> learned table -> ``MLSAN``'s speaker tensor.

    Id 0 is "unknown speaker" (speakers not seen in training map there).
    """

    def __init__(self, config: MLSANConfig) -> None:
        super().__init__()
        if config.num_speaker_ids < 1:
            raise ValueError("num_speaker_ids must be >= 1 for the id speaker form")
        self.config = config
        self.table = nn.Embedding(config.num_speaker_ids, config.speaker_dim)
        nn.init.normal_(self.table.weight, std=0.1)
        self.core = MLSAN(config)

    def speaker_tensor(self, speaker_ids: torch.Tensor) -> torch.Tensor:
        return self.table(speaker_ids)

    def forward_with_latent(self, text, audio, visual, modality_mask, speaker_ids, context_mask):
        speaker = self.speaker_tensor(speaker_ids)
        return self.core.forward_with_latent(
            text, audio, visual, modality_mask, speaker, context_mask
        )

    def forward(self, text, audio, visual, modality_mask, speaker_ids, context_mask):
        logits, gate, _ = self.forward_with_latent(
            text, audio, visual, modality_mask, speaker_ids, context_mask
        )
        return logits, gate


class MLSANEnsemble(nn.Module):
    """N independently seeded ``MLSAN`` models of one config, used as one model.

    ``forward`` returns (log of the members' mean class probabilities [B,T,C], mean gate
    [B,T,3]): softmax of the first output is the ensemble's probability, its argmax the
    ensemble's decision, so callers treat it like a single model's logits. Built from trained
    members with ``from_members``; trained one member at a time (``mlsan.train``).
    """

    def __init__(self, config: MLSANConfig) -> None:
        super().__init__()
        self.config = config
        member = config.with_(ensemble_members=1)
        self.members = nn.ModuleList(MLSAN(member) for _ in range(config.ensemble_members))

    @classmethod
    def from_members(cls, members: list[nn.Module]) -> MLSANEnsemble:
        config = members[0].config.with_(ensemble_members=len(members))
        ensemble = cls(config)
        for slot, member in zip(ensemble.members, members, strict=True):
            slot.load_state_dict(member.state_dict())
        return ensemble.eval()

    def forward(self, text, audio, visual, modality_mask, speaker, context_mask):
        probs, gates = [], []
        for member in self.members:
            logits, gate = member(text, audio, visual, modality_mask, speaker, context_mask)
            probs.append(torch.softmax(logits, dim=-1))
            gates.append(gate)
        prob = torch.stack(probs).mean(0)
        return torch.log(prob.clamp(min=1e-12)), torch.stack(gates).mean(0)


def build_model(config: MLSANConfig) -> nn.Module:
    """``MLSANWithSpeakerIds`` for the "id" speaker source, ``MLSANEnsemble`` for
    ``ensemble_members`` > 1, else ``MLSAN``."""
    if config.speaker_source == "id":
        return MLSANWithSpeakerIds(config)
    if config.ensemble_members > 1:
        return MLSANEnsemble(config)
    return MLSAN(config)

"""Dialogues as arrays, speaker tensors, and padded batches for ML-SAN.

``DialogueArrays`` is one dialogue's per-utterance features and labels; ``load_meld`` builds
them from the MELD CSVs (text from the cached sentence encoder; audio/visual from an optional
feature store, else masked out); ``make_batch`` pads a list of them into model-ready tensors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlsan.config import MLSANConfig
from mlsan.feature_store import FeatureStore
from mlsan.features import TextEncoder, cached_raw_text
from mlsan.meld import read_meld_split
from mlsan.speaker import history_representations

UNKNOWN_SPEAKER = 0


@dataclass(frozen=True)
class DialogueArrays:
    """One dialogue, T utterances in order."""

    dialogue_id: str
    text: np.ndarray  # [T,Dt] float32
    audio: np.ndarray  # [T,Da] float32 (zeros where missing)
    visual: np.ndarray  # [T,Dv] float32
    modality_mask: np.ndarray  # [T,3] float32, order text, audio, visual
    speakers: tuple[str, ...]  # speaker key per utterance (names in MELD)
    labels: np.ndarray  # [T] int64 (-1 = unlabelled)
    voice: np.ndarray | None = None  # [T,256] float32 voice d-vectors, when known

    def __len__(self) -> int:
        return len(self.speakers)


@dataclass(frozen=True)
class Batch:
    """Padded tensors for B dialogues of up to T utterances."""

    text: torch.Tensor  # [B,T,Dt]
    audio: torch.Tensor  # [B,T,Da]
    visual: torch.Tensor  # [B,T,Dv]
    modality_mask: torch.Tensor  # [B,T,3]
    speaker: torch.Tensor  # [B,T,Ds] float, or [B,T] long ids for the "id" source
    context_mask: torch.Tensor  # [B,T] float
    labels: torch.Tensor  # [B,T] long, -1 on padding
    speaker_group: torch.Tensor  # [B,T] long: global speaker index (for the consistency loss)

    def model_inputs(self) -> tuple[torch.Tensor, ...]:
        return (
            self.text,
            self.audio,
            self.visual,
            self.modality_mask,
            self.speaker,
            self.context_mask,
        )


def speaker_id_map(dialogues: Sequence[DialogueArrays], min_count: int = 1) -> dict[str, int]:
    """Speaker name -> id (1..), for speakers with >= min_count training utterances; 0 unknown."""
    counts = Counter(s for d in dialogues for s in d.speakers)
    names = sorted(n for n, c in counts.items() if c >= min_count)
    return {name: i + 1 for i, name in enumerate(names)}


def speaker_rows(dialogue: DialogueArrays, config: MLSANConfig) -> np.ndarray:
    """The [T, speaker_dim] continuous speaker tensor of one dialogue for ``config``."""
    t = len(dialogue)
    if config.speaker_source == "history":
        rows = history_representations(
            dialogue.text,
            dialogue.speakers,
            identity_dim=config.speaker_identity_dim,
            salt=dialogue.dialogue_id,
        )
    elif config.speaker_source == "enroll":
        from mlsan.speaker import EnrollHistory

        hist = EnrollHistory(config.audio_dim, config.text_dim)
        rows = np.zeros((t, config.speaker_dim), np.float32)
        for i, key in enumerate(dialogue.speakers):
            rows[i] = hist.represent(key)
            m = dialogue.modality_mask[i]
            hist.update(
                key,
                dialogue.audio[i] if m[1] > 0 else None,
                dialogue.text[i] if m[0] > 0 else None,
            )
    elif config.speaker_source == "voice":
        if dialogue.voice is None:
            rows = np.zeros((t, config.speaker_dim), np.float32)
        else:
            norms = np.linalg.norm(dialogue.voice, axis=1, keepdims=True)
            rows = dialogue.voice / np.maximum(norms, 1e-6)
    else:  # "none" (and "id", whose tensor comes from the learned table)
        rows = np.zeros((t, config.speaker_dim), np.float32)
    if rows.shape[1] != config.speaker_dim:
        raise ValueError(
            f"speaker rows are {rows.shape[1]}-d but config.speaker_dim is {config.speaker_dim}"
        )
    return rows.astype(np.float32)


def make_batch(
    dialogues: Sequence[DialogueArrays],
    config: MLSANConfig,
    id_map: dict[str, int] | None = None,
    group_map: dict[str, int] | None = None,
    row_cache: dict[str, np.ndarray] | None = None,
) -> Batch:
    """Pad ``dialogues`` into one Batch (padding at the end of each dialogue).

    ``id_map``: speaker name -> id for the "id" source; ``group_map``: speaker name -> global
    index for the consistency loss (grown as needed); ``row_cache``: dialogue id -> speaker rows,
    so training computes each dialogue's speaker tensor once.
    """
    b = len(dialogues)
    t = max(len(d) for d in dialogues)
    text = np.zeros((b, t, config.text_dim), np.float32)
    audio = np.zeros((b, t, config.audio_dim), np.float32)
    visual = np.zeros((b, t, config.visual_dim), np.float32)
    mask = np.zeros((b, t, 3), np.float32)
    ctx = np.zeros((b, t), np.float32)
    labels = np.full((b, t), -1, np.int64)
    groups = np.full((b, t), -1, np.int64)
    if config.speaker_source == "id":
        speaker = np.zeros((b, t), np.int64)
    else:
        speaker = np.zeros((b, t, config.speaker_dim), np.float32)
    for i, d in enumerate(dialogues):
        n = len(d)
        text[i, :n], audio[i, :n], visual[i, :n] = d.text, d.audio, d.visual
        mask[i, :n] = d.modality_mask
        ctx[i, :n] = 1.0
        labels[i, :n] = d.labels
        if group_map is not None:
            groups[i, :n] = [group_map.setdefault(s, len(group_map)) for s in d.speakers]
        if config.speaker_source == "id":
            speaker[i, :n] = [(id_map or {}).get(s, UNKNOWN_SPEAKER) for s in d.speakers]
        elif row_cache is None:
            speaker[i, :n] = speaker_rows(d, config)
        else:
            if d.dialogue_id not in row_cache:
                row_cache[d.dialogue_id] = speaker_rows(d, config)
            speaker[i, :n] = row_cache[d.dialogue_id]
    return Batch(
        torch.from_numpy(text),
        torch.from_numpy(audio),
        torch.from_numpy(visual),
        torch.from_numpy(mask),
        torch.from_numpy(speaker),
        torch.from_numpy(ctx),
        torch.from_numpy(labels),
        torch.from_numpy(groups),
    )


def load_meld(
    data_dir: str | Path,
    split: str,
    config: MLSANConfig,
    encoder: TextEncoder | None = None,
    feature_store: FeatureStore | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    limit_dialogues: int | None = None,
) -> list[DialogueArrays]:
    """MELD ``split`` as DialogueArrays: text features (cached), audio/visual from the store.

    ``limit_dialogues``: only the first N dialogues (by Dialogue_ID), encoding only their text.
    """
    dialogues = read_meld_split(data_dir, split)
    name = f"meld-{split}"
    if limit_dialogues is not None:
        dialogues = dialogues[:limit_dialogues]
        name += f"-first{limit_dialogues}"
    texts = [u.text for d in dialogues for u in d.utterances]
    raw = cached_raw_text(texts, name, encoder, cache_dir, progress=progress)
    feats = raw.features(config.text_feature)
    if feats.shape[1] != config.text_dim:
        raise ValueError(f"text features are {feats.shape[1]}-d, config.text_dim {config.text_dim}")
    out: list[DialogueArrays] = []
    pos = 0
    for d in dialogues:
        n = len(d.utterances)
        audio = np.zeros((n, config.audio_dim), np.float32)
        visual = np.zeros((n, config.visual_dim), np.float32)
        mask = np.zeros((n, 3), np.float32)
        mask[:, 0] = 1.0
        voice = None
        if feature_store is not None:
            voice = np.zeros((n, 256), np.float32)
            for j, u in enumerate(d.utterances):
                row = feature_store.lookup(d.dialogue_id, u.utterance_id)
                if row is None:
                    continue
                if row.audio is not None:
                    audio[j], mask[j, 1] = row.audio, 1.0
                if row.visual is not None:
                    visual[j], mask[j, 2] = row.visual, 1.0
                if row.voice is not None:
                    voice[j] = row.voice
        out.append(
            DialogueArrays(
                dialogue_id=f"{split}/{d.dialogue_id}",
                text=feats[pos : pos + n],
                audio=audio,
                visual=visual,
                modality_mask=mask,
                speakers=d.speakers,
                labels=np.asarray(d.labels, np.int64),
                voice=voice,
            )
        )
        pos += n
    return out

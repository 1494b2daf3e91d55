"""Recorded model inputs: what calibration runs on, from the training data or from app runs.

A :class:`Recording` is a list of single-dialogue samples (:class:`EmotionInputs` with batch 1,
each with its own context length T). On disk it is one ``.npz`` (no pickles): every input
concatenated along T over the samples, plus ``lengths`` [N] and a JSON ``meta``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.types import INPUT_NAMES, EmotionInputs
from mlsan.errors import UserFacingError

FORMAT = "mlsan-recording"
VERSION = 1


class RecordingError(UserFacingError):
    """A recording is missing, empty or malformed."""


@dataclass(frozen=True, eq=False)
class Recording:
    samples: tuple[EmotionInputs, ...]  # each batch 1, [1, T_i, ...]
    source: str  # "meld-train", "app", ...
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def utterances(self) -> int:
        return sum(s.context for s in self.samples)

    def digest(self) -> str:
        """sha256 over every array (part of the calibration cache key)."""
        h = hashlib.sha256()
        for sample in self.samples:
            for name, arr in sample.as_dict().items():
                h.update(name.encode())
                h.update(np.asarray(arr.shape, np.int64).tobytes())
                h.update(arr.tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> Path:
        if not self.samples:
            raise RecordingError(
                "nothing recorded; fix: run the app (or calibrate from --data) first"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            name: np.concatenate([s.as_dict()[name][0] for s in self.samples], axis=0)
            for name in INPUT_NAMES
        }
        lengths = np.asarray([s.context for s in self.samples], np.int64)
        meta = {"format": FORMAT, "version": VERSION, "source": self.source, **self.meta}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, lengths=lengths, meta=np.asarray(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        path = Path(path)
        fix = "fix: record one with 'mlsan-engine record' or the app's --record-inputs"
        if not path.is_file():
            raise RecordingError(f"recording {path} does not exist; {fix}")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT:
                    raise ValueError("not an mlsan recording")
                lengths = data["lengths"]
                arrays = {name: data[name] for name in INPUT_NAMES}
        except (OSError, ValueError, KeyError) as exc:
            raise RecordingError(f"{path} is not a readable recording ({exc}); {fix}") from None
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        samples = tuple(
            EmotionInputs(**{n: arrays[n][None, offsets[i] : offsets[i + 1]] for n in INPUT_NAMES})
            for i in range(len(lengths))
        )
        source = meta.pop("source", "unknown")
        for key in ("format", "version"):
            meta.pop(key, None)
        return cls(samples, source, meta)


def split_batch(inputs: EmotionInputs) -> list[EmotionInputs]:
    """A padded batch -> one sample per dialogue, trimmed to its real utterances."""
    out = []
    for i in range(inputs.batch):
        real = np.flatnonzero(inputs.context_mask[i] > 0.5)
        n = int(real[-1]) + 1 if real.size else 0
        if n:
            out.append(
                EmotionInputs(
                    **{
                        name: np.array(getattr(inputs, name)[i : i + 1, :n], np.float32, copy=True)
                        for name in INPUT_NAMES
                    }
                )
            )
    return out


def dialogue_inputs(dialogues, config) -> list[EmotionInputs]:
    """mlsan DialogueArrays -> one batch-1 EmotionInputs each (speaker rows as in training)."""
    from mlsan.data import make_batch

    out = []
    for d in dialogues:
        batch = make_batch([d], config)
        out.append(EmotionInputs(*(t.numpy() for t in batch.model_inputs())))
    return out


def meld_recording(
    data_dir: str | Path,
    config,
    split: str = "train",
    max_dialogues: int = 256,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Recording:
    """Model inputs of ``max_dialogues`` MELD dialogues (seeded sample), built by mlsan.data
    from its text-feature cache, exactly as training feeds the model."""
    from mlsan.data import load_meld

    dialogues = load_meld(data_dir, split, config, cache_dir=cache_dir)
    rng = np.random.default_rng(seed)
    if max_dialogues and len(dialogues) > max_dialogues:
        pick = sorted(rng.choice(len(dialogues), size=max_dialogues, replace=False))
        dialogues = [dialogues[i] for i in pick]
    return Recording(
        tuple(dialogue_inputs(dialogues, config)),
        f"meld-{split}",
        {"dialogues": [d.dialogue_id for d in dialogues], "seed": seed},
    )

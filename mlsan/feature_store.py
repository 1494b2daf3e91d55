"""Per-utterance audio/visual/voice features on disk, keyed by (dialogue id, utterance id).

The live app's extractors (``edge_app/audio/features.py``, ``edge_app/video/visual_features.py``,
the resemblyzer voice encoder) can run over the MELD.Raw clips (``dia{D}_utt{U}.mp4``) and write
their vectors here; ``mlsan.data.load_meld`` then trains on them beside the text.

Format: one ``.npz`` per split (``numpy.savez``, no pickles) holding

* ``dialogue_id`` int64 [N], ``utterance_id`` int64 [N]
* ``audio`` float32 [N, Da], ``audio_present`` uint8 [N]
* ``visual`` float32 [N, Dv], ``visual_present`` uint8 [N]
* ``voice`` float32 [N, 256], ``voice_present`` uint8 [N]
* ``meta`` a 0-d unicode array holding JSON: ``{"format": "mlsan-feature-store", "version": 1,
  "audio_dim": Da, "visual_dim": Dv, "voice_dim": 256, "extractors": {...}}``

Rows whose modality was not extracted have ``*_present`` 0 and zeros in the vector.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlsan.config import AUDIO_DIM, VISUAL_DIM, VOICE_DIM
from mlsan.errors import UserFacingError

FORMAT = "mlsan-feature-store"
VERSION = 1


class FeatureStoreError(UserFacingError):
    """A feature store file is missing or malformed."""


@dataclass(frozen=True)
class StoredFeatures:
    """One utterance's stored vectors (None = not extracted)."""

    audio: np.ndarray | None
    visual: np.ndarray | None
    voice: np.ndarray | None


@dataclass(frozen=True)
class FeatureStore:
    """An in-memory feature store; ``lookup(dialogue_id, utterance_id)``."""

    dialogue_id: np.ndarray
    utterance_id: np.ndarray
    audio: np.ndarray
    audio_present: np.ndarray
    visual: np.ndarray
    visual_present: np.ndarray
    voice: np.ndarray
    voice_present: np.ndarray
    meta: dict = field(default_factory=dict)
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for i, key in enumerate(
            zip(self.dialogue_id.tolist(), self.utterance_id.tolist(), strict=True)
        ):
            self._index[key] = i

    def __len__(self) -> int:
        return int(self.dialogue_id.shape[0])

    def lookup(self, dialogue_id: int, utterance_id: int) -> StoredFeatures | None:
        i = self._index.get((int(dialogue_id), int(utterance_id)))
        if i is None:
            return None
        return StoredFeatures(
            self.audio[i] if self.audio_present[i] else None,
            self.visual[i] if self.visual_present[i] else None,
            self.voice[i] if self.voice_present[i] else None,
        )


class FeatureStoreWriter:
    """Collects rows, then ``save(path)``. Adding the same key twice replaces the row."""

    def __init__(
        self,
        audio_dim: int = AUDIO_DIM,
        visual_dim: int = VISUAL_DIM,
        voice_dim: int = VOICE_DIM,
        extractors: dict | None = None,
    ) -> None:
        self.dims = {"audio": audio_dim, "visual": visual_dim, "voice": voice_dim}
        self.extractors = dict(extractors or {})
        self._rows: dict[tuple[int, int], dict[str, np.ndarray | None]] = {}

    def add(
        self,
        dialogue_id: int,
        utterance_id: int,
        audio: np.ndarray | None = None,
        visual: np.ndarray | None = None,
        voice: np.ndarray | None = None,
    ) -> None:
        row: dict[str, np.ndarray | None] = {}
        for name, vec in (("audio", audio), ("visual", visual), ("voice", voice)):
            if vec is not None:
                vec = np.asarray(vec, np.float32).reshape(-1)
                if vec.shape[0] != self.dims[name]:
                    raise ValueError(f"{name} must be {self.dims[name]}-d, got {vec.shape[0]}")
                if not np.all(np.isfinite(vec)):
                    raise ValueError(
                        f"{name} features of dia{dialogue_id}_utt{utterance_id} are not finite"
                    )
            row[name] = vec
        self._rows[(int(dialogue_id), int(utterance_id))] = row

    def __len__(self) -> int:
        return len(self._rows)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        keys = sorted(self._rows)
        n = len(keys)
        arrays: dict[str, np.ndarray] = {
            "dialogue_id": np.asarray([k[0] for k in keys], np.int64),
            "utterance_id": np.asarray([k[1] for k in keys], np.int64),
        }
        for name, dim in self.dims.items():
            values = np.zeros((n, dim), np.float32)
            present = np.zeros(n, np.uint8)
            for i, key in enumerate(keys):
                vec = self._rows[key][name]
                if vec is not None:
                    values[i], present[i] = vec, 1
            arrays[name], arrays[f"{name}_present"] = values, present
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "audio_dim": self.dims["audio"],
            "visual_dim": self.dims["visual"],
            "voice_dim": self.dims["voice"],
            "extractors": self.extractors,
        }
        arrays["meta"] = np.asarray(json.dumps(meta))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path


def read_feature_store(path: str | Path) -> FeatureStore:
    """Load a store written by ``FeatureStoreWriter`` (raises FeatureStoreError with the fix)."""
    path = Path(path)
    fix = "fix: pass --features FILE written by FeatureStoreWriter (see mlsan/feature_store.py)"
    if not path.is_file():
        raise FeatureStoreError(f"feature store {path} does not exist; {fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as exc:
        raise FeatureStoreError(f"{path} is not a readable feature store ({exc}); {fix}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise FeatureStoreError(f"{path} is not a version-{VERSION} mlsan feature store; {fix}")
    needed = ["dialogue_id", "utterance_id"] + [
        f"{m}{s}" for m in ("audio", "visual", "voice") for s in ("", "_present")
    ]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise FeatureStoreError(f"{path} lacks arrays {missing}; {fix}")
    return FeatureStore(meta=meta, **{k: arrays[k] for k in needed})

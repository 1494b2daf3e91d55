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


def voice_face_sources(
    config,
    ravdess: str | Path | None,
    face: str | Path | None,
    farfield: bool = False,
    face_encoder_sha256: str | None = None,
    actors=None,
    per_actor: int | None = None,
):
    """RAVDESS voice features and FER2013 face embeddings as ``mlsan.joint`` loads them for
    training (Whisper features cached per clip; enrollment rows as in training). A face npz made
    by another encoder than the one the checkpoint learned from is refused: its embeddings live
    in another space."""
    from mlsan.joint import load_sources

    if face is not None:
        want = face_encoder_sha256  # the checkpoint's (its meta), when it learned from faces
        try:
            with np.load(face) as data:
                have = str(data["encoder_sha256"]) if "encoder_sha256" in data else None
        except (OSError, ValueError) as exc:
            raise RecordingError(
                f"cannot read face embeddings {face} ({type(exc).__name__}); fix: write them "
                "with python -m mlsan.fer2013 features --out F.npz"
            ) from None
        if want and have and want != have:
            raise RecordingError(
                f"{face} holds embeddings of face encoder {have[:12]}, the checkpoint learned "
                f"from {want[:12]}; fix: python -m mlsan.fer2013 features --out F.npz (the "
                "shipped encoder) and pass --face F.npz"
            )
    return load_sources(
        config,
        None,
        ravdess,
        face,
        log=lambda m: None,
        ravdess_actors=actors,
        ravdess_per_actor=per_actor,
        farfield=farfield,
    )


def torch_batch_samples(batch) -> list[EmotionInputs]:
    """An mlsan.joint voice/face batch (torch tensors [B, 1, ...], INPUT_NAMES order) -> B
    batch-1 samples."""
    return split_batch(EmotionInputs(*(t.numpy() for t in batch)))


def voice_face_recording(config, sources, per_source: int = 256, seed: int = 0) -> Recording:
    """Single-utterance model inputs of ``per_source`` RAVDESS clips of the training actors
    (voice + the sentence's text, each with a K-clip enrollment, K drawn from 0-16; studio and,
    when loaded, far-field copies) and ``per_source`` FER2013 Training faces: what a voice and
    face model sees besides MELD's text, so INT8 calibration measures those inputs' ranges too."""
    from mlsan.joint import face_batch, voice_batch
    from mlsan.ravdess import TRAIN_ACTORS

    rng = np.random.default_rng(seed)
    samples: list[EmotionInputs] = []
    meta: dict = {}
    if sources.voice is not None:
        pool = sources.voice.where(TRAIN_ACTORS, condition=None)
        idx = np.sort(rng.choice(pool, size=min(per_source, len(pool)), replace=False))
        ks = rng.integers(0, 17, size=len(idx))
        samples += torch_batch_samples(voice_batch(sources.voice, idx, ks, rng, config))
        meta["ravdess_clips"] = int(len(idx))
    if sources.face is not None:
        pool = np.flatnonzero(sources.face.usage == "Training")
        idx = np.sort(rng.choice(pool, size=min(per_source, len(pool)), replace=False))
        samples += torch_batch_samples(face_batch(sources.face, idx, config))
        meta["fer2013_faces"] = int(len(idx))
    return Recording(tuple(samples), "ravdess-train+fer2013-train", {**meta, "seed": seed})


def merged(*recordings: Recording) -> Recording:
    """One recording holding the samples of several (calibration on all of them at once)."""
    return Recording(
        tuple(s for r in recordings for s in r.samples),
        "+".join(r.source for r in recordings),
        {r.source: r.meta for r in recordings},
    )

"""How much a quantized model loses: weighted F1 and agreement against its float original.

Both models see the same MELD test dialogues (batch 1, each at its own length, in the
checkpoint's context mode); F1 is sklearn's weighted F1 in percent, as mlsan-eval reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engines.types import EmotionInputs, EmotionOutputs


@dataclass(frozen=True)
class EvalSet:
    samples: tuple[EmotionInputs, ...]  # batch-1 dialogues
    labels: np.ndarray  # [N] int, concatenated over the dialogues
    split: str


@dataclass(frozen=True)
class QuantAccuracy:
    name: str  # e.g. "onnxruntime-int8"
    reference: str  # e.g. "onnxruntime-fp32"
    weighted_f1: float  # percent
    reference_weighted_f1: float
    agreement: float  # fraction of utterances with the same argmax
    max_prob_diff: float
    utterances: int

    @property
    def f1_drop(self) -> float:
        return self.reference_weighted_f1 - self.weighted_f1


def meld_eval_set(data_dir, config, split: str = "test", cache_dir=None) -> EvalSet:
    from calibration.recording import dialogue_inputs
    from mlsan.data import load_meld

    dialogues = load_meld(data_dir, split, config, cache_dir=cache_dir)
    samples = tuple(dialogue_inputs(dialogues, config))
    labels = np.concatenate([d.labels for d in dialogues])
    return EvalSet(samples, labels, split)


def predict(
    infer: Callable[[EmotionInputs], EmotionOutputs], samples: Sequence[EmotionInputs]
) -> np.ndarray:
    """[N, C] probabilities, concatenated over the batch-1 samples."""
    return np.concatenate([infer(s).probs[0] for s in samples], axis=0)


def weighted_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    keep = labels >= 0
    return 100.0 * float(f1_score(labels[keep], pred[keep], average="weighted", zero_division=0))


def compare(
    name: str,
    reference: str,
    probs: np.ndarray,
    reference_probs: np.ndarray,
    labels: np.ndarray,
) -> QuantAccuracy:
    pred, ref = probs.argmax(-1), reference_probs.argmax(-1)
    return QuantAccuracy(
        name=name,
        reference=reference,
        weighted_f1=round(weighted_f1(labels, pred), 2),
        reference_weighted_f1=round(weighted_f1(labels, ref), 2),
        agreement=round(float(np.mean(pred == ref)), 4),
        max_prob_diff=round(float(np.max(np.abs(probs - reference_probs))), 4),
        utterances=int(len(labels)),
    )


def voice_face_eval_sets(config, sources, enroll: int = 8, faces: int = 1000, seed: int = 0):
    """Held-out single utterances the INT8 report adds for a voice/face model: RAVDESS test
    actors (21-24; studio and, when loaded, far-field copies; ``enroll`` clips of enrollment,
    one seeded draw) and the first ``faces`` FER2013 PrivateTest faces. -> [EvalSet, ...]"""
    from calibration.recording import torch_batch_samples
    from mlsan.joint import face_batch, voice_batch
    from mlsan.ravdess import TEST_ACTORS

    out = []
    if sources.voice is not None:
        for cond, tag in sources.voice.conditions:
            idx = sources.voice.where(TEST_ACTORS, condition=cond)
            rng = np.random.default_rng(seed)
            batch = voice_batch(sources.voice, idx, np.full(len(idx), enroll), rng, config)
            samples = tuple(torch_batch_samples(batch))
            out.append(EvalSet(samples, sources.voice.labels[idx], f"{tag}-test-k{enroll}"))
    if sources.face is not None:
        idx = np.flatnonzero(sources.face.usage == "PrivateTest")[:faces]
        samples = tuple(torch_batch_samples(face_batch(sources.face, idx, config)))
        out.append(EvalSet(samples, sources.face.labels[idx], "fer2013-private"))
    return out

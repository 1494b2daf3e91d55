"""The values every ML-SAN backend takes and returns (frozen dataclasses, numpy arrays).

Shapes: B dialogues (batch), T utterances of context (the newest last in causal mode), feature
widths from the checkpoint (:class:`ModelSignature`). All inputs are float32; masks are 1.0 for
present and 0.0 for missing/padding, so the same arrays feed PyTorch, ONNX Runtime and TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Names of the graph's inputs and outputs, in order; the ONNX file, its sidecar and the TensorRT
# engine all use these, so a backend binds buffers by name, never by position.
INPUT_NAMES: tuple[str, ...] = (
    "text",  # [B, T, Dt]
    "audio",  # [B, T, Da]
    "visual",  # [B, T, Dv]
    "modality_mask",  # [B, T, 3] (text, audio, visual) 1.0 present
    "speaker",  # [B, T, Ds] speaker representation
    "context_mask",  # [B, T] 1.0 real utterance, 0.0 padding
)
OUTPUT_NAMES: tuple[str, ...] = (
    "probs",  # [B, T, C] softmax over emotions
    "gate",  # [B, T, 3] trust per modality (text, audio, visual)
)


@dataclass(frozen=True)
class ModelSignature:
    """What a backend's model expects: feature widths and emotion labels (from the checkpoint)."""

    text_dim: int
    audio_dim: int
    visual_dim: int
    speaker_dim: int
    label_names: tuple[str, ...]
    max_context: int = 128  # longest T a backend is built/tested for (TensorRT profile max)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def feature_dims(self) -> dict[str, int]:
        """Last-axis width of each input (name -> width)."""
        return {
            "text": self.text_dim,
            "audio": self.audio_dim,
            "visual": self.visual_dim,
            "modality_mask": 3,
            "speaker": self.speaker_dim,
        }

    def zeros(self, batch: int, context: int) -> EmotionInputs:
        """All-missing inputs of shape [batch, context, ...] (masks zero), for warm-up."""
        dims = self.feature_dims()
        arrays = {
            name: np.zeros((batch, context, width), np.float32) for name, width in dims.items()
        }
        return EmotionInputs(**arrays, context_mask=np.zeros((batch, context), np.float32))


@dataclass(frozen=True, eq=False)
class EmotionInputs:
    """One batch of dialogues for ML-SAN; see INPUT_NAMES for the shapes."""

    text: np.ndarray
    audio: np.ndarray
    visual: np.ndarray
    modality_mask: np.ndarray
    speaker: np.ndarray
    context_mask: np.ndarray

    @property
    def batch(self) -> int:
        return int(self.context_mask.shape[0])

    @property
    def context(self) -> int:
        return int(self.context_mask.shape[1])

    def as_dict(self) -> dict[str, np.ndarray]:
        """name -> contiguous float32 array, in INPUT_NAMES order (what ORT/TensorRT bind)."""
        return {
            name: np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            for name in INPUT_NAMES
        }

    def slice_batch(self, start: int, stop: int) -> EmotionInputs:
        """Dialogues [start:stop] of this batch."""
        return EmotionInputs(**{n: getattr(self, n)[start:stop] for n in INPUT_NAMES})


@dataclass(frozen=True, eq=False)
class EmotionOutputs:
    """What a backend returns for an :class:`EmotionInputs` batch."""

    probs: np.ndarray  # [B, T, C] float32, rows sum to 1
    gate: np.ndarray  # [B, T, 3] float32, modality trust (text, audio, visual)
    label_names: tuple[str, ...] = field(default=())

    def labels(self) -> np.ndarray:
        """[B, T] index of the most likely emotion."""
        return self.probs.argmax(axis=-1)


def check_inputs(inputs: EmotionInputs, signature: ModelSignature) -> None:
    """Raise BadInputError (one line) unless the arrays match the model's shapes."""
    from engines.errors import BadInputError

    if inputs.context_mask.ndim != 2:
        raise BadInputError(
            f"context_mask must be [B, T], got shape {tuple(inputs.context_mask.shape)}; "
            "fix: pass a 2-D float mask"
        )
    batch, context = inputs.context_mask.shape
    if batch < 1 or context < 1:
        raise BadInputError(f"empty batch {batch}x{context}; fix: pass at least one utterance")
    for name, width in signature.feature_dims().items():
        shape = tuple(getattr(inputs, name).shape)
        if shape != (batch, context, width):
            raise BadInputError(
                f"input '{name}' has shape {shape}, the model expects {(batch, context, width)}; "
                "fix: build inputs with the checkpoint's feature widths (backend.signature)"
            )

"""``MLSANConfig``: every hyperparameter, feature dimension and switch of ML-SAN in one place.

A checkpoint carries its config (``to_dict``/``from_dict``), so loading needs nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from mlsan.errors import UserFacingError

MODALITIES: tuple[str, ...] = ("text", "audio", "visual")  # order of modality_mask / gate columns
MELD_LABELS: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")

TEXT_DIM = 768  # mlsan.features.TextEncoder(kind="minilm-rich"): MiniLM sentence emb. + mid layers
TEXT_FEATURE = "minilm-rich"  # the TextEncoder kind whose output text_dim describes
AUDIO_DIM = 88  # log-mel / prosody statistics (edge_app/audio/features.py)
VISUAL_DIM = 112  # blendshape / head-pose statistics (edge_app/video/visual_features.py)
VOICE_DIM = 256  # resemblyzer d-vector

CONTEXT_MODES = ("causal", "bidirectional")
# Where the speaker tensor comes from:
#   history: running summary of the speaker's own earlier text features (open set; mlsan.speaker)
#   voice:   a 256-d voice d-vector (open set; live app), projected by the model
#   id:      a learned embedding per known speaker id (closed set; the benchmark setting)
#   none:    no speaker information (the model receives zeros)
#   enroll:  open set, multimodal: [mean of the speaker's own earlier voice features (audio_dim),
#            log(1+K voice), mean of their earlier text features (text_dim), log(1+K text)]
#            (mlsan.speaker.EnrollHistory); drives FiLM (incl. a direct, count-gated shift by the
#            speaker's mean voice) and the gate
SPEAKER_SOURCES = ("history", "voice", "id", "none", "enroll")
LOSSES = ("ce", "balanced", "focal")


class ConfigError(UserFacingError):
    """An MLSANConfig (or its JSON) is invalid."""


@dataclass(frozen=True)
class MLSANConfig:
    """All of ML-SAN's shape, hyperparameters and ablation switches.

    Shapes of the model's tensor inputs follow from this: text ``[B,T,text_dim]``, audio
    ``[B,T,audio_dim]``, visual ``[B,T,visual_dim]``, modality_mask ``[B,T,3]`` (order
    ``modalities``), speaker ``[B,T,speaker_dim]``, context_mask ``[B,T]``.
    """

    # Features.
    text_dim: int = TEXT_DIM
    audio_dim: int = AUDIO_DIM
    visual_dim: int = VISUAL_DIM
    text_feature: str = TEXT_FEATURE  # TextEncoder kind: the live app must encode with the same
    audio_feature: str = "prosody88"  # or mlsan.voice_features.VOICE_FEATURE (pooled Whisper)
    visual_feature: str = "blendshapes112"  # or "face-expression" (the FER2013 encoder embedding)
    feature_norm: bool = False  # True: the model standardises audio/visual with stored buffers
    modalities: tuple[str, ...] = MODALITIES
    label_names: tuple[str, ...] = MELD_LABELS

    # Speaker representation.
    speaker_source: str = "history"
    speaker_dim: int = TEXT_DIM + 1  # history: mean of own earlier text features + log(1+count)
    speaker_identity_dim: int = 0  # history: + an identity code (mlsan.speaker.identity_code)
    num_speaker_ids: int = 0  # "id" source: size of the learned table (0 = unknown id)
    speaker_hidden: int = 64  # width of the projected speaker code s

    # Architecture.
    hidden: int = 128
    context_mode: str = "causal"
    context_layers: int = 1
    context_heads: int = 4
    max_relative_distance: int = 16  # relative-position bias buckets (distances beyond share one)
    dropout: float = 0.3
    context_key_dropout: float = 0.0  # training only: P(hide another utterance from a query)
    input_dropout: float = 0.1
    audio_input_dropout: float | None = None  # None: input_dropout; the wide voice feature

    # The three levels of speaker adaptation and their ablation switches.
    use_film: bool = True  # input-level: FiLM calibration of audio/visual from the speaker code
    use_film_text: bool = False  # also calibrate the text features
    use_gate: bool = True  # interaction-level: speaker-driven modality trust weights
    use_gate_speaker: bool = True  # False: the gate does not see the speaker code
    film_direct: bool = False  # enroll: FiLM also shifts voice by -alpha*rel(K)*(speaker mean)
    direct_init: float = 0.0  # initial alpha (1.0 = start from "centre on the speaker's mean")
    direct_rel_init: tuple[float, ...] = (1.0, -1.0)  # initial (a, b) of rel(K)
    use_speaker: bool = True  # False: the speaker tensor is ignored everywhere
    use_reg: bool = True  # output-level: speaker-consistency loss during training
    use_context: bool = True  # False: each utterance alone (no dialogue context)

    # Training.
    loss: str = "balanced"  # classification loss suited to the long tail
    class_weight_power: float = 0.5  # balanced: weight_c ∝ (1/freq_c)^power, normalised
    focal_gamma: float = 2.0
    label_smoothing: float = 0.05
    reg_weight: float = 0.1
    reg_temperature: float = 0.2
    lr: float = 3e-4
    weight_decay: float = 1e-2
    batch_dialogues: int = 16
    max_epochs: int = 20
    patience: int = 4
    ema_decay: float = 0.0  # >0: evaluate/keep an exponential moving average of the weights
    seed: int = 0

    # Joint training (mlsan.joint): weight of each source's mean loss in a step.
    source_weights: tuple[float, ...] = (1.0, 1.0, 1.0)  # MELD, RAVDESS, FER2013

    trained_modalities: tuple[str, ...] = ("text",)  # modalities present in the training data
    # >1: the checkpoint holds this many independently seeded models of this config and
    # predicts with the mean of their class probabilities (mlsan.model.MLSANEnsemble)
    ensemble_members: int = 1

    def __post_init__(self) -> None:
        if self.context_mode not in CONTEXT_MODES:
            raise ConfigError(
                f"context_mode {self.context_mode!r} is not one of {CONTEXT_MODES}; "
                "fix: use --context causal or --context bidirectional"
            )
        if self.speaker_source not in SPEAKER_SOURCES:
            raise ConfigError(
                f"speaker_source {self.speaker_source!r} is not one of {SPEAKER_SOURCES}; "
                "fix: pick one of those"
            )
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r} is not one of {LOSSES}; fix: pick one of those")
        if tuple(self.modalities) != MODALITIES:
            raise ConfigError(f"modalities must be {MODALITIES} in that order")
        bad = [m for m in self.trained_modalities if m not in MODALITIES]
        if bad:
            raise ConfigError(f"trained_modalities has unknown {bad}; fix: use {MODALITIES}")
        if self.ensemble_members < 1:
            raise ConfigError("ensemble_members must be >= 1; fix: use 1 for a single model")
        if self.hidden % self.context_heads:
            raise ConfigError("hidden must be divisible by context_heads; fix: change either")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def causal(self) -> bool:
        return self.context_mode == "causal"

    def modality_dims(self) -> dict[str, int]:
        return {"text": self.text_dim, "audio": self.audio_dim, "visual": self.visual_dim}

    def with_(self, **changes) -> MLSANConfig:
        """A copy with ``changes`` applied (validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> MLSANConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown MLSANConfig keys {unknown}; fix: the file was written by another "
                "version of mlsan, retrain or remove those keys"
            )
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MLSANConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON ({exc}); fix: check the file") from None
        if not isinstance(data, dict):
            raise ConfigError("config JSON must be an object; fix: check the file")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> MLSANConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}; fix the path") from None
        return cls.from_json(text)

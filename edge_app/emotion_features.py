"""An Utterance -> ML-SAN inputs: features, masks, speaker representation, causal context.

* :class:`ModelInfo` reads what the checkpoint says about itself: feature widths, label names,
  the text encoder kind, where its speaker tensor comes from (``history`` or ``voice``), and
  which modalities it was trained on.
* :class:`UtteranceFeaturizer`: text -> ``mlsan.features.TextEncoder`` (same encoder and kind
  as training); audio -> the checkpoint's ``audio_feature``: pooled Whisper encoder states
  (``mlsan.voice_features``, taken from the ASR's own encoder pass via ``voice_states``, the
  same function as training) or the older 88 prosody statistics; visual -> the checkpoint's
  ``visual_feature``: the face-expression embedding pooled over the bound face's frames
  (``face-expression``) or the blendshape/pose statistics (112). A modality is masked (mask 0,
  zeros) when
  it is missing for this utterance (no face seen, no audio) **or when the checkpoint was never
  trained on it**: a model that never saw audio features would read them as noise. The masked
  modalities and the reasons are reported (UI header, ``masked`` in each event).
* :class:`DialogueWindow`: the causal context, the last ``max_context`` utterances of the
  conversation (all speakers) with the newest last, as ``[1, T, ...]`` arrays. Each row keeps
  the speaker representation computed when it was said, exactly as training builds them.
* Speaker representation, open set, no retraining: ``history`` = the running summary of the
  speaker's own earlier utterances (``mlsan.speaker.SpeakerHistory``: mean of their text
  features + log(1 + count); a speaker enrolled a moment ago starts at zeros and the model
  adapts as they speak); ``voice`` = the turn's 256-d voice d-vector
  (``mlsan.speaker.voice_representation``); ``enroll`` = the multimodal model's open-set
  representation (``mlsan.speaker.EnrollHistory``: mean voice and text features of the speaker's
  own earlier utterances + counts; K = 0 for a stranger, one more per utterance). A closed-set
  ``id``
  checkpoint cannot know live speakers: it gets zeros (the model's "unknown speaker") and a note
  says so.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.utterances import Utterance
from engines.types import EmotionInputs
from mlsan.errors import CheckpointError

MODALITIES = ("text", "audio", "visual")  # column order of modality_mask and gate
UI_NAMES = {"text": "words", "audio": "voice", "visual": "face"}  # how users call them


@dataclass(frozen=True)
class ModelInfo:
    """What the checkpoint says about its inputs (read once at start)."""

    path: Path
    label_names: tuple[str, ...]
    text_feature: str  # TextEncoder kind ("minilm", "minilm-rich")
    text_dim: int
    audio_dim: int
    visual_dim: int
    speaker_dim: int
    speaker_source: str  # history | voice | id | none | enroll
    trained_modalities: tuple[str, ...]
    context_mode: str
    audio_feature: str = "prosody88"
    visual_feature: str = "blendshapes112"
    face_encoder_sha256: str | None = None  # the face encoder the model was trained on

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ModelInfo:
        from mlsan.checkpoint import load_checkpoint

        loaded = load_checkpoint(path)
        cfg = loaded.config
        return cls(
            path=Path(path),
            label_names=tuple(loaded.label_names),
            text_feature=str(cfg.text_feature),
            text_dim=int(cfg.text_dim),
            audio_dim=int(cfg.audio_dim),
            visual_dim=int(cfg.visual_dim),
            speaker_dim=int(cfg.speaker_dim),
            speaker_source=str(cfg.speaker_source) if cfg.use_speaker else "none",
            trained_modalities=tuple(loaded.trained_modalities),
            context_mode=str(cfg.context_mode),
            audio_feature=str(cfg.audio_feature),
            visual_feature=str(cfg.visual_feature),
            face_encoder_sha256=loaded.meta.get("face_encoder_sha256"),
        )

    def check_signature(self, signature) -> None:
        """The backend must run the same model this info was read from."""
        mine = (self.text_dim, self.audio_dim, self.visual_dim, self.speaker_dim, self.label_names)
        theirs = (
            signature.text_dim,
            signature.audio_dim,
            signature.visual_dim,
            signature.speaker_dim,
            tuple(signature.label_names),
        )
        if mine != theirs:
            raise CheckpointError(
                f"the backend's model {theirs[:4]} does not match checkpoint {self.path} "
                f"{mine[:4]}; fix: rebuild the engine from this checkpoint (mlsan-engine build)"
            )


@dataclass(frozen=True)
class FeatureOptions:
    max_context: int = 16  # utterances of dialogue the model sees (this one included)
    speaker_decay: float = 1.0  # history form: weight of older utterances per newer one
    use_audio: bool = True  # False: never give the model audio features
    use_visual: bool = True  # False: never give the model visual features


@dataclass(frozen=True)
class UtteranceFeatures:
    """One row of model input, before the speaker representation is attached."""

    text: np.ndarray  # (text_dim,) float32
    audio: np.ndarray  # (audio_dim,)
    visual: np.ndarray  # (visual_dim,)
    mask: np.ndarray  # (3,) float32, 1.0 = present (text, audio, visual)
    reasons: tuple[str, ...] = ()  # why a modality the model knows is missing here

    @property
    def masked(self) -> tuple[str, ...]:
        return tuple(UI_NAMES[m] for m, v in zip(MODALITIES, self.mask, strict=True) if v == 0)


def masking_policy(
    info: ModelInfo, options: FeatureOptions
) -> tuple[tuple[bool, ...], tuple[str, ...]]:
    """Which modalities may ever be given to the model, and one note per one that may not."""
    allowed = []
    notes = []
    wanted = {"text": True, "audio": options.use_audio, "visual": options.use_visual}
    for m in MODALITIES:
        if m not in info.trained_modalities:
            allowed.append(False)
            notes.append(f"{UI_NAMES[m]}: masked, the checkpoint was never trained on {m} features")
        elif not wanted[m]:
            allowed.append(False)
            notes.append(f"{UI_NAMES[m]}: masked by option")
        else:
            allowed.append(True)
    if info.speaker_source == "id":
        notes.append(
            "speaker: closed-set id checkpoint, live speakers get the unknown-speaker code"
        )
    return tuple(allowed), tuple(notes)


def face_encoder_mismatch(info: ModelInfo) -> str | None:
    """Why the live face-expression encoder cannot feed this model, or None.

    The model learned on embeddings of one encoder; another encoder's embeddings (even of the
    same architecture) are a different space, so they are masked rather than misread.
    """
    if info.visual_feature != "face-expression" or not info.face_encoder_sha256:
        return None
    try:
        from mlsan.registry import default_registry, file_sha256

        onnx = default_registry().resolve("face_expression").path
        live = file_sha256(onnx)
    except Exception as exc:  # noqa: BLE001 - no such model in this registry / not installed
        return f"no face-expression encoder to check ({type(exc).__name__})"
    if info.face_encoder_sha256 in (live, exported_from(onnx, live)):
        return None
    return (
        f"the face encoder ({live[:12]}) is not the one the checkpoint was trained on "
        f"({info.face_encoder_sha256[:12]}); fix: retrain with mlsan-train --face on its npz"
    )


def exported_from(onnx: Path, onnx_sha256: str) -> str | None:
    """The torch checkpoint's sha256 an encoder ONNX was exported from, read from the sidecar
    written at export (``face_expression.json``: ``onnx_sha256`` -> ``checkpoint_sha256``).

    Training embeddings carry the torch checkpoint's digest (``mlsan.fer2013 features``) while
    the app runs its ONNX export: the sidecar ties the two, only when it describes this very
    ONNX file."""
    import json

    try:
        meta = json.loads(onnx.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(meta, dict) and meta.get("onnx_sha256") == onnx_sha256:
        return meta.get("checkpoint_sha256")
    return None


class UtteranceFeaturizer:
    """Utterance -> :class:`UtteranceFeatures` (see module docstring for masking)."""

    def __init__(
        self,
        info: ModelInfo,
        text_encoder,
        options: FeatureOptions | None = None,
        voice_states=None,
    ):
        """``voice_states``: the ASR's per-segment encoder output (``VoiceStates.get``)."""
        self.info = info
        self.voice_states = voice_states
        self.options = options or FeatureOptions()
        self.text_encoder = text_encoder
        if getattr(text_encoder, "dim", info.text_dim) != info.text_dim:
            raise CheckpointError(
                f"text encoder gives {text_encoder.dim}-d features, checkpoint {info.path} wants "
                f"{info.text_dim}; fix: use the encoder the checkpoint was trained with "
                f"(kind {info.text_feature})"
            )
        self.allowed, self.notes = masking_policy(info, self.options)
        why = face_encoder_mismatch(info)
        if self.allowed[2] and why:
            self.allowed = (*self.allowed[:2], False)
            self.notes = (*self.notes, f"face: masked, {why}")

    def features(self, utt: Utterance) -> UtteranceFeatures:
        info = self.info
        mask = np.zeros(3, np.float32)
        text = np.zeros(info.text_dim, np.float32)
        audio = np.zeros(info.audio_dim, np.float32)
        visual = np.zeros(info.visual_dim, np.float32)
        if self.allowed[0] and utt.text.strip():
            text = np.asarray(self.text_encoder.encode([utt.text])[0], np.float32)
            mask[0] = 1.0
        reasons: list[str] = []
        if self.allowed[1]:
            vec, why = self.voice(utt)
            if vec is not None:
                audio, mask[1] = vec, 1.0
            else:
                reasons.append(f"voice: {why}")
        if self.allowed[2]:
            face = self.face(utt)
            if face is not None:
                visual, mask[2] = face, 1.0
            else:
                reasons.append("face: no face bound to the speaker in this utterance")
        return UtteranceFeatures(text, audio, visual, mask, tuple(reasons))

    def voice(self, utt: Utterance) -> tuple[np.ndarray | None, str | None]:
        """The checkpoint's voice feature for this utterance, or (None, reason)."""
        from mlsan.voice_features import check_audio, pool_span

        why = check_audio(utt.samples)
        if why is not None:
            return None, why
        if self.info.audio_feature == "prosody88":
            from edge_app.audio.features import audio_features

            return np.asarray(audio_features(utt.samples), np.float32), None
        found = self.voice_states.get(utt.segment_id) if self.voice_states else None
        if found is None:
            return None, "no Whisper encoder output for this segment"
        seg_t0, states = found
        vec = pool_span(states, utt.t_start - seg_t0, utt.t_end - seg_t0)
        if vec.shape[0] != self.info.audio_dim:
            return None, f"voice feature is {vec.shape[0]}-d, the model wants {self.info.audio_dim}"
        return vec, None

    def face(self, utt: Utterance) -> np.ndarray | None:
        if self.info.visual_feature == "face-expression":
            vec = getattr(utt.face, "expression", None)
        else:
            vec = utt.face.visual
        if vec is None or np.asarray(vec).shape[-1] != self.info.visual_dim:
            return None
        return np.asarray(vec, np.float32)


@dataclass(frozen=True)
class _Row:
    text: np.ndarray
    audio: np.ndarray
    visual: np.ndarray
    mask: np.ndarray
    speaker: np.ndarray


class DialogueWindow:
    """Causal context over the recent dialogue + the open-set speaker representation."""

    def __init__(self, info: ModelInfo, options: FeatureOptions | None = None) -> None:
        from mlsan.speaker import SpeakerHistory

        self.info = info
        self.options = options or FeatureOptions()
        if self.options.max_context < 1:
            raise ValueError("max_context must be >= 1")
        self._rows: deque[_Row] = deque(maxlen=self.options.max_context - 1)
        self._history = None
        if info.speaker_source == "history":
            if info.speaker_dim != info.text_dim + 1:
                raise CheckpointError(
                    f"checkpoint {info.path}: history speaker tensor of {info.speaker_dim} does "
                    f"not fit {info.text_dim}-d text features; fix: retrain with mlsan-train"
                )
            self._history = SpeakerHistory(info.text_dim, self.options.speaker_decay)
        self._enroll = None
        if info.speaker_source == "enroll":
            from mlsan.speaker import EnrollHistory

            self._enroll = EnrollHistory(info.audio_dim, info.text_dim)
            if self._enroll.dim != info.speaker_dim:
                raise CheckpointError(
                    f"checkpoint {info.path}: enroll speaker tensor of {info.speaker_dim} does not "
                    "fit its voice and text widths; fix: retrain with mlsan-train"
                )

    def speaker_representation(self, utt: Utterance, feats: UtteranceFeatures) -> np.ndarray:
        info = self.info
        if info.speaker_source == "history":
            return self._history.represent(utt.speaker)
        if info.speaker_source == "enroll":
            return self._enroll.represent(utt.speaker)
        if info.speaker_source == "voice" and utt.voice is not None:
            from mlsan.speaker import voice_representation

            return voice_representation(utt.voice, info.speaker_dim)
        return np.zeros(info.speaker_dim, np.float32)

    def inputs(self, utt: Utterance, feats: UtteranceFeatures) -> tuple[EmotionInputs, _Row]:
        """[1, T, ...] inputs: the context rows then this utterance (the last position)."""
        row = _Row(
            feats.text,
            feats.audio,
            feats.visual,
            feats.mask,
            self.speaker_representation(utt, feats),
        )
        rows = [*self._rows, row]

        def stack(name: str) -> np.ndarray:
            return np.stack([getattr(r, name) for r in rows])[None].astype(np.float32)

        inputs = EmotionInputs(
            text=stack("text"),
            audio=stack("audio"),
            visual=stack("visual"),
            modality_mask=stack("mask"),
            speaker=stack("speaker"),
            context_mask=np.ones((1, len(rows)), np.float32),
        )
        return inputs, row

    def commit(self, utt: Utterance, feats: UtteranceFeatures, row: _Row) -> None:
        """After predicting: the utterance joins the context and its speaker's history."""
        self._rows.append(row)
        if self._history is not None and feats.mask[0] > 0:
            self._history.update(utt.speaker, feats.text)
        if self._enroll is not None:
            self._enroll.update(
                utt.speaker,
                feats.audio if feats.mask[1] > 0 else None,
                feats.text if feats.mask[0] > 0 else None,
            )

    def speaker_count(self, speaker: str) -> int:
        """Utterances the speaker representation holds (voice ones for ``enroll``)."""
        if self._enroll is not None:
            return self._enroll.count(speaker)
        return self._history.count(speaker) if self._history is not None else 0

    def __len__(self) -> int:
        return len(self._rows)

"""Open-set speaker representations, shared by training and the live app.

``history`` form: a speaker is represented by a running summary of their *own earlier*
utterance features: the mean of those features plus ``log(1 + count)``; a speaker never heard
before is the zero vector with count 0. Nothing here is learned, so a person enrolled a minute
ago adapts the model with no retraining. ``SpeakerHistory`` is the stateful form the live app
keeps (``represent`` before predicting an utterance, ``update`` after); ``history_representations``
is the vectorised form for training over a whole dialogue. Both give identical vectors.

``voice`` form: a 256-d voice d-vector (resemblyzer) is passed as the speaker tensor as is,
L2-normalised; the model's speaker projection learns the rest (``voice_representation``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence

import numpy as np


def history_dim(feature_dim: int, identity_dim: int = 0) -> int:
    """Size of a history representation built from ``feature_dim``-d features."""
    return feature_dim + 1 + identity_dim


def identity_code(speaker_key: Hashable, dim: int, salt: str = "") -> np.ndarray:
    """A random unit vector fixed by (salt, key), float32 [dim].

    No learned table: two utterances of one speaker carry the same code (dot product 1), two
    speakers nearly orthogonal codes, so the context encoder can tell "same speaker" from
    "someone else" for a person it has never seen. ``salt`` is the dialogue (training) or the
    session (live), so codes carry no identity across dialogues.
    """
    digest = hashlib.sha256(f"{salt}\x00{speaker_key!r}".encode()).digest()
    v = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(dim)
    return (v / max(float(np.linalg.norm(v)), 1e-6)).astype(np.float32)


class SpeakerHistory:
    """Running per-speaker summary: ``represent(key) -> float32 [feature_dim + 1]``.

    ``decay`` in (0, 1] weights older utterances by ``decay**age`` (1.0 = plain mean), so a
    long live session can follow a speaker's drift; training uses 1.0.
    """

    def __init__(
        self, feature_dim: int, decay: float = 1.0, identity_dim: int = 0, salt: str = ""
    ) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError("decay must be in (0, 1]")
        self.feature_dim = feature_dim
        self.decay = decay
        self.identity_dim = (
            identity_dim  # >0: append identity_code(key) (config.speaker_identity_dim)
        )
        self.salt = salt
        self._sum: dict[Hashable, np.ndarray] = {}
        self._weight: dict[Hashable, float] = {}
        self._count: dict[Hashable, int] = {}

    @property
    def dim(self) -> int:
        return history_dim(self.feature_dim, self.identity_dim)

    def speakers(self) -> list[Hashable]:
        return list(self._count)

    def count(self, speaker_key: Hashable) -> int:
        return self._count.get(speaker_key, 0)

    def represent(self, speaker_key: Hashable) -> np.ndarray:
        """The speaker's summary so far (zeros for an unseen speaker)."""
        out = np.zeros(self.dim, np.float32)
        d = self.feature_dim
        count = self._count.get(speaker_key, 0)
        if count:
            out[:d] = self._sum[speaker_key] / self._weight[speaker_key]
            out[d] = np.log1p(count)
        if self.identity_dim:
            out[d + 1 :] = identity_code(speaker_key, self.identity_dim, self.salt)
        return out

    def update(self, speaker_key: Hashable, features: np.ndarray) -> None:
        """Add one utterance's features ([feature_dim]) to the speaker's summary."""
        features = np.asarray(features, dtype=np.float64).reshape(-1)
        if features.shape[0] != self.feature_dim:
            raise ValueError(f"expected {self.feature_dim} features, got {features.shape[0]}")
        if speaker_key in self._count:
            self._sum[speaker_key] = self._sum[speaker_key] * self.decay + features
            self._weight[speaker_key] = self._weight[speaker_key] * self.decay + 1.0
            self._count[speaker_key] += 1
        else:
            self._sum[speaker_key] = features.copy()
            self._weight[speaker_key] = 1.0
            self._count[speaker_key] = 1

    def forget(self, speaker_key: Hashable) -> None:
        for table in (self._sum, self._weight, self._count):
            table.pop(speaker_key, None)

    def reset(self) -> None:
        self._sum.clear()
        self._weight.clear()
        self._count.clear()


def history_representations(
    features: np.ndarray,
    speaker_keys: Sequence[Hashable],
    decay: float = 1.0,
    identity_dim: int = 0,
    salt: str = "",
) -> np.ndarray:
    """[T, D] features of one dialogue's utterances, in order -> [T, D+1+identity_dim].

    Row t summarises the earlier utterances (< t) of the speaker of utterance t, exactly as
    ``SpeakerHistory.represent`` would before utterance t is added.
    """
    features = np.asarray(features, dtype=np.float32)
    if len(speaker_keys) != features.shape[0]:
        raise ValueError("one speaker key per utterance is required")
    history = SpeakerHistory(features.shape[1], decay, identity_dim, salt)
    out = np.zeros((features.shape[0], history.dim), np.float32)
    for t, key in enumerate(speaker_keys):
        out[t] = history.represent(key)
        history.update(key, features[t])
    return out


def voice_representation(d_vector: np.ndarray | None, dim: int = 256) -> np.ndarray:
    """A voice d-vector as the speaker tensor row: L2-normalised float32 [dim]; None -> zeros."""
    if d_vector is None:
        return np.zeros(dim, np.float32)
    v = np.asarray(d_vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim:
        raise ValueError(f"expected a {dim}-d voice embedding, got {v.shape[0]}")
    return v / max(float(np.linalg.norm(v)), 1e-6)


def enroll_dim(audio_dim: int, text_dim: int) -> int:
    """Size of the ``enroll`` speaker tensor: voice mean + count, text mean + count."""
    return audio_dim + 1 + text_dim + 1


def enroll_row(
    voice_mean: np.ndarray | None,
    k_voice: int,
    text_mean: np.ndarray | None,
    k_text: int,
    audio_dim: int,
    text_dim: int,
) -> np.ndarray:
    """One ``enroll`` speaker row (float32 [enroll_dim]); a mean with count 0 is zeros."""
    out = np.zeros(enroll_dim(audio_dim, text_dim), np.float32)
    if k_voice > 0 and voice_mean is not None:
        out[:audio_dim] = voice_mean
        out[audio_dim] = np.log1p(k_voice)
    if k_text > 0 and text_mean is not None:
        out[audio_dim + 1 : audio_dim + 1 + text_dim] = text_mean
        out[-1] = np.log1p(k_text)
    return out


class EnrollHistory:
    """Live form of the ``enroll`` representation: per speaker, running means of the voice and
    text features of their own earlier utterances (unlabelled), with the counts.

    ``represent(key)`` before predicting an utterance, ``update(key, voice, text)`` after (either
    may be None when that modality was missing). A stranger starts at K = 0 (all zeros): the
    model then behaves as its speaker-independent self; every utterance with voice adds one to K.
    Training builds the same rows from K other clips of the speaker (``enroll_row``).
    """

    def __init__(self, audio_dim: int, text_dim: int) -> None:
        self.voice = SpeakerHistory(audio_dim)
        self.text = SpeakerHistory(text_dim)
        self.audio_dim, self.text_dim = audio_dim, text_dim

    @property
    def dim(self) -> int:
        return enroll_dim(self.audio_dim, self.text_dim)

    def count(self, key: Hashable) -> int:
        return self.voice.count(key)

    def represent(self, key: Hashable) -> np.ndarray:
        v, t = self.voice.represent(key), self.text.represent(key)
        return enroll_row(
            v[: self.audio_dim],
            self.voice.count(key),
            t[: self.text_dim],
            self.text.count(key),
            self.audio_dim,
            self.text_dim,
        )

    def update(self, key: Hashable, voice: np.ndarray | None, text: np.ndarray | None) -> None:
        if voice is not None:
            self.voice.update(key, voice)
        if text is not None:
            self.text.update(key, text)

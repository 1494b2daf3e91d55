"""Voice embeddings: resemblyzer's GE2E encoder on windows inside each speech segment.

API::

    emb = VoiceEmbedder(VoiceOptions())  # weights: registry "voice" (pretrained.pt)
    sv = emb.embed_segment(segment)      # SpeechSegment -> SegmentVoice
    sv.spans                      # tuple[VoiceSpan]: window times + (256,) d-vector
    sv.embedding                  # (256,) whole-segment d-vector (L2-normalised)
    emb.embed(samples)            # (n,) float32 16 kHz -> (256,) d-vector

- A segment no longer than ``window_s + hop_s / 2`` gives one window covering it; a longer one
  gives windows of ``window_s`` every ``hop_s``, the last one aligned to the segment's end, so a
  change of speaker inside one VAD segment shows up as windows that the diarizer assigns to
  different people. Segments shorter than ``min_segment_s`` get no window (no speaker turn).
- The segment is volume-normalised to -30 dBFS (as resemblyzer does); its mel spectrogram is
  computed once and sliced into the windows, which run through the LSTM as one batch.
- The constructor runs one warm-up embedding (librosa/torch set-up, ~1 s) so the first live
  segment is not late.
- Runs on CPU with torch (``threads`` intra-op threads). Not thread-safe per instance.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.messages import SAMPLE_RATE, SpeechSegment
from mlsan.errors import UserFacingError

EMBED_DIM = 256
MEL_STEP_S = 0.010  # resemblyzer's mel hop (10 ms)


class VoiceError(UserFacingError):
    """The voice encoder cannot be loaded."""


@dataclass(frozen=True)
class VoiceOptions:
    # Defaults for CAM++ (speaker.py), chosen on AMI + the sample: 1.5 s windows every 0.5 s
    # (2 s windows merged the sample's two people; 1 s split AMI's). Resemblyzer's previous
    # values (2.0 / 0.25 / 0.3) are ``offline.LEGACY``.
    window_s: float = 1.5  # length of one embedding window (clustering)
    hop_s: float = 0.5  # step between windows inside a long segment
    min_segment_s: float = 0.2  # shorter segments get no embedding (too little voice)
    device: str = "cpu"
    threads: int = 1


@dataclass(frozen=True)
class VoiceSpan:
    t_start: float
    t_end: float
    embedding: np.ndarray  # (256,) float32, L2-normalised


@dataclass(frozen=True)
class SegmentVoice:
    """The voice of one speech segment: windows and the whole-segment embedding."""

    segment_id: int
    t_start: float
    t_end: float
    spans: tuple[VoiceSpan, ...]  # empty when the segment is shorter than min_segment_s
    embedding: np.ndarray | None  # (256,) float32, L2-normalised mean of the spans


def normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """``wav`` scaled to ``target_dbfs`` RMS (float32); near-digital silence (RMS below
    -120 dBFS) is returned as it is. Both voice models use it (resemblyzer, CAM++)."""
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if len(wav) else 0.0
    if rms < 1e-6:
        return wav
    gain = 10 ** ((target_dbfs - 20 * np.log10(rms)) / 20)
    return (wav * gain).astype(np.float32)


def window_bounds(n_frames: int, win: int, hop: int) -> list[tuple[int, int]]:
    """[start, end) mel-frame windows covering ``n_frames`` (last one aligned to the end)."""
    if n_frames <= win + hop // 2:
        return [(0, n_frames)]
    starts = list(range(0, n_frames - win + 1, hop))
    if starts[-1] + win < n_frames:
        starts.append(n_frames - win)
    return [(s, s + win) for s in starts]


class VoiceEmbedder:
    def __init__(
        self, options: VoiceOptions = VoiceOptions(), weights: str | Path | None = None
    ) -> None:
        self.options = options
        if weights is None:
            from mlsan.registry import default_registry

            weights = default_registry().resolve("voice").path
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation warning
            from resemblyzer import VoiceEncoder
            from resemblyzer.audio import wav_to_mel_spectrogram
        self._mel = wav_to_mel_spectrogram
        self._torch = torch
        try:
            self.encoder = VoiceEncoder(device=options.device, verbose=False, weights_fpath=weights)
        except Exception as exc:  # resemblyzer raises bare Exception for a missing file
            raise VoiceError(
                f"cannot load the voice encoder {weights} ({str(exc)[:160]}); fix: pass "
                "--voice-model with resemblyzer's pretrained.pt"
            ) from None
        self.encoder.eval()
        from mlsan.registry import file_sha256

        self.dim = EMBED_DIM
        self.model_id = f"resemblyzer-ge2e:{file_sha256(weights)[:12]}"  # gallery check
        # The first call pays librosa's and torch's one-off setup (~1 s): pay it here, not on
        # the first segment of a live run.
        self.embed(np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1)

    def _embed_mels(self, mels: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        # Windows of equal length are batched together.
        by_len: dict[int, list[int]] = {}
        for i, m in enumerate(mels):
            by_len.setdefault(len(m), []).append(i)
        result = np.zeros((len(mels), EMBED_DIM), np.float32)
        prev = torch.get_num_threads()
        torch.set_num_threads(self.options.threads)
        try:
            with torch.inference_mode():
                for idxs in by_len.values():
                    batch = torch.from_numpy(np.stack([mels[i] for i in idxs])).to(
                        self.encoder.device
                    )
                    emb = self.encoder(batch).cpu().numpy()
                    result[idxs] = emb
        finally:
            torch.set_num_threads(prev)
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        return (result / np.maximum(norms, 1e-8)).astype(np.float32)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """(n,) float32 16 kHz -> (256,) L2-normalised d-vector of the whole span."""
        mel = self._mel(normalize_volume(np.asarray(samples, np.float32)))
        return self._embed_mels([mel.astype(np.float32)])[0]

    def embed_segment(self, segment: SpeechSegment) -> SegmentVoice:
        samples = np.asarray(segment.samples, np.float32)
        dur = len(samples) / SAMPLE_RATE
        if dur < self.options.min_segment_s:
            return SegmentVoice(segment.segment_id, segment.t_start, segment.t_end, (), None)
        mel = self._mel(normalize_volume(samples)).astype(np.float32)  # (frames, 40)
        win = max(1, int(round(self.options.window_s / MEL_STEP_S)))
        hop = max(1, int(round(self.options.hop_s / MEL_STEP_S)))
        bounds = window_bounds(len(mel), win, hop)
        embs = self._embed_mels([mel[a:b] for a, b in bounds])
        spans = tuple(
            VoiceSpan(
                t_start=segment.t_start + a * MEL_STEP_S,
                t_end=min(segment.t_end, segment.t_start + b * MEL_STEP_S),
                embedding=e,
            )
            for (a, b), e in zip(bounds, embs, strict=True)
        )
        mean = embs.mean(axis=0)
        mean = (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32)
        return SegmentVoice(segment.segment_id, segment.t_start, segment.t_end, spans, mean)

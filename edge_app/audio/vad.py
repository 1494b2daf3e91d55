"""Streaming voice activity: Silero VAD v6 (ONNX) + a hysteresis state machine.

API::

    vad = StreamingVad(VadOptions(), model=SileroVad(path))   # path: registry "vad" by default
    for chunk in source.chunks(stop):
        for seg in vad.process(chunk):      # list[SpeechSegment], in time order, non-overlapping
            ...
    for seg in vad.flush():                 # at end of stream: the open segment, if any
        ...
    vad.reset()                             # forget everything (new stream)

- ``SileroVad.probabilities(windows)`` runs the ONNX model on (n, 512) windows of 32 ms and
  carries its LSTM state and 64-sample context across calls (streaming). ``reset()`` clears them.
- ``VadStateMachine`` is pure (no model, no audio): ``push(prob) -> list[FrameSegment]`` turns
  per-frame probabilities into segments of frame indices; ``flush()`` closes an open one.
  Rules: speech starts at the first frame with p >= ``threshold``; inside speech, a pause starts
  at the first frame with p < ``neg_threshold`` (frames in between neither start nor end a
  pause: hysteresis) and is cancelled by a frame with p >= ``threshold``; a pause of
  ``min_silence_s`` ends the segment at the pause's start; segments shorter than
  ``min_speech_s`` are discarded; ``pad_s`` is added on both sides without overlapping the
  previous segment; a segment reaching ``max_segment_s`` is cut (``truncated=True``) at the
  current pause if one is open, else right there, and speech continues in a new segment at once.
  Speaker-change cut (``change_min_s``, 1 s by default; only models that report changes, i.e.
  ``SegmentationVad.take_changes``): a segment that has lasted ``change_min_s`` ends where
  another voice takes over, and the next one starts there (no pause needed, no padding), so a
  turn that ends while the other person talks is reported as soon as the change is known, not
  at the 6-s cut. The model knows a change only some time after it (it needs to hear the new
  voice), so a change may name a frame already pushed: ``VadStateMachine.cut(frame)`` then ends
  the open segment back at that frame (``StreamingVad`` routes each change to ``cut`` or to the
  frame's ``push``).
  Optional adaptive cut (``long_after_s``, off by default): once the open segment has lasted
  that long, a dip of ``long_min_silence_s`` below ``long_neg_threshold`` ends it like a pause.
- ``StreamingVad`` buffers only the audio the open segment (and padding, and ``grow_s``) needs.
  With a model that scores frames again later (``SegmentationVad.speech``), it re-judges a
  segment's edges when handing it on (``VadOptions.grow_threshold``): frames just outside it
  that the later scores call speech are added, never into a neighbouring segment.
  ``StreamingVad.speculation()`` guesses the open segment as it will be handed on, once its end
  can be foreseen: at an open pause (it ends there unless speech resumes within
  ``min_silence_s``) or at an early speaker-change guess
  (``SegmentationVad.take_tentative_changes``). It changes nothing here: the live run starts
  transcribing the guess while the VAD makes sure, and keeps the words only if the segment
  handed on is the same audio (``WhisperTranscriber.transcribe_ahead``).
  ``StreamingVad.open_prefix(every_s)`` gives the open segment's audio so far, every
  ``every_s`` of it: the live run's voice stage embeds its windows while the turn goes on.
  Times: a segment's ``t_start`` is the stream's first chunk ``t_start`` plus its sample offset;
  chunks with ``dropped_before`` get that many zeros inserted so the timeline stays right.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge_app.messages import SAMPLE_RATE, AudioChunk, SpeechSegment
from mlsan.errors import UserFacingError

FRAME = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window Silero v5/v6 prepend
FRAME_S = FRAME / SAMPLE_RATE


class VadError(UserFacingError):
    """The VAD model cannot be loaded or options are inconsistent."""


@dataclass(frozen=True)
class VadOptions:
    # Defaults for the default frame model, pyannote segmentation-3.0 (SegmentationVad), chosen
    # on the ten AMI excerpts + sample.wav (bench/bench_diarization.py): 0.7 with a pause
    # starting below 0.65 (the model's probabilities are sharp: Silero's 0.15 hysteresis kept
    # 8-17 % of false alarm at turn ends), no padding. The previous Silero values (0.55,
    # neg 0.4, 0.05 s pad, chosen on the sample) are ``offline.LEGACY``.
    threshold: float = 0.7  # p >= this starts (or continues) speech
    neg_threshold: float | None = 0.65  # p < this starts a pause; None: threshold - 0.15
    min_speech_s: float = 0.25  # shorter speech is dropped
    min_silence_s: float = 0.2  # a pause this long ends a segment
    pad_s: float = 0.0  # added before and after each segment
    # Long monologues are cut here: bounds the latency of a turn that ends inside one. The live
    # run and `mlsan-live diarize` both use 6 s (LiveOptions.max_segment_s, --max-segment).
    max_segment_s: float = 6.0
    # Adaptive cut: once the open segment has lasted ``long_after_s``, a shorter dip ends it:
    # ``long_min_silence_s`` of frames below ``long_neg_threshold`` (so a turn that ends while
    # the other person talks waits for the next breath, not for ``max_segment_s``). Off (None)
    # by default: at 3 s it cuts the sample's first, two-voice stretch early, which the online
    # diarizer labels worse (sample DER 0.155 vs 0.140; with long_neg_threshold 0.5, 3 labels
    # at -12 dB and 1 label shifted by 1.3 s) and the mid-speech waits barely move; from 4 s
    # on it only finds the 0.19-s turn pause that min_silence_s=0.2 already ends.
    long_after_s: float | None = None
    # Speaker-change cut (models that report one: SegmentationVad): a segment that has lasted
    # this long ends where another voice takes over, without a pause. None: off.
    change_min_s: float | None = 1.0
    long_min_silence_s: float = 0.1
    long_neg_threshold: float | None = None  # None: the usual neg_threshold
    # Edges re-judged at hand-on (models that score a frame again in later runs, with more
    # right context: SegmentationVad.speech). The state machine decides on each frame's first
    # score (no right context, so no added latency); a speech onset is first scored low (the
    # model has heard little of it) and so is a soft ending. When a segment is handed on, the
    # frames just before and after it whose mean score so far is >= ``grow_threshold`` are
    # added, up to ``grow_s`` on each side, never into a neighbouring segment. 0.8 (AMI +
    # sample, bench/bench_diarization.py): speech missed on AMI 16.3 -> 14.5 s for 8.2 -> 8.5 s
    # of false alarm, pooled DER 31.2 -> 30.5 %, sample unchanged; 0.7 / 0.9: 31.2 / 30.8 %.
    # None: off.
    grow_threshold: float | None = 0.8
    grow_s: float = 0.5

    def frames(self) -> tuple[float, float, int, int, int, int]:
        off = self.neg_threshold if self.neg_threshold is not None else self.threshold - 0.15
        off = max(0.01, off)
        if not 0.0 < self.threshold <= 1.0 or off > self.threshold:
            raise VadError(
                f"VAD thresholds are inconsistent (threshold={self.threshold}, "
                f"neg_threshold={off}); fix: 0 < neg_threshold <= threshold <= 1"
            )
        if self.max_segment_s < 1.0:
            raise VadError(f"max_segment_s={self.max_segment_s} is too short; fix: use >= 1 s")
        if self.long_after_s is not None and not 0.0 < self.long_after_s <= self.max_segment_s:
            raise VadError(
                f"long_after_s={self.long_after_s} is out of range; fix: use 0 < long_after_s "
                f"<= max_segment_s ({self.max_segment_s}) or None"
            )

        def f(s: float) -> int:
            return max(0, int(round(s / FRAME_S)))

        return (
            self.threshold,
            off,
            max(1, f(self.min_speech_s)),
            max(1, f(self.min_silence_s)),
            f(self.pad_s),
            max(2, f(self.max_segment_s)),
        )


@dataclass(frozen=True)
class FrameSegment:
    start: int  # first frame (inclusive), padding included
    end: int  # last frame (exclusive), padding included
    truncated: bool = False
    # Starts where another voice took over (a speaker-change cut): no pause before it, and the
    # segment before it ends at this one's start.
    after_change: bool = False


class VadStateMachine:
    """Frame probabilities -> speech segments (frame indices). See the module docstring."""

    def __init__(self, options: VadOptions = VadOptions()) -> None:
        (self.on, self.off, self.min_speech, self.min_silence, self.pad, self.max_len) = (
            options.frames()
        )
        self.long_after: int | None = None
        if options.long_after_s is not None:
            self.long_after = max(1, int(round(options.long_after_s / FRAME_S)))
        self.long_min_silence = max(1, int(round(options.long_min_silence_s / FRAME_S)))
        self.min_change: int | None = None
        if options.change_min_s is not None:
            self.min_change = max(1, int(round(options.change_min_s / FRAME_S)))
        lt = options.long_neg_threshold
        self.long_off = self.off if lt is None else min(self.on, max(self.off, lt))
        self.reset()

    def reset(self) -> None:
        self.n = 0  # frames seen
        self.dip_start: int | None = None  # first frame of a dip below long_off (long segments)
        self.in_speech = False
        self.start = 0  # first speech frame of the open segment (before padding)
        self.pad_start = 0  # first frame of the open segment, padding included
        self.pause_start: int | None = None
        self.after_change = False  # the open segment started at a speaker-change cut
        self.last_end = 0  # end (exclusive, padded) of the last emitted segment
        self._pending_end: FrameSegment | None = None  # emitted once its end padding is seen

    @property
    def earliest_needed(self) -> int:
        """The first frame a later segment may still include (the audio buffer keeps from here)."""
        if self._pending_end is not None:
            return self._pending_end.start
        if self.in_speech:
            return self.pad_start
        return max(self.last_end, self.n - self.pad)

    def _close(self, end: int, truncated: bool) -> list[FrameSegment]:
        """End the open segment at frame ``end`` (exclusive, before padding)."""
        out: list[FrameSegment] = []
        keep = end - self.start >= self.min_speech or (truncated and end > self.start)
        if keep:
            seg_end = end if truncated else end + self.pad
            seg = FrameSegment(self.pad_start, seg_end, truncated, self.after_change)
            if seg_end <= self.n:
                out.append(seg)
                self.last_end = seg_end
            else:
                self._pending_end = seg  # wait until its end padding has been seen
        self.in_speech = False
        self.pause_start = None
        self.dip_start = None
        return out

    def push(self, prob: float, change: bool = False) -> list[FrameSegment]:
        """``change``: the frame model saw another voice take over here (SegmentationVad):
        inside speech, after ``min_change_s``, the segment ends and a new one starts at once."""
        i = self.n
        self.n += 1
        out: list[FrameSegment] = []
        seg = self._pending_end
        if seg is not None and (prob >= self.on or seg.end <= self.n):
            # New speech (clip the end padding before it) or the end padding is complete.
            seg = replace(seg, end=min(seg.end, i) if prob >= self.on else seg.end)
            self._pending_end = None
            self.last_end = seg.end
            out.append(seg)
        if not self.in_speech:
            if prob >= self.on:
                self.in_speech = True
                self.start = i
                self.pad_start = max(self.last_end, i - self.pad)
                self.pause_start = None
                self.dip_start = None
                self.after_change = False
            return out
        # In speech.
        if prob >= self.on:
            self.pause_start = None
        elif prob < self.off and self.pause_start is None:
            self.pause_start = i
        if self.pause_start is not None and self.n - self.pause_start >= self.min_silence:
            out += self._close(self.pause_start, truncated=False)
            return out
        if self.long_after is not None:
            # Adaptive cut: a long segment ends at a brief dip (a shorter, shallower pause).
            if prob >= self.long_off:
                self.dip_start = None
            elif self.dip_start is None:
                self.dip_start = i
            if (
                self.dip_start is not None
                and self.n - self.dip_start >= self.long_min_silence
                and self.dip_start - self.pad_start >= self.long_after
            ):
                out += self._close(self.dip_start, truncated=False)
                return out
        if (
            change
            and self.min_change is not None
            and self.pause_start is None
            and i - self.pad_start >= self.min_change
        ):
            # No end padding (the next voice starts here), and not "truncated": a turn ends.
            out += [replace(f, truncated=False) for f in self._close(i, truncated=True)]
            self.in_speech = True
            self.start = i
            self.pad_start = i
            self.pause_start = None
            self.dip_start = None
            self.after_change = True
            return out
        if self.n - self.pad_start >= self.max_len:
            cut = self.pause_start if self.pause_start is not None else self.n
            if cut <= self.pad_start:
                cut = self.n
            out += self._close(cut, truncated=True)
            # Speech goes on: the next segment starts at the cut, with no padding before it.
            self.in_speech = True
            self.start = cut
            self.pad_start = cut
            self.pause_start = None
            self.dip_start = None
            self.after_change = False
        return out

    def cut(self, frame: int) -> list[FrameSegment]:
        """A speaker change found late (the frame model needed right context to hear the new
        voice) at ``frame``, already pushed: the open segment ends there and speech goes on in a
        new one from there, as ``push(change=True)`` would have done at that frame. Ignored
        unless the open segment had lasted ``change_min_s`` by then and no pause had begun."""
        if (
            not self.in_speech
            or self.min_change is None
            or not self.pad_start + self.min_change <= frame < self.n
            or (self.pause_start is not None and self.pause_start <= frame)
        ):
            return []
        pause, dip = self.pause_start, self.dip_start  # both after ``frame``: they stay open
        out = [replace(f, truncated=False) for f in self._close(frame, truncated=True)]
        self.in_speech = True
        self.start = self.pad_start = frame
        self.after_change = True
        self.pause_start, self.dip_start = pause, dip
        return out

    def flush(self) -> list[FrameSegment]:
        """End of stream: close the open segment (padding clipped to what was seen)."""
        out: list[FrameSegment] = []
        if self._pending_end is not None:
            seg = self._pending_end
            out.append(replace(seg, end=min(seg.end, self.n)))
            self._pending_end = None
        if self.in_speech:
            end = self.pause_start if self.pause_start is not None else self.n
            if end - self.start >= self.min_speech:
                out.append(
                    FrameSegment(
                        self.pad_start, min(end + self.pad, self.n), False, self.after_change
                    )
                )
            self.in_speech = False
        if out:
            self.last_end = out[-1].end
        return out


class SileroVad:
    """Silero VAD v6 ONNX run with onnxruntime, one thread, streaming state."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        if model_path is None:
            from mlsan.registry import default_registry

            model_path = default_registry().resolve("vad").path
        from edge_app.onnx_cpu import cpu_session

        try:
            self.session = cpu_session(model_path, threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise VadError(
                f"cannot load the VAD model {model_path} ({exc}); fix: pass --vad-model with a "
                "Silero VAD v6 .onnx file"
            ) from None
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """(n, 512) float32 consecutive windows -> (n,) speech probabilities."""
        if len(windows) == 0:
            return np.zeros(0, np.float32)
        windows = np.asarray(windows, np.float32).reshape(-1, FRAME)
        ctx = np.concatenate([self._context[None], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.concatenate([ctx, windows], axis=1)  # (n, 576)
        probs, self._h, self._c = self.session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probs, np.float32).reshape(-1)

    def flush(self) -> np.ndarray:
        """End of stream: Silero scores every frame at once, so nothing is owed."""
        return np.zeros(0, np.float32)


class StreamingVad:
    """AudioChunks -> SpeechSegments (see module docstring)."""

    def __init__(self, options: VadOptions = VadOptions(), model: SileroVad | None = None) -> None:
        self.options = options
        self.model = model if model is not None else SileroVad()
        self.machine = VadStateMachine(options)
        # Frames a segment's edges may grow by when handed on: 0 when off or when the model
        # does not score frames again (Silero), and then no extra audio is kept for it either.
        can_grow = options.grow_threshold is not None and hasattr(self.model, "speech")
        self._grow = int(round(options.grow_s / FRAME_S)) if can_grow else 0
        self.reset()

    def reset(self) -> None:
        self.model.reset()
        self.machine.reset()
        self._t0: float | None = None
        self._pending = np.zeros(0, np.float32)  # samples not yet a whole frame
        self._audio = np.zeros(0, np.float32)  # kept frames, from frame index `_base`
        self._base = 0
        self._next_id = 0
        self._n_samples = 0  # real samples received (dropped ones count: zeros stand in)
        self.probs: list[float] = []  # every frame's probability (diagnostics, bench)
        self._changes: set[int] = set()  # speaker-change frames reported before being pushed
        self._emitted_end = 0  # end frame (exclusive) of the last segment handed on
        self._tentative: list[int] = []  # early speaker-change guesses, increasing
        self._guessed: tuple[int, int] | None = None  # (start, end) of the last speculation
        self._prefixed: tuple[int, int] = (-1, 0)  # (start, end) of the last open_prefix

    def overlap(self, t_start: float, t_end: float) -> tuple[float, np.ndarray]:
        """p(overlapped speech) per 32-ms frame over [t_start, t_end): (time of the first
        frame, (n,) probabilities); all zero when the model does not tell (Silero)."""
        if self._t0 is None or not hasattr(self.model, "overlap"):
            n = max(0, int(np.ceil((t_end - t_start) / FRAME_S)))
            return t_start, np.zeros(n, np.float32)
        first = int(np.floor((t_start - self._t0) / FRAME_S))
        last = int(np.ceil((t_end - self._t0) / FRAME_S))
        return self._t0 + first * FRAME_S, self.model.overlap(first, last)

    def _grown(self, fs: FrameSegment, next_start: int | None = None) -> FrameSegment:
        """``fs`` with its edges re-judged on the model's later scores (see
        ``VadOptions.grow_threshold``); ``fs`` itself when off or not known. ``next_start``:
        where the next segment starts, if one is open (it is not grown into)."""
        if not self._grow:
            return fs
        lo = min(fs.start, max(self._base, self._emitted_end, fs.start - self._grow))
        hi = min(self.machine.n, fs.end + self._grow)
        if next_start is not None:
            hi = min(hi, next_start)
        hi = max(hi, fs.end)
        on = self.model.speech(lo, hi) >= self.options.grow_threshold
        start, end = fs.start - lo, fs.end - lo  # indices into ``on``
        while start > 0 and on[start - 1]:
            start -= 1
        while end < len(on) and on[end]:
            end += 1
        return replace(fs, start=lo + start, end=lo + end)

    def _segments(self, frame_segments: list[FrameSegment]) -> list[SpeechSegment]:
        out = []
        for fs in frame_segments:
            fs = self._grown(fs, self.machine.pad_start if self.machine.in_speech else None)
            out.append(self._segment(fs))
            self._emitted_end = fs.end
        return out

    def speculation(self) -> SpeechSegment | None:
        """The open segment as it will probably be handed on, when its end can be foreseen
        now (see the module docstring), or None (nothing foreseen, or this guess was already
        given). ``segment_id`` is -1: the guess is not a segment of the stream."""
        m = self.machine
        if not m.in_speech or m._pending_end is not None:
            return None
        self._tentative = [f for f in self._tentative if f > m.pad_start]
        end = next_start = None
        pause = m.pause_start
        if pause is not None and pause - m.start >= m.min_speech and pause + m.pad <= m.n:
            end = pause + m.pad  # closes here unless speech resumes
        if m.min_change is not None:
            for f in self._tentative:
                ok = m.pad_start + m.min_change <= f < m.n
                if ok and (pause is None or f < pause):
                    end = next_start = f  # the next voice's segment would start here
                    break
        if end is None:
            return None
        fs = self._grown(FrameSegment(m.pad_start, end, False, m.after_change), next_start)
        if (fs.start, fs.end) == self._guessed:
            return None
        self._guessed = (fs.start, fs.end)
        return self._segment(fs, segment_id=-1)

    def open_prefix(self, every_s: float) -> SpeechSegment | None:
        """The open segment's audio so far (its start re-judged as at hand-on), once it holds
        ``every_s`` more than the last one given for that start, or None. The live run's voice
        stage embeds its complete windows while the turn goes on. ``segment_id`` is -1."""
        m = self.machine
        if not m.in_speech or m._pending_end is not None:
            return None
        fs = self._grown(FrameSegment(m.pad_start, m.n, False, m.after_change), m.n)
        start, given = self._prefixed
        if fs.end - (given if fs.start == start else fs.start) < every_s / FRAME_S:
            return None
        self._prefixed = (fs.start, fs.end)
        return self._segment(fs, segment_id=-1)

    def _segment(self, fs: FrameSegment, segment_id: int | None = None) -> SpeechSegment:
        """The audio of ``fs``; ``segment_id`` None: the stream's next segment id."""
        a = (fs.start - self._base) * FRAME
        # The last frame may be zero padding past the end of the stream: never include it.
        end_sample = min(fs.end * FRAME, self._n_samples)
        b = end_sample - self._base * FRAME
        assert a >= 0, "VAD audio buffer trimmed too early"
        if segment_id is None:
            segment_id, self._next_id = self._next_id, self._next_id + 1
        seg = SpeechSegment(
            segment_id=segment_id,
            t_start=self._t0 + fs.start * FRAME_S,
            t_end=self._t0 + end_sample / SAMPLE_RATE,
            samples=self._audio[a:b].copy(),
            truncated=fs.truncated,
            after_change=fs.after_change,
        )
        return seg

    def _trim(self) -> None:
        keep_from = self.machine.earliest_needed - self._grow  # a start may move back
        drop = keep_from - self._base
        if drop > 0:
            self._audio = self._audio[drop * FRAME :]
            self._base = keep_from

    def process(self, chunk: AudioChunk) -> list[SpeechSegment]:
        if self._t0 is None:
            self._t0 = chunk.t_start
        samples = chunk.samples
        if chunk.dropped_before:
            samples = np.concatenate([np.zeros(chunk.dropped_before, np.float32), samples])
        self._n_samples += len(samples)
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n_frames = len(buf) // FRAME
        self._pending = buf[n_frames * FRAME :].copy()
        if n_frames == 0:
            return []
        frames = buf[: n_frames * FRAME]
        self._audio = np.concatenate([self._audio, frames])
        # A model may score frames later than it receives them (SegmentationVad: in blocks,
        # with look-ahead): the probabilities are those of the oldest frames not yet pushed.
        out = self._push(self.model.probabilities(frames.reshape(n_frames, FRAME)))
        self._trim()
        return self._with_overlap(out)

    def _with_overlap(self, segments: list[SpeechSegment]) -> list[SpeechSegment]:
        """The segments handed on by one call, each with its p(two speakers) as the model
        holds it now (``SpeechSegment.overlap``)."""
        return [replace(s, overlap=self.overlap(s.t_start, s.t_end)) for s in segments]

    def _push(self, probs) -> list[SpeechSegment]:
        self.probs.extend(float(p) for p in probs)
        out: list[SpeechSegment] = []
        take = getattr(self.model, "take_tentative_changes", None)
        if take is not None:
            self._tentative += take()
        take = getattr(self.model, "take_changes", None)
        for frame in take() if take is not None else ():
            if frame < self.machine.n:  # found late: cut the open segment back there
                out += self._segments(self.machine.cut(frame))
            else:
                self._changes.add(frame)
        for p in probs:
            change = self.machine.n in self._changes
            self._changes.discard(self.machine.n)
            out += self._segments(self.machine.push(float(p), change))
        return out

    def flush(self) -> list[SpeechSegment]:
        out: list[SpeechSegment] = []
        if len(self._pending):
            tail = np.zeros(FRAME, np.float32)
            tail[: len(self._pending)] = self._pending
            self._pending = np.zeros(0, np.float32)
            if self._t0 is not None:
                self._audio = np.concatenate([self._audio, tail])
                out += self._push(self.model.probabilities(tail[None]))
        if self._t0 is not None:
            out += self._push(self.model.flush())
            out += self._segments(self.machine.flush())
            self._trim()
        return self._with_overlap(out)

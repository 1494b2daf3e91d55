"""Speech detection with pyannote segmentation-3.0 (ONNX) on a rolling window: the default VAD.

API (a drop-in for :class:`edge_app.audio.vad.SileroVad` inside ``StreamingVad``)::

    model = SegmentationVad(SegmentationOptions())   # weights: registry "segmentation"
    probs = model.probabilities(windows)  # (n, 512) new audio -> (k,) speech probabilities of
                                          # the oldest k not yet scored 32-ms frames (k may be 0)
    probs = model.flush()                 # end of stream: the frames still owed
    model.reset()

Why: on far-field AMI meetings Silero's frame probabilities at 0.5 miss about 35-40 % of the
speech (two of the ten excerpts entirely); this model, trained on meetings, misses about 5 %
run this way (bench/bench_diarization.py).

How: audio is kept for ``context_s``; once ``hop_s`` of new audio has arrived (plus
``lookahead_s``), the model runs once on the last ``context_s`` (shorter at the start of a
stream) and the speech probability ``1 - p(nobody)`` of each owed 32-ms frame is read off the
model's 16.875-ms frames by linear interpolation. Frames within ``lookahead_s`` of the newest
audio are scored at the next run (more right context, more delay). So a frame's probability is
known at most ``hop_s + lookahead_s`` after its audio arrived: that is this VAD's extra latency,
which the live latency bench (bench/bench_live.py) includes.

Speaker changes (``take_changes()``, read by ``StreamingVad``): inside each run's window, a
frame whose dominant single voice (p >= 0.5 among the model's local speakers) differs from the
voice that dominated the previous 1.2 s (at least 0.3 s of it) is a change. A frame is judged
once it has ``change_context_s`` of right context in the window (the model needs to hear some
of the new voice), and again in each later run until it has ``change_recheck_s`` (a voice first
taken for the previous one is told apart later), which may be after its speech probability
went to the state machine: the state machine then cuts the open segment back at that frame
(``VadStateMachine.cut``). So a turn that ends where another voice takes over, with no pause
(overlap, quick reply), is handed on ``change_context_s`` (up to ``change_recheck_s``) + up to
one hop after its end, not at the end of the stretch of speech
(``max_segment_s``). Local speaker labels are only consistent inside one window, so this needs
no matching across windows. On the sample the change cut lowers DER from 16.7 to 13.0 %
(confusion at turn changes inside a segment), on AMI it is neutral (34.0 vs 33.9 %).

Early guesses (``take_tentative_changes()``, read by ``StreamingVad.speculation``): the same
rule on frames with only ``tentative_context_s`` of right context (off unless set), each judged
once; nothing is cut on them. The live run with --speculative-asr starts transcribing the turn
up to a guess one hop before the change is sure (sample + AMI: 12 guesses, 7 of them the
segment later handed on, 5 exactly and 2 within 0.1 s).

Overlap (``overlap(first, last)``, read by the speaker stage when a segment is handed on): each
run scores p(two speakers) for every frame of its window; a frame's value is the mean over all
runs that held it so far (``overlap_mean``), since the first run sees it at the right edge with
no right context (AMI, frame by frame at 0.3: recall 0.39 -> 0.54, precision 0.83 -> 0.94).
The speech probability is logged the same way (``speech(first, last)``): ``StreamingVad`` reads
it when a segment is handed on, to re-judge the segment's edges (``VadOptions.grow_threshold``).

Cost: one run on 5 s of audio is about 12 ms on one CPU thread, so with ``hop_s`` 0.5 about
0.025 s of CPU per second of audio.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from edge_app.audio.vad import FRAME, VadError
from edge_app.messages import SAMPLE_RATE

MODEL_STEP_S = 270 / SAMPLE_RATE  # 16.875 ms between the model's output frames
MODEL_FIRST_S = 0.031  # centre of the first output frame (receptive field 991 samples / 2)
CHANGE_LOOKBACK_S = 1.2  # a speaker change: the voice that dominated this long before differs
CHANGE_MIN_S = 0.3  # ...and dominated at least this much of it (overlaps in between are -1)
# Right context of an early speaker-change guess (SegmentationOptions.tentative_context_s) when
# the live run transcribes ahead: a right guess comes one 0.25-s hop before the change is sure.
TENTATIVE_CONTEXT_S = 0.125


@dataclass(frozen=True)
class SegmentationOptions:
    context_s: float = 5.0  # audio the model sees per run
    # A frame is scored 0-0.25 s after its audio arrived (hop + lookahead). Look-ahead 0
    # (chosen on AMI + sample, bench/bench_diarization.py, with the change context below): a
    # turn that ends at a pause is handed on 0.25 s sooner; AMI DER 33.5 % vs 34.0 %, sample
    # 10.5 % vs 13.0 % (the previous defaults: 0.25 s look-ahead, changes judged with it);
    # 0.25 s look-ahead with the change context below: AMI 32.7 %, sample 13.0 %.
    hop_s: float = 0.25  # new audio between runs
    lookahead_s: float = 0.0  # right context before a frame is scored (adds latency)
    # Right context a frame needs before its speaker-change flag is read (independent of
    # lookahead_s: the model tells a new voice from the old one only after hearing some of it).
    # A change found for a frame already passed to the VAD state machine cuts the open segment
    # back there (VadStateMachine.cut), so the turn before it is handed on this long (+ up to
    # one hop) after its end, not at the end of the whole stretch of speech. 0.375 s (with the
    # recheck below and the diarizer's rule 6; bench/bench_diarization.py): the sample's turns
    # are handed on a median 0.42 s after their end (0.58 s at 0.5 s) at the same DER (AMI
    # 31.2 %, sample 11.6 %); 0.25 s: 0.38 s, AMI 31.4 %, sample 11.6 %; 0.125 s: sample 15.5 %.
    # Before rule 6 and the face binder's chance check, 0.25-0.375 s merged the sample's two
    # people or cut the face test clip's second person's first turn under the binder's minimum
    # evidence (tests/fixtures/two_speakers.mp4; README "Voices").
    change_context_s: float = 0.375
    # ...and frames are judged again in every later run until they have this much right
    # context (a voice the model first takes for the previous one is told apart later; a frame
    # judged once when <= change_context_s): a turn that ends inside a segment no longer waits
    # for that segment's end. 1.0 s (with the diarizer's rule 6; at a 0.5-s change context;
    # bench/bench_diarization.py): AMI pooled DER 31.8 -> 31.2 % (both halves lower), sample
    # 10.6 -> 11.6 %, the sample's turn wait p95 1.37 -> 0.90 s (median 0.54 -> 0.58 s).
    # 1.25 / 1.5 / 2.0 s: AMI 31.2 %, sample 11.4 / 11.8 / 10.5 %, wait p95 1.02 / 1.08 /
    # 1.67 s; 0.75 s is the same as off. (Before rule 6, 1.0 and 1.5 s merged the sample's two
    # people: 51 %.)
    change_recheck_s: float = 1.0
    # Early guess for speculative speech recognition (``take_tentative_changes``): a frame is
    # also judged once with only this much right context. Nothing is cut on it; the live run
    # starts transcribing the turn up to it while the change is confirmed (``StreamingVad.
    # speculation``). None (the default): no guesses; the live run with --speculative-asr sets
    # TENTATIVE_CONTEXT_S, so nothing else pays for them.
    tentative_context_s: float | None = None
    # p(two speakers) of a frame = the mean over every run whose window held it so far (up to
    # context_s / hop_s runs), not only the first run's (the frame at the window's right edge,
    # with no right context): the overlap turns of a segment are read when it is handed on,
    # by which time its frames were seen again with more context. False: the first run's.
    overlap_mean: bool = True
    threads: int = 1


class SegmentationVad:
    def __init__(
        self, options: SegmentationOptions = SegmentationOptions(), model_path=None
    ) -> None:
        if model_path is None:
            from mlsan.registry import default_registry

            model_path = default_registry().resolve("segmentation").path
        if not (1.0 <= options.context_s <= 10.0 and 0.032 <= options.hop_s <= options.context_s):
            raise VadError(
                f"segmentation window {options.context_s} s / hop {options.hop_s} s is out of "
                "range; fix: 1 <= context <= 10 s and 0.032 s <= hop <= context"
            )
        from edge_app.onnx_cpu import cpu_session

        try:
            self.session = cpu_session(model_path, options.threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise VadError(
                f"cannot load the segmentation model {model_path} ({str(exc)[:160]}); fix: pass "
                "--segmentation-model with segmentation-3.0.onnx (see README, Diarization)"
            ) from None
        self.options = options
        self._ctx = int(options.context_s * SAMPLE_RATE)
        self._hop = max(1, int(round(options.hop_s * SAMPLE_RATE / FRAME)))  # in 32-ms frames
        self._look = int(round(options.lookahead_s * SAMPLE_RATE / FRAME))
        self._cctx = int(round(options.change_context_s * SAMPLE_RATE / FRAME))
        self._crecheck = int(round(options.change_recheck_s * SAMPLE_RATE / FRAME))
        tc = options.tentative_context_s
        self._tctx = None if tc is None else int(round(tc * SAMPLE_RATE / FRAME))
        self.runs = 0  # model runs so far (cost accounting)
        self.reset()

    KEEP_LOG = 4000  # frames of speech / overlap probability kept (128 s)

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)  # audio from frame _buf0 to the newest (_n)
        self._buf0 = 0
        self._n = 0  # 32-ms frames received
        self._scored = 0  # frames whose probability was returned
        self._lock = threading.Lock()  # the overlap log is read from the voice thread
        # (p(speech), p(two speakers)) of frames [_log0, _scored): sum and number of the runs'
        # estimates; shapes (k, 2) and (k,)
        self._log_sum = np.zeros((0, 2), np.float64)
        self._log_n = np.zeros(0, np.int32)
        self._log0 = 0
        self._changes: list[int] = []  # frames of speaker changes found, not yet taken
        self._chg_next = 0  # first frame whose change flag has not been read yet
        self._tentative: list[int] = []  # early guesses (tentative_context_s), not yet taken
        self._tent_next = 0

    def take_changes(self) -> list[int]:
        """Frames (indices from the stream start) where another voice took over, found since
        the last call, in increasing order. A frame is judged as soon as the model has seen
        ``change_context_s`` after it, and again in each later run until it has
        ``change_recheck_s`` after it, so it may come again in a later call (the state machine
        ignores a cut it already made: ``VadStateMachine.cut``). It may be a frame whose
        probability was returned earlier (the state machine then cuts back there) or one still
        to come."""
        out, self._changes = self._changes, []
        return out

    def take_tentative_changes(self) -> list[int]:
        """Frames that look like speaker changes with only ``tentative_context_s`` of right
        context, found since the last call (each judged once). A guess: nothing is cut on it."""
        out, self._tentative = self._tentative, []
        return out

    def overlap(self, first: int, last: int) -> np.ndarray:
        """p(two or more speakers) of 32-ms frames [first, last) (0 where not known)."""
        return self._logged(first, last, 1)

    def speech(self, first: int, last: int) -> np.ndarray:
        """p(speech) of 32-ms frames [first, last), re-judged: the mean over every run that held
        the frame so far (with ``overlap_mean``; else the first run's), so with more right
        context than :meth:`probabilities` gave it (0 where not known)."""
        return self._logged(first, last, 0)

    def _logged(self, first: int, last: int, column: int) -> np.ndarray:
        out = np.zeros(max(0, last - first), np.float32)
        with self._lock:
            a, b = max(first, self._log0), min(last, self._log0 + len(self._log_n))
            if b > a:
                i, j = a - self._log0, b - self._log0
                out[a - first : b - first] = self._log_sum[i:j, column] / self._log_n[i:j]
        return out

    def _speech(self, upto: int, end: int) -> np.ndarray:
        """Run the model on the ``context_s`` of audio ending at frame ``end``; probabilities
        of frames [_scored, upto). Runs happen at fixed frames (every ``hop`` frames), so the
        result does not depend on how the audio was chunked."""
        stop = (end - self._buf0) * FRAME
        x = self._buf[max(0, stop - self._ctx) : stop]
        if len(x) < self._ctx:
            # Stream start: zeros stand for the missing past. Without them, the model's input
            # normalisation turns the first seconds of near silence (-70 dBFS) into "speech"
            # (p ~ 0.8 on the sample's first second; ~0.1 with the padding, as offline).
            x = np.concatenate([np.zeros(self._ctx - len(x), np.float32), x])
        start_s = end * FRAME / SAMPLE_RATE - len(x) / SAMPLE_RATE
        log_probs = self.session.run(None, {"waveform": x[None, None]})[0][0]  # (frames, 7)
        self.runs += 1
        probs = np.exp(log_probs)
        speech = 1.0 - probs[:, 0]
        two = probs[:, 4:].sum(axis=1)  # powerset classes {1,2}, {1,3}, {2,3}
        centres = start_s + MODEL_FIRST_S + np.arange(len(speech)) * MODEL_STEP_S
        want = (np.arange(self._scored, upto) + 0.5) * FRAME / SAMPLE_RATE
        self._find_changes(probs, start_s, end)
        out = np.interp(want, centres, speech).astype(np.float32)
        self._log(np.stack([speech, two], axis=1), centres, start_s, upto)
        self._scored = upto
        return out

    def _log(self, values: np.ndarray, centres: np.ndarray, start_s: float, upto: int) -> None:
        """Append frames [_scored, upto) of this run's (model frames, 2) ``values`` to the log
        and, with ``overlap_mean``, fold this run's estimate into the older frames its window
        holds (running mean)."""
        step = FRAME / SAMPLE_RATE
        lo = self._scored  # first frame this run estimates
        if self.options.overlap_mean:  # ...back to the window's first frame still logged
            first_in_window = int(np.ceil(start_s / step - 0.5))
            lo = min(self._scored, max(self._log0, first_in_window, 0))
        t = (np.arange(lo, upto) + 0.5) * step
        vals = np.stack([np.interp(t, centres, values[:, k]) for k in range(2)], axis=1)
        new = upto - self._scored
        with self._lock:
            old = self._scored - lo  # frames already logged that this run re-estimates
            if old:
                at = lo - self._log0
                self._log_sum[at:] += vals[:old]
                self._log_n[at:] += 1
            self._log_sum = np.concatenate([self._log_sum, vals[old:]])
            self._log_n = np.concatenate([self._log_n, np.ones(new, np.int32)])
            if len(self._log_n) > self.KEEP_LOG:
                cut = len(self._log_n) - self.KEEP_LOG
                self._log0 += cut
                self._log_sum, self._log_n = self._log_sum[cut:], self._log_n[cut:]

    def _find_changes(self, probs: np.ndarray, start_s: float, end: int) -> None:
        """Speaker changes of the frames that now have ``change_context_s`` of right context
        (frames [_chg_next, end - context)), and again those still within ``change_recheck_s``;
        the early guesses of frames with ``tentative_context_s`` of it (each once)."""
        upto = end - self._cctx
        first = max(0, min(self._chg_next, end - self._crecheck))
        if upto > first:
            self._chg_next = max(self._chg_next, upto)
            self._changes += self._changed(probs, start_s, first, upto)
        if self._tctx is not None:
            upto = end - self._tctx
            first = max(self._tent_next, self._chg_next)  # later frames than the sure ones
            if upto > first:
                self._tent_next = upto
                self._tentative += self._changed(probs, start_s, first, upto)

    @staticmethod
    def _changed(probs: np.ndarray, start_s: float, first: int, upto: int) -> list[int]:
        """Frames [first, upto) where another voice takes over, read inside this one window
        (local speaker labels are only consistent within a window): the dominant single voice
        (p >= 0.5) differs from the one that dominated the preceding CHANGE_LOOKBACK_S and
        holds for 3 model frames."""
        t = (np.arange(first, upto) + 0.5) * FRAME / SAMPLE_RATE
        single = probs[:, 1:4]
        dom = np.where(single.max(axis=1) >= 0.5, single.argmax(axis=1), -1)
        idx = np.round((t - start_s - MODEL_FIRST_S) / MODEL_STEP_S).astype(int)
        back = int(round(CHANGE_LOOKBACK_S / MODEL_STEP_S))
        gap = int(round(0.1 / MODEL_STEP_S))
        out = []
        for k, j in enumerate(idx):
            if j - back < 0 or j >= len(dom) or dom[j] < 0:
                continue  # not enough of the past in this window (stream start) to tell
            prev = dom[j - back : j - gap]
            prev = prev[prev >= 0]
            if len(prev) >= CHANGE_MIN_S / MODEL_STEP_S:
                vals, counts = np.unique(prev, return_counts=True)
                if vals[counts.argmax()] != dom[j] and np.all(dom[j : j + 3] == dom[j]):
                    out.append(first + k)
        return out

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, np.float32).reshape(-1, FRAME)
        if len(windows):
            self._buf = np.concatenate([self._buf, windows.reshape(-1)])
            self._n += len(windows)
        out = []
        while self._n - self._look - self._scored >= self._hop:
            upto = self._scored + self._hop
            out.append(self._speech(upto, upto + self._look))
        # Keep what the next run needs: its window ends at _scored + hop + look.
        keep_from = max(0, (self._scored + self._hop + self._look) * FRAME - self._ctx)
        drop = keep_from - self._buf0 * FRAME
        if drop >= FRAME:
            frames = drop // FRAME
            self._buf = self._buf[frames * FRAME :]
            self._buf0 += frames
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        if self._scored >= self._n:
            return np.zeros(0, np.float32)
        return self._speech(self._n, self._n)

"""VAD state machine on crafted probability sequences, and the streaming wrapper on real audio."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.audio.vad import FRAME, FrameSegment, VadError, VadOptions, VadStateMachine
from edge_app.messages import SAMPLE_RATE, AudioChunk

F = FRAME / SAMPLE_RATE  # 32 ms


def frames(s: float) -> int:
    return int(round(s / F))


def run(probs, **kw) -> list[FrameSegment]:
    sm = VadStateMachine(VadOptions(**kw))
    out = []
    for p in probs:
        out += sm.push(float(p))
    return out + sm.flush()


def seq(*parts: tuple[float, float]) -> list[float]:
    """(probability, seconds) runs -> per-frame probabilities."""
    out: list[float] = []
    for p, s in parts:
        out += [p] * frames(s)
    return out


OPTS = dict(threshold=0.5, neg_threshold=0.35, min_speech_s=0.25, min_silence_s=0.3, pad_s=0.1)


def test_silence_gives_nothing():
    assert run([0.0] * 500, **OPTS) == []
    assert run([0.34] * 500, **OPTS) == []  # below threshold never starts speech


def test_one_utterance_with_padding():
    probs = seq((0.0, 1.0), (0.9, 2.0), (0.0, 1.0))
    (seg,) = run(probs, **OPTS)
    start, end = frames(1.0), frames(1.0) + frames(2.0)
    assert seg.start == start - frames(0.1)
    assert seg.end == end + frames(0.1)
    assert not seg.truncated


def test_too_short_speech_is_dropped():
    assert run(seq((0.0, 1.0), (0.9, 0.16), (0.0, 1.0)), **OPTS) == []


def test_short_pause_does_not_split_long_pause_does():
    short = seq((0.9, 1.0), (0.0, 0.2), (0.9, 1.0), (0.0, 1.0))
    assert len(run(short, **OPTS)) == 1
    long = seq((0.9, 1.0), (0.0, 0.5), (0.9, 1.0), (0.0, 1.0))
    a, b = run(long, **OPTS)
    assert a.end <= b.start  # ordered, never overlapping (padding is clipped)


def test_hysteresis_between_thresholds_neither_starts_nor_ends():
    # 0.4 is between neg_threshold (0.35) and threshold (0.5): inside speech it keeps the
    # segment going however long it lasts; from silence it starts nothing.
    probs = seq((0.9, 1.0), (0.4, 2.0), (0.9, 0.5), (0.0, 1.0))
    (seg,) = run(probs, **OPTS)
    assert seg.end >= frames(3.5)
    assert run(seq((0.4, 3.0)), **OPTS) == []


def test_pause_is_cancelled_by_speech_not_by_middle_values():
    # Pause starts (0.1), a middle value (0.4) does not cancel it: the segment ends.
    probs = seq((0.9, 1.0), (0.1, 0.1), (0.4, 0.3), (0.0, 1.0))
    (seg,) = run(probs, **OPTS)
    assert seg.end == frames(1.0) + frames(0.1)


def test_max_segment_cut_is_contiguous_and_marked():
    probs = seq((0.0, 0.5), (0.9, 7.0), (0.0, 1.0))
    segs = run(probs, **OPTS, max_segment_s=3.0)
    assert len(segs) == 3
    assert [s.truncated for s in segs] == [True, True, False]
    assert not any(s.after_change for s in segs)  # a length cut is not a change of voice
    assert segs[0].end == segs[1].start and segs[1].end == segs[2].start
    assert all(s.end - s.start <= frames(3.0) for s in segs)


def test_flush_closes_open_segment():
    (seg,) = run(seq((0.0, 0.5), (0.9, 1.0)), **OPTS)
    assert seg.end == frames(1.5)


def test_end_padding_longer_than_min_silence_waits_and_is_clipped_by_new_speech():
    kw = dict(OPTS, pad_s=0.5, min_silence_s=0.2)
    probs = seq((0.9, 1.0), (0.0, 0.3), (0.9, 1.0), (0.0, 2.0))
    a, b = run(probs, **kw)
    assert a.end <= b.start


def test_bad_options_are_one_line_errors():
    with pytest.raises(VadError, match="neg_threshold"):
        VadStateMachine(VadOptions(threshold=0.3, neg_threshold=0.6))
    with pytest.raises(VadError, match="max_segment_s"):
        VadStateMachine(VadOptions(max_segment_s=0.5))


# ------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def silero():
    from edge_app.audio.vad import SileroVad

    return SileroVad()


def test_real_silence_and_noise_give_no_segments(silero):
    from edge_app.audio.vad import StreamingVad

    vad = StreamingVad(VadOptions(), silero)
    rng = np.random.default_rng(0)
    quiet = np.concatenate(
        [np.zeros(SAMPLE_RATE * 2), 0.003 * rng.standard_normal(SAMPLE_RATE * 3)]
    )
    out = []
    for i in range(0, len(quiet), 800):
        out += vad.process(AudioChunk(i / SAMPLE_RATE, quiet[i : i + 800].astype(np.float32)))
    assert out + vad.flush() == []


def test_chunk_size_does_not_change_segments(silero, shared_data):
    from edge_app.audio.sources import load_audio
    from edge_app.audio.vad import StreamingVad

    audio = load_audio(shared_data / "diarization" / "sample.wav")[: SAMPLE_RATE * 15]

    def segments(chunk: int):
        vad = StreamingVad(VadOptions(), silero)
        out = []
        for i in range(0, len(audio), chunk):
            out += vad.process(AudioChunk(i / SAMPLE_RATE, audio[i : i + chunk]))
        return [(s.t_start, s.t_end, len(s.samples)) for s in out + vad.flush()]

    a, b = segments(512), segments(1337)
    assert a and a == b


def test_dropped_samples_keep_the_timeline(silero, shared_data):
    from edge_app.audio.sources import load_audio
    from edge_app.audio.vad import StreamingVad

    audio = load_audio(shared_data / "diarization" / "sample.wav")[: SAMPLE_RATE * 12]
    vad = StreamingVad(VadOptions(), silero)
    gap = SAMPLE_RATE  # one second lost before the chunk that starts at 6 s
    out = vad.process(AudioChunk(0.0, audio[: 5 * SAMPLE_RATE]))
    out += vad.process(AudioChunk(6.0, audio[6 * SAMPLE_RATE :], dropped_before=gap))
    out += vad.flush()
    assert out
    for s in out:
        assert abs(len(s.samples) / SAMPLE_RATE - (s.t_end - s.t_start)) < 1e-6
        assert s.t_end <= 12.0 + 1e-6


def test_adaptive_cut_ends_a_long_segment_at_a_brief_dip():
    # A 0.13 s dip to 0.45 (a breath between two people): ignored early in a segment and by the
    # default rules, but ends a segment that has lasted long_after_s.
    dip = ((0.45, 0.13),)
    probs = seq((0.0, 0.5), (0.9, 1.0), *dip, (0.9, 3.0), *dip, (0.9, 2.0), (0.0, 1.0))
    assert len(run(probs, **OPTS, max_segment_s=10.0)) == 1  # default: no adaptive cut
    adaptive = dict(
        OPTS, long_after_s=2.5, long_min_silence_s=0.1, long_neg_threshold=0.5, max_segment_s=10.0
    )
    a, b = run(probs, **adaptive)
    dip2 = frames(0.5) + frames(1.0) + frames(0.13) + frames(3.0)
    assert a.end == dip2 + frames(0.1)  # cut at the second dip only, end padding kept
    assert not a.truncated
    assert b.start >= a.end and b.start <= dip2 + frames(0.13)
    # A dip shallower than long_neg_threshold is not a cut.
    assert len(run(seq((0.9, 4.0), (0.55, 0.3), (0.9, 2.0)), **adaptive)) == 1


def test_adaptive_cut_options_are_checked():
    with pytest.raises(VadError, match="long_after_s"):
        VadStateMachine(VadOptions(long_after_s=20.0, max_segment_s=10.0))


def test_speaker_change_cuts_a_segment_without_a_pause():
    # Continuous speech; the frame model flags another voice taking over at 2.0 s: one segment
    # ends there and the next starts at once (no padding, no gap). A change before
    # change_min_s of segment, or with change_min_s=None, cuts nothing.
    probs = seq((0.0, 0.5), (0.9, 4.0), (0.0, 1.0))
    flags = [False] * len(probs)
    at = frames(0.5) + frames(1.5)
    flags[at] = True
    flags[frames(0.5) + frames(0.3)] = True  # too early: ignored

    def cut(**kw):
        sm = VadStateMachine(VadOptions(**{**OPTS, **kw}))
        out = []
        for p, c in zip(probs, flags, strict=True):
            out += sm.push(p, c)
        return out + sm.flush()

    a, b = cut(change_min_s=1.0)
    assert a.end == b.start == at and not a.truncated
    assert (a.after_change, b.after_change) == (False, True)  # b starts at the new voice
    assert len(cut(change_min_s=None)) == 1


def test_late_change_cuts_back_to_where_the_voice_changed():
    # The frame model hears that another voice took over at 2.0 s only later (it needs right
    # context); the open segment is cut back there, and no pause is needed. A late change
    # inside change_min_s of the segment, or after a pause began, cuts nothing.
    sm = VadStateMachine(VadOptions(**OPTS))
    probs = seq((0.0, 0.5), (0.9, 3.0))
    out = []
    for p in probs:
        out += sm.push(p)
    at = frames(0.5) + frames(1.5)
    assert sm.cut(frames(0.5) + frames(0.3)) == []  # too early in the segment
    (a,) = sm.cut(at)
    assert (a.end, a.truncated) == (at, False)
    assert sm.cut(at + 3) == []  # the new segment is only 3 frames old
    # Re-judged changes come again (SegmentationOptions.change_recheck_s): the same frame, or
    # one before the cut already made, cuts nothing.
    assert sm.cut(at) == [] and sm.cut(at - 5) == []
    out += sm.push(0.0) + [fs for p in seq((0.0, 1.0)) for fs in sm.push(p)]
    (b,) = out
    assert b.start == at and b.end == len(probs) + frames(0.1)  # on to the pause (+ pad)
    assert b.after_change and not a.after_change


class _LateChangeModel:
    """A fake frame model: every frame is speech, scored at once; the change of voice at frame
    ``change`` is reported only once ``context`` frames after it have arrived."""

    def __init__(self, change: int, context: int) -> None:
        self.change, self.context = change, context
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.reported = False

    def probabilities(self, windows):
        self.n += len(windows)
        return np.full(len(windows), 0.9, np.float32)

    def take_changes(self) -> list[int]:
        if not self.reported and self.n >= self.change + self.context:
            self.reported = True
            return [self.change]
        return []

    def flush(self):
        return np.zeros(0, np.float32)


def test_turn_ending_inside_continuous_speech_is_emitted_at_its_own_end():
    # 8 s of continuous speech, the voice changes at 2.0 s, the model knows 0.5 s later: the
    # first turn is emitted by 2.0 + 0.5 s of stream (plus one 0.1-s chunk), not at the 6-s cut.
    from edge_app.audio.vad import StreamingVad

    change_s, context_s = 2.0, 0.5
    vad = StreamingVad(
        VadOptions(**{**OPTS, "max_segment_s": 6.0}),
        _LateChangeModel(frames(change_s), frames(context_s)),
    )
    chunk = SAMPLE_RATE // 10
    audio = np.zeros(8 * SAMPLE_RATE, np.float32)
    emitted = []
    for i in range(0, len(audio), chunk):
        now = (i + chunk) / SAMPLE_RATE
        emitted += [
            (now, s) for s in vad.process(AudioChunk(i / SAMPLE_RATE, audio[i : i + chunk]))
        ]
    (now, first), *rest = emitted
    assert abs(first.t_end - change_s) <= F
    assert now - first.t_end <= context_s + 0.1 + F
    assert rest and abs(rest[0][1].t_start - first.t_end) < 1e-9  # contiguous, nothing lost
    assert rest[0][1].after_change and not first.after_change  # carried to the SpeechSegment


class _RejudgedModel:
    """A fake frame model whose later runs score frames differently from the first run (as
    SegmentationVad does with more right context): ``first`` is what ``probabilities`` returns,
    ``later`` what ``speech`` returns once a frame has been scored."""

    def __init__(self, first, later) -> None:
        self.first, self.later = np.asarray(first, np.float32), np.asarray(later, np.float32)
        self.reset()

    def reset(self) -> None:
        self.n = 0

    def probabilities(self, windows):
        a, self.n = self.n, self.n + len(windows)
        return self.first[a : self.n]

    def speech(self, first: int, last: int):
        out = np.zeros(last - first, np.float32)
        hi = min(last, self.n)
        out[: max(0, hi - first)] = self.later[first:hi]
        return out

    def flush(self):
        return np.zeros(0, np.float32)


def _stream(vad, n_frames: int):
    audio = np.zeros(n_frames * FRAME, np.float32)
    chunk = FRAME * 3
    out = []
    for i in range(0, len(audio), chunk):
        out += vad.process(AudioChunk(i / SAMPLE_RATE, audio[i : i + chunk]))
    return out + vad.flush()


@pytest.mark.parametrize("grow", [None, 0.8])
def test_segment_edges_grow_where_later_scores_say_speech(grow):
    from edge_app.audio.vad import StreamingVad

    # (first score, later score, seconds): an onset first scored low, speech, a soft ending
    # first scored as pause, silence; and, apart, a later-speech blip that touches nothing.
    parts = [
        (0.1, 0.1, 0.5),
        (0.1, 0.9, 0.1),  # blip: not next to the segment (a low frame in between)
        (0.1, 0.1, 0.2),
        (0.3, 0.9, 0.7),  # onset: 0.7 s, more than grow_s (0.5 s) of it
        (0.9, 0.9, 1.0),
        (0.3, 0.85, 0.2),  # soft ending
        (0.1, 0.1, 1.0),
    ]
    first = [p for p, _, s in parts for _ in range(frames(s))]
    later = [q for _, q, s in parts for _ in range(frames(s))]
    opts = VadOptions(**{**OPTS, "pad_s": 0.0, "grow_threshold": grow, "grow_s": 0.5})
    (seg,) = _stream(StreamingVad(opts, _RejudgedModel(first, later)), len(first))
    bounds = np.cumsum([frames(s) for _, _, s in parts]) * F
    speech_at, end_at = bounds[3], bounds[4]
    if grow is None:
        assert (seg.t_start, seg.t_end) == pytest.approx((speech_at, end_at), abs=1e-6)
    else:  # 0.5 s back (not the whole onset, not the blip), the whole 0.2-s soft ending
        assert seg.t_start == pytest.approx(speech_at - frames(0.5) * F, abs=1e-6)
        assert seg.t_end == pytest.approx(end_at + frames(0.2) * F, abs=1e-6)
    assert len(seg.samples) == round((seg.t_end - seg.t_start) * SAMPLE_RATE)


def test_grown_edges_never_enter_a_neighbouring_segment():
    from edge_app.audio.vad import StreamingVad

    # Two stretches of speech 0.4 s apart whose gap the later scores call speech throughout:
    # the first segment's end takes the gap (up to grow_s), the second's start cannot go back
    # past it; a 6-s cut inside continuous speech stays where it is.
    parts = [(0.1, 0.1, 0.5), (0.9, 0.9, 1.0), (0.1, 0.95, 0.4), (0.9, 0.9, 7.0), (0.1, 0.1, 1.0)]
    first = [p for p, _, s in parts for _ in range(frames(s))]
    later = [q for _, q, s in parts for _ in range(frames(s))]
    opts = VadOptions(**{**OPTS, "pad_s": 0.0, "grow_threshold": 0.8, "max_segment_s": 6.0})
    segs = _stream(StreamingVad(opts, _RejudgedModel(first, later)), len(first))
    assert len(segs) == 3
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.t_end <= b.t_start + 1e-9
        assert len(a.samples) == round((a.t_end - a.t_start) * SAMPLE_RATE)
    assert segs[0].t_end == pytest.approx(segs[1].t_start, abs=1e-6)  # the gap went to one
    assert segs[1].truncated and segs[2].t_start == pytest.approx(segs[1].t_end, abs=1e-6)


class _GuessingModel(_LateChangeModel):
    """``_LateChangeModel`` that also guesses early (``take_tentative_changes``): a change at
    frame ``guess`` once ``guess_context`` frames after it have arrived."""

    def __init__(self, change: int, context: int, guess: int, guess_context: int) -> None:
        self.guess, self.guess_context = guess, guess_context
        super().__init__(change, context)

    def reset(self) -> None:
        super().reset()
        self.guessed = False

    def take_tentative_changes(self) -> list[int]:
        if not self.guessed and self.n >= self.guess + self.guess_context:
            self.guessed = True
            return [self.guess]
        return []


def _guesses_and_segments(model, seconds: float = 8.0):
    """Stream ``seconds`` of noise in 0.1-s chunks: [(stream time, guess)], [(stream time,
    segment)] (the stream time when each was known)."""
    from edge_app.audio.vad import StreamingVad

    vad = StreamingVad(VadOptions(**{**OPTS, "max_segment_s": 6.0}), model)
    audio = np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE))
    audio = audio.astype(np.float32)
    chunk = SAMPLE_RATE // 10
    guesses, segments = [], []
    for i in range(0, len(audio), chunk):
        now = (i + chunk) / SAMPLE_RATE
        segments += [
            (now, s) for s in vad.process(AudioChunk(i / SAMPLE_RATE, audio[i : i + chunk]))
        ]
        guess = vad.speculation()
        if guess is not None:
            guesses.append((now, guess))
    return guesses, segments


def test_speculation_guesses_the_turn_before_the_change_is_sure():
    # The voice changes at 2.0 s; the model guesses it after 0.1 s and is sure after 0.5 s: the
    # guess (once) is the very segment handed on 0.4 s later, audio and times alike.
    change = frames(2.0)
    guesses, segments = _guesses_and_segments(
        _GuessingModel(change, frames(0.5), change, frames(0.1))
    )
    ((t_guess, guess),) = guesses
    t_seg, first = segments[0]
    assert guess.segment_id == -1 and first.segment_id == 0  # a guess takes no stream id
    assert (guess.t_start, guess.t_end) == (first.t_start, first.t_end)
    assert np.array_equal(guess.samples, first.samples)
    assert t_seg - t_guess >= 0.5 - 0.1 - 0.1 - F  # known a chunk-rounded 0.4 s sooner


def test_speculation_is_only_a_guess():
    # A guess 3 frames before the change the model is later sure of: the segment handed on
    # ends at the sure change (the guess changed nothing), 3 frames past the guess's end.
    change = frames(2.0)
    guesses, segments = _guesses_and_segments(
        _GuessingModel(change, frames(0.5), change - 3, frames(0.1))
    )
    ((_, guess),) = guesses
    first = segments[0][1]
    assert guess.t_start == first.t_start
    assert len(first.samples) - len(guess.samples) == 3 * FRAME
    assert np.array_equal(guess.samples, first.samples[: len(guess.samples)])
    # A guess inside the first change_min_s of a segment is no turn end: nothing is guessed.
    guesses, _ = _guesses_and_segments(_GuessingModel(change, frames(0.5), 5, frames(0.1)))
    assert guesses == []


def test_open_prefix_is_the_open_segments_audio_so_far():
    # Continuous speech whose voice changes at 2.0 s (known 0.5 s later): every 0.5 s of it the
    # open segment's audio so far, the same samples the segment is handed on with (up to its
    # end); after the cut the prefixes start where the next segment does.
    from edge_app.audio.vad import StreamingVad

    vad = StreamingVad(VadOptions(**{**OPTS, "max_segment_s": 6.0}), _LateChangeModel(62, 16))
    audio = np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32)
    chunk = SAMPLE_RATE // 10
    prefixes, segments = [], []
    for i in range(0, len(audio), chunk):
        segments += vad.process(AudioChunk(i / SAMPLE_RATE, audio[i : i + chunk]))
        prefix = vad.open_prefix(0.5)
        if prefix is not None:
            assert prefix.segment_id == -1 and prefix.t_end <= (i + chunk) / SAMPLE_RATE + 1e-9
            prefixes.append(prefix)
    segments += vad.flush()
    first, second = segments[0], segments[1]
    before = [p for p in prefixes if p.t_start == first.t_start]
    after = [p for p in prefixes if p.t_start == second.t_start]
    assert len(before) + len(after) == len(prefixes) and len(before) >= 3 and len(after) >= 3
    for group, seg in ((before, first), (after, second)):
        ends = [p.t_end for p in group]
        assert all(b - a >= 0.5 - 1e-9 for a, b in zip(ends, ends[1:], strict=False))
        for p in group:  # up to the change, which was known only after some prefixes passed it
            n = min(len(p.samples), len(seg.samples))
            assert np.array_equal(p.samples[:n], seg.samples[:n])
    assert before[-1].t_end > first.t_end  # the open segment was cut back at the change

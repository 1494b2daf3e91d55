"""The runtime's threads, bounded queues, overflow policies, failure handling and shutdown.

Stages here are small real computations (RMS energy of real audio chunks); the source is the
real file replay of ../shared/data/diarization/sample.wav.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

import numpy as np
import pytest

from edge_app.audio.sources import FileAudioSource
from edge_app.clock import MediaClock
from edge_app.messages import AudioChunk
from edge_app.runtime import END, Overflow, Runtime, StageFailure, StageQueue
from edge_app.ui import HeaderInfo, TerminalUI, UiSnapshot, render


class Energy:
    """chunk -> (t_start, rms); flush emits a final marker so we can see it ran."""

    def __init__(self, delay_s: float = 0.0, slow_items: int = 0) -> None:
        self.delay_s, self.slow_items = delay_s, slow_items
        self.flushed = False
        self.n = 0

    def process(self, chunk: AudioChunk):
        self.n += 1
        if self.n <= self.slow_items:
            # Simulated slow model: blocks like a busy stage would (a real wait on an Event).
            threading.Event().wait(self.delay_s)
        return [(chunk.t_start, float(np.sqrt(np.mean(chunk.samples**2))), len(chunk.samples))]

    def flush(self):
        self.flushed = True
        return [("flush", 0.0, 0)]


class Collect:
    def __init__(self) -> None:
        self.items: list = []
        self.flushed = False

    def process(self, item):
        self.items.append(item)
        return ()

    def flush(self):
        self.flushed = True
        return ()


class Boom:
    def __init__(self, after: int) -> None:
        self.after, self.n = after, 0

    def process(self, item):
        self.n += 1
        if self.n > self.after:
            raise RuntimeError("model exploded")
        return [item]

    def flush(self):
        return ()


@pytest.fixture()
def wav(shared_data):
    return shared_data / "diarization" / "sample.wav"


def test_queue_policies_count_drops():
    stop = threading.Event()
    q = StageQueue("video", 2, Overflow.DROP_OLDEST)
    for i in range(5):
        q.put(i, stop)
    assert [q.get(0.1), q.get(0.1)] == [3, 4] and q.stats().dropped == 3
    a = StageQueue(
        "audio",
        1,
        Overflow.DROP_NEWEST,
        put_timeout_s=0.05,
        units_of=lambda x: len(x),
        units="samples",
    )
    assert a.put(np.zeros(512), stop)
    t = time.monotonic()
    assert not a.put(np.zeros(512), stop)  # waited ~put_timeout_s, then dropped and counted
    assert 0.04 <= time.monotonic() - t < 1.0
    s = a.stats()
    assert (s.dropped, s.dropped_units, s.units, s.high_water) == (1, 512, "samples", 1)
    b = StageQueue("seg", 1, Overflow.BLOCK)
    b.put("x", stop)
    stop.set()
    assert not b.put("y", stop)  # a blocked put gives up when the run stops
    assert b.stats().dropped == 0


def test_end_marker_waits_for_every_producer():
    stop = threading.Event()
    q = StageQueue("merge", 8, Overflow.BLOCK, producers=2)
    q.put("a", stop)
    q.put(END, stop)
    q.put("b", stop)
    assert q.get(0.1) == "a" and q.get(0.1) == "b"
    with pytest.raises(queue.Empty):
        q.get(0.05)
    q.put(END, stop)
    assert q.get(0.1) is END


def test_queue_passes_over_what_it_is_not_for():
    # The VAD stage feeds speech recognition and the voice stage; the open segment's audio so
    # far (SegmentPrefix) is for the voice stage only: the ASR queue passes over it, uncounted.
    stop = threading.Event()
    q = StageQueue("segments", 1, Overflow.BLOCK, accepts=lambda item: isinstance(item, int))
    assert not q.put("prefix", stop)  # passed over at once, even though the queue has room
    assert q.put(1, stop) and not q.put("prefix", stop)  # ...and when it is full: no blocking
    assert q.stats().dropped == 0 and q.qsize() == 1
    assert q.get(0.1) == 1
    assert q.put(END, stop) and q.get(0.1) is END  # the end marker always gets through


def _segment(i: int):
    """A 1-s segment of silence with id ``i`` (-1: a guess or prefix of one)."""
    from edge_app.messages import SpeechSegment

    return SpeechSegment(i, 0.0, 1.0, np.zeros(16000, np.float32))


class _FakeAsr:
    """What AsrStage needs of WhisperTranscriber; records the order of its passes."""

    def __init__(self) -> None:
        from edge_app.audio.asr import AheadCounts

        self.ahead = AheadCounts()
        self.passes: list[tuple[str, int]] = []

    def transcribe(self, segment):
        self.passes.append(("segment", segment.segment_id))
        return segment.segment_id

    def transcribe_ahead(self, guess):
        self.passes.append(("ahead", guess.segment_id))


def test_asr_stage_never_lets_a_guess_delay_a_segment():
    from edge_app.live_pipeline import AsrStage
    from edge_app.messages import SegmentGuess

    waiting = [0]
    asr = _FakeAsr()
    stage = AsrStage(asr, backlog=lambda: waiting[0])
    assert stage.process(SegmentGuess(_segment(-1))) == []  # transcribed ahead, nothing out
    waiting[0] = 1  # a segment is queued behind this guess: the guess is skipped
    assert stage.process(SegmentGuess(_segment(-1))) == []
    assert stage.process(_segment(7)) == [7]
    assert asr.passes == [("ahead", -1), ("segment", 7)] and asr.ahead.skipped == 1


def test_drop_oldest_never_discards_end():
    stop = threading.Event()
    q = StageQueue("video", 1, Overflow.DROP_OLDEST)
    q.put("f1", stop)
    q.put(END, stop)  # makes room by dropping f1
    q.put("f2", stop)  # END stays; the late frame is dropped
    assert q.get(0.1) is END and q.stats().dropped == 2


def test_file_replay_runs_to_the_end_losslessly(wav):
    clock = MediaClock(realtime=False)
    src = FileAudioSource(wav, clock)
    rt = Runtime()
    audio = rt.queue("audio", 32, Overflow.BLOCK)
    feats = rt.queue("energy", 32, Overflow.BLOCK)
    energy, sink = Energy(), Collect()
    rt.add_source("audio-file", src.chunks, [audio])
    rt.add_stage("energy", energy, audio, [feats])
    rt.add_stage("sink", sink, feats)
    hooks: list[str] = []
    rt.on_stop("events", lambda: hooks.append("flushed"))
    t0 = time.monotonic()
    rt.run()
    assert time.monotonic() - t0 < 20
    assert energy.flushed and sink.flushed and hooks == ["flushed"]
    assert sink.items[-1][0] == "flush"
    times = [it[0] for it in sink.items[:-1]]
    assert times == sorted(times)
    n = sum(it[2] for it in sink.items[:-1])
    assert n == 30 * 16000  # every sample of the 30 s file went through, none dropped
    stats = rt.stats()
    assert stats.stage("energy").items == len(times)
    assert stats.stage("energy").latency_median_ms is not None
    assert all(q.dropped == 0 for q in stats.queues)
    assert rt.unstopped == ()


def test_slow_stage_makes_live_audio_drop_counted(wav):
    clock = MediaClock(realtime=False)  # source far faster than the stage: like a live overrun
    src = FileAudioSource(wav, clock)
    rt = Runtime()
    audio = rt.queue(
        "audio",
        4,
        Overflow.DROP_NEWEST,
        put_timeout_s=0.01,
        units_of=lambda c: len(c.samples),
        units="samples",
    )
    sink = Collect()
    rt.add_source("audio-file", src.chunks, [audio])
    rt.add_stage(
        "energy",
        Energy(delay_s=0.05, slow_items=20),
        audio,
        [q := rt.queue("e", 4, Overflow.BLOCK)],
    )
    rt.add_stage("sink", sink, q)
    rt.run()
    st = rt.stats().queue("audio")
    assert st.dropped > 0 and st.dropped_units == st.dropped * 512
    delivered = sum(it[2] for it in sink.items if it[0] != "flush")
    assert delivered + st.dropped_units == 30 * 16000  # every sample is delivered or counted


def test_failing_stage_is_named_and_stops_everything_quickly(wav):
    clock = MediaClock(realtime=True)  # a 30 s real-time replay that must not run to its end
    src = FileAudioSource(wav, clock)
    rt = Runtime(stop_timeout_s=2.0)
    audio = rt.queue("audio", 16, Overflow.DROP_NEWEST)
    mid = rt.queue("mid", 16, Overflow.BLOCK)
    hooks: list[str] = []
    rt.on_stop("gallery", lambda: hooks.append("saved"))
    rt.add_source("audio-file", src.chunks, [audio])
    rt.add_stage("asr", Boom(after=5), audio, [mid])
    rt.add_stage("sink", Collect(), mid)
    t0 = time.monotonic()
    with pytest.raises(StageFailure, match=r"stage 'asr' failed: RuntimeError: model exploded"):
        rt.run()
    assert time.monotonic() - t0 < 3.0
    assert rt.unstopped == () and hooks == ["saved"]


def test_stop_from_another_thread_ends_within_two_seconds(wav):
    clock = MediaClock(realtime=True)
    src = FileAudioSource(wav, clock)
    rt = Runtime(stop_timeout_s=2.0)
    audio = rt.queue("audio", 16, Overflow.DROP_NEWEST)
    sink = Collect()
    rt.add_source("audio-file", src.chunks, [audio])
    rt.add_stage("sink", sink, audio)
    threading.Timer(0.5, rt.stop).start()
    t0 = time.monotonic()
    rt.run()
    assert time.monotonic() - t0 < 0.5 + 2.0
    assert rt.unstopped == ()
    assert 0 < len(sink.items) < 30 * 16000 / 512


def test_ui_refreshes_from_snapshots_while_pipeline_runs(wav):
    import io

    from rich.console import Console

    from edge_app.states import SpeakerStates

    labels = ("neutral", "joy", "anger")
    states = SpeakerStates()
    clock = MediaClock(realtime=False)
    rt = Runtime()
    audio = rt.queue("audio", 8, Overflow.BLOCK)

    class ToStates:
        def process(self, chunk):
            p = np.array([0.2, 0.7, 0.1]) if chunk.index % 2 else np.array([0.6, 0.3, 0.1])
            states.update(f"spk{chunk.index % 2 + 1}", chunk.t_end, p, labels, text="words")
            return ()

        def flush(self):
            return ()

    rt.add_source("audio-file", FileAudioSource(wav, clock).chunks, [audio])
    rt.add_stage("emotion", ToStates(), audio)

    def snap() -> UiSnapshot:
        return UiSnapshot(
            header=HeaderInfo("audio: sample.wav", "torch", "test"),
            speakers=states.snapshot(),
            stats=rt.stats(),
            media_t=0.0,
            video_fps=None,
            faces_in_view=None,
            latency_p50_s=None,
            latency_p95_s=None,
            utterances=0,
            audio_dropped_s=0.0,
            status="running",
        )

    out = io.StringIO()
    ui = TerminalUI(snap, refresh_hz=20, console=Console(file=out, width=120, force_terminal=True))
    ui.start()
    rt.run()
    threading.Event().wait(0.3)
    ui.stop()
    assert ui.error is None and ui.frames >= 1
    text = Console(width=120, file=io.StringIO(), record=True)
    text.print(render(snap()))
    screen = text.export_text()
    assert "spk1" in screen and "spk2" in screen and "JOY" in screen and "words" in screen
    assert "latency" in screen and "emotion" in screen


def _sigint_after(seconds: float) -> threading.Timer:
    """A real Ctrl-C (SIGINT to this process) from another thread, as a terminal sends it."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_drains_what_was_already_heard(wav):
    """Ctrl-C stops the source; every chunk it had produced still reaches the sink, and the
    stages flush (a VAD's open segment, the last utterance), within the drain bound."""
    src = FileAudioSource(wav, MediaClock(realtime=True))
    rt = Runtime(stop_timeout_s=2.0)  # drains for up to drain_timeout_s = 2 s by default
    audio = rt.queue("audio", 256, Overflow.BLOCK)
    feats = rt.queue("energy", 256, Overflow.BLOCK)
    # 50 ms per 32 ms chunk: a backlog builds up, as behind a busy speech recogniser.
    energy, sink = Energy(delay_s=0.05, slow_items=10_000), Collect()
    rt.add_source("audio-file", src.chunks, [audio])
    rt.add_stage("energy", energy, audio, [feats])
    rt.add_stage("sink", sink, feats)
    hooks: list[str] = []
    rt.on_stop("events", lambda: hooks.append("summary"))
    _sigint_after(1.5)
    t0 = time.monotonic()
    rt.run()
    took = time.monotonic() - t0
    produced = rt.stats().stage("audio-file").items
    assert 0 < produced < 30 * 16000 / 512 / 2  # cut short, well before the end of the file
    assert energy.flushed and sink.items[-1][0] == "flush"  # the stream ended, not aborted
    delivered = sum(it[2] for it in sink.items[:-1])
    assert delivered == produced * 512  # nothing heard was lost
    assert took < 1.5 + 2.0 + 0.5, took
    assert rt.interrupted and rt.drained
    assert hooks == ["summary"] and rt.unstopped == ()


def test_second_ctrl_c_cuts_the_drain_short_and_never_skips_a_hook(wav):
    src = FileAudioSource(wav, MediaClock(realtime=False))
    rt = Runtime(stop_timeout_s=1.0)  # a full drain would take its 2 s bound
    audio = rt.queue("audio", 64, Overflow.BLOCK)
    rt.add_source("audio-file", src.chunks, [audio])
    slow = Energy(delay_s=0.3, slow_items=10_000)  # a drain of the backlog would take 19 s
    rt.add_stage("slow", slow, audio, [out := rt.queue("out", 256, Overflow.BLOCK)])
    rt.add_stage("sink", Collect(), out)
    hooks: list[str] = []

    def summary():
        os.kill(os.getpid(), signal.SIGINT)  # a third Ctrl-C while the summary is written
        threading.Event().wait(0.2)
        hooks.append("summary")

    rt.on_stop("events", summary)
    rt.on_stop("gallery", lambda: hooks.append("gallery"))
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    _sigint_after(0.5)
    _sigint_after(0.6)
    t0 = time.monotonic()
    rt.run()
    took = time.monotonic() - t0
    assert rt.interrupted and rt.drained is False
    assert took < 2.0, took  # second Ctrl-C at 0.6 s: not the 2 s drain bound, let alone 19 s
    assert hooks == ["summary", "gallery"]
    assert signal.getsignal(signal.SIGINT) is before  # run() gave SIGINT back


class Priority:
    """Records the nice value of the thread it runs on (Linux: per thread)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def process(self, chunk: AudioChunk):
        self.seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return [chunk]

    def flush(self):
        return ()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_a_stage_with_nice_runs_below_the_others_and_only_its_thread(wav):
    """LiveOptions.voice_nice: the voice stage's thread is scheduled below the rest."""
    import sys

    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base >= 19 or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux and room to lower the priority")
    rt = Runtime()
    audio = rt.queue("audio", 32, Overflow.BLOCK)
    mid = rt.queue("mid", 32, Overflow.BLOCK)
    lowered, normal = Priority(), Priority()
    rt.add_source("audio-file", FileAudioSource(wav, MediaClock(realtime=False)).chunks, [audio])
    rt.add_stage("lowered", lowered, audio, [mid], nice=5)
    rt.add_stage("normal", normal, mid)
    rt.run()
    assert lowered.seen and set(lowered.seen) == {min(19, base + 5)}
    assert normal.seen and set(normal.seen) == {base}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's


def test_voice_stage_embeds_guesses_ahead_only_when_idle():
    from edge_app.live_pipeline import VoiceStage
    from edge_app.messages import SegmentGuess, SegmentPrefix

    class FakeSpeakerStage:
        def __init__(self) -> None:
            self.calls: list[tuple[str, int]] = []

        def embed_ahead(self, part, ends_here=True):
            self.calls.append(("ahead" if ends_here else "prefix", part.segment_id))

        def process_split(self, segment):
            self.calls.append(("segment", segment.segment_id))
            return [], []

    waiting = [0]
    speakers = FakeSpeakerStage()
    stage = VoiceStage(speakers, backlog=lambda: waiting[0])
    assert stage.process(SegmentPrefix(_segment(-1))) == []  # embedded ahead, nothing out
    assert stage.process(SegmentGuess(_segment(-1))) == []
    waiting[0] = 1  # a segment waits: guesses and prefixes are skipped, never delaying it
    assert stage.process(SegmentGuess(_segment(-1))) == []
    assert stage.process(SegmentPrefix(_segment(-1))) == []
    out = stage.process(_segment(7))
    assert [v.segment.segment_id for v in out] == [7]
    assert speakers.calls == [("prefix", -1), ("ahead", -1), ("segment", 7)]


def test_voice_stage_sends_each_turn_to_the_event_sinks_as_labelled():
    """Turn records leave the voice stage as soon as a segment is labelled (no words needed):
    the diarizer's turns, then the overlap turns (flagged), ids numbered in order, names as
    --name gives them (else the gallery's), latency from the turn's end arriving."""
    from edge_app.events import TurnEvent
    from edge_app.live_pipeline import ArrivalLog, TurnRecords, VoiceStage
    from edge_app.messages import SpeakerTurn

    def turn(seg, a, b, sid, name=None, new=False, sim=0.7):
        return SpeakerTurn(seg, a, b, sid, np.zeros(4, np.float32), sim, new, name)

    class FakeSpeakerStage:
        def __init__(self):
            self.out = {
                0: ([turn(0, 0.0, 1.0, "spk1", new=True)], []),
                1: ([turn(1, 1.5, 2.0, "spk1"), turn(1, 2.0, 3.0, "spk2", name="Bo")],
                    [turn(1, 2.2, 2.6, "spk1", sim=0.0)]),
                2: ([], []),  # too short to embed: no turn
            }  # fmt: skip

        def process_split(self, segment):
            return self.out[segment.segment_id]

    arrivals = ArrivalLog()
    arrivals.note(AudioChunk(0.0, np.zeros(16000 * 4, np.float32)))
    got: list[TurnEvent] = []
    records = TurnRecords(arrivals, {"spk1": "Ann"}, (got.append,))
    stage = VoiceStage(FakeSpeakerStage(), turns=records)
    voiced = [stage.process(_segment(i))[0] for i in range(3)]
    assert [len(v.turns) for v in voiced] == [1, 3, 0]  # the assembler still gets them all
    assert [v.turn_ids for v in voiced] == [(0,), (1, 2, 3), ()]  # ...with their records' ids
    rows = [(e.turn_id, e.segment_id, e.t_start, e.speaker, e.speaker_name, e.overlap) for e in got]
    assert rows == [
        (0, 0, 0.0, "spk1", "Ann", False),
        (1, 1, 1.5, "spk1", "Ann", False),
        (2, 1, 2.0, "spk2", "Bo", False),
        (3, 1, 2.2, "spk1", "Ann", True),
    ]
    assert got[0].new_speaker and not any(e.new_speaker for e in got[1:])
    assert got[3].similarity == 0.0 and all(e.latency_s >= 0 for e in got)
    stats = records.stats()
    assert stats["emitted"] == 4 and stats["overlap"] == 1
    assert stats["latency_p50_s"] is not None

"""SpeakerStage tells the diarizer when a segment starts at a change of voice (fakes, no models)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edge_app.audio.speakers import OverlapOptions, SpeakerStage
from edge_app.audio.voice import SegmentVoice, VoiceSpan
from edge_app.messages import SpeakerTurn, SpeechSegment


class _Embedder:
    def embed_segment(self, seg: SpeechSegment) -> SegmentVoice:
        e = np.ones(4, np.float32) / 2
        return SegmentVoice(
            seg.segment_id, seg.t_start, seg.t_end, (VoiceSpan(seg.t_start, seg.t_end, e),), e
        )


class _Diarizer:
    """Labels segments spk1, spk2, ... and records the ``not_speaker`` it was given."""

    def __init__(self) -> None:
        self.given: list[str | None] = []

    def process(self, voice: SegmentVoice, not_speaker: str | None = None) -> list[SpeakerTurn]:
        self.given.append(not_speaker)
        sid = f"spk{len(self.given)}"
        return [
            SpeakerTurn(
                voice.segment_id, voice.t_start, voice.t_end, sid, voice.embedding, 1.0, True
            )
        ]

    def resolve(self, sid: str) -> str:
        return sid


def _seg(i: int, t0: float, t1: float, after_change: bool = False) -> SpeechSegment:
    samples = np.zeros(int((t1 - t0) * 16000), np.float32)
    return SpeechSegment(i, t0, t1, samples, after_change=after_change)


def test_only_a_segment_after_a_change_cut_names_the_voice_before():
    d = _Diarizer()
    stage = SpeakerStage(_Embedder(), d, OverlapOptions(enabled=False))
    stage.process(_seg(0, 0.0, 2.0))
    stage.process(_seg(1, 2.0, 3.5, after_change=True))  # the VAD cut 0 at a new voice
    stage.process(_seg(2, 4.0, 6.0))  # after a pause
    stage.process(_seg(3, 6.0, 12.0, after_change=True))
    stage.process(_seg(4, 12.0, 13.0))  # touches 3, but 3 was cut at the maximum length
    assert d.given == [None, "spk1", None, "spk3", None]


class _TwoVoiceDiarizer:
    """One segment, two turns: spk1 then spk2 at ``change``."""

    def __init__(self, change: float) -> None:
        self.change = change

    def process(self, voice: SegmentVoice, not_speaker: str | None = None) -> list[SpeakerTurn]:
        e = voice.embedding
        return [
            SpeakerTurn(voice.segment_id, voice.t_start, self.change, "spk1", e, 1.0, True),
            SpeakerTurn(voice.segment_id, self.change, voice.t_end, "spk2", e, 1.0, True),
        ]

    def resolve(self, sid: str) -> str:
        return sid


def _with_overlap(seg: SpeechSegment, lo: float, hi: float) -> SpeechSegment:
    """``seg`` with p(two speakers) = 1 over [lo, hi) attached, as the speech detection
    attaches it at hand-on (32-ms frames from the segment's start)."""
    t = seg.t_start + (np.arange(int(round((seg.t_end - seg.t_start) / 0.032))) + 0.5) * 0.032
    probs = ((t >= lo) & (t < hi)).astype(np.float32)
    return replace(seg, overlap=(seg.t_start, probs))


def test_an_overlap_turn_never_names_the_speaker_already_talking():
    # Two voices at once over 1.5-3.0 s, across the change spk1 -> spk2 at 2.0 s. The run's
    # middle (2.25 s) is spk2's, so its other voice is spk1; but over 1.5-2.0 s spk1 is the
    # main speaker: the other voice there is spk2 (one turn each side of the change).
    stage = SpeakerStage(_Embedder(), _TwoVoiceDiarizer(2.0), OverlapOptions())
    turns, extra = stage.process_split(_with_overlap(_seg(0, 0.0, 4.0), 1.5, 3.0))
    assert [(t.speaker_id, t.t_start, t.t_end) for t in turns] == [
        ("spk1", 0.0, 2.0),
        ("spk2", 2.0, 4.0),
    ]
    got = [(o.speaker_id, round(o.t_start, 1), round(o.t_end, 1)) for o in extra]  # 32-ms frames
    assert got == [("spk2", 1.5, 2.0), ("spk1", 2.0, 3.0)]
    for o in extra:
        for t in turns:
            if t.t_start < o.t_end and o.t_start < t.t_end:
                assert t.speaker_id != o.speaker_id


def test_overlap_turns_come_only_from_what_was_attached_at_hand_on():
    # The stage reads p(two speakers) from the segment (SpeechSegment.overlap, attached by the
    # speech detection when it hands the segment on), never from the model's log later: the
    # live voice thread lags the VAD's, and the log moves on. Nothing attached: no overlap turn.
    stage = SpeakerStage(_Embedder(), _TwoVoiceDiarizer(2.0), OverlapOptions())
    _, extra = stage.process_split(_with_overlap(_seg(0, 0.0, 4.0), 2.5, 3.5))
    assert [(o.speaker_id, round(o.t_start, 1), round(o.t_end, 1)) for o in extra] == [
        ("spk1", 2.5, 3.5)
    ]
    _, extra = stage.process_split(_seg(1, 4.0, 8.0))
    assert extra == []

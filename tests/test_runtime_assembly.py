"""Utterance assembly and model inputs: joins, word split at speaker changes, masks, causal
context, and the open-set speaker representation of a speaker enrolled a moment ago."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.emotion_features import (
    DialogueWindow,
    FeatureOptions,
    ModelInfo,
    UtteranceFeaturizer,
    masking_policy,
)
from edge_app.messages import SAMPLE_RATE, SpeakerTurn, SpeechSegment, Transcript, Word
from edge_app.utterances import FaceEvidence, UtteranceAssembler, VoicedSegment, split_words

LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")


def seg(sid: int, t0: float, t1: float) -> SpeechSegment:
    n = int(round((t1 - t0) * SAMPLE_RATE))
    return SpeechSegment(sid, t0, t1, np.linspace(-0.1, 0.1, n, dtype=np.float32))


def turn(sid: int, t0: float, t1: float, spk: str, is_new: bool = False) -> SpeakerTurn:
    emb = np.zeros(256, np.float32)
    emb[int(spk[-1])] = 1.0
    return SpeakerTurn(sid, t0, t1, spk, emb, 0.9, is_new)


def words(*items: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(w, a, b, 0.9) for w, a, b in items)


def test_join_in_any_order_and_split_at_speaker_change():
    asm = UtteranceAssembler(names={"spk2": "Bob"})
    s = seg(0, 10.0, 14.0)
    tr = Transcript(
        0,
        10.0,
        14.0,
        "Hi there. Hello, Ann.",
        words(
            ("Hi", 10.1, 10.4), ("there.", 10.4, 11.0), ("Hello,", 12.2, 12.6), ("Ann.", 12.6, 13.0)
        ),
    )
    turns = (turn(0, 10.0, 11.8, "spk1", True), turn(0, 11.8, 14.0, "spk2"))
    voiced = VoicedSegment(s, turns, turn_ids=(4, 5))  # the live run's turn records
    assert asm.process(voiced) == []  # waits for the transcript
    utts = asm.process(tr)
    assert [u.speaker for u in utts] == ["spk1", "spk2"]
    assert [u.text for u in utts] == ["Hi there.", "Hello, Ann."]
    assert utts[1].speaker_name == "Bob" and utts[0].new_speaker
    assert len(utts[0].samples) == int(round(1.8 * SAMPLE_RATE))
    assert utts[0].utterance_id == 0 and utts[1].utterance_id == 1
    assert utts[0].voice is not None and utts[0].face.track_id is None
    assert [u.turn_id for u in utts] == [4, 5]  # each utterance names its turn record


def test_short_segment_goes_to_previous_speaker_and_wordless_turns_are_counted():
    asm = UtteranceAssembler()
    asm.process(VoicedSegment(seg(0, 0.0, 2.0), (turn(0, 0.0, 2.0, "spk3"),)))
    asm.process(Transcript(0, 0.0, 2.0, "Okay.", words(("Okay.", 0.2, 0.6))))
    # too short for a voice embedding: no turns
    asm.process(Transcript(1, 2.5, 2.7, "Yes.", words(("Yes.", 2.5, 2.7))))
    (u,) = asm.process(VoicedSegment(seg(1, 2.5, 2.7), ()))
    assert u.speaker == "spk3" and u.text == "Yes." and u.turn_id is None  # no turn of its own
    asm.process(VoicedSegment(seg(2, 3.0, 4.0), (turn(2, 3.0, 4.0, "spk3"),)))
    assert asm.process(Transcript(2, 3.0, 4.0, "", ())) == []
    assert asm.skipped_no_words == 1 and asm.emitted == 2


def test_merged_speaker_ids_are_resolved_and_faces_attached():
    class Faces:
        def evidence(self, t):
            return FaceEvidence(7, 0.8, np.ones(112, np.float32), 0.9)

    asm = UtteranceAssembler(faces=Faces(), resolve_speaker=lambda s: "spk1" if s == "spk4" else s)
    asm.process(VoicedSegment(seg(0, 0.0, 1.0), (turn(0, 0.0, 1.0, "spk4"),)))
    (u,) = asm.process(Transcript(0, 0.0, 1.0, "so", words(("so", 0.1, 0.3))))
    assert u.speaker == "spk1" and u.face.track_id == 7 and u.face.visual.shape == (112,)


def test_words_without_times_go_to_longest_turn():
    tr = Transcript(0, 0.0, 3.0, "whole text", ())
    out = split_words(tr, (turn(0, 0.0, 0.5, "spk1"), turn(0, 0.5, 3.0, "spk2")))
    assert out[0] == () and out[1][0].text == "whole text"


def info(**kw) -> ModelInfo:
    base = dict(
        path=Path("m.pt"),
        label_names=LABELS,
        text_feature="minilm",
        text_dim=8,
        audio_dim=88,
        visual_dim=112,
        speaker_dim=9,
        speaker_source="history",
        trained_modalities=("text",),
        context_mode="causal",
    )
    base.update(kw)
    return ModelInfo(**base)


class HashEncoder:
    """A deterministic stand-in for MiniLM with the same interface (unit level only)."""

    dim = 8

    def encode(self, texts):
        out = np.zeros((len(texts), 8), np.float32)
        for i, t in enumerate(texts):
            out[i, sum(map(ord, t)) % 8] = 1.0
        return out


def make_utt(asm, sid, spk, text, t0, face=None):
    class Faces:
        def evidence(self, t):
            return face or FaceEvidence(None, 0.0, None, 0.0)

    asm.faces = Faces()
    asm.process(VoicedSegment(seg(sid, t0, t0 + 1.0), (turn(sid, t0, t0 + 1.0, spk),)))
    (u,) = asm.process(Transcript(sid, t0, t0 + 1.0, text, words((text, t0 + 0.1, t0 + 0.9))))
    return u


def test_modalities_never_trained_on_are_masked_and_said():
    allowed, notes = masking_policy(info(), FeatureOptions())
    assert allowed == (True, False, False)
    assert any("voice" in n and "never trained" in n for n in notes)
    assert any("face" in n for n in notes)
    allowed, _ = masking_policy(
        info(trained_modalities=("text", "audio", "visual")), FeatureOptions(use_visual=False)
    )
    assert allowed == (True, True, False)


def test_features_masks_follow_what_is_there():
    full = info(trained_modalities=("text", "audio", "visual"))
    fz = UtteranceFeaturizer(full, HashEncoder())
    asm = UtteranceAssembler()
    u = make_utt(asm, 0, "spk1", "hello", 0.0)
    f = fz.features(u)
    assert f.mask.tolist() == [1.0, 1.0, 0.0] and f.masked == ("face",)
    assert f.audio.shape == (88,) and np.isfinite(f.audio).all() and np.abs(f.audio).sum() > 0
    u = make_utt(asm, 1, "spk1", "hey", 2.0, FaceEvidence(3, 0.9, np.full(112, 0.5, np.float32), 1))
    assert fz.features(u).mask.tolist() == [1.0, 1.0, 1.0]
    text_only = UtteranceFeaturizer(info(), HashEncoder()).features(u)
    assert text_only.mask.tolist() == [1.0, 0.0, 0.0] and not text_only.audio.any()


def test_causal_window_and_history_speaker_for_a_new_speaker():
    i = info()
    fz, win = (
        UtteranceFeaturizer(i, HashEncoder()),
        DialogueWindow(i, FeatureOptions(max_context=3)),
    )
    asm = UtteranceAssembler()
    shapes, reps = [], {}
    for k, (spk, text) in enumerate(
        [("spk1", "a"), ("spk2", "bb"), ("spk1", "c"), ("spk9", "d"), ("spk9", "ee")]
    ):
        u = make_utt(asm, k, spk, text, float(k * 2))
        f = fz.features(u)
        x, row = win.inputs(u, f)
        shapes.append(x.text.shape)
        reps.setdefault(spk, []).append(x.speaker[0, -1].copy())
        # the newest utterance is last; padding never appears
        assert np.array_equal(x.text[0, -1], f.text) and x.context_mask.all()
        win.commit(u, f, row)
    assert [s[1] for s in shapes] == [1, 2, 3, 3, 3]  # capped at max_context
    # spk9 was enrolled a moment ago: unknown (zeros) at first, then its own summary, no training
    first, second = reps["spk9"]
    assert not first.any()
    assert np.allclose(second[:-1], HashEncoder().encode(["d"])[0]) and second[-1] == pytest.approx(
        np.log1p(1)
    )
    assert win.speaker_count("spk9") == 2


def test_voice_speaker_source_uses_the_d_vector():
    i = info(speaker_source="voice", speaker_dim=256)
    fz, win = UtteranceFeaturizer(i, HashEncoder()), DialogueWindow(i)
    u = make_utt(UtteranceAssembler(), 0, "spk2", "hi", 0.0)
    x, _ = win.inputs(u, fz.features(u))
    assert x.speaker.shape == (1, 1, 256) and x.speaker[0, 0, 2] == pytest.approx(1.0)

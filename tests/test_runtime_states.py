"""Rolling per-speaker states (decay, hysteresis, history) and the JSONL event writer."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from edge_app.events import EmotionEvent, EventWriter, TurnEvent
from edge_app.states import SpeakerStates, StateOptions
from mlsan.errors import UserFacingError

LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")


def onehot(label: str, p: float = 0.9) -> np.ndarray:
    out = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    out[LABELS.index(label)] = p
    return out


def test_first_utterance_sets_label_and_probs_are_normalised():
    st = SpeakerStates()
    s = st.update("spk1", 1.0, onehot("joy") * 3, LABELS, text="great news")
    assert s.label == "joy" and s.raw_label == "joy"
    assert abs(sum(s.probs) - 1) < 1e-9
    assert s.last_text == "great news" and s.n_utterances == 1


def test_decay_zero_follows_each_utterance():
    st = SpeakerStates(StateOptions(half_life_s=0.0, switch_margin=0.0))
    st.update("a", 1.0, onehot("joy"), LABELS)
    s = st.update("a", 2.0, onehot("anger"), LABELS)
    assert s.label == "anger"
    assert s.probs[LABELS.index("anger")] == pytest.approx(0.9)


def test_decay_weights_old_evidence_by_half_life():
    st = SpeakerStates(StateOptions(half_life_s=5.0, switch_margin=0.0))
    st.update("a", 0.0, onehot("joy", 1.0), LABELS)
    s = st.update("a", 5.0, onehot("anger", 1.0), LABELS)  # old evidence counts 0.5
    assert s.probs[LABELS.index("joy")] == pytest.approx(0.5 / 1.5)
    assert s.probs[LABELS.index("anger")] == pytest.approx(1 / 1.5)
    s = st.update("a", 1000.0, onehot("sadness", 1.0), LABELS)  # long gap: history forgotten
    assert s.probs[LABELS.index("sadness")] == pytest.approx(1.0, abs=1e-6)


def test_hysteresis_keeps_label_until_margin_is_beaten():
    st = SpeakerStates(StateOptions(half_life_s=0.0, switch_margin=0.2))
    st.update("a", 0.0, onehot("joy", 0.5), LABELS)
    close = np.zeros(7)
    close[LABELS.index("joy")], close[LABELS.index("anger")] = 0.45, 0.55
    s = st.update("a", 1.0, close, LABELS)
    assert s.label == "joy", "a 0.10 lead must not flip the label (margin 0.2)"
    assert s.raw_label == "anger"
    s = st.update("a", 2.0, onehot("anger", 0.9), LABELS)
    assert s.label == "anger"


def test_flicker_is_suppressed_on_alternating_near_ties():
    st = SpeakerStates(StateOptions(half_life_s=4.0, switch_margin=0.1))
    changes, last = 0, None
    for i in range(40):
        p = np.zeros(7)
        a, b = ("joy", "neutral") if i % 2 else ("neutral", "joy")
        p[LABELS.index(a)], p[LABELS.index(b)] = 0.52, 0.48
        s = st.update("a", float(i), p, LABELS)
        changes += s.label != last
        last = s.label
    assert changes == 1  # only the first assignment


def test_history_keeps_last_minute_and_speakers_keep_order():
    st = SpeakerStates(StateOptions(history_s=60.0))
    for i in range(100):
        st.update("spk2" if i % 3 else "spk1", float(i * 2), onehot("joy"), LABELS)
    snap = st.snapshot()
    assert [s.speaker for s in snap] == ["spk1", "spk2"]
    for s in snap:
        assert s.history and s.last_t - s.history[0].t <= 60.0
        assert all(a.t <= b.t for a, b in zip(s.history, s.history[1:], strict=False))


def test_names_faces_and_trust_are_kept():
    st = SpeakerStates()
    trust = (("text", 0.7), ("audio", 0.3), ("visual", 0.0))
    st.update(
        "spk1",
        1.0,
        onehot("joy"),
        LABELS,
        name="Alice",
        trust=trust,
        face_track=3,
        face_seen=True,
        binding_confidence=0.9,
    )
    s = st.update("spk1", 2.0, onehot("joy"), LABELS)  # no face this time: binding is kept
    assert s.display_name == "Alice (spk1)" and s.trust == ()
    assert s.face_track == 3 and not s.face_seen


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        StateOptions(half_life_s=-1)
    with pytest.raises(ValueError):
        SpeakerStates().update("a", 0.0, np.ones(3), LABELS)


def test_snapshots_are_consistent_under_concurrent_updates():
    st = SpeakerStates()
    stop = threading.Event()
    seen: list[int] = []

    def reader():
        while not stop.is_set():
            for s in st.snapshot():
                assert abs(sum(s.probs) - 1) < 1e-6
                seen.append(s.n_utterances)

    t = threading.Thread(target=reader)
    t.start()
    rng = np.random.default_rng(0)
    for i in range(2000):
        st.update(f"spk{i % 4}", i * 0.1, rng.dirichlet(np.ones(7)), LABELS)
    stop.set()
    t.join(5)
    assert seen and st.get("spk0").n_utterances == 500


def _event(i: int) -> EmotionEvent:
    return EmotionEvent(
        utterance_id=i,
        t_start=1.0,
        t_end=2.5,
        speaker="spk1",
        speaker_name=None,
        text="hi “there”",
        emotion="joy",
        confidence=0.6,
        probs=tuple((lab, 1 / 7) for lab in LABELS),
        state="joy",
        state_confidence=0.5,
        trust=(("text", 1.0), ("audio", 0.0), ("visual", 0.0)),
        masked=("audio", "visual"),
        face_track=None,
        binding_confidence=0.0,
        context=3,
        latency_s=0.42,
    )


def test_event_writer_writes_flushed_json_lines(tmp_path):
    path = tmp_path / "ev.jsonl"
    w = EventWriter(str(path))
    w.write(_event(0))
    # flushed per line: readable before close
    rec = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    for key in ("t_start", "t_end", "speaker", "text", "emotion", "probs", "trust", "latency_s"):
        assert key in rec
    assert rec["type"] == "utterance" and rec["text"] == "hi “there”"
    assert set(rec["probs"]) == set(LABELS) and rec["trust"]["text"] == 1.0
    w.write({"type": "summary", "utterances": 1})
    w.close()
    w.write(_event(1))  # after close: ignored, no crash
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2


def test_turn_record_schema(tmp_path):
    path = tmp_path / "ev.jsonl"
    w = EventWriter(str(path))
    w.write(
        TurnEvent(
            turn_id=4, segment_id=3, t_start=10.3041, t_end=11.0719, speaker="spk1",
            speaker_name="Alice", overlap=True, new_speaker=False, similarity=0.0,
            latency_s=0.31234,
        )
    )  # fmt: skip
    w.close()
    rec = json.loads(path.read_text(encoding="utf-8"))
    assert rec == {
        "type": "turn", "turn_id": 4, "segment_id": 3, "t_start": 10.304, "t_end": 11.072,
        "speaker": "spk1", "speaker_name": "Alice", "overlap": True, "new_speaker": False,
        "similarity": 0.0, "latency_s": 0.3123,
    }  # fmt: skip


def test_event_writer_stdout(capsys):
    w = EventWriter("-")
    w.write(_event(7))
    w.close()
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["utterance_id"] == 7


def test_event_writer_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(UserFacingError, match="does not exist"):
        EventWriter(str(tmp_path / "nope" / "ev.jsonl"))
    with pytest.raises(UserFacingError, match="directory"):
        EventWriter(str(tmp_path))

"""Per-utterance visual features and face-to-voice binding on synthetic tracks (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.messages import FaceObservation, FrameFaces
from edge_app.video.binding import BindingOptions, FaceVoiceBinder
from edge_app.video.visual_features import (
    VISUAL_DIM,
    VISUAL_FEATURE_NAMES,
    VisualHistory,
    pool_observations,
)

FPS = 25.0


def obs(track_id: int, t: float, blend: float = 0.2, yaw: float = 0.0, mouth: float = 0.0):
    return FaceObservation(
        track_id=track_id,
        t=t,
        box=(0.1, 0.1, 0.3, 0.3),
        blendshapes=np.full(52, blend, np.float32),
        pose=np.array([yaw, 0.0, 0.0], np.float32),
        mouth_activity=mouth,
    )


def test_vector_layout_and_values():
    observations = [
        obs(3, i / FPS, blend=0.1 * (i % 2), yaw=45.0, mouth=float(i)) for i in range(10)
    ]
    feats = pool_observations(observations, frames_in_span=10, t0=0, t1=0.4)
    v = feats.vector
    assert VISUAL_DIM == 112 and len(VISUAL_FEATURE_NAMES) == 112
    assert v.shape == (112,) and v.dtype == np.float32
    assert not feats.absent and feats.coverage == 1.0 and feats.track_id == 3
    assert np.allclose(v[:52], 0.05) and np.allclose(v[52:104], 0.05)
    assert v[104] == pytest.approx(0.5) and v[107] == pytest.approx(0.0)  # yaw 45 deg / 90
    assert v[110] == pytest.approx(4.5) and v[111] == pytest.approx(np.std(np.arange(10)))
    assert VISUAL_FEATURE_NAMES[25] == "jawOpen_mean" and VISUAL_FEATURE_NAMES[110].startswith(
        "mouth"
    )


def test_history_coverage_and_absent():
    history = VisualHistory(max_seconds=60)
    for i in range(100):  # 4 s; track 1 only in the first second
        t = i / FPS
        faces = (obs(1, t),) if i < 25 else ()
        history.add(FrameFaces(frame_index=i, t=t, faces=faces))
    full = history.features(1, 0.0, 0.96)
    assert not full.absent and full.coverage == 1.0 and full.n_frames == 25
    part = history.features(1, 0.0, 3.96)
    assert part.absent and part.coverage == pytest.approx(0.25)
    assert np.all(part.vector == 0)
    assert history.features(1, 0.0, 3.96, min_coverage=0.2).absent is False
    assert history.features(None, 0, 1).absent
    assert history.features(7, 0, 1).absent  # never seen
    assert history.track_ids(2.0, 4.0) == [] and history.track_ids(0, 4) == [1]


def test_history_forgets_old_frames_and_rejects_time_going_back():
    history = VisualHistory(max_seconds=2.0)
    for i in range(500):
        history.add(FrameFaces(frame_index=i, t=i / FPS, faces=(obs(1, i / FPS),)))
    assert len(history) < 2.0 * FPS + 70
    assert history.frame_times(0, 100).min() >= (499 / FPS) - 2.0 - 70 / FPS
    with pytest.raises(ValueError):
        history.add(FrameFaces(frame_index=0, t=0.0, faces=()))


def test_pool_refuses_mixed_tracks():
    with pytest.raises(ValueError):
        pool_observations([obs(1, 0), obs(2, 0)], 1, 0, 0)


# Binding: track 1 moves its mouth while spk_a talks, track 2 while spk_b talks, track 3 moves
# at random (a fidgeting listener).


def _conversation(turns, seconds=20.0, seed=0):
    rng = np.random.default_rng(seed)
    history = VisualHistory()
    owner = {"spk_a": 1, "spk_b": 2}
    for i in range(int(seconds * FPS)):
        t = i / FPS
        talking = {owner[s] for s, a, b in turns if a <= t <= b}
        faces = tuple(
            obs(k, t, mouth=float((0.5 if k in talking else 0.02) + 0.05 * rng.random()))
            for k in (1, 2)
        ) + (obs(3, t, mouth=float(0.4 * rng.random())),)
        history.add(FrameFaces(frame_index=i, t=t, faces=faces))
    return history


TURNS = [
    ("spk_a", 1.0, 3.0),
    ("spk_b", 4.0, 6.5),
    ("spk_a", 7.5, 9.0),
    ("spk_b", 10.0, 12.0),
    ("spk_a", 13.0, 15.5),
    ("spk_b", 16.5, 18.0),
]


def test_binder_binds_each_voice_to_its_moving_mouth():
    history = _conversation(TURNS)
    binder = FaceVoiceBinder()
    first = {}
    for speaker, a, b in TURNS:
        binding = binder.update_span(speaker, a, b, history)
        first.setdefault(speaker, binding)
    assert first["spk_a"].track_id is None or first["spk_a"].track_id == 1
    assert binder.track_of("spk_a") == 1 and binder.track_of("spk_b") == 2
    assert binder.speaker_of(1) == "spk_a" and binder.speaker_of(3) is None
    for b in binder.bindings().values():
        assert 0.5 < b.confidence <= 1.0 and b.score > 0.5 and b.margin > 0.3


def test_binder_leaves_unbound_when_unsure():
    rng = np.random.default_rng(1)
    history = VisualHistory()
    for i in range(int(12 * FPS)):  # two fidgeting faces, nothing related to the voice
        t = i / FPS
        faces = tuple(obs(k, t, mouth=float(rng.random())) for k in (1, 2))
        history.add(FrameFaces(frame_index=i, t=t, faces=faces))
    binder = FaceVoiceBinder()
    for a, b in [(1.0, 3.0), (5.0, 7.0), (9.0, 10.0)]:
        binding = binder.update_span("spk_a", a, b, history)
    assert binding.track_id is None and binding.confidence <= 0.5
    # No face at all: unbound, zero confidence.
    assert FaceVoiceBinder().update_span("spk_x", 1, 2, VisualHistory()).track_id is None


def test_one_face_is_not_given_to_two_voices():
    history = _conversation(TURNS)
    binder = FaceVoiceBinder(BindingOptions(min_score=0.0, min_margin=0.0))
    for speaker, a, b in TURNS:
        binder.update_span(speaker, a, b, history)
    # spk_c's turns coincide with spk_a's: same mouth, but spk_a's evidence is as strong.
    for _, a, b in [t for t in TURNS if t[0] == "spk_a"]:
        binder.update_span("spk_c", a, b, history)
    tracks = [b.track_id for b in binder.bindings().values() if b.track_id is not None]
    assert len(tracks) == len(set(tracks))


def test_binding_follows_the_face_when_it_changes():
    """spk_a's face is track 1 for 20 s, then (new seat, new track 4) for the next 40 s."""
    rng = np.random.default_rng(2)
    history = VisualHistory()
    turns = [("spk_a", a, a + 1.5) for a in np.arange(1.0, 60.0, 3.0)]
    for i in range(int(60 * FPS)):
        t = i / FPS
        talking = any(a <= t <= b for _, a, b in turns)
        face = 1 if t < 20 else 4
        faces = (obs(face, t, mouth=(0.5 if talking else 0.02) + 0.05 * float(rng.random())),)
        faces += (obs(2, t, mouth=0.02 + 0.05 * float(rng.random())),)
        history.add(FrameFaces(frame_index=i, t=t, faces=faces))
    binder = FaceVoiceBinder()
    tracks = [binder.update_span(s, a, b, history).track_id for s, a, b in turns]
    assert tracks[5] == 1 and tracks[-1] == 4


def test_expression_is_pooled_over_frames_that_have_one():
    import dataclasses

    frames = [obs(2, i / FPS) for i in range(6)]
    emb = [np.full(8, float(i), np.float32) for i in range(6)]
    with_expr = [
        dataclasses.replace(o, expression=e if i % 2 == 0 else None, expression_reason=None)
        if i % 2 == 0
        else dataclasses.replace(o, expression_reason="face turned away (yaw 60 deg > 45)")
        for i, (o, e) in enumerate(zip(frames, emb, strict=True))
    ]
    feats = pool_observations(with_expr, frames_in_span=6, t0=0, t1=0.2)
    assert feats.expression.dtype == np.float32 and np.allclose(feats.expression, 2.0)  # 0,2,4
    assert feats.expression_frames == 3 and feats.expression_reason is None
    # No frame with an embedding: None, with the most common per-frame reason.
    turned = [dataclasses.replace(o, expression_reason="face turned away") for o in frames]
    none = pool_observations(turned, frames_in_span=6, t0=0, t1=0.2)
    assert not none.absent and none.expression is None
    assert none.expression_reason == "no usable face crop: face turned away"
    # Absent track: None with the coverage reason; the 112-d vector is unchanged (zeros).
    absent = pool_observations(frames[:1], frames_in_span=10, t0=0, t1=0.4)
    assert absent.absent and absent.expression is None and "10%" in absent.expression_reason
    assert VisualHistory().features(None, 0, 1).expression_reason

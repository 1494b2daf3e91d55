"""Tracker and feature pooling on synthetic detections (fast, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.video.faces import DetectedFace, rotation_to_yaw_pitch_roll
from edge_app.video.tracker import FaceTracker, TrackerOptions


def face(x: float, y: float = 0.3, size: float = 0.2, mouth: float = 0.0) -> DetectedFace:
    return DetectedFace(
        box=(x, y, x + size, y + size),
        blendshapes=np.full(52, 0.1, np.float32),
        pose=np.zeros(3, np.float32),
        mouth_open=mouth,
        landmarks=np.zeros((478, 3), np.float32),
    )


def test_moving_face_keeps_its_id():
    tracker = FaceTracker()
    ids = set()
    for i in range(60):
        frame = tracker.update(i, i / 30, [face(0.1 + 0.005 * i)])
        ids.update(o.track_id for o in frame.faces)
    assert ids == {1}
    (summary,) = tracker.summaries()
    assert summary.frames_seen == 60 and summary.first_t == 0 and summary.last_t == 59 / 30


def test_two_faces_two_ids_even_when_listed_in_either_order():
    tracker = FaceTracker()
    first = None
    for i in range(30):
        pair = [face(0.1), face(0.6)]
        frame = tracker.update(i, i / 30, pair if i % 2 else pair[::-1])
        by_x = {round(o.box[0], 1): o.track_id for o in frame.faces}
        first = first or by_x
        assert by_x == first and sorted(by_x.values()) == [1, 2]


def test_short_miss_survives_long_absence_ends_and_ids_are_not_reused():
    tracker = FaceTracker(TrackerOptions(max_missed_s=0.5))
    for i in range(10):
        tracker.update(i, i / 30, [face(0.3)])
    for i in range(10, 20):  # 0.33 s occluded
        tracker.update(i, i / 30, [])
    assert tracker.update(20, 20 / 30, [face(0.31)]).faces[0].track_id == 1
    assert tracker.pop_ended() == []
    for i in range(21, 60):  # gone for 1.3 s
        tracker.update(i, i / 30, [])
    (ended,) = tracker.pop_ended()
    assert ended.track_id == 1 and ended.ended and ended.frames_seen == 11
    assert tracker.active_ids == ()
    assert tracker.update(60, 2.0, [face(0.3)]).faces[0].track_id == 2


def test_no_faces_no_tracks():
    tracker = FaceTracker()
    for i in range(30):
        assert tracker.update(i, i / 30, []).faces == ()
    tracker.finish()
    assert tracker.summaries() == []


def test_mouth_activity_follows_mouth_motion():
    tracker = FaceTracker()
    activity = []
    for i in range(60):
        talking = 20 <= i < 40
        mouth = 0.05 + 0.05 * np.sin(i * 1.3) if talking else 0.02
        activity.append(tracker.update(i, i / 30, [face(0.3, mouth=mouth)]).faces[0].mouth_activity)
    assert min(activity[25:40]) > 5 * max(activity[5:20])
    assert activity[-1] < 0.2 * max(activity[25:40])  # decays once still
    assert all(a >= 0 for a in activity)


def test_time_must_not_go_backwards():
    tracker = FaceTracker()
    tracker.update(0, 1.0, [])
    with pytest.raises(ValueError):
        tracker.update(1, 0.5, [])


def test_pose_from_rotation_matrix():
    def rot_y(deg):
        a = np.radians(deg)
        return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])

    def rot_x(deg):
        a = np.radians(deg)
        return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])

    def rot_z(deg):
        a = np.radians(deg)
        return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])

    m = np.eye(4)
    m[:3, :3] = 1.7 * rot_y(25) @ rot_x(-10) @ rot_z(5)  # MediaPipe's matrices carry a scale
    assert np.allclose(rotation_to_yaw_pitch_roll(m), [25, -10, 5], atol=1e-3)

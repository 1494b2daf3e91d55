"""``mlsan-live extract-meld`` on a tiny MELD.Raw-like folder cut from the real fixture clip."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_app.cli import main
from mlsan.feature_store import read_feature_store

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).parent / "fixtures" / "two_speakers.mp4"
# (dialogue, utterance, start, end, side of the face that moves): spans of sample.rttm turns.
CUTS = [(0, 0, 10.57, 14.70, "left"), (0, 1, 14.49, 17.92, "right"), (1, 0, 21.78, 26.0, "right")]


@pytest.fixture(scope="module")
def meld_folder(tmp_path_factory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg command (apt-get install ffmpeg) to cut test clips")
    folder = tmp_path_factory.mktemp("MELD.Raw") / "train_splits"
    folder.mkdir()
    for d, u, a, b, _ in CUTS:
        subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", str(a), "-to", str(b), "-i", str(FIXTURE),
             str(folder / f"dia{d}_utt{u}.mp4")],
            check=True,
        )  # fmt: skip
    (folder / "dia2_utt0.mp4").write_bytes(b"not a video" * 50)  # a damaged clip
    (folder / "._dia0_utt0.mp4").write_bytes(b"\0" * 10)  # macOS litter: not a clip
    return folder


def test_extract_writes_a_feature_store(meld_folder, tmp_path, capsys):
    out = tmp_path / "features" / "train.npz"
    code = main(["extract-meld", str(meld_folder), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1  # one clip failed, and that is said
    summary = json.loads(captured.out.strip())
    assert summary["rows"] == 3 and summary["failed"] == 1 and summary["clips"] == 4
    assert "dia2_utt0.mp4" in captured.err and len(summary["failures"]) == 1
    store = read_feature_store(out)
    assert store.dialogue_id.tolist() == [0, 0, 1] and store.utterance_id.tolist() == [0, 1, 0]
    assert store.visual.shape == (3, 112) and store.audio.shape == (3, 88)
    assert store.voice.shape == (3, 256)
    assert store.visual_present.all() and store.audio_present.all() and store.voice_present.all()
    assert np.allclose(np.linalg.norm(store.voice, axis=1), 1.0, atol=1e-3)
    blend_means = store.visual[:, :52]
    assert blend_means.min() >= 0 and blend_means.max() <= 1
    assert store.meta["visual_dim"] == 112
    # Resume keeps the rows and extracts nothing again.
    code = main(["extract-meld", str(meld_folder), "--out", str(out), "--json", "--resume"])
    again = json.loads(capsys.readouterr().out.strip())
    assert again["rows"] == 3 and again["skipped_done"] == 3 and again["extracted"] == 0


def test_the_speaking_face_is_picked(meld_folder):
    from edge_app.video.clip_features import ClipFeatureExtractor

    extractor = ClipFeatureExtractor()
    for d, u, _, _, side in CUTS:
        clip = extractor.extract(meld_folder / f"dia{d}_utt{u}.mp4")
        assert not clip.visual.absent and clip.audio is not None and clip.voice is None
        assert clip.speaker_track is not None and clip.visual.track_id == clip.speaker_track
        x0, _, x1, _ = clip.speaker_box
        assert ("left" if (x0 + x1) / 2 < 0.5 else "right") == side


def test_bad_folder_is_one_line(tmp_path, capsys):
    assert main(["extract-meld", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MELD.Raw" in err[0]
    assert main(["extract-meld", str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 2
    assert "no dia{D}_utt{U}.mp4 clips" in capsys.readouterr().err

"""The speaker gallery refuses what the voice model cannot use (another embedding size,
numbers that are not finite), in one line and without rewriting the file; a save killed
half-way leaves no temp file behind for long (issue 13, defects 5 and 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.audio.gallery import GalleryError, GallerySpeaker, SpeakerGallery

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, dim: int = 256, count="1", seconds="2.5", model: str = "fake") -> str:
    centroid = ", ".join(["0.0625"] * dim)
    text = (
        f'{{"format": "mlsan-live speaker gallery", "version": 2, "embedding_model": "{model}", '
        f'"embedding_dim": {dim}, '
        f'"speakers": [{{"id": "spk1", "name": "Alice", "centroid": [{centroid}], '
        f'"count": {count}, "seconds": {seconds}}}]}}'
    )
    path.write_text(text)
    return text


def test_a_gallery_of_another_embedding_size_is_refused(tmp_path):
    path = tmp_path / "g.json"
    _write(path, dim=128)
    assert len(SpeakerGallery(path).load()) == 1  # a valid file in itself
    with pytest.raises(GalleryError, match=r"128-d voices, the voice model gives 256-d"):
        SpeakerGallery(path, embedding_dim=256).load()
    assert SpeakerGallery(path, embedding_dim=128).load()[0].name == "Alice"


@pytest.mark.parametrize(
    ("count", "seconds"),
    [("Infinity", "2.5"), ("1e400", "2.5"), ("1", "NaN"), ("1", "-Infinity"), ("0", "1")],
)
def test_numbers_that_are_not_finite_are_a_one_line_error(tmp_path, count, seconds):
    path = tmp_path / "g.json"
    text = _write(path, count=count, seconds=seconds)
    with pytest.raises(GalleryError, match="not a valid gallery") as info:
        SpeakerGallery(path, embedding_dim=256).load()
    assert "\n" not in str(info.value)
    with pytest.raises(GalleryError):  # and it is never overwritten
        SpeakerGallery(path, embedding_dim=256).save([])
    assert path.read_text() == text


def test_stale_temp_files_of_a_killed_save_are_removed(tmp_path):
    path = tmp_path / "gallery.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    orphan = tmp_path / f".gallery.json.{dead}.k3j2h1.tmp"  # a process killed mid-save
    legacy = tmp_path / ".gallery.json.abc123xy.tmp"  # the naming before the pid was in it
    saving = tmp_path / f".gallery.json.{os.getpid()}.zz9.tmp"  # a live save: left alone
    for f in (orphan, legacy, saving):
        f.write_text("{half")
    gallery = SpeakerGallery(path, model_id="fake-4", embedding_dim=4)
    gallery.save([GallerySpeaker("spk1", None, np.array([1, 0, 0, 0], np.float32), 3, 2.0)])
    assert not orphan.exists() and not legacy.exists() and saving.exists()
    assert json.loads(path.read_text())["speakers"][0]["id"] == "spk1"
    saving.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.json"]
    orphan.write_text("{half")
    gallery.load()  # loading cleans up too
    assert not orphan.exists()


def test_live_run_refuses_a_gallery_of_another_size_and_leaves_it(shared_data, tmp_path):
    from edge_app.audio.speaker import model_id_of
    from mlsan.registry import default_registry

    path = tmp_path / "g.json"
    # The live run's own voice model, but vectors of another size (a damaged or edited file).
    model = model_id_of(default_registry({}).resolve("speaker").path)
    text = _write(path, dim=256, model=model)
    wav = shared_data / "diarization" / "sample.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_app.cli", "--audio", str(wav), "--headless", "--fast",
         "--gallery", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "256-d voices" in lines[0] and "fix:" in lines[0], proc.stderr
    assert path.read_text() == text

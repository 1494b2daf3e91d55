"""Error paths of ``mlsan-live`` as a user meets them: one clear line on stderr, non-zero exit,
and no hang (each run is bounded by a timeout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CLI = [sys.executable, "-m", "edge_app.cli"]


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("mlsan-live: error: "), line
    for needle in needles:
        assert needle in line, line
    assert proc.stdout == ""
    return line


def test_no_camera_is_one_line():
    proc = run_cli("--camera", "97", "--headless", "--no-gallery")
    assert_one_line_error(proc, "camera", "97", "--camera")


def test_missing_file_is_one_line(tmp_path):
    proc = run_cli("--audio", str(tmp_path / "nope.wav"), "--headless")
    assert_one_line_error(proc, "nope.wav", "no such file")


def test_unreadable_file_is_one_line(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    proc = run_cli("--audio", str(bad), "--headless", "--no-gallery")
    assert_one_line_error(proc, "notes.wav", "fix")


def test_unknown_backend_is_one_line(shared_data):
    wav = shared_data / "diarization" / "sample.wav"
    proc = run_cli("--audio", str(wav), "--headless", "--backend", "cuda-magic")
    assert_one_line_error(proc, "unknown backend", "cuda-magic", "onnxruntime")


def test_missing_model_is_one_line(shared_data, tmp_path):
    wav = shared_data / "diarization" / "sample.wav"
    proc = run_cli(
        "--audio", str(wav), "--headless", "--no-gallery",
        "--checkpoint", str(tmp_path / "missing.pt"),
    )  # fmt: skip
    assert_one_line_error(proc, "missing.pt", "--checkpoint")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "no source"),
        (("--audio", "X", "--events", "-"), "--headless"),
        (("--audio", "X", "--decay", "-1", "--headless"), "--decay"),
        (("--audio", "X", "--name", "spk1", "--headless"), "ID=NAME"),
    ],
)
def test_bad_flags_are_one_line(shared_data, args, needle):
    wav = str(shared_data / "diarization" / "sample.wav")
    proc = run_cli(*[wav if a == "X" else a for a in args])
    assert_one_line_error(proc, needle)


def test_corrupt_gallery_is_one_line_and_left_untouched(shared_data, tmp_path):
    wav = shared_data / "diarization" / "sample.wav"
    gallery = tmp_path / "speakers.json"
    gallery.write_text("{not json")
    proc = run_cli("--audio", str(wav), "--headless", "--gallery", str(gallery))
    assert_one_line_error(proc, str(gallery), "fix")
    assert gallery.read_text() == "{not json"

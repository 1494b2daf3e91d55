"""Error paths of ``mlsan-live`` as a user meets them: one clear line on stderr, non-zero exit,
and no hang (each run is bounded by a timeout)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
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


# -- integrity: every model the run loads is verified (issue 13, defects 1 and 2) ------------


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _zip_data_offset(path: Path) -> int:
    """An offset inside the stored bytes of the zip's largest entry (a weight tensor)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    return info.header_offset + 30 + name_len + extra_len + info.compress_size // 2


def test_corrupt_cached_speaker_model_stops_the_run_as_models_reports_it(shared_data, tmp_path):
    """A cached copy of the voice (speaker) model with one flipped byte: the run refuses it
    with the line `models` prints."""
    from mlsan.registry import ModelRegistry

    packaged = ModelRegistry(cache_dir=tmp_path / "none", environ={}).resolve("speaker").path
    cached = tmp_path / "cache" / "speaker" / packaged.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(packaged.read_bytes())
    _flip_byte(cached, cached.stat().st_size // 2)
    env = {**os.environ, "MLSAN_CACHE_DIR": str(tmp_path / "cache")}
    models = subprocess.run(
        [*CLI, "models", "--json"], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    )
    problem = {r["name"]: r for r in json.loads(models.stdout)["models"]}["speaker"]["problem"]
    assert models.returncode == 1 and problem and f"delete {cached}" in problem
    wav = shared_data / "diarization" / "sample.wav"
    proc = subprocess.run(
        [*CLI, "--audio", str(wav), "--headless", "--no-gallery", "--fast"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    line = assert_one_line_error(proc)
    assert proc.returncode == 2
    assert line == f"mlsan-live: error: {problem}"


def test_checkpoint_with_a_flipped_byte_and_no_sidecar_is_refused(shared_data, tmp_path):
    """torch.load does not check zip CRCs; the registry and load_checkpoint do."""
    from mlsan.checkpoint import load_checkpoint
    from mlsan.errors import CheckpointError
    from mlsan.registry import ModelRegistry

    shipped = ModelRegistry(cache_dir=tmp_path / "none", environ={}).resolve("mlsan").path
    ckpt = tmp_path / "mine.pt"  # no .sha256 beside it: only the zip's own CRCs can tell
    ckpt.write_bytes(shipped.read_bytes())
    load_checkpoint(ckpt)  # intact: loads
    _flip_byte(ckpt, _zip_data_offset(ckpt))
    with pytest.raises(CheckpointError, match="CRC"):
        load_checkpoint(ckpt)
    wav = shared_data / "diarization" / "sample.wav"
    proc = run_cli(
        "--audio", str(wav), "--headless", "--no-gallery", "--fast", "--checkpoint", str(ckpt)
    )  # fmt: skip
    assert_one_line_error(proc, str(ckpt), "CRC", "fix")
    assert proc.returncode == 2


# -- what the run writes is checked before anything loads (defects 4 and 8) ------------------


def test_unwritable_gallery_or_events_fail_before_models_load(shared_data, tmp_path):
    wav = str(shared_data / "diarization" / "sample.wav")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    # A missing checkpoint would fail while loading: the write check must come first.
    late = ("--checkpoint", str(tmp_path / "missing.pt"))
    proc = run_cli("--audio", wav, "--headless", "--gallery", str(blocker / "g.json"), *late)
    assert_one_line_error(proc, "--gallery", "a-file", "fix")
    proc = run_cli(
        "--audio", wav, "--headless", "--no-gallery", "--events", str(tmp_path / "no" / "e.jsonl"),
        *late,
    )  # fmt: skip
    assert_one_line_error(proc, "--events", "does not exist", "fix")
    proc = run_cli(
        "--audio", wav, "--headless", "--no-gallery", "--events", str(blocker / "e.jsonl"), *late
    )  # fmt: skip
    assert_one_line_error(proc, "--events", "fix")
    assert blocker.read_text() == "not a folder\n"


def test_directory_as_audio_is_called_a_directory(tmp_path):
    proc = run_cli("--audio", str(tmp_path), "--headless", "--no-gallery")
    assert_one_line_error(proc, str(tmp_path), "is a directory", "fix")


def test_video_without_sound_says_what_to_do(tmp_path):
    silent = tmp_path / "silent.mp4"
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to strip the sound track")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(REPO / "tests/fixtures/two_speakers.mp4"),
         "-t", "2", "-an", "-c:v", "copy", str(silent)],
        check=True,
    )  # fmt: skip
    proc = run_cli("--video", str(silent), "--headless", "--no-gallery")
    line = assert_one_line_error(proc, "no sound track", "--audio", "mlsan-live faces")
    assert "use --video" not in line


def test_damaged_video_gives_one_line_without_ffmpeg_chatter(tmp_path):
    """A cut-off mp4 (its index, the moov atom, at the end is missing): FFmpeg's own
    "moov atom not found" line must not come before ours."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to write an mp4 with its index at the end")
    full = tmp_path / "full.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(REPO / "tests/fixtures/two_speakers.mp4"),
         "-t", "5", "-c", "copy", str(full)],
        check=True,
    )  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    proc = run_cli("--video", str(cut), "--headless", "--no-gallery")
    assert_one_line_error(proc, "cut.mp4")
    assert "moov" not in proc.stderr


def test_ctrl_c_while_loading_exits_130_in_one_line(shared_data):
    wav = shared_data / "diarization" / "sample.wav"
    proc = subprocess.Popen(
        [*CLI, "--audio", str(wav), "--headless", "--no-gallery"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2.0)  # models take several seconds to load; this lands among them
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["mlsan-live: interrupted"], err
    assert out == ""

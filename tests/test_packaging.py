"""The project as a stranger gets it: a built wheel, installed (not editable) into a fresh
virtual environment, run from an unrelated folder, replays the demo it ships.

To keep CI fast the venv sees the system's third-party packages (``--system-site-packages``:
torch, mediapipe, ... are not downloaded again), but mlsan-live itself comes only from the
wheel: the test checks that every project module, the checkpoint, the face model and the demo
recording are imported or read from the venv, not from this checkout. The full install from
the index (``pip install torch==2.13.0 && pip install CHECKOUT``) is timed by hand (README).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: building in place would leave build/ and *.egg-info in the checkout.
    src = tmp_path_factory.mktemp("src") / "mlsan-live"
    skip = (".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests", "runs")
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*skip))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, env=_env(), cwd=out, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("mlsan_live-*.whl")
    return built


def test_wheel_holds_the_code_the_models_the_demo_and_the_licences(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in (
        "edge_app/cli.py",
        "edge_app/demo/sample.wav",
        "edge_app/demo/sample.wav.sha256",
        "edge_app/models/face_landmarker.task",
        "mlsan/checkpoints/mlsan_meld.pt",
        "mlsan/checkpoints/mlsan_meld.pt.sha256",
        "engines/backend.py",
        "calibration/recorder.py",
    ):
        assert must in names, must
    assert any(n.endswith("/LICENSE") for n in names) and any(
        n.endswith("THIRD_PARTY.md") for n in names
    )
    assert not any(n.startswith("tests/") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line.split(":", 1)[1].strip()
        for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert not any(r.startswith("setuptools") for r in requires), requires  # no downgrade
    assert [r for r in requires if r.startswith("opencv")] == ["opencv-contrib-python>=4.8"]
    assert "faster-whisper<1.3,>=1.2.1" in requires  # the first release with silero_vad_v6


def test_installed_wheel_runs_the_demo_from_any_folder(wheel, tmp_path):
    venv = tmp_path / "v"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True, env=_env(), timeout=120,
    )  # fmt: skip
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
        check=True, env=_env(), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(py), "-c",
         "import json, edge_app, mlsan, engines, calibration\n"
         "from mlsan.registry import ModelRegistry\n"
         "from edge_app.commands.demo import sample_path\n"
         "reg = ModelRegistry(environ={})\n"
         "print(json.dumps([m.__file__ for m in (edge_app, mlsan, engines, calibration)]"
         " + [str(reg.resolve(n).path) for n in ('mlsan', 'face')] + [str(sample_path())]))"],
        check=True, capture_output=True, text=True, env=_env(), cwd=elsewhere, timeout=120,
    )  # fmt: skip
    site = str(venv)
    for path in json.loads(where.stdout):
        assert path.startswith(site), f"{path} is not from the installed wheel"
        assert not path.startswith(str(REPO))
    proc = subprocess.run(
        [str(venv / "bin" / "mlsan-live"), "demo", "--headless", "--events", "-", "--fast"],
        capture_output=True, text=True, env=_env(), cwd=elsewhere, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    utts = [r for r in records if r["type"] == "utterance"]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["status"] == "finished"
    assert len({r["speaker"] for r in utts}) == 2 and len(utts) >= 4
    assert 29.5 <= summary["media_s"] <= 30.5
    assert "Chicago" in " ".join(r["text"] for r in utts)  # the real words of the recording
    assert list(elsewhere.iterdir()) == []  # the demo wrote nothing where it was run

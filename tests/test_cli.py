"""The mlsan-live CLI as a user meets it: help, models table, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mlsan.registry import MODEL_SPECS


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "edge_app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_documents_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--camera", "--video", "--audio", "--headless", "--events", "models"):
        assert flag in result.stdout
    for spec in MODEL_SPECS:
        assert spec.flag in result.stdout
    # every option argparse knows has a help text (no bare "--flag" lines)
    assert "==SUPPRESS==" not in result.stdout


def test_models_json_lists_every_model(tmp_path):
    result = run_cli("models", "--json", env={"MLSAN_CACHE_DIR": str(tmp_path)})
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["models"]}
    assert set(rows) == {spec.name for spec in MODEL_SPECS}
    for row in rows.values():
        assert row["found"], row["problem"]
        assert row["problem"] is None
        assert len(row["sha256"]) == 64 and row["size_bytes"] > 0
    assert result.returncode == 0


def test_models_reports_a_corrupt_cache_copy_and_exits_non_zero(tmp_path):
    bad = tmp_path / "vad" / "silero_vad_v6.onnx"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an onnx model")
    result = run_cli("models", "--json", env={"MLSAN_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 1
    rows = {row["name"]: row for row in json.loads(result.stdout)["models"]}
    assert rows["vad"]["source"] == "cache"
    assert "sha256" in rows["vad"]["problem"] and f"delete {bad}" in rows["vad"]["problem"]


def test_models_missing_explicit_path_is_reported(tmp_path):
    result = run_cli("models", "--json", "--face-model", str(tmp_path / "none.task"))
    assert result.returncode == 1
    rows = {row["name"]: row for row in json.loads(result.stdout)["models"]}
    assert not rows["face"]["found"]
    assert "--face-model" in rows["face"]["problem"]


def test_models_table_renders(tmp_path):
    result = run_cli("models", env={"MLSAN_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    for spec in MODEL_SPECS:
        assert spec.name in result.stdout
    assert "missing" not in result.stdout


def test_unknown_flag_is_one_line_and_exit_2():
    result = run_cli("--no-such-flag")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments: --no-such-flag" in lines[0]
    assert "--help" in lines[0]


def test_bad_subcommand_flag_is_one_line():
    result = run_cli("models", "--frobnicate")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_takes_the_run_flags_but_not_the_sources():
    result = run_cli("--help")
    assert "demo" in result.stdout
    result = run_cli("demo", "--help")
    assert result.returncode == 0
    for flag in ("--headless", "--events", "--fast", "--backend", "--gallery", "--record-inputs"):
        assert flag in result.stdout
    assert "--audio" not in result.stdout and "--camera" not in result.stdout
    result = run_cli("demo", "--audio", "talk.wav")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1

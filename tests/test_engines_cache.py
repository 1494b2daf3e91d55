"""Engine cache keys, rebuild decisions and version checks (pure logic, no TensorRT needed)."""

from __future__ import annotations

import dataclasses

import pytest
from packaging.version import Version

from engines.cache import EngineKey, GpuInfo, engine_cache_path, sidecar_path
from engines.errors import BackendUnavailableError, EngineMismatchError
from engines.sidecar import Sidecar, TensorSpec
from engines.trt_build import ContextProfile, EngineBuildError, engine_key, plan_engine
from engines.versions import (
    MIN_TENSORRT,
    check_tensorrt_version,
    max_opset_for,
    parse_version,
    require_same_build,
    same_build,
)
from mlsan.registry import file_sha256

ORIN = GpuInfo("Orin", (8, 7))
H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
PROFILE = ContextProfile(1, 32, 128, 8)


def _key(**changes) -> EngineKey:
    key = engine_key("ab" * 32, "fp16", ORIN, "10.3.0", PROFILE, "causal")
    return dataclasses.replace(key, **changes)


def _write_cached_engine(cache, key: EngineKey, payload: bytes = b"serialized-engine") -> None:
    path = engine_cache_path(cache, key)
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    Sidecar(
        kind="tensorrt",
        artifact=path.name,
        artifact_sha256=file_sha256(path),
        precision=key.precision,
        opset=17,
        mode=key.mode,
        checkpoint_sha256=key.checkpoint_sha256,
        checkpoint_path="ckpt.pt",
        label_names=("neutral", "joy"),
        inputs=(TensorSpec("text", ("batch", "context", 384), "float32"),),
        outputs=(TensorSpec("probs", ("batch", "context", 2), "float32"),),
        engine_key=key.to_json(),
    ).write(path)


def test_versions_are_compared_as_versions_not_strings():
    # Compared as strings, "10.10.0" < "10.9.0": the trap this module exists to avoid.
    assert parse_version("10.10.0", "tensorrt") > parse_version("10.9.0", "tensorrt")
    assert check_tensorrt_version("10.10.0.31") == Version("10.10.0.31")
    assert check_tensorrt_version("8.6.2") >= MIN_TENSORRT
    with pytest.raises(BackendUnavailableError, match="older than 8.6.*JetPack"):
        check_tensorrt_version("8.5.2.2")
    with pytest.raises(BackendUnavailableError, match="not a version number"):
        parse_version("ten", "tensorrt")
    assert max_opset_for(Version("8.6.2")) == 17
    assert max_opset_for(Version("10.3")) == 20


def test_same_build_ignores_build_number_but_not_patch():
    assert same_build("10.3.0.26", "10.3.0.30")
    assert same_build("10.3", "10.3.0")
    assert not same_build("10.3.0", "10.3.1")
    assert not same_build("8.6.2", "10.3.0")
    with pytest.raises(EngineMismatchError, match="mlsan-engine build"):
        require_same_build("10.9.0", "10.10.0", "x.engine")


def test_engine_key_digest_and_file_name():
    key = _key()
    assert key.digest() == _key(tensorrt_version="10.3.0").digest()
    assert key.digest() == _key(tensorrt_version="10.3.0.26").digest()  # build number ignored
    stem = key.file_stem()
    assert stem.startswith("mlsan-abababababab-causal-fp16-orin-sm87-trt10.3.0-")
    assert EngineKey.from_json(key.to_json()) == key
    # Every field that an engine depends on changes the key.
    for change in (
        dict(gpu_name=H100.name, compute_capability=H100.compute_capability),
        dict(tensorrt_version="10.4.0"),
        dict(checkpoint_sha256="cd" * 32),
        dict(precision="int8"),
        dict(max_context=256),
        dict(mode="bidirectional"),
    ):
        other = _key(**change)
        assert other.digest() != key.digest()
        assert engine_cache_path("c", other) != engine_cache_path("c", key)
        assert key.mismatches(other), change
    assert key.mismatches(_key(tensorrt_version="10.3.0.99")) == []


def test_plan_builds_once_then_reuses(tmp_path):
    key = _key()
    plan = plan_engine(key, tmp_path)
    assert plan.action == "build" and "no cached engine" in plan.reason
    _write_cached_engine(tmp_path, key)
    plan = plan_engine(key, tmp_path)
    assert plan.action == "reuse", plan.reason
    assert plan_engine(key, tmp_path, force=True).action == "build"


def test_plan_rebuilds_for_other_gpu_tensorrt_or_corruption(tmp_path):
    key = _key()
    _write_cached_engine(tmp_path, key)
    # A Jetson engine copied to an H100 box, or TensorRT upgraded: a different cache entry.
    h100 = engine_key(key.checkpoint_sha256, "fp16", H100, "10.3.0", PROFILE, "causal")
    assert plan_engine(h100, tmp_path).action == "build"
    upgraded = _key(tensorrt_version="10.10.0")
    assert plan_engine(upgraded, tmp_path).action == "build"
    # A sidecar whose key disagrees with the file name (engine overwritten by another build).
    path = engine_cache_path(tmp_path, key)
    sidecar = Sidecar.read(path)
    dataclasses.replace(sidecar, engine_key=_key(tensorrt_version="10.4.0").to_json()).write(path)
    plan = plan_engine(key, tmp_path)
    assert plan.action == "build" and "TensorRT 10.4.0" in plan.reason
    # A truncated engine file.
    _write_cached_engine(tmp_path / "b", key)
    engine_cache_path(tmp_path / "b", key).write_bytes(b"trunc")
    plan = plan_engine(key, tmp_path / "b")
    assert plan.action == "build" and "sha256" in plan.reason
    sidecar_path(engine_cache_path(tmp_path / "b", key)).unlink()
    assert plan_engine(key, tmp_path / "b").action == "build"


def test_context_profile_parsing():
    assert ContextProfile.parse("1:32:128") == ContextProfile(1, 32, 128, 8)
    with pytest.raises(EngineBuildError, match="MIN:OPT:MAX"):
        ContextProfile.parse("1-128")
    with pytest.raises(EngineBuildError, match="1 <= MIN <= OPT <= MAX"):
        ContextProfile.parse("8:4:128")

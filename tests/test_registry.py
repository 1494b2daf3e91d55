"""The model registry: explicit path > user cache > packaged copy; checksums; clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlsan.errors import ModelChecksumError, ModelNotFoundError
from mlsan.registry import (
    MODEL_SPECS,
    SOURCE_CACHE,
    SOURCE_EXPLICIT,
    SOURCE_PACKAGE,
    ModelRegistry,
    ModelSpec,
    digest_path,
)

PAYLOAD = b"weights of a real model would be here"


def _spec(sha: str | None, package: str | None = None, relpath: str | None = None) -> ModelSpec:
    return ModelSpec(
        name="toy",
        role="toy model",
        artifact="toy.bin",
        package=package,
        package_relpath=relpath,
        pip_name="toy-package",
        sha256=sha,
        flag="--toy-model",
    )


def _registry(tmp_path: Path, spec: ModelSpec, **kwargs) -> ModelRegistry:
    return ModelRegistry(cache_dir=tmp_path / "cache", specs=(spec,), environ={}, **kwargs)


def test_missing_model_names_every_fix(tmp_path):
    reg = _registry(tmp_path, _spec(None))
    with pytest.raises(ModelNotFoundError) as info:
        reg.resolve("toy")
    message = str(info.value)
    assert "\n" not in message
    for fix in ("--toy-model", "MLSAN_MODEL_TOY", "pip install toy-package", "cache"):
        assert fix in message
    row = reg.status("toy")
    assert row.found is None and row.problem == message


def test_cache_copy_found_and_verified(tmp_path):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    reg = _registry(tmp_path, _spec(sha))
    cached = tmp_path / "cache" / "toy" / "toy.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    found = reg.resolve("toy", verify=True)
    assert found.source == SOURCE_CACHE and found.path == cached
    row = reg.status("toy")
    assert row.problem is None and row.sha256 == sha and row.size_bytes == len(PAYLOAD)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    reg = _registry(tmp_path, _spec(hashlib.sha256(PAYLOAD).hexdigest()))
    cached = tmp_path / "cache" / "toy" / "toy.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD + b"truncated or tampered")
    with pytest.raises(ModelChecksumError) as info:
        reg.resolve("toy", verify=True)
    assert "\n" not in str(info.value)
    assert f"delete {cached}" in str(info.value)
    assert reg.status("toy").problem == str(info.value)


def test_explicit_path_wins_and_is_checked_for_existence(tmp_path):
    reg_missing = _registry(tmp_path, _spec(None), overrides={"toy": tmp_path / "nope.bin"})
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        reg_missing.resolve("toy")
    explicit = tmp_path / "mine.bin"
    explicit.write_bytes(b"a different model the user chose")
    cached = tmp_path / "cache" / "toy" / "toy.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    reg = _registry(
        tmp_path, _spec(hashlib.sha256(PAYLOAD).hexdigest()), overrides={"toy": explicit}
    )
    found = reg.resolve("toy", verify=True)  # the expected digest is for the default copy only
    assert found.source == SOURCE_EXPLICIT and found.path == explicit


def test_sidecar_digest_is_enforced(tmp_path):
    explicit = tmp_path / "ckpt.pt"
    explicit.write_bytes(PAYLOAD)
    (tmp_path / "ckpt.pt.sha256").write_text("0" * 64 + "  ckpt.pt\n")
    reg = _registry(tmp_path, _spec(None), overrides={"toy": explicit})
    with pytest.raises(ModelChecksumError):
        reg.resolve("toy", verify=True)
    (tmp_path / "ckpt.pt.sha256").write_text(hashlib.sha256(PAYLOAD).hexdigest() + "\n")
    assert reg.resolve("toy", verify=True).path == explicit


def test_environment_variable_overrides(tmp_path):
    explicit = tmp_path / "env.bin"
    explicit.write_bytes(PAYLOAD)
    reg = ModelRegistry(
        cache_dir=tmp_path / "cache",
        specs=(_spec(None),),
        environ={"MLSAN_MODEL_TOY": str(explicit)},
    )
    assert reg.resolve("toy").path == explicit


def test_package_copy_found_without_importing(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "toy_pkg_for_registry"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the registry must not import me')\n")
    (pkg / "models" / "toy.bin").write_bytes(PAYLOAD)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = _spec(hashlib.sha256(PAYLOAD).hexdigest(), "toy_pkg_for_registry", "models/toy.bin")
    found = _registry(tmp_path, spec).resolve("toy", verify=True)
    assert found.source == SOURCE_PACKAGE and found.path == pkg / "models" / "toy.bin"


def test_directory_digest_depends_on_content_and_names(tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "a.bin").write_bytes(b"a")
    (model / "sub" / "b.json").write_bytes(b"{}")
    first = digest_path(model)
    (model / "__pycache__").mkdir()
    (model / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    assert digest_path(model) == first
    (model / "sub" / "b.json").write_bytes(b"{ }")
    assert digest_path(model) != first


def test_unknown_model_name(tmp_path):
    with pytest.raises(KeyError, match="unknown model"):
        _registry(tmp_path, _spec(None)).resolve("nope")


@pytest.mark.parametrize("spec", [s for s in MODEL_SPECS if s.sha256], ids=lambda s: s.name)
def test_packaged_models_are_installed_and_intact(spec, tmp_path):
    """The real packages from setup.py ship every model, with the digests the registry pins."""
    reg = ModelRegistry(cache_dir=tmp_path / "empty-cache", environ={})
    found = reg.resolve(spec.name, verify=True)
    assert found.source == SOURCE_PACKAGE


def test_shipped_mlsan_checkpoint_is_found_and_matches_its_sidecar(tmp_path):
    reg = ModelRegistry(cache_dir=tmp_path / "empty-cache", environ={})
    found = reg.resolve("mlsan", verify=True)
    assert found.source == SOURCE_PACKAGE
    assert found.path.with_name(found.path.name + ".sha256").is_file()

"""Jetson-ready install: the runtime dependencies resolve for aarch64 / CPython 3.10 (JetPack 6)
from binary wheels only.

What it runs: ``pip install --dry-run --report`` with ``--only-binary=:all:``, the manylinux
aarch64 platform tags a JetPack 6 system accepts (Ubuntu 22.04, glibc 2.35), ``--python-version
3.10 --implementation cp --abi cp310``, and ``--isolated`` (PyPI only: no local index, no
constraints of this machine). It resolves the whole tree, transitive dependencies included,
from the wheels' metadata (PyPI serves it apart from the wheel, PEP 658), so nothing large is
downloaded. The requirements are read from setup.py's ``install_requires`` (run with
``setuptools.setup`` captured), never from a copied list.

Excepted: torch and TensorRT (JetPack provides them; torch is pinned to a stand-in wheel of
JetPack 6.1's version, so a dependency that needs a newer torch fails here), and the
source-only packages in ``SOURCE_BUILT`` (each with the reason, checked to have an sdist).
Anything else without an aarch64 wheel fails the test, named with the package that pulls it.

Not verified here (only on a device): that the wheels import and run on the Jetson's CPU/GPU,
CUDA/TensorRT versions, environment markers that depend on the machine (pip evaluates
``platform_machine`` against this host), camera/microphone access.
"""

from __future__ import annotations

import json
import re
import runpy
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON = "3.10"  # JetPack 6 (Ubuntu 22.04)
GLIBC = (17, 27, 28, 31, 34, 35)  # manylinux_2_x tags a glibc-2.35 aarch64 system accepts
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{v}_aarch64" for v in GLIBC))
# JetPack brings these (torch from NVIDIA's Jetson wheel, TensorRT with JetPack).
# Stand-ins carry a local version label that PyPI never has, so pip cannot swap in PyPI's build
# (JetPack 6.1: torch 2.5.0a0+872d972e41.nv24.08, TensorRT 10.3).
JETPACK_PROVIDES = {"torch": "2.5.0+jetpack", "tensorrt": "10.3.0+jetpack"}
# Source-only on PyPI, small C extensions that build on the Jetson (gcc + python3-dev).
SOURCE_BUILT = {
    "webrtcvad": (
        "2.0.10",
        "resemblyzer imports it; PyPI has only an sdist (a small C extension: builds on the "
        "Jetson with build-essential and python3-dev; or install webrtcvad-wheels, which has "
        "aarch64 wheels, and resemblyzer with --no-deps)",
    ),
}

pytestmark = pytest.mark.slow


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _canon(re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0])


def runtime_requirements() -> list[str]:
    """setup.py's install_requires, as setup() receives them."""
    import setuptools

    captured: dict = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    argv = sys.argv
    try:
        sys.argv = ["setup.py", "--name"]
        import os

        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
        finally:
            os.chdir(cwd)
    finally:
        setuptools.setup = real
        sys.argv = argv
    reqs = list(captured.get("install_requires") or [])
    assert reqs, "setup.py passed no install_requires to setup()"
    return reqs


def _stub_wheel(folder: Path, name: str, version: str) -> None:
    """A metadata-only wheel standing in for a package the Jetson gets elsewhere."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as zf:
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def _resolve(reqs: list[str], stubs: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    links = tmp / "stubs"
    links.mkdir(exist_ok=True)
    for name, version in stubs.items():
        _stub_wheel(links, name, version)
    (tmp / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in stubs.items()))
    (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
    cmd = [
        sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check",
        "--dry-run", "--ignore-installed", "--quiet", "--report", str(tmp / "report.json"),
        "--only-binary=:all:", *(f"--platform={p}" for p in PLATFORMS),
        f"--python-version={PYTHON}", "--implementation=cp", f"--abi=cp{PYTHON.replace('.', '')}",
        "--target", str(tmp / "target"), "--find-links", str(links),
        "-c", str(tmp / "constraints.txt"), "-r", str(tmp / "requirements.txt"),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _blocker(stderr: str) -> tuple[str, str | None] | None:
    """(package without a wheel, the package that requires it) from pip's error."""
    m = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+)", stderr)
    if not m:
        return None
    name = _req_name(m.group(1))
    parent = re.search(
        rf"satisfies the requirement {re.escape(m.group(1))}[^\n]*?\(from ([A-Za-z0-9_.\-]+)",
        stderr,
    )
    return name, (_canon(parent.group(1)) if parent else None)


def test_runtime_dependencies_have_aarch64_cp310_wheels(tmp_path):
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable: the aarch64 check needs the package index")
    reqs = [r for r in runtime_requirements() if _req_name(r) not in JETPACK_PROVIDES]
    stubs = dict(JETPACK_PROVIDES) | {n: v for n, (v, _) in SOURCE_BUILT.items()}
    blockers: list[str] = []
    for _ in range(4):  # bounded: each round names one blocker and stands it in to go on
        proc = _resolve(reqs, stubs, tmp_path)
        if proc.returncode == 0:
            break
        found = _blocker(proc.stderr)
        assert found is not None, f"pip could not resolve for aarch64:\n{proc.stderr[-3000:]}"
        name, parent = found
        blockers.append(f"{name} (required by {parent or 'setup.py'})")
        stubs[name] = "999.0+standin"  # so the rest of the tree is still checked
    assert not blockers, (
        "no aarch64 / CPython 3.10 wheel on PyPI for: " + ", ".join(blockers)
        + " -- a Jetson (JetPack 6) install would have to build these from source or fail"
    )  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    resolved = {_canon(i["metadata"]["name"]): i for i in report["install"]}
    # Every real package is a wheel for this platform (the stand-ins come from the stub folder).
    for name, item in resolved.items():
        url = item["download_info"]["url"]
        if name in stubs:
            assert url.startswith("file:"), f"{name} came from {url}, not the stand-in"
            continue
        wheel = url.rsplit("/", 1)[-1]
        assert wheel.endswith(".whl"), f"{name}: {wheel} is not a wheel"
        tags = wheel[:-4].split("-")[-3:]  # python, abi, platform
        assert tags[2] == "any" or "aarch64" in tags[2], f"{name}: {wheel} is not for aarch64"
        assert tags[0].startswith("py") or "cp310" in tags[0] or "abi3" in tags[1], wheel
    for req in reqs:
        assert _req_name(req) in resolved, f"{req} missing from the resolution"
    print(f"aarch64/cp310: {len(resolved) - len(stubs)} wheels resolve")


def test_source_built_exceptions_really_have_an_sdist(tmp_path):
    """The packages excepted as 'built from source on the Jetson' must have an sdist on PyPI,
    and must still be in the dependency tree (else drop them from SOURCE_BUILT)."""
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable")
    for name, (version, _) in SOURCE_BUILT.items():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--isolated", "--disable-pip-version-check",
             "--no-deps", "--no-binary=:all:", "--no-build-isolation", "--quiet",
             "-d", str(tmp_path), f"{name}=={version}"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, f"{name}=={version} has no sdist on PyPI: {proc.stderr}"

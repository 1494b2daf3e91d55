"""CTranslate2's CPU kernels: AVX-512 only on Intel CPUs that have it, the user's choice wins."""

from __future__ import annotations

from mlsan.ct2_cpu import ENV, cpu_name, prefer_cpu_isa

AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"


def _cpuinfo(tmp_path, vendor: str, flags: str, name: str = "Some CPU"):
    path = tmp_path / f"cpuinfo-{vendor}-{len(flags)}"
    block = f"vendor_id\t: {vendor}\nmodel name\t: {name}\nflags\t\t: {flags}\n\n"
    path.write_text("processor\t: 0\n" + block + "processor\t: 1\n" + block)
    return path


def test_intel_with_avx512_gets_avx512_kernels(tmp_path):
    env: dict[str, str] = {}
    cpuinfo = _cpuinfo(tmp_path, "GenuineIntel", "fpu sse4_1 avx avx2 " + AVX512)
    assert prefer_cpu_isa(env, cpuinfo) == "AVX512"
    assert env == {ENV: "AVX512"}


def test_amd_intel_without_avx512_and_unknown_cpus_are_left_to_ctranslate2(tmp_path):
    amd = _cpuinfo(tmp_path, "AuthenticAMD", "avx avx2 " + AVX512)
    for cpuinfo in (amd, tmp_path / "missing"):
        env: dict[str, str] = {}
        assert prefer_cpu_isa(env, cpuinfo) is None
        assert env == {}
    # AVX-512 foundation without the byte/word and vector-length parts: forcing would fail.
    partial = _cpuinfo(tmp_path, "GenuineIntel", "avx2 avx512f avx512cd")
    env = {}
    assert prefer_cpu_isa(env, partial) is None and env == {}


def test_a_choice_the_user_made_is_kept(tmp_path):
    cpuinfo = _cpuinfo(tmp_path, "GenuineIntel", "avx2 " + AVX512)
    env = {ENV: "AVX2"}
    assert prefer_cpu_isa(env, cpuinfo) == "AVX2"
    assert env == {ENV: "AVX2"}


def test_cpu_name_reads_the_model_name(tmp_path):
    assert cpu_name(_cpuinfo(tmp_path, "GenuineIntel", "avx2", "Intel(R) Xeon(R)")) == (
        "Intel(R) Xeon(R)"
    )
    assert cpu_name(tmp_path / "missing") == ""


def test_this_machines_choice_loads_a_real_model(monkeypatch):
    """Whatever this CPU gets, CTranslate2 accepts it (a wrong value fails at model load)."""
    import os

    import numpy as np

    from mlsan.voice_features import WhisperVoiceEncoder

    monkeypatch.delenv(ENV, raising=False)
    enc = WhisperVoiceEncoder.from_registry()
    assert os.environ.get(ENV) in (None, "AVX512")
    x = enc.feature(0.01 * np.random.default_rng(0).standard_normal(16_000).astype(np.float32))
    assert x.shape == (1536,) and np.all(np.isfinite(x))

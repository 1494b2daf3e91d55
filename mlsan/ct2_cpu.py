"""Which CPU kernels CTranslate2 (Whisper) runs: AVX-512 on Intel CPUs that have it.

API::

    isa = prefer_cpu_isa()   # before the first CTranslate2 model load; "AVX512" or None

CTranslate2 leaves AVX-512 out of its automatic dispatch and runs AVX2 kernels on a CPU that has
both (its matrix products go to oneDNN / Intel MKL, which pick their own instructions either
way). On the 2-core Intel Xeon (AVX-512 and AMX flags) this project was measured on, its
AVX-512 kernels encoded Whisper tiny.en's 30-s window 9-15 % faster (wall) for 8-11 % less CPU,
with word error rates within chance (`bench/bench_asr_window.py`, run once per choice) and the
same voice feature (cosine >= 0.9998); the live latency moved within that machine's noise, and
on an AMD EPYC there was no gain (README, "Live latency"). So only Intel
CPUs get it, and a ``CT2_FORCE_CPU_ISA`` the user set always wins. CTranslate2 reads the
variable once, when it first needs its kernels (the first model load), for the whole process.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

ENV = "CT2_FORCE_CPU_ISA"
# The AVX-512 parts CTranslate2's kernels use (foundation, conflict detection, byte/word,
# dword/qword, vector length); Linux lists a flag only when the kernel enabled it, and forcing
# AVX-512 on a CPU that lacks it fails at model load, so all must be there.
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


def _cpu(cpuinfo: Path) -> tuple[str, set[str]]:
    """(vendor id, flags) of the first CPU in a Linux /proc/cpuinfo; ("", set()) elsewhere."""
    vendor, flags = "", set()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return vendor, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    return vendor, flags


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (benchmarks report the machine they ran on); "" when unknown."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def prefer_cpu_isa(
    environ: MutableMapping[str, str] | None = None, cpuinfo: str | Path = "/proc/cpuinfo"
) -> str | None:
    """Set ``CT2_FORCE_CPU_ISA=AVX512`` on an Intel CPU with AVX-512 unless already set;
    returns the value now in force (None: CTranslate2 chooses)."""
    env = os.environ if environ is None else environ
    if env.get(ENV):
        return env[ENV]
    vendor, flags = _cpu(Path(cpuinfo))
    if vendor == "GenuineIntel" and AVX512_FLAGS <= flags:
        env[ENV] = "AVX512"
        return "AVX512"
    return None

"""numpy's BLAS pool on one thread in the audio pipelines (mlsan.blas_threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlsan.blas_threads import USER_SETTINGS, one_blas_thread

PROBE = """
import json, numpy
from threadpoolctl import threadpool_info
from mlsan.blas_threads import blas_threads, one_blas_thread
start = blas_threads()
before = one_blas_thread()
import scipy.linalg, scipy.signal  # SciPy's own OpenBLAS: loaded by one_blas_thread, limited
sizes = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({"start": start, "before": before, "after": blas_threads(), "pools": sizes}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_blas_thread_limits_numpy_pool_in_a_fresh_process():
    got = _probe()
    assert got["start"] is not None, "numpy links a BLAS threadpoolctl knows"
    assert got["before"] == got["start"]  # the size numpy started with (one per core)
    assert got["after"] == 1
    assert got["pools"] and set(got["pools"]) == {1}, got  # numpy's and SciPy's


def test_a_thread_count_the_user_set_wins():
    got = _probe(OPENBLAS_NUM_THREADS="2")
    assert got["before"] is None
    assert got["after"] == got["start"]  # untouched


@pytest.mark.parametrize("name", USER_SETTINGS)
def test_any_user_setting_is_respected(name):
    assert one_blas_thread({name: "3"}) is None

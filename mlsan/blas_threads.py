"""numpy's BLAS on one thread in the audio pipelines' processes.

API::

    one_blas_thread()        # before the pipeline's threads start; the BLAS pool's old size or None

Why: numpy's OpenBLAS starts one worker per core and keeps it spinning for a while after every
matrix product, waiting for the next one. In the audio pipelines numpy's products are small (the
log-mel filter bank of each Whisper window, the speaker stage's cosine scores), and a spinning
worker takes a whole core from the threads that do the heavy work: PyTorch's Whisper encoder
(two threads), CTranslate2's decoder and the voice stage. On the 2-core Xeon one Whisper turn
took 354 vs 445 ms wall and 503 vs 700 ms CPU (medians) with OpenBLAS on one thread (71
conversation turns, the two settings taking turns on each turn in one process:
``bench/bench_asr_window.py --windows "" --bf16 --blas``; README, "Live latency").

``threadpoolctl`` changes the pool at run time, so this works after numpy was imported. SciPy
ships a second OpenBLAS, loaded with ``scipy.linalg`` (the diarizer's clustering, resampling):
it is loaded first so that both pools get one thread. A
thread count the user set (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``)
always wins, as ``CT2_FORCE_CPU_ISA`` does for :mod:`mlsan.ct2_cpu`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

USER_SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread(environ: Mapping[str, str] = os.environ) -> int | None:
    """Limit numpy's BLAS to one thread for this process, unless the user set a thread count.

    Returns the pool's size before (the largest when several BLAS libraries are loaded), or
    None when nothing was changed (the user's setting, or no BLAS pool that threadpoolctl knows).
    """
    if any(environ.get(name) for name in USER_SETTINGS):
        return None
    import scipy.linalg  # noqa: F401  (loads SciPy's own OpenBLAS now, so it is limited too)
    from threadpoolctl import threadpool_limits

    before = blas_threads()
    if before is not None:
        threadpool_limits(1, user_api="blas")  # kept: not used as a context manager
    return before


def blas_threads() -> int | None:
    """The BLAS pool's size now (the largest when several are loaded), None without one."""
    from threadpoolctl import threadpool_info

    sizes = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(sizes) if sizes else None

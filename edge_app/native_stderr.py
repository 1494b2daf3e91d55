"""Silence native libraries' chatter on file descriptor 2 (ALSA/JACK probing, MediaPipe's glog).

Python-level errors still raise as exceptions; only what C/C++ code writes straight to fd 2 while
the block runs is discarded.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True):
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

"""The terminal UI's layout at the sizes people use: at 80x24 the footer and every speaker stay
on screen (compact rows when the panels do not fit); a large terminal keeps the panels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from edge_app.runtime import Overflow, Runtime
from edge_app.states import SpeakerStates
from edge_app.ui import HeaderInfo, UiSnapshot, render

LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")


def _snapshot(n_speakers: int) -> UiSnapshot:
    states = SpeakerStates()
    rng = np.random.default_rng(0)
    for i in range(4 * n_speakers):
        sid = f"spk{i % n_speakers + 1}"
        states.update(
            sid,
            1.0 + i,
            rng.dirichlet(np.ones(len(LABELS))),
            LABELS,
            text=f"words of {sid} number {i}, a sentence long enough to need cutting off",
            name="Alice" if sid == "spk1" else None,
            trust=(("text", 0.7), ("audio", 0.3), ("visual", 0.0)),
        )
    rt = Runtime()
    rt.queue("audio", 8, Overflow.DROP_NEWEST)
    return UiSnapshot(
        header=HeaderInfo(
            "audio sample.wav (real time)",
            "onnxruntime:CPUExecutionProvider",
            "mlsan_meld.pt [text, causal, speaker=history, context 16]",
            notes=("voice and face masked: the model was trained on words only",),
        ),
        speakers=states.snapshot(),
        stats=rt.stats(),
        media_t=12.5,
        video_fps=None,
        faces_in_view=None,
        latency_p50_s=0.41,
        latency_p95_s=0.47,
        utterances=4 * n_speakers,
        audio_dropped_s=0.0,
        status="running",
    )


def _screen(snap: UiSnapshot, width: int, height: int) -> list[str]:
    """What a terminal of this size shows: rich's Live crops what is taller (the bottom)."""
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(render(snap, width, height))
    lines = console.export_text().rstrip("\n").split("\n")
    return lines[:height]


@pytest.mark.parametrize("n_speakers", [2, 3, 5])
def test_80x24_shows_the_footer_and_every_speaker(n_speakers):
    screen = _screen(_snapshot(n_speakers), 80, 24)
    text = "\n".join(screen)
    assert all(len(line) <= 80 for line in screen)
    assert "Alice (spk1)" in text
    for i in range(2, n_speakers + 1):
        assert f"spk{i}" in text, text
    assert "cutting off”" in text  # the newest words of each speaker, not the oldest
    assert "p95 0.47s" in text and "drops" in text  # the footer
    assert "mlsan-live" in screen[0]  # the header


def test_a_large_terminal_keeps_the_full_panels():
    screen = _screen(_snapshot(3), 140, 50)
    text = "\n".join(screen)
    assert "trust" in text and "trend 60s" in text and "said" in text  # panel rows
    assert "utterance end → emotion" in text and "queues" in text  # the full footer
    for sid in ("spk1", "spk2", "spk3"):
        assert sid in text


def test_the_header_says_when_the_run_is_finishing_what_was_heard():
    import dataclasses

    snap = _snapshot(2)
    assert "stopping" not in _screen(snap, 80, 24)[0]
    stopping = dataclasses.replace(snap, stats=dataclasses.replace(snap.stats, stopping=True))
    for width, height in ((80, 24), (140, 50)):
        assert "stopping: finishing what was heard" in _screen(stopping, width, height)[0]

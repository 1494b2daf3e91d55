"""The terminal UI (rich): a panel per speaker, a header and a footer, from immutable snapshots.

The UI runs on its own thread: every ``1/refresh_hz`` seconds (default 1: the clock, rates and
stage times), and at once when ``poke()`` says a new emotion is ready, it calls the
``snapshot`` function it was given (cheap: copies of frozen dataclasses taken under short
locks), renders it and redraws. The pipeline never waits for the
UI (``poke`` only sets an Event); the UI only reads.

Per speaker: name or id, whether a face is bound and seen, the current (smoothed) emotion with
its confidence, the trend over the last minute (one coloured letter per utterance), the last
words, and the trust the model's gate gave voice, face and words. Header: sources, backend,
media time, frame rate. Footer: per-stage latency, end-of-utterance-to-emotion latency, drops.

When that does not fit the terminal (an 80x24 window: two panels already fill it), the screen
becomes compact: one line of header, one table row per speaker (every speaker stays visible),
two lines of footer. The layout is chosen by measuring the full one at the terminal's size.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edge_app.runtime import RuntimeStats
from edge_app.states import SpeakerState

EMOTION_STYLES: dict[str, str] = {
    "neutral": "bright_white",
    "joy": "bold yellow",
    "surprise": "bold magenta",
    "sadness": "bold blue",
    "anger": "bold red",
    "disgust": "bold green",
    "fear": "bold cyan",
}
TRUST_NAMES = {"text": "words", "audio": "voice", "visual": "face"}  # model modality -> UI word


@dataclass(frozen=True)
class HeaderInfo:
    sources: str  # "audio: sample.wav (replay, real time)" ...
    backend: str  # what the engine says it is ("onnxruntime:CPUExecutionProvider")
    model: str  # checkpoint name + the modalities it was trained on
    notes: tuple[str, ...] = ()  # one-liners shown under the header (masked modalities, ...)


@dataclass(frozen=True)
class UiSnapshot:
    header: HeaderInfo
    speakers: tuple[SpeakerState, ...]
    stats: RuntimeStats
    media_t: float  # media seconds replayed / captured so far
    video_fps: float | None  # frames per second the face stage processed (None: no video)
    faces_in_view: int | None  # faces in the last processed frame (None: no video)
    latency_p50_s: float | None  # end of utterance -> emotion ready
    latency_p95_s: float | None
    utterances: int
    audio_dropped_s: float
    status: str  # "running" | "finished" | "stopping"


def _status(snap: UiSnapshot) -> str:
    if snap.stats.stopping and snap.status == "running":
        return "stopping: finishing what was heard (Ctrl-C again: now)"
    return snap.status


def style_of(label: str | None) -> str:
    return EMOTION_STYLES.get(label or "", "white")


def _bar(value: float, width: int = 10) -> str:
    value = min(1.0, max(0.0, value))
    full = int(round(value * width))
    return "█" * full + "·" * (width - full)


def _trend(state: SpeakerState) -> Text:
    """One coloured capital letter per utterance of the last minute (oldest first)."""
    out = Text()
    points = state.history[-24:]
    for i, pt in enumerate(points):
        if i:
            out.append(" ")
        out.append(pt.label[:1].upper(), style=style_of(pt.label))
    if points:
        first, last = points[0].label, points[-1].label
        out.append("  ")
        out.append(first if first == last else f"{first} → {last}", style="dim")
    return out


def speaker_panel(state: SpeakerState, has_video: bool = True) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    if state.face_track is not None:
        seen = "seen" if state.face_seen else "not seen now"
        face = Text(f"face #{state.face_track} bound ({state.binding_confidence:.2f}), {seen}")
    elif has_video:
        face = Text("no face bound yet", style="dim")
    else:
        face = Text("— (no video)", style="dim")
    grid.add_row("face", face)
    emotion = Text()
    emotion.append((state.label or "…").upper(), style=style_of(state.label))
    emotion.append(f"  {state.confidence:.0%}  {_bar(state.confidence)}")
    grid.add_row("feels", emotion)
    if state.raw_label:
        last = Text(
            f"{state.raw_label} {state.raw_confidence:.0%}", style=style_of(state.raw_label)
        )
        grid.add_row("last utt.", last)
    grid.add_row("trend 60s", _trend(state))
    words = state.last_text.strip() or "…"
    if len(words) > 90:
        words = "…" + words[-89:]
    grid.add_row("said", Text(f"“{words}”", style="italic"))
    trust = Text()
    for i, (modality, weight) in enumerate(state.trust):
        if i:
            trust.append(" ")
        name = TRUST_NAMES.get(modality, modality)
        trust.append(f"{name} {weight:.2f} ", style="bold" if weight > 0 else "dim")
        trust.append(_bar(weight, 3), style="green" if weight > 0 else "dim")
    grid.add_row("trust", trust)
    title = Text(state.display_name, style="bold")
    title.append(f"  · {state.n_utterances} utt.", style="dim")
    return Panel(grid, title=title, title_align="left", border_style=style_of(state.label))


def header(snap: UiSnapshot) -> RenderableType:
    h = snap.header
    line = Text()
    line.append("mlsan-live", style="bold cyan")
    line.append(f"  {h.sources}  │  t={snap.media_t:.1f}s  │  {_status(snap)}")
    video = "no video" if snap.video_fps is None else f"video {snap.video_fps:.1f} fps"
    if snap.faces_in_view is not None:
        video += f", {snap.faces_in_view} face(s) in view"
    line2 = Text(f"backend {h.backend}  │  model {h.model}  │  {video}", style="dim")
    parts: list[RenderableType] = [line, line2]
    for note in h.notes:
        parts.append(Text(note, style="dim"))
    return Group(*parts)


def _ms(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}ms" if x >= 10 else f"{x:.1f}ms"


def footer(snap: UiSnapshot) -> RenderableType:
    stages = Text("latency ", style="dim")
    for i, st in enumerate(s for s in snap.stats.stages if s.latency_median_ms is not None):
        if i:
            stages.append(" · ")
        stages.append(f"{st.name} {_ms(st.latency_median_ms)}")
    e2e = Text("utterance end → emotion ", style="dim")
    if snap.latency_p50_s is None:
        e2e.append("—")
    else:
        e2e.append(f"p50 {snap.latency_p50_s:.2f}s p95 {snap.latency_p95_s:.2f}s")
    e2e.append(f"  ({snap.utterances} utterances)", style="dim")
    drops = Text("drops ", style="dim")
    drop_parts = [
        f"{q.name} {q.dropped} ({q.dropped_units} {q.units})"
        for q in snap.stats.queues
        if q.dropped
    ]
    drops.append(", ".join(drop_parts) or "none", style="red" if drop_parts else "")
    if snap.audio_dropped_s:
        drops.append(f"  audio lost {snap.audio_dropped_s:.2f}s", style="red")
    queues = Text("queues ", style="dim")
    queues.append("  ".join(f"{q.name} {q.depth}/{q.maxsize}" for q in snap.stats.queues))
    parts: list[RenderableType] = [stages, e2e, drops, queues]
    for err in snap.stats.errors[:2]:
        parts.append(Text(f"error {err}", style="bold red"))
    return Group(*parts)


def _lines(renderable: RenderableType, width: int) -> int:
    """Terminal lines ``renderable`` takes at ``width`` columns."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    return len(console.render_lines(renderable, console.options, pad=False))


def _compact_header(snap: UiSnapshot) -> RenderableType:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("mlsan-live", style="bold cyan")
    line.append(f"  t={snap.media_t:.1f}s  {_status(snap)}  │  {snap.header.sources}")
    line.append(f"  │  {snap.header.backend}", style="dim")
    return line


def _compact_speakers(snap: UiSnapshot, width: int) -> RenderableType:
    """One row per speaker: who, face, current emotion, trend, trust, last words (their end:
    the newest words matter most)."""
    keep = max(12, width - 64)  # what the other columns leave at this width
    table = Table(box=None, padding=(0, 1), expand=True, show_edge=False, header_style="dim")
    table.add_column("speaker", no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column("feels", no_wrap=True)
    table.add_column("face", no_wrap=True)
    table.add_column("trust w/v/f", no_wrap=True)
    table.add_column("trend · said", no_wrap=True, overflow="ellipsis", ratio=1)
    has_video = snap.video_fps is not None
    for st in snap.speakers:
        feels = Text((st.label or "…").upper(), style=style_of(st.label))
        feels.append(f" {st.confidence:.0%}")
        if st.face_track is not None:
            face = f"#{st.face_track}{'' if st.face_seen else '?'}"
        else:
            face = "…" if has_video else "—"
        trust = " ".join(f"{w:.2f}"[1:] if w < 1 else "1.0" for _m, w in st.trust) or "—"
        said = Text()
        for pt in st.history[-6:]:
            said.append(pt.label[:1].upper(), style=style_of(pt.label))
        words = st.last_text.strip() or "…"
        if len(words) > keep:
            words = "…" + words[-(keep - 1) :]
        said.append(f" “{words}”", style="italic")
        table.add_row(f"{st.display_name} ·{st.n_utterances}", feels, face, trust, said)
    return table


def _compact_footer(snap: UiSnapshot) -> RenderableType:
    e2e = Text("end → emotion ", style="dim", no_wrap=True, overflow="ellipsis")
    if snap.latency_p50_s is None:
        e2e.append("—")
    else:
        e2e.append(f"p50 {snap.latency_p50_s:.2f}s p95 {snap.latency_p95_s:.2f}s")
    e2e.append(f" ({snap.utterances} utt.)  drops ", style="dim")
    drops = [f"{q.name} {q.dropped}" for q in snap.stats.queues if q.dropped]
    e2e.append(", ".join(drops) or "none", style="red" if drops else "")
    if snap.audio_dropped_s:
        e2e.append(f" audio lost {snap.audio_dropped_s:.2f}s", style="red")
    stages = Text("latency ", style="dim", no_wrap=True, overflow="ellipsis")
    stages.append(
        " · ".join(
            f"{st.name} {_ms(st.latency_median_ms)}"
            for st in snap.stats.stages
            if st.latency_median_ms is not None
        )
    )
    parts: list[RenderableType] = [e2e, stages]
    for err in snap.stats.errors[:1]:
        parts.append(Text(f"error {err}", style="bold red", no_wrap=True, overflow="ellipsis"))
    return Group(*parts)


def render_compact(snap: UiSnapshot, width: int = 80) -> RenderableType:
    """The screen for a small terminal: header and footer lines, a row per speaker."""
    if snap.speakers:
        body: RenderableType = _compact_speakers(snap, width)
    else:
        body = Text("listening… nobody has spoken yet", style="dim")
    return Group(_compact_header(snap), body, _compact_footer(snap))


def render(snap: UiSnapshot, width: int = 120, height: int | None = None) -> RenderableType:
    """The whole screen: speaker panels side by side as the terminal ``width`` allows, or,
    when that is taller than ``height`` lines, the compact screen."""
    full = render_full(snap, width)
    if height is not None and _lines(full, width) > height:
        return render_compact(snap, width)
    return full


def render_full(snap: UiSnapshot, width: int = 120) -> RenderableType:
    """Header, a panel per speaker, footer."""
    if snap.speakers:
        body = Table.grid(expand=True, padding=(0, 1))
        per_row = max(1, min(len(snap.speakers), width // 60, 3))
        for _ in range(per_row):
            body.add_column(ratio=1)
        panels = [speaker_panel(s, snap.video_fps is not None) for s in snap.speakers]
        for i in range(0, len(panels), per_row):
            row = panels[i : i + per_row]
            body.add_row(*(row + [Text("")] * (per_row - len(row))))
    else:
        body = Panel(Text("listening… nobody has spoken yet", style="dim"))
    return Group(header(snap), body, footer(snap))


class TerminalUI:
    """Redraws ``render(snapshot())`` ``refresh_hz`` times a second on its own thread."""

    def __init__(
        self,
        snapshot: Callable[[], UiSnapshot],
        refresh_hz: float = 1.0,
        console: Console | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._period = 1.0 / max(0.5, refresh_hz)
        self.console = console or Console()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and poke()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self.frames = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self._live = Live(
            self._render(),
            console=self.console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start(refresh=True)
        self._thread = threading.Thread(target=self._loop, name="mlsan-ui", daemon=True)
        self._thread.start()

    def _render(self) -> RenderableType:
        return render(self._snapshot(), self.console.width, self.console.height)

    def poke(self) -> None:
        """Redraw now (a new emotion is ready) instead of at the next tick; any thread."""
        self._wake.set()

    def _loop(self) -> None:
        assert self._live is not None
        try:
            while True:
                self._wake.wait(self._period)
                self._wake.clear()
                if self._stop.is_set():
                    return
                self._live.update(self._render(), refresh=True)
                self.frames += 1
        except Exception as exc:  # noqa: BLE001 - a drawing bug must not take the pipeline down
            self.error = exc

    def stop(self) -> None:
        """Stop redrawing; draw the final state once and leave it on screen."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._live is not None:
            try:
                self._live.update(self._render(), refresh=True)
            finally:
                self._live.stop()

"""``mlsan-live watch mqtt://HOST[:PORT]/PREFIX``: every device publishing under PREFIX, and
its speakers' current states, live, in the live run's panels; ``--json`` prints the merged
stream instead (one JSON object per message, with ``device`` added; retained ones carry
``"retained": true``).

It subscribes (QoS 1) to ``PREFIX/+/utterance``, ``PREFIX/+/speaker/+``, ``PREFIX/+/summary``
and ``PREFIX/+/status``; speaker states and summaries are retained, so a viewer started late
sees where every device stands. With ``--client-id`` the session is persistent
(``clean_session`` off): if the broker restarts with persistence on, messages published while the
viewer was reconnecting reach it afterwards; without, nothing stays on the broker. paho
reconnects with backoff.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from edge_app.mqtt_sink import (
    MqttError,
    add_broker_arguments,
    broker_options_from_args,
    connect_and_wait,
    make_client,
    speaker_state_from_record,
)

NAME = "watch"
HELP = "show every device publishing to an MQTT broker, and its speakers, live"


def add_arguments(parser) -> None:
    parser.add_argument("url", metavar="mqtt://HOST[:PORT]/PREFIX", help="broker and prefix")
    parser.add_argument("--json", action="store_true", help="print the merged stream as JSONL")
    parser.add_argument(
        "--until-summaries",
        type=int,
        metavar="N",
        help="exit after N devices published their end-of-run summary (not counting retained "
        "ones from earlier runs)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="exit after this long (default: Ctrl-C)"
    )
    parser.add_argument(
        "--refresh", type=float, default=4.0, metavar="HZ", help="redraws per second (default 4)"
    )
    parser.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT client id; given, the broker keeps this viewer's session and queues what it "
        "misses while reconnecting (default mlsan-watch-PID, no session kept)",
    )
    add_broker_arguments(parser.add_argument_group("broker"))


@dataclass
class Device:
    name: str
    status: str = "?"
    speakers: dict = field(default_factory=dict)  # id -> SpeakerState
    speaker_runs: dict = field(default_factory=dict)  # id -> run id of its record
    run: str | None = None  # the device's current run (from its status)
    utterances: int = 0
    last: dict | None = None  # last utterance record
    summary: dict | None = None
    updated: float = 0.0  # monotonic


class WatchState:
    """Devices and their speakers, merged from the messages (paho's thread writes, UI reads)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.devices: dict[str, Device] = {}
        self.live_summaries: set[str] = set()
        self.messages = 0
        self.bad = 0

    def apply(self, topic: str, payload: bytes, retained: bool) -> dict | None:
        """Fold one message in; returns the record (with ``device``) or None if not ours."""
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else ""
        parts = rest.split("/")
        if len(parts) < 2:
            return None
        device, kind = parts[0], parts[1]
        try:
            rec = json.loads(payload.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError):
            with self.lock:
                self.bad += 1
            return None
        with self.lock:
            self.messages += 1
            dev = self.devices.setdefault(device, Device(device))
            dev.updated = time.monotonic()
            if kind == "speaker" and len(parts) == 3:
                if dev.run is not None and rec.get("run") not in (None, dev.run):
                    return None  # a retained state of an earlier run of this device
                try:
                    dev.speakers[parts[2]] = speaker_state_from_record(rec)
                except (KeyError, TypeError, ValueError):
                    self.bad += 1
                    return None
                dev.speaker_runs[parts[2]] = rec.get("run")
            elif kind == "utterance":
                dev.utterances += 1
                dev.last = rec
            elif kind == "summary":
                dev.summary = rec
                if not retained:
                    self.live_summaries.add(device)
            elif kind == "status":
                dev.status = str(rec.get("state", "?"))
                run = rec.get("run")
                if run is not None and run != dev.run:  # a new run: forget the earlier one's
                    dev.run = run
                    for sid, srun in list(dev.speaker_runs.items()):
                        if srun not in (None, run):
                            del dev.speakers[sid], dev.speaker_runs[sid]
                    if not retained:
                        dev.summary, dev.last, dev.utterances = None, None, 0
        out = {"device": device, **rec}
        if retained:
            out["retained"] = True
        return out


def render(state: WatchState, url: str, width: int = 120):
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from edge_app.ui import speaker_panel, style_of

    parts = []
    head = Text()
    head.append("mlsan-live watch", style="bold cyan")
    with state.lock:
        devices = sorted(state.devices.values(), key=lambda d: d.name)
        head.append(f"  {url}  │  {len(devices)} device(s)  │  {state.messages} messages")
        parts.append(head)
        if not devices:
            parts.append(Panel(Text("waiting for a device to publish…", style="dim")))
        for dev in devices:
            title = Text(dev.name, style="bold")
            title.append(f"  · {dev.status} · {dev.utterances} utt. seen", style="dim")
            if dev.summary is not None:
                s = dev.summary
                mq = s.get("mqtt") or {}
                title.append(
                    f" · ended: {s.get('utterances')} utt., {s.get('media_s')} s media, "
                    f"{mq.get('dropped', 0)} dropped",
                    style="dim",
                )
            if dev.speakers:
                grid = Table.grid(expand=True, padding=(0, 1))
                per_row = max(1, min(len(dev.speakers), width // 60, 3))
                for _ in range(per_row):
                    grid.add_column(ratio=1)
                panels = [speaker_panel(s, has_video=s.face_track is not None) for s in
                          dev.speakers.values()]  # fmt: skip
                for i in range(0, len(panels), per_row):
                    row = panels[i : i + per_row]
                    grid.add_row(*(row + [Text("")] * (per_row - len(row))))
                body = grid
            else:
                body = Text("no speaker yet", style="dim")
            last = dev.last
            if last is not None:
                line = Text("last  ", style="dim")
                line.append(f"{last.get('speaker')}: ")
                line.append(str(last.get("emotion")), style=style_of(last.get("emotion")))
                line.append(f" “{str(last.get('text', ''))[:80]}”", style="italic")
                body = Group(body, line)
            parts.append(Panel(body, title=title, title_align="left"))
    return Group(*parts)


def run(args) -> int:
    opts = broker_options_from_args(args, args.url, "watch")
    if args.until_summaries is not None and args.until_summaries < 1:
        raise MqttError(f"--until-summaries {args.until_summaries}: must be >= 1")
    if args.duration is not None and not args.duration > 0:
        raise MqttError(f"--duration {args.duration}: must be > 0 seconds")
    if not 0.5 <= args.refresh <= 30:
        raise MqttError(f"--refresh {args.refresh}: must be between 0.5 and 30 per second")
    prefix = opts.url.prefix
    state = WatchState(prefix)
    done = threading.Event()
    out_lock = threading.Lock()
    client_id = args.client_id or f"mlsan-watch-{os.getpid()}"
    # A named viewer keeps its session on the broker (resumes after a restart); an anonymous
    # one leaves nothing behind.
    client = make_client(opts, client_id, clean=args.client_id is None)
    client.reconnect_delay_set(1, 8)
    connected = threading.Event()
    connack: list = []
    ui_wake = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        connack[:] = [reason_code]
        if not reason_code.is_failure:
            # Again after each reconnect (the broker may have lost the session).
            client.subscribe([(f"{prefix}/+/{k}", 1) for k in ("utterance", "summary", "status")]
                             + [(f"{prefix}/+/speaker/+", 1)])  # fmt: skip
        connected.set()

    def on_message(client, userdata, msg):
        rec = state.apply(msg.topic, msg.payload, bool(msg.retain))
        if rec is None:
            return
        if args.json:
            with out_lock:
                sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
                sys.stdout.flush()
        ui_wake.set()
        n = args.until_summaries
        if n is not None and len(state.live_summaries) >= n:
            done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    connect_and_wait(client, opts, connected, connack)
    deadline = None if args.duration is None else time.monotonic() + args.duration
    live = None
    if not args.json:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        live = Live(render(state, str(opts.url), console.width), console=console,
                    auto_refresh=False)  # fmt: skip
        live.start(refresh=True)
    try:
        while not done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            wait = 1.0 / args.refresh
            ui_wake.wait(wait if left is None else min(wait, left))
            ui_wake.clear()
            if live is not None:
                live.update(render(state, str(opts.url), live.console.width), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.update(render(state, str(opts.url), live.console.width), refresh=True)
            live.stop()
        client.disconnect()
        client.loop_stop()
    if state.bad:
        print(f"mlsan-live watch: {state.bad} message(s) were not valid records", file=sys.stderr)
    return 0

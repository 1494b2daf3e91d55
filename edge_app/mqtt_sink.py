"""Events to an MQTT broker: ``--events mqtt://HOST[:PORT]/PREFIX``.

Topics (``DEVICE`` is ``--device-id``, default the host name)::

    PREFIX/DEVICE/utterance      each utterance record (the file sink's line, byte for byte)
    PREFIX/DEVICE/turn           each speaker turn record (who spoke when; the file sink's line)
    PREFIX/DEVICE/speaker/ID     the speaker's current state (retained: a late viewer sees it)
    PREFIX/DEVICE/summary        the summary at the end (retained)
    PREFIX/DEVICE/status         "online" / "finished" / "offline" (retained; "offline" is the
                                 broker's last will when the device vanishes)

Delivery: QoS 1 (at least once: a message in flight when the connection drops is sent again,
so a viewer may see one twice; records carry ``utterance_id`` / ``turn_id`` to tell). ``write``
never blocks the pipeline: it appends to a bounded in-memory buffer and returns; one thread
(``mqtt-pump``) hands messages to paho while connected, at most ``inflight`` unacknowledged at a
time. While the broker is away the buffer holds up to ``buffer`` utterances; past that the
oldest utterance is dropped and counted (its id is listed in the summary's
``mqtt.dropped_ids``). Turn records have a bound of their own of the same size (oldest dropped,
counted in ``mqtt.dropped_turns``), so they never push an utterance out. A speaker's state
is retained, so only its newest value matters: a newer one replaces a queued older one
(``superseded``, not a loss). paho reconnects with exponential backoff (``reconnect_min_s`` ..
``reconnect_max_s``).

Credentials and TLS come from flags or the environment (``MLSAN_MQTT_USERNAME``,
``MLSAN_MQTT_PASSWORD``, ``MLSAN_MQTT_CAFILE``); they are never written into any record.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlsan.errors import UserFacingError

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
_TOPIC_PART = re.compile(r"^[^/+#\x00]+$")  # one topic level, no wildcards
_DEVICE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class MqttError(UserFacingError):
    """A broker URL, connection or credential problem the user can fix."""


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    prefix: str  # topic prefix, levels separated by "/", no wildcards
    tls: bool  # mqtts://

    @staticmethod
    def parse(url: str, flag: str = "--events") -> MqttUrl:
        """``mqtt://HOST[:PORT]/PREFIX`` or ``mqtts://...``; one-line error otherwise."""
        example = "fix: e.g. mqtt://127.0.0.1:1883/mlsan"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise MqttError(f"{flag} {url}: not a broker URL ({exc}); {example}") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise MqttError(f"{flag} {url}: scheme must be mqtt:// or mqtts://; {example}")
        if parts.username is not None or parts.password is not None:
            raise MqttError(
                f"{flag}: credentials in the URL would show in the process list; fix: pass "
                "--mqtt-username and set MLSAN_MQTT_PASSWORD instead"
            )
        if not parts.hostname:
            raise MqttError(f"{flag} {url}: no broker host; {example}")
        if "?" in url or "#" in url:  # '#' is also MQTT's wildcard: never in a prefix
            raise MqttError(
                f"{flag} {url}: the topic prefix must not contain '?', '#' or '+'; {example}"
            )
        prefix = parts.path.strip("/")
        if not prefix or not all(_TOPIC_PART.match(p) for p in prefix.split("/")):
            raise MqttError(
                f"{flag} {url}: the topic prefix after the host must be non-empty, without "
                f"'+', '#' or empty levels; {example}"
            )
        tls = parts.scheme == "mqtts"
        if port is None:
            port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
        if not 0 < port < 65536:
            raise MqttError(f"{flag} {url}: port {port} out of range; {example}")
        return MqttUrl(parts.hostname, port, prefix, tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}/{self.prefix}"


def is_mqtt_url(target: str | None) -> bool:
    return bool(target) and target.split("://", 1)[0] in ("mqtt", "mqtts") and "://" in target


def default_device_id() -> str:
    """The host name, made into one topic level (letters, digits, '.', '_', '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64].strip("-")
    return name or "device"


def check_device_id(device_id: str) -> str:
    if not _DEVICE_ID.match(device_id):
        raise MqttError(
            f"--device-id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-' (it is one "
            "topic level); fix: e.g. --device-id room1"
        )
    return device_id


@dataclass(frozen=True)
class BrokerOptions:
    """How to reach the broker (shared by the sink and ``mlsan-live watch``)."""

    url: MqttUrl
    username: str | None = None
    password: str | None = None  # never logged, never in a record
    tls: bool = False  # TLS also with mqtt:// (mqtts:// implies it)
    cafile: str | None = None  # CA bundle for TLS (default: the system's)
    certfile: str | None = None  # client certificate (mutual TLS)
    keyfile: str | None = None
    insecure: bool = False  # TLS without checking the host name (self-signed test brokers)
    connect_timeout_s: float = 5.0

    @property
    def use_tls(self) -> bool:
        return self.tls or self.url.tls


@dataclass(frozen=True)
class MqttSinkOptions:
    broker: BrokerOptions
    device_id: str
    buffer: int = 1000  # utterances held while the broker is away; then the oldest are dropped
    inflight: int = 20  # unacknowledged QoS 1 messages handed to paho at a time
    offline_start: bool = False  # start (and buffer) even when the broker is unreachable
    reconnect_min_s: int = 1
    reconnect_max_s: int = 8
    drain_s: float = 10.0  # at the end: how long to wait for the buffer to reach the broker


def broker_options_from_args(args, url: str, flag: str) -> BrokerOptions:
    """Flags (``add_broker_arguments``) + environment -> :class:`BrokerOptions`."""
    parsed = MqttUrl.parse(url, flag)
    username = args.mqtt_username or os.environ.get("MLSAN_MQTT_USERNAME") or None
    password = os.environ.get("MLSAN_MQTT_PASSWORD") or None
    if args.mqtt_password_file:
        try:
            with open(os.path.expanduser(args.mqtt_password_file), encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as exc:
            raise MqttError(
                f"--mqtt-password-file {args.mqtt_password_file}: cannot read ({exc.strerror}); "
                "fix: check the path"
            ) from None
    if password is not None and username is None:
        raise MqttError(
            "an MQTT password without a user name; fix: pass --mqtt-username or set "
            "MLSAN_MQTT_USERNAME"
        )
    cafile = args.mqtt_cafile or os.environ.get("MLSAN_MQTT_CAFILE") or None
    for name, path in (
        ("--mqtt-cafile", cafile),
        ("--mqtt-certfile", args.mqtt_certfile),
        ("--mqtt-keyfile", args.mqtt_keyfile),
    ):
        if path and not os.path.isfile(os.path.expanduser(path)):
            raise MqttError(f"{name} {path}: no such file; fix: check the path")
    tls = bool(args.mqtt_tls or cafile or args.mqtt_certfile)
    return BrokerOptions(
        parsed,
        username=username,
        password=password,
        tls=tls,
        cafile=os.path.expanduser(cafile) if cafile else None,
        certfile=os.path.expanduser(args.mqtt_certfile) if args.mqtt_certfile else None,
        keyfile=os.path.expanduser(args.mqtt_keyfile) if args.mqtt_keyfile else None,
        insecure=args.mqtt_insecure,
    )


def add_broker_arguments(group) -> None:
    """Broker flags shared by the live run and ``watch`` (credentials prefer the environment)."""
    group.add_argument(
        "--mqtt-username",
        metavar="NAME",
        help="broker user name (default $MLSAN_MQTT_USERNAME); the password comes from "
        "$MLSAN_MQTT_PASSWORD or --mqtt-password-file, never from a flag",
    )
    group.add_argument("--mqtt-password-file", metavar="FILE", help="file holding the password")
    group.add_argument(
        "--mqtt-tls", action="store_true", help="TLS with mqtt:// too (mqtts:// implies it)"
    )
    group.add_argument(
        "--mqtt-cafile", metavar="FILE", help="CA bundle for TLS (default $MLSAN_MQTT_CAFILE)"
    )
    group.add_argument("--mqtt-certfile", metavar="FILE", help="client certificate (mutual TLS)")
    group.add_argument("--mqtt-keyfile", metavar="FILE", help="client key (mutual TLS)")
    group.add_argument(
        "--mqtt-insecure",
        action="store_true",
        help="TLS without checking the broker's host name (self-signed test brokers only)",
    )


# -- paho client -------------------------------------------------------------------------------
def make_client(opts: BrokerOptions, client_id: str, *, clean: bool = True):
    """A paho-mqtt 2.x client (callback API v2, MQTT 3.1.1) with credentials and TLS set."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    client.connect_timeout = opts.connect_timeout_s
    if opts.username is not None:
        client.username_pw_set(opts.username, opts.password)
    if opts.use_tls:
        try:
            client.tls_set(
                ca_certs=opts.cafile,
                certfile=opts.certfile,
                keyfile=opts.keyfile,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise MqttError(
                f"MQTT TLS setup failed ({exc}); fix: check the CA/cert/key files"
            ) from None
        client.tls_insecure_set(opts.insecure)
    return client


def connect_error(opts: BrokerOptions, exc: BaseException) -> MqttError:
    """One line for a broker that cannot be reached at start."""
    url = opts.url
    if isinstance(exc, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(exc, socket.gaierror):
        why = f"unknown host {url.host!r}"
    elif isinstance(exc, (TimeoutError, socket.timeout)):
        why = f"no answer within {opts.connect_timeout_s:.0f} s"
    elif isinstance(exc, ssl.SSLError):
        why = f"TLS failed: {exc.reason or exc}"
    else:
        why = str(exc) or type(exc).__name__
    return MqttError(
        f"cannot reach the MQTT broker at {url.host}:{url.port} ({why}); fix: start the broker "
        "or correct the URL (or pass --mqtt-offline-start to start anyway and buffer)"
    )


def connect_and_wait(client, opts: BrokerOptions, connected: threading.Event, result: list):
    """Connect, start paho's network thread and wait for the CONNACK (bounded)."""
    url = opts.url
    try:
        client.connect(url.host, url.port, keepalive=30)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise connect_error(opts, exc) from None
    client.loop_start()
    if not connected.wait(opts.connect_timeout_s + 1.0) or (result and result[0].is_failure):
        client.loop_stop()
        client.disconnect()
        reason = str(result[0]) if result else "no CONNACK"
        hint = (
            "check --mqtt-username and the password ($MLSAN_MQTT_PASSWORD)"
            if "auth" in reason.lower() or "password" in reason.lower()
            else "check the broker's log"
        )
        raise MqttError(
            f"the MQTT broker at {url.host}:{url.port} refused the connection ({reason}); "
            f"fix: {hint}"
        )


# -- records -------------------------------------------------------------------------------------
def speaker_record(state) -> dict[str, Any]:
    """A :class:`edge_app.states.SpeakerState` as the retained ``speaker/ID`` message."""
    return {
        "type": "speaker",
        "speaker": state.speaker,
        "name": state.name,
        "label": state.label,
        "confidence": _r(state.confidence),
        "probs": {k: _r(v) for k, v in zip(state.labels, state.probs, strict=True)},
        "raw_label": state.raw_label,
        "raw_confidence": _r(state.raw_confidence),
        "trust": {k: _r(v) for k, v in state.trust},
        "last_text": state.last_text,
        "last_t": round(state.last_t, 3),
        "n_utterances": state.n_utterances,
        # The last minute's trend: [media t, shown label, its confidence, utterance's own label].
        "history": [[round(p.t, 3), p.label, _r(p.confidence), p.raw_label] for p in state.history],
        "face_track": state.face_track,
        "face_seen": state.face_seen,
        "binding_confidence": _r(state.binding_confidence),
    }


def speaker_state_from_record(rec: dict[str, Any]):
    """The inverse of :func:`speaker_record` (what ``watch`` draws with the live run's panels)."""
    from edge_app.states import EmotionPoint, SpeakerState

    probs = rec.get("probs") or {}
    return SpeakerState(
        speaker=str(rec["speaker"]),
        name=rec.get("name"),
        label=rec.get("label"),
        confidence=float(rec.get("confidence") or 0.0),
        probs=tuple(float(v or 0.0) for v in probs.values()),
        labels=tuple(probs),
        raw_label=rec.get("raw_label"),
        raw_confidence=float(rec.get("raw_confidence") or 0.0),
        trust=tuple((k, float(v or 0.0)) for k, v in (rec.get("trust") or {}).items()),
        last_text=str(rec.get("last_text") or ""),
        last_t=float(rec.get("last_t") or 0.0),
        n_utterances=int(rec.get("n_utterances") or 0),
        history=tuple(
            EmotionPoint(float(t), str(lab), float(c or 0.0), str(raw))
            for t, lab, c, raw in rec.get("history") or ()
        ),
        face_track=rec.get("face_track"),
        face_seen=bool(rec.get("face_seen")),
        binding_confidence=float(rec.get("binding_confidence") or 0.0),
    )


def _r(x: float, nd: int = 4) -> float | None:
    from edge_app.events import _r as round_finite

    return round_finite(x, nd)


# -- the sink ------------------------------------------------------------------------------------
@dataclass
class _Msg:
    key: tuple  # ("u", utterance_id) | ("t", turn_id) | ("s", speaker) | ("x", n): coalescing key
    topic: str
    payload: bytes
    retain: bool
    t_in: float  # monotonic time write() accepted it


class MqttSink:
    """The event sink for a broker; same interface as :class:`edge_app.events.EventWriter`
    (``write(record | EmotionEvent | TurnEvent)``, ``close()``, ``count``)."""

    def __init__(
        self,
        options: MqttSinkOptions,
        speaker_state: Callable[[str], Any] | None = None,
    ) -> None:
        """Connect (one-line error if the broker cannot be reached, unless ``offline_start``).

        ``speaker_state(speaker_id)`` returns the speaker's current
        :class:`edge_app.states.SpeakerState` (published retained after each utterance).
        """
        self.options = options
        self._speaker_state = speaker_state
        self._base = f"{options.broker.url.prefix}/{options.device_id}"
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Msg] = deque()
        self._queued = {"u": 0, "t": 0}  # utterances / turns queued (each bounded by buffer)
        self._queued_latest: dict[tuple, _Msg] = {}  # queued speaker states/status, by key
        self._inflight: dict[int, _Msg] = {}
        # The message the pump took off the queue and is handing to paho (0 or 1): neither queued
        # nor in flight for a moment, but not delivered either (drain and stats must count it).
        self._handing = 0
        self._early_acks: set[int] = set()
        self._closing = False
        self._closed = False
        self._connected = False
        self._n_other = 0
        self._last_drain_ok: bool | None = None  # a drain that timed out: close waits 1 s only
        self._finished = False  # the summary (and status "finished") was queued
        self.count = 0  # messages queued (utterances, turns, speaker states, status)
        self.delivered = 0  # messages the broker acknowledged
        self.dropped_ids: list[int] = []  # utterances dropped from a full buffer (oldest first)
        self.dropped_turns = 0  # turn records dropped from a full buffer
        self.superseded = 0  # queued speaker states replaced by a newer one (not a loss)
        self.disconnects = 0
        self.failed = 0  # messages paho refused (counted in dropped when an utterance)
        self.connects = 0
        self.ack_latency_s: deque[float] = deque(maxlen=10_000)  # write() -> PUBACK
        self._connected_ev = threading.Event()
        self._connack: list = []
        client_id = f"mlsan-{options.device_id}-{os.getpid()}"
        # Tells this run's retained messages from an earlier run's (a viewer drops speakers whose
        # ``run`` is not the device's current one).
        self.run_id = f"{int(time.time())}-{os.getpid()}"
        self.client = make_client(options.broker, client_id)
        self.client.max_inflight_messages_set(options.inflight)
        self.client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
        self.client.will_set(
            f"{self._base}/status",
            json.dumps(self._status("offline")),
            qos=1,
            retain=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        if options.offline_start:
            try:
                self.client.connect_async(options.broker.url.host, options.broker.url.port, 30)
            except (OSError, ValueError) as exc:
                raise connect_error(options.broker, exc) from None
            self.client.loop_start()
        else:
            connect_and_wait(self.client, options.broker, self._connected_ev, self._connack)
        self._pump_thread = threading.Thread(target=self._pump, name="mqtt-pump", daemon=True)
        self._pump_thread.start()
        self._enqueue(("x", "status"), "status", self._status("online"), True)

    def _status(self, state: str) -> dict[str, Any]:
        return {"type": "status", "state": state, "run": self.run_id}

    # -- paho callbacks (paho's network thread; never call paho from here) -------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack[:] = [reason_code]
        if not reason_code.is_failure:
            with self._lock:
                self._connected = True
                self.connects += 1
                self._wake.notify_all()
        self._connected_ev.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            if self._connected:
                self.disconnects += 1
            self._connected = False
            self._wake.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        now = time.monotonic()
        with self._lock:
            msg = self._inflight.pop(mid, None)
            if msg is None:
                self._early_acks.add(mid)  # acked before publish() returned its mid
                return
            self._acked(msg, now)

    def _acked(self, msg: _Msg, now: float) -> None:
        self.delivered += 1
        self.ack_latency_s.append(now - msg.t_in)
        self._wake.notify_all()

    # -- the pump: the only thread that hands messages to paho ------------------------------
    def _pump(self) -> None:
        while True:
            with self._lock:
                while not (
                    self._closed
                    or (
                        self._queue
                        and self._connected
                        and len(self._inflight) < self.options.inflight
                    )
                ):
                    self._wake.wait(0.5)
                if self._closed:
                    return
                msg = self._queue.popleft()
                self._handing = 1
                if msg.key[0] in self._queued:
                    self._queued[msg.key[0]] -= 1
                else:
                    self._queued_latest.pop(msg.key, None)
            try:
                info = self.client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
            except (ValueError, RuntimeError, OSError) as exc:  # never let the pump die
                with self._lock:
                    self._handing = 0
                    self._wake.notify_all()
                    self.failed += 1
                    self._count_dropped(msg)
                if self.failed == 1:
                    print(f"mlsan-live: warning: MQTT publish failed: {exc}", file=sys.stderr)
                continue
            now = time.monotonic()
            with self._lock:
                self._handing = 0
                self._wake.notify_all()
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                    self._acked(msg, now)
                else:
                    # Also when paho says "no connection": it keeps QoS 1 messages and sends
                    # them after it reconnects.
                    self._inflight[info.mid] = msg

    # -- the sink interface --------------------------------------------------------------------
    def write(self, record) -> None:
        """Queue one record (an utterance, a turn, or the summary); never blocks on the
        network."""
        from edge_app.events import EmotionEvent, TurnEvent

        if isinstance(record, EmotionEvent | TurnEvent):
            speaker = record.speaker
            record = record.to_record()
        else:
            speaker = None
        kind = record.get("type")
        if kind == "turn":
            self._enqueue(("t", record["turn_id"]), "turn", record, False)
        elif kind == "utterance":
            self._enqueue(("u", record["utterance_id"]), "utterance", record, False)
            state = (
                self._speaker_state(speaker or record["speaker"]) if self._speaker_state else None
            )
            if state is not None:
                rec = {**speaker_record(state), "run": self.run_id}
                self._enqueue(("s", state.speaker), f"speaker/{state.speaker}", rec, True)
        elif kind == "summary":  # the device's last word: its status first, then the summary
            self._finished = True
            status = self._status("finished")
            self._enqueue(("x", "status"), "status", status, True)
            self._enqueue(("x", "summary"), "summary", record, True)
        else:
            self._enqueue(("x", self._next_other()), str(kind or "record"), record, False)

    def _next_other(self) -> int:
        self._n_other += 1
        return self._n_other

    def _enqueue(self, key: tuple, sub: str, record: dict, retain: bool) -> None:
        payload = json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
        msg = _Msg(key, f"{self._base}/{sub}", payload, retain, time.monotonic())
        with self._lock:
            if self._closed:
                return
            self.count += 1
            if key[0] not in self._queued:
                queued = self._queued_latest.get(key)
                if queued is not None:  # a newer speaker state: the queued one is stale
                    queued.payload, queued.t_in = msg.payload, msg.t_in
                    self.superseded += 1
                    return
                self._queued_latest[key] = msg
            else:
                if self._queued[key[0]] >= self.options.buffer:
                    self._drop_oldest(key[0])
                self._queued[key[0]] += 1
            self._queue.append(msg)
            self._wake.notify_all()

    def _drop_oldest(self, kind: str) -> None:
        """Drop the oldest queued record of ``kind`` ("u" or "t"; call with the lock held)."""
        for i, queued in enumerate(self._queue):
            if queued.key[0] == kind:
                del self._queue[i]
                self._queued[kind] -= 1
                self._count_dropped(queued)
                return

    def _count_dropped(self, msg: _Msg) -> None:
        if msg.key[0] == "u":
            self.dropped_ids.append(int(msg.key[1]))
        elif msg.key[0] == "t":
            self.dropped_turns += 1

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def _unsent(self) -> int:
        """Queued, being handed to paho, or in flight (call with the lock held)."""
        return len(self._queue) + self._handing + len(self._inflight)

    def pending(self) -> int:
        with self._lock:
            return self._unsent()

    def drain(self, timeout_s: float) -> bool:
        """Wait (bounded) until everything queued so far is acknowledged; True if it was."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            while self._unsent():
                left = deadline - time.monotonic()
                if left <= 0:
                    self._last_drain_ok = False
                    return False
                self._wake.wait(min(left, 0.25))
        self._last_drain_ok = True
        return True

    def stats(self) -> dict[str, Any]:
        """What the summary reports (``mqtt``): exact counts of what reached the broker.

        ``messages == delivered + pending + dropped + dropped_turns + superseded_speaker_states``
        (messages: utterances, turns, speaker states and status queued so far; delivered:
        acknowledged by the broker, PUBACK; dropped: utterances evicted from a full buffer, ids
        in ``dropped_ids``; dropped_turns: turn records evicted from theirs).
        """
        with self._lock:
            return {
                "broker": str(self.options.broker.url),
                "device": self.options.device_id,
                "messages": self.count,  # queued: utterances, turns, speaker states, status
                "delivered": self.delivered,
                "pending": self._unsent(),
                "dropped": len(self.dropped_ids),
                "dropped_ids": list(self.dropped_ids[:1000]),
                "dropped_turns": self.dropped_turns,
                "superseded_speaker_states": self.superseded,
                "failed": self.failed,
                "disconnects": self.disconnects,
                "buffer": self.options.buffer,
            }

    def close(self) -> None:
        """Say "finished", wait up to ``drain_s`` for the buffer to reach the broker, disconnect.

        What could not be delivered by then is lost; one warning line on stderr says how much.
        """
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True
        if not self._finished:
            status = self._status("finished")
            self._enqueue(("x", "status"), "status", status, True)
        # The broker was already away for a whole drain (the pipeline's, before the summary):
        # do not make the user wait that long twice.
        drained = self.drain(self.options.drain_s if self._last_drain_ok is not False else 1.0)
        with self._lock:
            self._closed = True
            lost = self._unsent()
            self._wake.notify_all()
        self._pump_thread.join(2.0)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        if not drained or self.dropped_ids or self.dropped_turns:
            print(
                f"mlsan-live: warning: MQTT: {len(self.dropped_ids)} utterance(s) and "
                f"{self.dropped_turns} turn(s) dropped while the broker was away, {lost} "
                "message(s) not delivered at the end "
                f"({self.options.broker.url})",
                file=sys.stderr,
                flush=True,
            )

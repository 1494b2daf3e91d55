"""The MQTT event sink and ``mlsan-live watch`` against a real Mosquitto on 127.0.0.1 (no
pipeline: records are EmotionEvents built here), plus the one-line errors of the CLI.

Every broker is started by the test on a free loopback port with a temp config and stopped at
the end; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mqtt_broker import Mosquitto, free_port

from edge_app.events import EmotionEvent, EventWriter, TurnEvent
from edge_app.mqtt_sink import (
    BrokerOptions,
    MqttError,
    MqttSink,
    MqttSinkOptions,
    MqttUrl,
    check_device_id,
    make_client,
    speaker_record,
    speaker_state_from_record,
)
from edge_app.states import SpeakerStates

REPO = Path(__file__).resolve().parent.parent
needs_mosquitto = pytest.mark.skipif(
    Mosquitto(Path(".")).exe is None, reason="mosquitto not installed (apt-get install mosquitto)"
)
CLI = [sys.executable, "-m", "edge_app.cli"]
LABELS = ("neutral", "joy", "sadness")


@pytest.fixture()
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker")
    try:
        b.start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield b
    b.stop()


def _event(i: int, speaker: str = "spk1") -> EmotionEvent:
    return EmotionEvent(
        utterance_id=i, t_start=float(i), t_end=i + 0.8, speaker=speaker, speaker_name=None,
        text=f"utterance {i}", emotion="joy", confidence=0.6,
        probs=(("neutral", 0.3), ("joy", 0.6), ("sadness", 0.1)), state="joy",
        state_confidence=0.55, trust=(("words", 0.7), ("voice", 0.3), ("face", 0.0)),
        masked=("face",), face_track=None, binding_confidence=0.0, context=min(i + 1, 16),
        latency_s=0.25,
    )  # fmt: skip


def _turn(i: int, speaker: str = "spk1") -> TurnEvent:
    return TurnEvent(
        turn_id=i, segment_id=i, t_start=float(i), t_end=i + 0.9, speaker=speaker,
        speaker_name=None, overlap=i % 3 == 2, new_speaker=i == 0, similarity=0.5,
        latency_s=0.2,
    )  # fmt: skip


def _sink(broker: Mosquitto, device: str, **kw) -> tuple[MqttSink, SpeakerStates]:
    states = SpeakerStates()
    opts = MqttSinkOptions(
        BrokerOptions(MqttUrl.parse(f"{broker.url}/t")), device, reconnect_max_s=2, **kw
    )
    return MqttSink(opts, speaker_state=states.get), states


def _write(sink: MqttSink, states: SpeakerStates, ev: EmotionEvent) -> None:
    states.update(ev.speaker, ev.t_end, [0.3, 0.6, 0.1], LABELS, text=ev.text)
    sink.write(ev)


class Collector:
    """A plain paho subscriber (persistent session, so it survives a broker restart)."""

    def __init__(self, broker: Mosquitto, topic: str, client_id: str = "collector") -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        opts = BrokerOptions(MqttUrl.parse(f"{broker.url}/t"))
        self.client = make_client(opts, client_id, clean=False)
        self.client.reconnect_delay_set(1, 2)
        self.ready = threading.Event()

        def on_connect(client, userdata, flags, rc, props):
            client.subscribe(topic, qos=1)

        def on_subscribe(client, userdata, mid, rcs, props):
            self.ready.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def wait_for(self, pred, timeout_s: float = 10.0) -> list:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                msgs = list(self.messages)
            if pred(msgs):
                return msgs
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- URL, device id -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/x", "scheme"),
        ("mqtt://127.0.0.1", "topic prefix"),
        ("mqtt://127.0.0.1/a/#", "topic prefix"),
        ("mqtt://127.0.0.1/a//b", "topic prefix"),
        ("mqtt://user:secret@127.0.0.1/a", "credentials in the URL"),
        ("mqtt://127.0.0.1:99999/a", "not a broker URL"),
        ("mqtt:///a", "no broker host"),
    ],
)
def test_bad_urls_are_one_line_errors(url, why):
    with pytest.raises(MqttError) as info:
        MqttUrl.parse(url)
    assert why in str(info.value) and "fix:" in str(info.value) and "\n" not in str(info.value)
    assert "secret" not in str(info.value)


def test_url_defaults():
    assert MqttUrl.parse("mqtt://broker.lan/lab/a") == MqttUrl("broker.lan", 1883, "lab/a", False)
    assert MqttUrl.parse("mqtts://b:8884/x/") == MqttUrl("b", 8884, "x", True)
    assert MqttUrl.parse("mqtts://b/x").port == 8883
    assert check_device_id("room-1.a_b") == "room-1.a_b"
    for bad in ("", "a/b", "a+", "#", "x" * 65):
        with pytest.raises(MqttError):
            check_device_id(bad)


def test_speaker_record_round_trips():
    states = SpeakerStates()
    states.update("spk1", 1.0, [0.2, 0.7, 0.1], LABELS, text="hi", name="Alice")
    state = states.update("spk1", 3.0, [0.6, 0.3, 0.1], LABELS, text="oh", name="Alice")
    back = speaker_state_from_record(json.loads(json.dumps(speaker_record(state))))
    assert back.speaker == "spk1" and back.name == "Alice" and back.label == state.label
    assert back.labels == LABELS and back.n_utterances == 2 and back.last_text == "oh"
    assert [p.raw_label for p in back.history] == ["joy", "neutral"]
    assert back.probs == pytest.approx(state.probs, abs=1e-4)


# -- the sink against a real broker ---------------------------------------------------------------
def test_records_topics_and_retained_speaker_state(broker, tmp_path):
    col = Collector(broker, "t/#")
    sink, states = _sink(broker, "roomA")
    file_sink = EventWriter(str(tmp_path / "e.jsonl"))
    for i in range(3):
        turn = _turn(i, "spk1" if i != 1 else "spk2")
        sink.write(turn)
        file_sink.write(turn)
        ev = _event(i, "spk1" if i != 1 else "spk2")
        _write(sink, states, ev)
        file_sink.write(ev)
    assert sink.drain(5)
    sink.write({"type": "summary", "utterances": 3})
    sink.close()
    file_sink.close()
    msgs = col.wait_for(lambda m: any(t.endswith("/summary") for t, _, _ in m))
    col.close()
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    # Byte for byte what the file sink writes, each record type on its own topic.
    for kind in ("utterance", "turn"):
        got = [r for t, r, _ in msgs if t == f"t/roomA/{kind}"]
        assert got == [r for r in lines if r["type"] == kind] and len(got) == 3
    speakers = {t: r for t, r, _ in msgs if "/speaker/" in t}
    assert set(speakers) == {"t/roomA/speaker/spk1", "t/roomA/speaker/spk2"}
    assert speakers["t/roomA/speaker/spk1"]["n_utterances"] == 2
    status = [r["state"] for t, r, _ in msgs if t == "t/roomA/status"]
    assert status == ["online", "finished"]
    assert sink.stats()["dropped"] == 0 and sink.stats()["pending"] == 0

    # A viewer that comes later still gets each speaker's state and the summary (retained).
    late = Collector(broker, "t/roomA/#", client_id="late")
    got = late.wait_for(lambda m: len(m) >= 4)
    late.close()
    retained = {t for t, _, r in got if r}
    assert retained == {
        "t/roomA/speaker/spk1", "t/roomA/speaker/spk2", "t/roomA/summary", "t/roomA/status",
    }  # fmt: skip


def test_broker_away_buffer_drops_oldest_and_counts_exactly(broker):
    """Broker stopped: write() never blocks; a full buffer drops the oldest utterances, whose ids
    the stats list; everything written after the broker is back arrives."""
    col = Collector(broker, "t/roomB/utterance")
    sink, states = _sink(broker, "roomB", buffer=5)
    _write(sink, states, _event(0))
    assert sink.drain(5)
    broker.stop()
    deadline = time.monotonic() + 5
    while sink.stats()["disconnects"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.stats()["disconnects"] == 1
    t0 = time.monotonic()
    for i in range(1, 13):  # 12 utterances and 12 turns while away, buffer 5 (each)
        sink.write(_turn(i))
        _write(sink, states, _event(i))
    assert time.monotonic() - t0 < 0.5  # never waits for the network
    # The turns have a bound of their own: they never push an utterance out.
    assert sink.stats()["dropped_ids"] == [1, 2, 3, 4, 5, 6, 7]
    assert sink.stats()["dropped_turns"] == 7
    broker.start()
    deadline = time.monotonic() + 10  # paho reconnects with backoff (1-2 s here)
    while not sink.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.connected
    for i in range(13, 16):  # after it came back
        _write(sink, states, _event(i))
    assert sink.drain(15), sink.stats()
    stats = sink.stats()
    sink.close()
    got = col.wait_for(lambda m: {r["utterance_id"] for _, r, _ in m} >= set(range(8, 16)), 10)
    col.close()
    ids = {r["utterance_id"] for _, r, _ in got}
    assert ids == {0, *range(8, 16)}  # all but exactly the dropped ones
    assert stats["dropped"] == 7 and stats["pending"] == 0
    assert stats["messages"] == (
        stats["delivered"] + stats["dropped"] + stats["dropped_turns"]
        + stats["superseded_speaker_states"]
    )  # fmt: skip
    assert stats["superseded_speaker_states"] > 0  # spk1's state queued while away: newest kept


@needs_mosquitto
def test_offline_start_buffers_until_the_broker_appears(tmp_path):
    b = Mosquitto(tmp_path / "late-broker")
    sink, states = _sink(b, "roomC", offline_start=True)  # nothing listens yet
    try:
        for i in range(3):
            _write(sink, states, _event(i))
        assert not sink.drain(0.5)
        b.start()
        col = Collector(b, "t/roomC/utterance")
        assert sink.drain(15), sink.stats()
        sink.close()
        got = col.wait_for(lambda m: len(m) >= 3)
        col.close()
        assert sorted(r["utterance_id"] for _, r, _ in got) == [0, 1, 2]
    finally:
        b.stop()


@needs_mosquitto
def test_username_and_password_from_the_environment(tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "edge", "s3cret"], check=True, timeout=10)
    b = Mosquitto(tmp_path / "auth", extra_conf=f"allow_anonymous false\npassword_file {pw}")
    b = b.start()
    try:
        env = {**os.environ, "MLSAN_MQTT_USERNAME": "edge", "MLSAN_MQTT_PASSWORD": "wrong"}
        proc = subprocess.run(
            [*CLI, "watch", f"{b.url}/t", "--json", "--duration", "1"],
            capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
        )  # fmt: skip
        assert proc.returncode == 2 and "wrong" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and "refused the connection" in proc.stderr
        assert "--mqtt-username" in proc.stderr
        env["MLSAN_MQTT_PASSWORD"] = "s3cret"
        proc = subprocess.run(
            [*CLI, "watch", f"{b.url}/t", "--json", "--duration", "1"],
            capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    finally:
        b.stop()


# -- CLI one-line errors (before any model loads) -------------------------------------------------
def _live(*extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    wav = REPO / "tests" / "fixtures"
    src = next(iter(sorted(wav.glob("*.wav"))), None) if wav.is_dir() else None
    audio = str(src) if src else __file__  # a file exists either way: the URL fails first
    return subprocess.run(
        [*CLI, "--audio", audio, "--headless", "--no-gallery", *extra],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


def test_live_refused_connection_is_one_line_and_fast():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    proc = _live("--events", f"mqtt://127.0.0.1:{port}/t")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("mlsan-live: error: cannot reach the MQTT broker")
    assert "connection refused" in proc.stderr and "--mqtt-offline-start" in proc.stderr
    assert time.monotonic() - t0 < 30  # before the models load


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--events", "mqtt://127.0.0.1"], "topic prefix"),
        (["--events", "mqtt://127.0.0.1/t", "--device-id", "a/b"], "--device-id"),
        (["--events", "mqtt://127.0.0.1/t", "--events", "mqtt://127.0.0.1/u"], "at most one"),
        (["--events", "mqtt://127.0.0.1/t", "--mqtt-buffer", "0"], "--mqtt-buffer"),
    ],
)
def test_live_bad_mqtt_flags_are_one_line(flags, needle):
    proc = _live(*flags)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_watch_refused_and_bad_url_are_one_line():
    for url, needle in (
        (f"mqtt://127.0.0.1:{free_port()}/t", "connection refused"),
        ("mqtt://127.0.0.1:1883", "topic prefix"),
    ):
        proc = subprocess.run(
            [*CLI, "watch", url, "--json", "--duration", "2"],
            capture_output=True, text=True, timeout=30, cwd=REPO,
        )  # fmt: skip
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert proc.stderr.strip().count("\n") == 0


def test_watch_shows_devices_and_speakers(broker):
    """The rich view (not --json) draws both devices and their speakers' panels."""
    for dev, spk in (("room1", ("spk1", "spk2")), ("room2", ("spk1",))):
        sink, states = _sink(broker, dev)
        for i, s in enumerate(spk):
            _write(sink, states, _event(i, s))
        sink.close()
    proc = subprocess.run(
        [*CLI, "watch", f"{broker.url}/t", "--duration", "2"],
        capture_output=True, text=True, timeout=30, cwd=REPO,
        env={**os.environ, "COLUMNS": "160", "TERM": "dumb"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "room1" in out and "room2" in out and "2 device(s)" in out
    assert out.count("spk2") >= 1 and "JOY" in out and "finished" in out


def test_watch_forgets_speakers_of_an_earlier_run():
    from edge_app.commands.watch import WatchState

    w = WatchState("t")
    rec = speaker_record(SpeakerStates().update("spk3", 1.0, [1, 0, 0], LABELS))

    def msg(topic, payload, retained):
        return w.apply(f"t/room1/{topic}", json.dumps(payload).encode(), retained)

    # Retained messages of an old run arrive first, in any order.
    msg("speaker/spk3", {**rec, "run": "old"}, True)
    msg("status", {"type": "status", "state": "online", "run": "new"}, True)
    assert "spk3" not in w.devices["room1"].speakers
    msg("speaker/spk9", {**rec, "speaker": "spk9", "run": "old"}, True)  # after: ignored
    msg("speaker/spk1", {**rec, "speaker": "spk1", "run": "new"}, False)
    assert list(w.devices["room1"].speakers) == ["spk1"]
    assert msg("utterance", "not an object", False) is None and w.bad == 1


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@needs_mosquitto
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_tls_with_a_private_ca(tmp_path):
    """mqtts:// to a broker whose certificate a test CA signed: --mqtt-cafile verifies it; without
    the CA the connection fails with one line."""
    d = tmp_path
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt",
             cwd=d)  # fmt: skip
    port = free_port()
    tls = f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
    b = Mosquitto(d / "tls", port=port, extra_conf=tls).start()
    try:
        url = f"mqtts://127.0.0.1:{port}/t"
        ok = subprocess.run(
            [*CLI, "watch", url, "--json", "--duration", "1", "--mqtt-cafile", str(d / "ca.crt")],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        bad = subprocess.run(
            [*CLI, "watch", url, "--json", "--duration", "1"],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert bad.returncode == 2 and "TLS failed" in bad.stderr, bad.stderr
        assert bad.stderr.strip().count("\n") == 0
    finally:
        b.stop()


def test_a_message_being_handed_to_paho_still_counts_as_pending(broker):
    """The pump takes a message off the queue before paho gives it a message id: in that moment
    it is neither queued nor in flight. Drain and the summary must still count it (a drain that
    returned then made the summary's counts miss one message)."""
    sink, states = _sink(broker, "dev-hand")
    real_publish = sink.client.publish
    entered, release = threading.Event(), threading.Event()

    def slow_publish(*args, **kwargs):
        entered.set()
        release.wait(5)
        return real_publish(*args, **kwargs)

    sink.client.publish = slow_publish
    try:
        _write(sink, states, _event(0))
        assert entered.wait(5)
        assert sink.pending() >= 1
        assert sink.drain(0.3) is False  # not delivered yet: drain must not say it was
        stats = sink.stats()
        assert (
            stats["delivered"] + stats["pending"] + stats["superseded_speaker_states"]
            == (stats["messages"])
        )
    finally:
        release.set()
        sink.client.publish = real_publish
    assert sink.drain(5) is True
    stats = sink.stats()
    assert stats["pending"] == 0
    assert stats["delivered"] + stats["superseded_speaker_states"] == stats["messages"]
    sink.close()

"""Publishing overhead: the MQTT sink vs the JSON Lines file sink, in the same run.

Both sinks get the same utterance records (the pipeline's EmotionEvent, with a speaker state
behind each, as in a live run). Measured:

* ``write_us``: time inside ``write()`` per utterance, i.e. what the emotion stage pays per
  utterance (the sinks are called on its thread): the latency each sink adds to an utterance;
* ``burst``: N utterances written back to back, until all are acknowledged by the broker (QoS 1
  PUBACK) or flushed to the file: utterances and MQTT messages per second sustained;
* ``paced``: utterances at a steady rate (default 20/s, far above a conversation's ~0.5/s):
  write -> PUBACK and write -> a subscriber on the same broker receives it, p50/p95.

Against a local Mosquitto (``apt-get install mosquitto``; started here on a free 127.0.0.1 port).
Prints one JSON object.

    python bench/bench_events.py [--n 5000] [--rate 20] [--paced-s 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from mqtt_broker import Mosquitto  # noqa: E402

from edge_app.events import EmotionEvent, EventWriter  # noqa: E402
from edge_app.mqtt_sink import (  # noqa: E402
    BrokerOptions,
    MqttSink,
    MqttSinkOptions,
    MqttUrl,
    make_client,
)
from edge_app.states import SpeakerStates  # noqa: E402

LABELS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")


def _event(i: int, rng: np.random.Generator) -> tuple[EmotionEvent, np.ndarray]:
    p = rng.dirichlet(np.ones(len(LABELS)))
    best = int(np.argmax(p))
    ev = EmotionEvent(
        utterance_id=i, t_start=2.0 * i, t_end=2.0 * i + 1.5, speaker=f"spk{1 + i % 3}",
        speaker_name=None, text="so I told her we would meet again on friday at the station",
        emotion=LABELS[best], confidence=float(p[best]),
        probs=tuple((lab, float(x)) for lab, x in zip(LABELS, p, strict=True)),
        state=LABELS[best], state_confidence=float(p[best]),
        trust=(("words", 0.6), ("voice", 0.3), ("face", 0.1)), masked=(), face_track=2,
        binding_confidence=0.8, context=16, latency_s=0.4,
    )  # fmt: skip
    return ev, p


def _pct(xs, q) -> float | None:
    return None if not len(xs) else round(float(np.percentile(np.asarray(xs), q)), 2)


class Receiver:
    """A subscriber on the same broker: when each utterance arrived (monotonic)."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.arrived: dict[int, float] = {}
        ready = threading.Event()
        self.client = make_client(BrokerOptions(MqttUrl.parse(f"{broker.url}/b")), "bench-rx")
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()

        def on_message(client, userdata, msg):
            uid = json.loads(msg.payload)["utterance_id"]
            self.arrived.setdefault(uid, time.monotonic())

        self.client.on_message = on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not ready.wait(5):
            raise TimeoutError("subscriber did not subscribe")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_sinks(broker: Mosquitto, tmp: Path, n: int, rate: float, paced_s: float) -> dict:
    rng = np.random.default_rng(0)
    events = [_event(i, rng) for i in range(n)]
    out: dict = {}

    # File sink: write() = serialise + write + flush (line-buffered file).
    fw = EventWriter(str(tmp / "events.jsonl"))
    costs = []
    t0 = time.perf_counter()
    for ev, _ in events:
        a = time.perf_counter()
        fw.write(ev)
        costs.append((time.perf_counter() - a) * 1e6)
    wall = time.perf_counter() - t0
    fw.close()
    out["file"] = {
        "write_us_p50": _pct(costs, 50), "write_us_p95": _pct(costs, 95),
        "utterances_per_s": round(n / wall),
    }  # fmt: skip

    # MQTT sink, burst: the pipeline pays write(); the broker's PUBACKs say when it is done.
    states = SpeakerStates()
    url = MqttUrl.parse(f"{broker.url}/b")
    sink = MqttSink(
        MqttSinkOptions(BrokerOptions(url), "bench", buffer=n + 10), speaker_state=states.get
    )
    sink.drain(5)
    base = sink.delivered
    costs = []
    t0 = time.perf_counter()
    for ev, p in events:
        states.update(ev.speaker, ev.t_end, p, LABELS, text=ev.text)
        a = time.perf_counter()
        sink.write(ev)
        costs.append((time.perf_counter() - a) * 1e6)
    enqueued = time.perf_counter() - t0
    ok = sink.drain(120)
    wall = time.perf_counter() - t0
    stats = sink.stats()
    out["mqtt_burst"] = {
        "write_us_p50": _pct(costs, 50), "write_us_p95": _pct(costs, 95),
        "all_acknowledged": ok, "enqueue_s": round(enqueued, 3), "until_acked_s": round(wall, 3),
        "utterances_per_s": round(n / wall),
        "messages_per_s": round((sink.delivered - base) / wall),
        "messages_acked": sink.delivered - base, "superseded_speaker_states":
        stats["superseded_speaker_states"], "dropped": stats["dropped"],
    }  # fmt: skip
    sink.close()

    # MQTT sink, utterances only (no speaker states): what the pump and broker sustain.
    sink = MqttSink(MqttSinkOptions(BrokerOptions(url), "bench-u", buffer=n + 10))
    sink.drain(5)
    base = sink.delivered
    t0 = time.perf_counter()
    for ev, _ in events:
        sink.write(ev)
    ok = sink.drain(120)
    wall = time.perf_counter() - t0
    out["mqtt_burst_utterances_only"] = {
        "all_acknowledged": ok, "until_acked_s": round(wall, 3),
        "messages_per_s": round((sink.delivered - base) / wall),
    }  # fmt: skip
    sink.close()

    # MQTT sink, paced: end to end on the broker.
    rx = Receiver(broker, "b/paced/utterance")
    states = SpeakerStates()
    sink = MqttSink(MqttSinkOptions(BrokerOptions(url), "paced"), speaker_state=states.get)
    sink.drain(5)
    sink.ack_latency_s.clear()
    m = max(1, int(rate * paced_s))
    written: dict[int, float] = {}
    costs = []
    period = 1.0 / rate
    start = time.monotonic()
    for k, (ev, p) in enumerate(events[:m]):
        while time.monotonic() < start + k * period:
            time.sleep(min(0.002, period))
        states.update(ev.speaker, ev.t_end, p, LABELS, text=ev.text)
        a = time.perf_counter()
        written[ev.utterance_id] = time.monotonic()
        sink.write(ev)
        costs.append((time.perf_counter() - a) * 1e6)
    sink.drain(30)
    deadline = time.monotonic() + 10
    while len(rx.arrived) < m and time.monotonic() < deadline:
        time.sleep(0.01)
    e2e = [(rx.arrived[i] - t) * 1e3 for i, t in written.items() if i in rx.arrived]
    acks = [x * 1e3 for x in sink.ack_latency_s]
    out["mqtt_paced"] = {
        "rate_per_s": rate, "utterances": m, "received": len(e2e),
        "write_us_p50": _pct(costs, 50), "write_us_p95": _pct(costs, 95),
        "to_puback_ms_p50": _pct(acks, 50), "to_puback_ms_p95": _pct(acks, 95),
        "to_subscriber_ms_p50": _pct(e2e, 50), "to_subscriber_ms_p95": _pct(e2e, 95),
    }  # fmt: skip
    sink.close()
    rx.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="utterances in the burst")
    ap.add_argument("--rate", type=float, default=20.0, help="paced utterances per second")
    ap.add_argument("--paced-s", type=float, default=10.0, help="paced run length")
    args = ap.parse_args()
    import paho.mqtt

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        try:
            results = run_sinks(broker, Path(tmp), args.n, args.rate, args.paced_s)
        finally:
            broker.stop()
    record = {
        "bench": "events",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "paho_mqtt": paho.mqtt.__version__,
            "broker": "mosquitto on 127.0.0.1 (this machine)",
        },
        "n": args.n,
        **results,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()

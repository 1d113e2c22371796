"""Kafka throughput: the raw kafka-python consumer (the ceiling) vs the daemon end to end.

In one run, against one broker and one topic of supervised events (SEA concept
stream, ``{"id", "x", "y"}``, ~80 bytes each):

* **raw** — a ``KafkaConsumer`` in a consumer group polling batches and
  decoding every value with orjson (the parser the engine uses): what any
  Python consumer pays at the least;
* **daemon** — :class:`streamlearn.engine.daemon.Daemon` (``--client``: kafka-python by
  default, like the raw consumer; or confluent-kafka) end to end: poll,
  decode, validate, test-then-train a cheap learner (river ``Perceptron``),
  update the Accuracy metric, checkpoint every 10,000 events (flush, Parquet,
  commit), dead-letter sink ready;
* **daemon + outputs** — the same, also publishing one prediction per event to
  an output topic (producer acks=all);
* **daemon, no-op learner** — the engine's own overhead (a learner that only counts labels).

Runs are interleaved and repeated (fresh consumer group and checkpoint
directory each time); the rate of a run is events / seconds from its first
processed batch to its last event (group joins excluded). The JSON reports
every run, the medians and ``ratio`` = median daemon / median raw (target ≥ 0.8).

    flock /tmp/streamlearn-bench.lock python benchmarks/kafka_throughput.py
    python benchmarks/kafka_throughput.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamlearn.demo import demo_events  # noqa: E402
from streamlearn.engine.broker import LocalBroker  # noqa: E402
from streamlearn.engine.config import parse_config  # noqa: E402
from streamlearn.engine.daemon import Daemon  # noqa: E402
from streamlearn.logs import configure_logging  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class LabelCounter:
    """The cheapest learner that still learns: predicts the most frequent label so far."""

    is_classifier = True

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def learn_one(self, x: dict, y: object) -> None:
        key = str(y)
        self.counts[key] = self.counts.get(key, 0) + 1

    def predict_one(self, x: dict) -> object:
        return max(self.counts, key=self.counts.get) == "True" if self.counts else None

    def state_dict(self) -> dict:
        return {f"count/{k}": v for k, v in self.counts.items()}

    def load_state_dict(self, state: dict) -> None:
        self.counts = {k.removeprefix("count/"): int(v) for k, v in state.items()}


def crc32c_implementation() -> str:
    from kafka.record import util

    return "C extension (crc32c package)" if util.crc32c_c is not None else "pure Python"


def produce(bootstrap: str, topic: str, n: int) -> None:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 18, acks=1)
    for event in demo_events(n):
        producer.send(topic, orjson.dumps(event))
    producer.flush()
    producer.close()


def consumer_settings(bootstrap: str) -> dict:
    return {"bootstrap_servers": bootstrap, "session_timeout_ms": 2000, "heartbeat_interval_ms": 600, "max_poll_records": 500}


def raw_run(bootstrap: str, topic: str, n: int) -> float:
    """events/s of a consumer-group member polling and JSON-decoding every value."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, group_id=f"raw-{uuid.uuid4().hex[:8]}", enable_auto_commit=False, auto_offset_reset="earliest", **consumer_settings(bootstrap)
    )
    loads = orjson.loads
    seen, first, started = 0, 0, None
    while seen < n:
        for records in consumer.poll(timeout_ms=500, max_records=500).values():
            for record in records:
                loads(record.value)
            seen += len(records)
        if started is None and seen:
            started, first = time.perf_counter(), seen
    elapsed = time.perf_counter() - started
    consumer.close(autocommit=False)
    return (n - first) / elapsed


def daemon_run(bootstrap: str, topic: str, n: int, workdir: Path, learner: dict, outputs: bool, client: str) -> float:
    """events/s of the daemon from its first processed batch to its last event."""
    directory = workdir / uuid.uuid4().hex[:8]
    table = {
        "learner": learner,
        "eval": {"metrics": ["Accuracy"]},
        "checkpoint": {"dir": str(directory), "every_events": 10_000, "every_seconds": 60.0},
        "kafka": {
            "bootstrap_servers": bootstrap,
            "client": client,
            "topic": topic,
            "group_id": f"daemon-{uuid.uuid4().hex[:8]}",
            "output_topic": f"{topic}.out" if outputs else "",
            "session_timeout_ms": 2000,
        },
    }
    daemon = Daemon(parse_config(table))
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,))
    thread.start()
    seen, first, started = 0, 0, None
    while seen < n:
        lane = daemon.lanes.get("global")
        seen = lane.engine.stats.records if lane is not None else 0
        if started is None and seen:
            started, first = time.perf_counter(), seen
        time.sleep(0.01)  # coarse: a busy watcher would steal the daemon's GIL
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    shutil.rmtree(directory, ignore_errors=True)
    return (n - first) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k events, one repeat")
    parser.add_argument("--events", type=int, help="events in the topic (default 200,000; quick 20,000)")
    parser.add_argument("--repeats", type=int, help="rounds of interleaved runs (default 3; quick 1)")
    parser.add_argument("--bootstrap", help="use this broker instead of the bundled Tansu")
    parser.add_argument(
        "--client", default="kafka-python", choices=["kafka-python", "confluent-kafka"], help="the daemon's Kafka client (raw is always kafka-python)"
    )
    parser.add_argument("--out", default=str(RESULTS / "kafka_throughput.json"))
    args = parser.parse_args()
    n = args.events or (20_000 if args.quick else 200_000)
    repeats = args.repeats or (1 if args.quick else 3)
    configure_logging("error", json_logs=True)

    perceptron = {"name": "river", "params": {"model": "linear_model.Perceptron"}}
    noop = {"name": f"{__name__}:LabelCounter", "processor": "supervised"}
    variants = {
        "daemon": (perceptron, False),
        "daemon_with_outputs": (perceptron, True),
        "daemon_noop_learner": (noop, False),
    }
    broker = None if args.bootstrap else LocalBroker().start()
    bootstrap = args.bootstrap or broker.bootstrap
    runs: dict[str, list[float]] = {"raw": [], **{k: [] for k in variants}}
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        produce(bootstrap, topic, n)
        produce_seconds = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(repeats):
                runs["raw"].append(raw_run(bootstrap, topic, n))
                for name, (learner, outputs) in variants.items():
                    runs[name].append(daemon_run(bootstrap, topic, n, Path(tmp), learner, outputs, args.client))
                print(f"round {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in runs.items()), flush=True)
    finally:
        if broker is not None:
            broker.stop()

    medians = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "benchmark": "kafka_throughput",
        "events": n,
        "repeats": repeats,
        "broker": "bundled Tansu (in-memory), loopback" if broker else args.bootstrap,
        "daemon_client": args.client,
        "kafka_python": __import__("kafka").__version__,
        # kafka-python checks each fetched batch's CRC-32C (and computes it for produced
        # batches) in pure Python unless the optional `crc32c` C extension is installed.
        "crc32c": crc32c_implementation(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "produce_events_per_second": n / produce_seconds,
        "events_per_second": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "median_events_per_second": {k: round(v, 1) for k, v in medians.items()},
        "ratio": round(medians["daemon"] / medians["raw"], 3),
        "ratio_with_outputs": round(medians["daemon_with_outputs"] / medians["raw"], 3),
        "ratio_noop_learner": round(medians["daemon_noop_learner"] / medians["raw"], 3),
        "target_ratio": 0.8,
        "notes": (
            "raw = KafkaConsumer.poll + orjson.loads per value; daemon = river Perceptron, Accuracy, "
            "checkpoint every 10k events; rates exclude the group join"
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_events_per_second", "ratio", "ratio_with_outputs", "ratio_noop_learner")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

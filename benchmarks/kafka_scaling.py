"""Scaling out: 1, 2 and 4 daemon processes in one consumer group on an 8-partition topic.

The issue-16 workload (``benchmarks/kafka_peers.py``: JSON ``{"id", "x": 8 floats,
"y"}``, river ``StandardScaler | LogisticRegression`` test-then-train, Accuracy) with
``scope = "partition"``: one learner per partition, checkpointed every 10,000 of its
events (and when it is handed over) in one shared checkpoint store (a local directory
here; ``s3://...`` in production), no output topic. Measured, on the bundled broker:

* **throughput**: k daemon processes (confluent-kafka client) start together in a
  fresh group over N pre-produced events; the rate is the group's events/s between
  10 % and 90 % of N (start-up, the first join and the tail excluded);
* **hand-over**: on a live stream (4,000 events/s), one daemon owns all 8 partitions; a second one starts
  (join: seconds from its start to its first processed event, and the longest
  pause of the first daemon during the rebalance), later it is stopped with SIGTERM
  (leave: seconds until the first daemon processes again on every partition the
  second one held);
* **checkpoints**: files, bytes per checkpoint and per partition in the store.

Each daemon is its own process (``--worker``) printing its progress every 50 ms.
The machine has 2 cores shared with other jobs: k > 2 processes cannot run faster
than 2 cores allow, so this measures the hand-over cost and the per-process
overhead, not the scaling ceiling of a cluster (see docs/scaling.md).

    flock /tmp/bench.lock .venv/bin/python benchmarks/kafka_scaling.py [--events N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_peers import create_topic, produce  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARTITIONS = 8
CHECKPOINT_EVERY = 10_000


# --------------------------------------------------------------------------- worker


def worker(args) -> None:
    from streamlearn.engine.config import parse_config
    from streamlearn.engine.daemon import Daemon
    from streamlearn.logs import configure_logging

    configure_logging("error", json_logs=True)
    table = {
        "learner": {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}},
        "eval": {"metrics": ["Accuracy"], "window": 0},
        "checkpoint": {"dir": args.store, "every_events": CHECKPOINT_EVERY, "every_seconds": 600.0},
        "kafka": {
            "bootstrap_servers": args.bootstrap,
            "client": "confluent-kafka",
            "topic": args.topic,
            "group_id": args.group,
            "scope": "partition",
            "dead_letter_topic": f"{args.topic}.dlq",
            "session_timeout_ms": 2000,
        },
    }
    daemon = Daemon(parse_config(table, env={}))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=daemon.run, args=(stop,))
    print(json.dumps({"t": time.time(), "started": True}), flush=True)
    thread.start()
    while thread.is_alive():
        lanes = {}
        for name, lane in list(daemon.lanes.items()):
            stats = lane.engine.stats
            lanes[name] = [id(lane.engine), stats.records - stats.resumed_at]
        print(json.dumps({"t": time.time(), "lanes": lanes}), flush=True)
        thread.join(0.05)
    print(json.dumps({"t": time.time(), "stopped": True}), flush=True)


# --------------------------------------------------------------------------- driver


class Member:
    """A daemon process and what it has done, read from its progress lines."""

    def __init__(self, name: str, bootstrap: str, topic: str, group: str, store: str):
        command = [sys.executable, __file__, "--worker", "--bootstrap", bootstrap, "--topic", topic, "--group", group, "--store", store]
        self.name = name
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.started: float | None = None
        self.first_event: float | None = None
        self.done = 0
        #: (time, total done) after every progress line.
        self.timeline: list[tuple[float, int]] = []
        #: partition lane → time of its latest progress
        self.lane_progress: dict[str, float] = {}
        self._seen: dict[int, int] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if message.get("started"):
                    self.started = message["t"]
                for name, (engine, count) in message.get("lanes", {}).items():
                    delta = count - self._seen.get(engine, 0)
                    if delta > 0:
                        self._seen[engine] = count
                        self.done += delta
                        self.lane_progress[name] = message["t"]
                        if self.first_event is None:
                            self.first_event = message["t"]
                if "lanes" in message:
                    self.timeline.append((message["t"], self.done))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def total(members: list[Member]) -> int:
    return sum(m.done for m in members)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def throughput_run(k: int, bootstrap: str, topic: str, n: int, store: Path) -> dict:
    group = f"scale-{uuid.uuid4().hex[:8]}"
    members = [Member(f"daemon-{i}", bootstrap, topic, group, str(store)) for i in range(k)]
    marks: dict[float, float] = {}
    try:
        for fraction in (0.1, 0.9):
            if not wait_until(lambda f=fraction: total(members) >= f * n, timeout=max(120, n / 500)):
                return {"processes": k, "error": f"the group did not reach {fraction:.0%} of {n} events"}
            marks[fraction] = time.time()
        shares = [m.done for m in members]
    finally:
        for m in members:
            m.stop()
        for m in members:
            m.wait()
    return {"processes": k, "events_per_second": 0.8 * n / (marks[0.9] - marks[0.1]), "events_by_process": shares}


def longest_pause(timeline: list[tuple[float, int]], start: float, end: float) -> float:
    """Longest time without progress in ``timeline`` between ``start`` and ``end``."""
    times = [t for (t, done), (_, before) in zip(timeline[1:], timeline, strict=False) if done > before and start <= t <= end]
    points = [start, *times, end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def trickle(bootstrap: str, topic: str, rate: float, stop: threading.Event) -> None:
    """A live stream: the issue's events at about ``rate`` per second until ``stop``."""
    from confluent_kafka import Producer

    from kafka_peers import events

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    started = time.monotonic()
    for i, event in enumerate(events(10**9)):
        if stop.is_set():
            break
        producer.produce(topic, json.dumps(event).encode(), partition=i % PARTITIONS)
        if i % 100 == 0:
            producer.poll(0)
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()


def handover_run(bootstrap: str, rate: float, store: Path) -> dict:
    """Hand-over on a live stream of ``rate`` events/s: a second daemon joins, later leaves."""
    topic, group = f"handover-{uuid.uuid4().hex[:8]}", f"handover-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, PARTITIONS)
    stop = threading.Event()
    producer = threading.Thread(target=trickle, args=(bootstrap, topic, rate, stop))
    producer.start()
    first = Member("first", bootstrap, topic, group, str(store))
    second = None
    try:
        if not wait_until(lambda: len(first.lane_progress) == PARTITIONS, timeout=120):
            return {"error": "the first daemon did not take all partitions"}
        time.sleep(3)  # steady state
        second = Member("second", bootstrap, topic, group, str(store))
        if not wait_until(lambda: second.first_event is not None, timeout=60):
            return {"error": "the second daemon processed nothing"}
        joined_at = second.first_event
        time.sleep(5)  # both busy
        with second.lock:
            held = sorted(name for name, t in second.lane_progress.items() if t >= joined_at)
        stopped_at = time.time()
        second.stop()
        took_back = wait_until(lambda: all(first.lane_progress.get(name, 0) > stopped_at for name in held), timeout=60)
        resumed_at = max(first.lane_progress[name] for name in held) if took_back and held else None
        return {
            "stream_events_per_second": rate,
            "join_seconds_from_start_to_first_event": round(joined_at - second.started, 3),
            "join_longest_pause_of_first_daemon_seconds": round(longest_pause(first.timeline, second.started, joined_at + 2), 3),
            "partitions_handed_over": len(held),
            "leave_seconds_until_all_taken_back": round(resumed_at - stopped_at, 3) if resumed_at else None,
        }
    finally:
        for m in (first, second):
            if m is not None:
                m.stop()
        for m in (first, second):
            if m is not None:
                m.wait()
        stop.set()
        producer.join()


def store_sizes(store: Path) -> dict:
    files = sorted(store.rglob("checkpoint-*.parquet"))
    sizes = [f.stat().st_size for f in files]
    return {
        "partitions_with_checkpoints": len({f.parent for f in files}),
        "checkpoint_files_kept": len(files),
        "bytes_per_checkpoint_median": int(statistics.median(sizes)) if sizes else None,
        "bytes_per_partition_kept": int(sum(sizes) / max(1, len({f.parent for f in files}))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="events in the topic (default 160,000; quick 40,000)")
    parser.add_argument("--rounds", type=int, help="rounds of the 1, 2, 4 runs (default 2; quick 1)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stream-rate", type=float, default=4000.0, help="events/s of the live stream in the hand-over run")
    parser.add_argument("--out", default=str(RESULTS / "kafka_scaling.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help="use this broker instead of the bundled Tansu")
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from streamlearn.engine.broker import LocalBroker

    n = args.events or (40_000 if args.quick else 160_000)
    rounds = args.rounds or (1 if args.quick else 2)
    broker = None if args.bootstrap else LocalBroker().start()
    bootstrap = args.bootstrap or broker.bootstrap
    runs: dict[int, list[dict]] = {1: [], 2: [], 4: []}
    try:
        topic = f"scaling-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, PARTITIONS)
        produce(bootstrap, topic, n, partitions=PARTITIONS)
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                for k in runs:
                    store = Path(tmp) / f"store-{k}-{r}"
                    result = throughput_run(k, bootstrap, topic, n, store)
                    result["checkpoints"] = store_sizes(store)
                    runs[k].append(result)
                    print(f"round {r + 1}/{rounds}: {k} process(es): {result.get('events_per_second', result.get('error'))}", flush=True)
            handover = handover_run(bootstrap, args.stream_rate, Path(tmp) / "store-handover")
            print(f"hand-over: {handover}", flush=True)
    finally:
        if broker is not None:
            broker.stop()

    medians = {k: round(statistics.median(r["events_per_second"] for r in rs), 1) for k, rs in runs.items() if rs and all("error" not in r for r in rs)}
    result = {
        "benchmark": "kafka_scaling",
        "events": n,
        "partitions": PARTITIONS,
        "rounds": rounds,
        "workload": "JSON {id, x: 8 floats, y}; river StandardScaler | LogisticRegression test-then-train + Accuracy; scope = partition "
        "(8 learners); checkpoint every 10,000 events of a partition and at hand-over; shared local checkpoint store; no output topic",
        "broker": "bundled Tansu (in-memory), loopback" if broker else args.bootstrap,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs: more than 2 busy processes cannot be faster",
        "python": platform.python_version(),
        "median_events_per_second": medians,
        "speedup_vs_one_process": {k: round(v / medians[1], 3) for k, v in medians.items()} if 1 in medians else {},
        "handover": handover,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_events_per_second", "speedup_vs_one_process", "handover")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

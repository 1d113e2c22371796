"""A poisoned stream through two daemons (issue 14): throughput next to the clean stream, exactly-once, dead letters.

The issue-16 events (``kafka_peers.events``: 8 Gaussian features, a boolean label;
river ``StandardScaler | LogisticRegression``) on a 4-partition topic of the bundled
broker, consumed by **two daemon processes** in one group (``scope = "partition"``,
confluent-kafka client, one shared checkpoint store). The poisoned stream is the
clean one with one bad record after every 100th good one (1 %), spread over the
partitions, cycling through every kind of issue 14:

* JSON nested 5,000 levels deep (orjson refuses it, the standard parser recurses out),
* two integers of 401 digits,
* ``"y": "cat"`` for the binary classifier,
* a feature of 1e155 (finite, but it overflows the scaler's variance),
* an event larger than ``max_event_bytes`` (64 KiB here),
* an event with more than ``max_features`` features (1,000 here; 2,000 sent),
* bytes that are not UTF-8.

A record that crashes the process (issue 14 finding 3) is not in the stream: it
costs restarts by design (``tests/test_quarantine.py`` covers it), while this run
checks that nothing else restarts.

Checked after each run (both daemons stopped with SIGTERM, exit 0):

* **no restart**: both processes ran from start to end;
* **exactly once**: per partition, the final checkpoint covers every record (events
  = records, position = end offset), and its learner state equals the clean run's
  learner state for that partition (the same good events, in the same order);
* **dead letters**: every bad record is on the dead-letter topic once, at its source
  position, with a reason; reasons are tallied per kind.

Throughput is the group's records/s between 10 % and 90 % of the records (start-up
and the tail excluded), as in ``kafka_scaling.py``; clean and poisoned runs
alternate for ``--rounds`` pairs (each in a fresh topic, group and store) and the
medians are reported. Writes ``benchmarks/results/poison.json``.

    flock /tmp/bench.lock .venv/bin/python benchmarks/poison.py [--good 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import json
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

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_peers import _commit, _versions, create_topic, events  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARTITIONS = 4
BAD_EVERY = 100
MAX_EVENT_BYTES = 65_536
MAX_FEATURES = 1_000

#: Each kind of bad record, with a part of the dead-letter reason it must get.
BAD_KINDS = {
    "deep nesting": (b'{"x": ' * 5_000 + b"1" + b"}" * 5_000, "nested too deeply"),
    "huge integers": (b'{"x": {"x0": 1' + b"0" * 400 + b', "x1": -1' + b"0" * 400 + b'}, "y": true}', "integer of 401 digits"),
    "wrong label type": (b'{"x": {"x0": 1.0}, "y": "cat"}', "binary classifier"),
    "1e155 feature": (b'{"x": {"x0": 1e155}, "y": true}', "max_feature_abs"),
    "oversized event": (orjson.dumps({"x": {"x0": 1.0}, "y": True, "pad": "a" * 70_000}), "max_event_bytes"),
    "too many features": (orjson.dumps({"x": {f"f{i}": 1.0 for i in range(2 * MAX_FEATURES)}, "y": True}), "max_features"),
    "non-UTF-8 bytes": (b'{"x": {"x0": 1.0}, "y": \xff\xfe}', "not UTF-8"),
}


def streams(good: int) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes, str]]]:
    """(clean stream, poisoned stream) as (partition, value[, kind]); good event i goes to partition i % 4 in both."""
    clean, poisoned = [], []
    kinds = list(BAD_KINDS)
    for i, event in enumerate(events(good)):
        value, partition = orjson.dumps(event), i % PARTITIONS
        clean.append((partition, value))
        poisoned.append((partition, value, ""))
        if i % BAD_EVERY == BAD_EVERY - 1:
            kind = kinds[(i // BAD_EVERY) % len(kinds)]
            # Spread over the partitions; the good events of each keep their order.
            poisoned.append(((i // BAD_EVERY) % PARTITIONS, BAD_KINDS[kind][0], kind))
    return clean, poisoned


def produce(bootstrap: str, topic: str, records: list[tuple]) -> dict[tuple[int, int], str]:
    """Send the records in order; returns {(partition, offset): kind} of the bad ones."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 1_000_000, "message.max.bytes": 10_000_000})
    offsets = collections.Counter()
    bad = {}
    for i, (partition, value, *kind) in enumerate(records):
        producer.produce(topic, value, partition=partition)
        if kind and kind[0]:
            bad[(partition, offsets[partition])] = kind[0]
        offsets[partition] += 1
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush()
    return bad


# --------------------------------------------------------------------------- one daemon process


def worker(args) -> None:
    from streamlearn.engine.config import parse_config
    from streamlearn.engine.daemon import Daemon
    from streamlearn.logs import configure_logging

    configure_logging("error", json_logs=True)
    table = {
        "learner": {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}},
        "eval": {"metrics": ["Accuracy"], "window": 0},
        "engine": {"max_event_bytes": MAX_EVENT_BYTES, "max_features": MAX_FEATURES},
        "checkpoint": {"dir": args.store, "every_events": 10_000, "every_seconds": 600.0},
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
    thread.start()
    while thread.is_alive():
        print(json.dumps({"t": time.time(), "events": daemon.snapshot().get("events", 0)}), flush=True)
        thread.join(0.05)


class Member:
    """A daemon process; ``done`` follows its progress lines."""

    def __init__(self, bootstrap: str, topic: str, group: str, store: str):
        command = [sys.executable, __file__, "--worker", "--bootstrap", bootstrap, "--topic", topic, "--group", group, "--store", store]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.done = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.done = max(self.done, json.loads(line)["events"])
            except (ValueError, KeyError):
                continue


def run(bootstrap: str, records: list[tuple], root: Path, name: str) -> dict:
    """Both daemons over ``records`` in a fresh topic and group; the numbers and what to check."""
    topic = f"poison-{name}-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, PARTITIONS)
    bad = produce(bootstrap, topic, records)
    store = root / name
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [Member(bootstrap, topic, group, str(store)) for _ in range(2)]
    n = len(records)
    marks = {}
    try:
        for fraction in (0.1, 0.9, 1.0):
            deadline = time.monotonic() + max(300, n / 200)
            while sum(m.done for m in members) < fraction * n:
                if any(m.process.poll() is not None for m in members):
                    raise RuntimeError(f"{name}: a daemon exited early (a restart would be needed)")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: the daemons did not reach {fraction:.0%} of {n} records")
                time.sleep(0.02)
            marks[fraction] = time.time()
        restarted = any(m.process.poll() is not None for m in members)
    finally:
        for m in members:
            if m.process.poll() is None:
                m.process.send_signal(signal.SIGTERM)
        codes = [m.process.wait(60) for m in members]
    return {
        "topic": topic,
        "records": n,
        "events_per_second": 0.8 * n / (marks[0.9] - marks[0.1]),
        "records_by_daemon": [m.done for m in members],
        "exit_codes": codes,
        "restarted": restarted,
        "store": store,
        "bad": bad,
    }


def learner_state(store: Path, topic: str, partition: int) -> tuple[dict, object]:
    from streamlearn.engine.checkpoint import CheckpointStore

    checkpoint = CheckpointStore(store / f"{topic}-{partition}").load_latest()
    return {k: v for k, v in checkpoint.state.items() if k.startswith("learner/")}, checkpoint


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


def dead_letters(bootstrap: str, topic: str, expected: int) -> list[dict]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(f"{topic}.dlq", 0, 0)])
    out, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            if len(out) >= expected:
                break
            continue
        if message.error() is None:
            out.append(json.loads(message.value()))
    consumer.close()
    return out


def check(clean: dict, poisoned: dict, records: list[tuple], bootstrap: str) -> dict:
    counts = collections.Counter(p for p, *_ in records)
    partitions = {}
    for p in range(PARTITIONS):
        clean_state, _ = learner_state(clean["store"], clean["topic"], p)
        state, checkpoint = learner_state(poisoned["store"], poisoned["topic"], p)
        offset = checkpoint.positions[f"{poisoned['topic']}/{p}"]["offset"]
        partitions[p] = {
            "records": counts[p],
            "checkpoint_events": checkpoint.events,
            "checkpoint_offset": offset,
            "learner_state_equals_clean_run": same_state(state, clean_state),
        }
    letters = dead_letters(bootstrap, poisoned["topic"], len(poisoned["bad"]))
    seen = collections.Counter((d["source"]["partition"], d["source"]["offset"]) for d in letters)
    reasons = collections.defaultdict(collections.Counter)
    wrong = []
    for letter in letters:
        where = (letter["source"]["partition"], letter["source"]["offset"])
        kind = poisoned["bad"].get(where)
        if kind is None:
            wrong.append({"unexpected": letter["source"], "reason": letter["reason"]})
            continue
        reasons[kind][letter["reason"][:80]] += 1
        if BAD_KINDS[kind][1] not in letter["reason"]:
            wrong.append({"kind": kind, "reason": letter["reason"][:200]})
    return {
        "partitions": partitions,
        "every_good_event_once": all(
            v["checkpoint_events"] == v["records"] == v["checkpoint_offset"] and v["learner_state_equals_clean_run"] for v in partitions.values()
        ),
        "dead_letters": len(letters),
        "bad_records": len(poisoned["bad"]),
        "every_bad_record_dead_lettered_once": set(seen) == set(poisoned["bad"]) and max(seen.values(), default=1) == 1,
        "dead_letters_with_the_wrong_reason": wrong[:10],
        "reasons_by_kind": {kind: dict(c) for kind, c in reasons.items()},
        "no_restart": not clean["restarted"] and not poisoned["restarted"] and clean["exit_codes"] == poisoned["exit_codes"] == [0, 0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--good", type=int, default=100_000, help="good events (1 %% bad ones are added)")
    parser.add_argument("--rounds", type=int, default=3, help="clean / poisoned pairs, alternating (medians reported)")
    parser.add_argument("--out", type=Path, default=RESULTS / "poison.json", help="where the JSON goes")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from streamlearn.engine.broker import LocalBroker

    clean_records, poisoned_records = streams(args.good)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker:
        root = Path(tmp)
        for r in range(args.rounds):
            clean = run(broker.bootstrap, clean_records, root, f"clean{r}")
            poisoned = run(broker.bootstrap, poisoned_records, root, f"poisoned{r}")
            checks = check(clean, poisoned, poisoned_records, broker.bootstrap)
            rounds.append({"clean": clean, "poisoned": poisoned, "checks": checks})
            print(f"round {r}: clean {clean['events_per_second']:,.0f}, poisoned {poisoned['events_per_second']:,.0f} records/s", flush=True)
    clean_rate = statistics.median(r["clean"]["events_per_second"] for r in rounds)
    poisoned_rate = statistics.median(r["poisoned"]["events_per_second"] for r in rounds)
    verdicts = ("every_good_event_once", "every_bad_record_dead_lettered_once", "no_restart")
    result = {
        "benchmark": "poison",
        "commit": _commit(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cores": __import__("os").cpu_count()},
        "versions": _versions(),
        "setup": {
            "good_events": args.good,
            "bad_events": len(poisoned_records) - args.good,
            "bad_every": BAD_EVERY,
            "partitions": PARTITIONS,
            "daemons": 2,
            "client": "confluent-kafka",
            "max_event_bytes": MAX_EVENT_BYTES,
            "max_features": MAX_FEATURES,
            "bad_kinds": list(BAD_KINDS),
        },
        "clean_events_per_second_median": clean_rate,
        "poisoned_events_per_second_median": poisoned_rate,
        "poisoned_over_clean": poisoned_rate / clean_rate,
        "all_rounds_pass": {v: all(r["checks"][v] for r in rounds) for v in verdicts},
        "rounds": [
            {
                "clean": {k: v for k, v in r["clean"].items() if k not in ("store", "bad")},
                "poisoned": {k: v for k, v in r["poisoned"].items() if k not in ("store", "bad")},
                "checks": r["checks"],
            }
            for r in rounds
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("clean_events_per_second_median", "poisoned_events_per_second_median", "poisoned_over_clean", "all_rounds_pass")}, indent=1))


if __name__ == "__main__":
    main()

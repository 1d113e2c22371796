"""The streamlearn daemon against the stream processors a user would pick instead.

One invocation, one bundled Tansu broker, one workload (issue 16): N JSON events
``{"id", "x": {8 floats}, "y"}`` on a 4-partition topic; river
``StandardScaler | LogisticRegression`` test-then-train on every event (predict,
update a cumulative Accuracy, learn); one prediction message per event to an output
topic (or none: "without outputs"); durable state every 10,000 events. Systems:

* ``streamlearn (confluent-kafka)`` / ``streamlearn (kafka-python)``: the daemon
  (``scope = "global"``, ``[eval] metrics = ["Accuracy"]``, ``window = 0``), checkpoint
  every 10,000 events (Parquet, no pickle; offsets committed after it), dead-letter
  topic ready, bad-input isolation on (safe points);
* ``quixstreams``: a Quix Streams application (``sdf.apply`` → ``to_topic``),
  ``commit_every = 10,000``, the model pickled to a file at each 10,000th event;
* ``bytewax``: a Bytewax dataflow (``KafkaSource`` → ``stateful_map`` →
  ``KafkaSink``) with recovery on: the model is the step's state, snapshotted
  (pickled) at every epoch end, epoch every 0.5 s (about 10,000 events here);
* ``confluent-kafka loop`` / ``kafka-python loop``: hand-written consume →
  predict/learn → produce loops with the daemon's producer settings; every 10,000
  events: flush the producer, pickle the model to a file, commit offsets.

Only the daemon gives exactly-once state here (state and positions in one durable
checkpoint): the peers' state and offsets are saved apart (at-least-once).

Every system runs in a fresh process of its own (``--worker``), with a fresh consumer
group and output topic; systems and modes are interleaved, rounds repeated, medians
reported. A run's rate is events / seconds from its first processed event to its
N-th (group joins, start-up and shutdown excluded). Ratios: each streamlearn median
over the best peer's median (targets: confluent-kafka ≥ 1.0 in both modes) and over
the hand-written loop of the same client (target for kafka-python ≥ 0.9 with outputs).

    flock /tmp/bench.lock .venv/bin/python benchmarks/kafka_peers.py [--events N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
PARTITIONS = 4
CHECKPOINT_EVERY = 10_000
#: librdkafka / kafka-python consumer settings shared by the hand-written loops and the daemon.
SESSION_TIMEOUT_MS = 2000

STREAMLEARN = {"streamlearn (confluent-kafka)": "confluent-kafka", "streamlearn (kafka-python)": "kafka-python"}
PEERS = ["quixstreams", "bytewax", "confluent-kafka loop", "kafka-python loop"]
WORKERS = [*STREAMLEARN, *PEERS]


def events(n: int, seed: int = 0):
    """The issue's events: 8 Gaussian features, a noisy linear label."""
    rng = random.Random(seed)
    weights = [rng.uniform(-1, 1) for _ in range(8)]
    for i in range(n):
        x = {f"x{j}": rng.gauss(0, 1) for j in range(8)}
        y = sum(w * v for w, v in zip(weights, x.values(), strict=True)) + rng.gauss(0, 0.5) > 0
        yield {"id": i, "x": x, "y": y}


def model():
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


class Meter:
    """Counts processed events; the rate runs from the first to the N-th."""

    def __init__(self, n: int):
        self.n, self.seen, self.first, self.started, self.ended = n, 0, 0, None, None

    def add(self, count: int) -> bool:
        """Count ``count`` more events; True once N are done."""
        self.seen += count
        now = time.perf_counter()
        if self.started is None:
            self.started, self.first = now, self.seen
        if self.seen >= self.n and self.ended is None:
            self.ended = now
        return self.ended is not None

    def result(self) -> dict:
        seconds = self.ended - self.started
        return {"events": self.seen, "seconds": seconds, "events_per_second": (self.n - self.first) / seconds}


def save_pickle(model_, path: Path) -> None:
    """What a hand-written consumer does for durable state: pickle, write, rename."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(model_))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- workers (one process each)


def run_streamlearn(client: str, args) -> dict:
    from streamlearn.engine.config import parse_config
    from streamlearn.engine.daemon import Daemon

    table = {
        "learner": {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}},
        "eval": {"metrics": ["Accuracy"], "window": 0},
        "checkpoint": {"dir": str(Path(args.workdir) / "ckpt"), "every_events": CHECKPOINT_EVERY, "every_seconds": 600.0},
        "kafka": {
            "bootstrap_servers": args.bootstrap,
            "client": client,
            "topic": args.topic,
            "group_id": f"streamlearn-{uuid.uuid4().hex[:8]}",
            "output_topic": args.output,
            "dead_letter_topic": f"{args.topic}.dlq",
            "session_timeout_ms": SESSION_TIMEOUT_MS,
        },
    }
    daemon = Daemon(parse_config(table, env={}))
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,))
    thread.start()
    meter = Meter(args.events)
    while True:
        lane = daemon.lanes.get("global")
        seen = lane.engine.stats.records if lane is not None else 0
        if seen > meter.seen and meter.add(seen - meter.seen):
            break
        time.sleep(0.01)  # coarse: a busy watcher would take the daemon's GIL
    stop.set()
    thread.join()
    return meter.result()


def run_confluent_loop(args) -> dict:
    from confluent_kafka import Consumer, Producer
    from river import metrics

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"loop-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": 600,
        }
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
    consumer.subscribe([args.topic])
    learner, accuracy, meter = model(), metrics.Accuracy(), Meter(args.events)
    state, since = Path(args.workdir) / "model.pickle", 0
    loads, dumps, out = orjson.loads, orjson.dumps, args.output
    done = False
    while not done:
        messages = consumer.consume(500, 0.5)
        for message in messages:
            if message.error() is not None:
                continue
            event = loads(message.value())
            x, y = event["x"], event["y"]
            y_pred = learner.predict_one(x)
            accuracy.update(y, y_pred)
            learner.learn_one(x, y)
            if out:
                source = {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}
                producer.produce(out, dumps({"source": source, "y_pred": y_pred}))
        if out:
            producer.poll(0)
        since += len(messages)
        if since >= CHECKPOINT_EVERY:
            since = 0
            producer.flush()
            save_pickle(learner, state)
            consumer.commit(asynchronous=False)
        done = bool(messages) and meter.add(len(messages))
    consumer.close()
    return meter.result()


def run_kafka_python_loop(args) -> dict:
    from kafka import KafkaConsumer, KafkaProducer
    from river import metrics

    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=f"loop-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=600,
        max_poll_records=500,
    )
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=20, batch_size=1 << 20) if args.output else None
    learner, accuracy, meter = model(), metrics.Accuracy(), Meter(args.events)
    state, since = Path(args.workdir) / "model.pickle", 0
    loads, dumps, out = orjson.loads, orjson.dumps, args.output
    done = False
    while not done:
        count = 0
        for records in consumer.poll(timeout_ms=500, max_records=500).values():
            for record in records:
                event = loads(record.value)
                x, y = event["x"], event["y"]
                y_pred = learner.predict_one(x)
                accuracy.update(y, y_pred)
                learner.learn_one(x, y)
                if out:
                    source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
                    producer.send(out, dumps({"source": source, "y_pred": y_pred}))
            count += len(records)
        since += count
        if since >= CHECKPOINT_EVERY:
            since = 0
            if producer is not None:
                producer.flush()
            save_pickle(learner, state)
            consumer.commit()
        done = bool(count) and meter.add(count)
    consumer.close(autocommit=False)
    return meter.result()


def run_quix(args) -> dict:
    import logging

    from quixstreams import Application
    from river import metrics

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        commit_every=CHECKPOINT_EVERY,
        commit_interval=600.0,
        state_dir=str(Path(args.workdir) / "quix-state"),
        consumer_extra_config={"session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 600},
        producer_extra_config={"acks": "all", "linger.ms": 5},
        loglevel=logging.ERROR,
    )
    learner, accuracy, meter = model(), metrics.Accuracy(), Meter(args.events)
    state = Path(args.workdir) / "model.pickle"

    def test_then_train(event: dict) -> dict:
        x, y = event["x"], event["y"]
        y_pred = learner.predict_one(x)
        accuracy.update(y, y_pred)
        learner.learn_one(x, y)
        if meter.seen % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            save_pickle(learner, state)
        if meter.add(1):
            app.stop()
        return {"id": event["id"], "y_pred": y_pred}

    sdf = app.dataframe(app.topic(args.topic, value_deserializer="json")).apply(test_then_train)
    if args.output:
        sdf.to_topic(app.topic(args.output, value_serializer="json"))
    app.run()
    return meter.result()


def run_bytewax(args) -> dict:
    from datetime import timedelta

    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import run_main
    from river import metrics

    meter = Meter(args.events)
    loads, dumps = orjson.loads, orjson.dumps

    def test_then_train(state, message):
        if state is None:
            state = (model(), metrics.Accuracy())
        learner, accuracy = state
        event = loads(message.value)
        x, y = event["x"], event["y"]
        y_pred = learner.predict_one(x)
        accuracy.update(y, y_pred)
        learner.learn_one(x, y)
        meter.add(1)
        return state, {"id": event["id"], "y_pred": y_pred}

    flow = Dataflow("peers")
    source = KafkaSource(
        [args.bootstrap], [args.topic], tail=False, add_config={"session.timeout.ms": str(SESSION_TIMEOUT_MS)}, raise_on_errors=False
    )
    keyed = op.key_on("one_model", op.input("in", flow, source), lambda _message: "model")
    predictions = op.stateful_map("test_then_train", keyed, test_then_train)
    if args.output:
        messages = op.map("encode", predictions, lambda kv: KafkaSinkMessage(None, dumps(kv[1])))
        op.output("out", messages, KafkaSink([args.bootstrap], args.output, add_config={"acks": "all", "linger.ms": "5"}))
    else:
        op.output("out", predictions, _Discard())
    recovery = Path(args.workdir) / "bytewax-recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    run_main(flow, epoch_interval=timedelta(seconds=0.5), recovery_config=RecoveryConfig(str(recovery)))
    return meter.result()


def _Discard():  # noqa: N802 - a sink factory named like the class it returns
    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    class Partition(StatelessSinkPartition):
        def write_batch(self, items):
            pass

    class Discard(DynamicSink):
        def build(self, step_id, worker_index, worker_count):
            return Partition()

    return Discard()


def worker(args) -> None:
    if args.worker in STREAMLEARN:
        from streamlearn.logs import configure_logging

        configure_logging("error", json_logs=True)
        result = run_streamlearn(STREAMLEARN[args.worker], args)
    else:
        run = {"quixstreams": run_quix, "bytewax": run_bytewax, "confluent-kafka loop": run_confluent_loop, "kafka-python loop": run_kafka_python_loop}
        result = run[args.worker](args)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- driver


def produce(bootstrap: str, topic: str, n: int, partitions: int = PARTITIONS) -> None:
    """The events, spread evenly over the topic's partitions."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    for i, event in enumerate(events(n)):
        producer.produce(topic, orjson.dumps(event), partition=i % partitions)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until the answer: a dropped client cancels it
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result()


def delete_topic(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.delete_topics([name])[name].result()
    except Exception as exc:  # a leftover topic only costs broker memory
        print(f"  (could not delete {name}: {exc})", flush=True)


def one_run(name: str, outputs: bool, bootstrap: str, topic: str, n: int, timeout: float) -> dict:
    output = f"{topic}.out-{uuid.uuid4().hex[:6]}" if outputs else ""
    if output:
        create_topic(bootstrap, output, PARTITIONS)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            command = [sys.executable, __file__, "--worker", name, "--bootstrap", bootstrap, "--topic", topic, "--events", str(n), "--workdir", workdir, "--output", output]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout)[-800:]}"}
        return json.loads(lines[-1].removeprefix("RESULT "))
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    finally:
        if output:
            delete_topic(bootstrap, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="events in the topic (default 200,000; quick 20,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="20,000 events, one round")
    parser.add_argument("--systems", help="comma-separated subset of: " + ", ".join(WORKERS))
    parser.add_argument("--bootstrap", help="use this broker instead of the bundled Tansu")
    parser.add_argument("--out", default=str(RESULTS / "kafka_peers.json"))
    # worker mode (one system, one run, in its own process)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--output", default="", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from streamlearn.engine.broker import LocalBroker

    n = args.events or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    systems = args.systems.split(",") if args.systems else WORKERS
    unknown = set(systems) - set(WORKERS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {WORKERS}")
    broker = None if args.bootstrap else LocalBroker().start()
    bootstrap = args.bootstrap or broker.bootstrap
    modes = {"with_outputs": True, "without_outputs": False}
    runs: dict[str, dict[str, list]] = {mode: {s: [] for s in systems} for mode in modes}
    try:
        topic = f"peers-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, PARTITIONS)
        t0 = time.perf_counter()
        produce(bootstrap, topic, n)
        print(f"produced {n:,} events in {time.perf_counter() - t0:.1f} s", flush=True)
        for r in range(rounds):
            for name in systems:  # interleaved: every system once per round and mode
                for mode, outputs in modes.items():
                    result = one_run(name, outputs, bootstrap, topic, n, timeout=max(120.0, n / 1000))
                    runs[mode][name].append(result)
                    shown = f"{result['events_per_second']:,.0f}/s" if "error" not in result else result["error"][-300:]
                    print(f"round {r + 1}/{rounds} {name:30s} {mode:16s} {shown}", flush=True)
    finally:
        if broker is not None:
            broker.stop()

    medians = {
        mode: {s: round(statistics.median(r["events_per_second"] for r in rs), 1) for s, rs in by_system.items() if rs and all("error" not in r for r in rs)}
        for mode, by_system in runs.items()
    }
    ratios = {}
    for mode, m in medians.items():
        peers = {s: v for s, v in m.items() if s in PEERS}
        best = max(peers, key=peers.get) if peers else None
        ratios[mode] = {"best_peer": best}
        for ours, client in STREAMLEARN.items():
            if ours not in m:
                continue
            if best:
                ratios[mode][f"{ours} / best peer"] = round(m[ours] / peers[best], 3)
            loop = f"{client} loop"
            if loop in m:
                ratios[mode][f"{ours} / {loop}"] = round(m[ours] / m[loop], 3)
    result = {
        "benchmark": "kafka_peers",
        "events": n,
        "partitions": PARTITIONS,
        "rounds": rounds,
        "workload": "JSON {id, x: 8 floats, y}; river StandardScaler | LogisticRegression test-then-train + cumulative Accuracy per event; "
        "one prediction message per event to an output topic (with_outputs); durable state every 10,000 events",
        "broker": "bundled Tansu (in-memory), loopback" if broker else args.bootstrap,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs (other helpers' tests and builds ran at the same time)",
        "python": platform.python_version(),
        "commit": _commit(),
        "versions": _versions(),
        "rate": "events / seconds from a run's first processed event to its N-th; each run a fresh process, consumer group and output topic",
        "guarantees": "streamlearn: exactly-once state (state + positions in one Parquet checkpoint, offsets committed after it), "
        "dead-letter topic, bad-input isolation; peers: model pickled and offsets committed apart (at-least-once state)",
        "median_events_per_second": medians,
        "ratios": ratios,
        "targets": {
            "streamlearn (confluent-kafka) / best peer": 1.0,
            "streamlearn (kafka-python) / kafka-python loop, with outputs": 0.9,
        },
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"median_events_per_second": medians, "ratios": ratios}, indent=2))
    print(f"wrote {args.out}")


def _commit() -> str | None:
    """The git commit measured (None outside a checkout)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10)
    except OSError:
        return None
    return done.stdout.strip() or None


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for package in ("streamlearn", "confluent-kafka", "kafka-python", "quixstreams", "bytewax", "river", "crc32c"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


if __name__ == "__main__":
    main()

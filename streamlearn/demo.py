"""``streamlearn demo``: a broker, a drifting stream, the daemon and live metrics, in one command.

What it does, with no arguments and nothing to install beyond streamlearn:

1. starts the bundled Tansu broker (Kafka protocol, in memory) on a free
   loopback port — or uses ``--bootstrap HOST:PORT``;
2. creates a topic and produces a drifting stream to it while the daemon
   runs: river's SEA concept stream whose labelling function changes halfway
   (``ConceptDriftStream``), as supervised events ``{"id", "x", "y"}``, with a
   few malformed events mixed in to show the dead-letter path;
3. runs the daemon (``streamlearn run`` in-process) with a river logistic
   regression, printing one line of live metrics per second: events, events/s,
   consumer lag, accuracy, dead letters, checkpoints;
4. stops once every event is processed (or after ``--seconds``, or on Ctrl-C),
   cleanly: final checkpoint, committed offsets, broker shut down;
5. leaves in ``--dir`` the checkpoints, the config it used (``demo.toml``, ready
   for ``streamlearn run``), the dead letters (``dead_letters.jsonl``: reason,
   offset, raw bytes), ``report.json`` and ``metrics.png`` (accuracy cumulative
   and over the last 500 events: the drift shows as a dip), the broker log and
   ``summary.json``.

``python -m streamlearn.demo produce --bootstrap HOST:PORT`` only produces the
demo stream into an existing cluster (the producer of ``docker/compose.yaml``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

from streamlearn.engine.processor import shown as metric_text
from streamlearn.logs import configure_logging

__all__ = ["demo_events", "main", "run_demo"]

log = structlog.get_logger("streamlearn.demo")

TOPIC = "streamlearn-demo"

CONFIG = """\
# Written by `streamlearn demo`; run it again against any Kafka cluster with
#   STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS=host:9092 streamlearn run {config}
[learner]
name = "river"

[learner.params]
model = "linear_model.LogisticRegression"
preprocessing = ["preprocessing.StandardScaler"]

[eval]
metrics = ["Accuracy"]
# Accuracy over the last 500 events beside the cumulative one: the drift halfway shows in it.
window = 500
history_every = 100

[output]
dead_letters = "{dead_letters}"

[checkpoint]
dir = "{checkpoints}"
every_events = 5000
every_seconds = 2

[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "{topic}"
output_topic = "{topic}.predictions"
session_timeout_ms = {session_timeout_ms}
"""

#: (position as a fraction of the stream, raw value): malformed events mixed into the demo stream.
POISON = (
    (0.25, b"this is not JSON"),
    (0.50, b'{"id": "nan", "x": {"0": NaN, "1": 1.0, "2": 2.0}, "y": true}'),
    (0.75, b'{"id": "no-features", "y": false}'),
)


def demo_events(n: int, seed: int = 42) -> Any:
    """``n`` supervised events of SEA concepts with a drift halfway (river's ``ConceptDriftStream``)."""
    from river.datasets import synth

    stream = synth.ConceptDriftStream(
        stream=synth.SEA(seed=seed, variant=0),
        drift_stream=synth.SEA(seed=seed + 1, variant=3),
        position=n // 2,
        width=max(1, n // 20),
        seed=seed,
    )
    for i, (x, y) in enumerate(itertools.islice(stream, n)):
        yield {"id": i, "x": {str(k): v for k, v in x.items()}, "y": bool(y)}


def _produce(bootstrap: str, topic: str, n: int, rate: float, done: threading.Event, stop: threading.Event, errors: list) -> None:
    """Produce the demo stream at about ``rate`` events/s (in a thread)."""
    from kafka import KafkaProducer

    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        poison = {int(f * n): raw for f, raw in POISON}
        started = time.monotonic()
        for i, event in enumerate(demo_events(n)):
            if i in poison:
                producer.send(topic, poison[i])
            producer.send(topic, json.dumps(event, separators=(",", ":")).encode())
            if i % 200 == 0:
                if stop.is_set():
                    break
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
        producer.close()
    except Exception as exc:  # reported by the main thread
        errors.append(exc)
    finally:
        done.set()


def _clear_old_checkpoints(directory: Path) -> None:
    """Remove the previous demo's checkpoints (its broker, and so its offsets, are gone)."""
    if not directory.exists():
        return
    ours = all(p.name == "manifest.json" or (p.name.startswith("checkpoint-") and p.suffix == ".parquet") or p.name.startswith(".") for p in directory.iterdir())
    if not ours:
        raise ValueError(f"{directory} holds files that are not demo checkpoints; choose another --dir")
    shutil.rmtree(directory)


def _line(elapsed: float, s: dict[str, Any]) -> str:
    lanes = s.get("lanes", {})
    metrics = next(iter(lanes.values()))["metrics"] if lanes else {}
    shown = "  ".join(f"{k} {metric_text(v, '.3f')}" for k, v in metrics.items())
    return (
        f"{elapsed:6.1f} s  events {s.get('events', 0):>8,}  {s.get('events_per_second', 0):>7,.0f}/s  "
        f"lag {s.get('lag', 0):>7,}  {shown}  dead letters {s.get('dead_letters', 0)}  checkpoints {s.get('checkpoints', 0)}"
    )


def _write_report(daemon: Any, summary: dict[str, Any], out: Path) -> Path | None:
    """``report.json`` and ``metrics.png`` of the demo's learner, as ``streamlearn replay`` writes them."""
    from streamlearn.engine.report import write_report

    lane = daemon.lanes.get("global")
    if lane is None:  # stopped before the learner was built
        return None
    stats, processor = lane.engine.stats, lane.processor
    history = list(stats.history)
    if not history or history[-1]["events"] != stats.records:
        history.append({"events": stats.records, **processor.metrics()})
    report = {
        "learner": "river (streamlearn demo)",
        "config": daemon.config.raw,
        "config_path": daemon.config.source,
        "input": f"kafka://{summary['bootstrap']}/{summary['topic']}",
        "events": stats.records,
        "dead_letters": stats.dead_letters,
        "dead_letter_reasons": dict(stats.reasons.most_common()),
        "final_metrics": processor.metrics(),
        "history": history,
    }
    return write_report(report, out)


def run_demo(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """The ``streamlearn demo`` command; returns the exit code."""
    from streamlearn.engine.broker import BrokerError, LocalBroker, free_port
    from streamlearn.engine.config import load_config
    from streamlearn.engine.daemon import Daemon

    stop = stop or threading.Event()
    if getattr(args, "log_level", "info") == "info":
        # The live lines are the output (dead letters are counted there, not logged one by one).
        configure_logging("error", getattr(args, "log_json", None))
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = out / "checkpoints"
    _clear_old_checkpoints(checkpoints)
    dead_letters = out / "dead_letters.jsonl"
    dead_letters.unlink(missing_ok=True)  # this run's, not appended to the last one's
    n_events = int(args.events)
    rate = max(2000.0, n_events / 15)
    started = time.monotonic()

    broker = None
    if args.bootstrap:
        bootstrap, topic, session_timeout_ms = args.bootstrap, f"{TOPIC}-{uuid.uuid4().hex[:8]}", 6000
    else:
        try:
            broker = LocalBroker(log_path=out / "broker.log").start()
        except BrokerError as exc:
            print(f"streamlearn: {exc}", file=sys.stderr)
            return 1
        # Tansu answers a group join after half the session timeout; 2 s keeps the demo snappy.
        bootstrap, topic, session_timeout_ms = broker.bootstrap, TOPIC, 2000
    config_path = out / "demo.toml"
    config_path.write_text(
        CONFIG.format(
            config=config_path,
            checkpoints=checkpoints.resolve().as_posix(),
            dead_letters=dead_letters.resolve().as_posix(),
            bootstrap=bootstrap,
            topic=topic,
            session_timeout_ms=session_timeout_ms,
        )
    )
    metrics_port = free_port()
    print(f"streamlearn demo: broker {bootstrap} ({'bundled Tansu' if broker else 'yours'}), topic {topic!r}, {n_events:,} events")
    print(f"  Prometheus metrics: http://127.0.0.1:{metrics_port}/metrics   (Ctrl-C stops cleanly)")

    daemon_stop, produced, errors = threading.Event(), threading.Event(), []
    result: dict[str, Any] = {}
    try:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=10_000)
            try:
                admin.create_topics([NewTopic(topic, 1, 1)])
            except TopicAlreadyExistsError:
                pass
            admin.close()
        except KafkaError as exc:
            print(f"streamlearn: cannot use the broker at {bootstrap}: {exc}", file=sys.stderr)
            return 1
        daemon = Daemon(load_config(config_path), metrics_port=metrics_port, metrics_addr="127.0.0.1")

        def run_daemon() -> None:
            try:
                result["snapshot"] = daemon.run(daemon_stop)
            except Exception as exc:  # reported by the main thread
                result["error"] = exc

        producer = threading.Thread(target=_produce, args=(bootstrap, topic, n_events, rate, produced, stop, errors), daemon=True)
        runner = threading.Thread(target=run_daemon, name="streamlearn-daemon")
        producer.start()
        runner.start()
        expected = n_events + len(POISON)
        deadline = started + float(args.seconds)
        print("  joining the consumer group ...", flush=True)
        while runner.is_alive() and not stop.is_set() and time.monotonic() < deadline:
            stop.wait(1.0)
            s = daemon.snapshot()
            if s.get("events", 0):
                print(_line(time.monotonic() - started, s), flush=True)
            if produced.is_set() and s.get("events", 0) >= expected and s.get("lag", 1) == 0:
                break
        daemon_stop.set()
        runner.join()
    finally:
        daemon_stop.set()
        if broker is not None:
            broker.stop()

    if "error" in result:
        print(f"streamlearn: the daemon failed: {result['error']}", file=sys.stderr)
        return 1
    if errors:
        print(f"streamlearn: producing the demo stream failed: {errors[0]}", file=sys.stderr)
        return 1
    s = result.get("snapshot", daemon.snapshot())
    lanes = s.get("lanes", {})
    metrics = next(iter(lanes.values()))["metrics"] if lanes else {}
    elapsed = time.monotonic() - started
    summary = {
        "bootstrap": bootstrap,
        "topic": topic,
        "events_produced": n_events + len(POISON),
        "events_processed": s.get("events", 0),
        "dead_letters": s.get("dead_letters", 0),
        "outputs": s.get("outputs", 0),
        "checkpoints_written": s.get("checkpoints", 0),
        "final_metrics": metrics,
        "seconds": round(elapsed, 2),
        "checkpoints": str(checkpoints),
        "config": str(config_path),
    }
    report_path = _write_report(daemon, summary, out)
    if report_path is not None:
        summary["report"] = str(report_path)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shown = ", ".join(f"{k} {metric_text(v, '.3f')}" for k, v in metrics.items())
    print(
        f"\ndone: {summary['events_processed']:,} events ({summary['dead_letters']} dead letters) in {elapsed:.1f} s; {shown}\n"
        f"  checkpoints  {checkpoints}    (streamlearn checkpoints list {checkpoints})\n"
        f"  config       {config_path}    (streamlearn run {config_path}, with STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS for your cluster)\n"
        f"  dead letters {dead_letters}    (each with its reason, source offset and raw bytes)\n"
        f"  report       {out / 'report.json'} and {out / 'metrics.png'} (accuracy, cumulative and over the last 500 events)\n"
        f"  summary      {out / 'summary.json'}"
        + (f"\n  broker log   {out / 'broker.log'}" if broker else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m streamlearn.demo produce``: the demo stream into an existing cluster."""
    from streamlearn.connectors.kafka import Backoff, Stopped, ensure_topics

    parser = argparse.ArgumentParser(prog="python -m streamlearn.demo", description="Produce the demo stream to a Kafka cluster.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce", help="produce the drifting SEA stream (with a few malformed events)")
    p.add_argument("--bootstrap", required=True, help="HOST:PORT of the cluster")
    p.add_argument("--topic", default="events")
    p.add_argument("--partitions", type=int, default=3, help="partitions if the topic must be created")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=500.0, help="events per second")
    args = parser.parse_args(argv)
    configure_logging("info")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        ensure_topics({"bootstrap_servers": args.bootstrap}, [args.topic], Backoff(f"cannot reach {args.bootstrap}", stop=stop), args.partitions)
    except Stopped:
        return 0
    done, errors = threading.Event(), []
    log.info("producing the demo stream", topic=args.topic, events=args.events, rate=args.rate)
    _produce(args.bootstrap, args.topic, args.events, args.rate, done, stop, errors)
    if errors:
        print(f"streamlearn demo produce: {errors[0]}", file=sys.stderr)
        return 1
    log.info("demo stream produced", topic=args.topic, events=args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())

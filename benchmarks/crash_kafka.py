"""kill -9 the Kafka daemon at random moments, restart it, compare the final state with an uninterrupted run.

Each trial makes a fresh topic, produces supervised events into it like a live
stream (river's Phishing stream, repeated, at ``--rate`` events/s), runs
``streamlearn run`` as a process and sends it SIGKILL at random moments — during start-up, the group join, consumption or a checkpoint
— restarting it each time, then lets a last run finish and stops it with
SIGTERM. The learner + processor state hash of the final checkpoint (the
manifest's sha256) must equal that of an uninterrupted daemon over the same
events, and every event must have at least one prediction on the output topic
(outputs are at-least-once; duplicates are counted).

Trials alternate ``scope = "global"`` (one partition, one learner) and
``scope = "partition"`` (three partitions, a learner and a checkpoint directory
each; every partition's hash is compared). The processor keeps state of its own
(``label_delay = 20``: predictions waiting for their label).

    flock /tmp/streamlearn-bench.lock python benchmarks/crash_kafka.py
    python benchmarks/crash_kafka.py --quick
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamlearn.datasets import dataset_events  # noqa: E402
from streamlearn.engine.broker import LocalBroker  # noqa: E402
from streamlearn.engine.checkpoint import CheckpointStore  # noqa: E402
from streamlearn.engine.config import load_config  # noqa: E402
from streamlearn.engine.daemon import Daemon  # noqa: E402
from streamlearn.logs import configure_logging  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

CONFIG = """
[learner]
name = "river"
[learner.params]
model = "linear_model.LogisticRegression"
preprocessing = ["preprocessing.StandardScaler"]
[eval]
metrics = ["Accuracy", "LogLoss"]
label_delay = 20
[checkpoint]
dir = "{checkpoints}"
every_events = 500
every_seconds = 1
[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "{group}"
output_topic = "{output}"
scope = "{scope}"
session_timeout_ms = 2000
poll_timeout_ms = 200
"""


def write_config(path: Path, **values: str) -> Path:
    path.write_text(CONFIG.format(**values))
    return path


def make_topic(bootstrap: str, partitions: int) -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"crash-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    return topic


def trickle(bootstrap: str, topic: str, events: list[bytes], partitions: int, rate: float, hurry: threading.Event) -> None:
    """Produce like a live stream (about ``rate`` events/s) until ``hurry`` is set, then the rest at once."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    started = time.monotonic()
    for i, value in enumerate(events):
        producer.send(topic, value, partition=i % partitions)
        if i % 50 == 0 and not hurry.is_set():
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                hurry.wait(ahead)
    producer.flush()
    producer.close()


def stores(checkpoints: Path, topic: str, counts: dict[int, int], scope: str) -> dict[str, CheckpointStore]:
    if scope == "global":
        return {"global": CheckpointStore(checkpoints)}
    return {f"{topic}-{p}": CheckpointStore(checkpoints / f"{topic}-{p}") for p in counts}


def stored_events(store: CheckpointStore) -> int:
    entries = store.list()
    return entries[-1].events if entries else 0


def reference(workdir: Path, bootstrap: str, topic: str, counts: dict[int, int], scope: str) -> dict[str, str]:
    """Final state hashes of an uninterrupted in-process daemon over the topic."""
    checkpoints = workdir / "reference"
    config = write_config(
        workdir / "reference.toml", checkpoints=checkpoints.as_posix(), bootstrap=bootstrap, topic=topic,
        group=f"ref-{uuid.uuid4().hex[:6]}", output=f"{topic}.ref", scope=scope,
    )
    daemon = Daemon(load_config(config))
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,))
    thread.start()
    total = sum(counts.values())
    while daemon.snapshot().get("events_in_state", 0) < total or daemon.snapshot().get("lag", 1):
        time.sleep(0.1)
    stop.set()
    thread.join()
    return {name: store.list()[-1].sha256 for name, store in stores(checkpoints, topic, counts, scope).items()}


def output_offsets(bootstrap: str, topic: str, expected: int) -> tuple[set, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen, total = set(), 0
    while True:
        batch = consumer.poll(timeout_ms=1500)
        if not batch and total >= expected:
            break
        if not batch and total < expected:
            continue
        for records in batch.values():
            for r in records:
                source = json.loads(r.value)["source"]
                seen.add((source["partition"], source["offset"]))
                total += 1
    consumer.close()
    return seen, total


def trial(workdir: Path, bootstrap: str, scope: str, events: list[bytes], kills: int, rate: float, rng: random.Random, log_path: Path) -> dict:
    partitions = 1 if scope == "global" else 3
    topic = make_topic(bootstrap, partitions)
    counts = {p: len(events[p::partitions]) for p in range(partitions)}
    hurry = threading.Event()
    producer = threading.Thread(target=trickle, args=(bootstrap, topic, events, partitions, rate, hurry))
    producer.start()
    checkpoints = workdir / "crashy"
    config = write_config(
        workdir / "crashy.toml", checkpoints=checkpoints.as_posix(), bootstrap=bootstrap, topic=topic,
        group=f"crashy-{uuid.uuid4().hex[:6]}", output=f"{topic}.out", scope=scope,
    )
    lane_stores = stores(checkpoints, topic, counts, scope)
    total = sum(counts.values())

    def progress() -> int:
        return sum(stored_events(s) for s in lane_stores.values())

    kill_log = []

    def start(log):
        return subprocess.Popen([sys.executable, "-m", "streamlearn.cli", "--log-json", "run", str(config)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    with open(log_path, "ab") as log:
        for k in range(kills):
            before = progress()
            proc = start(log)
            t0 = time.monotonic()
            if k % 3 == 2:
                # Any moment from start-up on: imports, group join, consumption.
                time.sleep(rng.uniform(0.3, 4.0))
            else:
                # Mid-stream: once this run stored some progress, at a random moment after it.
                target = min(before + rng.randint(200, 1500), total - 1)
                while progress() < target and proc.poll() is None and time.monotonic() - t0 < 120:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.4))
            alive = proc.poll() is None
            proc.kill()
            proc.wait()
            after = progress()
            kill_log.append({
                "after_seconds": round(time.monotonic() - t0, 2),
                "alive": alive,
                "stored_before": before,
                "stored_after": after,
                "mid_stream": before < after < total,
            })
        hurry.set()
        producer.join()
        runs_before = log_path.read_text(errors="replace").count('"partitions assigned"')
        proc = start(log)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = log_path.read_text(errors="replace").count('"partitions assigned"') > runs_before
            if running and progress() >= total:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(60)
    final = {name: (s.list()[-1].sha256 if s.list() else None) for name, s in lane_stores.items()}
    expected = reference(workdir, bootstrap, topic, counts, scope)
    seen, outputs = output_offsets(bootstrap, f"{topic}.out", total)
    return {
        "scope": scope,
        "partitions": partitions,
        "events": total,
        "kills": kill_log,
        "final_exit_code": exit_code,
        "final_events": progress(),
        "state_equal": final == expected,
        "lanes_equal": {name: final[name] == expected[name] for name in expected},
        "outputs": outputs,
        "duplicate_outputs": outputs - len(seen),
        "events_without_output": total - len(seen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two short trials")
    parser.add_argument("--trials", type=int, help="trials (default 10; quick 2)")
    parser.add_argument("--copies", type=int, help="copies of the Phishing stream per trial (default 16; quick 8)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial before the final run")
    parser.add_argument("--rate", type=float, default=1500.0, help="events/s produced while the daemon is being killed")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=str(RESULTS / "kafka_crash.json"))
    args = parser.parse_args()
    trials = args.trials or (2 if args.quick else 10)
    copies = args.copies or (8 if args.quick else 16)
    configure_logging("error", json_logs=True)
    rng = random.Random(args.seed)
    events = [json.dumps(e).encode() for e in dataset_events("phishing")] * copies
    results = []
    started = time.monotonic()
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for t in range(trials):
            scope = "global" if t % 2 == 0 else "partition"
            workdir = Path(tmp) / f"trial-{t}"
            workdir.mkdir()
            result = trial(workdir, broker.bootstrap, scope, events, args.kills, args.rate, rng, workdir / "daemon.log")
            log_text = (workdir / "daemon.log").read_text(errors="replace")
            result["tracebacks_in_logs"] = log_text.count("Traceback")
            results.append(result)
            mid = sum(k["mid_stream"] for k in result["kills"])
            print(
                f"trial {t + 1}/{trials} ({scope}): {len(result['kills'])} kills ({mid} mid-stream), "
                f"state equal: {result['state_equal']}, events without output: {result['events_without_output']}, "
                f"duplicates: {result['duplicate_outputs']}",
                flush=True,
            )
    summary = {
        "benchmark": "kafka_crash",
        "trials": trials,
        "events_per_trial": len(events),
        "kills": sum(len(r["kills"]) for r in results),
        "kills_mid_stream": sum(k["mid_stream"] for r in results for k in r["kills"]),
        "all_states_equal": all(r["state_equal"] for r in results),
        "all_events_have_outputs": all(r["events_without_output"] == 0 for r in results),
        "all_final_exits_clean": all(r["final_exit_code"] == 0 for r in results),
        "tracebacks": sum(r["tracebacks_in_logs"] for r in results),
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

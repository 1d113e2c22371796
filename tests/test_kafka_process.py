"""``streamlearn run`` / ``streamlearn demo`` as processes: SIGTERM, kill -9, a broker that starts late."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from streamlearn.datasets import dataset_events
from streamlearn.engine.broker import LocalBroker, free_port
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import load_config
from tests.conftest import REPO, run_cli
from tests.kafka_fixtures import RunningDaemon, TestBroker, scrape, wait_for, write_config

pytestmark = pytest.mark.kafka

PHISHING = list(dataset_events("phishing"))


def _start(config, log_path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps its own descriptor
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "streamlearn.cli", "--log-json", "run", str(config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def _run_until(config, log_path, done, timeout: float, what: str) -> None:
    """Start the daemon, wait for ``done()``, stop it with SIGTERM: it must exit 0."""
    proc = _start(config, log_path)
    try:
        wait_for(done, timeout=timeout, what=what)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def _stored(store: CheckpointStore) -> int:
    entries = store.list()
    return entries[-1].events if entries else 0


def _events_done(port: int) -> float:
    return scrape(port).get("streamlearn_events_total", -1)


def test_sigterm_finishes_the_batch_writes_a_final_checkpoint_and_exits_0(tmp_path, broker):
    topic = broker.topic()
    n = broker.produce(topic, PHISHING)
    port = free_port()
    # No periodic checkpoints: the only one must come from the shutdown.
    config = write_config(tmp_path / "d.toml", broker, topic, every_events=10**9, every_seconds=0, metrics_port=port)
    _run_until(config, tmp_path / "daemon.log", lambda: _events_done(port) == n, 60, "all events consumed")
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    entries = CheckpointStore(tmp_path / "d-checkpoints").list()
    assert len(entries) == 1
    assert entries[0].events == n
    assert entries[0].positions[f"{topic}/0"]["offset"] == n
    assert broker.committed(load_config(config).kafka.group_id, topic) == n  # committed after the checkpoint


def test_kill_9_at_random_moments_then_restart_gives_the_uninterrupted_state(tmp_path, broker):
    events = PHISHING * 8
    n = len(events)
    topic = broker.topic()
    # A live stream: events arrive while the daemon is killed and restarted, so kills land mid-stream.
    producer, hurry = broker.trickle(topic, events, rate=500)
    settings = {"label_delay": 20, "every_events": 200, "every_seconds": 1}
    port = free_port()
    config = write_config(tmp_path / "crashy.toml", broker, topic, metrics_port=port, output_topic=f"{topic}.out", **settings)
    store = CheckpointStore(tmp_path / "crashy-checkpoints")
    rng = random.Random(11)
    kills, stored = 0, 0
    try:
        for _ in range(3):
            proc = _start(config, tmp_path / "daemon.log")
            try:
                # Kill at a random moment after this run stored some progress of its own.
                target = stored + rng.randint(200, 600)
                wait_for(lambda: _stored(store) >= target, timeout=90, what="progress")
                time.sleep(rng.uniform(0.0, 0.4))
                assert proc.poll() is None
            finally:
                proc.kill()  # SIGKILL: no handler runs, no final checkpoint
                proc.wait()
            kills += 1
            stored = _stored(store)
            assert stored < n, "the kill came too late to interrupt the stream"
    finally:
        hurry.set()
    producer.join()

    _run_until(config, tmp_path / "daemon.log", lambda: _stored(store) == n, 90, "the restarted daemon to finish")

    reference = RunningDaemon(write_config(tmp_path / "reference.toml", broker, topic, **settings))
    reference.wait_events(n)
    reference.stop()
    reference_entry = CheckpointStore(tmp_path / "reference-checkpoints").list()[-1]
    assert reference_entry.events == n

    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    resumed = [json.loads(line)["resumed_events"] for line in log.splitlines() if '"learner ready"' in line]
    assert len(resumed) == kills + 1 and all(r > 0 for r in resumed[1:])
    last = store.list()[-1]
    assert last.events == n
    assert last.sha256 == reference_entry.sha256  # learner + processor state equal to the uninterrupted run's
    # Outputs are at-least-once: every event has a prediction, some possibly twice.
    outputs = broker.consume(f"{topic}.out", n, timeout=30)
    assert {o["source"]["offset"] for o in outputs} == set(range(n))


def test_broker_down_at_start_is_retried_then_the_daemon_works(tmp_path):
    port, metrics_port = free_port(), free_port()
    topic = "late-topic"
    local = LocalBroker(port=port)
    config = write_config(tmp_path / "d.toml", None, topic, bootstrap=local.bootstrap, metrics_port=metrics_port, session_timeout_ms=2000)
    proc = _start(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: (tmp_path / "daemon.log").read_text().count("cannot reach the Kafka broker") >= 2, timeout=30, what="retries")
        assert proc.poll() is None
        with local:
            late = TestBroker(local.bootstrap, 2000, local)
            late.create_topic(topic)
            n = late.produce(topic, PHISHING[:500])
            wait_for(lambda: _events_done(metrics_port) == n, timeout=60, what="the events after the broker came up")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    finally:
        proc.kill()
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    assert CheckpointStore(tmp_path / "d-checkpoints").list()[-1].events == 500


def test_unreachable_broker_with_a_connect_timeout_exits_1_with_a_message(tmp_path):
    config = write_config(tmp_path / "d.toml", None, "events", bootstrap=f"127.0.0.1:{free_port()}", connect_timeout_seconds=1.5)
    result = run_cli("run", str(config), timeout=60)
    assert result.returncode == 1
    assert "streamlearn: cannot reach the Kafka broker" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_demo_runs_end_to_end_from_nothing(tmp_path):
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_KAFKA_")}
    result = subprocess.run(
        [sys.executable, "-m", "streamlearn.cli", "demo", "--events", "3000", "--dir", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["events_processed"] == summary["events_produced"] == 3003
    assert summary["dead_letters"] == 3
    assert 0.8 < summary["final_metrics"]["Accuracy"] <= 1.0
    assert CheckpointStore(out / "checkpoints").list()[-1].events == 3003
    assert "events" in result.stdout and "done: 3,003 events" in result.stdout
    load_config(out / "demo.toml")  # the config it leaves behind is valid
    # The dead letters are kept, each with its reason and raw bytes.
    letters = [json.loads(line) for line in (out / "dead_letters.jsonl").read_text().splitlines()]
    assert len(letters) == 3 and all(letter["reason"] and "raw" in letter for letter in letters)
    # As `demo --help` says: a report with the windowed accuracy beside the cumulative one, and its plot.
    report = json.loads((out / "report.json").read_text())
    assert report["events"] == 3003 and report["dead_letters"] == 3
    assert {"Accuracy", "Accuracy@500"} <= set(report["history"][-1])
    assert report["plots"] == ["metrics.png"] and (out / "metrics.png").stat().st_size > 10_000


def test_broker_lost_while_running_is_logged_and_the_daemon_carries_on(tmp_path, monkeypatch):
    from streamlearn.connectors.kafka import KafkaSource

    monkeypatch.setattr(KafkaSource, "quiet_seconds", 1.0)
    local = LocalBroker().start()
    try:
        first = TestBroker(local.bootstrap, 2000, local)
        first.create_topic("ev")
        first.produce("ev", PHISHING[:300])
        daemon = RunningDaemon(write_config(tmp_path / "d.toml", first, "ev", every_seconds=1))
        daemon.wait_events(300)
        local.stop()  # the in-memory broker loses everything: topics, offsets, the group
        wait_for(lambda: not daemon.snapshot()["connected"], timeout=30, what="the outage to be noticed")
        assert daemon.thread.is_alive()
        local.start()
        again = TestBroker(local.bootstrap, 2000, local)
        again.create_topic("ev")
        again.produce("ev", PHISHING[300:400])
        # The stored offset 300 is beyond the new log's end: offset_reset = earliest reads the 100 new events.
        wait_for(lambda: daemon.snapshot()["events"] == 400 and daemon.snapshot()["connected"], timeout=60, what="recovery")
        daemon.stop()
    finally:
        local.stop()
    last = CheckpointStore(tmp_path / "d-checkpoints").list()[-1]
    assert last.events == 400
    assert last.positions["ev/0"]["offset"] == 100

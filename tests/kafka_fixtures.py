"""A real Kafka-protocol broker for the integration tests, and helpers to talk to it.

The session fixture ``broker`` starts the bundled Tansu broker on a free
loopback port (in-memory storage) and stops it at the end; with
``STREAMLEARN_TEST_BOOTSTRAP=host:port`` the same tests use that broker instead
(e.g. Apache Kafka from ``docker/compose.yaml``). Every test makes its own
topics and groups (unique names), so tests never see each other's data.

``tests/conftest.py`` makes the fixture available to every test module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from streamlearn.engine.broker import LocalBroker


@dataclasses.dataclass
class TestBroker:
    bootstrap: str
    #: Consumer-group session timeout for daemons under test: Tansu answers a join after
    #: half of it, so a short one keeps tests fast; Apache Kafka accepts 6 s at the least.
    session_timeout_ms: int
    local: LocalBroker | None = None

    __test__ = False  # not a test class

    def topic(self, partitions: int = 1, prefix: str = "t") -> str:
        """A new topic with a unique name."""
        return self.create_topic(f"{prefix}-{uuid.uuid4().hex[:10]}", partitions)

    def create_topic(self, name: str, partitions: int = 1) -> str:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()
        return name

    def delete_topic(self, name: str) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.delete_topics([name])
        finally:
            admin.close()

    def produce(self, topic: str, values: Iterable[Any], partition: int | None = None) -> int:
        """Send values (dicts become JSON, bytes go as they are); returns how many."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        n = 0
        try:
            for value in values:
                raw = value if isinstance(value, bytes) else json.dumps(value).encode()
                producer.send(topic, raw, partition=partition)
                n += 1
            producer.flush()
        finally:
            producer.close()
        return n

    def trickle(self, topic: str, values: list[Any], rate: float) -> tuple[Any, Any]:
        """Produce ``values`` at about ``rate`` per second in a thread, like a live stream.

        Returns ``(thread, hurry)``: set ``hurry`` to send the rest at full speed.
        """
        import threading

        hurry = threading.Event()

        def run() -> None:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
            started = time.monotonic()
            for i, value in enumerate(values):
                producer.send(topic, value if isinstance(value, bytes) else json.dumps(value).encode())
                if i % 50 == 0 and not hurry.is_set():
                    ahead = i / rate - (time.monotonic() - started)
                    if ahead > 0:
                        hurry.wait(ahead)
            producer.flush()
            producer.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, hurry

    def consume(self, topic: str, n: int, timeout: float = 20.0) -> list[Any]:
        """Every record of ``topic`` (at least ``n``, then until a second passes without more); JSON is parsed."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            out: list[Any] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = consumer.poll(timeout_ms=1000)
                if not batch and len(out) >= n:
                    break
                for records in batch.values():
                    for r in records:
                        try:
                            out.append(json.loads(r.value))
                        except ValueError:
                            out.append(r.value)
            return out
        finally:
            consumer.close()

    def committed(self, group_id: str, topic: str, partition: int = 0) -> int | None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group_id, enable_auto_commit=False)
        try:
            return consumer.committed(TopicPartition(topic, partition))
        finally:
            consumer.close()


@pytest.fixture(scope="session")
def broker():
    bootstrap = os.environ.get("STREAMLEARN_TEST_BOOTSTRAP")
    if bootstrap:
        yield TestBroker(bootstrap, session_timeout_ms=6000)
        return
    with LocalBroker() as local:
        yield TestBroker(local.bootstrap, session_timeout_ms=2000, local=local)


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def scrape(port: int) -> dict[str, float]:
    """The daemon's Prometheus metrics as ``{"name{labels}": value}`` ({} while the endpoint is down)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


# --------------------------------------------------------------------------- daemon helpers

CONFIG = """
[learner]
name = "river"
[learner.params]
model = "linear_model.LogisticRegression"
preprocessing = ["preprocessing.StandardScaler"]
[eval]
metrics = ["Accuracy"]
label_delay = {label_delay}
[engine]
max_event_bytes = {max_event_bytes}
log_every_seconds = 2
[checkpoint]
dir = "{checkpoints}"
every_events = {every_events}
every_seconds = {every_seconds}
[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "{group_id}"
output_topic = "{output_topic}"
scope = "{scope}"
offset_reset = "{offset_reset}"
session_timeout_ms = {session_timeout_ms}
connect_timeout_seconds = {connect_timeout_seconds}
metrics_port = {metrics_port}
poll_timeout_ms = 200
"""


def write_config(path, broker: TestBroker | None, topic: str, **overrides: Any):
    """A daemon config (river logistic regression) for ``topic``; keyword arguments override the defaults."""
    values = {
        "label_delay": 0,
        "max_event_bytes": 1_048_576,
        "checkpoints": (path.parent / f"{path.stem}-checkpoints").as_posix(),
        "every_events": 300,
        "every_seconds": 0,
        "bootstrap": broker.bootstrap if broker else "127.0.0.1:9",
        "topic": topic,
        "group_id": f"g-{uuid.uuid4().hex[:8]}",
        "output_topic": "",
        "scope": "global",
        "offset_reset": "earliest",
        "session_timeout_ms": broker.session_timeout_ms if broker else 2000,
        "connect_timeout_seconds": 0,
        "metrics_port": 0,
    }
    values.update(overrides)
    path.write_text(CONFIG.format(**values))
    return path


class RunningDaemon:
    """A :class:`Daemon` running in a thread (``stop()`` joins it and re-raises its error)."""

    def __init__(self, config: Any, **options: Any):
        import threading

        from streamlearn.engine.config import load_config
        from streamlearn.engine.daemon import Daemon

        if not hasattr(config, "kafka"):
            config = load_config(config)
        self.daemon = Daemon(config, **options)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.daemon.run(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def snapshot(self) -> dict[str, Any]:
        return self.daemon.snapshot()

    def wait_events(self, n: int, timeout: float = 60.0) -> dict[str, Any]:
        """Until ``n`` events are in the learners' state and nothing is left to read."""

        def done():
            if self.error is not None:
                raise self.error
            s = self.daemon.snapshot()
            return s if s.get("events_in_state", 0) >= n and s.get("lag", 1) == 0 and s.get("partitions") else None

        return wait_for(done, timeout, what=f"{n} events processed")

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the daemon did not stop"
        if self.error is not None:
            raise self.error
        return self.daemon.snapshot()


def reference_hash(tmp_path, name: str, events: list[Any], label_delay: int = 0) -> tuple[str, dict[str, Any]]:
    """The state hash (and replay report) of an uninterrupted file replay of ``events``."""
    from streamlearn.engine.checkpoint import CheckpointStore
    from streamlearn.engine.replay import replay

    directory = tmp_path / name
    directory.mkdir()
    stream = directory / "events.jsonl"
    stream.write_text("".join((e.decode() if isinstance(e, bytes) else json.dumps(e)) + "\n" for e in events))
    config = write_config(directory / "replay.toml", None, "unused", label_delay=label_delay, every_events=10**9)
    report = replay(config, stream, progress=False)
    return CheckpointStore(directory / "replay-checkpoints").list()[-1].sha256, report

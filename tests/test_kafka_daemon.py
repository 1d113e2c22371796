"""The Kafka daemon in-process against a real broker (Tansu, or STREAMLEARN_TEST_BOOTSTRAP)."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from streamlearn.connectors.kafka import GlobalScopeConflict, OffsetPolicyError
from streamlearn.datasets import dataset_events
from streamlearn.engine.broker import free_port
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import ConfigError, load_config
from streamlearn.engine.daemon import Daemon
from tests.kafka_fixtures import RunningDaemon, reference_hash, scrape, wait_for, write_config

pytestmark = pytest.mark.kafka

PHISHING = list(dataset_events("phishing"))


def test_end_to_end_every_event_processed_outputs_published_metrics_right(tmp_path, broker):
    topic = broker.topic()
    n = broker.produce(topic, PHISHING)
    config = write_config(tmp_path / "d.toml", broker, topic, output_topic=f"{topic}.out")
    port = free_port()
    daemon = RunningDaemon(config, metrics_port=port)
    try:
        daemon.wait_events(n)
        metrics = wait_for(lambda: (m := scrape(port)) and m.get("streamlearn_events_total") == n and m, what="a scrape")
    finally:
        daemon.stop()
    expected_hash, report = reference_hash(tmp_path, "reference", PHISHING)

    assert metrics["streamlearn_events_total"] == n
    assert metrics["streamlearn_dead_letters_total"] == 0
    assert metrics["streamlearn_outputs_total"] == n
    assert metrics[f'streamlearn_consumer_lag{{partition="{topic}/0"}}'] == 0
    assert metrics["streamlearn_assigned_partitions"] == 1
    assert metrics["streamlearn_broker_connected"] == 1
    assert metrics["streamlearn_checkpoints_total"] >= n // 300
    final = report["final_metrics"]
    assert metrics['streamlearn_learner_metric{lane="global",metric="Accuracy",window="all"}'] == pytest.approx(final["Accuracy"])
    window = load_config(config).eval.window
    assert metrics[f'streamlearn_learner_metric{{lane="global",metric="Accuracy",window="{window}"}}'] == pytest.approx(final[f"Accuracy@{window}"])
    assert final[f"Accuracy@{window}"] != final["Accuracy"]  # the window is a different number, not a copy

    outputs = broker.consume(f"{topic}.out", n)
    assert len(outputs) == n
    assert sorted(o["source"]["offset"] for o in outputs) == list(range(n))
    assert all(o["source"]["topic"] == topic and isinstance(o["y_pred"], bool) for o in outputs)
    # each prediction carries its event's id and true y
    assert {o["source"]["offset"]: (o["id"], o["y"]) for o in outputs} == {i: (e["id"], e["y"]) for i, e in enumerate(PHISHING)}

    last = CheckpointStore(tmp_path / "d-checkpoints").list()[-1]
    assert last.events == n
    assert last.positions == {f"{topic}/0": {"topic": topic, "partition": 0, "offset": n}}
    assert last.sha256 == expected_hash  # the same state as a file replay of the same events
    assert broker.committed(load_config(config).kafka.group_id, topic) == n


def test_poison_messages_go_to_the_dead_letter_topic_with_reasons(tmp_path, broker):
    huge = json.dumps({"x": {f"f{i}": 1.0 for i in range(1000)}, "y": True}).encode()
    poison = [
        (b"this is not JSON {", "invalid JSON"),
        (b'{"x": [1.0, 2.0], "y": true}', "x must be an object"),
        (b'{"x": {"a": NaN}, "y": true}', "not finite"),
        (b'{"y": false}', "missing field 'x'"),
        (b'{"x": {"a": 1.0}, "y": {"nested": 1}}', "y must be a class label"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b"\xff\xfe\x00 not utf-8", "not UTF-8"),
        (huge, "exceeds max_event_bytes=4096"),
    ]
    good = PHISHING[:400]
    stream, where = [], {}
    for i, (raw, _) in enumerate(poison):
        stream.extend(good[i * 50 : (i + 1) * 50])
        where[len(stream)] = i
        stream.append(raw)
    topic = broker.topic()
    broker.produce(topic, stream)
    config = write_config(tmp_path / "d.toml", broker, topic, max_event_bytes=4096)
    daemon = RunningDaemon(config)
    try:
        snapshot = daemon.wait_events(len(stream))
    finally:
        daemon.stop()

    assert snapshot["dead_letters"] == len(poison)
    assert daemon.daemon.lanes["global"].engine.stats.processed == len(good)
    letters = broker.consume(f"{topic}.dlq", len(poison))  # the default dead-letter topic
    assert len(letters) == len(poison)
    for letter in letters:
        offset = letter["source"]["offset"]
        raw, reason = poison[where[offset]]
        assert letter["source"] == {"topic": topic, "partition": 0, "offset": offset}
        assert reason in letter["reason"]
        if "raw" in letter:
            assert raw.startswith(letter["raw"].encode())  # the huge one is kept as its first KiB
        else:
            import base64

            assert base64.b64decode(letter["raw_base64"]) == raw
    # The good events around the poison went into the state exactly as if the poison were absent.
    expected_hash, _ = reference_hash(tmp_path, "reference", good)
    assert CheckpointStore(tmp_path / "d-checkpoints").list()[-1].sha256 == expected_hash


def test_two_daemons_share_partitions_and_hand_state_over(tmp_path, broker):
    partitions = 4
    topic = broker.topic(partitions)
    phases = [PHISHING[0:400], PHISHING[400:800], PHISHING[800:1200]]
    sent = {p: [] for p in range(partitions)}

    def produce(events):
        for p in range(partitions):
            part = events[p::partitions]
            broker.produce(topic, part, partition=p)
            sent[p].extend(part)

    config = load_config(write_config(tmp_path / "d.toml", broker, topic, scope="partition", every_events=50))
    produce(phases[0])
    a = RunningDaemon(config)
    b = None
    try:
        a.wait_events(400)
        assert set(a.snapshot()["partitions"]) == {f"{topic}/{p}" for p in range(partitions)}

        b = RunningDaemon(config)
        wait_for(lambda: len(b.snapshot().get("partitions", ())) == partitions // 2 and len(a.snapshot()["partitions"]) == partitions // 2, what="a rebalance")
        produce(phases[1])
        wait_for(lambda: a.snapshot()["events_in_state"] + b.snapshot()["events_in_state"] == 800, what="both daemons to catch up")
        b_partitions = [int(k.rsplit("/", 1)[1]) for k in b.snapshot()["partitions"]]
        assert set(b_partitions).isdisjoint(int(k.rsplit("/", 1)[1]) for k in a.snapshot()["partitions"])
        assert b.snapshot()["events"] > 0
        b.stop()
        b = None

        wait_for(lambda: len(a.snapshot()["partitions"]) == partitions, what="the partitions to move back")
        produce(phases[2])
        a.wait_events(1200)
        lanes = a.daemon.lanes
        for p in b_partitions:  # loaded from the checkpoint b wrote when it stopped
            assert lanes[f"{topic}-{p}"].checkpointer.events_before == len(sent[p]) - len(phases[2][p::partitions])
    finally:
        if b is not None:
            b.stop()
        a.stop()

    for p in range(partitions):
        last = CheckpointStore(tmp_path / "d-checkpoints" / f"{topic}-{p}").list()[-1]
        assert last.events == len(sent[p])
        assert last.positions == {f"{topic}/{p}": {"topic": topic, "partition": p, "offset": len(sent[p])}}
        expected_hash, _ = reference_hash(tmp_path, f"reference-{p}", sent[p])
        assert last.sha256 == expected_hash, f"partition {p}: state differs from one learner over its events"


def test_global_scope_refuses_a_second_daemon_and_the_first_keeps_going(tmp_path, broker):
    topic = broker.topic(2)
    broker.produce(topic, PHISHING[:300], partition=0)
    config = load_config(write_config(tmp_path / "d.toml", broker, topic))
    first = RunningDaemon(config)
    try:
        first.wait_events(300)
        lane = first.daemon.lanes["global"]
        second = Daemon(config)
        with pytest.raises(GlobalScopeConflict, match=r"another daemon already consumes group .* scope = 'partition'"):
            second.run()
        assert second.lanes["global"].checkpointer.written == 0
        broker.produce(topic, PHISHING[300:600], partition=1)
        first.wait_events(600)
        assert first.daemon.lanes["global"] is lane  # same learner, never reloaded
        # librdkafka's cooperative assignor lends the newcomer a partition while it joins;
        # the owner gets it back (at its own position) once the newcomer has refused.
        wait_for(lambda: len(first.snapshot()["partitions"]) == 2, what="the owner to hold every partition")
        assert first.daemon.lanes["global"] is lane
    finally:
        first.stop()


def test_stored_offset_that_no_longer_exists_follows_offset_reset(tmp_path, broker):
    topic = broker.topic()
    broker.produce(topic, PHISHING[:60])
    settings = {"group_id": f"{topic}-g"}
    first = RunningDaemon(write_config(tmp_path / "d.toml", broker, topic, **settings))
    first.wait_events(60)
    first.stop()
    _recreate(broker, topic, PHISHING[60:70])  # the stored offset 60 is now beyond the end (10)

    failing = load_config(write_config(tmp_path / "d.toml", broker, topic, offset_reset="fail", **settings))
    with pytest.raises(OffsetPolicyError, match=rf"stored offset 60 of {topic}/0 no longer exists.*offset_reset = 'fail'"):
        Daemon(failing).run()
    store = CheckpointStore(tmp_path / "d-checkpoints")
    assert store.list()[-1].events == 60  # the failed start wrote nothing

    resuming = RunningDaemon(write_config(tmp_path / "d.toml", broker, topic, offset_reset="earliest", **settings))
    resuming.wait_events(70)
    resuming.stop()
    last = store.list()[-1]
    assert last.events == 70
    assert last.positions[f"{topic}/0"]["offset"] == 10


def _numbered(n: int, salt: int = 0) -> list[dict]:
    return [{"x": {"a": (i * 7 + salt) % 97 / 97, "b": i % 13 / 13}, "y": (i + salt) % 3 == 0} for i in range(n)]


def test_a_recreated_topic_is_recognised_by_the_stored_fingerprint_and_follows_offset_reset(tmp_path, broker):
    topic = broker.topic()
    broker.produce(topic, _numbered(3000))
    settings = {"group_id": f"{topic}-g", "every_events": 1000}
    first = RunningDaemon(write_config(tmp_path / "d.toml", broker, topic, **settings))
    first.wait_events(3000)
    first.stop()
    store = CheckpointStore(tmp_path / "d-checkpoints")
    assert store.load_latest().metadata["fingerprints"][f"{topic}/0"]["offset"] == 2999
    # Lost and refilled while the daemon is down: the stored offset 3000 exists in the new log.
    _recreate(broker, topic, _numbered(4000, salt=1))

    failing = load_config(write_config(tmp_path / "d.toml", broker, topic, offset_reset="fail", **settings))
    with pytest.raises(OffsetPolicyError, match=rf"the record before stored offset 3000 of {topic}/0 is not the one the checkpoint saw"):
        Daemon(failing).run()
    assert store.list()[-1].events == 3000  # the failed start wrote nothing

    with capture_logs() as logs:
        resumed = RunningDaemon(write_config(tmp_path / "d.toml", broker, topic, offset_reset="earliest", **settings))
        resumed.wait_events(7000)
        resumed.stop()
    errors = [e for e in logs if e["log_level"] == "error" and "not the one the checkpoint saw" in e["event"]]
    assert len(errors) == 1 and "offset_reset = 'earliest'" in errors[0]["event"]
    last = store.list()[-1]
    assert last.events == 7000  # offsets 0..2,999 of the new log were not skipped
    assert last.positions[f"{topic}/0"]["offset"] == 4000


def test_a_checkpoint_without_fingerprints_resumes_exactly(tmp_path, broker):
    topic = broker.topic()
    broker.produce(topic, PHISHING[:200])
    config = write_config(tmp_path / "d.toml", broker, topic)
    first = RunningDaemon(config)
    first.wait_events(200)
    first.stop()
    # Rewrite the latest checkpoint as one written before fingerprints existed.
    store = CheckpointStore(tmp_path / "d-checkpoints")
    latest = store.load_latest()
    meta = latest.metadata
    store.save(latest.state, events=meta["events"], positions=meta["positions"], learner=meta["learner"])
    assert "fingerprints" not in store.load_latest().metadata

    broker.produce(topic, PHISHING[200:300])
    second = RunningDaemon(config)
    second.wait_events(300)
    second.stop()
    last = store.list()[-1]
    assert last.events == 300 and last.positions[f"{topic}/0"]["offset"] == 300
    expected_hash, _ = reference_hash(tmp_path, "reference", PHISHING[:300])
    assert last.sha256 == expected_hash


def _recreate(broker, topic, events):
    broker.delete_topic(topic)
    wait_for(lambda: _try_create(broker, topic), timeout=30, what="the topic to be recreated")
    broker.produce(topic, events)


def _try_create(broker, topic):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def test_daemon_needs_a_checkpoint_directory(tmp_path):
    config = load_config(write_config(tmp_path / "d.toml", None, "events"))
    config.checkpoint.dir = None
    with pytest.raises(ConfigError, match="checkpoint.dir is required"):
        Daemon(config)


def test_offset_reset_fail_without_checkpoint_is_a_clear_error(tmp_path, broker):
    topic = broker.topic()
    config = load_config(write_config(tmp_path / "d.toml", broker, topic, offset_reset="fail"))
    with pytest.raises(OffsetPolicyError, match=rf"no checkpoint holds a position for {topic}/0"):
        Daemon(config).run()

"""Poison quarantine (issue 14, finding 3): a record that kills the process is not processed for ever."""

from __future__ import annotations

import json
import signal

import pytest

from streamlearn.connectors.base import Record
from streamlearn.engine.broker import free_port
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.quarantine import CRASH_FILE, CrashGuard
from tests.kafka_fixtures import scrape, wait_for, write_config
from tests.test_kafka_process import _start

RECORDS = [Record(b"{}", {"path": "events.jsonl", "row": i}) for i in range(10)]


def test_records_in_flight_at_a_crash_go_one_by_one_then_the_culprit_is_quarantined(tmp_path):
    store = CheckpointStore(tmp_path)
    guard = CrashGuard(store)
    assert guard.split(RECORDS) == ([], [RECORDS])
    guard.mark(RECORDS[:5])  # the process dies while these are processed

    guard = CrashGuard(store)  # the restart: every suspect alone
    assert guard.split(RECORDS) == ([], [[r] for r in RECORDS])
    guard.mark([RECORDS[3]])  # and dies again, on record 3 alone: its first crash that counts

    guard = CrashGuard(store)
    assert guard.crashes(RECORDS[3]) == 1 and guard.crashes(RECORDS[4]) is None  # the range is explained
    assert guard.split(RECORDS) == ([], [[r] for r in RECORDS])
    guard.mark([RECORDS[3]])  # dies on it alone once more

    guard = CrashGuard(store)
    quarantined, groups = guard.split(RECORDS)
    assert quarantined == [(RECORDS[3], 2)]
    assert groups == [[r for r in RECORDS if r is not RECORDS[3]]]  # the crashes are explained: one batch again
    # A checkpoint beyond them forgets the crashes.
    guard.checkpointed({"events.jsonl": {"path": "events.jsonl", "row": 4, "byte": 20}})
    assert CrashGuard(store).split(RECORDS) == ([], [RECORDS])


def test_a_kill_while_idle_blames_no_record_and_a_bad_file_is_ignored(tmp_path):
    store = CheckpointStore(tmp_path)
    guard = CrashGuard(store)
    guard.mark(RECORDS)
    guard.settle()
    assert CrashGuard(store).crashed == []
    store.write_side_file(CRASH_FILE, b'{"crashed": [["s", 5, 1, 9], "x"], "in_flight": {"a": 1}}')
    assert CrashGuard(store).crashed == []  # malformed entries are never trusted
    with pytest.raises(ValueError, match="not a side-file name"):
        store.write_side_file("../escape.json", b"{}")


def test_a_batch_of_several_partitions_marks_each_partition_from_its_first_to_its_last_record(tmp_path):
    def kafka(partition, offset):
        return Record(b"{}", {"topic": "t", "partition": partition, "offset": offset})

    # Two chunks of partition 0 around one of partition 1, as a Kafka source hands them out.
    batch = [kafka(0, 7), kafka(0, 8), kafka(1, 3), kafka(0, 9), kafka(0, 2000)]
    store = CheckpointStore(tmp_path)
    CrashGuard(store).mark(batch)  # the process dies while these are processed
    guard = CrashGuard(store)
    assert sorted(e[:3] for e in guard.crashed) == [["t/0", 7, 2000], ["t/1", 3, 1026]]
    assert guard.crashes(kafka(0, 1500)) == 0 and guard.crashes(kafka(0, 6)) is None
    assert guard.crashes(kafka(1, 1026)) == 0 and guard.crashes(kafka(2, 3)) is None


CRASHING_LEARNER = '[learner]\nname = "tests.poison_learners:SegfaultOn"\nprocessor = "supervised"\n'


@pytest.mark.kafka
def test_a_record_that_crashed_the_daemon_twice_is_a_dead_letter_on_the_next_start(tmp_path, broker, kafka_client):
    # One crash kind per client run: a segfault (ctypes) with librdkafka, os._exit with kafka-python.
    kind, code = ("segv", -signal.SIGSEGV) if kafka_client == "confluent-kafka" else ("die", 13)
    topic = broker.topic()
    good = [{"x": {"a": float(i)}, "y": 0.0} for i in range(400)]
    broker.produce(topic, [*good[:200], {"x": {"a": 1.0, kind: 1}, "y": 0.0}, *good[200:]])
    port = free_port()
    config = write_config(tmp_path / "d.toml", broker, topic, every_events=100, metrics_port=port)
    text = config.read_text()
    # Replaces [learner] and [eval] (a regressor gets its default metric); one crash alone quarantines.
    engine = text[text.index("[engine]") :].replace("[engine]\n", "[engine]\nmax_crashes = 1\n")
    config.write_text(text[: text.index("[learner]")] + CRASHING_LEARNER + engine)
    log = tmp_path / "daemon.log"

    # The record at offset 200 ends the process in its batch, then alone (the batch redone one by one).
    assert [_start(config, log).wait(120) for _ in range(2)] == [code, code]

    proc = _start(config, log)
    try:
        done = wait_for(
            lambda: (m := scrape(port)).get("streamlearn_quarantined_total") == 1 and m.get("streamlearn_consumer_lag_total") == 0 and m,
            timeout=120,
            what="the daemon to quarantine the record and catch up",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert done["streamlearn_dead_letters_total"] == 1

    store = CheckpointStore(tmp_path / "d-checkpoints")
    last = store.list()[-1]
    assert last.events == 401 and last.positions[f"{topic}/0"]["offset"] == 401
    state = store.load_latest().state
    assert state["learner/count"] == 400  # every other event learned exactly once
    assert state["learner/total"][0] == sum(range(400))
    letters = broker.consume(f"{topic}.dlq", 1)
    assert [letter["source"]["offset"] for letter in letters] == [200]
    assert letters[0]["reason"].startswith("quarantined: processing this record alone ended the process 1 times")
    assert json.loads(store.read_side_file(CRASH_FILE))["crashed"] == []  # forgotten once checkpointed past

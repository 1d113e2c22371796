"""Fencing (issue 14, finding 8): a writer that lost its lane cannot write into it, and its slips are never loaded."""

from __future__ import annotations

import json
import signal
import time

import pytest

from streamlearn.connectors.files import open_source
from streamlearn.datasets import dataset_events
from streamlearn.engine.broker import free_port
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.checkpointing import Checkpointer
from streamlearn.engine.config import parse_config
from streamlearn.engine.fence import FENCE_FILE, Fenced, stale_checkpoints
from streamlearn.engine.loop import Engine
from tests.kafka_fixtures import RunningDaemon, reference_hash, scrape, wait_for, write_config
from tests.test_kafka_process import _start, _stored

PHISHING = list(dataset_events("phishing"))
LEARNER = {"name": "tests.poison_learners:HalfUpdate", "processor": "supervised"}


def _member(tmp_path, stream, fenced=True):
    """A learner + engine + checkpointer on the shared store, like one daemon's lane."""
    config = parse_config({"learner": LEARNER})
    learner = config.build_learner()
    processor = config.build_processor(learner)
    source = open_source(stream)
    checkpointer = Checkpointer(CheckpointStore(tmp_path / "lane"), learner, processor, source, every_events=0, every_seconds=0)
    engine = Engine(processor, source, checkpointer=checkpointer, max_crashes=0)
    if fenced:
        checkpointer.take_fence()
    checkpointer.restore()
    return engine, checkpointer


def _learn(engine, n):
    while n > 0:
        done = engine.step(n)
        engine.checkpointer.after_batch(done)
        n -= done


@pytest.fixture
def stream(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"x": {"a": float(i)}, "y": 0.0}) + "\n" for i in range(300)))
    return path


def test_the_older_writer_is_refused_and_writes_nothing(tmp_path, stream):
    old_engine, old = _member(tmp_path, stream)
    _learn(old_engine, 100)
    old.checkpoint()
    _learn(old_engine, 50)  # progress not yet stored when it freezes

    new_engine, new = _member(tmp_path, stream)  # takes the lane over: epoch 2
    assert (new.fence.epoch, new.events_before) == (2, 100)
    _learn(new_engine, 150)
    new.checkpoint()

    before = old.store.list()
    with pytest.raises(Fenced, match=r"another writer took this lane \(epoch 2; this one holds 1\)"):
        old.checkpoint()  # wakes up and tries to store 150 events
    assert old.store.list() == before
    assert old.store.load_latest().metadata["epoch"] == 2
    assert json.loads(old.store.read_side_file(FENCE_FILE))["epoch"] == 2


def test_a_checkpoint_slipped_in_by_an_older_writer_is_never_loaded(tmp_path, stream):
    old_engine, old = _member(tmp_path, stream)
    _learn(old_engine, 150)
    new_engine, new = _member(tmp_path, stream)
    _learn(new_engine, 200)
    new.checkpoint()
    # The old writer checked the fence just before the new one took the lane, then wrote.
    old.fence.check = lambda: None
    slipped = old.checkpoint()
    assert slipped.seq > new.last.seq

    assert stale_checkpoints(new.store) == {slipped.file}
    _, third = _member(tmp_path, stream)
    assert third.events_before == 200  # the newer generation's state, not the later-written older one
    # Without fences (replay, checkpoints from before fencing) nothing is excluded.
    _, unfenced = _member(tmp_path / "other", stream, fenced=False)
    assert unfenced.events_before == 0


@pytest.mark.kafka
def test_a_member_frozen_past_its_session_timeout_writes_nothing_when_it_wakes(tmp_path, broker):
    topic = broker.topic()
    events = PHISHING * 2
    port = free_port()
    settings = {"scope": "partition", "every_events": 10**9, "every_seconds": 3, "group_id": f"{topic}-g", "checkpoints": (tmp_path / "ckpt").as_posix()}
    frozen_config = write_config(tmp_path / "a.toml", broker, topic, metrics_port=port, **settings)
    frozen_config.write_text(frozen_config.read_text().replace("[checkpoint]\n", "[checkpoint]\nkeep = 1000\n"))
    store = CheckpointStore(tmp_path / "ckpt" / f"{topic}-0")
    broker.produce(topic, events[:1000])
    frozen = _start(frozen_config, tmp_path / "a.log")
    taker = None
    try:
        wait_for(lambda: _stored(store) == 1000, timeout=60, what="the first member's checkpoint")
        broker.produce(topic, events[1000:1300])
        wait_for(lambda: scrape(port).get("streamlearn_events_total") == 1300, interval=0.02, what="300 more events learned")
        frozen.send_signal(signal.SIGSTOP)  # before its next time-based checkpoint: 300 events not stored
        assert _stored(store) == 1000

        # Past its session timeout, the partition goes to a new member, which stores more.
        taker = RunningDaemon(write_config(tmp_path / "b.toml", broker, topic, **settings))
        taker.wait_events(1300)
        broker.produce(topic, events[1300:])
        taker.wait_events(len(events))
        wait_for(lambda: _stored(store) == len(events), timeout=30, what="the new owner's checkpoint")

        frozen.send_signal(signal.SIGCONT)  # its 3-second timer is long due: it tries to store its 1,300 events
        woke = wait_for(lambda: _woke((tmp_path / "a.log").read_text()), timeout=30, what="the frozen member to notice")
        time.sleep(2)
        taker.stop()
        taker = None
        frozen.send_signal(signal.SIGTERM)
        assert frozen.wait(30) == 0
    finally:
        frozen.kill()
        if taker is not None:
            taker.stop()

    entries = store.list()
    epochs = [store.read_metadata(e.file)["epoch"] for e in entries]
    assert epochs == sorted(epochs) and len(set(epochs)) >= 2, epochs  # the older generation wrote nothing after the newer one
    assert [e.events for e in entries] == sorted(e.events for e in entries)  # no stale 1,300-event state after 2,500
    assert stale_checkpoints(store) == set()
    last = entries[-1]
    assert last.events == len(events)
    expected_hash, _ = reference_hash(tmp_path, "reference", events)
    assert last.sha256 == expected_hash  # every event in the state exactly once
    print("the frozen member woke up to:", woke)


def _woke(log: str) -> str | None:
    for line in log.splitlines():
        for what in ("fenced out", "partitions lost", "partitions revoked"):
            if f'"{what}' in line and '"learner ready"' not in line:
                return what
    return None

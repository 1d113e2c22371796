"""The ``oer`` processor: event validation, task ends, action queries, state, and an end-to-end replay."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch
from structlog.testing import capture_logs

from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import parse_config
from streamlearn.engine.processor import BadEvent, Item
from streamlearn.engine.processors.oer import OERProcessor
from streamlearn.engine.replay import replay
from streamlearn.learners.base import state_hash, subset
from streamlearn.learners.corl import OER
from streamlearn.learners.corl.pointmass import PointMass, transition_events
from tests.conftest import REPO, write_jsonl

torch.set_num_threads(1)

TINY = {
    "buffer_size": 20,
    "steps_per_task": 10,
    "hidden": 16,
    "batch_size": 32,
    "dynamics_hidden": 16,
    "dynamics_steps": 10,
    "n_models": 3,
    "n_neighbors": 16,
}


@pytest.fixture(scope="module")
def events() -> list[dict]:
    env = PointMass()
    return list(transition_events({f"goal{k}": env.dataset(k, 60, "medium", seed=k) for k in (0, 1)}))


def make_processor(**options) -> OERProcessor:
    return OERProcessor(OER(4, 2, **TINY), options=OERProcessor.Options(**options))


def run(processor: OERProcessor, events: list, start: int = 0) -> tuple[list, list]:
    """Decode and process ``events`` one micro-batch of 16 at a time; (outputs, rejected reasons)."""
    outputs, rejected = [], []
    for offset in range(0, len(events), 16):
        items = []
        for row, event in enumerate(events[offset : offset + 16], start=start + offset):
            try:
                items.append(Item({"row": row}, processor.decode(event), event))
            except BadEvent as exc:
                rejected.append((row, str(exc)))
        outputs += processor.process(items)
        rejected += [(item.position["row"], reason) for item, reason in processor.take_rejected()]
    return outputs, rejected


GOOD = {
    "task": "a",
    "obs": [0.0, 0.0, 0.0, 0.0],
    "action": [0.1, 0.2],
    "reward": 1.0,
    "next_obs": [0, 0, 0, 0.5],
    "done": False,
}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([1, 2], "JSON object"),
        ({**GOOD, "type": "jump"}, "type must be one of"),
        ({**GOOD, "task": ""}, "task must be a non-empty string"),
        ({**GOOD, "task": True}, "task must be a non-empty string or an integer"),
        ({**GOOD, "task": 7.5}, "task must be a non-empty string or an integer"),
        ({**GOOD, "obs": [0.0, 0.0]}, "obs must have 4 values"),
        ({**GOOD, "next_obs": [0.0, 0.0, 0.0, float("nan")]}, "next_obs[3] is not finite"),
        ({**GOOD, "action": [0.1, float("inf")]}, "action[1] is not finite"),
        ({**GOOD, "action": [0.1, "x"]}, "action[1] must be a number"),
        ({k: v for k, v in GOOD.items() if k != "reward"}, "missing field 'reward'"),
        ({**GOOD, "reward": float("nan")}, "reward is not finite"),
        ({**GOOD, "done": 1}, "done must be true or false"),
        ({"type": "act", "task": "a", "obs": [0.0, 0.0, 0.0]}, "obs must have 4 values"),
        ({"type": "task_end"}, "task must be a non-empty string"),
    ],
)
def test_decode_rejects_bad_events(event, reason):
    with pytest.raises(BadEvent) as info:
        make_processor().decode(event)
    assert reason in str(info.value)


def test_task_ends_act_queries_and_learner_refusals(events):
    processor = make_processor()
    query = {"type": "act", "task": "goal0", "obs": [0.1, 0.0, 0.2, 0.0], "id": "q1"}
    stream = [
        query,  # nothing learned about goal0 yet: rejected
        *events[:61],  # goal0 and its task_end
        {"type": "task_end", "task": "goal0"},  # already finished: rejected
        query,
        *events[61:100],  # half of goal1 (no task_end)
    ]
    outputs, rejected = run(processor, stream)
    assert [row for row, _ in rejected] == [0, 62]
    assert "unknown task 'goal0'" in rejected[0][1] and "open task is None" in rejected[1][1]
    finished = [o for o in outputs if o.payload["type"] == "task_finished"]
    summaries = [(o.position["row"], o.payload["task"], o.payload["transitions"], o.payload["buffer"]) for o in finished]
    assert summaries == [(61, "goal0", 60, 20)]
    (answer,) = [o for o in outputs if o.payload["type"] == "action"]
    assert answer.position == {"row": 63} and answer.payload["id"] == "q1"
    assert answer.payload["action"] == processor.learner.predict_one(query)
    # The end of a finite stream finishes the open task.
    (last,) = processor.flush()
    assert last.payload["task"] == "goal1" and last.payload["transitions"] == 39 and last.position == {"row": 102}
    assert processor.metrics() == {"transitions": 99.0, "tasks_finished": 2.0, "actions": 1.0}
    assert list(processor.details()["tasks"]) == ["goal0", "goal1"]
    assert make_processor(finish_on_flush=False).flush() == []


def test_a_task_beyond_max_tasks_is_rejected_without_changing_the_learner(events):
    processor = OERProcessor(OER(4, 2, max_tasks=1, **TINY))
    run(processor, events[:30])
    before = state_hash(processor.learner.state_dict())
    _, rejected = run(processor, [events[70]], start=30)
    assert rejected == [(30, "task 'goal1' would be task 2, but max_tasks=1")]
    assert state_hash(processor.learner.state_dict()) == before


def test_processor_and_learner_state_round_trip_mid_stream(events):
    uninterrupted = make_processor()
    expected, _ = run(uninterrupted, events)
    first = make_processor()
    head, _ = run(first, events[:80])
    restored = make_processor()
    restored.learner.load_state_dict(first.learner.state_dict())
    restored.load_state_dict(first.state_dict())
    tail, _ = run(restored, events[80:], start=80)
    strip = [{k: v for k, v in o.payload.items() if k != "seconds"} for o in expected]
    assert strip == [{k: v for k, v in o.payload.items() if k != "seconds"} for o in head + tail]
    assert state_hash(restored.learner.state_dict()) == state_hash(uninterrupted.learner.state_dict())
    assert state_hash(restored.state_dict()) == state_hash(uninterrupted.state_dict())


def tiny_config(tmp_path, checkpoint: bool = False) -> dict:
    """configs/oer.toml with tiny networks and outputs in tmp_path."""
    data = tomllib.loads((REPO / "configs" / "oer.toml").read_text())
    data["learner"]["params"].update(TINY)
    data["output"] = {"predictions": str(tmp_path / "out.jsonl"), "dead_letters": str(tmp_path / "dead.jsonl")}
    data["engine"]["batch_size"] = 32
    if checkpoint:
        data["checkpoint"] = {"dir": str(tmp_path / "ckpt"), "every_events": 50, "every_seconds": 0}
    return data


def test_replay_of_configs_oer_toml_end_to_end(tmp_path, events):
    lines = [json.dumps(e) for e in events]
    bad = '{"task": "goal0", "obs": [0, 0, NaN, 0], "action": [0, 0], "reward": 0, "next_obs": [0, 0, 0, 0], "done": false}'
    lines.insert(10, bad)
    lines.append(json.dumps({"type": "act", "task": "goal1", "obs": [0.0, 0.0, 0.0, 0.0], "id": 1}))
    path = write_jsonl(tmp_path / "stream.jsonl", lines)
    report = replay(parse_config(tiny_config(tmp_path), env={}), path, tmp_path / "report", progress=False)
    assert report["events"] == len(lines) and report["dead_letters"] == 1
    assert report["final_metrics"] == {"transitions": 120.0, "tasks_finished": 2.0, "actions": 1.0}
    assert list(report["details"]["tasks"]) == ["goal0", "goal1"]
    outputs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(o["type"], o["task"], o["source"]["row"]) for o in outputs] == [
        ("task_finished", "goal0", 61),
        ("task_finished", "goal1", 122),
        ("action", "goal1", 123),
    ]
    (dead,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert "obs[2] is not finite" in dead["reason"]


def test_replay_with_integer_task_ids_learns_every_task_and_logs_its_progress(tmp_path, events):
    """Issue 15 finding 5: integer task ids were all dead letters, and training was silent."""
    numbered = [{**e, "task": int(e["task"][-1])} for e in events]  # goal0 -> 0, goal1 -> 1
    numbered.append({"type": "act", "task": 1, "obs": [0.0, 0.0, 0.0, 0.0], "id": "q"})
    path = write_jsonl(tmp_path / "stream.jsonl", numbered)
    with capture_logs() as logged:
        report = replay(parse_config(tiny_config(tmp_path), env={}), path, tmp_path / "report", progress=False)
    assert report["dead_letters"] == 0
    assert report["final_metrics"] == {"transitions": 120.0, "tasks_finished": 2.0, "actions": 1.0}
    assert list(report["details"]["tasks"]) == ["0", "1"]
    training = [e for e in logged if e.get("event") == "oer task training"]
    # 10 steps per task: a line at the start and after every step (every 10% of 10 steps), for both tasks.
    assert [(e["task"], e["step"]) for e in training] == [(t, k) for t in ("0", "1") for k in range(11)]
    assert all("critic_loss" in e for e in training if e["step"] > 0)
    assert [e["task"] for e in logged if e.get("event") == "oer task finished"] == ["0", "1"]


def test_replay_resumed_from_a_checkpoint_equals_an_uninterrupted_replay(tmp_path, events):
    path = write_jsonl(tmp_path / "stream.jsonl", events)
    full = tmp_path / "full"
    full.mkdir()
    replay(parse_config(tiny_config(full, checkpoint=True), env={}), path, progress=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    config = parse_config(tiny_config(parts, checkpoint=True), env={})
    first = replay(config, path, progress=False, max_records=75)  # stops in the middle of goal1
    assert first["events"] == 75 and not first["completed"]
    second = replay(config, path, progress=False)
    assert second["resumed_from_events"] == 75 and second["completed"]
    a = CheckpointStore(full / "ckpt").load_latest()
    b = CheckpointStore(parts / "ckpt").load_latest()
    assert a.events == b.events == len(events)
    learner_a, learner_b = subset(a.state, "learner/"), subset(b.state, "learner/")
    assert state_hash(learner_a) == state_hash(learner_b)
    restored = OER(4, 2, **TINY)  # a learner comes back from the Parquet checkpoint
    restored.load_state_dict(learner_b)
    obs = np.zeros((3, 4), np.float32)
    assert np.array_equal(restored.act(obs, "goal1"), restored.act(obs, "goal1"))
    assert restored.finished_tasks == ["goal0", "goal1"]

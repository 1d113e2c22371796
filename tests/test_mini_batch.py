"""``[processor] mini_batch``: learners with a mini-batch form predict a batch, then learn it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import ConfigError, parse_config
from streamlearn.engine.processor import Item
from streamlearn.engine.processors.supervised import SupervisedProcessor
from streamlearn.engine.replay import replay
from streamlearn.learners import TorchLearner
from streamlearn.learners.base import state_hash

RIVER = {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}}


class Summer:
    """A regressor with a mini-batch form that logs its calls; ``learn_many`` counts the
    batch, then raises if an event has ``boom`` (a half-done update)."""

    is_classifier = False

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.count = 0
        self.total = np.zeros(1)
        self.calls: list[tuple[str, list[float]]] = []

    def _get_params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def predict_one(self, x: dict) -> float:
        return self.predict_many([x])[0]

    def learn_one(self, x: dict, y: Any = None) -> None:
        self.learn_many([x], [y])

    def predict_many(self, X: list[dict]) -> list[float]:
        self.calls.append(("predict", [x["a"] for x in X]))
        return [float(self.total[0])] * len(X)

    def learn_many(self, X: list[dict], y: list) -> None:
        self.calls.append(("learn", [x["a"] for x in X]))
        self.count += len(X)
        if any("boom" in x for x in X):
            raise RuntimeError("boom")
        self.total += sum(x["a"] for x in X)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.total = np.array(state["total"], dtype=float)


SUMMER = {"name": "tests.test_mini_batch:Summer", "processor": "supervised"}


def events(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = {"a": float(rng.normal()), "b": float(rng.normal()), "c": float(i % 5)}
        out.append(json.dumps({"x": x, "y": bool(x["a"] + x["b"] > 0)}).encode())
    return out


def run(tmp_path, name: str, lines: list[bytes], learner=RIVER, processor=None, max_records=None, **eval_options):
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    config = parse_config(
        {
            "learner": learner,
            "processor": processor or {},
            "engine": {"batch_size": 64},
            "eval": {"history_every": 64, **eval_options},
            "output": {"predictions": str(tmp_path / name / "p.jsonl"), "dead_letters": str(tmp_path / name / "dead.jsonl")},
            "checkpoint": {"dir": str(tmp_path / name / "ckpt"), "every_events": 100},
        },
        env={},
    )
    report = replay(config, path, progress=False, max_records=max_records)
    return report, CheckpointStore(tmp_path / name / "ckpt")


def predictions(tmp_path, name: str) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / name / "p.jsonl").read_text().splitlines()]


def test_a_river_mini_batch_of_one_is_event_by_event(tmp_path):
    """river's mini-batch scaler and logistic regression do the per-event math on one row."""
    lines = events(300)
    per_event, _ = run(tmp_path, "one", lines, metrics=["Accuracy", "LogLoss"])
    batched, _ = run(tmp_path, "batched", lines, processor={"mini_batch": 1}, metrics=["Accuracy", "LogLoss"])
    assert batched["final_metrics"]["Accuracy"] == per_event["final_metrics"]["Accuracy"]
    assert batched["final_metrics"]["LogLoss"] == pytest.approx(per_event["final_metrics"]["LogLoss"], rel=1e-9)
    one, many = predictions(tmp_path, "one"), predictions(tmp_path, "batched")
    assert [p["y_pred"] for p in many] == [p["y_pred"] for p in one]
    assert [p["proba"]["true"] for p in many] == pytest.approx([p["proba"]["true"] for p in one], rel=1e-9)


def test_a_river_mini_batch_learns_well_and_differs_from_per_event(tmp_path):
    lines = events(1200)
    per_event, _ = run(tmp_path, "one", lines)
    batched, _ = run(tmp_path, "batched", lines, processor={"mini_batch": 16})
    assert batched["final_metrics"]["Accuracy"] > 0.9
    # 16 events predicted with the same weights: not the per-event predictions
    assert [p["y_pred"] for p in predictions(tmp_path, "batched")] != [p["y_pred"] for p in predictions(tmp_path, "one")]


def test_torch_mini_batches_are_the_hand_fed_batches(tmp_path):
    params = {"module": "streamlearn.learners.torch_learner:mlp", "module_params": {"n_features": 3, "n_outputs": 2}, "seed": 3}
    lines = events(512)
    _, store = run(tmp_path, "torch", lines, learner={"name": "torch", "params": params}, processor={"mini_batch": 16})
    learner = TorchLearner(**params)
    data = [json.loads(line) for line in lines]
    for start in range(0, len(data), 16):
        batch = data[start : start + 16]
        learner.predict_many([e["x"] for e in batch])
        learner.learn_many([e["x"] for e in batch], [e["y"] for e in batch])
    state = store.load_latest().state
    assert state_hash({k.removeprefix("learner/"): v for k, v in state.items() if k.startswith("learner/")}) == state_hash(learner.state_dict())


def test_each_batch_is_predicted_then_learned_in_order():
    learner = Summer()
    processor = SupervisedProcessor(learner, options=SupervisedProcessor.Options(mini_batch=4))
    items = [Item({"row": i}, ({"a": float(i)}, 0.0, i)) for i in range(10)]
    outputs = processor.process(items)
    batches = [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]
    assert learner.calls == [(call, batch) for batch in batches for call in ("predict", "learn")]
    # a batch is predicted with what the batches before it taught, nothing of its own
    assert [o.payload["y_pred"] for o in outputs] == [0.0] * 4 + [6.0] * 4 + [28.0] * 2


def test_a_bad_event_in_a_batch_is_the_only_dead_letter_and_leaves_no_trace(tmp_path):
    good = [json.dumps({"x": {"a": float(i)}, "y": 0.0}).encode() for i in range(500)]
    bomb = json.dumps({"x": {"a": 1.0, "boom": 1}, "y": 0.0}).encode()
    stream = good[:70] + [bomb] + good[70:]
    report, store = run(tmp_path, "mixed", stream, learner=SUMMER, processor={"mini_batch": 8})
    _, clean = run(tmp_path, "clean", good, learner=SUMMER, processor={"mini_batch": 8})
    letters = [json.loads(line) for line in (tmp_path / "mixed" / "dead.jsonl").read_text().splitlines()]
    assert [(letter["source"]["row"], letter["reason"]) for letter in letters] == [(70, "RuntimeError: boom")]
    assert report["dead_letters"] == 1
    state, clean_state = store.load_latest().state, clean.load_latest().state
    assert state["learner/count"] == clean_state["learner/count"] == len(good)
    assert state["learner/total"][0] == clean_state["learner/total"][0] == sum(range(500))


def test_a_resumed_mini_batch_run_ends_in_the_uninterrupted_state(tmp_path):
    lines = events(700)
    run(tmp_path, "stopped", lines, processor={"mini_batch": 16}, max_records=320)
    _, resumed = run(tmp_path, "stopped", lines, processor={"mini_batch": 16})
    _, straight = run(tmp_path, "straight", lines, processor={"mini_batch": 16})
    assert resumed.list()[-1].events == straight.list()[-1].events == 700
    assert resumed.list()[-1].sha256 == straight.list()[-1].sha256


@pytest.mark.parametrize(
    ("learner", "mini_batch", "eval_options", "message"),
    [
        ({"name": "river", "params": {"model": "tree.HoeffdingTreeClassifier"}}, 8, {}, "has no predict_many or learn_many"),
        (RIVER, 8, {"label_delay": 5}, "cannot wait for delayed labels"),
        (RIVER, -1, {}, "mini_batch must be 0"),
    ],
)
def test_mini_batch_is_refused_where_it_cannot_apply(learner, mini_batch, eval_options, message):
    config = parse_config({"learner": learner, "processor": {"mini_batch": mini_batch}, "eval": eval_options}, env={})
    with pytest.raises(ConfigError, match=message):
        config.build_processor(config.build_learner())

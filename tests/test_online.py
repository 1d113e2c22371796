"""streamlearn.OnlineModel: thread safety, metrics, checkpoints in the engine's format."""

import json
import random
import threading
import time

import pytest
from river import datasets, linear_model, preprocessing

import streamlearn
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import parse_config
from streamlearn.engine.replay import replay
from streamlearn.learners import RiverLearner
from streamlearn.learners.base import state_hash
from streamlearn.engine.checkpointing import state_of


class Recording:
    """A learner that logs, in the order they run, the calls it receives (inside OnlineModel's lock)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.is_classifier, self.kind = inner.is_classifier, inner.kind

    def learn_one(self, x, y=None):
        self.calls.append(("learn", x, y))
        self.inner.learn_one(x, y)

    def predict_one(self, x):
        self.calls.append(("predict", x, None))
        return self.inner.predict_one(x)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def _event(rng):
    x = {"a": rng.random(), "b": rng.random(), "c": rng.random()}
    return x, x["a"] + 0.5 * x["b"] > 0.7


def test_eight_threads_equal_a_serial_run_in_lock_order():
    recording = Recording(RiverLearner.from_estimator(preprocessing.StandardScaler() | linear_model.LogisticRegression()))
    online = streamlearn.OnlineModel(recording)
    learn_calls = [0] * 8

    def worker(index):
        rng = random.Random(index)
        for _ in range(5_000):
            x, y = _event(rng)
            if rng.random() < 0.6:
                online.learn_one(x, y)
                learn_calls[index] += 1
            else:
                online.predict_one(x)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    learned = [(x, y) for kind, x, y in recording.calls if kind == "learn"]
    assert online.events == sum(learn_calls) == len(learned)
    # the calls really interleaved: the learn log switches between threads many times
    owners = [round(x["a"] * 1e12) for x, _ in learned]  # distinct per event; map back to the thread
    by_thread = {}
    for i in range(8):
        rng = random.Random(i)
        for _ in range(5_000):
            x, _ = _event(rng)
            rng.random()
            by_thread[round(x["a"] * 1e12)] = i
    switches = sum(by_thread[a] != by_thread[b] for a, b in zip(owners, owners[1:]))
    assert switches > 8

    serial = streamlearn.OnlineModel(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    for x, y in learned:
        serial.learn_one(x, y)
    assert serial.events == online.events
    assert serial.metrics() == online.metrics()
    assert state_hash(state_of(serial.learner, serial._metrics)) == state_hash(state_of(online.learner, online._metrics))  # metrics() scored what was pending


def test_save_load_keeps_state_events_metrics_and_positions(tmp_path):
    data = list(datasets.Phishing())
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    with streamlearn.OnlineModel(model, checkpoint=tmp_path, metrics=["Accuracy", "LogLoss"]) as online:
        for i, (x, y) in enumerate(data[:500]):
            online.learn_one(x, y, position={"source": {"row": i + 1}})
        online.save()
    restored = streamlearn.OnlineModel.load(tmp_path)
    assert restored.events == 500
    assert restored.positions == {"source": {"row": 500}}
    assert restored.metrics() == online.metrics()
    assert 0.5 < restored.metrics()["Accuracy"] < 1
    probe = [x for x, _ in data[500:700]]
    assert [restored.predict_proba_one(x) for x in probe] == [online.predict_proba_one(x) for x in probe]
    # the library loader reads the same checkpoint
    learner = streamlearn.load_learner(tmp_path)
    assert [learner.predict_one(x) for x in probe] == [online.predict_one(x) for x in probe]
    # and a restored model continues to the same location
    restored.learn_one(*data[500])
    restored.close()
    assert CheckpointStore(tmp_path).list()[-1].events == 501


def test_prediction_given_by_the_caller_is_what_is_scored():
    online = streamlearn.OnlineModel(linear_model.LogisticRegression())
    online.learn_one({"a": 1.0}, True, prediction=False)
    online.learn_one({"a": 1.0}, True, prediction={False: 0.2, True: 0.8})
    online.learn_one({"a": 1.0}, True, prediction=None)  # no prediction: not scored
    assert online.events == 3
    assert online.metrics() == {"Accuracy": 0.5}


def test_background_checkpoints_by_events_and_by_time(tmp_path):
    online = streamlearn.OnlineModel(linear_model.LinearRegression(), checkpoint=tmp_path / "n", every_events=100)
    for i in range(350):
        online.learn_one({"a": i / 350}, i / 100)
    deadline = time.monotonic() + 10
    while CheckpointStore(tmp_path / "n").list()[-1:] == [] or CheckpointStore(tmp_path / "n").list()[-1].events < 300:
        assert time.monotonic() < deadline, "no background checkpoint after 300 events"
        time.sleep(0.02)
    online.close()
    assert CheckpointStore(tmp_path / "n").list()[-1].events == 350
    assert online.metrics()["MAE"] > 0

    timed = streamlearn.OnlineModel(linear_model.LinearRegression(), checkpoint=f"file://{tmp_path}/t", every_seconds=0.2)
    timed.learn_one({"a": 1.0}, 2.0)
    time.sleep(0.8)
    assert [c.events for c in CheckpointStore(tmp_path / "t").list()] == [1]  # only when something changed
    timed.close()
    assert len(CheckpointStore(tmp_path / "t").list()) == 1


def test_a_replay_checkpoint_loads_as_an_online_model(tmp_path, phishing_jsonl):
    config = parse_config(
        {
            "learner": {"name": "river", "params": {"model": "linear_model.LogisticRegression"}},
            "checkpoint": {"dir": str(tmp_path / "ckpt")},
        },
        env={},
    )
    replay(config, phishing_jsonl, progress=False, max_records=400)
    online = streamlearn.OnlineModel.load(tmp_path / "ckpt", checkpoint=None)
    assert online.events == 400
    report = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    assert report["checkpoints"][-1]["events"] == 400
    assert online.positions and online.metrics()["Accuracy"] > 0.5
    assert set(online.metrics()) == {"Accuracy", "Accuracy@1000"}  # the replay's windowed metric came along


def test_careless_use_is_refused_clearly(tmp_path):
    with pytest.raises(TypeError, match="neither a river estimator nor a streamlearn learner"):
        streamlearn.OnlineModel(object())
    with pytest.raises(ValueError, match="need a checkpoint location"):
        streamlearn.OnlineModel(linear_model.LinearRegression(), every_events=10)
    with pytest.raises(ValueError, match="no checkpoint location"):
        streamlearn.OnlineModel(linear_model.LinearRegression()).save()
    with pytest.raises(ValueError, match="no metric 'Acuracy'"):
        streamlearn.OnlineModel(linear_model.LogisticRegression(), metrics=["Acuracy"])

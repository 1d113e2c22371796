"""name = "torch": your own nn.Module, trained test-then-train per micro-batch, checkpointed without pickle."""

import json

import pytest
import torch
from river import datasets

import streamlearn
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.checkpointing import learner_spec, state_of
from streamlearn.engine.config import ConfigError, parse_config
from streamlearn.engine.replay import replay
from streamlearn.learners import TorchLearner
from streamlearn.learners.base import state_hash

MLP = "streamlearn.learners.torch_learner:mlp"


def not_a_module():
    return "a string"


def _phishing():
    return list(datasets.Phishing())


def test_replay_tests_then_trains_each_micro_batch(tmp_path, phishing_jsonl):
    params = {"module": MLP, "module_params": {"n_features": 9, "n_outputs": 2}, "optimizer_params": {"lr": 0.02}}
    config = parse_config(
        {
            "learner": {"name": "torch", "params": params},
            "engine": {"batch_size": 10},
            "eval": {"history_every": 100},
            "output": {"predictions": str(tmp_path / "p.jsonl")},
            "checkpoint": {"dir": str(tmp_path / "ckpt")},
        },
        env={},
    )
    report = replay(config, phishing_jsonl, progress=False)
    assert report["processed"] == 1250 and report["final_metrics"]["Accuracy"] > 0.8
    logged = [json.loads(line)["y_pred"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]

    # the same thing by hand: predict a batch of 10, then one optimiser step on it
    learner = TorchLearner(**params)
    expected = []
    data = _phishing()
    for start in range(0, len(data), 10):
        batch = data[start : start + 10]
        expected += learner.predict_many([x for x, _ in batch])
        learner.learn_many([x for x, _ in batch], [y for _, y in batch])
    assert logged == expected

    loaded = streamlearn.load_learner(tmp_path / "ckpt", learner_class=TorchLearner)
    probe = [x for x, _ in data[:200]]
    assert loaded.predict_proba_many(probe) == learner.predict_proba_many(probe)


def test_a_loaded_learner_predicts_and_continues_exactly(tmp_path):
    data = [(x, x["https"] * 2.0 + x["long_url"]) for x, _ in _phishing()]
    learner = TorchLearner(MLP, {"n_features": 9, "n_outputs": 1, "hidden": [16, 8]}, task="regression", loss="HuberLoss", optimizer="SGD", optimizer_params={"lr": 0.05, "momentum": 0.9})
    for x, y in data[:500]:
        learner.learn_one(x, y)
    CheckpointStore(tmp_path).save(state_of(learner), learner=learner_spec(learner, "torch"))
    loaded = streamlearn.load_learner(tmp_path, learner_class=TorchLearner)
    probe = [x for x, _ in data[500:700]]
    assert loaded.predict_many(probe) == learner.predict_many(probe)
    assert all(isinstance(v, float) for v in loaded.predict_many(probe))
    for x, y in data[500:700]:  # the momentum buffers came back too
        learner.learn_one(x, y)
        loaded.learn_one(x, y)
    assert state_hash(loaded.state_dict()) == state_hash(learner.state_dict())


def test_online_model_holds_a_torch_learner_and_its_batch_methods(tmp_path):
    learner = TorchLearner(MLP, {"n_features": 9, "n_outputs": 2}, optimizer_params={"lr": 0.01})
    data = _phishing()
    with streamlearn.OnlineModel(learner, checkpoint=tmp_path) as online:
        online.learn_many([x for x, _ in data[:600]], [y for _, y in data[:600]])
        for x, y in data[600:900]:
            online.learn_one(x, y)
        assert online.events == 900 and online.metrics()["Accuracy"] > 0.7
        predictions = online.predict_many([x for x, _ in data[900:]])
    restored = streamlearn.OnlineModel.load(tmp_path, learner_class=TorchLearner)
    assert restored.events == 900
    assert restored.predict_many([x for x, _ in data[900:]]) == predictions


def test_loading_a_torch_checkpoint_needs_the_callers_trust(tmp_path):
    learner = TorchLearner(MLP, {"n_features": 2, "n_outputs": 2})
    CheckpointStore(tmp_path).save(state_of(learner), learner=learner_spec(learner, "torch"))
    with pytest.raises(ValueError, match="names code to run .*learner_class=streamlearn.learners.TorchLearner"):
        streamlearn.load_learner(tmp_path)


def test_bad_settings_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown loss 'CrossEntropy'; one of: .*CrossEntropyLoss"):
        TorchLearner(MLP, {"n_features": 2, "n_outputs": 2}, loss="CrossEntropy")
    with pytest.raises(ValueError, match="unknown optimizer 'Adamm'; one of: .*Adam"):
        TorchLearner(MLP, {"n_features": 2, "n_outputs": 2}, optimizer="Adamm")
    with pytest.raises(ValueError, match="optimizer SGD: .*learning_rate"):
        TorchLearner(MLP, {"n_features": 2, "n_outputs": 2}, optimizer="SGD", optimizer_params={"learning_rate": 0.1})
    with pytest.raises(ValueError, match="returned a str, not a torch.nn.Module"):
        TorchLearner("tests.test_torch_learner:not_a_module")
    with pytest.raises(ValueError, match="task must be one of"):
        TorchLearner(MLP, {"n_features": 2, "n_outputs": 2}, task="ranking")
    learner = TorchLearner(MLP, {"n_features": 1, "n_outputs": 2})
    learner.learn_many([{"a": 1.0}, {"a": 2.0}], ["x", "y"])
    with pytest.raises(ValueError, match="more classes than the module has outputs"):
        learner.learn_one({"a": 3.0}, "z")
    assert learner.classes == ["x", "y"]
    fixed = TorchLearner(MLP, {"n_features": 1, "n_outputs": 2}, classes=["x", "y"])
    with pytest.raises(ValueError, match="label 'z' is not one of the classes"):
        fixed.learn_one({"a": 1.0}, "z")
    config = parse_config({"learner": {"name": "torch", "params": {"module": "no.such.module:f"}}}, env={})
    with pytest.raises(ConfigError, match="cannot import 'no.such.module'"):
        config.build_learner()


def test_initial_weights_follow_the_seed_and_leave_the_global_generator_alone():
    before = torch.random.get_rng_state()
    a = TorchLearner(MLP, {"n_features": 3, "n_outputs": 2}, seed=5)
    b = TorchLearner(MLP, {"n_features": 3, "n_outputs": 2}, seed=5)
    c = TorchLearner(MLP, {"n_features": 3, "n_outputs": 2}, seed=6)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert state_hash(a.state_dict()) == state_hash(b.state_dict()) != state_hash(c.state_dict())

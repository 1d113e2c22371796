import json

import pytest

import streamlearn
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import parse_config
from streamlearn.engine.replay import replay
from streamlearn.learners import LAME, RiverLearner


def test_load_learner_from_a_replay_checkpoint(tmp_path, phishing_jsonl):
    config = parse_config(
        {
            "learner": {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}},
            "checkpoint": {"dir": str(tmp_path / "ckpt")},
            "output": {"predictions": str(tmp_path / "p.jsonl")},
        },
        env={},
    )
    replay(config, phishing_jsonl, progress=False, max_records=600)
    learner = streamlearn.load_learner(tmp_path / "ckpt")
    assert isinstance(learner, RiverLearner)
    events = [json.loads(line) for line in phishing_jsonl.read_text().splitlines()]
    # the loaded learner predicts what the replay predicted next, at row 600
    replay(config, phishing_jsonl, progress=False, max_records=1)
    logged = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert logged[-1]["source"]["row"] == 600
    assert learner.predict_one(events[600]["x"]) == logged[-1]["y_pred"]
    newest = CheckpointStore(tmp_path / "ckpt").list()[-1].file
    assert streamlearn.load_learner(tmp_path / "ckpt" / newest).predict_proba_one(events[601]["x"]) is not None


def test_load_learner_refuses_classes_that_are_not_built_in(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save({"learner/w": 1.0}, learner={"class": "os:system", "params": {}})
    with pytest.raises(ValueError, match="not a built-in learner"):
        streamlearn.load_learner(tmp_path)
    with pytest.raises(FileNotFoundError, match="no good checkpoint"):
        streamlearn.load_learner(tmp_path / "empty")


def test_learners_import_from_the_package():
    assert LAME.__name__ == "LAME"
    with pytest.raises(ImportError):
        from streamlearn.learners import NoSuchLearner  # noqa: F401

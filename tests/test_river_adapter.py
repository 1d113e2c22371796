import json
import random

import pytest
from river import anomaly, datasets, ensemble, feature_extraction, linear_model, optim, preprocessing, tree

import streamlearn
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.checkpointing import learner_spec, state_of
from streamlearn.engine.config import parse_config
from streamlearn.engine.replay import replay
from tests.conftest import write_jsonl

from streamlearn.learners.river_adapter import RiverLearner

REGRESSORS = {"linear_model.LinearRegression", "linear_model.PARegressor"}


def _stream(model_name):
    if model_name in REGRESSORS:
        # a numeric target from the phishing features
        return [(x, x["https"] + 0.5 * x["long_url"]) for x, _ in datasets.Phishing()]
    return list(datasets.Phishing())


LINEAR_AND_BAYES = (
    "linear_model.LogisticRegression",
    "linear_model.LinearRegression",
    "linear_model.Perceptron",
    "linear_model.PAClassifier",
    "linear_model.PARegressor",
    "linear_model.SoftmaxRegression",
    "linear_model.ALMAClassifier",
    "naive_bayes.GaussianNB",
    "naive_bayes.MultinomialNB",
    "naive_bayes.BernoulliNB",
    "naive_bayes.ComplementNB",
)


@pytest.mark.parametrize("model", LINEAR_AND_BAYES)
def test_every_supported_model_roundtrips(model):
    pre = [] if "naive_bayes" in model else ["preprocessing.StandardScaler"]
    if model in ("naive_bayes.MultinomialNB", "naive_bayes.ComplementNB"):
        pre = ["preprocessing.MinMaxScaler"]
    learner = RiverLearner(model, preprocessing=pre)
    data = _stream(model)
    for x, y in data[:400]:
        learner.learn_one(x, y)
    restored = RiverLearner(model, preprocessing=pre)
    restored.load_state_dict(learner.state_dict())
    probe = [x for x, _ in data[400:700]]
    assert [learner.predict_one(x) for x in probe] == [restored.predict_one(x) for x in probe]
    # and both continue identically
    for x, y in data[400:700]:
        learner.learn_one(x, y)
        restored.learn_one(x, y)
    assert learner.state_dict() == restored.state_dict()


def test_nested_river_objects_from_tables():
    learner = RiverLearner(
        "linear_model.LogisticRegression",
        model_params={"optimizer": {"class": "optim.Adam", "lr": 0.05}, "l2": 0.001},
    )
    assert type(learner.estimator.optimizer).__name__ == "Adam"
    assert learner.estimator.optimizer.lr.learning_rate == 0.05


def test_bad_models_are_refused_clearly():
    with pytest.raises(ValueError, match="no such model in river: 'linear_model.LogisticRegresion'; did you mean 'linear_model.LogisticRegression'"):
        RiverLearner("linear_model.LogisticRegresion")
    with pytest.raises(ValueError, match="did you mean 'tree.HoeffdingTreeClassifier'"):
        RiverLearner("HoeffdingTreeClassifier")
    with pytest.raises(ValueError, match="preprocessing step 'linear_model.LinearRegression' is not a river transformer"):
        RiverLearner("linear_model.LogisticRegression", preprocessing=["linear_model.LinearRegression"])
    with pytest.raises(ValueError, match="StandardScaler is not a river classifier, regressor or anomaly detector"):
        RiverLearner("preprocessing.StandardScaler")
    with pytest.raises(ValueError, match="linear_model.LogisticRegression.*unexpected keyword"):
        RiverLearner("linear_model.LogisticRegression", model_params={"bogus": 1})
    with pytest.raises(ValueError, match="no such model in river: 'datasets.Phishing'"):
        RiverLearner("datasets.Phishing")


def test_state_of_another_model_is_refused():
    a = RiverLearner("linear_model.LogisticRegression", preprocessing=["preprocessing.StandardScaler"])
    b = RiverLearner("linear_model.LogisticRegression")
    with pytest.raises(ValueError, match="state holds a Pipeline"):
        b.load_state_dict(a.state_dict())


BAGGED_TREES = {
    "class": "ensemble.BaggingClassifier",
    "model": {"class": "tree.HoeffdingTreeClassifier", "grace_period": 50},
    "n_models": 3,
    "seed": 1,
}


def test_a_config_with_nested_parameters_replays_and_loads_identically(tmp_path, phishing_jsonl):
    config = parse_config(
        {
            "learner": {"name": "river", "params": {"model": BAGGED_TREES, "preprocessing": ["preprocessing.StandardScaler"]}},
            "checkpoint": {"dir": str(tmp_path / "ckpt")},
        },
        env={},
    )
    report = replay(config, phishing_jsonl, progress=False, max_records=800)
    assert report["final_metrics"]["Accuracy"] > 0.8
    learner = streamlearn.load_learner(tmp_path / "ckpt")
    trees = learner.estimator.models
    assert len(trees) == 3 and trees[0].grace_period == 50
    # the same model trained in Python predicts exactly what the loaded one does
    python_model = preprocessing.StandardScaler() | ensemble.BaggingClassifier(
        tree.HoeffdingTreeClassifier(grace_period=50), n_models=3, seed=1
    )
    data = list(datasets.Phishing())
    for x, y in data[:800]:
        python_model.learn_one(x, y)
    assert [learner.predict_proba_one(x) for x, _ in data[800:]] == [python_model.predict_proba_one(x) for x, _ in data[800:]]


def test_a_python_pipeline_is_recorded_in_config_form_and_reloads(tmp_path):
    model = (preprocessing.StandardScaler() + feature_extraction.PolynomialExtender()) | linear_model.LogisticRegression(
        optimizer=optim.Adam(0.01)
    )
    learner = RiverLearner.from_estimator(model)
    assert learner.preprocessing[0]["class"] == "compose.TransformerUnion"
    assert learner.model["optimizer"]["class"] == "optim.Adam"
    for x, y in datasets.Phishing().take(300):
        learner.learn_one(x, y)
    CheckpointStore(tmp_path).save(state_of(learner), learner=learner_spec(learner, "river"))
    loaded = streamlearn.load_learner(tmp_path)
    probe = [x for x, _ in datasets.Phishing()][300:500]
    assert [loaded.predict_proba_one(x) for x in probe] == [model.predict_proba_one(x) for x in probe]


def test_an_anomaly_detector_scores_every_event_and_evaluates_optional_labels(tmp_path):
    rng = random.Random(7)
    events = []
    for i in range(600):
        outlier = i % 50 == 49
        x = {"a": rng.random() * (5 if outlier else 1), "b": rng.random()}
        events.append({"id": i, "x": x, **({"y": outlier} if i % 2 else {})})  # half of the events are labelled
    events.append({"id": 600, "x": {"a": 0.5}, "y": "maybe"})
    path = write_jsonl(tmp_path / "events.jsonl", events)
    config = parse_config(
        {
            "learner": {"name": "river", "params": {"model": {"class": "anomaly.HalfSpaceTrees", "window_size": 50, "seed": 1}, "preprocessing": ["preprocessing.MinMaxScaler"]}},
            "output": {"predictions": str(tmp_path / "scores.jsonl"), "dead_letters": str(tmp_path / "dead.jsonl")},
            # exact AUC: river's ROCAUC (the default) buckets scores in 10 thresholds, and these all exceed 0.9
            "eval": {"metrics": ["RollingROCAUC"]},
        },
        env={},
    )
    report = replay(config, path, progress=False)
    assert report["processed"] == 600
    assert 0.7 < report["final_metrics"]["RollingROCAUC"] <= 1.0  # constant or random scores give 0.5
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 600 and all(0.0 <= s["score"] <= 1.0 for s in scores)
    assert "true/false or 1/0" in (tmp_path / "dead.jsonl").read_text()
    # every event was learned, labelled or not: the same detector in Python gives the same last score
    detector = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(window_size=50, seed=1)
    for e in events[:-2]:
        detector.learn_one(e["x"])
    assert detector.score_one(events[-2]["x"]) == scores[-1]["score"]

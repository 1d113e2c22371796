import json

import pytest
from river import datasets, linear_model, metrics, naive_bayes, preprocessing

from streamlearn.learners import river_state


def _train(model, n=300):
    for x, y in datasets.Phishing().take(n):
        model.learn_one(x, y)
    return model


def test_pipeline_roundtrip_keeps_predictions_and_shared_references():
    model = _train(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    restored = river_state.loads(river_state.dumps(model))
    data = list(datasets.Phishing())[300:600]
    assert [model.predict_proba_one(x) for x, _ in data] == [restored.predict_proba_one(x) for x, _ in data]
    # the pipeline's cached plan refers to the same step objects as its steps
    assert restored._last_step_cached is restored.steps["LogisticRegression"]
    for x, y in data:
        model.learn_one(x, y)
        restored.learn_one(x, y)
    assert river_state.dumps(model) == river_state.dumps(restored)


def test_metric_with_shared_confusion_matrix():
    f1 = metrics.F1()
    for y, p in [(True, True), (False, True), (True, False), (True, True)]:
        f1.update(y, p)
    restored = river_state.loads(river_state.dumps(f1))
    assert restored.get() == f1.get()
    assert restored.precision.cm is restored.cm


def test_dict_key_types_survive():
    nb = _train(naive_bayes.GaussianNB(), 50)
    restored = river_state.loads(river_state.dumps(nb))
    assert set(restored.class_counts) == {True, False}


def test_unsupported_object_is_refused_with_its_path():
    from river import tree

    with pytest.raises(river_state.UnsupportedRiverObject, match="HoeffdingTreeClassifier"):
        river_state.dumps(tree.HoeffdingTreeClassifier())


@pytest.mark.parametrize(
    "payload",
    [
        {"obj": "os:system", "id": 0, "attrs": {}},
        {"type": "builtins:eval"},
        {"type": "subprocess:Popen"},
        {"defaultdict": [], "factory": {"type": "os:getcwd"}},
        {"obj": "river.linear_model:__class__", "id": 0, "attrs": {}},
    ],
)
def test_loading_cannot_name_arbitrary_code(payload):
    with pytest.raises(river_state.UnsupportedRiverObject):
        river_state.loads(json.dumps(payload))

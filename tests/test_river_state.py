import json
import random

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
    class Mine:
        pass

    model = linear_model.LogisticRegression()
    model.extra = Mine()
    with pytest.raises(river_state.UnsupportedRiverObject, match=r"model.extra: .*Mine is not in the allow-listed"):
        river_state.dumps(model)


def test_compiled_helpers_slots_and_shared_generators_round_trip():
    from river import drift, forest, preprocessing, tree

    rng = random.Random(3)
    stream = [({"a": rng.random(), "b": rng.random()}, rng.random()) for _ in range(400)]
    detector = drift.ADWIN()  # a Rust helper inside
    scaler = preprocessing.RobustScaler()  # Rust quantiles
    regressor = tree.HoeffdingTreeRegressor(grace_period=50)  # __slots__ nodes (EBST)
    forest_model = forest.ARFClassifier(n_models=3, seed=1)  # ADWIN in every tree, a shared RNG
    for x, y in stream[:300]:
        detector.update(x["a"] + (y if len(stream) > 200 else 0))
        scaler.learn_one(x)
        regressor.learn_one(x, y)
        forest_model.learn_one(x, y > 0.5)
    copies = [river_state.loads(river_state.dumps(m)) for m in (detector, scaler, regressor, forest_model)]
    for original, copy in zip((detector, scaler, regressor, forest_model), copies):
        assert river_state.dumps(copy) == river_state.dumps(original)
    # Continued learning: new leaves get unseeded Gaussians (river's own randomness, never
    # used to predict), so from here on the predictions are compared, not the states.
    for x, y in stream[300:]:
        detector.update(x["a"]), copies[0].update(x["a"])
        assert copies[1].transform_one(x) == scaler.transform_one(x)
        assert copies[2].predict_one(x) == regressor.predict_one(x)
        assert copies[3].predict_proba_one(x) == forest_model.predict_proba_one(x)
        forest_model.learn_one(x, y > 0.5), copies[3].learn_one(x, y > 0.5)
    assert copies[0].width == detector.width and copies[0].n_detections == detector.n_detections


def _encoded_robust_scaler():
    from river import preprocessing

    scaler = preprocessing.RobustScaler()
    scaler.learn_one({"a": 1.0})
    return river_state.dumps(scaler)


@pytest.mark.parametrize(
    "payload",
    [
        {"obj": "os:system", "id": 0, "attrs": {}},
        {"type": "builtins:eval"},
        {"type": "subprocess:Popen"},
        {"defaultdict": [], "factory": {"type": "os:getcwd"}},
        {"obj": "river.linear_model:__class__", "id": 0, "attrs": {}},
        # river modules that read files or build data sets are not allow-listed
        {"obj": "river.datasets.phishing:Phishing", "id": 0, "attrs": {}},
        {"type": "river.stream.iter_csv:iter_csv"},
        {"obj": "river.bandit.datasets.news:NewsArticles", "id": 0, "attrs": {}},
        {"type": "river.evaluate.progressive_validation:progressive_val_score"},
        {"type": "river.utils.pandas:importlib"},
        {"obj": "river.compat.sklearn_to_river:SKL2RiverClassifier", "id": 0, "attrs": {}},
        # something imported into an allowed module is not defined there
        {"type": "river.linear_model.log_reg:optim"},
        {"type": "river.utils.math:math.sqrt"},
        {"defaultdict": [], "factory": {"type": "river.linear_model.base:np.load"}},
        # a function is not a class, a module attribute is neither
        {"obj": "river.utils.math:minkowski_distance", "id": 0, "attrs": {}},
        # compiled helpers: only listed types, numeric arguments, bounded sizes
        {"native": "river._river_rust.vectordict:VectorDict", "args": [], "state": ""},
        {"native": "river._river_rust.stats:RsRollingQuantile", "args": [0.5, 10**12], "state": ""},
        {"native": "river._river_rust.stats:RsQuantile", "args": ["0.5"], "state": ""},
        {"native": "river._river_rust.stats:RsQuantile", "args": [], "state": "bm90IGEgcXVhbnRpbGU="},
        # methods: no dunders, only samplers of random.Random, public str methods
        {"method": "__class__", "self": {"obj": "river.stats.mean:Mean", "id": 0, "attrs": {}}},
        {"method": "seed", "self": {"random": [3, [0] * 625, None]}},
        {"str_method": "__init_subclass__"},
        # slots must be declared, tuples must be named tuples, arrays hold numbers
        {"obj": "river.stats.mean:Mean", "id": 0, "attrs": {}, "slots": {"x": 1}},
        {"tuple_of": "river.stats.mean:Mean", "items": []},
        {"nd": [1], "dtype": "|O", "shape": [1]},
        {"RandomState": ["PCG64", [0] * 624, 0, 0, 0.0]},
    ],
)
def test_loading_cannot_name_arbitrary_code(payload):
    with pytest.raises(river_state.UnsupportedRiverObject):
        river_state.loads(json.dumps(payload))


def test_a_corrupted_compiled_helper_state_is_a_clear_error():
    def natives(node):
        if isinstance(node, dict):
            if "native" in node:
                yield node
            for value in node.values():
                yield from natives(value)
        elif isinstance(node, list):
            for value in node:
                yield from natives(value)

    tree = json.loads(_encoded_robust_scaler())
    for native in natives(tree):
        native["state"] = "AAAA"
    with pytest.raises(river_state.UnsupportedRiverObject, match="RsQuantile: its stored state does not decode"):
        river_state.decode(tree)

"""The supervised processor scores every prediction exactly as river's metrics would."""

from __future__ import annotations

import random

import pytest
from river import compose, linear_model, metrics, preprocessing, utils

from streamlearn.engine.processor import EvalOptions, Item
from streamlearn.engine.processors.supervised import SupervisedProcessor
from streamlearn.learners.river_adapter import RiverLearner


def _events(n: int = 300) -> list[tuple[dict, bool]]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        x = {f"f{i}": rng.gauss(0, 1) for i in range(4)}
        out.append((x, x["f0"] + 0.5 * x["f1"] + rng.gauss(0, 0.5) > 0))
    return out


@pytest.mark.parametrize("emit", [True, False], ids=["with outputs", "without outputs"])
@pytest.mark.parametrize("names", [["Accuracy"], ["Accuracy", "LogLoss"]], ids=["labels only", "labels and probabilities"])
def test_metrics_equal_rivers_own_test_then_train(emit, names):
    learner = RiverLearner("linear_model.LogisticRegression", preprocessing=["preprocessing.StandardScaler"])
    processor = SupervisedProcessor(learner, eval=EvalOptions(metrics=names, window=50), emit=emit)
    events = _events()
    outputs = processor.process([Item({"row": i}, (x, y, i)) for i, (x, y) in enumerate(events)])

    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    expected = {}
    for name in names:
        expected[name] = getattr(metrics, name)()
        expected[f"{name}@50"] = utils.Rolling(getattr(metrics, name), window_size=50)
    for x, y in events:
        proba, y_pred = model.predict_proba_one(x), model.predict_one(x)
        for metric in expected.values():
            metric.update(y, y_pred if metric.requires_labels else proba)
        model.learn_one(x, y)

    assert processor.metrics() == pytest.approx({k: m.get() for k, m in expected.items()})
    assert len(outputs) == (len(events) if emit else 0)

"""Run a river estimator, named in a config, as a streamlearn learner.

Parameters
----------
model
    A river estimator as ``"module.Class"`` relative to ``river``, e.g.
    ``"linear_model.LogisticRegression"``.
model_params
    Keyword arguments for the estimator. A value that is a table with a
    ``class`` key builds a river object, e.g.
    ``{optimizer = {class = "optim.SGD", lr = 0.05}}``.
preprocessing
    Transformers put in front of the model, in order: names
    (``"preprocessing.StandardScaler"``) or tables ``{class = "...", ...params}``.

Supported estimators (their whole state is stored, without pickle, through the
allow-listed codec in :mod:`streamlearn.learners.river_state`, and each has a
round-trip test):

- ``linear_model``: LogisticRegression, LinearRegression, Perceptron,
  PAClassifier, PARegressor, SoftmaxRegression, ALMAClassifier
- ``naive_bayes``: GaussianNB, MultinomialNB, BernoulliNB, ComplementNB
- ``preprocessing`` (as steps): StandardScaler, MinMaxScaler, MaxAbsScaler

``naive_bayes.GaussianNB`` keeps an unseeded random generator in each per-feature
Gaussian (river uses it only for sampling, never for predictions): its state, and
so the checkpoint hash, differs between two runs on the same data even though
the predictions do not.

Any other estimator is refused when the learner is built, with a message that
lists these; trees, neighbours and ensembles hold objects the codec cannot store
without pickle.

Example
-------

>>> from river import datasets
>>> learner = RiverLearner("linear_model.LogisticRegression", preprocessing=["preprocessing.StandardScaler"])
>>> for x, y in datasets.Phishing().take(200):
...     learner.learn_one(x, y)
>>> learner.predict_one(x) == y
True
>>> restored = RiverLearner("linear_model.LogisticRegression", preprocessing=["preprocessing.StandardScaler"])
>>> restored.load_state_dict(learner.state_dict())
>>> restored.predict_proba_one(x) == learner.predict_proba_one(x)
True
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from river import base

from streamlearn.learners import river_state
from streamlearn.learners.base import State

__all__ = ["SUPPORTED_MODELS", "SUPPORTED_PREPROCESSING", "RiverLearner", "build_river_object"]

SUPPORTED_MODELS = (
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
SUPPORTED_PREPROCESSING = (
    "preprocessing.StandardScaler",
    "preprocessing.MinMaxScaler",
    "preprocessing.MaxAbsScaler",
)


def _river_class(name: str) -> type:
    module_name, _, class_name = name.rpartition(".")
    if not module_name:
        raise ValueError(f"{name!r}: name a river class as 'module.Class', e.g. 'linear_model.LogisticRegression'")
    try:
        module = importlib.import_module(f"river.{module_name}")
        cls = getattr(module, class_name)
    except (ImportError, AttributeError):
        raise ValueError(f"river has no {name!r}") from None
    if not isinstance(cls, type):
        raise ValueError(f"river.{name} is not a class")
    return cls


def build_river_object(spec: str | Mapping[str, Any]) -> Any:
    """``"optim.SGD"`` or ``{"class": "optim.SGD", "lr": 0.1}`` → a river object (nested tables too)."""
    if isinstance(spec, str):
        return _river_class(spec)()
    if not isinstance(spec, Mapping) or "class" not in spec:
        raise ValueError(f"expected a river class name or a table with a 'class' key, got {spec!r}")
    params = {k: _param(v) for k, v in spec.items() if k != "class"}
    cls = _river_class(spec["class"])
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"{spec['class']}: {exc}") from None


def _param(value: Any) -> Any:
    if isinstance(value, Mapping) and "class" in value:
        return build_river_object(value)
    return value


class RiverLearner:
    """A river estimator (with optional preprocessing) whose state can be checkpointed."""

    def __init__(
        self,
        model: str,
        model_params: Mapping[str, Any] | None = None,
        preprocessing: Sequence[str | Mapping[str, Any]] | None = None,
    ):
        self.model = model
        self.model_params = dict(model_params or {})
        self.preprocessing = list(preprocessing or [])
        if model not in SUPPORTED_MODELS:
            raise ValueError(
                f"river estimator {model!r} is not supported: its state cannot be checkpointed without pickle. "
                f"Supported: {', '.join(SUPPORTED_MODELS)}"
            )
        steps = []
        for step in self.preprocessing:
            name = step if isinstance(step, str) else step.get("class") if isinstance(step, Mapping) else None
            if name not in SUPPORTED_PREPROCESSING:
                raise ValueError(
                    f"preprocessing step {step!r} is not supported; supported: {', '.join(SUPPORTED_PREPROCESSING)}"
                )
            steps.append(build_river_object(step))
        estimator = build_river_object({"class": model, **self.model_params})
        self.estimator = estimator
        self.pipeline = estimator
        for step in reversed(steps):
            self.pipeline = step | self.pipeline
        self.is_classifier = isinstance(estimator, base.Classifier)
        # Bind the hot-path methods once: the engine calls them for every event.
        self.learn_one = self.pipeline.learn_one
        self.predict_one = self.pipeline.predict_one
        if self.is_classifier:
            self.predict_proba_one = self.pipeline.predict_proba_one

    def _get_params(self) -> dict[str, Any]:
        return {"model": self.model, "model_params": self.model_params, "preprocessing": self.preprocessing}

    def __repr__(self) -> str:
        return f"RiverLearner({self.pipeline!r})"

    def state_dict(self) -> State:
        return {"pipeline": river_state.dumps(self.pipeline)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pipeline = river_state.loads(state["pipeline"])
        if type(pipeline) is not type(self.pipeline):
            raise ValueError(
                f"state holds a {type(pipeline).__name__}, this learner is a {type(self.pipeline).__name__}"
            )
        # Swap the state in while keeping this object's identity (callers hold bound methods).
        self.pipeline = pipeline
        self.estimator = pipeline if not self.preprocessing else list(pipeline.steps.values())[-1]
        self.learn_one = pipeline.learn_one
        self.predict_one = pipeline.predict_one
        if self.is_classifier:
            self.predict_proba_one = pipeline.predict_proba_one

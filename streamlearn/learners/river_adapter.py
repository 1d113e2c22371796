"""Run a river estimator as a streamlearn learner: from a config, or wrapping your own object.

Parameters
----------
model
    A river classifier, regressor or anomaly detector: ``"module.Class"`` relative to
    ``river`` (``"linear_model.LogisticRegression"``) or a table with a ``class`` key and
    its parameters, nested as deep as needed (see :mod:`streamlearn.learners.river_spec`),
    e.g. ``{class = "ensemble.BaggingClassifier", model = {class =
    "tree.HoeffdingTreeClassifier", grace_period = 50}}``.
model_params
    Keyword arguments for the estimator when ``model`` is a name. A value that is a
    table with a ``class`` key builds a river object, e.g.
    ``{optimizer = {class = "optim.SGD", lr = 0.05}}``.
preprocessing
    Transformers put in front of the model, in order: names
    (``"preprocessing.StandardScaler"``) or tables ``{class = "...", ...params}``.

The whole state (the fitted pipeline) is stored without pickle through the
allow-listed codec in :mod:`streamlearn.learners.river_state`; a model the codec
cannot store is refused when the learner is built, with the reason. Anomaly
detectors predict their score (``score_one``) and learn without a label.
:meth:`RiverLearner.from_estimator` wraps a river object built in Python, pipelines
included, and records it in the config form, so ``streamlearn.load_learner`` can
rebuild it from a checkpoint.

A pipeline made only of river's mini-batch steps (``preprocessing.StandardScaler``,
``linear_model.LogisticRegression`` / ``LinearRegression``, ...) also has
``predict_many`` / ``predict_proba_many`` / ``learn_many`` over lists of feature
dicts (river's own take pandas frames), which ``[processor] mini_batch`` uses.

``naive_bayes.GaussianNB`` keeps an unseeded random generator in each per-feature
Gaussian (river uses it only for sampling, never for predictions): its state, and
so the checkpoint hash, differs between two runs on the same data even though
the predictions do not.

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

from collections.abc import Mapping, Sequence
from typing import Any

from river import base, compose

from streamlearn.learners import river_spec, river_state
from streamlearn.learners.base import State

__all__ = ["KINDS", "RiverLearner", "build_river_object", "model_kind"]

#: What ``name = "river"`` runs: the river base class of each kind of model.
KINDS = {"classifier": base.Classifier, "regressor": base.Regressor, "anomaly": base.AnomalyDetector}

build_river_object = river_spec.build

#: river's mini-batch step types: a pipeline of these has ``learn_many`` / ``predict_many``.
_MINI_BATCH = (base.MiniBatchTransformer, base.MiniBatchSupervisedTransformer, base.MiniBatchClassifier, base.MiniBatchRegressor)


def model_kind(estimator: Any) -> str | None:
    """``"classifier"``, ``"regressor"`` or ``"anomaly"`` for a model ``name = "river"`` runs, else None."""
    if isinstance(estimator, base.MultiLabelClassifier | base.MultiTargetRegressor):
        return None
    from river.base.anomaly_detector import AnomalyFilter

    for kind, cls in KINDS.items():
        if isinstance(estimator, cls):
            return kind
    return "anomaly" if isinstance(estimator, AnomalyFilter) else None


def _frame(X: Sequence[Mapping[str, float]]) -> Any:
    """Feature dicts as a pandas frame; a feature an event lacks is 0 there (per event
    river skips it: a mini-batch of events with different feature sets learns differently)."""
    import pandas as pd

    frame = pd.DataFrame(X)
    return frame.fillna(0.0) if frame.isna().values.any() else frame


class RiverLearner:
    """A river estimator (with optional preprocessing) whose state can be checkpointed."""

    def __init__(
        self,
        model: str | Mapping[str, Any],
        model_params: Mapping[str, Any] | None = None,
        preprocessing: Sequence[str | Mapping[str, Any]] | None = None,
    ):
        self.model = model
        self.model_params = dict(model_params or {})
        self.preprocessing = list(preprocessing or [])
        if isinstance(model, Mapping) and self.model_params:
            raise ValueError("give the model's parameters in the model table or in model_params, not both")
        spec = {"class": model, **self.model_params} if isinstance(model, str) else model
        steps = [river_spec.build(step) for step in self.preprocessing]
        for spec_step, step in zip(self.preprocessing, steps, strict=True):
            if not isinstance(step, base.Transformer | base.SupervisedTransformer):
                raise ValueError(f"preprocessing step {spec_step!r} is not a river transformer")
        self._attach(self._compose(steps, river_spec.build(spec)))
        self._check_storable()

    @classmethod
    def from_estimator(cls, estimator: Any) -> RiverLearner:
        """Wrap a river model (a pipeline ending in one included), keeping its learned state."""
        learner = cls.__new__(cls)
        learner._wrap(estimator)
        learner._check_storable()
        return learner

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> RiverLearner:
        """The learner whose :meth:`state_dict` is ``state``, rebuilt from the state alone.

        No constructor runs on stored parameters: ``load_learner`` uses this, so a
        checkpoint's metadata cannot make it build, say, ``sketch.NUnique(error_rate=1e-4)``
        (half a GB) before the state replaces it.
        """
        learner = cls.__new__(cls)
        learner._wrap(river_state.loads(state["pipeline"]))
        return learner

    def _wrap(self, estimator: Any) -> None:
        """Use ``estimator`` and record it in the config form (describing it builds nothing)."""
        *pre, last = estimator.steps.values() if isinstance(estimator, compose.Pipeline) else [estimator]
        for step in pre:
            if not isinstance(step, base.Transformer | base.SupervisedTransformer):
                raise ValueError(f"preprocessing step {type(step).__name__} is not a river transformer")
        self.model, self.model_params = river_spec.describe(last), {}
        self.preprocessing = [river_spec.describe(step) for step in pre]
        self._attach(estimator)

    @staticmethod
    def _compose(steps: list, estimator: Any) -> Any:
        pipeline = estimator
        for step in reversed(steps):
            pipeline = step | pipeline
        return pipeline

    def _attach(self, pipeline: Any) -> None:
        """Use ``pipeline`` and bind its hot-path methods (the engine calls them for every event)."""
        estimator = list(pipeline.steps.values())[-1] if isinstance(pipeline, compose.Pipeline) else pipeline
        kind = model_kind(estimator)
        if kind is None:
            raise ValueError(
                f"{type(estimator).__name__} is not a river classifier, regressor or anomaly detector, "
                "which is what name = 'river' runs"
            )
        self.pipeline, self.estimator, self.kind = pipeline, estimator, kind
        self.is_classifier = kind == "classifier"
        if kind == "anomaly":
            learn = pipeline.learn_one
            self.learn_one = lambda x, y=None: learn(x)
            self.predict_one = pipeline.score_one
        else:
            self.learn_one = pipeline.learn_one
            self.predict_one = pipeline.predict_one
        if self.is_classifier:
            self.predict_proba_one = pipeline.predict_proba_one
        steps = pipeline.steps.values() if isinstance(pipeline, compose.Pipeline) else [pipeline]
        if kind != "anomaly" and all(isinstance(step, _MINI_BATCH) for step in steps):
            self.predict_many, self.learn_many = self._predict_many, self._learn_many
            if self.is_classifier:
                self.predict_proba_many = self._predict_proba_many

    # river's mini-batch methods take and give pandas objects; the engine has lists.

    def _predict_many(self, X: Sequence[Mapping[str, float]]) -> list[Any]:
        return self.pipeline.predict_many(_frame(X)).tolist()

    def _predict_proba_many(self, X: Sequence[Mapping[str, float]]) -> list[dict[Any, float]]:
        return self.pipeline.predict_proba_many(_frame(X)).to_dict("records")

    def _learn_many(self, X: Sequence[Mapping[str, float]], y: Sequence[Any]) -> None:
        import pandas as pd

        self.pipeline.learn_many(_frame(X), pd.Series(y))

    def _check_storable(self) -> None:
        try:
            river_state.encode(self.pipeline)
        except river_state.UnsupportedRiverObject as exc:
            raise ValueError(f"{type(self.estimator).__name__} cannot be checkpointed without pickle: {exc}") from None

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
        self._attach(pipeline)

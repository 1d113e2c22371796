"""Prequential (test-then-train) processing for supervised learners.

Events are ``{"x": {feature: number}, "y": label}`` with optional ``id`` and
``ts``. For each event the learner first predicts, the prediction is scored
against ``y`` with river metrics, then the learner learns ``(x, y)`` — the same
order and the same rule as ``river.evaluate.progressive_val_score`` (an empty
prediction is not scored), so both give identical metrics on the same data.
An event without ``y`` is only predicted. Each output is
``{"source", "id", "y", "y_pred", "proba"?}`` (``id`` and ``y`` when the event has
them), so predictions join back to their events and can be scored on their own.

A learner with ``learns_in_batches = True`` (the torch learner) is tested then
trained per micro-batch: ``predict_many`` over the batch, scoring, then one
``learn_many`` of its labelled events (with a label delay above 1 it goes event by
event).

``[processor] mini_batch = N`` feeds any learner with a mini-batch form
(``predict_many`` and ``learn_many``: river pipelines made of river's mini-batch
transformers and linear models, the torch learner) in batches of at most N
events, prequential order kept: the whole batch is predicted, then learned. A
mini-batch never spans two engine micro-batches (``[engine] batch_size``, cut at
multiples of ``[eval] history_every``), so take N dividing both. When a batch
fails the engine redoes it event by event (batches of one; see
``engine.safepoint``), so a bad event is a dead letter on its own.

An anomaly detector (a river ``AnomalyDetector``, ``learner.kind == "anomaly"``)
scores every event and learns every event, labelled or not: its outputs are
``{"score": s}`` (with ``id`` and ``y`` as above), and an optional ``y`` (true/1 = anomaly, false/0 = normal) only
evaluates the scores (default metric ``ROCAUC``); label delays do not apply.

With ``[eval] label_delay = D`` the label of event i is revealed just before
event i + D is predicted (river's ``delay`` convention, so 0 and 1 are the same):
the prediction is made on arrival, scored and learned when its label arrives.
The waiting events are part of the checkpointed state.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from streamlearn.engine.processor import BadEvent, Item, NonFiniteOutput, Output, Processor, finite_number, numeric_features
from streamlearn.learners import river_state
from streamlearn.learners.base import State

__all__ = ["SupervisedProcessor"]

_BINARY_LABELS = (True, False)  # 1 == True and 0 == False, so 0/1 fit too


class SupervisedProcessor(Processor):
    """Test-then-train over ``{"x", "y"}`` events."""

    event_fields = ("x",)

    @dataclasses.dataclass
    class Options:
        #: Events per ``predict_many`` / ``learn_many`` call (0: event by event, or the
        #: whole micro-batch for a learner that learns in batches).
        mini_batch: int = 0

    def __init__(self, learner: Any, *args: Any, **kwargs: Any):
        self.is_classifier = bool(getattr(learner, "is_classifier", None) or getattr(learner, "_is_classifier", False))
        self.is_anomaly = getattr(learner, "kind", None) == "anomaly"
        self.default_metrics = ("ROCAUC",) if self.is_anomaly else ("Accuracy",) if self.is_classifier else ("MAE", "RMSE")
        #: river's binary classifiers (``_multiclass`` False) learn int(y): only 0/1 labels fit.
        self._binary = self.is_classifier and getattr(getattr(learner, "pipeline", learner), "_multiclass", True) is False
        super().__init__(learner, *args, **kwargs)
        self._use_proba = self.metric_set.needs_proba and hasattr(learner, "predict_proba_one")
        self._mini_batch = self.options.mini_batch
        if self._mini_batch:
            self._check_mini_batch(learner)
        # A learner that learns in batches (torch) is tested then trained per micro-batch.
        self._batched = bool(self._mini_batch) or (getattr(learner, "learns_in_batches", False) and self.eval.label_delay <= 1)
        #: (x, y, y_pred, proba) waiting for their label to be revealed.
        self._delayed: collections.deque = collections.deque()

    def _check_mini_batch(self, learner: Any) -> None:
        if self._mini_batch < 0:
            raise ValueError(f"mini_batch must be 0 (off) or a number of events, got {self._mini_batch}")
        missing = [m for m in ("predict_many", "learn_many") if not callable(getattr(learner, m, None))]
        if missing:
            raise ValueError(f"mini_batch needs a learner with a mini-batch form; {learner!r} has no {' or '.join(missing)}()")
        if self.is_anomaly:
            raise ValueError("mini_batch is for classifiers and regressors, not anomaly detectors")
        if self.eval.label_delay > 1:
            raise ValueError("mini_batch learns each batch right after predicting it, so it cannot wait for delayed labels (eval.label_delay)")

    def decode(self, event: Any) -> tuple[dict, Any, Any]:
        """``(x, y, id)``; y and id None when the event has none."""
        x = numeric_features(event, limits=self.limits)
        y = event.get("y")
        event_id = event.get("id")
        if y is None:
            self.admit_features(x)
            return x, None, event_id
        if self.is_anomaly:
            if y not in (0, 1) or not isinstance(y, int | bool):
                raise BadEvent(f"y of an anomaly detector must be true/false or 1/0 (is it an anomaly?), got {y!r}")
            self.admit_features(x)
            return x, bool(y), event_id
        if self.is_classifier:
            if not isinstance(y, str | int | bool):
                raise BadEvent(f"y must be a class label (string, integer or boolean), got {type(y).__name__}")
            if self._binary and y not in _BINARY_LABELS:
                # Checked here, not left to the learner: river's binary models call int(y)
                # after the pipeline's transformers have already learned x.
                raise BadEvent(f"y must be true/false or 0/1 for a binary classifier, got {y!r}")
        else:
            finite_number(y, "y", self.limits)  # y itself is kept: river sees the label as sent
        self.admit_features(x)  # last: only events that pass every check may grow the vocabulary
        return x, y, event_id

    def process(self, items: list[Item]) -> list[Output]:
        if self.is_anomaly:
            return self._process_anomaly(items)
        if self._batched:
            return self._process_batch(items)
        if not self.emit and not self._use_proba and self.eval.label_delay <= 1:
            self._process_plain(items)
            return []
        return self._process_general(items)

    def _process_plain(self, items: list[Item]) -> None:
        """The common replay case (no outputs, no probabilities, no delay), kept tight."""
        predict_one, learn_one = self.learner.predict_one, self.learner.learn_one
        update = self.metric_set.update_labels
        regressor = not self.is_classifier
        for item in items:
            x, y, _ = item.value
            y_pred = predict_one(x)
            if regressor and type(y_pred) is float and not math.isfinite(y_pred):
                raise NonFiniteOutput(f"the prediction is {y_pred}")
            if y is None:
                continue
            if y_pred is not None and y_pred != {}:
                update(y, y_pred)
            learn_one(x, y)

    def _process_general(self, items: list[Item]) -> list[Output]:
        learner, emit = self.learner, self.emit
        predict_one, learn_one = learner.predict_one, learner.learn_one
        predict_proba_one = learner.predict_proba_one if self._use_proba else None
        update, update_labels = self.metric_set.update, self.metric_set.update_labels
        delay, delayed = self.eval.label_delay, self._delayed
        regressor = not self.is_classifier
        outputs: list[Output] = []
        for item in items:
            x, y, event_id = item.value
            # Labels due by now are revealed before this event is predicted.
            while len(delayed) >= delay > 1:
                self._reveal(*delayed.popleft())
            proba = predict_proba_one(x) if predict_proba_one is not None else None
            y_pred = predict_one(x)
            if regressor and type(y_pred) is float and not math.isfinite(y_pred):
                raise NonFiniteOutput(f"the prediction is {y_pred}")
            if proba and not math.isfinite(sum(proba.values())):
                raise NonFiniteOutput(f"the predicted probabilities are {proba}")
            if emit:
                outputs.append(Output(item.position, _prediction(event_id, y, y_pred, proba)))
            if y is None:
                continue
            if delay > 1:
                delayed.append((x, y, y_pred, proba))
                continue
            if y_pred is not None and y_pred != {}:
                if proba is None:  # the usual case: bound straight to the metrics, no per-metric dispatch
                    update_labels(y, y_pred)
                else:
                    update(y, y_pred, proba)
            learn_one(x, y)
        return outputs

    def _process_batch(self, items: list[Item]) -> list[Output]:
        size = self._mini_batch or len(items)
        outputs: list[Output] = []
        for start in range(0, len(items), size):
            outputs.extend(self._test_then_train(items[start : start + size]))
        return outputs

    def _test_then_train(self, items: list[Item]) -> list[Output]:
        """Predict the whole batch, score it, then learn its labelled events."""
        learner = self.learner
        X = [item.value[0] for item in items]
        predictions = learner.predict_many(X)
        if not self.is_classifier and not math.isfinite(sum(predictions)):
            raise NonFiniteOutput(f"a prediction is not finite: {[p for p in predictions if not math.isfinite(p)][:3]}")
        probas = learner.predict_proba_many(X) if self._use_proba else [None] * len(X)
        outputs: list[Output] = []
        labelled_x, labels = [], []
        for item, y_pred, proba in zip(items, predictions, probas, strict=True):
            x, y, event_id = item.value
            if self.emit:
                outputs.append(Output(item.position, _prediction(event_id, y, y_pred, proba)))
            if y is None:
                continue
            if y_pred is not None and y_pred != {}:
                self.metric_set.update(y, y_pred, proba)
            labelled_x.append(x)
            labels.append(y)
        if labels:
            learner.learn_many(labelled_x, labels)
        return outputs

    def _process_anomaly(self, items: list[Item]) -> list[Output]:
        score_one, learn_one, update = self.learner.predict_one, self.learner.learn_one, self.metric_set.update
        outputs: list[Output] = []
        for item in items:
            x, y, event_id = item.value
            score = score_one(x)
            if self.emit:
                outputs.append(Output(item.position, _identified({"score": score}, event_id, y)))
            if y is not None:
                update(y, score)
            learn_one(x)
        return outputs

    def _reveal(self, x: dict, y: Any, y_pred: Any, proba: Any) -> None:
        if y_pred is not None and y_pred != {}:
            self.metric_set.update(y, y_pred, proba)
        self.learner.learn_one(x, y)

    def flush(self) -> list[Output]:
        # The stream ended: the labels still in flight are revealed now.
        while self._delayed:
            self._reveal(*self._delayed.popleft())
        return []

    def state_dict(self) -> State:
        state = super().state_dict()
        state["delayed"] = river_state.dumps(list(self._delayed))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._delayed = collections.deque(river_state.loads(state["delayed"]))


def _identified(payload: dict[str, Any], event_id: Any, y: Any) -> dict[str, Any]:
    """An output with the event's ``id`` and true ``y`` (when it has them), so predictions
    can be joined back to events and scored without the input at hand."""
    if event_id is not None:
        payload["id"] = event_id
    if y is not None:
        payload["y"] = y
    return payload


def _prediction(event_id: Any, y: Any, y_pred: Any, proba: Any) -> dict[str, Any]:
    payload = {"y_pred": y_pred} if proba is None else {"y_pred": y_pred, "proba": proba}
    return _identified(payload, event_id, y)

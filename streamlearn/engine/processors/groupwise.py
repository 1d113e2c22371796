"""Test-then-train for groupwise-regret experts (:mod:`streamlearn.learners.groupwise`).

Events::

    {"x": {feature: number | bool}, "groups": ["young", "smoker"] (optional),
     "y": number (optional), "id": ... (optional)}

An individual's groups are the ``groups`` list when the event has one, otherwise
the learner's group names whose entry in ``x`` is truthy; ``always_on`` is added
either way. ``y`` must lie in the learner's label range (its ``clip``), because
the experts' losses must lie in [0, 1]. A feature first seen in a labelled event
joins every expert with weight 0 (see the learner); unlabelled events only
predict, ignoring features not learned from yet.

Each event gets one output ``{"y_pred": ..., "groups": [active groups]}`` (plus
``"experts"``, the awake experts' predictions, with ``include_experts = true``,
and the event's ``id`` if it had one). Labelled events are scored with river
metrics (MAE and RMSE by default) and with the per-group regret of
:class:`~streamlearn.learners.groupwise.GroupRegret`: on each group's
subsequence, cumulative squared loss minus the best least-squares fit in
hindsight, from running moments (O(d²) memory per group). ``metrics()`` adds
``max_group_regret``; ``details()`` gives the whole per-group table for the
replay report.

With ``[eval] label_delay = D`` the label is revealed D events later: the
prediction is made on arrival, scored and learned when the label arrives; the
waiting events are part of the checkpointed state.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from streamlearn.engine.processor import BadEvent, Item, Output, Processor, finite_number, numeric_features
from streamlearn.learners.base import State, json_state, load_json_state, subset
from streamlearn.learners.groupwise import GroupRegret

__all__ = ["GroupwiseProcessor"]

_FINE_TYPES = frozenset({float, int, bool})
_STRINGS = frozenset({str})


class _Event(NamedTuple):
    x: dict[str, Any]
    groups: list[str] | None
    y: float | None
    id: Any


class GroupwiseProcessor(Processor):
    """Prequential evaluation of a :class:`~streamlearn.learners.groupwise.GroupwiseRegressor`."""

    event_fields = ("x",)

    @dataclasses.dataclass
    class Options:
        #: Add the awake experts' predictions (by group) to each output.
        include_experts: bool = False

    default_metrics = ("MAE", "RMSE")

    def __init__(self, learner: Any, *args: Any, **kwargs: Any):
        for method in ("extend_features", "encode", "predict_encoded", "learn_encoded", "expert_predictions"):
            if not callable(getattr(learner, method, None)):
                raise TypeError(
                    f"the groupwise processor needs a GroupwiseRegressor-like learner; "
                    f"{type(learner).__name__} has no {method}()"
                )
        super().__init__(learner, *args, **kwargs)
        self._experts = tuple(learner.experts)
        self._declared = frozenset(self._experts[:-1])
        self._lo, self._hi = learner.label_range
        self.regret = GroupRegret(self._experts)
        #: (x, groups, y, y_pred) waiting for their label to be revealed.
        self._delayed: collections.deque = collections.deque()

    # ------------------------------------------------------------------ events

    def decode(self, event: Any) -> _Event:
        if not isinstance(event, dict):
            raise BadEvent(f"an event must be a JSON object, got {type(event).__name__}")
        try:
            x = event.get("x")
            # Fast path for well-formed features; anything else gets numeric_features' precise reason.
            if not (
                isinstance(x, dict)
                and x
                and _FINE_TYPES.issuperset(map(type, x.values()))
                and len(x) <= self.limits.max_features
                and np.abs(np.fromiter(x.values(), dtype=float, count=len(x))).max() <= self.limits.max_feature_abs
            ):
                x = numeric_features(event, limits=self.limits)
                if not x:
                    raise BadEvent("x has no features")
            y = event.get("y")
            if y is not None:
                y = finite_number(y, "y", self.limits)
                if not self._lo <= y <= self._hi:
                    raise BadEvent(f"y = {y} is outside the learner's label range [{self._lo}, {self._hi}]")
        except OverflowError:  # an integer beyond the float range (JSON allows any length)
            raise BadEvent("a number in x or y is too large for a float") from None
        groups = event.get("groups")
        if groups is not None:
            if not isinstance(groups, list) or not _STRINGS.issuperset(map(type, groups)):
                raise BadEvent("groups must be a list of group names (strings)")
            if not self._declared.issuperset(groups):
                unknown = sorted(set(groups) - self._declared)
                raise BadEvent(f"groups names unknown groups {unknown}; the learner's groups are {sorted(self._declared)}")
        self.admit_features(x)
        return _Event(x, groups, y, event.get("id"))

    def process(self, items: list[Item]) -> list[Output]:
        learner, emit, delay, delayed = self.learner, self.emit, self.eval.label_delay, self._delayed
        outputs: list[Output] = []
        for item in items:
            x, groups, y, event_id = item.value
            if y is not None and not delay:
                # New features join with weight 0, so extending first leaves the prediction unchanged.
                learner.extend_features(x)
                v, active = learner.encode(x, groups)
                y_pred = learner.learn_encoded(v, active, y)  # the prediction made before learning
                self._score(v, active, y, y_pred)
            else:
                v, active = learner.encode(x, groups)
                y_pred = learner.predict_encoded(v, active)
                if y is not None:
                    delayed.append((x, groups, y, y_pred))
                    if len(delayed) > delay:
                        self._learn(*delayed.popleft())
            if emit:
                payload: dict[str, Any] = {"y_pred": y_pred, "groups": [self._experts[i] for i in active]}
                if self.options.include_experts:
                    payload["experts"] = learner.expert_predictions(x, groups)
                if event_id is not None:
                    payload["id"] = event_id
                outputs.append(Output(item.position, payload))
        return outputs

    def _learn(self, x: dict[str, Any], groups: list[str] | None, y: float, y_pred: float) -> None:
        """Learn an event whose label was delayed; ``y_pred`` was made when it arrived."""
        self.learner.extend_features(x)
        v, active = self.learner.encode(x, groups)
        self.learner.learn_encoded(v, active, y)
        self._score(v, active, y, y_pred)

    def _score(self, v: Any, active: Any, y: float, y_pred: float) -> None:
        self.regret.update(v, active, y, y_pred)
        self.metric_set.update(y, y_pred)

    def flush(self) -> list[Output]:
        # The stream ended: the labels still in flight are revealed now.
        while self._delayed:
            self._learn(*self._delayed.popleft())
        return []

    # ------------------------------------------------------------------ reporting

    def metrics(self) -> dict[str, float]:
        return {**self.metric_set.values(), "max_group_regret": float(self.regret.regret().max())}

    def details(self) -> dict[str, Any]:
        return {"group_regret": self.regret.table()}

    # ------------------------------------------------------------------ state

    def state_dict(self) -> State:
        return {
            **self.metric_set.state_dict(),
            **{f"regret/{k}": v for k, v in self.regret.state_dict().items()},
            "delayed": json_state([list(entry) for entry in self._delayed]),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.metric_set.load_state_dict(state)
        self.regret.load_state_dict(subset(state, "regret/"))
        self._delayed = collections.deque(tuple(entry) for entry in load_json_state(state["delayed"]))

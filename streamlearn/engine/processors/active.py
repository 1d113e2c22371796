"""The active-learning workflow: predict, ask for some labels, learn the answers when they come.

Events (JSON objects):

- ``{"id": ..., "x": {...}}`` or ``{"id": ..., "x": {...}, "y": label}`` — a new
  example. The learner predicts it (scored prequentially against ``y`` when the
  event carries one) and :meth:`ActiveLearner.query_one` decides whether to ask
  for its label. If it asks, the processor emits a label request
  ``{"type": "label_request", "id", "x"}`` and keeps the request in a bounded
  pending store.
- ``{"id": ..., "y": label}`` — an annotator's answer. It is joined by ``id`` to
  its pending request and learned. An answer whose ``id`` has no pending request
  (unknown, already answered, or expired) is a dead letter.

In replay, the logged ``y`` plays the annotator: when the learner asks for the
label of an event that carries ``y``, that answer arrives ``label_delay`` events
later (``[processor] label_delay``, else ``[eval] label_delay``; 0 learns it at
once), unless an explicit answer event came first. Labels that were not asked
for are never learned.

Time is counted in events handled by this processor (examples and answers). A
request waits at most ``pending_ttl`` events for its answer and at most
``max_pending`` requests wait at once (the oldest expires first). The pending
store and the answers in flight are part of :meth:`ActiveProcessor.state_dict`,
so a label answering a request made before a restart is still joined.

An example without ``id`` and without ``y`` can never be answered, so it is only
predicted: the learner is not asked about it and no budget is spent on it.

Outputs: ``{"type": "prediction", "id", "y_pred"}`` for every example (turn
off with ``predictions = false``) and ``{"type": "label_request", "id", "x"}``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

from streamlearn.engine.processor import BadEvent, Item, Output, Processor, numeric_features
from streamlearn.learners.base import State, json_state, load_json_state

__all__ = ["ActiveProcessor"]

_EXAMPLE, _ANSWER = 0, 1


def _event_id(event: Mapping[str, Any]) -> str | int | None:
    event_id = event.get("id")
    if event_id is not None and (isinstance(event_id, bool) or not isinstance(event_id, str | int)):
        raise BadEvent(f"id must be a string or an integer, got {type(event_id).__name__}")
    return event_id


def _label(event: Mapping[str, Any]) -> Any:
    y = event.get("y")
    if y is not None and not isinstance(y, str | int | bool):
        raise BadEvent(f"y must be a class label (string, integer or boolean), got {type(y).__name__}")
    return y


class ActiveProcessor(Processor):
    """Prequential prediction, label requests and delayed label answers joined by id."""

    event_fields = ("x",)

    @dataclasses.dataclass
    class Options:
        #: Events between a request and its replayed answer (the event's logged ``y``); None: ``[eval] label_delay``.
        label_delay: int | None = None
        #: Events a request waits for its answer before it expires.
        pending_ttl: int = 100_000
        #: Most requests waiting at once; beyond it the oldest expires.
        max_pending: int = 100_000
        #: Emit a prediction output for every example (label requests are always emitted).
        predictions: bool = True

    default_metrics = ("Accuracy", "CohenKappa")

    def __init__(self, learner: Any, *args: Any, **kwargs: Any):
        super().__init__(learner, *args, **kwargs)
        options = self.options
        self.label_delay = self.eval.label_delay if options.label_delay is None else options.label_delay
        for name, value, low in (
            ("label_delay", self.label_delay, 0),
            ("pending_ttl", options.pending_ttl, 1),
            ("max_pending", options.max_pending, 1),
        ):
            if value < low:
                raise ValueError(f"processor.{name} must be at least {low}, got {value}")
        if not callable(getattr(learner, "query_one", None)):
            raise TypeError(f"the active processor needs a learner with query_one(x); got {type(learner).__name__}")
        self.clock = 0
        #: id → (asked at clock, x); insertion order is age order.
        self.pending: collections.OrderedDict[Any, tuple[int, dict]] = collections.OrderedDict()
        #: Replayed answers in flight: (due clock, id, asked at clock, x, y), due clocks non-decreasing.
        self.in_flight: collections.deque[tuple[int, Any, int, dict, Any]] = collections.deque()
        self.counts = collections.Counter()

    # ------------------------------------------------------------------ events

    def decode(self, event: Any) -> tuple[int, Any, dict | None, Any]:
        event_id = _event_id(event)
        y = _label(event)
        if "x" in event:
            x = numeric_features(event, limits=self.limits)
            self.admit_features(x)
            return _EXAMPLE, event_id, x, y
        if event_id is None or y is None:
            raise BadEvent("an event needs 'x' (an example) or 'id' and 'y' (a label answer)")
        return _ANSWER, event_id, None, y

    def process(self, items: list[Item]) -> list[Output]:
        learner, metric_update = self.learner, self.metric_set.update
        predict_proba_one, query_one = learner.predict_proba_one, learner.query_one
        pending, in_flight, counts = self.pending, self.in_flight, self.counts
        emit_predictions = self.emit and self.options.predictions
        delay, ttl, max_pending = self.label_delay, self.options.pending_ttl, self.options.max_pending
        outputs: list[Output] = []
        for item in items:
            kind, event_id, x, y = item.value
            self.clock = clock = self.clock + 1
            while pending and clock - next(iter(pending.values()))[0] > ttl:
                pending.popitem(last=False)
                counts["expired"] += 1
            if kind == _ANSWER:
                entry = pending.pop(event_id, None)
                if entry is None:
                    self.reject(item, f"no pending label request for id {event_id!r} (unknown, already answered or expired)")
                else:
                    self._learn(entry[1], y)
                    counts["answers_joined"] += 1
            elif event_id is not None and event_id in pending:
                self.reject(item, f"id {event_id!r} already has a pending label request")
            else:
                proba = predict_proba_one(x)
                y_pred = max(proba, key=proba.get) if proba else None
                if y is not None and y_pred is not None:
                    metric_update(y, y_pred, proba)
                if emit_predictions:
                    outputs.append(Output(item.position, {"type": "prediction", "id": event_id, "y_pred": y_pred}))
                if event_id is None and y is None:
                    counts["unanswerable"] += 1
                elif query_one(x, proba=proba):
                    counts["requested"] += 1
                    if self.emit:
                        outputs.append(Output(item.position, {"type": "label_request", "id": event_id, "x": x}))
                    if event_id is not None:
                        if len(pending) >= max_pending:
                            pending.popitem(last=False)
                            counts["expired"] += 1
                        pending[event_id] = (clock, x)
                    if y is not None:
                        in_flight.append((clock + delay, event_id, clock, x, y))
            while in_flight and in_flight[0][0] <= clock:
                self._replay_answer(*in_flight.popleft()[1:])
        return outputs

    def _replay_answer(self, event_id: Any, asked_at: int, x: dict, y: Any) -> None:
        """The logged label answers its request, unless the request expired or was answered already."""
        if event_id is not None:
            entry = self.pending.get(event_id)
            if entry is None or entry[0] != asked_at:
                self.counts["replayed_too_late"] += 1
                return
            del self.pending[event_id]
        self._learn(x, y)

    def _learn(self, x: dict, y: Any) -> None:
        self.learner.learn_one(x, y)
        self.counts["learned"] += 1

    def flush(self) -> list[Output]:
        # The stream ended: the replayed answers still in flight arrive now.
        while self.in_flight:
            self._replay_answer(*self.in_flight.popleft()[1:])
        return []

    # ------------------------------------------------------------------ reporting

    def _summary(self) -> dict[str, float]:
        learner, counts = self.learner, self.counts
        seen = getattr(learner, "events_seen", 0)
        asked = getattr(learner, "labels_asked", counts["requested"])
        return {
            "labels_requested": float(counts["requested"]),
            "label_rate": asked / seen if seen else 0.0,
            "labels_learned": float(counts["learned"]),
            "pending": float(len(self.pending)),
            "expired": float(counts["expired"]),
        }

    def metrics(self) -> dict[str, float]:
        return {**self.metric_set.values(), **self._summary()}

    def details(self) -> dict[str, Any]:
        learner = self.learner
        return {
            "active_learning": {
                "strategy": getattr(learner, "strategy", None),
                "budget": getattr(learner, "budget", None),
                "events_seen": getattr(learner, "events_seen", None),
                "labels_asked": getattr(learner, "labels_asked", None),
                "drifts_detected": getattr(learner, "drifts_detected", None),
                "label_delay": self.label_delay,
                **self._summary(),
                "answers_joined": self.counts["answers_joined"],
                "replayed_too_late": self.counts["replayed_too_late"],
                "unanswerable": self.counts["unanswerable"],
            }
        }

    # ------------------------------------------------------------------ state

    def state_dict(self) -> State:
        state = super().state_dict()
        state["clock"] = self.clock
        state["pending"] = json_state([[k, t, x] for k, (t, x) in self.pending.items()])
        state["in_flight"] = json_state([list(answer) for answer in self.in_flight])
        state["counts"] = json_state(dict(self.counts))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.clock = int(state["clock"])
        self.pending = collections.OrderedDict((k, (t, x)) for k, t, x in load_json_state(state["pending"]))
        self.in_flight = collections.deque(tuple(answer) for answer in load_json_state(state["in_flight"]))
        self.counts = collections.Counter(load_json_state(state["counts"]))

"""Stream processing for LAME test-time adaptation (:mod:`streamlearn.learners.lame`).

Events are the outputs of a frozen classifier::

    {"probs": [p_1, ..., p_K] | "logits": [...], "features": [f_1, ..., f_d],
     "y": label (optional), "id": ... (optional)}

``probs`` must be non-negative and sum to 1 (within 1 %); ``logits`` are turned
into probabilities with a softmax. Every event of a stream has the same K and d
(the first event fixes them; a later event that differs goes to the dead
letters). Labels are class indices ``0..K-1``, or the names given in the
``[processor] classes`` option.

Each event gets one output, ``{"y_pred": adapted class, "y_pred_unadapted":
argmax of its probs, "proba": adapted probabilities (unless include_proba =
false), "id": its id if it had one}``. When it comes depends on the learner's
mode: with ``window = None`` the event waits in the pending batch and the whole
batch is answered when its ``batch_size``-th event arrives (a partial batch is
answered by :meth:`flush` at the end of a finite stream); with ``window = W`` it
is answered at once, in the context of the W − 1 events before it. Batch mode
gives each event the context of later events too (the paper's setting, usually
the more accurate) at the cost of up to ``batch_size − 1`` events of latency;
window mode answers immediately but costs one solve per event.

Labelled events are scored (prequential, river metrics; Accuracy by default)
with the adapted prediction when they are answered; the report's details also
give the accuracy of the un-adapted predictions on the same events, so the gain
of the adaptation can be read off directly. ``[eval] label_delay`` does not
apply: LAME learns nothing from labels.

The events waiting for their batch (their positions, ids and labels here, their
probs and features in the learner) are part of the checkpointed state, so a
restart answers them exactly as the uninterrupted run would.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from streamlearn.engine.processor import BadEvent, InputLimits, Item, Output, Processor, number_list
from streamlearn.learners.base import State, json_state, load_json_state

__all__ = ["LAMEProcessor"]

#: How far from 1 the sum of an event's probs may be (rounding in the producer's JSON).
PROBS_SUM_TOLERANCE = 0.01


class _Event(NamedTuple):
    probs: np.ndarray
    features: np.ndarray
    y: Any
    id: Any


def _numbers(event: Mapping[str, Any], field: str, limits: InputLimits) -> np.ndarray:
    values = event.get(field)
    try:
        # Fast path for well-formed lists; anything else gets number_list's precise reason.
        if isinstance(values, list) and values and len(values) <= limits.max_features and set(map(type, values)) <= {float, int}:
            arr = np.array(values, dtype=np.float64)
            if np.abs(arr).max() <= limits.max_feature_abs:  # False for NaN too
                return arr
        number_list(event, field, limits=limits)
    except OverflowError:  # a JSON integer beyond float range
        raise BadEvent(f"{field} has a number too large for a float") from None
    raise BadEvent(f"{field} must be a non-empty list of numbers")


class LAMEProcessor(Processor):
    """Adapts a frozen classifier's outputs with LAME; scores labelled events."""

    @dataclasses.dataclass
    class Options:
        #: Names of the K classes in the order of ``probs``; empty: the class indices.
        classes: list[str | int] = dataclasses.field(default_factory=list)
        #: Put the adapted probabilities in each output.
        include_proba: bool = True

    default_metrics = ("Accuracy",)

    def __init__(self, learner: Any, *args: Any, **kwargs: Any):
        super().__init__(learner, *args, **kwargs)
        self._classes = list(self.options.classes)
        # JSON texts, so that 1 and "1" (or True and 1) are different classes.
        self._class_keys = set(map(json_state, self._classes))
        if len(self._class_keys) != len(self._classes):
            raise ValueError(f"processor.classes has duplicate names: {self._classes}")
        #: (position, id, y, un-adapted class index) of the events the learner still buffers.
        self._pending: collections.deque = collections.deque()
        self._counts = dict.fromkeys(("answered", "labelled", "correct", "correct_unadapted", "changed"), 0)

    # ------------------------------------------------------------------ decoding

    def decode(self, event: Any) -> _Event:
        if not isinstance(event, Mapping):
            raise BadEvent(f"an event must be a JSON object, got {type(event).__name__}")
        if ("probs" in event) == ("logits" in event):
            raise BadEvent("an event needs exactly one of 'probs' and 'logits'")
        if "probs" in event:
            probs = _numbers(event, "probs", self.limits)
            if probs.min() < 0:
                raise BadEvent("probs has negative values")
            total = float(probs.sum())
            if abs(total - 1.0) > PROBS_SUM_TOLERANCE:
                raise BadEvent(f"probs must sum to 1, got {total:.6g}")
        else:
            logits = _numbers(event, "logits", self.limits)
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
        features = _numbers(event, "features", self.limits)
        n_classes = len(self._classes) or self.learner.n_classes
        if n_classes is not None and probs.size != n_classes:
            raise BadEvent(f"{'probs' if 'probs' in event else 'logits'} must have {n_classes} values, got {probs.size}")
        n_features = self.learner.n_features
        if n_features is not None and features.size != n_features:
            raise BadEvent(f"features must have {n_features} values, got {features.size}")
        return _Event(probs, features, self._label(event.get("y")), event.get("id"))

    def _label(self, y: Any) -> Any:
        if y is None:
            return None
        if self._classes:
            if json_state(y) not in self._class_keys:
                raise BadEvent(f"y must be one of the classes {self._classes}, got {y!r}")
            return y
        if isinstance(y, bool) or not isinstance(y, int) or y < 0:
            raise BadEvent(f"y must be a class index (an integer ≥ 0), got {y!r}")
        return y

    # ------------------------------------------------------------------ processing

    def process(self, items: list[Item]) -> list[Output]:
        # Shapes are checked again here: in the stream's first micro-batch,
        # decode did not know K and d yet.
        accepted = []
        n_classes, n_features = self.learner.n_classes, self.learner.n_features
        for item in items:
            event = item.value
            if n_classes is None:
                n_classes, n_features = event.probs.size, event.features.size
            if event.probs.size != n_classes or event.features.size != n_features:
                self.reject(item, f"the stream has K = {n_classes} classes and d = {n_features} features, "
                                  f"this event has K = {event.probs.size}, d = {event.features.size}")
            elif not self._classes and event.y is not None and event.y >= n_classes:
                self.reject(item, f"y = {event.y} is not a class index below K = {n_classes}")
            else:
                accepted.append(item)
        if not accepted:
            return []
        for item in accepted:
            event = item.value
            self._pending.append((item.position, event.id, event.y, int(np.argmax(event.probs))))
        adapted = self.learner.push_many(
            np.stack([item.value.probs for item in accepted]),
            np.stack([item.value.features for item in accepted]),
        )
        return self._answer(adapted)

    def flush(self) -> list[Output]:
        return self._answer(self.learner.flush())

    def _answer(self, adapted: np.ndarray) -> list[Output]:
        """Outputs and scores for the oldest pending events, whose adapted rows are ``adapted``."""
        outputs: list[Output] = []
        if not len(adapted):
            return outputs
        predictions = adapted.argmax(axis=1).tolist()
        needs_proba = self.metric_set.needs_proba
        counts, label = self._counts, self._label_of
        for row, k in zip(adapted, predictions, strict=True):
            position, event_id, y, k_unadapted = self._pending.popleft()
            counts["answered"] += 1
            counts["changed"] += k != k_unadapted
            y_pred, y_unadapted = label(k), label(k_unadapted)
            proba = None
            if needs_proba or (self.emit and self.options.include_proba):
                proba = row.tolist()
            if y is not None:
                counts["labelled"] += 1
                counts["correct"] += y_pred == y
                counts["correct_unadapted"] += y_unadapted == y
                self.metric_set.update(
                    y, y_pred, dict(zip(map(label, range(len(proba))), proba, strict=True)) if needs_proba else None
                )
            if self.emit:
                payload: dict[str, Any] = {"y_pred": y_pred, "y_pred_unadapted": y_unadapted}
                if self.options.include_proba:
                    payload["proba"] = proba
                if event_id is not None:
                    payload["id"] = event_id
                outputs.append(Output(position, payload))
        return outputs

    def _label_of(self, k: int) -> Any:
        return self._classes[k] if self._classes else k

    # ------------------------------------------------------------------ reporting

    def details(self) -> dict[str, Any]:
        c = self._counts
        labelled = c["labelled"]
        learner = self.learner
        return {
            "lame": {
                "mode": "batch" if learner.window is None else "window",
                "affinity": learner.affinity,
                "events_answered": c["answered"],
                "events_pending": len(self._pending),
                "labelled": labelled,
                "accuracy_adapted": c["correct"] / labelled if labelled else None,
                "accuracy_unadapted": c["correct_unadapted"] / labelled if labelled else None,
                "changed_fraction": c["changed"] / c["answered"] if c["answered"] else None,
            }
        }

    # ------------------------------------------------------------------ state

    def state_dict(self) -> State:
        state = super().state_dict()
        state["pending"] = json_state([list(p) for p in self._pending])
        state.update({f"count/{k}": v for k, v in self._counts.items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._pending = collections.deque(tuple(p) for p in load_json_state(state["pending"]))
        self._counts = {k: int(state[f"count/{k}"]) for k in self._counts}

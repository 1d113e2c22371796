"""How events become learner calls: the Processor contract.

The engine loop is the same for every learner: read a micro-batch of records
from a source, decode each record's JSON object, hand the good ones to the
learner family's :class:`Processor`, write what it returns to the output sink.
A processor owns the family-specific part:

- ``decode(event)`` checks one JSON object against the learner's event schema
  and returns what ``process`` needs, or raises :class:`BadEvent` whose message
  is the reason written to the dead-letter sink;
- ``process(items)`` runs the learner on a micro-batch (test-then-train for
  supervised learners) and returns the outputs (predictions, label requests,
  decisions), each tied to the source position of the event that caused it;
- ``metrics()`` gives the running metric values for logs, reports and Prometheus;
- ``state_dict()`` holds what the processor keeps besides the learner (a label
  delay queue, pending label requests, metric state), so that a checkpoint
  captures everything that shapes future learner updates.

Processors take their options from the config's ``[processor]`` table, checked
against their ``Options`` dataclass, and the ``[eval]`` table (:class:`EvalOptions`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from streamlearn.learners import river_state
from streamlearn.learners.base import State

__all__ = [
    "BadEvent",
    "EvalOptions",
    "Item",
    "MetricSet",
    "Output",
    "Processor",
    "finite_number",
    "metric_class",
    "number_list",
    "numeric_features",
    "split_windowed_name",
    "windowed_name",
]


class BadEvent(ValueError):
    """An event that does not fit the learner's schema. The message is the reason."""


@dataclasses.dataclass(slots=True)
class Item:
    """A decoded event and where it came from."""

    position: dict[str, Any]
    value: Any
    #: The event as received (bytes or parsed row), kept for the dead-letter sink.
    raw: Any = None


@dataclasses.dataclass(slots=True)
class Output:
    """Something the learner produced for the event at ``position``."""

    position: dict[str, Any]
    payload: dict[str, Any]


@dataclasses.dataclass
class EvalOptions:
    """The ``[eval]`` table: prequential evaluation."""

    #: river.metrics class names (``"Accuracy"``, ``"LogLoss"``, ``"MAE"``); empty: the processor's default.
    metrics: list[str] = dataclasses.field(default_factory=list)
    #: Events between an event and the moment its label is learned (replay of delayed labels).
    label_delay: int = 0
    #: Record the metric values every this many events for the report's curves.
    history_every: int = 100
    #: Also compute every metric over the last ``window`` scored events (river's
    #: ``utils.Rolling``), reported as ``"<metric>@<window>"`` beside the cumulative
    #: value; 0 turns windowed metrics off. Cumulative values hide drift, windowed ones show it.
    window: int = 1000


def windowed_name(name: str, window: int) -> str:
    """The report / log / Prometheus key of ``name`` computed over the last ``window`` events."""
    return f"{name}@{window}"


def split_windowed_name(key: str) -> tuple[str, int | None]:
    """``"Accuracy@1000"`` → ``("Accuracy", 1000)``; a cumulative name → ``(name, None)``."""
    name, sep, window = key.rpartition("@")
    return (name, int(window)) if sep and window.isdigit() else (key, None)


def metric_class(name: str) -> type:
    """The river.metrics class called ``name``; ValueError with the closest names otherwise."""
    from river import metrics

    cls = getattr(metrics, name, None)
    if isinstance(cls, type) and issubclass(cls, metrics.base.Metric):
        return cls
    known = [n for n in dir(metrics) if isinstance(getattr(metrics, n), type) and issubclass(getattr(metrics, n), metrics.base.Metric)]
    hint = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if not hint:  # "accuracy", "logloss": the case is all that is wrong
        hint = [n for n in known if n.lower() == name.lower()]
    did_you_mean = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
    raise ValueError(f"river.metrics has no metric {name!r}{did_you_mean}")


class MetricSet:
    """river metrics updated together, each cumulative and (with a window) over the
    last ``window`` events through river's ``utils.Rolling``; their state survives
    checkpoints (no pickle)."""

    def __init__(self, names: Sequence[str], window: int = 0):
        from river import utils

        self.names = list(names)
        self.keys: list[str] = []
        self._metrics = []
        for name in self.names:
            cls = metric_class(name)
            self.keys.append(name)
            self._metrics.append(cls())
            if window:  # every river metric can revert an update, which Rolling needs
                self.keys.append(windowed_name(name, window))
                self._metrics.append(utils.Rolling(cls, window_size=window))
        self.needs_proba = any(not getattr(m, "requires_labels", True) for m in self._metrics)

    def update(self, y_true: Any, y_pred: Any, proba: Mapping | None = None) -> None:
        for m in self._metrics:
            m.update(y_true, proba if proba is not None and not m.requires_labels else y_pred)

    @property
    def update_labels(self):
        """An ``update(y_true, y_pred)`` for label-only metrics, bound directly when there is one."""
        if len(self._metrics) == 1:
            return self._metrics[0].update
        if len(self._metrics) == 2:  # one metric, cumulative and windowed: the usual case
            first, second = (m.update for m in self._metrics)

            def update_both(y_true: Any, y_pred: Any) -> None:
                first(y_true, y_pred)
                second(y_true, y_pred)

            return update_both
        metrics = list(self._metrics)

        def update(y_true: Any, y_pred: Any) -> None:
            for m in metrics:
                m.update(y_true, y_pred)

        return update

    def values(self) -> dict[str, float]:
        return {key: float(m.get()) for key, m in zip(self.keys, self._metrics, strict=True)}

    def state_dict(self) -> State:
        return {f"metric/{key}": river_state.dumps(m) for key, m in zip(self.keys, self._metrics, strict=True)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._metrics = [river_state.loads(state[f"metric/{key}"]) for key in self.keys]


class Processor(ABC):
    """Turns decoded events into learner calls and outputs for one learner family."""

    #: Options read from the config's ``[processor]`` table.
    @dataclasses.dataclass
    class Options:
        pass

    #: Metrics used when ``[eval] metrics`` is empty.
    default_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, learner: Any, eval: EvalOptions | None = None, options: Any = None, emit: bool = True):
        self.learner = learner
        self.eval = eval or EvalOptions()
        self.options = options if options is not None else self.Options()
        #: When False the caller does not want outputs (a replay with no output sink).
        self.emit = emit
        self.metric_set = MetricSet(self.eval.metrics or self.default_metrics, self.eval.window)
        self._rejected: list[tuple[Item, str]] = []

    @abstractmethod
    def decode(self, event: Any) -> Any:
        """Check one event (a parsed JSON value) and return what :meth:`process` needs."""

    @abstractmethod
    def process(self, items: list[Item]) -> list[Output]:
        """Run the learner on a micro-batch of decoded events."""

    def reject(self, item: Item, reason: str) -> None:
        """Send ``item`` to the dead-letter sink from inside :meth:`process`.

        For what only the learner can find wrong (a feature set of the wrong size
        for a fitted model, say): the learner must not have been changed by it.
        """
        self._rejected.append((item, reason))

    def take_rejected(self) -> list[tuple[Item, str]]:
        rejected, self._rejected = self._rejected, []
        return rejected

    def flush(self) -> list[Output]:
        """End of a finite stream: finish any pending work (a partial batch, a delayed label)."""
        return []

    def metrics(self) -> dict[str, float]:
        return self.metric_set.values()

    def details(self) -> dict[str, Any]:
        """Extra sections for the replay report (e.g. per-group regret)."""
        return {}

    def state_dict(self) -> State:
        return self.metric_set.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.metric_set.load_state_dict(state)


# --------------------------------------------------------------------------- validation helpers


def finite_number(value: Any, field: str) -> float:
    """``value`` as a float, or BadEvent naming ``field`` if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadEvent(f"{field} must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise BadEvent(f"{field} is too large for a float") from None
    if not math.isfinite(value):
        raise BadEvent(f"{field} is not finite ({value})")
    return value


def numeric_features(event: Mapping[str, Any], field: str = "x") -> dict[str, float]:
    """The event's feature dict; every value a finite number (bools count as 0/1)."""
    x = event.get(field)
    if x is None:
        raise BadEvent(f"missing field {field!r}")
    if not isinstance(x, dict):
        raise BadEvent(f"{field} must be an object of features, got {type(x).__name__}")
    # Fast path in C: sum() refuses anything but numbers (a str, None, a list or a dict
    # raises TypeError, a complex fails isfinite), and a finite sum means no NaN or infinity.
    try:
        if math.isfinite(sum(x.values())):
            return x
    except (TypeError, OverflowError):  # the loop below names the culprit
        pass
    for key, value in x.items():
        if isinstance(value, bool):
            continue
        if not isinstance(value, int | float):
            raise BadEvent(f"{field}[{key!r}] must be a number, got {type(value).__name__}")
        try:
            finite = math.isfinite(value)
        except OverflowError:
            raise BadEvent(f"{field}[{key!r}] is too large for a float") from None
        if not finite:
            raise BadEvent(f"{field}[{key!r}] is not finite ({value})")
    return x


def number_list(event: Mapping[str, Any], field: str, length: int | None = None) -> list[float]:
    """A list of finite numbers (optionally of a fixed length) under ``field``."""
    values = event.get(field)
    if values is None:
        raise BadEvent(f"missing field {field!r}")
    if not isinstance(values, list):
        raise BadEvent(f"{field} must be a list of numbers, got {type(values).__name__}")
    if length is not None and len(values) != length:
        raise BadEvent(f"{field} must have {length} values, got {len(values)}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadEvent(f"{field}[{i}] must be a number, got {type(v).__name__}")
        try:
            finite = math.isfinite(v)
        except OverflowError:
            raise BadEvent(f"{field}[{i}] is too large for a float") from None
        if not finite:
            raise BadEvent(f"{field}[{i}] is not finite ({v})")
    return values

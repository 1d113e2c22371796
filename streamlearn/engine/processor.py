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
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import structlog

from streamlearn.learners import river_state
from streamlearn.learners.base import State

log = structlog.get_logger("streamlearn.engine")

__all__ = [
    "DEFAULT_LIMITS",
    "BadEvent",
    "EvalOptions",
    "InputLimits",
    "Item",
    "MetricSet",
    "NonFiniteOutput",
    "Output",
    "Processor",
    "finite_number",
    "metric_class",
    "number_list",
    "numeric_features",
    "rounded",
    "shown",
    "split_windowed_name",
    "windowed_name",
]


class BadEvent(ValueError):
    """An event that does not fit the learner's schema. The message is the reason."""


class NonFiniteOutput(ArithmeticError):
    """A prediction is NaN or infinite: the learner (or this event) has diverged.

    Raised from ``process``; the engine goes back to the last good state and
    takes out the event responsible (``engine.safepoint``).
    """


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


def rounded(values: Mapping[str, float | None], digits: int = 6) -> dict[str, float | None]:
    """Metric values rounded for a log line; a metric with no data stays None."""
    return {k: None if v is None else round(v, digits) for k, v in values.items()}


def shown(value: float | None, spec: str = ".4g") -> str:
    """A metric value as text; ``n/a`` for a metric with no data yet."""
    return "n/a" if value is None else format(value, spec)


class MetricSet:
    """river metrics updated together, each cumulative and (with a window) over the
    last ``window`` events through river's ``utils.Rolling``; their state survives
    checkpoints (no pickle).

    A metric that has scored nothing yet has no value: :meth:`values` gives None
    for it (river's 0.0 would read as a perfect log loss or a useless accuracy).
    """

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
        #: The state of each metric before any update, and which have been updated since.
        self._empty = [river_state.dumps(m) for m in self._metrics]
        self._scored = [False] * len(self._metrics)

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

    def values(self) -> dict[str, float | None]:
        scored = self._scored
        if not all(scored):  # once a metric has data it keeps it: compared until then only
            for i, m in enumerate(self._metrics):
                scored[i] = scored[i] or river_state.dumps(m) != self._empty[i]
        return {key: float(m.get()) if seen else None for key, m, seen in zip(self.keys, self._metrics, scored, strict=True)}

    def state_dict(self) -> State:
        return {f"metric/{key}": river_state.dumps(m) for key, m in zip(self.keys, self._metrics, strict=True)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._metrics = [river_state.loads(state[f"metric/{key}"]) for key in self.keys]
        self._scored = [False] * len(self._metrics)


class Processor(ABC):
    """Turns decoded events into learner calls and outputs for one learner family."""

    #: Options read from the config's ``[processor]`` table.
    @dataclasses.dataclass
    class Options:
        pass

    #: Metrics used when ``[eval] metrics`` is empty.
    default_metrics: ClassVar[tuple[str, ...]] = ()

    #: Fields every event must have; a flat CSV/Parquet file without such a column
    #: needs ``[input] target`` (which builds ``x`` and ``y`` from the columns).
    event_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, learner: Any, eval: EvalOptions | None = None, options: Any = None, emit: bool = True):
        self.learner = learner
        self.eval = eval or EvalOptions()
        self.options = options if options is not None else self.Options()
        #: When False the caller does not want outputs (a replay with no output sink).
        self.emit = emit
        self.metric_set = MetricSet(self.eval.metrics or self.default_metrics, self.eval.window)
        self._rejected: list[tuple[Item, str]] = []
        #: Bounds on events (the engine sets them from ``[engine]``).
        self.limits = DEFAULT_LIMITS
        #: Feature names of every event decoded so far, for ``max_learner_features`` (None:
        #: not tracked). A bound, not learner state: a rollback keeps it.
        self.vocabulary: set[str] | None = None
        self._cap_logged = False

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

    def admit_features(self, x: Mapping[str, Any]) -> None:
        """BadEvent if ``x`` would take the learner beyond ``max_learner_features`` distinct names.

        river learners grow a weight (or a statistic) per feature name they see, so a
        stream of fresh names would grow the state, and every checkpoint, without end.
        """
        cap = self.limits.max_learner_features
        if not cap:
            return
        known = self.vocabulary
        if known is None:
            known = self.vocabulary = set()
        if x.keys() <= known:
            return
        new = x.keys() - known
        if len(known) + len(new) > cap:
            if not self._cap_logged:  # once: every such event is a dead letter with its reason
                self._cap_logged = True
                log.warning(
                    "learner feature cap reached: events bringing new feature names are dead letters",
                    known=len(known),
                    max_learner_features=cap,
                )
            raise BadEvent(f"x brings {len(new)} new feature names; the learner already knows {len(known)} of engine.max_learner_features = {cap}")
        known.update(new)

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
        state = self.metric_set.state_dict()
        if self.vocabulary is not None:
            state["vocabulary"] = json.dumps(sorted(self.vocabulary))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.metric_set.load_state_dict(state)
        vocabulary = state.get("vocabulary")
        self.vocabulary = set(json.loads(vocabulary)) if isinstance(vocabulary, str) else None


# --------------------------------------------------------------------------- validation helpers


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """Bounds on what one event may bring (the ``[engine]`` table; see docs/security.md).

    ``max_feature_abs``: 1e15 keeps every integer exact in a float64 (2**53 is about
    9e15), admits epoch timestamps in milliseconds and byte counts, and leaves
    squares and sums of squares (scalers, variances, dot products over millions of
    events) hundreds of orders of magnitude below the float overflow at 1.8e308.
    """

    #: Largest absolute value of a feature, a numeric label or a reward.
    max_feature_abs: float = 1e15
    #: Most features in one event.
    max_features: int = 10_000
    #: Most distinct feature names a learner may come to know (0: no cap).
    max_learner_features: int = 100_000


DEFAULT_LIMITS = InputLimits()


def _too_large(value: Any) -> str:
    """How to name a number beyond the bound without converting it (a 400-digit int has no float)."""
    if isinstance(value, int):
        return f"an integer of {int(value.bit_length() * 0.30103) + 1} digits"
    return f"{value:.3g}"


def finite_number(value: Any, field: str, limits: InputLimits = DEFAULT_LIMITS) -> float:
    """``value`` as a float, or BadEvent naming ``field`` if it is not a finite number within the bound."""
    if isinstance(value, bool):
        raise BadEvent(f"{field} must be a number, got bool")
    _check_number(value, field, limits)
    return float(value)


def _check_number(value: Any, name: str, limits: InputLimits) -> None:
    """BadEvent naming ``name`` unless ``value`` is a bool or a finite number within the bound."""
    if isinstance(value, bool):
        return
    if not isinstance(value, int | float):
        raise BadEvent(f"{name} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadEvent(f"{name} is not finite ({value})")
    if abs(value) > limits.max_feature_abs:
        raise BadEvent(f"{name} is {_too_large(value)}, beyond engine.max_feature_abs = {limits.max_feature_abs:g}")


def _bounded(values: Any, limits: InputLimits) -> bool:
    """True when every value is a number (bools count as 0/1), finite and within the bound.

    In C: sum() refuses anything but numbers (a str, None, a list or a dict raise
    TypeError) and a finite sum means no NaN or infinity; max(abs) bounds each one
    (exactly, also for integers too large for a float).
    """
    try:
        return math.isfinite(sum(values)) and max(map(abs, values), default=0) <= limits.max_feature_abs
    except (TypeError, OverflowError):
        return False


def numeric_features(event: Mapping[str, Any], field: str = "x", limits: InputLimits = DEFAULT_LIMITS) -> dict[str, float]:
    """The event's feature dict; at most ``max_features`` values, each a finite number within the bound."""
    x = event.get(field)
    if x is None:
        raise BadEvent(f"missing field {field!r}")
    if not isinstance(x, dict):
        raise BadEvent(f"{field} must be an object of features, got {type(x).__name__}")
    if len(x) > limits.max_features:
        raise BadEvent(f"{field} has {len(x)} features, more than engine.max_features = {limits.max_features}")
    if _bounded(x.values(), limits):
        return x
    for key, value in x.items():
        _check_number(value, f"{field}[{key!r}]", limits)
    return x


def number_list(event: Mapping[str, Any], field: str, length: int | None = None, limits: InputLimits = DEFAULT_LIMITS) -> list[float]:
    """A list of finite numbers within the bound (optionally of a fixed length) under ``field``."""
    values = event.get(field)
    if values is None:
        raise BadEvent(f"missing field {field!r}")
    if not isinstance(values, list):
        raise BadEvent(f"{field} must be a list of numbers, got {type(values).__name__}")
    if length is not None and len(values) != length:
        raise BadEvent(f"{field} must have {length} values, got {len(values)}")
    if len(values) > limits.max_features:
        raise BadEvent(f"{field} has {len(values)} values, more than engine.max_features = {limits.max_features}")
    if _bounded(values, limits) and bool not in map(type, values):
        return values
    for i, v in enumerate(values):
        if isinstance(v, bool):
            raise BadEvent(f"{field}[{i}] must be a number, got bool")
        _check_number(v, f"{field}[{i}]", limits)
    return values

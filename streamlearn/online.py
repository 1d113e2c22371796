"""A learner inside your own service: thread-safe calls, running metrics, background checkpoints.

:class:`OnlineModel` holds one learner behind one lock. Any number of threads may
call ``predict_one`` / ``predict_proba_one`` / ``learn_one`` (and the ``_many``
forms where the learner has them); each call runs whole, in the order the lock
is taken. A background thread checkpoints every ``every_events`` learned events
and/or every ``every_seconds`` seconds to a local directory or any ``pyarrow.fs``
URI, in the same format as ``streamlearn run`` and ``replay`` (``learner/...``
state, ``processor/metric/...`` metric state, the learner's class and parameters),
so :meth:`OnlineModel.load`, ``streamlearn.load_learner`` and the engine read
each other's checkpoints.

Checkpointing takes the lock only while the state is copied (the learner's
``state_dict``); writing and fsyncing happen outside it, so requests wait for the
copy, not for the disk.

Example
-------

>>> import tempfile
>>> from river import linear_model, preprocessing
>>> import streamlearn
>>> directory = tempfile.mkdtemp()
>>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> online = streamlearn.OnlineModel(model, checkpoint=directory)  # add every_events=/every_seconds=
>>> for i in range(300):
...     x = {"a": i % 7, "b": (i * 3) % 5}
...     online.learn_one(x, x["a"] > 3)
>>> online.predict_one({"a": 6, "b": 1})
True
>>> online.close()  # stores what changed since the last checkpoint  # doctest: +ELLIPSIS
20... checkpoint written ... events=300 ...
>>> restored = streamlearn.OnlineModel.load(directory)
>>> restored.events, round(restored.metrics()["Accuracy"], 3)
(300, 0.983)
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from streamlearn.engine.checkpoint import CheckpointInfo, CheckpointStore
from streamlearn.engine.checkpointing import learner_spec, state_of
from streamlearn.engine.processor import MetricSet, split_windowed_name
from streamlearn.engine.registry import LEARNERS
from streamlearn.learners.base import subset

__all__ = ["OnlineModel"]

log = structlog.get_logger("streamlearn.online")

_UNSET: Any = object()

#: Labelled events whose scoring waits for a batch (or for a reader of the metrics).
UNSCORED_BATCH = 1024

#: Running metrics when none are named, by the kind of model.
DEFAULT_METRICS = {"classifier": ("Accuracy",), "regressor": ("MAE",), "anomaly": ("ROCAUC",)}


def _as_learner(model: Any) -> Any:
    """A streamlearn learner for ``model``: river estimators are wrapped, learners kept."""
    from river import base

    if isinstance(model, base.Estimator):
        from streamlearn.learners.river_adapter import RiverLearner

        return RiverLearner.from_estimator(model)
    missing = [m for m in ("learn_one", "predict_one", "state_dict", "load_state_dict") if not hasattr(model, m)]
    if missing:
        raise TypeError(
            f"{type(model).__name__} is neither a river estimator nor a streamlearn learner (it lacks {', '.join(missing)})"
        )
    return model


def _kind(learner: Any) -> str | None:
    kind = getattr(learner, "kind", None)
    if kind is None and hasattr(learner, "is_classifier"):
        kind = "classifier" if learner.is_classifier else "regressor"
    return kind


def _registered_name(learner: Any) -> str | None:
    qualified = f"{type(learner).__module__}:{type(learner).__qualname__}"
    return next((name for name, (path, _) in LEARNERS.items() if path == qualified), None)


class OnlineModel:
    """A learner that many threads can use at once, with running metrics and background checkpoints.

    Parameters
    ----------
    model
        A river classifier, regressor or anomaly detector (a pipeline ending in one
        included), a torch learner or any streamlearn learner.
    checkpoint
        Where checkpoints go: a local directory or a ``pyarrow.fs`` URI
        (``s3://bucket/prefix``). None: only in memory.
    every_events, every_seconds
        Checkpoint in the background after this many learned events and/or this many
        seconds with new events (0 disables a trigger). :meth:`save` checkpoints now.
    metrics
        river.metrics class names, updated by every labelled ``learn_one``. Default:
        ``Accuracy`` for classifiers, ``MAE`` for regressors, ``ROCAUC`` for anomaly
        detectors.
    window
        Also keep each metric over the last ``window`` scored events (``"Accuracy@1000"``),
        as the engine's reports do; 0 (the default) keeps only the cumulative ones.
    keep
        Checkpoints retained at the location.
    on_checkpoint
        Called with the manifest entry after each checkpoint is durable (background or
        :meth:`save`), e.g. to drop a write-ahead log up to ``info.positions``.

    ``learn_one(x, y, prediction=p)`` scores ``p`` (what ``predict_one`` or
    ``predict_proba_one`` returned earlier, e.g. when the label arrives later);
    without it the model predicts first (test-then-train). ``position`` records where
    in your source this event came from; checkpoints store the positions, and
    :meth:`load` returns them.
    """

    def __init__(
        self,
        model: Any,
        checkpoint: str | os.PathLike | None = None,
        *,
        every_events: int = 0,
        every_seconds: float = 0.0,
        metrics: Sequence[str] | None = None,
        window: int = 0,
        keep: int = 5,
        on_checkpoint: Callable[[CheckpointInfo], None] | None = None,
    ):
        if every_events < 0 or every_seconds < 0:
            raise ValueError("every_events and every_seconds must be ≥ 0 (0 disables the trigger)")
        if (every_events or every_seconds) and checkpoint is None:
            raise ValueError("every_events / every_seconds need a checkpoint location")
        self.learner = _as_learner(model)
        self.kind = _kind(self.learner)
        self._metrics = MetricSet(list(metrics) if metrics else DEFAULT_METRICS.get(self.kind, ()), window=window)
        self.events = 0
        self.positions: dict[str, Any] = {}
        self.store = None if checkpoint is None else CheckpointStore(checkpoint, keep=keep)
        self.every_events, self.every_seconds = every_events, every_seconds
        self.last_checkpoint: CheckpointInfo | None = None
        self.on_checkpoint = on_checkpoint
        #: The last error of a background checkpoint (it is also logged); None once one succeeds.
        self.checkpoint_error: BaseException | None = None
        self._spec = learner_spec(self.learner, _registered_name(self.learner))
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._mark_saved(0)
        self._due = threading.Event()
        self._closed = False
        self._thread = None
        if self.store is not None and (every_events or every_seconds):
            self._thread = threading.Thread(target=self._checkpoint_loop, name="streamlearn-checkpoint", daemon=True)
            self._thread.start()
        # Bound once: they are the hot path.
        self._predict = self.learner.predict_one
        self._learn = self.learner.learn_one
        self._unscored: list[tuple[Any, Any]] = []
        self._needs_proba = self._metrics.needs_proba and hasattr(self.learner, "predict_proba_one")

    # ------------------------------------------------------------------ predictions

    def predict_one(self, x: Any) -> Any:
        with self._lock:
            return self._predict(x)

    def predict_proba_one(self, x: Any) -> Any:
        with self._lock:
            return self.learner.predict_proba_one(x)

    def predict_many(self, X: Any) -> Any:
        with self._lock:
            return self.learner.predict_many(X)

    # ------------------------------------------------------------------ learning

    def learn_one(self, x: Any, y: Any = None, *, prediction: Any = _UNSET, position: Mapping[str, Any] | None = None) -> None:
        """Learn one event; with a label, score ``prediction`` (or a fresh one) first."""
        with self._lock:
            if y is not None:
                if prediction is _UNSET:
                    prediction = self.learner.predict_proba_one(x) if self._needs_proba else self._predict(x)
                if prediction is not None:
                    # Scored in batches: appending here is cheaper than a river metric update,
                    # and every reader (metrics(), save()) scores what is pending first.
                    self._unscored.append((y, prediction))
                    if len(self._unscored) >= UNSCORED_BATCH:
                        self._score_pending()
            self._learn(x, y)
            self.events += 1
            if position:
                self.positions.update(position)
            if self.events >= self._due_at:
                self._due.set()

    def learn_many(self, X: Any, y: Any = None) -> None:
        """The learner's own batch update (not scored), counted as ``len(X)`` events."""
        with self._lock:
            self.learner.learn_many(X, y)
            self.events += len(X)
            if self.events >= self._due_at:
                self._due.set()

    def _score_pending(self) -> None:
        """Update the metrics with the pending (label, prediction) pairs, in order (under the lock)."""
        update = self._metrics.update
        for y, prediction in self._unscored:
            if isinstance(prediction, Mapping):  # probabilities: the label is the likeliest class
                if prediction:
                    update(y, max(prediction, key=prediction.get), prediction)
            else:
                update(y, prediction)
        self._unscored.clear()

    def metrics(self) -> dict[str, float]:
        """The running metric values."""
        with self._lock:
            self._score_pending()
            return self._metrics.values()

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> CheckpointInfo:
        """Checkpoint now (whatever the triggers) and return the manifest entry."""
        if self.store is None:
            raise ValueError("this OnlineModel has no checkpoint location")
        with self._save_lock:
            with self._lock:
                self._score_pending()
                state = state_of(self.learner, self._metrics)
                events, positions, metrics = self.events, dict(self.positions), self._metrics.values()
            info = self.store.save(state, events=events, positions=positions, learner=self._spec, metrics=metrics)
            self._mark_saved(events)
            self.last_checkpoint, self.checkpoint_error = info, None
            if self.on_checkpoint is not None:
                self.on_checkpoint(info)
            return info

    def _mark_saved(self, events: int) -> None:
        """The state up to ``events`` is stored: the next event trigger is ``every_events`` later."""
        self._saved_events = events
        self._due_at = events + self.every_events if self.every_events else math.inf

    def _checkpoint_loop(self) -> None:
        while True:
            self._due.wait(timeout=self.every_seconds or None)
            self._due.clear()
            if self._closed:
                return
            if self.events == self._saved_events:
                continue
            try:
                self.save()
            except Exception as exc:  # noqa: BLE001 — a failed checkpoint must not kill the service
                self.checkpoint_error = exc
                log.error("background checkpoint failed; retrying at the next trigger", error=str(exc))
                time.sleep(min(self.every_seconds or 1.0, 1.0))

    def close(self) -> None:
        """Stop the background thread and store what changed since the last checkpoint."""
        if self._closed:
            return
        self._closed = True
        self._due.set()
        if self._thread is not None:
            self._thread.join()
        if self.store is not None and self.events != self._saved_events:
            self.save()

    def __enter__(self) -> OnlineModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @classmethod
    def load(
        cls,
        location: str | os.PathLike,
        *,
        learner_class: type | None = None,
        checkpoint: str | os.PathLike | None = _UNSET,
        every_events: int = 0,
        every_seconds: float = 0.0,
        keep: int = 5,
        on_checkpoint: Callable[[CheckpointInfo], None] | None = None,
    ) -> OnlineModel:
        """The model of the latest good checkpoint at ``location`` (a ``.parquet`` file or a store).

        It continues checkpointing to ``location`` when that is a store (pass ``checkpoint``
        to change that); ``.events``, :meth:`metrics` and ``.positions`` are the
        checkpoint's. A checkpoint written by ``streamlearn run`` or ``replay`` loads too.
        """
        from streamlearn.api import learner_from_checkpoint, read_latest

        stored = read_latest(location)
        learner = learner_from_checkpoint(stored, learner_class)
        if checkpoint is _UNSET:
            checkpoint = None if os.fspath(location).endswith(".parquet") else location
        metric_keys = [split_windowed_name(key) for key in subset(stored.state, "processor/metric/")]
        names = [name for name, window in metric_keys if window is None]
        windows = {window for _, window in metric_keys if window is not None}
        model = cls(
            learner,
            checkpoint,
            every_events=every_events,
            every_seconds=every_seconds,
            metrics=names or None,
            window=windows.pop() if len(windows) == 1 else 0,
            keep=keep,
            on_checkpoint=on_checkpoint,
        )
        if names:
            model._metrics.load_state_dict(subset(stored.state, "processor/"))
        model.events = stored.events
        model._mark_saved(stored.events)
        model.positions = dict(stored.positions)
        return model

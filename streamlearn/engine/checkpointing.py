"""When and in what order the engine checkpoints, and how it resumes.

:class:`Checkpointer` owns the order of a checkpoint. It is what makes the
learner state reflect every event exactly once however the process dies:

0. **check the state** — the engine's guard (``Engine.guard``) takes out of the
   state any event that left NaN or infinity in it (a dead letter each), so a
   diverged learner is never stored;
1. **flush the sinks** — outputs and dead letters of every event in the state
   are durable before the state that includes those events is (outputs are
   at-least-once: a crash before step 2 re-emits them on restart);
2. **write the checkpoint** — learner state, processor state and the source
   positions *after* the last processed event, in one atomic Parquet file; once
   it and the manifest naming it are durable, the store deletes checkpoints
   beyond ``keep`` (a newer good one exists, so this may precede step 3);
3. **commit the source** — only now may Kafka's group offsets move (they serve
   lag monitoring; a restart seeks to the checkpoint's positions, not to them).

A kill between any two steps leaves the previous checkpoint and its positions
consistent, so the restarted process redoes exactly the events after them.

On start, :meth:`restore` loads the latest good checkpoint (falling back past
corrupt ones), loads the learner and processor state and seeks the source to
the stored positions. A Kafka source also gets back the fingerprints of the last
records taken (metadata key ``fingerprints``), to recognise a recreated topic.
The daemon fences each lane (:mod:`streamlearn.engine.fence`): step 2 first checks
that no newer owner took the lane, and records this writer's epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from streamlearn.connectors.base import Sink, Source
from streamlearn.engine.checkpoint import Checkpoint, CheckpointInfo, CheckpointStore
from streamlearn.engine.fence import Fence, stale_checkpoints
from streamlearn.learners.base import state_hash, subset
from streamlearn.redact import redact

__all__ = ["Checkpointer", "learner_spec", "state_of"]

log = structlog.get_logger("streamlearn.checkpointing")


def state_of(learner: Any, processor: Any = None) -> dict[str, Any]:
    """The combined state a checkpoint stores: ``learner/...`` and ``processor/...`` entries."""
    state = {f"learner/{k}": v for k, v in learner.state_dict().items()}
    if processor is not None:
        state.update({f"processor/{k}": v for k, v in processor.state_dict().items()})
    return state


def learner_spec(learner: Any, name: str | None = None, params: dict | None = None) -> dict[str, Any]:
    """What a checkpoint records about the learner: its class and its (JSON) parameters.

    Parameters named like secrets are redacted (:mod:`streamlearn.redact`): a
    checkpoint store is read by more people than the config is.
    """
    cls = type(learner)
    if params is None:
        get_params = getattr(learner, "_get_params", None)
        params = get_params() if callable(get_params) else {}
    return {
        "name": name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "params": redact(_jsonable(params)),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


class Checkpointer:
    """Checkpoints every ``every_events`` events and/or ``every_seconds`` seconds, and at the end.

    Parameters
    ----------
    store
        Where checkpoints go.
    learner, processor
        Whose state is stored.
    source
        Provides ``positions()`` and ``seek()``; ``commit(positions)`` if it has one.
    sinks
        Flushed before each checkpoint (None entries are ignored).
    every_events, every_seconds
        0 disables that trigger.
    spec
        Learner class and parameters for the metadata (see :func:`learner_spec`).
    """

    def __init__(
        self,
        store: CheckpointStore,
        learner: Any,
        processor: Any,
        source: Source,
        *,
        sinks: Sequence[Sink | None] = (),
        every_events: int = 10_000,
        every_seconds: float = 60.0,
        spec: dict[str, Any] | None = None,
    ):
        self.store = store
        self.learner = learner
        self.processor = processor
        self.source = source
        self.sinks = [s for s in sinks if s is not None]
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.spec = spec or learner_spec(learner)
        #: Events already in the state when this run started (from the restored checkpoint).
        self.events_before = 0
        self.events = 0
        self.written = 0
        self.last: CheckpointInfo | None = None
        self.last_time = time.monotonic()
        self.last_duration = 0.0
        self._since = 0
        #: Returns the state to store, checked healthy (the engine's ``guard``); None: stored as is.
        self.guard: Callable[[], dict[str, Any]] | None = None
        #: False: a run that read no event at all writes no checkpoint at the end (a
        #: replay of an empty input); the daemon keeps True (its positions matter).
        self.store_if_empty = True
        #: Returns more metadata (JSON values) for each checkpoint, taken after the guard
        #: (the replay stores its fingerprints, metric history and counters there).
        self.metadata: Callable[[], dict[str, Any]] | None = None
        #: The engine's :class:`~streamlearn.engine.quarantine.CrashGuard` (None: none).
        self.crash_guard: Any = None
        #: The lane's :class:`~streamlearn.engine.fence.Fence` once :meth:`take_fence` was called (the daemon).
        self.fence: Fence | None = None

    @classmethod
    def from_config(cls, config: Any, learner: Any, processor: Any, source: Source, sinks: Sequence[Sink | None] = ()) -> Checkpointer:
        store = CheckpointStore(config.checkpoint.dir, keep=config.checkpoint.keep, max_bytes=config.checkpoint.max_bytes)
        return cls(
            store,
            learner,
            processor,
            source,
            sinks=sinks,
            every_events=config.checkpoint.every_events,
            every_seconds=config.checkpoint.every_seconds,
            spec=learner_spec(learner, config.learner.name, config.learner.params),
        )

    # ------------------------------------------------------------------ resume

    def take_fence(self) -> int:
        """Become the store's writer (a new epoch): from now on a newer writer fences this one out."""
        if self.fence is None:
            self.fence = Fence(self.store)
        return self.fence.take()

    def restore(self, check: Callable[[Checkpoint], None] | None = None) -> Checkpoint | None:
        """Load the latest good checkpoint into the learner, processor and source.

        ``check`` sees the checkpoint first (None when there is none) and raises to
        refuse it; nothing is loaded then. Checkpoints that a fenced writer slipped
        in (``engine.fence``) are never loaded.
        """
        checkpoint = self.store.load_latest(exclude=stale_checkpoints(self.store))
        if check is not None:
            check(checkpoint)
        if checkpoint is None:
            log.info("no checkpoint to resume from; starting fresh", location=self.store.location)
            return None
        stored_class = checkpoint.metadata.get("learner", {}).get("class")
        if stored_class and stored_class != self.spec["class"]:
            raise ValueError(
                f"{checkpoint.path} holds a {stored_class} but the config builds a {self.spec['class']}; "
                "use another checkpoint directory"
            )
        self.learner.load_state_dict(subset(checkpoint.state, "learner/"))
        self.processor.load_state_dict(subset(checkpoint.state, "processor/"))
        expect = getattr(self.source, "expect", None)
        fingerprints = checkpoint.metadata.get("fingerprints")
        if callable(expect) and isinstance(fingerprints, dict):  # absent in checkpoints before they existed
            expect(fingerprints)
        self.source.seek(checkpoint.positions)
        self.events_before = self.events = checkpoint.events
        meta = checkpoint.metadata
        self.last = CheckpointInfo(
            file=checkpoint.path.rsplit("/", 1)[-1],
            seq=int(meta.get("seq", 0)),
            events=checkpoint.events,
            sha256=meta["sha256"],
            time=meta.get("time", ""),
            positions=checkpoint.positions,
        )
        log.info("resumed from checkpoint", file=checkpoint.path, events=checkpoint.events, positions=checkpoint.positions)
        return checkpoint

    # ------------------------------------------------------------------ triggers

    def after_batch(self, n: int) -> None:
        self.events += n
        self._since += n
        if not self._since:
            if self.every_seconds and time.monotonic() - self.last_time >= self.every_seconds:
                self.last_time = time.monotonic()  # idle: nothing new to store, just reset the timer
            return
        due_events = self.every_events and self._since >= self.every_events
        due_time = self.every_seconds and time.monotonic() - self.last_time >= self.every_seconds
        if due_events or due_time:
            self.checkpoint()

    def final(self) -> None:
        """At shutdown or the end of the stream: store what changed since the last checkpoint.

        Events are not the only change: the end of a finite stream flushes the
        processor (labels still delayed are learned, a partial batch is adapted), so
        the state is compared with the last checkpoint's hash too.
        """
        if not self.store_if_empty and self.last is None and not self.events:
            return
        if self._since or self.last is None or state_hash(state_of(self.learner, self.processor)) != self.last.sha256:
            self.checkpoint()

    @property
    def age_seconds(self) -> float:
        return time.monotonic() - self.last_time

    # ------------------------------------------------------------------ the order

    def checkpoint(self) -> CheckpointInfo:
        t0 = time.perf_counter()
        # 0. Never a NaN state: the guard takes out the events that made one (they become dead letters).
        state = self.guard() if self.guard is not None else state_of(self.learner, self.processor)
        # 1. Outputs of the events in this state are durable first.
        for sink in self.sinks:
            sink.flush()
        # 2. State and the positions after the last processed event, atomically.
        if self.crash_guard is not None:
            self.crash_guard.settle()  # a crash while checkpointing blames no record
        positions = self.source.positions()
        extra = {}
        fingerprints = getattr(self.source, "fingerprints", None)
        if callable(fingerprints):  # Kafka: what recognises the log on restart (a recreated topic)
            extra["fingerprints"] = fingerprints()
        if self.metadata is not None:
            extra.update(self.metadata())
        if self.fence is not None:
            self.fence.check()  # raises Fenced: a newer owner writes here now
            extra["epoch"] = self.fence.epoch
        info = self.store.save(
            state,
            events=self.events,
            positions=positions,
            learner=self.spec,
            metrics=self.processor.metrics(),
            extra=extra,
        )
        # 3. Only a durable checkpoint may move the group's committed offsets.
        commit = getattr(self.source, "commit", None)
        if callable(commit):
            commit(positions)
        if self.crash_guard is not None:
            self.crash_guard.checkpointed(positions)
        self.last, self.written, self._since = info, self.written + 1, 0
        self.last_time = time.monotonic()
        self.last_duration = time.perf_counter() - t0
        return info

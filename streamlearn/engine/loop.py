"""The processing loop: source → decode/validate → processor (predict, learn) → sinks.

One loop serves the replay tool and the daemon. Per micro-batch it

1. reads up to ``batch_size`` records from the source,
2. parses each record's JSON and lets the processor check it; a record that
   fails goes to the dead-letter sink with the reason, its position and the raw
   bytes (never a crash, never a silent drop),
3. hands the good events to the processor, which predicts and learns; if that
   raises, the batch is redone event by event from the last good state
   (:mod:`streamlearn.engine.safepoint`) and the event that raises is a dead letter,
4. writes the outputs, records metric history, and lets the checkpointer decide
   whether a checkpoint is due (it owns the flush → checkpoint → commit order);
   before each checkpoint, and every ``safe_point_every`` events, the state is
   checked for NaN and infinity, and the event that brought them is taken out.

Whatever one event does (any exception while it is parsed, checked or learned),
the loop goes on: the reason written is the exception's type and message. What
ends the process (a segfault inside a learner) is counted by the checkpoint
store's crash guard (:mod:`streamlearn.engine.quarantine`): a record that crashed
it ``max_crashes`` times is a dead letter on the next start, never processed again.

Metric history points fall exactly on multiples of ``history_every`` records:
the loop never reads across such a boundary.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from streamlearn.connectors.base import Record, Sink, Source
from streamlearn.engine.checkpointing import state_of
from streamlearn.engine.processor import DEFAULT_LIMITS, BadEvent, InputLimits, Item, Output, Processor, rounded
from streamlearn.engine.quarantine import CrashGuard
from streamlearn.engine.safepoint import SafePoint

__all__ = ["Engine", "RunStats", "dead_letter"]

log = structlog.get_logger("streamlearn.engine")

_RAW_TYPES = (bytes, bytearray)

#: Distinct dead-letter reasons counted one by one in the stats; the rest are "other".
MAX_REASONS = 50


@dataclasses.dataclass
class RunStats:
    """Counters of one run (what the report and Prometheus show)."""

    records: int = 0
    #: Records already in the state when this run began (resumed from a checkpoint).
    resumed_at: int = 0
    processed: int = 0
    dead_letters: int = 0
    outputs: int = 0
    batches: int = 0
    started: float = dataclasses.field(default_factory=time.perf_counter)
    busy_seconds: float = 0.0
    #: Seconds that earlier runs of a resumed replay took (from its checkpoint).
    elapsed_before: float = 0.0
    #: Events taken out of the state after they made it NaN or infinite.
    diverged: int = 0
    #: Records not processed because processing them crashed the process ``max_crashes`` times.
    quarantined: int = 0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def events_per_second(self) -> float:
        return (self.records - self.resumed_at) / self.elapsed if self.elapsed > 0 else 0.0


def _raw_fields(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes | bytearray):
        try:
            return {"raw": raw.decode("utf-8")}
        except UnicodeDecodeError:
            return {"raw_base64": base64.b64encode(raw).decode("ascii")}
    return {"raw": raw}


def _reason(exc: BaseException) -> str:
    """A dead letter's reason for an exception: its type and message."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def dead_letter(reason: str, position: dict[str, Any], raw: Any) -> dict[str, Any]:
    """The dead-letter record: why, where from, what exactly was received."""
    return {"reason": reason, "source": position, **_raw_fields(raw), "ts": int(time.time() * 1000)}


class Engine:
    """Runs a processor over a source.

    Parameters
    ----------
    processor
        The learner family's processor (it holds the learner).
    source
        Where records come from.
    outputs
        Sink for predictions / label requests / decisions (None: outputs are not produced).
    dead_letters
        Sink for bad events; None keeps only the counters (and logs each one).
    batch_size
        Most records per micro-batch.
    max_event_bytes
        Larger raw events are dead letters.
    limits
        Bounds on feature values and counts (given to the processor).
    safe_point_every
        Events between two copies of the last good state (see ``engine.safepoint``).
    history_every
        Record the metric values every this many records.
    checkpointer
        Optional; told after every batch and at the end (see ``engine.checkpointing``).
    max_crashes
        With a checkpointer: a record whose processing ended the process this many
        times is a dead letter, not processed again (``engine.quarantine``; 0: off).
    on_batch
        Called with the stats after every batch (progress bars, Prometheus gauges).
    """

    def __init__(
        self,
        processor: Processor,
        source: Source,
        *,
        outputs: Sink | None = None,
        dead_letters: Sink | None = None,
        batch_size: int = 256,
        max_event_bytes: int = 1_048_576,
        limits: InputLimits = DEFAULT_LIMITS,
        safe_point_every: int = 5000,
        history_every: int = 100,
        checkpointer: Any = None,
        max_crashes: int = 2,
        on_batch: Callable[[RunStats], None] | None = None,
        log_every_seconds: float = 10.0,
    ):
        self.processor = processor
        self.source = source
        self.outputs = outputs
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.max_event_bytes = max_event_bytes
        self.history_every = history_every
        self.checkpointer = checkpointer
        self.on_batch = on_batch
        self.log_every_seconds = log_every_seconds
        self.stats = RunStats()
        processor.emit = outputs is not None
        processor.limits = limits
        self.safe_point = SafePoint(processor, every=safe_point_every)
        #: Counts crashes of the records in flight (needs a checkpoint store to keep them in).
        self.crash_guard = CrashGuard(checkpointer.store, max_crashes) if checkpointer is not None and max_crashes else None
        if checkpointer is not None:
            checkpointer.guard = self.guard
            checkpointer.crash_guard = self.crash_guard

    # ------------------------------------------------------------------ decoding

    def _dead(self, reason: str, position: dict[str, Any], raw: Any, letters: list) -> None:
        self.stats.dead_letters += 1
        reasons = self.stats.reasons
        reasons[reason if reason in reasons or len(reasons) < MAX_REASONS else "other"] += 1
        letters.append(dead_letter(reason, position, raw))

    def _decode(self, records: list[Record], letters: list) -> list[Item]:
        decode, limit = self.processor.decode, self.max_event_bytes
        loads = orjson.loads
        items = []
        for record in records:
            raw = record.value
            if record.error is not None:
                self._dead(record.error, record.position, raw, letters)
                continue
            if isinstance(raw, _RAW_TYPES):
                if len(raw) > limit:
                    self._dead(f"event of {len(raw)} bytes exceeds max_event_bytes={limit}", record.position, raw[:1024], letters)
                    continue
                try:
                    event = loads(raw)
                except orjson.JSONDecodeError:
                    # Slow path, only for rejects: the standard parser accepts NaN/Infinity
                    # literals (so the processor can name the non-finite field) and words
                    # its errors better.
                    try:
                        event = json.loads(raw)
                    except UnicodeDecodeError:
                        self._dead("event is not UTF-8", record.position, raw, letters)
                        continue
                    except ValueError as exc:
                        self._dead(f"invalid JSON: {exc}", record.position, raw, letters)
                        continue
                    except RecursionError:  # orjson refuses deep nesting; so does this parser, late
                        self._dead("invalid JSON: nested too deeply", record.position, raw, letters)
                        continue
            else:
                event = raw
            if not isinstance(event, dict):
                self._dead(f"event must be a JSON object, got {type(event).__name__}", record.position, raw, letters)
                continue
            try:
                items.append(Item(record.position, decode(event), raw))
            except BadEvent as exc:
                self._dead(str(exc), record.position, raw, letters)
            except Exception as exc:  # a decoder bug must not stop the stream either
                self._dead(_reason(exc), record.position, raw, letters)
        return items

    # ------------------------------------------------------------------ learning, one event at a time if need be

    def _process(self, items: list[Item], letters: list) -> list[Output]:
        """The fast path: the whole batch at once; a failure redoes it event by event."""
        if not self.safe_point.ready:  # the first batch, after any checkpoint was restored
            self.safe_point.take()
        try:
            outputs = self.processor.process(items)
        except Exception:
            return self._process_one_by_one(items, letters)
        self.safe_point.record(items)
        return outputs

    def _process_one_by_one(self, items: list[Item], letters: list) -> list[Output]:
        safe_point, process = self.safe_point, self.processor.process
        # What the failed call did is undone: the events before it are in the state once.
        safe_point.rollback()
        outputs: list[Output] = []
        for item in items:
            try:
                out = process([item])
            except Exception as exc:
                safe_point.rollback()
                if not safe_point.healthy():
                    # A diverged state made this event fail; the event that caused it goes.
                    self._take_out_culprits(letters)
                    try:
                        out = process([item])
                    except Exception as again:
                        safe_point.rollback()
                        self._dead(_reason(again), item.position, item.raw, letters)
                        continue
                else:
                    self._dead(_reason(exc), item.position, item.raw, letters)
                    continue
            safe_point.record([item])
            outputs.extend(out)
        # Whatever failed is out; a fresh safe point keeps the next rollback short.
        safe_point.take()
        return outputs

    def _take_out_culprits(self, letters: list, state: dict[str, Any] | None = None) -> bool:
        """Remove from the state every event after which it held new NaN or infinite values.

        ``state``: the current state, when the caller has it; returns True when events were removed.
        """
        safe_point, removed = self.safe_point, False
        while (index := safe_point.culprit(state)) is not None:
            state, removed = None, True
            item = safe_point.remove(index)
            self.stats.diverged += 1
            log.error(
                "the learner diverged (NaN or infinite state); going back to the last good state "
                "without the event that caused it",
                source=item.position,
            )
            self._dead("learner state became NaN or infinite after learning this event", item.position, item.raw, letters)
            safe_point.rollback()
        return removed

    def _renew_safe_point(self, letters: list) -> dict[str, Any]:
        """Take out any culprits, then make the (healthy) state the safe point; returns it.

        The state is built once when it is healthy: for river learners that is a JSON
        encoding of the model and the metrics (windows included).
        """
        state = state_of(self.processor.learner, self.processor)
        if self._take_out_culprits(letters, state):
            state = None
        return self.safe_point.take(state)

    def guard(self) -> dict[str, Any]:
        """A healthy state to checkpoint (the checkpointer calls this first); it becomes the safe point."""
        letters: list[dict[str, Any]] = []
        state = self._renew_safe_point(letters)
        self._emit([], letters)
        return state

    # ------------------------------------------------------------------ loop

    def _emit(self, outputs: list, letters: list) -> None:
        for item, reason in self.processor.take_rejected():
            self._dead(reason, item.position, item.raw, letters)
        if outputs and self.outputs is not None:
            self.outputs.write([{"source": o.position, **o.payload} for o in outputs])
            self.stats.outputs += len(outputs)
        if letters:
            if self.dead_letters is not None:
                self.dead_letters.write(letters)
            for letter in letters[:3]:
                log.warning("dead letter", reason=letter["reason"], source=letter["source"])

    def step(self, max_records: int | None = None) -> int:
        """Read and process one micro-batch; returns the number of records read."""
        stats = self.stats
        want = self.batch_size if max_records is None else min(self.batch_size, max_records)
        # Never read across a history boundary, so curves have points at exact counts.
        want = min(want, self.history_every - stats.records % self.history_every)
        records = self.source.read_batch(want)
        if not records:
            self.idle()
            return 0
        t0 = time.perf_counter()
        letters: list[dict[str, Any]] = []
        guard, outputs, processed = self.crash_guard, [], 0
        groups = [records]
        if guard is not None:
            quarantined, groups = guard.split(records)
            for record, crashes in quarantined:
                self._quarantine(record, crashes, letters)
        for group in groups:
            if guard is not None:
                guard.mark(group)  # if the process dies now, these records crashed it
            items = self._decode(group, letters)
            failed = stats.dead_letters
            if items:
                outputs.extend(self._process(items, letters))
            processed += len(items) - (stats.dead_letters - failed)
        if self.safe_point.due:
            self._renew_safe_point(letters)
        self._emit(outputs, letters)
        stats.records += len(records)
        stats.processed += processed
        stats.batches += 1
        if stats.records % self.history_every == 0:
            stats.history.append({"events": stats.records, **self.processor.metrics()})
        stats.busy_seconds += time.perf_counter() - t0
        return len(records)

    def _quarantine(self, record: Record, crashes: int, letters: list) -> None:
        self.stats.quarantined += 1
        limit = self.max_event_bytes
        raw = record.value[:1024] if isinstance(record.value, _RAW_TYPES) and len(record.value) > limit else record.value
        log.error("quarantined a record that crashed the process; it is not processed again", source=record.position, crashes=crashes)
        reason = (
            f"quarantined: processing this record alone ended the process {crashes} times "
            f"(engine.max_crashes = {self.crash_guard.max_crashes}); not processed again"
        )
        self._dead(reason, record.position, raw, letters)

    def idle(self) -> None:
        """Nothing to read now: no record is in flight (a kill while idle blames none)."""
        if self.crash_guard is not None:
            self.crash_guard.settle()

    def finish(self) -> None:
        """End of a finite stream: let the processor finish pending work."""
        letters: list[dict[str, Any]] = []
        self._emit(self.processor.flush(), letters)
        if not self.stats.history or self.stats.history[-1]["events"] != self.stats.records:
            self.stats.history.append({"events": self.stats.records, **self.processor.metrics()})

    def run(self, stop: threading.Event | None = None, max_records: int | None = None) -> RunStats:
        """Process until the source is exhausted, ``stop`` is set, or ``max_records`` were read in this run.

        Finite sources end with :meth:`finish`; the checkpointer (if any) writes a
        final checkpoint either way, so a stopped replay resumes where it stopped.
        """
        stats, source, checkpointer = self.stats, self.source, self.checkpointer
        next_log = time.monotonic() + self.log_every_seconds
        while stop is None or not stop.is_set():
            left = None if max_records is None else max_records - (stats.records - stats.resumed_at)
            if left is not None and left <= 0:
                break
            n = self.step(left)
            if checkpointer is not None:
                checkpointer.after_batch(n)
            if self.on_batch is not None and n:
                self.on_batch(stats)
            if not n and source.exhausted:
                self.finish()
                break
            if time.monotonic() >= next_log:
                next_log = time.monotonic() + self.log_every_seconds
                log.info(
                    "progress",
                    events=stats.records,
                    events_per_s=round(stats.events_per_second, 1),
                    dead_letters=stats.dead_letters,
                    **rounded(self.processor.metrics()),
                )
        if checkpointer is not None:
            checkpointer.final()
        for sink in (self.outputs, self.dead_letters):
            if sink is not None:
                sink.flush()
        return stats

"""Poison quarantine: a record that kills the process is not processed for ever.

The loop catches every exception one event raises (``engine.loop``). What it
cannot catch — a segfault or an out-of-memory kill inside a learner's native
code, ``os._exit`` — ends the process, and the restart redoes the records after
the last checkpoint: the same record would kill every restart, and in a
consumer group every member the partition moves to.

:class:`CrashGuard` keeps a small JSON file, ``crashes.json``, beside the
checkpoints (through the checkpoint store, so on an object store too):

* ``in_flight``: the records that may be in processing, as ranges ``[stream,
  first, last]``: a window of ``WINDOW`` records from the batch about to be
  processed, rewritten only when a batch goes beyond it (one small write per
  ``WINDOW`` records, not per event; not fsync'd, since it must outlive the
  process, not the machine) and cleared when the loop goes idle or checkpoints;
* ``crashed``: ranges ``[stream, first, last, crashes]`` of records that were in
  flight when the process died.

On start, the records still marked in flight are *suspects*: a batch holding
one is processed one record at a time, each marked alone before (a write per
record, only until a checkpoint passes the crashed range), so the next crash
names the record (and explains the range). A record that ended the process
``max_crashes`` times while processed alone (``[engine] max_crashes``, default
2) is a dead letter on the next start, without being processed, and is
counted as *quarantined*. A poison record therefore ends the process
``1 + max_crashes`` times: once in its batch, then alone. Crashes of a batch do
not count towards the limit, so an unrelated kill cannot quarantine a good record
unless it ends the process while that record is processed alone, twice. Ranges are forgotten once a checkpoint lies beyond them.

Anything that ends the process abruptly counts, a ``kill -9`` by an operator as
well as an out-of-memory kill (they cannot be told apart); a single unlucky kill
only makes the records then in flight (at most ``WINDOW``) go one by one once.

A *stream* is a Kafka partition (``topic/partition``, ordered by offset) or a
file (its path, ordered by row).
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from streamlearn.connectors.base import Record

__all__ = ["CRASH_FILE", "CrashGuard"]

log = structlog.get_logger("streamlearn.quarantine")

CRASH_FILE = "crashes.json"
FORMAT = "streamlearn-crashes/1"

#: Records a mark covers ahead of a batch: the writes per record, and the records done one by one after a crash.
WINDOW = 1024

#: Crash ranges kept at most (the oldest go first); checkpoints normally prune them long before.
MAX_RANGES = 1000


def _locate(position: dict[str, Any]) -> tuple[str, int]:
    """(stream, index) of a record's position: a Kafka partition and offset, or a file and row."""
    if "offset" in position:
        return f"{position.get('topic')}/{position.get('partition')}", int(position["offset"])
    return str(position.get("path", "")), int(position.get("row", 0))


def _ranges(records: list[Record]) -> list[list[Any]]:
    """``[stream, first, last]`` per stream of a batch.

    Records of a stream come in order (a source reads a partition by offset, a file
    by row), so a stream's range runs from its first record to its last: only those
    two are located, the others cost a dictionary lookup (this runs on every batch).
    """
    firsts: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    lasts: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for record in records:
        position = record.position
        stream = (position.get("topic"), position.get("partition"), position.get("path"))
        if stream not in firsts:
            firsts[stream] = position
        lasts[stream] = position
    spans = []
    for stream, position in firsts.items():
        name, first = _locate(position)
        spans.append([name, first, _locate(lasts[stream])[1]])
    return spans


def _valid(entry: Any, size: int) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) == size
        and isinstance(entry[0], str)
        and all(type(v) is int and v >= 0 for v in entry[1:])
        and entry[1] <= entry[2]
    )


class CrashGuard:
    """Counts the crashes of records in flight and quarantines those that crash ``max_crashes`` times.

    Parameters
    ----------
    store
        The lane's :class:`~streamlearn.engine.checkpoint.CheckpointStore` (its side files).
    max_crashes
        Crashes after which a record is a dead letter without being processed.
    """

    def __init__(self, store: Any, max_crashes: int = 2):
        self.store = store
        self.max_crashes = max_crashes
        #: ``[stream, first, last, crashes]`` ranges.
        self.crashed: list[list[Any]] = []
        #: The in-flight mark now stored: ``{stream: (first, last)}``.
        self._window: dict[str, tuple[int, int]] = {}
        self._start()

    # ------------------------------------------------------------------ the file

    def _start(self) -> None:
        """Read the file; records that were in flight when the process died count a crash more."""
        try:
            raw = self.store.read_side_file(CRASH_FILE)
            data = json.loads(raw) if raw is not None else {}
            crashed = [e for e in data.get("crashed", []) if _valid(e, 4)]
            in_flight = [e for e in data.get("in_flight", []) if _valid(e, 3)]
        except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            log.error("crash record unreadable; starting without it", location=self.store.location, error=str(exc))
            return
        self.crashed = crashed
        if not in_flight:
            return
        for stream, first, last in in_flight:
            overlapping = [e for e in self.crashed if e[0] == stream and e[1] <= last and first <= e[2]]
            crashes = 1 + max((e[3] for e in overlapping if e[1] == e[2]), default=0)
            if first == last:
                # The record crashed alone: the window crashes around it are explained.
                self.crashed = [e for e in self.crashed if e not in overlapping]
                self.crashed.append([stream, first, last, crashes])
                log.error(
                    f"the process died while this record was processed alone ({crashes} of engine.max_crashes = "
                    f"{self.max_crashes} times; then it is quarantined: a dead letter, not processed)",
                    stream=stream,
                    record=first,
                )
            else:
                self.crashed.append([stream, first, last, 0])
                log.error(
                    "the process died while records in this range were processed; they go one at a time now, "
                    "so that another crash names the record",
                    stream=stream,
                    first=first,
                    last=last,
                )
        self._write(durable=True)  # in_flight cleared, the crashes counted

    def _write(self, window: dict[str, tuple[int, int]] | None = None, durable: bool = False) -> None:
        del self.crashed[:-MAX_RANGES]
        window = window or {}
        body = {"format": FORMAT, "in_flight": [[s, f, l] for s, (f, l) in window.items()], "crashed": self.crashed}
        self.store.write_side_file(CRASH_FILE, json.dumps(body).encode(), durable=durable)
        self._window = window

    # ------------------------------------------------------------------ the loop's calls

    def crashes(self, record: Record) -> int | None:
        """How often processing ``record`` alone ended the process; None when it was never in flight at a crash."""
        if not self.crashed:
            return None
        stream, index = _locate(record.position)
        covering = [(f, l, c) for s, f, l, c in self.crashed if s == stream and f <= index <= l]
        if not covering:
            return None
        return max((c for f, l, c in covering if f == l), default=0)

    def split(self, records: list[Record]) -> tuple[list[tuple[Record, int]], list[list[Record]]]:
        """``(quarantined with their crash counts, groups to process)``; a group is marked before it is processed.

        Without crashes the batch is one group; a batch holding a record that was in
        flight at a crash is processed one record at a time. Only crashes of a record
        processed alone count towards ``max_crashes``: a crash of a batch only says that
        one of its records may be the culprit (or that something else, a ``kill -9``,
        ended the process).
        """
        if not self.crashed:
            return [], [records]
        counts = [self.crashes(r) for r in records]
        if all(c is None for c in counts):
            return [], [records]
        quarantined = [(r, c) for r, c in zip(records, counts, strict=True) if c is not None and c >= self.max_crashes]
        rest = [(r, c) for r, c in zip(records, counts, strict=True) if c is None or c < self.max_crashes]
        if any(c is not None for _, c in rest):
            return quarantined, [[r] for r, _ in rest]
        return quarantined, [[r for r, _ in rest]] if rest else []

    def mark(self, records: list[Record]) -> None:
        """``records`` are about to be processed: if the process dies now, they crashed it.

        A record processed alone after a crash is marked exactly; otherwise the stored
        mark covers a window of ``WINDOW`` records, rewritten when a batch leaves it.
        """
        spans = _ranges(records)
        if len(records) == 1 and self.crashed:
            self._write({s: (f, l) for s, f, l in spans})
            return
        window = self._window
        if all(s in window and window[s][0] <= f and l <= window[s][1] for s, f, l in spans):
            return
        self._write({s: (f, max(l, f + WINDOW - 1)) for s, f, l in spans})

    def settle(self) -> None:
        """Nothing in flight (the loop is idle, or checkpointing)."""
        if self._window:
            self._write()

    def checkpointed(self, positions: dict[str, dict[str, Any]]) -> None:
        """A checkpoint holds everything before ``positions``: crashes of earlier records are forgotten."""
        if not self.crashed:
            return
        done = dict(_locate(p) for p in positions.values() if isinstance(p, dict))
        kept = [e for e in self.crashed if e[2] >= done.get(e[0], 0)]
        if len(kept) != len(self.crashed):
            self.crashed = kept
            self._write(durable=True)

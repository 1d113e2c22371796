"""Source and sink interfaces shared by the file and Kafka connectors.

A source hands the engine micro-batches of :class:`Record`; each record carries
its *position* (``{"path", "row"}`` for files, ``{"topic", "partition",
"offset"}`` for Kafka) so outputs and dead letters can name where they came
from. ``positions()`` returns where to resume *after* everything read so far,
keyed by stream (a file path, or ``topic/partition``); the engine stores it in
each checkpoint and gives it back to ``seek`` on restart.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any

__all__ = ["Record", "Sink", "Source"]


@dataclasses.dataclass(slots=True)
class Record:
    """One event as read: raw bytes (a JSONL line, a Kafka value) or an already parsed row."""

    value: bytes | dict[str, Any]
    position: dict[str, Any]
    #: Set when the connector already knows the record is unusable (e.g. a CSV row with
    #: the wrong number of cells); the engine sends it to the dead-letter sink with this reason.
    error: str | None = None
    #: A Kafka record's key and timestamp (ms): with the offset and value they identify it in its
    #: log (``connectors.kafka.record_fingerprint``), so a recreated topic is recognised on restart.
    key: bytes | None = None
    timestamp: int | None = None


class Source(ABC):
    """Where events come from."""

    #: True once a finite source has nothing more to read.
    exhausted: bool = False

    @abstractmethod
    def read_batch(self, max_records: int) -> list[Record]:
        """Up to ``max_records`` records; an empty list when nothing is available now."""

    @abstractmethod
    def positions(self) -> dict[str, dict[str, Any]]:
        """Resume positions after every record returned so far, keyed by stream."""

    @abstractmethod
    def seek(self, positions: dict[str, dict[str, Any]]) -> None:
        """Continue from positions previously returned by :meth:`positions`."""

    def progress(self) -> tuple[int, int | None]:
        """(done, total) in the source's own unit, for progress bars; total None if unknown."""
        return 0, None

    def close(self) -> None:
        """Release files, sockets and threads."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sink(ABC):
    """Where outputs or dead letters go. ``write`` may buffer; ``flush`` makes it durable."""

    @abstractmethod
    def write(self, records: list[dict[str, Any]]) -> None: ...

    def flush(self) -> None:
        """Make everything written so far durable (called before each checkpoint)."""

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

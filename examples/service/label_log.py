"""A write-ahead log of accepted labels: appended in order, fsync'd in small groups, replayed on start.

Each record is one JSON line ``{"seq": n, ...}`` in a segment file ``wal-<first seq>.jsonl``.
:meth:`LabelLog.append` gives a record the next sequence number and writes it while
the caller applies it (so the model learns in log order); :meth:`LabelLog.wait_durable`
returns once an ``fsync`` covers it. One background thread does the fsyncs: every
record written while an fsync runs is covered by the next one, so under load each
fsync commits a group of requests (group commit) and a request waits about one fsync.

After a checkpoint whose state includes every record up to ``seq``, :meth:`rotate`
starts a new segment and :meth:`drop_through` deletes the segments it made redundant.
A record torn by a crash (a last line without its newline) was never acknowledged: it is
cut off on open.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["LabelLog"]


class LabelLog:
    """Parameters: ``directory`` holding the segments (created if missing)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._append_lock = threading.Lock()
        self._fd_lock = threading.Lock()  # an fsync never meets a segment being swapped
        self._durable_changed = threading.Condition()
        self._closing = False
        segments = self._segments()
        self.written = self.durable = self._repair(segments[-1]) if segments else 0
        self._fd = self._open_segment(self.written + 1) if not segments else os.open(segments[-1], os.O_WRONLY | os.O_APPEND)
        self._flusher = threading.Thread(target=self._flush_loop, name="label-log-fsync", daemon=True)
        self._flusher.start()

    # ------------------------------------------------------------------ files

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("wal-*.jsonl"))

    def _open_segment(self, first_seq: int) -> int:
        fd = os.open(self.directory / f"wal-{first_seq:012d}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        dir_fd = os.open(self.directory, os.O_RDONLY)  # the new name itself must survive a crash
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return fd

    @staticmethod
    def _repair(segment: Path) -> int:
        """Cut a torn last line off ``segment``; the last complete record's seq (or the one before its first)."""
        data = segment.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(segment, "r+b") as f:
                f.truncate(len(complete))
                os.fsync(f.fileno())
        lines = complete.splitlines()
        return json.loads(lines[-1])["seq"] if lines else int(segment.stem.split("-")[1]) - 1

    def records_after(self, seq: int) -> Iterator[dict[str, Any]]:
        """The records with a sequence number above ``seq``, in order."""
        for segment in self._segments():
            with open(segment, "rb") as f:
                for line in f:
                    record = json.loads(line)
                    if record["seq"] > seq:
                        yield record

    # ------------------------------------------------------------------ writing

    def append(self, record: dict[str, Any], apply: Callable[[int], None]) -> int:
        """Write ``record`` with the next seq and call ``apply(seq)``, both in log order."""
        with self._append_lock:
            seq = self.written + 1
            os.write(self._fd, json.dumps({"seq": seq, **record}, separators=(",", ":")).encode() + b"\n")
            apply(seq)
            with self._durable_changed:
                self.written = seq
                self._durable_changed.notify_all()
        return seq

    def wait_durable(self, seq: int, timeout: float = 10.0) -> bool:
        """Block until an fsync covers ``seq``; False if that takes longer than ``timeout``."""
        with self._durable_changed:
            return self._durable_changed.wait_for(lambda: self.durable >= seq, timeout=timeout)

    def _flush_loop(self) -> None:
        while True:
            with self._durable_changed:
                self._durable_changed.wait_for(lambda: self.written > self.durable or self._closing)
                if self._closing and self.written == self.durable:
                    return
                target = self.written
            with self._fd_lock:  # after a rotation, the old segment was fsync'd before it closed
                os.fsync(self._fd)
            with self._durable_changed:
                self.durable = max(self.durable, target)
                self._durable_changed.notify_all()

    # ------------------------------------------------------------------ after a checkpoint

    def rotate(self) -> None:
        """Continue in a new segment (the old one is complete and fsync'd)."""
        with self._append_lock, self._fd_lock:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = self._open_segment(self.written + 1)

    def drop_through(self, seq: int) -> None:
        """Delete the segments whose records all have a sequence number ≤ ``seq``."""
        segments = self._segments()
        for segment, following in zip(segments, segments[1:]):
            if int(following.stem.split("-")[1]) - 1 <= seq:
                segment.unlink()

    def close(self) -> None:
        with self._durable_changed:
            self._closing = True
            self._durable_changed.notify_all()
        self._flusher.join()
        os.close(self._fd)

"""Fencing: a writer that lost its lane (a frozen consumer-group member) cannot write into it.

A consumer-group member frozen past its session timeout (a long GC pause, a
SIGSTOP, a VM migration) has its partitions given to another member; when it
wakes up it does not know yet and may checkpoint a stale state into a
directory the new owner already writes. The group protocol alone cannot stop
that write: only the checkpoint store can.

Every lane directory holds ``fence.json``: ``{"epoch": N, "owner": ...}``. A
member taking a lane (on assignment) bumps the epoch and remembers its own
(:meth:`Fence.take`); every checkpoint it writes records that epoch in its
metadata (key ``epoch``), and right before each write it re-reads the fence
(:meth:`Fence.check`): a newer epoch means someone took the lane since, and
the write is refused with :class:`Fenced` (the daemon drops the lane, logs an
error and counts ``streamlearn_fenced_total``).

The check and the write are two operations, so a writer may still slip a
checkpoint in between. Loading therefore lets the older generation lose as well
(:func:`stale_checkpoints`): walking the manifest oldest first, a checkpoint
whose epoch is lower than one written *before* it was written by a fenced
writer, and is never loaded. Checkpoints without an epoch (written before
fencing, or by ``streamlearn replay``) take part in neither rule.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from typing import Any

import structlog

__all__ = ["FENCE_FILE", "Fence", "Fenced", "stale_checkpoints"]

log = structlog.get_logger("streamlearn.fence")

FENCE_FILE = "fence.json"


class Fenced(RuntimeError):
    """Another writer took the lane since this one did: this one must not write into it."""


def _epoch(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


class Fence:
    """The epoch of one lane directory (a checkpoint store) and of this writer in it."""

    def __init__(self, store: Any):
        self.store = store
        #: This writer's epoch (None until :meth:`take`).
        self.epoch: int | None = None

    def current(self) -> int:
        """The newest epoch taken in the store (0: none yet; a malformed fence counts as 0)."""
        try:
            raw = self.store.read_side_file(FENCE_FILE)
            epoch = _epoch(json.loads(raw).get("epoch")) if raw is not None else 0
        except (OSError, ValueError, AttributeError, RecursionError) as exc:
            log.error("fence unreadable; treating it as epoch 0", location=self.store.location, error=str(exc))
            return 0
        return epoch or 0

    def take(self) -> int:
        """Become the lane's writer: one epoch past the newest, durably."""
        self.epoch = self.current() + 1
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "time": dt.datetime.now(dt.UTC).isoformat()}
        self.store.write_side_file(FENCE_FILE, json.dumps({"epoch": self.epoch, "owner": owner}).encode())
        return self.epoch

    def check(self) -> None:
        """Raise :class:`Fenced` when a newer writer has taken the lane."""
        if self.epoch is None:
            return
        newest = self.current()
        if newest > self.epoch:
            raise Fenced(
                f"{self.store.location}: another writer took this lane (epoch {newest}; this one holds {self.epoch}), "
                "so this stale state is not written"
            )


def stale_checkpoints(store: Any) -> set[str]:
    """Checkpoints written by a fenced writer: an epoch below that of a checkpoint written before them."""
    stale, newest = set(), None
    for info in store.list():
        try:
            epoch = _epoch(store.read_metadata(info.file).get("epoch"))
        except (ValueError, OSError):  # corrupt: load_latest reports and skips it anyway
            continue
        if epoch is None:
            continue
        if newest is not None and epoch < newest:
            log.error("ignoring a checkpoint written by a fenced writer (an older epoch after a newer one)", file=info.file, epoch=epoch, newer_epoch=newest)
            stale.add(info.file)
        else:
            newest = epoch
    return stale

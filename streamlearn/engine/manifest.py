"""Validation of a checkpoint store's ``manifest.json``.

The manifest is read from the store's directory, which other programs (or people)
can write to, so nothing in it is trusted: an entry names a file that the store
will read and, under retention, delete. :func:`parse_manifest` keeps only entries
that the store itself could have written:

- ``file`` is a plain file name of the store's own pattern,
  ``checkpoint-<digits>.parquet`` (so no ``/``, ``\\``, ``..``, absolute path or
  drive letter can reach outside the store), and its digits are the entry's ``seq``;
- ``seq`` is an integer from 0 to ``MAX_SEQ - 1``, ``events`` an integer ≥ -1
  (-1: unknown), ``bytes`` an integer ≥ 0, ``sha256`` 64 hex digits or empty, ``time`` a string and
  ``positions`` an object.

Any other entry is ignored with a warning naming it: it is never read and never
deleted. Keys an entry has beyond these are dropped, except fields that
:class:`~streamlearn.engine.checkpoint.CheckpointInfo` declares (a newer writer's),
which are passed on. A manifest that is not a JSON object with a ``checkpoints``
list is treated as missing (the caller rebuilds the list from the directory).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import structlog

__all__ = ["CHECKPOINT_FILE", "MAX_MANIFEST_BYTES", "MAX_SEQ", "InvalidManifest", "checkpoint_seq", "parse_manifest"]

log = structlog.get_logger("streamlearn.checkpoint")

#: The only file names a store writes checkpoints under (``checkpoint-0000000042.parquet``).
CHECKPOINT_FILE = re.compile(r"checkpoint-([0-9]{1,19})\.parquet")
#: Sequence numbers stop below this (one checkpoint a millisecond for 30,000 years), so the
#: next number after any valid one still names a valid file.
MAX_SEQ = 10**15
#: A manifest larger than this is not read (it lists ``keep`` small entries; a few KiB).
MAX_MANIFEST_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class InvalidManifest(ValueError):
    """A manifest whose top level is not what a store writes (treat it as missing)."""


def checkpoint_seq(name: str) -> int | None:
    """The sequence number in a checkpoint file name of the store's pattern, else None."""
    match = CHECKPOINT_FILE.fullmatch(name) if isinstance(name, str) else None
    seq = int(match.group(1)) if match else None
    return seq if seq is not None and seq < MAX_SEQ else None


def _is_int(value: Any, least: int) -> bool:
    return type(value) is int and value >= least


#: field → (check, what it must be)
_CHECKS: dict[str, tuple[Any, str]] = {
    "file": (lambda v: checkpoint_seq(v) is not None, "a file name checkpoint-<digits>.parquet"),
    "seq": (lambda v: _is_int(v, 0) and v < MAX_SEQ, f"an integer from 0 to {MAX_SEQ - 1}"),
    "events": (lambda v: _is_int(v, -1), "an integer >= -1"),
    "bytes": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "sha256": (lambda v: isinstance(v, str) and (v == "" or _SHA256.fullmatch(v) is not None), "64 hex digits or empty"),
    "time": (lambda v: isinstance(v, str), "a string"),
    "positions": (lambda v: isinstance(v, dict), "an object"),
}


def _entry_problem(entry: Any, required: set[str]) -> str | None:
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, not an object"
    missing = sorted(required - set(entry))
    if missing:
        return f"has no {missing[0]!r}"
    for key, (check, what) in _CHECKS.items():
        if key in entry and not check(entry[key]):
            return f"{key} must be {what}, got {entry[key]!r:.80}"
    if checkpoint_seq(entry["file"]) != entry["seq"]:
        return f"seq {entry['seq']} does not match its file name"
    return None


def parse_manifest(data: Any, info_class: type, where: str = "manifest.json") -> list[Any]:
    """The valid entries of a decoded manifest as ``info_class`` objects, oldest first.

    Raises :class:`InvalidManifest` when ``data`` is not a manifest at all. An invalid
    entry is logged (``where`` and the entry's position and file, if any) and skipped;
    a file listed twice is kept once (its last entry), so retention never deletes a
    file it also keeps.
    """
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), list):
        raise InvalidManifest(f"{where} is not an object with a 'checkpoints' list")
    fields = {f.name: f for f in dataclasses.fields(info_class)}
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    by_file: dict[str, Any] = {}
    for index, entry in enumerate(data["checkpoints"]):
        problem = _entry_problem(entry, required)
        if problem is not None:
            name = entry.get("file") if isinstance(entry, dict) else None
            log.warning("ignoring an invalid manifest entry: never read, never deleted", manifest=where, entry=index, file=f"{name!r:.200}", problem=problem)
            continue
        by_file[entry["file"]] = info_class(**{k: v for k, v in entry.items() if k in fields})
    return sorted(by_file.values(), key=lambda e: e.seq)

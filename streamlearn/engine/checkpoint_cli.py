"""``streamlearn checkpoints list DIR`` and ``streamlearn checkpoints show PATH [--json]``.

``show`` takes a checkpoint file or a checkpoint directory (or ``pyarrow.fs`` URI),
whose latest good checkpoint it shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from streamlearn.engine.checkpoint import Checkpoint, CheckpointStore, read_checkpoint
from streamlearn.redact import redact

__all__ = ["main"]


def _load(path: str) -> Checkpoint:
    """The checkpoint file at ``path``, or the latest good one of the directory ``path``."""
    if path.endswith(".parquet") and not os.path.isdir(path):
        return read_checkpoint(path)
    checkpoint = CheckpointStore(path).load_latest()
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoints in {path} (`streamlearn checkpoints list {path}` shows what is there)")
    return checkpoint


def _summary(path: str) -> dict[str, Any]:
    checkpoint = _load(path)
    meta = checkpoint.metadata
    entries = {}
    for name, value in sorted(checkpoint.state.items()):
        if hasattr(value, "shape"):
            entries[name] = f"{value.dtype} {list(value.shape)}"
        elif isinstance(value, str) and len(value) > 60:
            entries[name] = f"str ({len(value)} chars)"
        else:
            entries[name] = repr(value)
    return {
        "path": checkpoint.path,
        "hash_verified": True,
        **{k: meta.get(k) for k in ("seq", "time", "events", "sha256", "positions", "metrics", "versions")},
        # Checkpoints written before parameters were redacted may still hold secrets.
        "learner": redact(meta.get("learner")),
        "entries": entries,
    }


def _print_show(info: dict[str, Any]) -> None:
    learner = info.get("learner") or {}
    print(f"checkpoint  {info['path']}")
    print(f"time        {info['time']}")
    print(f"events      {info['events']}")
    print(f"sha256      {info['sha256']} (verified)")
    print(f"learner     {learner.get('name')} ({learner.get('class')})")
    print(f"parameters  {json.dumps(learner.get('params'))}")
    print("positions")
    for stream, pos in (info.get("positions") or {}).items():
        print(f"  {stream}: {json.dumps(pos)}")
    print("metrics")
    for name, value in (info.get("metrics") or {}).items():
        print(f"  {name}: {value:.6g}" if isinstance(value, int | float) else f"  {name}: {'n/a' if value is None else value}")
    print(f"state ({len(info['entries'])} entries)")
    for name, desc in info["entries"].items():
        print(f"  {name}: {desc}")


def main(args: argparse.Namespace) -> int:
    if args.action == "show":
        info = _summary(args.path)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_show(info)
        return 0
    store = CheckpointStore(args.dir)
    entries = store.list()
    if args.json:
        print(json.dumps([dataclasses.asdict(e) for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no checkpoints in {args.dir}")
        return 0
    print(f"{'seq':>5}  {'events':>10}  {'bytes':>10}  {'time':32}  {'sha256':14}  file")
    for e in entries:
        print(f"{e.seq:>5}  {e.events:>10}  {e.bytes:>10}  {e.time:32}  {e.sha256[:12]:14}  {e.file}")
    return 0

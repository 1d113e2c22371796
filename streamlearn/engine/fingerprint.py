"""What a replay checkpoint was made from, so that a stale one is never resumed silently.

A replay checkpoint records two fingerprints in its metadata:

- the **state fingerprint**: everything in the config that shapes the learner and
  processor state or the metric values — the learner (name, parameters, custom
  processor), the ``[processor]`` table, the ``[eval]`` table, how rows become
  events (``[input]`` format, target, exclude) and the ``[engine]`` bounds that
  decide which events are dead letters. Left out, because they change no number:
  output and checkpoint locations, checkpoint cadence, ``[engine] batch_size`` and
  ``log_every_seconds``, ``[kafka]`` (connection settings and credentials), the
  report directory and the progress bar. Values named like secrets are redacted
  (:func:`streamlearn.redact.redact`): checkpoint metadata never holds them;
- the **input fingerprint**: the input's absolute path, its size in bytes and the
  SHA-256 of its first ``HEAD_BYTES`` bytes (a changed or replaced file shows in
  one of them without reading a large log to the end).

:func:`compare` names each difference between a stored fingerprint and the
current one; ``streamlearn replay`` refuses a mismatch (:class:`StaleCheckpoint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from streamlearn.redact import redact

__all__ = ["HEAD_BYTES", "StaleCheckpoint", "compare", "input_fingerprint", "same_head", "state_fingerprint"]

#: Bytes of the input hashed into its fingerprint.
HEAD_BYTES = 1 << 20


class StaleCheckpoint(ValueError):
    """Checkpoints that do not belong to this config or input (or none where one is required)."""


def state_fingerprint(config: Any) -> dict[str, Any]:
    """The config tables that shape the state, as plain JSON values (see the module docstring)."""
    engine = config.engine
    fingerprint = {
        "learner": {"name": config.learner.name, "params": config.learner.params, "processor": config.learner.processor},
        "processor": config.processor,
        "eval": dataclasses.asdict(config.eval),
        "input": {"format": config.input.format, "target": config.input.target, "exclude": list(config.input.exclude)},
        "engine": {
            "max_event_bytes": engine.max_event_bytes,
            "max_feature_abs": engine.max_feature_abs,
            "max_features": engine.max_features,
            "max_learner_features": engine.max_learner_features,
        },
    }
    # Through JSON once: a fingerprint read back from a checkpoint compares equal to a fresh one.
    return json.loads(json.dumps(redact(fingerprint), sort_keys=True, default=repr))


def _head_sha256(path: str, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(length))
    return digest.hexdigest()


def input_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "bytes", "head_bytes", "head_sha256"}`` of an input file."""
    path = os.path.abspath(os.fspath(path))
    size = os.path.getsize(path)
    head = min(size, HEAD_BYTES)
    return {"path": path, "bytes": size, "head_bytes": head, "head_sha256": _head_sha256(path, head)}


def same_head(stored: dict[str, Any], path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` starts with the bytes ``stored`` hashed (it may have grown since)."""
    length = int(stored.get("head_bytes", 0))
    return os.path.getsize(path) >= length and _head_sha256(os.fspath(path), length) == stored.get("head_sha256")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def compare(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Each difference between two fingerprints as ``"key: stored → current"`` (empty: the same)."""
    old, new = _flatten(stored), _flatten(current)
    missing = object()
    return [
        f"{key}: {json.dumps(old.get(key)) if key in old else '(unset)'} → {json.dumps(new.get(key)) if key in new else '(unset)'}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
    ]

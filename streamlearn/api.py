"""One-call loading of a checkpointed learner, for use as a library."""

from __future__ import annotations

import contextlib
import math
import os
import resource
from collections.abc import Iterator, Mapping
from typing import Any

from streamlearn.engine.checkpoint import Checkpoint, CheckpointStore, read_checkpoint
from streamlearn.engine.registry import LEARNERS, import_object
from streamlearn.learners.base import subset

__all__ = ["check_params", "learner_from_checkpoint", "load_learner", "read_latest"]


def load_learner(location: str | os.PathLike, learner_class: type | None = None) -> Any:
    """The learner stored in a checkpoint file, or in the latest good checkpoint of a directory.

    The learner is rebuilt from the class and parameters in the checkpoint's metadata
    and its state is loaded (hash verified, no pickle). Only the built-in learners are
    rebuilt by name — a checkpoint cannot make this import arbitrary modules; for a
    learner of your own pass ``learner_class``. A torch learner's checkpoint names the
    factory of its module, so it is rebuilt only with ``learner_class=TorchLearner``.
    A learner class with a ``from_state_dict`` constructor (river learners) is rebuilt
    from its state alone; for the others the stored parameters must pass
    :func:`check_params` first, and the constructor runs under a :func:`memory_budget`
    (docs/security.md).

    >>> from streamlearn import load_learner               # doctest: +SKIP
    >>> learner = load_learner("out/phishing/checkpoints")  # doctest: +SKIP
    >>> learner.predict_one({"https": 1.0})                 # doctest: +SKIP
    """
    return learner_from_checkpoint(read_latest(location), learner_class)


def read_latest(location: str | os.PathLike) -> Checkpoint:
    """The checkpoint in a ``.parquet`` file, or the latest good one of a directory or URI."""
    location = os.fspath(location)
    if location.endswith(".parquet"):
        return read_checkpoint(location)
    checkpoint = CheckpointStore(location).load_latest()
    if checkpoint is None:
        raise FileNotFoundError(f"no good checkpoint in {location}")
    return checkpoint


#: Bounds on the parameters stored in a checkpoint's metadata (see :func:`check_params`).
MAX_PARAM_DEPTH = 16
MAX_PARAM_VALUES = 10_000
MAX_PARAM_TEXT = 10_000
MAX_PARAM_INT = 2**53


def check_params(params: Any, where: str = "params") -> Any:
    """``params`` if it is bounded JSON; else ``ValueError`` naming the offending value.

    A checkpoint's metadata is not covered by its hash, so the parameters a learner is
    rebuilt with are checked first: JSON types only (objects with string keys, lists,
    strings, booleans, null, finite numbers), nested at most ``MAX_PARAM_DEPTH`` deep,
    at most ``MAX_PARAM_VALUES`` values, strings of at most ``MAX_PARAM_TEXT``
    characters and integers within ±2^53.
    """
    count = 0

    def visit(value: Any, path: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_PARAM_VALUES:
            raise ValueError(f"{where} hold more than {MAX_PARAM_VALUES:,} values")
        if depth > MAX_PARAM_DEPTH:
            raise ValueError(f"{path} is nested more than {MAX_PARAM_DEPTH} deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValueError(f"{path} has a key that is not a string: {key!r:.80}")
                visit(item, f"{path}.{key}", depth + 1)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                visit(item, f"{path}[{i}]", depth + 1)
        elif isinstance(value, str):
            if len(value) > MAX_PARAM_TEXT:
                raise ValueError(f"{path} is a string of {len(value):,} characters (at most {MAX_PARAM_TEXT:,})")
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if abs(value) > MAX_PARAM_INT:
                raise ValueError(f"{path} = {value:.3e} is beyond ±2^53")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{path} = {value} is not finite")
        else:
            raise ValueError(f"{path} is a {type(value).__name__}, not a JSON value")

    if not isinstance(params, dict):
        raise ValueError(f"{where} must be an object, got {type(params).__name__}")
    visit(params, where, 0)
    return params


#: Memory a learner's constructor may take when rebuilt from stored parameters, on top of
#: ``BUILD_PER_STATE_BYTE`` times its state's size: a real learner is built about as big
#: as the state that then replaces its insides.
BUILD_BUDGET = 256 << 20
BUILD_PER_STATE_BYTE = 4


def proc_status_bytes(field: str) -> int | None:
    """A size field of ``/proc/self/status`` (``VmData``, ``VmHWM``, ...) in bytes (Linux), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def memory_budget(nbytes: int, what: str) -> Iterator[None]:
    """Cap the process's data segment (``RLIMIT_DATA``) at its current size plus ``nbytes`` within the block.

    An allocation beyond it fails at once, before the memory is taken, and becomes a
    ``ValueError`` naming ``what``. The limit is process-wide while the block runs (other
    threads allocating then share it) and needs Linux; elsewhere nothing is capped.
    """
    current = proc_status_bytes("VmData")
    if current is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = current + nbytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield
    except MemoryError:
        raise ValueError(f"{what} needs more than the {nbytes:,} bytes of memory allowed; refusing it") from None
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _state_bytes(state: Mapping[str, Any]) -> int:
    return sum(v.nbytes if hasattr(v, "nbytes") else len(v) if isinstance(v, str) else 8 for v in state.values())


def learner_from_checkpoint(checkpoint: Checkpoint, learner_class: type | None = None) -> Any:
    """The learner a checkpoint holds: rebuilt from its state (or its checked parameters), its state loaded."""
    spec = checkpoint.metadata.get("learner") or {}
    if learner_class is None:
        stored = spec.get("class")
        if stored not in {path for path, _ in LEARNERS.values()}:
            raise ValueError(
                f"the checkpoint's learner {stored!r} is not a built-in learner; pass learner_class to rebuild it"
            )
        if stored == LEARNERS["torch"][0]:
            # Its parameters name a factory to import and call: only on the caller's word.
            raise ValueError(
                f"this torch checkpoint names code to run (module = {(spec.get('params') or {}).get('module')!r}); "
                "if you trust it, load it with learner_class=streamlearn.learners.TorchLearner"
            )
        learner_class = import_object(stored)
    state = subset(checkpoint.state, "learner/")
    from_state = getattr(learner_class, "from_state_dict", None)
    if callable(from_state):
        return from_state(state)
    params = check_params(spec.get("params") or {}, f"{checkpoint.path}: learner params")
    budget = BUILD_BUDGET + BUILD_PER_STATE_BYTE * _state_bytes(state)
    with memory_budget(budget, f"building {learner_class.__name__} from {checkpoint.path}'s stored parameters"):
        learner = learner_class(**params)
    learner.load_state_dict(state)
    return learner

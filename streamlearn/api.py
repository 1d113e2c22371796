"""One-call loading of a checkpointed learner, for use as a library."""

from __future__ import annotations

import os
from typing import Any

from streamlearn.engine.checkpoint import Checkpoint, CheckpointStore, read_checkpoint
from streamlearn.engine.registry import LEARNERS, import_object
from streamlearn.learners.base import subset

__all__ = ["learner_from_checkpoint", "load_learner", "read_latest"]


def load_learner(location: str | os.PathLike, learner_class: type | None = None) -> Any:
    """The learner stored in a checkpoint file, or in the latest good checkpoint of a directory.

    The learner is rebuilt from the class and parameters in the checkpoint's metadata
    and its state is loaded (hash verified, no pickle). Only the built-in learners are
    rebuilt by name — a checkpoint cannot make this import arbitrary modules; for a
    learner of your own pass ``learner_class``. A torch learner's checkpoint names the
    factory of its module, so it is rebuilt only with ``learner_class=TorchLearner``.

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


def learner_from_checkpoint(checkpoint: Checkpoint, learner_class: type | None = None) -> Any:
    """The learner a checkpoint holds: rebuilt from its metadata, its state loaded."""
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
    learner = learner_class(**(spec.get("params") or {}))
    learner.load_state_dict(subset(checkpoint.state, "learner/"))
    return learner

"""One-call loading of a checkpointed learner, for use as a library."""

from __future__ import annotations

import os
from typing import Any

from streamlearn.engine.checkpoint import CheckpointStore, read_checkpoint
from streamlearn.engine.registry import LEARNERS, import_object
from streamlearn.learners.base import subset

__all__ = ["load_learner"]


def load_learner(location: str | os.PathLike, learner_class: type | None = None) -> Any:
    """The learner stored in a checkpoint file, or in the latest good checkpoint of a directory.

    The learner is rebuilt from the class and parameters in the checkpoint's metadata
    and its state is loaded (hash verified, no pickle). Only the built-in learners are
    rebuilt by name — a checkpoint cannot make this import arbitrary modules; for a
    learner of your own pass ``learner_class``.

    >>> from streamlearn import load_learner               # doctest: +SKIP
    >>> learner = load_learner("out/phishing/checkpoints")  # doctest: +SKIP
    >>> learner.predict_one({"https": 1.0})                 # doctest: +SKIP
    """
    location = os.fspath(location)
    if location.endswith(".parquet"):
        checkpoint = read_checkpoint(location)
    else:
        checkpoint = CheckpointStore(location).load_latest()
        if checkpoint is None:
            raise FileNotFoundError(f"no good checkpoint in {location}")
    spec = checkpoint.metadata.get("learner") or {}
    if learner_class is None:
        stored = spec.get("class")
        if stored not in {path for path, _ in LEARNERS.values()}:
            raise ValueError(
                f"the checkpoint's learner {stored!r} is not a built-in learner; pass learner_class to rebuild it"
            )
        learner_class = import_object(stored)
    learner = learner_class(**(spec.get("params") or {}))
    learner.load_state_dict(subset(checkpoint.state, "learner/"))
    return learner

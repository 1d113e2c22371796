"""Learners that misbehave on purpose, named by configs as ``tests.poison_learners:Class``."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np


class HalfUpdate:
    """Counts and sums what it learns, and raises *after* counting when ``x`` has ``boom``.

    A learner that raises half-way through an update: the engine must leave no
    trace of the failed event in the state.
    """

    is_classifier = False

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.count = 0
        self.total = np.zeros(1)

    def _get_params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def learn_one(self, x: dict, y: Any = None) -> None:
        self.count += 1
        if "boom" in x:
            raise RuntimeError(f"boom at {x['boom']}")
        self.total += x.get("a", 0.0)

    def predict_one(self, x: dict) -> float:
        return float(self.total[0])

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.total = np.array(state["total"], dtype=float)


class ExitOn(HalfUpdate):
    """Ends the process at once (no cleanup, like a segfault) when it learns ``x["die"]``."""

    def learn_one(self, x: dict, y: Any = None) -> None:
        if "die" in x:
            os._exit(13)
        super().learn_one(x, y)


class SegfaultOn(ExitOn):
    """Also crashes the interpreter with a segmentation fault (reads address 0) when it learns ``x["segv"]``."""

    def learn_one(self, x: dict, y: Any = None) -> None:
        if "segv" in x:
            ctypes.string_at(0)
        super().learn_one(x, y)

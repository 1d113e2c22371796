"""The last good state, and how the engine returns to it.

A learner update that raises half-way (a river pipeline whose scaler has learned
``x`` before the model refuses ``y``), or one that leaves NaN or infinity in the
state, must not survive. Rather than trusting every learner family to undo its
own partial updates, the engine keeps a :class:`SafePoint`: a private copy of the
learner + processor state known to be healthy, and the events processed since
(the journal). Going back is *restore the copy, re-run the journal*: every event
before the failing one is then in the state exactly once, and nothing of the
failing one is. Learners keep their random state in ``state_dict``, so the
re-run reproduces the same state.

A state is *healthy* when it holds no more NaN values (and, in river's JSON
state, infinities) than the safe point did (see :func:`count_nonfinite`). The engine checks health at every safe point and before every
checkpoint; a state found unhealthy there is repaired by :meth:`SafePoint.culprit`:
the first journal event after which the state is unhealthy (found by bisection)
is the one that caused it.

The journal is re-run in the micro-batches it was processed in (it keeps their
sizes): a learner fed mini-batches (``[processor] mini_batch``) learns each batch
as a whole, so the same events cut differently would give a different state.

Cost on the hot path: the journal keeps references to the decoded events, and a
safe point (a state copy and a health check) is taken every ``every`` events
and at each checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamlearn.engine.checkpointing import state_of
from streamlearn.engine.processor import Item, Processor
from streamlearn.learners.base import subset

__all__ = ["SafePoint", "count_nonfinite"]


def _count_constants(text: str) -> int:
    if "NaN" not in text and "Infinity" not in text:
        return 0
    found = 0

    def constant(name: str) -> float:
        nonlocal found
        found += 1
        return 0.0

    try:
        # parse_constant sees NaN/Infinity outside strings only (a feature named "NaN" is not one).
        json.loads(text, parse_constant=constant)
    except (ValueError, RecursionError):
        return 0  # not JSON state: text only
    return found


def count_nonfinite(state: Mapping[str, Any]) -> int:
    """NaN values in a state, plus infinities in its JSON-encoded (river) entries.

    Infinity in an array or a number is left alone: learners use it on purpose
    (an arm not yet explored has an infinite priority), and a diverging update
    turns into NaN one step later. river models have no such sentinels, and
    there an infinity (a variance that overflowed) is the first sign.
    """
    found = 0
    for value in state.values():
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "fc":
                found += int(np.count_nonzero(np.isnan(value)))
        elif isinstance(value, float):
            found += math.isnan(value)
        elif isinstance(value, str):
            found += _count_constants(value)
    return found


def _copy(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}


class SafePoint:
    """A healthy copy of a processor's (and its learner's) state, and the events since.

    Parameters
    ----------
    processor
        Whose state (with its learner's) is kept.
    every
        Events between safe points taken by the engine on its own.
    """

    def __init__(self, processor: Processor, every: int = 5000):
        self.processor = processor
        self.every = every
        self.journal: list[Item] = []
        #: Sizes of the ``process`` calls the journal's events came in, in order.
        self._batches: list[int] = []
        self._good: dict[str, Any] | None = None
        self._baseline = 0

    @property
    def ready(self) -> bool:
        """False until the first :meth:`take` (after a checkpoint is restored, not before)."""
        return self._good is not None

    def take(self, state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The current state becomes the safe point (it must be healthy); returns it."""
        state = state_of(self.processor.learner, self.processor) if state is None else state
        self._good = _copy(state)
        self._baseline = count_nonfinite(self._good)
        self.journal = []
        self._batches = []
        return state

    @property
    def due(self) -> bool:
        return len(self.journal) >= self.every

    def record(self, items: list[Item]) -> None:
        """``items`` (one ``process`` call) are now in the state."""
        if items:
            self.journal.extend(items)
            self._batches.append(len(items))

    def remove(self, index: int) -> Item:
        """Take the journal's event ``index`` out (its batch is re-run without it)."""
        end = 0
        for i, size in enumerate(self._batches):
            end += size
            if index < end:
                if size == 1:
                    del self._batches[i]
                else:
                    self._batches[i] -= 1
                break
        return self.journal.pop(index)

    def healthy(self, state: Mapping[str, Any] | None = None) -> bool:
        if not self.ready:
            self.take()
        state = state_of(self.processor.learner, self.processor) if state is None else state
        return count_nonfinite(state) <= self._baseline

    def rollback(self, upto: int | None = None) -> None:
        """Back to the safe point, then re-run the journal (its first ``upto`` events); no outputs."""
        processor = self.processor
        if not self.ready:
            self.take()
        state = _copy(self._good)  # the learner may update arrays in place: the copy stays ours
        vocabulary = processor.vocabulary  # names are counted when decoded, and decoding is not redone
        processor.learner.load_state_dict(subset(state, "learner/"))
        processor.load_state_dict(subset(state, "processor/"))
        processor.vocabulary = vocabulary
        upto = len(self.journal) if upto is None else upto
        emit, processor.emit = processor.emit, False
        try:
            start = 0
            for size in self._batches:
                if start >= upto:
                    break
                processor.process(self.journal[start : min(start + size, upto)])
                start += size
        finally:
            processor.emit = emit
            processor.take_rejected()  # already dead letters the first time

    def culprit(self, state: Mapping[str, Any] | None = None) -> int | None:
        """Index of the first journal event after which the state is unhealthy (None: healthy).

        ``state``: the current state when the caller has it. Bisection: the state at the
        safe point is healthy, so the first unhealthy prefix is found in
        log2(len(journal)) re-runs. The state is left at the safe point plus the whole journal.
        """
        if self.healthy(state) or not self.journal:
            return None
        lo, hi = 0, len(self.journal)  # healthy after lo events, unhealthy after hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            self.rollback(upto=mid)
            if self.healthy():
                lo = mid
            else:
                hi = mid
        self.rollback()
        return hi - 1

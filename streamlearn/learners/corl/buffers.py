"""A bounded store for the transitions of the task being learned.

Transitions are kept in arrival order in growing NumPy arrays up to ``capacity``.
What happens to a transition arriving when the store is full is the
``overflow`` policy:

- ``"drop_oldest"``: the oldest transition is overwritten (a ring buffer), so
  the task is trained on its latest ``capacity`` transitions; ``dropped`` counts
  the lost ones.
- ``"reject"``: :meth:`TaskBuffer.append` raises :class:`BufferFull` and the
  store is unchanged (the stream processor sends such events to the dead letters).

Example
-------
>>> from streamlearn.learners.corl.buffers import TaskBuffer
>>> buf = TaskBuffer(obs_dim=1, act_dim=1, capacity=2, overflow="drop_oldest")
>>> for t in range(3):
...     buf.append([t], [0.0], float(t), [t + 1], False)
>>> buf.arrays()["reward"].tolist(), buf.dropped
([1.0, 2.0], 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from streamlearn.learners.base import State

__all__ = ["FIELDS", "OVERFLOW", "BufferFull", "TaskBuffer"]

#: The columns of a transition, in order.
FIELDS = ("obs", "action", "reward", "next_obs", "done")
OVERFLOW = ("drop_oldest", "reject")


class BufferFull(ValueError):
    """A transition arrived for a full store whose overflow policy is ``"reject"``."""


class TaskBuffer:
    """Bounded, ordered store of one task's transitions (see the module docstring)."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, overflow: str = "drop_oldest"):
        if int(capacity) < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {OVERFLOW}, got {overflow!r}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.capacity, self.overflow = int(capacity), overflow
        self.clear()

    def clear(self) -> None:
        self._columns = self._allocate(min(self.capacity, 1024))
        self._size = 0
        #: Physical index of the oldest transition once the ring has wrapped.
        self._start = 0
        #: Transitions overwritten by ``drop_oldest`` since the last clear.
        self.dropped = 0

    def _allocate(self, rows: int) -> dict[str, np.ndarray]:
        return {
            "obs": np.zeros((rows, self.obs_dim), np.float32),
            "action": np.zeros((rows, self.act_dim), np.float32),
            "reward": np.zeros(rows, np.float32),
            "next_obs": np.zeros((rows, self.obs_dim), np.float32),
            "done": np.zeros(rows, bool),
        }

    def __len__(self) -> int:
        return self._size

    @property
    def full(self) -> bool:
        return self._size >= self.capacity

    def append(self, obs: Any, action: Any, reward: float, next_obs: Any, done: bool) -> None:
        if self.full:
            if self.overflow == "reject":
                raise BufferFull(f"the current task already holds {self.capacity} transitions (task_capacity)")
            row = self._start
            self._start = (self._start + 1) % self.capacity
            self.dropped += 1
        else:
            rows = len(self._columns["reward"])
            if self._size == rows:  # grow geometrically up to the capacity
                grown = self._allocate(min(self.capacity, 2 * rows))
                for key, column in self._columns.items():
                    grown[key][:rows] = column
                self._columns = grown
            row = self._size
            self._size += 1
        for key, value in zip(FIELDS, (obs, action, reward, next_obs, done), strict=True):
            self._columns[key][row] = value

    def extend(self, data: Mapping[str, np.ndarray]) -> None:
        """Append many transitions (columns of equal length) as if one by one."""
        n = len(data["reward"])
        if self.overflow == "reject" and self._size + n > self.capacity:
            raise BufferFull(f"{self._size} + {n} transitions exceed task_capacity={self.capacity}")
        if self._size + n > len(self._columns["reward"]) and self._size + n <= self.capacity:
            grown = self._allocate(self._size + n)
            for key, column in self._columns.items():
                grown[key][: self._size] = column[: self._size]
            self._columns = grown
        if self._size + n <= self.capacity:  # the common case: one block copy
            for key in FIELDS:
                self._columns[key][self._size : self._size + n] = data[key]
            self._size += n
            return
        for row in range(n):
            self.append(*(data[key][row] for key in FIELDS))

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored transitions, oldest first (copies)."""
        order = (np.arange(self._size) + self._start) % max(self._size, 1)
        return {key: column[: self._size][order] for key, column in self._columns.items()}

    def state_dict(self) -> State:
        state: State = dict(self.arrays())
        state["dropped"] = int(self.dropped)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        size = len(state["reward"])
        if size > self.capacity:
            raise ValueError(f"the state holds {size} transitions, more than task_capacity={self.capacity}")
        self._columns = self._allocate(max(min(self.capacity, 1024), size))
        for key in FIELDS:
            self._columns[key][:size] = state[key]
        self._size, self._start = size, 0
        self.dropped = int(state["dropped"])

"""Model-based experience selection (MBES): which real transitions of a finished task to keep.

A small replay buffer should hold the states the *learned* policy visits, not a
uniform sample of the behaviour data. MBES walks through the dataset the way the
policy would, using a transition model only to choose between real transitions:

1. Predict with the ensemble ``ŝ_j = T̂(s_j, a_j)`` for every dataset transition
   (the logged action) and ``ŝ*_k = T̂(s_k, π(s_k))`` (the policy's action).
2. Start a walk at an episode start ``k``. Add ``k`` to the buffer. Among the
   ``n_neighbors`` dataset states nearest to ``s_k`` take the ``j*`` whose
   prediction ``ŝ_j`` is closest to ``ŝ*_k``. If the model is confident at ``k`` —
   the ensemble variance of ``ŝ*_k`` is at most ``confidence`` times the mean
   variance of the candidates' predictions — continue at the successor of ``j*``
   (where the policy would have gone, as far as the data show); otherwise follow
   the logged trajectory to the successor of ``k``.
3. A walk ends at an episode end or after twice the longest episode; then the
   next walk starts from another episode start (random order). Already chosen
   transitions are walked through but not added again. When every start has
   been used and the buffer is still short, random unchosen transitions fill it.

Comparing model predictions with model predictions, rather than with the logged
next states, cancels part of the model's bias. Distances use the observation
dimensions ``compare_dims`` (default: all).

Successors are found from the data: transition ``i + 1`` follows ``i`` when ``i``
is not terminal and ``next_obs[i]`` equals ``obs[i + 1]`` (see :func:`successors`).

Parameters
----------
n_neighbors
    Candidates per step (the paper: 64).
confidence
    λ of the variance test (the paper: 2).
compare_dims
    Observation dimensions used for neighbours and prediction distances; None: all.

Example
-------
>>> import numpy as np
>>> from streamlearn.learners.corl import MBES
>>> class ShiftModel:  # an exact, certain model of s' = s + a
...     def predict(self, obs, act):
...         return (obs + act)[None]
>>> obs = np.arange(6, dtype=np.float32).reshape(6, 1) % 3
>>> act = np.ones((6, 1), np.float32)
>>> done = np.array([0, 0, 1, 0, 0, 1], bool)
>>> chosen = MBES(n_neighbors=4).select(obs, act, obs + act, done, act, ShiftModel(), size=3,
...                                     rng=np.random.default_rng(0))
>>> len(chosen), len(set(chosen.tolist()))
(3, 3)

Reference: Gai, Wang, He, "OER: Offline Experience Replay for Continual Offline
Reinforcement Learning" (arXiv 2305.13804). The public code (github gaisibo/CORL)
compares only the first 2–3 observation dimensions; here that is ``compare_dims``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MBES", "successors"]


def successors(obs: np.ndarray, next_obs: np.ndarray, done: np.ndarray) -> np.ndarray:
    """For every transition the index of the next one in its episode, or −1 at an episode end."""
    n = len(obs)
    succ = np.full(n, -1, dtype=np.int64)
    if n > 1:
        gap = np.abs(np.asarray(next_obs[:-1], np.float64) - np.asarray(obs[1:], np.float64))
        same = np.all(gap <= 1e-6 * (1.0 + np.abs(np.asarray(obs[1:], np.float64))), axis=1)
        linked = same & ~np.asarray(done[:-1], dtype=bool)
        succ[:-1][linked] = np.arange(1, n)[linked]
    return succ


class MBES:
    """Model-based experience selection (see the module docstring)."""

    def __init__(self, n_neighbors: int = 64, confidence: float = 2.0, compare_dims: Sequence[int] | None = None):
        if int(n_neighbors) < 1:
            raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors}")
        if not confidence >= 0:
            raise ValueError(f"confidence must be 0 or more, got {confidence}")
        self.n_neighbors = int(n_neighbors)
        self.confidence = float(confidence)
        self.compare_dims = None if compare_dims is None else [int(d) for d in compare_dims]

    def select(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        policy_action: np.ndarray,
        model: Any,
        size: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Indices of ``size`` distinct transitions (all of them when there are fewer).

        ``model.predict(obs, act)`` returns every ensemble member's next-state
        prediction, shape (n_models, n, obs_dim).
        """
        n = len(obs)
        if size >= n:
            return np.arange(n, dtype=np.int64)
        dims = slice(None) if self.compare_dims is None else self.compare_dims
        keys = np.asarray(obs, dtype=np.float64)[:, dims]
        pred_data = np.asarray(model.predict(obs, action), dtype=np.float64)[:, :, dims]
        pred_policy = np.asarray(model.predict(obs, policy_action), dtype=np.float64)[:, :, dims]
        mean_data, var_data = pred_data.mean(0), pred_data.var(0).mean(1)
        mean_policy, var_policy = pred_policy.mean(0), pred_policy.var(0).mean(1)

        succ = successors(obs, next_obs, done)
        starts = np.flatnonzero(np.r_[True, succ[:-1] < 0])
        longest = int(np.diff(np.r_[starts, n]).max())
        m = min(self.n_neighbors, n)

        chosen = np.zeros(n, dtype=bool)
        order: list[int] = []
        for start in rng.permutation(starts):
            k, steps = int(start), 0
            while k >= 0 and steps < 2 * longest and len(order) < size:
                if not chosen[k]:
                    chosen[k] = True
                    order.append(k)
                dist = ((keys - keys[k]) ** 2).sum(1)
                near = np.argpartition(dist, m - 1)[:m]
                best = near[np.argmin(((mean_data[near] - mean_policy[k]) ** 2).sum(1))]
                confident = var_policy[k] <= self.confidence * var_data[near].mean()
                k = int(succ[best] if confident else succ[k])
                steps += 1
            if len(order) >= size:
                break
        if len(order) < size:
            rest = np.flatnonzero(~chosen)
            order.extend(rng.choice(rest, size=size - len(order), replace=False).tolist())
        return np.asarray(order, dtype=np.int64)

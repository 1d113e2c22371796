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
3. A walk never steps onto a transition already in the buffer: only candidates
   whose successor is new compete for ``j*``. Without this rule a walk is easily
   pinned to one state: the predecessor of ``s_k`` predicts ``s_k`` itself, and
   when the data hold no transition that moves the way the policy would (a
   policy faster than the behaviour data), that prediction is the closest one,
   so the walk jumps back to ``k`` for ever. (The public code ends a walk that
   reaches a kept state; here the next-best candidate keeps it moving.)
4. A walk ends at an episode end, when it would follow the logged trajectory
   onto a kept transition, when no candidate is left, or after twice the longest
   episode; then the next walk starts from another episode start (random order).
   When every start has been used and the buffer is still short, random unchosen
   transitions fill it (``padded`` counts them).

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
from scipy.spatial import cKDTree

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
        #: Transitions of the last selection that no walk reached (filled in at random).
        self.padded = 0

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
        self.padded = 0
        if size >= n:
            return np.arange(n, dtype=np.int64)
        dims = slice(None) if self.compare_dims is None else self.compare_dims
        keys = np.asarray(obs, dtype=np.float64)[:, dims]
        pred_data = np.asarray(model.predict(obs, action), dtype=np.float64)[:, :, dims]
        pred_policy = np.asarray(model.predict(obs, policy_action), dtype=np.float64)[:, :, dims]
        mean_data, var_data = pred_data.mean(0), pred_data.var(0).mean(1)
        mean_policy, var_policy = pred_policy.mean(0), pred_policy.var(0).mean(1)

        succ = successors(obs, next_obs, done)
        ranked, confident = self._rank_candidates(keys, mean_data, var_data, mean_policy, var_policy)
        starts = np.flatnonzero(np.r_[True, succ[:-1] < 0])
        longest = int(np.diff(np.r_[starts, n]).max())

        chosen = np.zeros(n, dtype=bool)
        order: list[int] = []
        for start in rng.permutation(starts):
            k, steps = int(start), 0
            while k >= 0 and not chosen[k] and steps < 2 * longest and len(order) < size:
                chosen[k] = True
                order.append(k)
                k = self._next(k, ranked, confident, succ, chosen)
                steps += 1
            if len(order) >= size:
                break
        self.padded = size - len(order)
        if len(order) < size:
            rest = np.flatnonzero(~chosen)
            order.extend(rng.choice(rest, size=size - len(order), replace=False).tolist())
        return np.asarray(order, dtype=np.int64)

    @staticmethod
    def _next(k: int, ranked: np.ndarray, confident: np.ndarray, succ: np.ndarray, chosen: np.ndarray) -> int:
        """The next state of a walk at ``k`` (−1: the walk ends)."""
        if not confident[k]:
            return int(succ[k])  # −1 at an episode end; a kept state ends the walk in the loop
        after = succ[ranked[k]]
        usable = (after >= 0) & ~chosen[after]
        return int(after[np.argmax(usable)]) if usable.any() else -1

    def _rank_candidates(
        self,
        keys: np.ndarray,
        mean_data: np.ndarray,
        var_data: np.ndarray,
        mean_policy: np.ndarray,
        var_policy: np.ndarray,
        chunk: int = 4096,
    ) -> tuple[np.ndarray, np.ndarray]:
        """For every transition: its candidates, best first, and whether the model is confident there.

        The candidates of ``k`` are the ``n_neighbors`` states nearest ``s_k`` (a k-d
        tree), ranked by the distance of their predicted next state to the policy's.
        Both depend only on ``k``, so they are computed once for all transitions
        instead of once per visit.
        """
        n = len(keys)
        m = min(self.n_neighbors, n)
        _, near = cKDTree(keys).query(keys, k=m)
        near = np.asarray(near, dtype=np.int64).reshape(n, m)
        ranked = np.empty_like(near)
        confident = np.empty(n, dtype=bool)
        for lo in range(0, n, chunk):
            rows = near[lo : lo + chunk]
            gap = ((mean_data[rows] - mean_policy[lo : lo + chunk, None, :]) ** 2).sum(2)
            ranked[lo : lo + chunk] = np.take_along_axis(rows, np.argsort(gap, axis=1, kind="stable"), axis=1)
            confident[lo : lo + chunk] = var_policy[lo : lo + chunk] <= self.confidence * var_data[rows].mean(1)
        return ranked, confident

"""Model-based experience selection (MBES): which real transitions of a finished task to keep.

A small replay buffer should hold the states the *learned* policy visits, not a
uniform sample of the behaviour data. MBES walks through the dataset the way the
policy would, using a transition model only to choose between real transitions:

1. Predict with the ensemble ``ŝ_j = T̂(s_j, a_j)`` for every dataset transition
   (the logged action).
2. Walks run in batches of ``n_walks``, advanced in lockstep (as the public code
   does), each from an episode start (in random order). At every step, for every
   walk at ``k``: take the policy's action ``a* = π(s_k)`` and ``ŝ* = T̂(s_k, a*)``.
   Among the ``n_neighbors`` dataset states nearest ``s_k`` take the ``j*`` whose
   prediction ``ŝ_j`` is closest to ``ŝ*``. If the model is confident at ``k`` —
   the ensemble variance of ``ŝ*`` is at most ``confidence`` times the mean
   variance of the candidates' predictions — the walk continues at the successor
   of ``j*`` (where the policy would have gone, as far as the data show);
   otherwise it follows the logged trajectory to the successor of ``k``.
3. A walk never steps onto a transition already walked: only candidates whose
   successor is new compete for ``j*``. Without this rule a walk is easily
   pinned to one state: the predecessor of ``s_k`` predicts ``s_k`` itself, and
   when the data hold no transition that moves the way the policy would, that
   prediction is the closest one. A walk ends at an episode end, when it would
   follow the logged trajectory onto a walked transition, when no candidate is
   left, or after twice the longest episode.
4. When a batch of walks has ended, its walked transitions join the buffer. If
   they are more than the room left, a uniform sample of them does: the buffer
   then holds states from the whole length of the walks, not their first steps.
   Further batches start while the buffer is short; when every episode start has
   been used, random transitions no walk reached fill it (``padded`` counts them).

Comparing model predictions with model predictions, rather than with the logged
next states, cancels part of the model's bias. Distances use the observation
dimensions ``compare_dims`` (default: all).

Successors are found from the data: transition ``i + 1`` follows ``i`` when ``i``
is not terminal and ``next_obs[i]`` equals ``obs[i + 1]`` (see :func:`successors`).

Deviations from the paper and the public code (github gaisibo/CORL):

- step 4: the paper adds walked states until the buffer holds N, so at N far below
  the length of the walks a buffer holds only the first steps of the first walks
  (trajectory prefixes); here a full batch of walks is sampled down instead;
- step 3: the public code ends a walk that reaches a kept state; here the
  next-best candidate keeps it moving (the pinning above);
- the public code compares only the first 2–3 observation dimensions; here that
  is ``compare_dims`` (default all).

Parameters
----------
n_neighbors
    Candidates per step (the paper: 64).
confidence
    λ of the variance test (the paper: 2).
compare_dims
    Observation dimensions used for neighbours and prediction distances; None: all.
n_walks
    Walks advanced in lockstep (the public code: 10).

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
>>> chosen = MBES(n_neighbors=4).select(obs, act, obs + act, done, lambda o: np.ones_like(o), ShiftModel(),
...                                     size=3, rng=np.random.default_rng(0))
>>> len(chosen), len(set(chosen.tolist()))
(3, 3)

Reference: Gai, Wang, He, "OER: Offline Experience Replay for Continual Offline
Reinforcement Learning" (arXiv 2305.13804), section on MBES; the lockstep batch of
walks follows the public code's selection loop (code written independently).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    def __init__(
        self,
        n_neighbors: int = 64,
        confidence: float = 2.0,
        compare_dims: Sequence[int] | None = None,
        n_walks: int = 10,
    ):
        if int(n_neighbors) < 1 or int(n_walks) < 1:
            raise ValueError(f"n_neighbors and n_walks must be at least 1, got {n_neighbors} and {n_walks}")
        if not confidence >= 0:
            raise ValueError(f"confidence must be 0 or more, got {confidence}")
        self.n_neighbors = int(n_neighbors)
        self.confidence = float(confidence)
        self.compare_dims = None if compare_dims is None else [int(d) for d in compare_dims]
        self.n_walks = int(n_walks)
        #: Transitions of the last selection that no walk reached (filled in at random).
        self.padded = 0
        #: Transitions the walks of the last selection visited (kept or not).
        self.walked = 0

    def select(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        policy: Callable[[np.ndarray], np.ndarray] | np.ndarray,
        model: Any,
        size: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Indices of ``size`` distinct transitions (all of them when there are fewer).

        ``policy`` maps a batch of observations to actions (or is an array holding
        the policy's action for every transition). ``model.predict(obs, act)``
        returns every ensemble member's next-state prediction, shape (n_models, n, obs_dim).
        """
        n = len(obs)
        self.padded = self.walked = 0
        if size >= n:
            return np.arange(n, dtype=np.int64)
        obs = np.asarray(obs, dtype=np.float32)
        if not callable(policy):
            table = np.asarray(policy, dtype=np.float32)
            policy = None
        dims = slice(None) if self.compare_dims is None else self.compare_dims
        keys = np.asarray(obs, dtype=np.float64)[:, dims]
        pred_data = np.asarray(model.predict(obs, action), dtype=np.float64)[:, :, dims]
        mean_data, var_data = pred_data.mean(0), pred_data.var(0).mean(1)
        tree = cKDTree(keys)
        m = min(self.n_neighbors, n)

        succ = successors(obs, next_obs, done)
        starts = np.flatnonzero(np.r_[True, succ[:-1] < 0])
        longest = int(np.diff(np.r_[starts, n]).max())
        walked = np.zeros(n, dtype=bool)
        order: list[int] = []
        starts = rng.permutation(starts)
        for lo in range(0, len(starts), self.n_walks):
            batch = [int(k) for k in starts[lo : lo + self.n_walks] if not walked[k]]
            walked[batch] = True
            visited = list(batch)
            for _ in range(2 * longest):
                if not batch:
                    break
                here = np.asarray(batch)
                act = policy(obs[here]) if policy is not None else table[here]
                pred = np.asarray(model.predict(obs[here], np.asarray(act, np.float32)), dtype=np.float64)[:, :, dims]
                ranked, confident = self._rank(tree, keys[here], m, mean_data, var_data, pred.mean(0), pred.var(0))
                batch = []
                for w, k in enumerate(here):
                    nxt = self._next(int(k), ranked[w], bool(confident[w]), succ, walked)
                    if nxt >= 0:
                        walked[nxt] = True
                        visited.append(nxt)
                        batch.append(nxt)
            self.walked += len(visited)
            room = size - len(order)
            # A sample of the whole batch of walks, not its first steps, when it does not fit.
            order.extend(visited if len(visited) <= room else rng.choice(visited, size=room, replace=False).tolist())
            if len(order) >= size:
                break
        self.padded = size - len(order)
        if self.padded:
            rest = np.flatnonzero(~walked)
            order.extend(rng.choice(rest, size=self.padded, replace=False).tolist())
        return np.asarray(order, dtype=np.int64)

    @staticmethod
    def _next(k: int, ranked: np.ndarray, confident: bool, succ: np.ndarray, walked: np.ndarray) -> int:
        """The next state of a walk at ``k`` (−1: the walk ends)."""
        if not confident:
            after = int(succ[k])  # −1 at an episode end
            return after if after >= 0 and not walked[after] else -1
        after = succ[ranked]
        usable = (after >= 0) & ~walked[np.maximum(after, 0)]
        return int(after[np.argmax(usable)]) if usable.any() else -1

    def _rank(
        self,
        tree: cKDTree,
        keys: np.ndarray,
        m: int,
        mean_data: np.ndarray,
        var_data: np.ndarray,
        mean_policy: np.ndarray,
        var_policy: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """For walks at states ``keys``: their candidates, best first, and whether the model is confident.

        The candidates are the ``m`` dataset states nearest each walk's state, ranked by
        the distance of their predicted next state (logged action) to the policy's.
        """
        _, near = tree.query(keys, k=m)
        near = np.asarray(near, dtype=np.int64).reshape(len(keys), m)
        gap = ((mean_data[near] - mean_policy[:, None, :]) ** 2).sum(2)
        ranked = np.take_along_axis(near, np.argsort(gap, axis=1, kind="stable"), axis=1)
        confident = var_policy.mean(1) <= self.confidence * var_data[near].mean(1)
        return ranked, confident

"""Seeded generators of the ready streams that no bundled data set provides.

``streamlearn export`` writes them as JSONL (see :data:`streamlearn.datasets.READY_STREAMS`);
the benchmarks use the same generators. Each is deterministic given its seed.

- :func:`overlapping_groups`: the synthetic regression data of Acharya et al. (ICLR 2024, §3)
  for the groupwise-regret experts;
- :func:`shifted_segments`: a frozen classifier's outputs on river's bundled image segments
  under a covariate shift, in a class-grouped order, for LAME;
- :func:`recovering_bandit`: a simulated recovering-reward environment and its periods, for
  the bandit (its rewards come from the simulator, not from a log);
- :func:`pointmass_tasks`: logged transitions of the built-in point mass, task after task,
  for OER.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "COLOURS",
    "SHAPES",
    "overlapping_groups",
    "overlapping_groups_events",
    "pointmass_tasks",
    "recovering_bandit",
    "shifted_segments",
]

SHAPES, SHAPE_P = ["circle", "square", "triangle"], [0.5, 0.3, 0.2]
COLOURS, COLOUR_P = ["green", "red"], [0.6, 0.4]


def _minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min(axis=0)) / (a.max(axis=0) - a.min(axis=0))


def overlapping_groups(
    n: int, aggregate: str = "mean", seed: int = 21, d: int = 20, noise: float = 0.16
) -> tuple[np.ndarray, list[str], np.ndarray, list[str], np.ndarray]:
    """The groupwise-regret paper's synthetic rows (Acharya et al., ICLR 2024, §3).

    x ~ U[0, 1]^d; every row has a shape (circle / square / triangle, p = .5 / .3 / .2)
    and a colour (green / red, .6 / .4), so it lies in two overlapping groups. Group g's
    label is x·w_g + N(0, noise²) with w_g ~ U[0, 1]^d; the observed label is the mean
    (or min, max: ``aggregate``) over the row's two groups, min-max scaled to [0, 1].

    The draws come in the reference generator's order (github.com/krishnacharya/multidecomp)
    from NumPy's legacy RandomState and Python's ``random`` (groups), both seeded ``seed``,
    so with n = 100,000 and the default seed 21 these are the paper's rows.

    Returns ``(X, names, y, groups, member)``: X holds the d features then the five group
    indicators (0/1), ``names`` names X's columns, ``member`` is (n, 6) bool with the
    always-on group last.
    """
    np_rng, py_rng = np.random.RandomState(seed), random.Random(seed)
    features = np_rng.uniform(0.0, 1.0, (n, d))
    shape = np.array(py_rng.choices(range(len(SHAPES)), weights=SHAPE_P, k=n))
    colour = np.array(py_rng.choices(range(len(COLOURS)), weights=COLOUR_P, k=n))
    groups = SHAPES + COLOURS
    member = np.zeros((n, len(groups) + 1), dtype=bool)
    member[np.arange(n), shape] = True
    member[np.arange(n), len(SHAPES) + colour] = True
    member[:, -1] = True
    weights = np_rng.uniform(0.0, 1.0, (d, len(groups)))
    group_labels = features @ weights + np_rng.normal(0.0, noise, (n, len(groups)))
    active = np.where(member[:, :-1], group_labels, np.nan)
    y = {"mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}[aggregate](active, axis=1)
    X = np.column_stack([features, member[:, :-1]]).astype(float)
    names = [f"x{i:02d}" for i in range(d)] + groups
    return X, names, _minmax(y), groups, member


def overlapping_groups_events(n: int = 10_000, seed: int = 21) -> Iterator[dict[str, Any]]:
    """:func:`overlapping_groups` (mean labels) as events ``{"id", "x", "y"}`` for ``configs/groupwise.toml``;
    the group indicators are booleans in x, so a row belongs to the groups whose indicator is true."""
    X, names, y, groups, _ = overlapping_groups(n, "mean", seed)
    indicator = set(groups)
    for i in range(n):
        x = {f: (bool(v) if f in indicator else float(v)) for f, v in zip(names, X[i].tolist(), strict=True)}
        yield {"id": i, "x": x, "y": float(y[i])}


def pointmass_tasks(transitions: int = 500, n_tasks: int = 2, seed: int = 0, queries: int = 5) -> Iterator[dict[str, Any]]:
    """A continual offline-RL stream for ``configs/oer.toml``: ``n_tasks`` tasks of the built-in
    point mass (:class:`~streamlearn.learners.corl.pointmass.PointMass`, goal directions), one
    after another, each ``transitions`` logged transitions of the noisy scripted ("medium")
    controller followed by ``{"type": "task_end"}``; then ``queries`` act queries per task
    (start states) so the outputs show each task's policy. Task ids are integers 0, 1, ...
    """
    from streamlearn.learners.corl.pointmass import PointMass, transition_events

    env = PointMass(n_tasks=max(n_tasks, 1))
    datasets = {task: env.dataset(task, transitions, "medium", seed=seed + task) for task in range(n_tasks)}
    yield from transition_events(datasets)
    starts = env.reset(queries, np.random.default_rng(seed))
    for task in range(n_tasks):
        for q, obs in enumerate(starts.tolist()):
            yield {"type": "act", "id": f"task{task}-start{q}", "task": task, "obs": obs}


def shifted_segments(noise: float = 0.5, seed: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """A frozen classifier's outputs under a covariate shift, class-grouped, for ``configs/lame.toml``.

    River's bundled image segments (2,310 rows, 18 features, 7 classes) are split in
    half at random. A softmax regression is trained on the clean, standardised first
    half (accuracy ≈ 0.91 on clean unseen rows) and frozen. The other half is streamed
    with N(0, noise²) added to every standardised feature (the shift: accuracy ≈ 0.8 at
    noise 0.5), grouped by class in a random class order — the non-i.i.d. test stream
    of Boudiaf et al. (CVPR 2022), where LAME's batch context helps most. Events are
    ``{"id", "probs": the frozen model's softmax, "features": the shifted inputs, "y": class index}``
    (classes in alphabetical order: brickface, cement, foliage, grass, path, sky, window);
    at most ``limit`` of them (the first classes of the order).
    """
    from river.datasets import ImageSegments

    rows = list(ImageSegments())
    classes = sorted({label for _, label in rows})
    names = list(rows[0][0])
    X = np.array([[x[f] for f in names] for x, _ in rows])
    y = np.array([classes.index(label) for _, label in rows])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    Z = (X - X[train].mean(axis=0)) / (X[train].std(axis=0) + 1e-9)
    weights, bias = _softmax_regression(Z[train], y[train], len(classes))
    stream = np.concatenate([rng.permutation(test[y[test] == c]) for c in rng.permutation(len(classes))])[:limit]
    shifted = Z[stream] + rng.normal(0.0, noise, (len(stream), Z.shape[1]))
    logits = shifted @ weights + bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for row, p, f in zip(stream.tolist(), probs.tolist(), shifted.tolist(), strict=True):
        yield {"id": row, "probs": p, "features": f, "y": int(y[row])}


def _softmax_regression(X: np.ndarray, y: np.ndarray, n_classes: int, steps: int = 500, lr: float = 0.5, l2: float = 1e-3):
    """Multinomial logistic regression by full-batch gradient descent: ``(weights, bias)``."""
    weights, bias = np.zeros((X.shape[1], n_classes)), np.zeros(n_classes)
    target = np.eye(n_classes)[y]
    for _ in range(steps):
        logits = X @ weights + bias
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        grad = p / p.sum(axis=1, keepdims=True) - target
        weights -= lr * (X.T @ grad / len(y) + l2 * weights)
        bias -= lr * grad.mean(axis=0)
    return weights, bias


def recovering_bandit(
    periods: int = 3000, n_arms: int = 20, d_max: int = 10, kind: str = "step", seed: int = 0
) -> Iterator[dict[str, Any]]:
    """A simulated recovering-reward environment and its periods, for ``configs/recovering_bandit.toml``.

    The first event declares the environment
    ``{"type": "environment", "r": ..., "noise": "bernoulli", "seed": seed}`` with random
    recovery curves (:func:`~streamlearn.learners.bandits.recovery_curves`, ``kind``:
    step curves by default, where planning pays most); then ``{"type": "decide", "t": t}``
    for t = 0..periods-1. The bandit processor answers every decision from the simulator,
    so the policy is scored on the rewards of its own choices (no logged rewards are replayed).
    """
    from streamlearn.learners.bandits import recovery_curves

    r = recovery_curves(kind, n_arms, d_max, seed)
    yield {"type": "environment", "r": r.round(6).tolist(), "noise": "bernoulli", "seed": seed}
    for t in range(periods):
        yield {"type": "decide", "t": t}

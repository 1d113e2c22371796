"""Groupwise-regret experts: sleeping experts over per-group online ridge oracles.

Predictions whose regret is small on the subsequence of *every* group at once,
where groups (age band, sex, smoker, ...) may intersect, in time linear in the
number of groups. One external-regret oracle per group plus an always-on group:
here online ridge regression, which learns only on the rounds where its group is
active. A sleeping-experts combiner, AdaNormalHedge, mixes the predictions of the
oracles whose groups the individual belongs to.

Per round, with x the features and A the active experts (the individual's groups
plus ``always_on``):

1. every active expert i predicts ŷ_i = clip(θ_iᵀx) with the parameters learned
   from earlier rounds of its group;
2. the learner predicts the mixture ŷ = Σ_i p_i ŷ_i, where p are AdaNormalHedge's
   weights w(R_i, C_i) normalised over A (uniform over A if all are 0);
3. when y arrives: ℓ_i = ((ŷ_i − y) / (hi − lo))² ∈ [0, 1] for i in A, ℓ̂ = p·ℓ,
   r_i = ℓ̂ − ℓ_i, R_i += r_i, C_i += |r_i| (sleeping experts keep R, C), and
   every active expert learns (x, y) by a Sherman–Morrison update.

The mixture is deterministic; for squared loss it is never worse than sampling an
expert from p (Jensen), which is what the paper's regret bounds are stated for.

The experts' inverse matrices (with their parameters as an extra row) are stacked
in one ``(n_experts, d + 1, d)`` array and the awake ones are updated together
(batched Sherman–Morrison), so a round costs a few NumPy calls however many of
its groups are awake.

Features are the numeric entries of ``x`` (booleans count as 0/1, so group
indicators in ``x`` are features too, as in the paper). A missing feature counts
as 0. A feature first seen while learning is appended to every expert with
weight 0 and the prior 1/λ on its diagonal of the inverse — exactly the ridge
solution of the rounds so far had the feature been 0 in them; predictions
ignore features not yet learned from. There is no intercept: add a constant
feature (or one-hot columns) to ``x`` if the model needs one.

Regret is measured by :class:`GroupRegret` / :func:`group_regret`: on each
group's subsequence, the cumulative squared loss minus the residual sum of
squares of the best least-squares fit in hindsight on that subsequence, from
running sufficient statistics (O(d²) memory per group, no stored rows).

Reference
---------
Krishna Acharya, Eshwar Ram Arunachaleswaran, Sampath Kannan, Aaron Roth,
Juba Ziani. "Oracle Efficient Algorithms for Groupwise Regret". ICLR 2024,
arXiv:2310.04652. Reference code: github.com/krishnacharya/multidecomp (read to
understand the experiments; this is an independent implementation). It differs
from that code in three ways: the experts' predictions are clipped to the label
range (the paper's analysis needs losses in [0, 1]; the code leaves them
unclipped); the learner predicts the mixture instead of reporting the expected
loss p·ℓ of sampling; the ridge parameters follow the recursive least-squares
form θ ← θ + P x (y − θᵀx) / (1 + xᵀP x), equal to P·Σ y x up to rounding.
AdaNormalHedge: Luo & Schapire, "Achieving All with No Parameters:
AdaNormalHedge", COLT 2015.

Example
-------

>>> import random
>>> rng = random.Random(1)
>>> model = GroupwiseRegressor(groups=["young", "smoker"])
>>> for _ in range(500):
...     x = {"age": rng.random(), "bmi": rng.random(), "smoker": rng.random() < 0.3}
...     x["young"] = x["age"] < 0.4
...     y = 0.2 + 0.3 * x["bmi"] + (0.4 if x["smoker"] else 0.0)
...     model.learn_one(x, y)
>>> round(model.predict_one({"age": 0.2, "bmi": 0.5, "smoker": True, "young": True}), 2)
0.75
>>> restored = GroupwiseRegressor(groups=["young", "smoker"])
>>> restored.load_state_dict(model.state_dict())
>>> restored.predict_one(x) == model.predict_one(x)
True
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from river import base

from streamlearn.learners.base import State, subset

__all__ = [
    "ALWAYS_ON",
    "AdaNormalHedge",
    "GroupRegret",
    "GroupwiseRegressor",
    "OnlineRidge",
    "group_regret",
]

#: Name of the group every individual belongs to; its expert is a plain online ridge.
ALWAYS_ON = "always_on"

_NUMBER = (int, float, np.integer, np.floating)  # bool is an int
#: Value types that :meth:`_FeatureSchema.vector` converts without asking NumPy (exact types, no subclasses).
_PLAIN_NUMBERS = frozenset({float, int, bool, np.float64, np.int64})
_LOG_HALF = math.log(0.5)
_MAX_REMEMBERED = 4096  # active-expert arrays a _Membership keeps
_FIRST = np.zeros(1, dtype=np.intp)  # the index of OnlineRidge's one model in its stack


# --------------------------------------------------------------------------- features


class _FeatureSchema:
    """Feature names in model order: sorted as first learned, later new ones appended."""

    def __init__(self) -> None:
        self.set(())

    def set(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self._known = frozenset(self.names)
        self._values = operator.itemgetter(*self.names) if self.names else None

    def extend(self, x: Mapping[str, Any]) -> int:
        """Append ``x``'s features not in the schema yet (sorted); returns how many.

        ``x``'s values are checked first when there are new ones, so a bad event adds nothing.
        """
        if type(x) is not dict and not isinstance(x, Mapping):  # the exact-type test first: it is cheaper
            raise TypeError(f"x must be a dict of features, got {type(x).__name__}")
        if self._known.issuperset(x):
            return 0
        self.check_values(x)
        new = sorted(key for key in x if key not in self._known)
        self.set(self.names + tuple(new))
        return len(new)

    def vector(self, x: Mapping[str, Any]) -> np.ndarray:
        """``x`` as a float vector in schema order: missing features are 0, unknown ones ignored."""
        if type(x) is not dict and not isinstance(x, Mapping):  # the exact-type test first: it is cheaper
            raise TypeError(f"x must be a dict of features, got {type(x).__name__}")
        names = self.names
        values = None
        if len(x) == len(names) and names:  # the common case: exactly the known features
            try:
                values = self._values(x)
            except KeyError:
                pass
            else:
                if len(names) == 1:
                    values = (values,)
        if values is None:
            get = x.get
            values = [get(name, 0.0) for name in names]
        if _PLAIN_NUMBERS.issuperset(map(type, values)):  # the common case, without NumPy's type detection
            try:
                finite = math.isfinite(sum(values))  # a sum is finite only if every value is
            except OverflowError:  # an int too large for a float
                finite = False
            if not finite:
                self.check_values({k: x[k] for k in names if k in x})
            return np.fromiter(values, float, len(names))
        v = np.array(values)
        if v.dtype.kind != "f":
            if v.dtype.kind not in "biu":  # a string or another object among the values
                self.check_values({k: x[k] for k in names if k in x})
            v = v.astype(float)
        if not np.isfinite(v).all():
            self.check_values({k: x[k] for k in names if k in x})
        return v

    @staticmethod
    def check_values(x: Mapping[str, Any]) -> None:
        for key, value in x.items():
            if not isinstance(key, str):
                raise TypeError(f"feature names must be strings, got {key!r}")
            if not isinstance(value, _NUMBER):
                raise TypeError(f"x[{key!r}] must be a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"x[{key!r}] is not finite ({value})")


def _check_label(y: Any, lo: float, hi: float) -> float:
    if isinstance(y, bool) or not isinstance(y, _NUMBER):
        raise TypeError(f"y must be a number, got {type(y).__name__}")
    y = float(y)
    if not lo <= y <= hi:  # also catches NaN
        raise ValueError(f"y = {y} is outside the label range [{lo}, {hi}]; scale the labels into it")
    return y


def _check_l2(l2: Any) -> float:
    if isinstance(l2, bool) or not isinstance(l2, _NUMBER) or not (math.isfinite(l2) and l2 > 0):
        raise ValueError(f"l2 must be a positive number, got {l2!r}")
    return float(l2)


def _check_clip(clip: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(c) for c in clip)
    except (TypeError, ValueError):
        raise ValueError(f"clip must be a pair of numbers (lo, hi), got {clip!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"clip must be finite with lo < hi, got {clip!r}")
    return lo, hi


# --------------------------------------------------------------------------- ridge


class _RidgeStack:
    """m online ridge regressions sharing one feature space, updated in batches.

    ``params[i]`` stacks, for model i, the d×d inverse P = (λI + Σ x xᵀ)⁻¹ over
    the rounds it learned from and, as row d, its ridge solution θ. One gather,
    one matrix product and one scatter then serve both the Sherman–Morrison
    update of P and the recursive least-squares update of θ. ``index`` selects
    the models: an integer array.
    """

    def __init__(self, n_models: int, l2: float):
        self.n_models = n_models
        self.l2 = l2
        self.params = np.zeros((n_models, 1, 0))

    def grow(self, n_new: int) -> None:
        """Append ``n_new`` features: weight 0, prior 1/λ on the diagonal of every inverse.

        Exact: it is the ridge solution of the rounds so far had the new features been 0.
        """
        m, d = self.n_models, self.params.shape[2]
        grown = np.zeros((m, d + n_new + 1, d + n_new))
        grown[:, :d, :d] = self.params[:, :d, :]
        grown[:, d : d + n_new, d:] = np.eye(n_new) / self.l2
        grown[:, -1, :d] = self.params[:, -1, :]
        self.params = grown

    @property
    def theta(self) -> np.ndarray:
        return self.params[:, -1, :]

    def look(self, index: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The selected models' stacked [P; θ] (a copy) and its product with ``v``: (Pᵢv, θᵢᵀv) per model.

        One gather and one product serve the prediction (the last column) and the update.
        """
        block = self.params.take(index, axis=0)  # take: faster than fancy indexing for a few rows
        return block, block @ v

    def predict(self, index: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unclipped predictions θᵢᵀv of the selected models."""
        return self.look(index, v)[1][..., -1]

    def learn(
        self, index: np.ndarray, v: np.ndarray, y: float, looked: tuple[np.ndarray, np.ndarray] | None = None
    ) -> list[float]:
        """Update the selected models with (v, y); returns their θᵢᵀv from before the update, as a list.

        ``looked`` is ``look(index, v)`` if the caller already has it (same state); it is used up.
        """
        block, z = self.look(index, v) if looked is None else looked
        before = z[:, -1].tolist()
        z[:, -1] -= y
        pv = z[:, :-1]
        gain = pv / (1.0 + pv @ v)[:, None]  # the updated Pᵢv
        # P ← P − Pv (Pv)ᵀ/(1 + vᵀPv) and θ ← θ + gain·(y − θᵀv) as one rank-one update
        block -= z[:, :, None] * gain[:, None, :]
        self.params[index] = block
        return before

    def state_dict(self) -> State:
        return {"inverse": self.params[:, :-1, :].copy(), "theta": self.params[:, -1, :].copy()}

    def load_state_dict(self, state: Mapping[str, Any], n_features: int) -> None:
        inverse = np.asarray(state["inverse"], dtype=float)
        theta = np.asarray(state["theta"], dtype=float)
        d, m = n_features, self.n_models
        if inverse.shape != (m, d, d) or theta.shape != (m, d):
            raise ValueError(
                f"ridge state has shapes {inverse.shape} and {theta.shape}, expected {(m, d, d)} and {(m, d)}"
            )
        self.params = np.concatenate([inverse, theta[:, None, :]], axis=1)


class OnlineRidge(base.Regressor):
    """Online ridge regression with a Sherman–Morrison update of the inverse.

    After learning (x₁, y₁) … (x_t, y_t) the parameters are exactly the batch
    ridge solution θ = (λI + Σ xxᵀ)⁻¹ Σ y x (up to rounding), at O(d²) per event.

    Parameters
    ----------
    l2
        Ridge penalty λ > 0.
    clip
        Optional ``(lo, hi)``: predictions are clipped to this range.

    Example
    -------

    >>> model = OnlineRidge(l2=1.0)
    >>> for i in range(100):
    ...     x = {"a": i % 7 / 7, "b": i % 3 / 3, "one": 1.0}
    ...     model.learn_one(x, 2 * x["a"] - x["b"] + 0.5)
    >>> round(model.predict_one({"a": 0.5, "b": 0.5, "one": 1.0}), 2)
    1.0
    """

    def __init__(self, l2: float = 1.0, clip: Sequence[float] | None = None):
        self.l2 = l2
        self.clip = clip
        self._range = None if clip is None else _check_clip(clip)
        self._schema = _FeatureSchema()
        self._ridge = _RidgeStack(1, _check_l2(l2))

    @property
    def features(self) -> tuple[str, ...]:
        """The feature names learned from, in model order."""
        return self._schema.names

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self._schema.names, self._ridge.theta[0].tolist(), strict=True))

    def learn_one(self, x: Mapping[str, Any], y: float) -> None:
        if self._range is None:
            if isinstance(y, bool) or not isinstance(y, _NUMBER) or not math.isfinite(y):
                raise ValueError(f"y must be a finite number, got {y!r}")
            y = float(y)
        else:
            y = _check_label(y, *self._range)
        added = self._schema.extend(x)
        if added:
            self._ridge.grow(added)
        self._ridge.learn(_FIRST, self._schema.vector(x), y)

    def predict_one(self, x: Mapping[str, Any]) -> float:
        raw = float(self._ridge.predict(_FIRST, self._schema.vector(x))[0])
        return raw if self._range is None else min(max(raw, self._range[0]), self._range[1])

    def state_dict(self) -> State:
        return {"features": json.dumps(self._schema.names), **self._ridge.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = json.loads(state["features"])
        self._ridge.load_state_dict(state, len(names))
        self._schema.set(names)


# --------------------------------------------------------------------------- hedge


def _log_weight(r: float, c: float) -> float:
    """log w(R, C) for one expert; −inf where the weight is 0 (see :class:`AdaNormalHedge`)."""
    s = 3.0 * (c + 1.0)
    gap = (r + 1.0) * ((r + 1.0) / s) if r < 1.0 else 4.0 * r / s
    if r <= -1.0 or gap <= 0.0:  # weight 0 (or below the smallest float)
        return -math.inf
    b = (r - 1.0) * ((r - 1.0) / s) if r > 1.0 else 0.0
    return _LOG_HALF + b + math.log(math.expm1(gap))


def _as_list(values: Any) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


class AdaNormalHedge:
    """AdaNormalHedge over sleeping experts (Luo & Schapire 2015).

    Each expert keeps R (cumulative instantaneous regret) and C (cumulative
    absolute instantaneous regret); its weight is
    w(R, C) = ½[exp([R+1]₊² / 3(C+1)) − exp([R−1]₊² / 3(C+1))]. Only awake
    experts take part in a round; asleep experts' R and C do not change.

    Weights are handled in log space, log w = log ½ + b + log(expm1(a − b)) with
    a = [R+1]₊²/s, b = [R−1]₊²/s, s = 3(C+1), where a − b is (R+1)²/s for
    |R| < 1 and 4R/s for R ≥ 1 (at most 4/3, as |R| ≤ C): they never overflow
    however large R grows (exp overflows once R²/3(C+1) > 709).

    A round touches only its awake experts — a handful — so the bookkeeping is
    plain Python floats: several times faster than a dozen NumPy calls on arrays
    of five elements.

    Parameters
    ----------
    n_experts
        Number of experts.

    Example
    -------

    >>> hedge = AdaNormalHedge(3)
    >>> awake = [0, 2]
    >>> hedge.probabilities(awake).tolist()
    [0.5, 0.5]
    >>> hedge.update(awake, [0.0, 1.0])
    0.5
    >>> hedge.R.tolist(), hedge.C.tolist()
    ([0.5, 0.0, -0.5], [0.5, 0.0, 0.5])
    >>> hedge.probabilities(awake).round(3).tolist()
    [0.919, 0.081]
    """

    def __init__(self, n_experts: int):
        if isinstance(n_experts, bool) or not isinstance(n_experts, int | np.integer) or n_experts < 1:
            raise ValueError(f"n_experts must be a positive integer, got {n_experts!r}")
        self.n_experts = int(n_experts)
        self._R = [0.0] * self.n_experts
        self._C = [0.0] * self.n_experts
        self._log_w = [_log_weight(0.0, 0.0)] * self.n_experts  # cached; only awake experts' change

    @property
    def R(self) -> np.ndarray:
        """Cumulative instantaneous regret of each expert (a copy)."""
        return np.array(self._R)

    @property
    def C(self) -> np.ndarray:
        """Cumulative absolute instantaneous regret of each expert (a copy)."""
        return np.array(self._C)

    @staticmethod
    def log_weight(R: Iterable[float], C: Iterable[float]) -> np.ndarray:
        """log w(R, C), elementwise; −inf where the weight is 0 (R ≤ −1)."""
        return np.array([_log_weight(r, c) for r, c in zip(_as_list(R), _as_list(C), strict=True)], dtype=float)

    def distribution(self, active: list[int]) -> list[float]:
        """p over the ``active`` experts (a list of indices), in their order, as a list."""
        log_w = self._log_w
        awake = [log_w[i] for i in active]
        top = max(awake)
        if top == -math.inf:  # every awake weight is 0: play uniformly
            return [1.0 / len(awake)] * len(awake)
        w = list(map(math.exp, map(operator.sub, awake, [top] * len(awake))))
        total = math.fsum(w)
        return [wi / total for wi in w]

    def probabilities(self, active: Iterable[int]) -> np.ndarray:
        """The distribution over the ``active`` experts (integer indices), in their order."""
        return np.array(self.distribution(_as_list(active)))

    def update(self, active: Iterable[int], losses: Iterable[float], p: Iterable[float] | None = None) -> float:
        """Charge the active experts ``losses`` (each in [0, 1]); returns the combiner's loss p·ℓ.

        ``p`` is the distribution played this round, if the caller already has it.
        """
        active, losses = _as_list(active), _as_list(losses)
        p = self.distribution(active) if p is None else _as_list(p)
        if len(p) != len(losses):
            raise ValueError(f"got {len(losses)} losses for {len(p)} awake experts")
        mixed_loss = math.fsum(map(operator.mul, p, losses))
        R, C, log_w = self._R, self._C, self._log_w
        for i, loss in zip(active, losses):
            r = mixed_loss - loss
            R[i] += r
            C[i] += abs(r)
            log_w[i] = _log_weight(R[i], C[i])
        return mixed_loss

    def state_dict(self) -> State:
        return {"R": self.R, "C": self.C}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        R, C = np.array(state["R"], dtype=float), np.array(state["C"], dtype=float)
        if R.shape != (self.n_experts,) or C.shape != (self.n_experts,):
            raise ValueError(f"hedge state is for {R.shape} experts, this one has {self.n_experts}")
        self._R, self._C = R.tolist(), C.tolist()
        self._log_w = [_log_weight(r, c) for r, c in zip(self._R, self._C)]


# --------------------------------------------------------------------------- groups


class _Membership:
    """Maps an event to the indices of its active experts; ``always_on`` is last."""

    def __init__(self, groups: Iterable[str]):
        if isinstance(groups, str) or not isinstance(groups, Iterable):
            raise TypeError(f"groups must be a list of group names, got {groups!r}")
        names = list(groups)
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"group names must be non-empty strings, got {name!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"groups has duplicates: {names}")
        if ALWAYS_ON in names:
            raise ValueError(f"{ALWAYS_ON!r} is added automatically; do not list it in groups")
        self.declared = tuple(names)
        self.names = (*names, ALWAYS_ON)
        self._index = {name: i for i, name in enumerate(names)}
        self._always_on = len(names)
        # the active experts by the groups list (or by the indices of the truthy groups in x): an event's
        # groups are one of few combinations, so each is turned into an index array once
        self._known: dict[tuple, np.ndarray] = {}

    def active(self, x: Mapping[str, Any], groups: Iterable[str] | None = None) -> np.ndarray:
        """Indices of the active experts: named in ``groups`` if given, else truthy ``x[g]``.

        A read-only array, shared by the events with the same groups.
        """
        if groups is None:
            get = x.get
            key = tuple([i for i, name in enumerate(self.declared) if get(name)])
            cached = self._known.get(key)
            return self._remember(key, key) if cached is None else cached
        if isinstance(groups, str):
            raise TypeError(f"groups must be a list of group names, got the string {groups!r}")
        key = tuple(groups)
        try:
            cached = self._known.get(key)
        except TypeError:  # an unhashable name: not a group name, reported below
            cached = None
        if cached is not None:
            return cached
        index = self._index
        try:
            found = sorted({index[name] for name in key})
        except (KeyError, TypeError):
            unknown = [g for g in key if not isinstance(g, str) or g not in index]
            raise ValueError(f"unknown groups {unknown}; declared groups: {list(self.declared)}") from None
        return self._remember(key, found)

    def _remember(self, key: tuple, found: Sequence[int]) -> np.ndarray:
        """The active experts for ``found`` (declared groups' indices), kept under ``key``."""
        active = np.array([*found, self._always_on], dtype=np.intp)
        active.flags.writeable = False
        if len(self._known) >= _MAX_REMEMBERED:  # bounded: a stream of ever new group lists
            self._known.clear()
        self._known[key] = active
        return active


class GroupwiseRegressor(base.Regressor):
    """Sleeping-experts regressor with small regret on every group's subsequence.

    Parameters
    ----------
    groups
        Group names. An individual belongs to group ``g`` when ``x[g]`` is truthy,
        or, when ``learn_one``/``predict_one`` get a ``groups`` list, when the list
        names ``g``. An ``always_on`` group is added.
    l2
        Ridge penalty λ of every group's online ridge expert.
    clip
        ``(lo, hi)``, the label range: predictions are clipped to it, labels must
        lie in it, and losses are scaled by 1/(hi − lo)² into [0, 1].
    clip_experts
        Clip each expert's prediction to the label range before it is mixed and
        charged its loss (the default: the analysis needs losses in [0, 1]).
        ``False`` is the paper's experiments: experts unclipped, so an expert's
        loss can exceed 1; the mixture is still clipped.

    See the module docstring for the algorithm and the reference.
    """

    def __init__(
        self, groups: Sequence[str], l2: float = 1.0, clip: Sequence[float] = (0.0, 1.0), clip_experts: bool = True
    ):
        self.groups = groups
        self.l2 = l2
        self.clip = clip
        if not isinstance(clip_experts, bool):
            raise TypeError(f"clip_experts must be True or False, got {clip_experts!r}")
        self.clip_experts = clip_experts
        self._membership = _Membership(groups)
        self._lo, self._hi = _check_clip(clip)
        self._loss_scale = 1.0 / (self._hi - self._lo)
        n_experts = len(self._membership.names)
        self._schema = _FeatureSchema()
        self._ridge = _RidgeStack(n_experts, _check_l2(l2))
        self._hedge = AdaNormalHedge(n_experts)
        # What predict_one computed, for learn_one on the same event to reuse (never part of the state).
        self._predicted: _Prediction | None = None

    @classmethod
    def _unit_test_params(cls):
        yield {"groups": ["a", "b"], "clip": (-1e6, 1e6)}

    # ------------------------------------------------------------------ introspection

    @property
    def experts(self) -> tuple[str, ...]:
        """Group names in expert order, ``always_on`` last."""
        return self._membership.names

    @property
    def features(self) -> tuple[str, ...]:
        """The feature names learned from, in model order."""
        return self._schema.names

    @property
    def label_range(self) -> tuple[float, float]:
        """``clip`` as floats."""
        return self._lo, self._hi

    @property
    def hedge(self) -> AdaNormalHedge:
        return self._hedge

    # ------------------------------------------------------------------ river API

    def learn_one(self, x: Mapping[str, Any], y: float, groups: Iterable[str] | None = None) -> None:
        """Learn from one event (test-then-train: the prediction is the one ``predict_one`` gives now).

        After ``predict_one(x, groups)`` with an equal ``x`` and ``groups`` and no
        learning in between, the encoding, the awake experts' gathered parameters
        with their products with the features, and the distribution computed there
        are reused: the result is the same, faster.
        """
        y = _check_label(y, self._lo, self._hi)
        predicted, self._predicted = self._predicted, None
        if predicted is not None and predicted.is_for(x, groups):
            active = predicted.active
        else:
            predicted = None
            active = self._membership.active(x, groups)  # checks groups before anything changes
        added = self._schema.extend(x)
        if added:
            self._ridge.grow(added)
            predicted = None
        if predicted is None:
            self._learn(self._schema.vector(x), active, y)
        else:
            self._learn(predicted.v, active, y, predicted)

    def predict_one(self, x: Mapping[str, Any], groups: Iterable[str] | None = None) -> float:
        v, active = self.encode(x, groups)
        p = self._hedge.distribution(active.tolist())
        looked = self._ridge.look(active, v)
        preds, y_pred = self._mix(p, looked[1][:, -1].tolist())
        self._predicted = _Prediction(x, groups, v, active, p, looked, preds, y_pred)
        return y_pred

    def extend_features(self, x: Mapping[str, Any]) -> None:
        """Add ``x``'s features not seen yet (sorted, after the known ones), with weight 0 in every expert."""
        added = self._schema.extend(x)
        if added:
            self._ridge.grow(added)
            self._predicted = None

    def expert_predictions(self, x: Mapping[str, Any], groups: Iterable[str] | None = None) -> dict[str, float]:
        """The awake experts' predictions (clipped unless ``clip_experts`` is off), by group name."""
        v, active = self.encode(x, groups)
        preds = self._expert_values(self._ridge.predict(active, v).tolist())
        return {self._membership.names[i]: p for i, p in zip(active.tolist(), preds, strict=True)}

    # ------------------------------------------------------------------ encoded fast path
    # The processor encodes an event once and reuses it for the prediction, the
    # update and the regret statistics.

    def encode(self, x: Mapping[str, Any], groups: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``x`` as (feature vector over :attr:`features`, indices of the active experts).

        Pure: features not learned from yet are left out (their weights are 0).
        To learn from the vector, call :meth:`extend_features` first.
        """
        return self._schema.vector(x), self._membership.active(x, groups)

    def _clip(self, raw: list[float]) -> list[float]:
        lo, hi = self._lo, self._hi
        return [lo if r < lo else hi if r > hi else r for r in raw]

    def _expert_values(self, raw: list[float]) -> list[float]:
        return self._clip(raw) if self.clip_experts else raw

    def _mix(self, p: list[float], raw: list[float]) -> tuple[list[float], float]:
        """The awake experts' predictions and their mixture under ``p`` (clipped to the label range)."""
        preds = self._expert_values(raw)
        mixture = math.fsum(map(operator.mul, p, preds))
        return preds, self._clip([mixture])[0]

    def predict_encoded(self, v: np.ndarray, active: np.ndarray) -> float:
        return self._mix(self._hedge.distribution(active.tolist()), self._ridge.predict(active, v).tolist())[1]

    def learn_encoded(self, v: np.ndarray, active: np.ndarray, y: float) -> float:
        """Learn from an encoded event whose ``y`` is already checked to lie in ``clip``.

        Encode after :meth:`extend_features`, so that ``v`` covers every feature.

        Returns the prediction for the event made before learning it, which is
        ``predict_encoded(v, active)`` computed on the way (test-then-train in one call).
        """
        return self.learn_encoded_with_loss(v, active, y)[0]

    def learn_encoded_with_loss(self, v: np.ndarray, active: np.ndarray, y: float) -> tuple[float, float]:
        """:meth:`learn_encoded`, also returning the expected squared loss of sampling an expert.

        That loss, ``Σ_i p_i (ŷ_i − y)²`` over the awake experts (in label units), is
        what the paper's tables report for its algorithm, which plays an expert
        drawn from ``p``; the mixture's own loss is never larger (Jensen).
        """
        if len(v) != len(self._schema.names):
            raise ValueError(f"v has {len(v)} values, the model has {len(self._schema.names)} features")
        self._predicted = None
        return self._learn(v, active, y)

    def _learn(
        self, v: np.ndarray, active: np.ndarray, y: float, predicted: _Prediction | None = None
    ) -> tuple[float, float]:
        """One round; ``predicted``: what ``predict_one`` computed for this event in this state, if anything."""
        awake = active.tolist()
        if predicted is None:
            p = self._hedge.distribution(awake)
            preds, y_pred = self._mix(p, self._ridge.learn(active, v, y))
        else:
            p, preds, y_pred = predicted.p, predicted.preds, predicted.y_pred
            self._ridge.learn(active, v, y, predicted.looked)
        scale = self._loss_scale
        expected = self._hedge.update(awake, [((yi - y) * scale) ** 2 for yi in preds], p)
        return y_pred, expected / scale**2

    # ------------------------------------------------------------------ state

    def state_dict(self) -> State:
        return {
            "groups": json.dumps(self._membership.names),
            "features": json.dumps(self._schema.names),
            **{f"ridge/{k}": v for k, v in self._ridge.state_dict().items()},
            **{f"hedge/{k}": v for k, v in self._hedge.state_dict().items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = tuple(json.loads(state["groups"]))
        if names != self._membership.names:
            raise ValueError(f"state is for groups {list(names)}, this learner has {list(self._membership.names)}")
        features = json.loads(state["features"])
        self._ridge.load_state_dict(subset(state, "ridge/"), len(features))
        self._hedge.load_state_dict(subset(state, "hedge/"))
        self._schema.set(features)
        self._predicted = None


class _Prediction:
    """What ``predict_one`` computed for an event (a copy of it), for ``learn_one`` on the same event."""

    __slots__ = ("active", "groups", "looked", "p", "preds", "v", "x", "y_pred")

    def __init__(
        self,
        x: Mapping[str, Any],
        groups: Iterable[str] | None,
        v: np.ndarray,
        active: np.ndarray,
        p: list[float],
        looked: tuple[np.ndarray, np.ndarray],
        preds: list[float],
        y_pred: float,
    ):
        # copies, so an event changed in place after predict_one is not mistaken for the one predicted
        self.x = dict(x)
        self.groups = None if groups is None else list(groups)
        self.v, self.active, self.p, self.looked, self.preds, self.y_pred = v, active, p, looked, preds, y_pred

    def is_for(self, x: Mapping[str, Any], groups: Iterable[str] | None) -> bool:
        if (groups is None) != (self.groups is None) or (groups is not None and list(groups) != self.groups):
            return False
        return x == self.x


# --------------------------------------------------------------------------- regret


class GroupRegret:
    """Per-group regret against the best least-squares fit in hindsight.

    For each group g, over the rounds where g was active: the cumulative squared
    loss Σ (ŷ − y)² minus min_θ Σ (θᵀx − y)² (unregularised, minimum-norm
    solution when the features are collinear on the group). The hindsight fit
    comes from the running moments Σ zzᵀ, z = (x, y), of each group — O(d²)
    memory per group, no stored rows. Features may be appended as a stream goes
    on (they count as 0 in the earlier rounds, as in the learner).

    Parameters
    ----------
    groups
        Group names, in the order of the columns of the membership used in
        :meth:`update_many` / the indices used in :meth:`update`.
    """

    def __init__(self, groups: Sequence[str]):
        self.groups = tuple(groups)
        #: totals[g] = (rounds, cumulative squared loss) of group g
        self.totals = np.zeros((len(self.groups), 2))
        #: moments[g] = Σ zzᵀ with z = (x, y) over group g's rounds
        self.moments = np.zeros((len(self.groups), 1, 1))
        self._z = np.zeros(1)

    @property
    def count(self) -> np.ndarray:
        return self.totals[:, 0].astype(np.int64)

    @property
    def loss(self) -> np.ndarray:
        return self.totals[:, 1].copy()

    def _resize(self, n_features: int) -> None:
        """Make room for ``n_features`` features, appending to the ones seen so far."""
        m, d, n = self.moments, self.moments.shape[1] - 1, n_features
        if n < d:
            raise ValueError(f"got {n} features, the regret statistics already have {d}")
        grown = np.zeros((len(self.groups), n + 1, n + 1))
        grown[:, :d, :d] = m[:, :d, :d]
        grown[:, :d, n] = m[:, :d, d]
        grown[:, n, :d] = m[:, d, :d]
        grown[:, n, n] = m[:, d, d]
        self.moments, self._z = grown, np.zeros(n + 1)

    def update(self, v: np.ndarray, active: np.ndarray, y: float, y_pred: float) -> None:
        """One round: features ``v``, active group indices, label and prediction."""
        if len(self._z) != len(v) + 1:
            self._resize(len(v))
        z = self._z
        z[:-1] = v
        z[-1] = y
        outer = z[:, None] * z
        loss = (y_pred - y) ** 2
        moments, totals = self.moments, self.totals
        # a loop over the few active groups beats fancy-index read-modify-write here
        for g in _as_list(active):
            moments[g] += outer
            totals[g, 0] += 1.0
            totals[g, 1] += loss

    def update_many(self, X: np.ndarray, y: np.ndarray, y_pred: np.ndarray, membership: np.ndarray) -> None:
        """Many rounds at once; ``membership`` is a boolean (n, n_groups) matrix."""
        y, y_pred = np.asarray(y, dtype=float), np.asarray(y_pred, dtype=float)
        if y_pred.shape != y.shape:
            raise ValueError("y and y_pred must describe the same rounds")
        self.update_many_losses(X, y, (y_pred - y) ** 2, membership)

    def update_many_losses(self, X: np.ndarray, y: np.ndarray, losses: np.ndarray, membership: np.ndarray) -> None:
        """:meth:`update_many` charging each round ``losses`` instead of ``(y_pred − y)²``.

        For a randomised learner this is its expected loss, e.g. Σ p_i (ŷ_i − y)²
        for an expert drawn from p (what the paper's tables report).
        """
        X, y, losses = np.asarray(X, dtype=float), np.asarray(y, dtype=float), np.asarray(losses, dtype=float)
        membership = np.asarray(membership, dtype=bool)
        if membership.shape != (len(X), len(self.groups)) or y.shape != (len(X),) or losses.shape != y.shape:
            raise ValueError("X, y, losses and membership must describe the same rounds and groups")
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-d array of rounds × features, got shape {X.shape}")
        if X.shape[1] != self.moments.shape[1] - 1:
            self._resize(X.shape[1])
        Z = np.column_stack([X, y])
        mask = membership.astype(float)
        self.moments += np.einsum("ng,ni,nj->gij", mask, Z, Z, optimize=True)
        self.totals += mask.T @ np.column_stack([np.ones(len(y)), losses])

    def best_in_hindsight(self) -> np.ndarray:
        """Residual sum of squares of each group's least-squares fit in hindsight."""
        d = self.moments.shape[1] - 1
        sse = self.moments[:, d, d].copy()  # without features the fit is 0
        if d == 0:
            return sse
        for g in np.flatnonzero(self.totals[:, 0]):
            xx, xy, yy = self.moments[g, :d, :d], self.moments[g, :d, d], self.moments[g, d, d]
            theta = np.linalg.lstsq(xx, xy, rcond=None)[0]
            # yy − 2θᵀxy + θᵀxxθ is flat in θ at the optimum, so solver error barely shows
            sse[g] = max(yy - 2.0 * theta @ xy + theta @ xx @ theta, 0.0)
        return sse

    def regret(self) -> np.ndarray:
        return self.totals[:, 1] - self.best_in_hindsight()

    def table(self) -> list[dict[str, Any]]:
        """One row per group: size, cumulative loss, best in hindsight, regret."""
        best = self.best_in_hindsight()
        return [
            {
                "group": name,
                "n": int(n),
                "loss": float(loss),
                "best_in_hindsight": float(best[g]),
                "regret": float(loss - best[g]),
            }
            for g, (name, (n, loss)) in enumerate(zip(self.groups, self.totals.tolist(), strict=True))
        ]

    def state_dict(self) -> State:
        return {"totals": self.totals.copy(), "moments": self.moments.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        totals = np.array(state["totals"], dtype=float)
        if totals.shape != (len(self.groups), 2):
            raise ValueError(f"regret state is for {totals.shape[0]} groups, expected {len(self.groups)}")
        moments = np.array(state["moments"], dtype=float)
        if moments.ndim != 3 or moments.shape[0] != len(self.groups) or moments.shape[1] != moments.shape[2]:
            raise ValueError(f"regret moments have shape {moments.shape}, expected ({len(self.groups)}, d + 1, d + 1)")
        self.totals, self.moments, self._z = totals, moments, np.zeros(moments.shape[1])


def group_regret(
    X: np.ndarray, y: np.ndarray, y_pred: np.ndarray, membership: np.ndarray, groups: Sequence[str] | None = None
) -> dict[str, float]:
    """Per-group regret of predictions ``y_pred`` (see :class:`GroupRegret`), by group name.

    >>> X = np.array([[1.0], [1.0], [1.0]]); y = np.array([0.0, 1.0, 1.0])
    >>> membership = np.array([[True, True], [True, False], [True, True]])
    >>> regret = group_regret(X, y, np.array([0.5, 0.5, 0.5]), membership, ["all", "g"])
    >>> {name: round(r, 4) for name, r in regret.items()}
    {'all': 0.0833, 'g': 0.0}
    """
    membership = np.asarray(membership, dtype=bool)
    names = list(groups) if groups is not None else [str(g) for g in range(membership.shape[1])]
    metric = GroupRegret(names)
    metric.update_many(X, y, y_pred, membership)
    return dict(zip(names, metric.regret().tolist(), strict=True))

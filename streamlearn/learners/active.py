"""Online active learning: stream-based selective sampling under a label budget.

:class:`ActiveLearner` wraps a river classifier. For every incoming ``x`` it
predicts as the wrapped classifier would, and :meth:`ActiveLearner.query_one`
decides whether the label of ``x`` is worth asking for; only asked-for labels
are learned (:meth:`ActiveLearner.learn_one`). Asking and learning are separate
calls because in a real stream the label arrives later, from an annotator.

Budget
    ``budget`` B is the fraction of events whose label may be asked for. Two gates:

    cumulative (``budget_window=None``, the default)
        a query is allowed only if ``asked + 1 <= B * seen``, so ``asked / seen <= B``
        holds after every call, from the first event on (the first label can be
        asked at event ``ceil(1 / B)``). Unused budget carries over, as in MOA's
        ``ActiveClassifier`` (which compares the running ``asked / seen`` with B):
        budget hoarded while the classifier is confident can be spent in a burst
        after a drift.
    windowed (``budget_window=w``, Žliobaitė et al.'s estimate)
        ``u_t = u_{t-1} (w - 1) / w + labelled_t`` and a query is allowed only while
        ``u / w < B``: the spending over roughly the last w events, so savings older
        than that are forgotten and a burst after a drift is at most about ``B * w``
        labels. ``asked / seen`` can exceed B early on (u starts at 0: up to
        ``B * w`` labels may be asked at once) and stays within about ``B + 1/w``.

    The cumulative gate is the default because it is a hard cap — after every
    event no more than ``B * seen`` labels have been asked, which is what a
    labelling bill or an annotator's quota is checked against; choose the
    windowed one to follow the paper or to keep spending even over time.
    A strategy's state (threshold) only moves when the gate is open, as in
    Žliobaitė et al.

Strategies (``u`` is the largest posterior probability of the classifier):

``random``
    ask with probability B.
``fixed``
    ask if ``u < threshold`` (``threshold=0.9``, MOA's default).
``variable``
    ask if ``u < θ``; after asking ``θ ← θ(1 − step)``, otherwise
    ``θ ← θ(1 + step)``; ``θ₀ = 1``, ``step=0.01``.
``randvar``
    as ``variable`` but asks if ``u < θ · η``, ``η ~ N(1, noise_std)``
    (``noise_std`` is the paper's δ, default 1; Žliobaitė et al.'s Algorithm 4):
    the randomisation also queries confident points, so the classifier sees
    changes far from its decision boundary. A draw η ≤ 0 never asks (an earlier
    version compared ``u / η`` with θ, which asked on every negative η).
``split``
    with probability ``random_fraction`` (ν = 0.2) ask at random; those labels
    are an unbiased sample, so the error of the prediction made for them is fed
    to a river ``ADWIN`` (``adwin_delta=0.002``) and on a detected change the
    classifier is replaced by a fresh clone; otherwise ``variable``. The
    prediction is the one made at query time (kept with the open query), so
    split predicts nothing more than the other strategies.

    Drift handling differs from the paper. In Žliobaitė et al. every strategy
    runs inside a framework with a change detector (DDM in their experiments;
    on a warning a new classifier starts learning beside the old one, on a
    detected change it replaces it), and split's point is that its detector is
    fed only the randomly chosen labels, which the uncertainty strategies' biased
    sample cannot supply. Here only ``split`` has a detector (ADWIN), and a
    change replaces the classifier by an untrained clone (no warning phase), so
    the other strategies adapt only as fast as the wrapped classifier does.
``selective``
    Cesa-Bianchi, Gentile & Zaniboni's selective sampling with the probability
    margin ``m = p₁ − p₂`` (the two largest posteriors): ask with probability
    ``b / (b + m)``; ``b`` defaults to B, as in MOA.
``qbc``
    query by committee: ``committee_size`` (3) clones of the classifier trained
    by online bagging (each label learned Poisson(1) times per member). Their
    disagreement is the mean KL divergence of the members' posteriors from the
    average posterior (McCallum & Nigam), over ``log min(members, classes)``.
    Ask when it is at least θ times its running mean (over the last
    ``DISAGREEMENT_HORIZON`` gated events, so the rule ignores the measure's
    scale); θ starts at 1 and moves like variable uncertainty's threshold,
    mirrored: ``θ ← θ(1 + step)`` after asking, ``θ ← θ(1 − step)`` otherwise
    (``step=0.01``). An earlier version asked
    when the entropy of the members' *votes* exceeded a fixed 0.5: members
    trained on the same few labels soon name the same class everywhere, so
    the committee stopped asking for good (5 labels on Bananas at B = 1).
``dbal``
    DBALStream: a window of the last ``window`` (100) points, standardised with
    running means and deviations; ask only if ``x`` would become the nearest
    neighbour of at least one window point *and* the ``randvar`` test passes.

Before the classifier has learned its first label (and after a ``split``
reset) its posterior means nothing, and while it names fewer than two classes
it cannot express uncertainty (a Hoeffding tree that has seen one label is
certain of it): every strategy then asks as soon as the budget allows.

Checkpoints: :meth:`ActiveLearner.state_dict` stores the wrapped classifier (and
committee) with the pickle-free codec :mod:`streamlearn.learners.river_state`,
plus the budget counters (and the windowed spending u), the threshold, the RNG, the DBAL window and the drift
detector. Random numbers come from a NumPy ``Generator`` (PCG64, seeded with
``seed``), drawn ``RNG_BLOCK`` at a time (one NumPy call instead of a
Python-level ``random.gauss`` per event, which was the largest cost of
``randvar``); the state holds the generator and the unused rest of the current
block, so a restored learner draws the same numbers. river's ``ADWIN`` keeps
its window in a Rust object that exposes no state (it cannot even be pickled),
so the learner keeps the inputs fed to ADWIN since its window was last reset
and rebuilds the detector by replaying them; the log is re-based (the detector
restarted on its newer half) when it exceeds ``ADWIN_HISTORY`` values,
identically in a live and a restored learner.

References
----------
Cacciarelli & Kulahci, "Active learning for data streams: a survey", arXiv 2302.08893.
Žliobaitė, Bifet, Pfahringer & Holmes, "Active learning with drifting streaming
data", IEEE TNNLS 25(1), 2014 (random, fixed, variable, randvar, split).
McCallum & Nigam, "Employing EM and pool-based active learning for text
classification", ICML 1998 (the committee's KL-to-the-mean disagreement).
Cesa-Bianchi, Gentile & Zaniboni, "Worst-case analysis of selective sampling for
linear classification", JMLR 7, 2006.
Ienco, Bifet, Žliobaitė & Pfahringer, "Clustering based active learning for
evolving data streams" (DBALStream), Discovery Science 2013.
Reference implementations read (not copied): MOA ``moa.classifiers.active``
(``ActiveClassifier``, ``ALUncertainty``) and ``river.active.EntropySampler``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from river import base, drift

from streamlearn.learners import river_state
from streamlearn.learners.base import (
    State,
    json_state,
    load_json_state,
    load_rng_state,
    rng_state,
    subset,
)

__all__ = ["ActiveLearner", "STRATEGIES"]

#: Each strategy's parameters and their defaults (``None`` for ``b``: the budget).
STRATEGIES: dict[str, dict[str, Any]] = {
    "random": {},
    "fixed": {"threshold": 0.9},
    "variable": {"step": 0.01},
    "randvar": {"step": 0.01, "noise_std": 1.0},
    "split": {"step": 0.01, "random_fraction": 0.2, "adwin_delta": 0.002},
    "selective": {"b": None},
    "qbc": {"committee_size": 3, "step": 0.01},
    "dbal": {"step": 0.01, "noise_std": 1.0, "window": 100},
}

#: Most ADWIN inputs kept for rebuilding the detector; beyond it the log is re-based.
ADWIN_HISTORY = 20_000
#: Most ``split`` random queries remembered while their label is outstanding.
MAX_OPEN_RANDOM_QUERIES = 10_000
#: Random numbers drawn from the generator in one call.
RNG_BLOCK = 1024
#: ``qbc``: gated events over which the committee's typical disagreement is averaged.
DISAGREEMENT_HORIZON = 100


def build_classifier(spec: Any) -> base.Classifier:
    """A river classifier from an estimator, a name, a ``{class = ...}`` table or a list (pipeline)."""
    if isinstance(spec, base.Estimator):
        return spec
    from streamlearn.learners.river_adapter import build_river_object

    if isinstance(spec, list | tuple):
        if not spec:
            raise ValueError("classifier: an empty list names no estimator")
        steps = [s if isinstance(s, base.Estimator) else build_river_object(s) for s in spec]
        model = steps[0]
        for step in steps[1:]:
            model = model | step
    elif isinstance(spec, str | Mapping):
        model = build_river_object(spec)
    else:
        raise TypeError(
            "classifier must be a river classifier, a name such as 'linear_model.LogisticRegression', "
            f"a table with a 'class' key or a list of those; got {type(spec).__name__}"
        )
    if not isinstance(model, base.Classifier):
        raise ValueError(f"classifier {spec!r} is not a river classifier (got {type(model).__name__})")
    return model


def _fresh(spec: Any) -> base.Classifier:
    """An untrained classifier with the parameters of ``spec``."""
    return spec.clone() if isinstance(spec, base.Estimator) else build_classifier(spec)


def _example_key(x: Mapping[Any, Any]) -> frozenset:
    """``x`` as a hashable value that ignores the order of its keys."""
    return frozenset(x.items())


def _hashable(value: Any) -> Any:
    """A feature name read back from JSON: lists (tuple names) become tuples again."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _sorted_items(key: frozenset) -> list[list]:
    """An example key as ``[[name, value], ...]`` in a fixed order (for checkpoints)."""
    return [list(item) for item in sorted(key, key=lambda item: repr(item[0]))]


def _top_share(proba: Mapping[Any, float]) -> float:
    """``u``: the largest posterior over their sum.

    A two-class posterior, the common case, is read without max() and sum():
    ``b if b > a else a`` is exactly ``max(a, b)`` and ``a + b`` exactly their sum.
    """
    if len(proba) == 2:
        a, b = proba.values()
        return (b if b > a else a) / ((a + b) or 1.0)
    values = proba.values()
    return max(values) / (sum(values) or 1.0)


def _entropy(probabilities: Any) -> float:
    return -sum(p * math.log(p) for p in probabilities if p > 0)


def _consensus_divergence(posteriors: list[Mapping[Any, float]]) -> float:
    """Mean KL divergence of the members' posteriors from their average: H(mean) − mean of H.

    McCallum & Nigam's disagreement of a committee. Unlike the entropy of the
    votes it is positive whenever the posteriors differ, even if every member
    names the same class.
    """
    n = len(posteriors)
    normalised = [{c: v / (sum(p.values()) or 1.0) for c, v in p.items()} for p in posteriors]
    consensus: dict[Any, float] = collections.defaultdict(float)
    for p in normalised:
        for c, v in p.items():
            consensus[c] += v / n
    return _entropy(consensus.values()) - sum(_entropy(p.values()) for p in normalised) / n


def _poisson1(uniform: Callable[[], float]) -> int:
    """A Poisson(1) draw from uniform draws (Knuth's method: cheap for a small mean)."""
    limit, k, p = math.exp(-1.0), 0, uniform()
    while p > limit:
        k += 1
        p *= uniform()
    return k


class _ReplayableADWIN:
    """river's ADWIN plus the inputs it saw since its window was last reset.

    river's ADWIN resets its whole window on the update that follows a detected
    change, so those inputs determine its state; feeding them to a fresh ADWIN
    rebuilds it exactly.
    """

    def __init__(self, delta: float):
        self.delta = delta
        self.detector = drift.ADWIN(delta=delta)
        self.history = bytearray()
        self.detections = 0

    def update(self, error: bool) -> bool:
        detector, history, value = self.detector, self.history, 1 if error else 0
        if detector.drift_detected:
            history.clear()  # river resets the window on this update
        history.append(value)
        detector.update(value)
        if detector.drift_detected:
            self.detections += 1
            return True
        if len(history) > ADWIN_HISTORY:
            self._rebuild(history[len(history) // 2 :])
        return False

    def _rebuild(self, history: bytes | bytearray) -> None:
        self.detector = drift.ADWIN(delta=self.delta)
        self.history = bytearray(history)
        for value in self.history:
            self.detector.update(value)

    def state_dict(self) -> State:
        return {"history": np.frombuffer(bytes(self.history), dtype=np.uint8).copy(), "detections": self.detections}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rebuild(np.asarray(state["history"], dtype=np.uint8).tobytes())
        self.detections = int(state["detections"])


class _DensityWindow:
    """DBALStream's window: is ``x`` going to be the nearest neighbour of a recent point?

    Points are standardised with running means and deviations when they enter
    the window; pairwise distances are kept so each test costs O(window · d).
    """

    def __init__(self, size: int):
        self.size = size
        self.index: dict[Any, int] = {}
        self.n = 0
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)
        self.points = np.zeros((size, 0))
        self.dist = np.full((size, size), np.inf)
        self.count = 0
        self.next = 0

    def _vector(self, x: Mapping[Any, Any]) -> np.ndarray:
        values = {}
        for key, value in x.items():
            if not isinstance(value, int | float | np.number):  # bools count as 0/1
                raise TypeError(f"dbal needs numeric features; x[{key!r}] is {value!r}")
            values[key] = value
        index = self.index
        for key in values:
            if key not in index:
                index[key] = len(index)
        grow = len(index) - self.mean.shape[0]
        if grow:
            self.mean = np.concatenate([self.mean, np.zeros(grow)])
            self.m2 = np.concatenate([self.m2, np.zeros(grow)])
            self.points = np.concatenate([self.points, np.zeros((self.size, grow))], axis=1)
        v = np.zeros(len(index))
        for key, value in values.items():
            v[index[key]] = value
        return v

    def observe(self, x: Mapping[Any, Any]) -> bool:
        """Add ``x`` to the window; True if it is closer to some window point than that point's nearest neighbour."""
        v = self._vector(x)
        std = np.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else np.ones_like(v)
        z = (v - self.mean) / np.where(std > 0, std, 1.0)
        count, slot = self.count, self.next
        to_window = np.full(self.size, np.inf)
        to_window[:count] = np.sqrt(((self.points[:count] - z) ** 2).sum(axis=1))
        if count < 2:
            dense = True
        else:
            nearest = self.dist[:count, :count].min(axis=1)
            dense = bool((to_window[:count] < nearest).any())
        # x takes the slot of the oldest point (an empty slot until the window is full).
        to_window[slot] = np.inf
        self.points[slot] = z
        self.dist[slot, :] = to_window
        self.dist[:, slot] = to_window
        self.count = min(count + 1, self.size)
        self.next = (slot + 1) % self.size
        # Welford update of the running statistics.
        self.n += 1
        delta = v - self.mean
        self.mean = self.mean + delta / self.n
        self.m2 = self.m2 + delta * (v - self.mean)
        return dense

    def state_dict(self) -> State:
        return {
            "features": json_state([[k, i] for k, i in self.index.items()]),
            "n": self.n,
            "mean": self.mean.copy(),
            "m2": self.m2.copy(),
            "points": self.points.copy(),
            "dist": self.dist.copy(),
            "count": self.count,
            "next": self.next,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.index = {_hashable(k): int(i) for k, i in load_json_state(state["features"])}
        self.n = int(state["n"])
        self.mean = np.array(state["mean"], dtype=float)
        self.m2 = np.array(state["m2"], dtype=float)
        self.points = np.array(state["points"], dtype=float).reshape(self.size, len(self.index))
        self.dist = np.array(state["dist"], dtype=float)
        self.count = int(state["count"])
        self.next = int(state["next"])


class ActiveLearner(base.Wrapper, base.Classifier):
    """A river classifier that asks for labels under a budget (see the module docstring for the strategies).

    Parameters
    ----------
    classifier
        The river classifier to wrap: an estimator (library use), or, for configs,
        a name relative to ``river`` (``"linear_model.LogisticRegression"``), a table
        ``{class = "...", <params>}`` (nested tables with ``class`` build river
        objects), or a list of those, joined into a pipeline
        (``["preprocessing.StandardScaler", "linear_model.LogisticRegression"]``).
    strategy
        One of ``random``, ``fixed``, ``variable``, ``randvar``, ``split``,
        ``selective``, ``qbc``, ``dbal``.
    budget
        Largest fraction of events whose label may be asked for, in (0, 1].
    seed
        Seed of the learner's random number generator.
    budget_window
        None (default): the cumulative gate ``asked / seen <= B``; an integer w:
        Žliobaitė et al.'s windowed spending estimate (see the module docstring).
    strategy_params
        The strategy's parameters (listed in the module docstring); unknown names are refused.

    Examples
    --------

    >>> from river import datasets, linear_model, metrics, preprocessing
    >>> from streamlearn.learners.active import ActiveLearner

    >>> classifier = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    >>> model = ActiveLearner(classifier, strategy="randvar", budget=0.2, seed=1)
    >>> metric = metrics.Accuracy()
    >>> for x, y in datasets.Phishing():
    ...     proba = model.predict_proba_one(x)
    ...     metric.update(y, max(proba, key=proba.get))
    ...     if model.query_one(x, proba=proba):
    ...         model.learn_one(x, y)
    >>> model.labels_asked / model.events_seen <= 0.2
    True
    >>> metric.get() > 0.8
    True

    A restored learner continues exactly like the original:

    >>> restored = ActiveLearner(classifier.clone(), strategy="randvar", budget=0.2, seed=1)
    >>> restored.load_state_dict(model.state_dict())
    >>> restored.predict_proba_one(x) == model.predict_proba_one(x)
    True
    >>> [restored.query_one(x) for _ in range(20)] == [model.query_one(x) for _ in range(20)]
    True
    """

    def __init__(
        self,
        classifier: Any,
        strategy: str = "randvar",
        budget: float = 0.1,
        seed: int = 0,
        budget_window: int | None = None,
        **strategy_params: Any,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= 1:
            raise ValueError(f"budget must be a number in (0, 1], got {budget!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if budget_window is not None and (isinstance(budget_window, bool) or not isinstance(budget_window, int) or budget_window < 1):
            raise ValueError(f"budget_window must be None (cumulative gate) or an integer >= 1, got {budget_window!r}")
        defaults = STRATEGIES[strategy]
        unknown = sorted(set(strategy_params) - set(defaults))
        if unknown:
            raise ValueError(
                f"strategy {strategy!r} takes no parameter {unknown[0]!r}; "
                f"its parameters: {', '.join(defaults) or 'none'}"
            )
        self.classifier = classifier
        self.strategy = strategy
        self.budget = budget
        self.seed = seed
        self.budget_window = budget_window
        self.strategy_params = strategy_params
        self._params = params = {**defaults, **strategy_params}
        self._check_params()
        # The parameters the decision rules read, as attributes (cheaper than dict look-ups per event).
        self._step = params.get("step", 0.0)
        self._fixed_threshold = params.get("threshold", 1.0)
        self._random_fraction = params.get("random_fraction", 0.0)
        self._margin_b = budget if params.get("b") is None else params["b"]
        self._model = build_classifier(classifier)
        self._rng = np.random.default_rng(seed)
        #: randvar and dbal draw η ~ N(1, noise_std); the other strategies draw uniforms in [0, 1).
        self._noise_std = params.get("noise_std")
        self._block: list[float] = []  # the current block of draws ...
        self._draws = iter(self._block)  # ... and the position in it
        # The gate ``asked + 1 > budget * seen`` runs on every event: with the counters held as
        # floats (exact integers below 2**53) it is float arithmetic only, no int/float mixing.
        self._budget = float(budget)
        self._seen = 0.0
        self._asked = 0.0
        self._learned = 0
        #: Windowed gate (``budget_window``): u decays by (w − 1)/w per event; asking needs u / w < B.
        self._window_decay = None if budget_window is None else (budget_window - 1) / budget_window
        self._window_credit = None if budget_window is None else self._budget * budget_window
        self._spending = 0.0
        self._threshold = 1.0
        #: ``qbc``: disagreements measured and their running mean.
        self._disagreements = 0
        self._mean_disagreement = 0.0
        self._decide = self._rule(strategy)
        self._committee: list[base.Classifier] = []
        self._detector: _ReplayableADWIN | None = None
        #: ``split``: examples queried at random whose label has not been learned yet (oldest first).
        self._open_random: dict[frozenset, None] = {}
        self._window: _DensityWindow | None = None
        if strategy == "qbc":
            self._committee = [_fresh(classifier) for _ in range(params["committee_size"])]
        elif strategy == "split":
            self._detector = _ReplayableADWIN(params["adwin_delta"])
        elif strategy == "dbal":
            self._window = _DensityWindow(params["window"])

    def _check_params(self) -> None:
        p = self._params

        def number(name: str, low: float, high: float, integer: bool = False) -> None:
            value = p[name]
            kinds = int if integer else int | float
            if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
                kind = "an integer" if integer else "a number"
                raise ValueError(f"{self.strategy} parameter {name} must be {kind} in [{low}, {high}], got {value!r}")

        for name in p:
            if name == "b":
                if p["b"] is not None:
                    number("b", 1e-12, math.inf)
            elif name in ("committee_size", "window"):
                number(name, 2, 100_000, integer=True)
            elif name in ("step", "random_fraction"):
                number(name, 0.0, 1.0)
            elif name == "adwin_delta":
                number(name, 1e-12, 1.0)
            else:  # threshold, noise_std
                number(name, 0.0, math.inf)

    @property
    def _wrapped_model(self) -> base.Classifier:
        return self._model

    @property
    def model(self) -> base.Classifier:
        """The classifier being trained (a fresh clone after a ``split`` drift reset)."""
        return self._model

    @classmethod
    def _unit_test_params(cls):
        from river import linear_model

        yield {"classifier": linear_model.LogisticRegression()}

    # ------------------------------------------------------------------ counters

    @property
    def events_seen(self) -> int:
        """Calls of :meth:`query_one` so far."""
        return int(self._seen)

    @property
    def labels_asked(self) -> int:
        """Queries answered yes so far (with the cumulative gate never more than ``budget * events_seen``)."""
        return int(self._asked)

    @property
    def threshold(self) -> float:
        """The current uncertainty threshold θ (variable, randvar, split, dbal)."""
        return self._threshold

    @property
    def drifts_detected(self) -> int:
        """Changes ADWIN detected (``split``), each of which reset the classifier."""
        return self._detector.detections if self._detector is not None else 0

    # ------------------------------------------------------------------ river API

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict:
        if kwargs:
            return self._model.predict_proba_one(x, **kwargs)
        return self._model.predict_proba_one(x)

    def predict_one(self, x: dict, **kwargs: Any) -> Any:
        return self._model.predict_one(x, **kwargs)

    def query_one(self, x: dict, proba: Mapping[Any, float] | None = None) -> bool:
        """Decide whether to ask for the label of ``x``.

        Counts ``x`` as seen; when the answer is yes, it is charged to the budget.
        ``proba`` is the classifier's ``predict_proba_one(x)`` when the caller
        already has it (it saves a second prediction).
        """
        seen = self._seen = self._seen + 1.0
        dense = self._window.observe(x) if self._window is not None else True
        if self._window_decay is None:
            if self._asked + 1.0 > self._budget * seen:
                return False
        else:
            spending = self._spending
            self._spending = spending * self._window_decay
            if spending >= self._window_credit:
                return False
        if proba is None:
            proba = self._model.predict_proba_one(x)
        if self._learned and len(proba) > 1:
            if self._decide is None:
                # random (ask with probability B): the coin is flipped here, not in a rule
                # method, because the gate stays open while it says no, so it is flipped on
                # nearly every event and a call would cost as much as the flip.
                draw = next(self._draws, None)
                if draw is None:
                    draw = self._refill()
                if draw >= self._budget:
                    return False
            elif not self._decide(x, proba, dense):
                return False
        self._asked += 1.0
        if self._window_decay is not None:
            self._spending += 1.0
        return True

    def learn_one(self, x: dict, y: Any, **kwargs: Any) -> None:
        """Learn from an answered query (or any labelled example)."""
        if self._open_random:
            self._check_drift(x, y)
        if self._committee:
            for member in self._committee:
                for _ in range(_poisson1(self._uniform)):
                    member.learn_one(x, y, **kwargs)
        if kwargs:
            self._model.learn_one(x, y, **kwargs)
        else:
            self._model.learn_one(x, y)
        self._learned += 1

    def _check_drift(self, x: dict, y: Any) -> None:
        """``split``: if ``x`` was queried at random, feed the error of the prediction made then to ADWIN."""
        key = _example_key(x)
        if key in self._open_random:
            if self._detector.update(self._open_random.pop(key) != y):
                # Change detected on an unbiased sample: start again from a fresh classifier.
                self._model = _fresh(self.classifier)
                self._learned = 0

    # ------------------------------------------------------------------ randomness

    # The rules inline ``draw = next(self._draws, None)`` and call ``_refill`` when the block is
    # used up: a random number then costs about as much as a list index.

    def _refill(self) -> float:
        """Draw the next block from the generator; return its first number."""
        if self._noise_std is None:
            block = self._rng.random(RNG_BLOCK)
        else:
            block = self._rng.normal(1.0, self._noise_std, RNG_BLOCK)
        self._block = block.tolist()
        self._draws = iter(self._block)
        return next(self._draws)

    def _uniform(self) -> float:
        draw = next(self._draws, None)
        return self._refill() if draw is None else draw

    # ------------------------------------------------------------------ strategies

    def _rule(self, strategy: str) -> Callable[[dict, Mapping[Any, float], bool], bool] | None:
        """The strategy's decision rule (``random``'s coin is flipped in :meth:`query_one`)."""
        return None if strategy == "random" else getattr(self, f"_ask_{strategy}")

    def _ask_fixed(self, x: dict, proba: Mapping[Any, float], dense: bool) -> bool:
        return _top_share(proba) < self._fixed_threshold

    def _ask_variable(self, x: dict, proba: Mapping[Any, float], dense: bool) -> bool:
        # Variable-threshold rule: ask below θ and lower θ, otherwise raise θ.
        if _top_share(proba) < self._threshold:
            self._threshold *= 1.0 - self._step
            return True
        self._threshold *= 1.0 + self._step
        return False

    def _ask_randvar(self, x: dict, proba: Mapping[Any, float], dense: bool) -> bool:
        # Žliobaitė et al.'s Algorithm 4: ask if u < θ·η, η ~ N(1, noise_std). A negative η
        # gives a negative threshold, which no posterior is below: it never asks.
        eta = next(self._draws, None)
        if eta is None:
            eta = self._refill()
        if _top_share(proba) < self._threshold * eta:
            self._threshold *= 1.0 - self._step
            return True
        self._threshold *= 1.0 + self._step
        return False

    def _ask_split(self, x: dict, proba: Mapping[Any, float], dense: bool) -> bool:
        draw = next(self._draws, None)
        if draw is None:
            draw = self._refill()
        if draw < self._random_fraction:
            # The prediction is kept: the detector is fed its error when the label comes,
            # with no second prediction (and that of the classifier that faced x).
            open_random = self._open_random
            open_random[_example_key(x)] = max(proba, key=proba.get)
            if len(open_random) > MAX_OPEN_RANDOM_QUERIES:
                del open_random[next(iter(open_random))]
            return True
        return self._ask_variable(x, proba, dense)

    def _ask_selective(self, x: dict, proba: Mapping[Any, float], dense: bool) -> bool:
        if len(proba) == 2:
            a, b = proba.values()
            margin = (b - a if b > a else a - b) / ((a + b) or 1.0)
        else:
            top = sorted(proba.values(), reverse=True)
            margin = (top[0] - top[1]) / (sum(proba.values()) or 1.0)
        draw = next(self._draws, None)
        if draw is None:
            draw = self._refill()
        b = self._margin_b
        return draw < b / (b + margin)

    def _ask_qbc(self, x: dict, proba: Mapping[Any, float], dense: bool) -> bool:
        posteriors = []
        classes: set = set(proba)
        for member in self._committee:
            p = member.predict_proba_one(x)
            if not p:
                return True  # a member with no posterior yet: nothing to compare
            classes.update(p)
            posteriors.append(p)
        k = min(len(self._committee), len(classes))
        if k < 2:
            return True  # one class known: the committee cannot disagree yet
        # Disagreement relative to its running mean, so the rule does not depend on its scale
        # (members trained on the same labels can differ by 1e-6 or by 0.5); the variable
        # threshold is variable uncertainty's, mirrored (ask above it): it falls while the
        # committee agrees, so the budget goes to the points where the members differ most.
        disagreement = _consensus_divergence(posteriors) / math.log(k)
        self._disagreements += 1
        self._mean_disagreement += (disagreement - self._mean_disagreement) / min(self._disagreements, DISAGREEMENT_HORIZON)
        if disagreement >= self._threshold * self._mean_disagreement:
            self._threshold *= 1.0 + self._step
            return True
        self._threshold *= 1.0 - self._step
        return False

    def _ask_dbal(self, x: dict, proba: Mapping[Any, float], dense: bool) -> bool:
        return dense and self._ask_randvar(x, proba, dense)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> State:
        """Flat, pickle-free state: classifier(s), counters, threshold, RNG, window, detector."""
        try:
            state: State = {"model": river_state.dumps(self._model)}
            for i, member in enumerate(self._committee):
                state[f"committee/{i}"] = river_state.dumps(member)
        except river_state.UnsupportedRiverObject as exc:
            raise TypeError(f"ActiveLearner cannot checkpoint its classifier: {exc}") from None
        state.update(
            {
                "strategy": self.strategy,
                "seen": int(self._seen),
                "asked": int(self._asked),
                "learned": self._learned,
                "threshold": self._threshold,
                "spending": self._spending,
                "disagreements": self._disagreements,
                "mean_disagreement": self._mean_disagreement,
            }
        )
        state["rng/generator"] = rng_state(self._rng)
        used = len(self._block) - self._draws.__length_hint__()
        state["rng/unused"] = np.asarray(self._block[used:], dtype=float)
        if self._detector is not None:
            state.update({f"adwin/{k}": v for k, v in self._detector.state_dict().items()})
            state["open_random"] = json_state([[_sorted_items(key), predicted] for key, predicted in self._open_random.items()])
        if self._window is not None:
            state.update({f"window/{k}": v for k, v in self._window.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Exact inverse of :meth:`state_dict` (for a learner built with the same parameters)."""
        if state.get("strategy") != self.strategy:
            raise ValueError(f"state is for strategy {state.get('strategy')!r}, this learner uses {self.strategy!r}")
        if "rng/generator" not in state:
            raise ValueError(
                "state holds no NumPy generator (rng/generator): it was saved by an earlier ActiveLearner "
                "that drew from Python's random module, so it cannot be continued exactly"
            )
        model = river_state.loads(state["model"])
        if type(model) is not type(self._model):
            raise ValueError(f"state holds a {type(model).__name__}, this learner wraps a {type(self._model).__name__}")
        committee = [river_state.loads(state[f"committee/{i}"]) for i in range(len(self._committee))]
        self._model = model
        self._committee = committee
        self._seen = float(int(state["seen"]))
        self._asked = float(int(state["asked"]))
        self._learned = int(state["learned"])
        self._threshold = float(state["threshold"])
        self._spending = float(state["spending"])
        self._disagreements = int(state["disagreements"])
        self._mean_disagreement = float(state["mean_disagreement"])
        load_rng_state(self._rng, state["rng/generator"])
        self._block = np.asarray(state["rng/unused"], dtype=float).tolist()
        self._draws = iter(self._block)
        if self._detector is not None:
            self._detector.load_state_dict(subset(state, "adwin/"))
            self._open_random = {
                frozenset((_hashable(name), value) for name, value in key): predicted
                for key, predicted in load_json_state(state["open_random"])
            }
        if self._window is not None:
            self._window.load_state_dict(subset(state, "window/"))

    # river's checks pickle estimators; ADWIN's Rust window cannot be pickled, so
    # pickling goes through the same replay log as checkpoints.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_decide", None)
        if self._detector is not None:
            state["_detector"] = (self._detector.delta, self._detector.state_dict())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        detector = state.get("_detector")
        if isinstance(detector, tuple):
            delta, saved = detector
            state["_detector"] = _ReplayableADWIN(delta)
            state["_detector"].load_state_dict(saved)
        self.__dict__.update(state)
        self._decide = self._rule(self.strategy)

"""LAME: parameter-free test-time adaptation of a frozen classifier's outputs.

A frozen classifier gives, for each event, its softmax output ``p_i`` (K classes)
and its penultimate features ``f_i``. LAME (Laplacian Adjusted Maximum-likelihood
Estimation) leaves the model untouched and corrects the *outputs* of a batch of
events, so that events whose features are close get similar assignments. It
minimises, over assignments ``z_i`` in the probability simplex,

    Σ_i KL(z_i ‖ p_i) − Σ_{i,j} w_ij z_iᵀ z_j

with the concave-convex procedure, whose steps have a closed form::

    u = −log(p + 1e−10);  Y = softmax(−u)
    repeat at most max_steps times:
        Y_old = Y;  Y = softmax(−u + W·Y_old)
        E = Σ u⊙Y − (W·Y_old)⊙Y + Y⊙log(max(Y, 1e−20))
        stop if (from the third step on) |E − E_old| ≤ 1e−8·|E_old|

The adapted prediction is ``argmax Y``. Features are L2-normalised first (a zero
vector stays zero). The affinity ``W`` is one of

- ``"knn"``: ``w_ij = 1`` when j is one of the ``knn`` nearest
  neighbours of i (Euclidean distance), i itself excluded; not symmetric. With
  fewer than ``knn + 1`` events in a batch, ``knn = N − 1``.
- ``"rbf"`` (default): ``w_ij = exp(−‖f_i − f_j‖² / 2σ²)``, diagonal kept, with σ the mean
  over events of the distance to their ``min(knn, N)``-th nearest event counting
  the event itself (so σ uses the ``knn − 1``-th true neighbour).
- ``"linear"``: ``W = F Fᵀ`` (cosine similarities, diagonal kept).

These follow the authors' code (fiveai/LAME, ``src/adaptation/lame.py``,
``laplacian_optimization`` with ``bound_lambda = 1``) with two documented
choices where that code is undefined: ties in the kNN ranking (duplicate
features, or equal distances: squared distances within 1e-12, the resolution
of their computation, count as equal) go to the lower event index; and a batch
whose σ is 0 (every event has ``knn − 1`` exact duplicates, e.g. a batch of one)
uses the σ → 0 limit of the kernel, ``w_ij = [f_i = f_j]``, instead of dividing
by zero.

Defaults are the authors' (``src/config/defaults.py`` of their code:
``LAME_AFFINITY = 'rbf'``, ``LAME_KNN = 5``, ``BATCH_SIZE = 16``; the tuned
``configs/method/best/LAME/overall_best.yaml`` keeps rbf and k = 5).

Batch size and the dense affinities. The pull of the neighbours on event i
is ``Σ_j w_ij z_j``, whose size is the row sum of W. For kNN the row sum is k
whatever the batch; for rbf and linear every pair counts, so it grows with
the batch size N (about N times the mean affinity), while the unary term
``log p_i`` does not. Past a few dozen events per batch the pairwise term
dominates and a batch that mixes many classes is pulled to a single one.
Features after a ReLU make it worse: they are non-negative, so every cosine is
≥ 0 and the linear affinity has no negative entries. The weaker the
classifier's confidence, the sooner this happens. Measured on digits
(``benchmarks/lame_robustness.py``, 4 corruptions): at the authors' batch of
16, rbf gains 13 accuracy points on class-grouped streams and loses 15 on
i.i.d. ones (5 under Gaussian noise, far more under blur and shift, where the
model is unsure); at 64 and 128 rbf and linear collapse on i.i.d. streams
(accuracy near one class's share), while kNN (k = 5) stays within 6 points at
every batch size. Use kNN for large batches, unconfident models or the
sliding window.

Implementation notes (why it is fast). Cosines and distances come from the Gram
matrix of the raw features (one BLAS call; rows are rescaled first only if a
squared norm over- or underflows), the kNN graph from a partition rather
than a sort, and every step of the procedure is a handful of whole-array NumPy
operations on the (N, K) assignment matrix. The energy needs no logarithm of Y:
for ``Y = softmax(a)`` one has ``Σ_k Y_k (log Y_k − a_k) = −logsumexp(a)``, so
``E = −Σ_i logsumexp_i``. The ``1e−20`` clip is left out: it changes E by at
most N·K·4e−21 (``y·log(1e−20 / y) ≤ 1e−20 / e``), which can only matter to
the 1e−8 relative stopping rule when |E| < 4e−13·N·K.

Streaming. A stream of events is adapted in one of two ways:

- **Batches** (``window=None``, the paper's setting): events are buffered until
  ``batch_size`` of them have arrived; the batch is adapted as a whole and every
  event of it gets its answer then. Each event is adapted with the context of
  the whole batch, later events included, and one solve serves ``batch_size``
  events — but an event waits for up to ``batch_size − 1`` later events before
  it is answered, and a stream that stops leaves a partial batch (:meth:`flush`).
- **Sliding window** (``window=W``): each event is adapted at once, in the
  context of the ``W − 1`` events before it (a batch of at most W events, the
  new one last), and its row of the solution is its answer. No waiting, but the
  event only sees the past, the window's earlier events are re-adapted with
  every arrival (one solve per event, so about W times the compute of batch
  mode at the same context size), and ``batch_size`` is not used.

Throughput (``benchmarks/lame_digits.py``, kNN, batches vs a window of 64,
(K, d) = (100, 512)): about 100k vs 1.7k events/s on one core.

The buffered events are the learner's only state: ``state_dict`` stores them, so
a restored learner continues exactly like the uninterrupted one.

Parameters
----------
affinity
    ``"rbf"`` (the authors' default), ``"knn"`` or ``"linear"``. For batches
    much larger than the default use ``"knn"`` (see above).
knn
    Number of neighbours of the kNN affinity, and the rank that sets σ in the
    rbf affinity.
max_steps
    Maximum number of steps of the concave-convex procedure.
batch_size
    Events per adapted batch in batch mode (16, the authors' default).
window
    If set, the sliding-window mode with windows of this many events.

Examples
--------
>>> import numpy as np
>>> from streamlearn.learners.lame import LAME
>>> lame = LAME(affinity="knn", knn=1)
>>> probs = np.array([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8], [0.1, 0.9]])
>>> features = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
>>> lame.adapt(probs, features).argmax(axis=1).tolist()
[0, 0, 1, 1]

The second event, whose own output leans to class 1, follows its nearest
neighbour. In a stream, ``push_one`` returns the rows answered by each event:

>>> stream = LAME(affinity="knn", knn=1, batch_size=2)
>>> stream.push_one(probs[0], features[0]).shape
(0, 2)
>>> stream.push_one(probs[1], features[1]).argmax(axis=1).tolist()
[0, 0]

Reference
---------
Boudiaf, M., Mueller, R., Ben Ayed, I., Bertinetto, L. (2022). Parameter-free
Online Test-time Adaptation. CVPR 2022. https://github.com/fiveai/LAME
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from river import base

from streamlearn.learners.base import State

__all__ = ["LAME", "affinity_matrix", "cosine_gram", "laplacian_optimization"]

AFFINITIES = ("knn", "rbf", "linear")

#: Added to the probabilities before the logarithm, as in the authors' code.
PROB_EPS = 1e-10
#: Relative change of the energy below which the procedure stops.
ENERGY_RTOL = 1e-8
#: Resolution of the squared distances between unit vectors computed from the
#: Gram matrix (their rounding error is below d·2.2e-16, and d·2.2e-16 < 1e-12 up
#: to d = 4096): smaller squared distances are duplicates (set to 0), and kNN
#: candidates this close to the k-th distance are ties, broken by the lower index.
_D2_RESOLUTION = 1e-12
#: Up to this bound on |W·Y| the exponent can be exponentiated after a shift
#: known in advance (no per-step row maximum): exp stays in float64's range.
_SAFE_SHIFT = 200.0


# --------------------------------------------------------------------------- the method


def cosine_gram(features: np.ndarray) -> np.ndarray:
    """Gram matrix of the L2-normalised rows (a zero row, normalised by 1e-12, stays zero).

    Computed from the raw Gram matrix (one BLAS call, no normalised copy of the
    features): ``<f_i/|f_i|, f_j/|f_j|> = <f_i, f_j> / (|f_i| |f_j|)``.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        gram = features @ features.T
    squared_norms = np.diag(gram)
    if not (np.isfinite(squared_norms).all() and squared_norms.min(initial=1.0) > 1e-200):
        # |f|² overflows or underflows (or a row is zero): scale rows to a max-abs of 1 first.
        scale = np.abs(features).max(axis=1, initial=0.0)
        scale[scale == 0.0] = 1.0
        features = features / scale[:, None]
        gram = features @ features.T
        squared_norms = np.diag(gram)
    inverse_norms = 1.0 / np.maximum(np.sqrt(squared_norms), 1e-12)
    gram *= inverse_norms[:, None]
    gram *= inverse_norms[None, :]
    return gram


def _squared_distances(cosines: np.ndarray) -> np.ndarray:
    sq = np.diag(cosines).copy()  # 1, or 0 for a zero feature vector
    d2 = sq[:, None] + sq[None, :]
    d2 -= 2.0 * cosines
    d2[d2 < _D2_RESOLUTION] = 0.0  # the diagonal is exactly 0 already: c_ii + c_ii − 2·c_ii
    return d2


def _smallest_mask(d2: np.ndarray, m: int) -> np.ndarray:
    """Boolean mask of the m smallest entries of each row, ties to the lower index."""
    kth = np.partition(d2, m - 1, axis=1)[:, m - 1 : m]
    below = d2 < kth - _D2_RESOLUTION
    at = np.abs(d2 - kth) <= _D2_RESOLUTION
    missing = m - below.sum(axis=1, keepdims=True)
    return below | (at & (np.cumsum(at, axis=1) <= missing))


def affinity_matrix(features: np.ndarray, affinity: str = "knn", knn: int = 5) -> np.ndarray:
    """The (N, N) affinity W of the L2-normalised features (see the module docstring)."""
    n = features.shape[0]
    cosines = cosine_gram(features)
    if affinity == "linear":
        return cosines
    d2 = _squared_distances(cosines)
    if affinity == "knn":
        m = min(knn, n - 1)
        if m <= 0:
            return np.zeros((n, n))
        np.fill_diagonal(d2, np.inf)  # self excluded
        return _smallest_mask(d2, m).astype(np.float64)
    if affinity == "rbf":
        if n == 0:
            return np.zeros((0, 0))
        m = min(knn, n)
        kth = np.sqrt(np.partition(d2, m - 1, axis=1)[:, m - 1])  # self counted (distance 0)
        sigma = kth.mean()
        if sigma == 0.0:
            return (d2 == 0.0).astype(np.float64)
        return np.exp(d2 * (-0.5 / sigma**2))
    raise ValueError(f"affinity must be one of {AFFINITIES}, got {affinity!r}")


def laplacian_optimization(
    log_probs: np.ndarray, kernel: np.ndarray, max_steps: int = 100, return_steps: bool = False
) -> np.ndarray | tuple[np.ndarray, int]:
    """The concave-convex procedure: (N, K) assignments from ``log(p + 1e-10)`` and W.

    With ``return_steps`` also the number of steps taken (the stopping rule's
    verdict, for diagnostics and benchmarks).
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    n, _ = log_probs.shape
    # exp(log p + W·Y) overflows nowhere if shifted by a bound of its row maximum:
    # log p ≤ 0 and |W·Y|_i ≤ Σ_j |w_ij| (rows of Y sum to 1). Past _SAFE_SHIFT the
    # lower end could underflow, so the row maximum is taken at every step instead.
    bound = np.abs(kernel).sum(axis=1, keepdims=True)
    fixed_shift = n == 0 or float(bound.max()) <= _SAFE_SHIFT
    shifted_log_probs = log_probs - bound if fixed_shift else log_probs
    bound_total = float(bound.sum())
    exponent = np.empty_like(log_probs)
    assignments = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    assignments /= assignments.sum(axis=1, keepdims=True)
    old_energy = math.inf
    for step in range(max_steps):
        np.matmul(kernel, assignments, out=exponent)
        exponent += shifted_log_probs
        if fixed_shift:
            shift_total = bound_total
        else:
            shift = exponent.max(axis=1, keepdims=True)
            exponent -= shift
            shift_total = float(shift.sum())
        np.exp(exponent, out=assignments)
        row_sums = assignments.sum(axis=1, keepdims=True)
        assignments *= 1.0 / row_sums
        energy = -shift_total - float(np.log(row_sums).sum())  # −Σ_i logsumexp of the exponent
        if step > 1 and abs(energy - old_energy) <= ENERGY_RTOL * abs(old_energy):
            break
        old_energy = energy
    return (assignments, step + 1) if return_steps else assignments


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- the learner


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class LAME(base.Base):
    """LAME test-time adaptation of a frozen classifier's outputs (see the module docstring)."""

    def __init__(
        self,
        affinity: str = "rbf",
        knn: int = 5,
        max_steps: int = 100,
        batch_size: int = 16,
        window: int | None = None,
    ):
        if affinity not in AFFINITIES:
            raise ValueError(f"affinity must be one of {AFFINITIES}, got {affinity!r}")
        self.affinity = affinity
        self.knn = _positive_int(knn, "knn")
        self.max_steps = _positive_int(max_steps, "max_steps")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.window = None if window is None else _positive_int(window, "window")
        # Buffered events: the pending batch, or the window's last window − 1 events.
        self._capacity = self.batch_size if window is None else self.window - 1
        self._probs: np.ndarray | None = None  # (capacity, K), allocated on the first event
        self._features: np.ndarray | None = None  # (capacity, d)
        self._count = 0

    # ----------------------------------------------------------------- one batch

    def adapt(self, probs: Any, features: Any) -> np.ndarray:
        """Adapted (N, K) assignments of one batch: ``probs`` (N, K), ``features`` (N, d)."""
        probs, features = self._check_batch(probs, features)
        return self._adapt(probs, features)

    def _adapt(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        kernel = affinity_matrix(features, self.affinity, self.knn)
        return laplacian_optimization(np.log(probs + PROB_EPS), kernel, self.max_steps)

    # ----------------------------------------------------------------- streams

    @property
    def n_classes(self) -> int | None:
        """K, fixed by the first streamed event (None before it)."""
        return None if self._probs is None else self._probs.shape[1]

    @property
    def n_features(self) -> int | None:
        """d, fixed by the first streamed event (None before it)."""
        return None if self._features is None else self._features.shape[1]

    @property
    def n_buffered(self) -> int:
        """Events held: those waiting for their batch, or the window's past events."""
        return self._count

    def push_one(self, probs: Any, features: Any) -> np.ndarray:
        """Stream one event; returns the adapted rows it completes (see :meth:`push_many`)."""
        probs, features = self._check_event(probs, features)
        return self._push(probs[None, :], features[None, :])

    def push_many(self, probs: Any, features: Any) -> np.ndarray:
        """Stream events in order; returns the adapted (m, K) rows that are now answered.

        The rows are those of the oldest unanswered events, in arrival order. In
        batch mode, m is a multiple of ``batch_size`` (the completed batches); in
        window mode every event is answered at once, so m = N.
        """
        probs, features = self._check_batch(probs, features)
        self._check_dims(probs.shape[1], features.shape[1])
        return self._push(probs, features)

    def flush(self) -> np.ndarray:
        """Adapt the partial batch now (batch mode; the end of a stream) and empty it."""
        if self.window is not None or self._count == 0:
            return np.empty((0, self.n_classes or 0))
        adapted = self._adapt(self._probs[: self._count], self._features[: self._count])
        self._count = 0
        return adapted

    def _push(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        self._allocate(probs.shape[1], features.shape[1])
        return self._push_window(probs, features) if self.window is not None else self._push_batches(probs, features)

    def _push_batches(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        done = []
        start, n = 0, probs.shape[0]
        while start < n:
            if self._count == 0 and n - start >= self.batch_size:
                # A whole batch in the input: adapt it in place, no copy.
                stop = start + self.batch_size
                done.append(self._adapt(probs[start:stop], features[start:stop]))
                start = stop
                continue
            take = min(self.batch_size - self._count, n - start)
            self._probs[self._count : self._count + take] = probs[start : start + take]
            self._features[self._count : self._count + take] = features[start : start + take]
            self._count += take
            start += take
            if self._count == self.batch_size:
                done.append(self._adapt(self._probs, self._features))
                self._count = 0
        return np.concatenate(done) if done else np.empty((0, probs.shape[1]))

    def _push_window(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        done = np.empty_like(probs)
        for i in range(probs.shape[0]):
            done[i] = self._adapt_with_context(probs[i], features[i])
            self._remember(probs[i], features[i])
        return done

    def _adapt_with_context(self, probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The event's adapted row in a batch of the buffered events and itself (last)."""
        c = self._count
        if c == 0:
            return self._adapt(probs[None, :], features[None, :])[0]
        batch_probs = np.concatenate([self._probs[:c], probs[None, :]])
        batch_features = np.concatenate([self._features[:c], features[None, :]])
        return self._adapt(batch_probs, batch_features)[-1]

    def _remember(self, probs: np.ndarray, features: np.ndarray) -> None:
        if self._capacity == 0:
            return
        if self._count == self._capacity:  # drop the oldest
            self._probs[:-1] = self._probs[1:]
            self._features[:-1] = self._features[1:]
            self._count -= 1
        self._probs[self._count] = probs
        self._features[self._count] = features
        self._count += 1

    def _allocate(self, n_classes: int, n_features: int) -> None:
        if self._probs is None:
            self._probs = np.empty((self._capacity, n_classes))
            self._features = np.empty((self._capacity, n_features))

    # ----------------------------------------------------------------- river-style API

    def predict_proba_one(self, x: Mapping[str, Any]) -> dict[int, float]:
        """Adapted probabilities of event ``x`` in the context of the buffered events.

        ``x`` holds ``probs`` (or ``logits``) and ``features``. Batch mode: the
        answer x would get if the pending batch, x included, were adapted now;
        window mode: the answer :meth:`push_one` would give. Pure.
        """
        probs, features = self._event_arrays(x)
        row = self._adapt_with_context(probs, features)
        return {k: float(v) for k, v in enumerate(row)}

    def predict_one(self, x: Mapping[str, Any]) -> int:
        """Adapted class of ``x`` (see :meth:`predict_proba_one`). Pure."""
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.get)

    def learn_one(self, x: Mapping[str, Any], y: Any = None) -> None:
        """Add event ``x`` to the stream (``y`` is not used: LAME needs no labels)."""
        self._push(*(a[None, :] for a in self._event_arrays(x)))

    def _event_arrays(self, x: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(x, Mapping):
            raise TypeError(f"an event is a mapping with 'probs' or 'logits' and 'features', got {type(x).__name__}")
        if "features" not in x:
            raise ValueError("the event has no 'features'")
        if "probs" in x:
            probs = x["probs"]
        elif "logits" in x:
            logits = self._vector(x["logits"], "logits")
            probs = _softmax(logits)
        else:
            raise ValueError("the event has neither 'probs' nor 'logits'")
        return self._check_event(probs, x["features"])

    # ----------------------------------------------------------------- validation

    @staticmethod
    def _vector(value: Any, name: str) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be numbers, got {type(value).__name__}") from None
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-d sequence, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} has NaN or infinite values")
        return arr

    def _check_event(self, probs: Any, features: Any) -> tuple[np.ndarray, np.ndarray]:
        probs = self._vector(probs, "probs")
        features = self._vector(features, "features")
        if probs.min() < 0:
            raise ValueError("probs has negative values")
        self._check_dims(probs.size, features.size)
        return probs, features

    def _check_dims(self, n_classes: int, n_features: int) -> None:
        if self._probs is not None and (n_classes, n_features) != (self.n_classes, self.n_features):
            raise ValueError(
                f"the stream has K = {self.n_classes} classes and d = {self.n_features} features, "
                f"got K = {n_classes}, d = {n_features}"
            )

    @staticmethod
    def _check_batch(probs: Any, features: Any) -> tuple[np.ndarray, np.ndarray]:
        arrays = []
        for name, value in (("probs", probs), ("features", features)):
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"{name} must be an (N, ·) array of numbers, got {type(value).__name__}") from None
            if arr.ndim != 2 or arr.shape[1] == 0:
                raise ValueError(f"{name} must be a 2-d array with at least one column, got shape {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} has NaN or infinite values")
            arrays.append(arr)
        probs, features = arrays
        if probs.shape[0] != features.shape[0]:
            raise ValueError(f"probs has {probs.shape[0]} rows but features has {features.shape[0]}")
        if probs.size and probs.min() < 0:
            raise ValueError("probs has negative values")
        return probs, features

    # ----------------------------------------------------------------- state

    def state_dict(self) -> State:
        """The buffered events (and K, d once known; −1 before the first event)."""
        c = self._count
        return {
            "n_classes": -1 if self._probs is None else self.n_classes,
            "n_features": -1 if self._features is None else self.n_features,
            "buffer/probs": np.empty((0, 0)) if self._probs is None else self._probs[:c].copy(),
            "buffer/features": np.empty((0, 0)) if self._features is None else self._features[:c].copy(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        n_classes, n_features = int(state["n_classes"]), int(state["n_features"])
        probs = np.asarray(state["buffer/probs"], dtype=np.float64)
        features = np.asarray(state["buffer/features"], dtype=np.float64)
        count = probs.shape[0]
        if count > self._capacity or features.shape[0] != count:
            raise ValueError(f"state holds {count} buffered events; this learner buffers at most {self._capacity}")
        self._probs = self._features = None
        self._count = 0
        if n_classes > 0:
            self._allocate(n_classes, n_features)
            self._probs[:count] = probs
            self._features[:count] = features
            self._count = count

"""LAME: the method against a literal transcription of the paper's procedure, streaming, state, processor, replay."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

import streamlearn.learners.lame as lame_module
from streamlearn.engine.checkpoint import state_from_table, state_to_table
from streamlearn.engine.config import parse_config
from streamlearn.engine.processor import BadEvent, EvalOptions, Item
from streamlearn.engine.processors.lame import LAMEProcessor
from streamlearn.engine.replay import replay
from streamlearn.learners.base import states_equal
from streamlearn.learners.lame import LAME, affinity_matrix, laplacian_optimization

from tests.conftest import REPO, run_cli, write_jsonl

CONFIG = REPO / "configs" / "lame.toml"


# --------------------------------------------------------------------------- the reference, literally


def literal_lame(probs, features, affinity="knn", knn=5, max_steps=100, return_steps=False):
    """Boudiaf et al.'s procedure written out loop by loop, in plain Python floats.

    Deliberately naive (no NumPy, no shortcuts): per-pair Euclidean distances of
    the L2-normalised features; kNN = the knn nearest other events (ties, equal
    distances up to rounding, to the lower index); rbf σ = mean distance to the min(knn, N)-th nearest event,
    self counted; linear = dot products; then the concave-convex steps with the
    energy written term by term and the relative stopping rule from the third
    step on.
    """
    n, n_classes = len(probs), len(probs[0])
    unit = []
    for f in features:
        norm = max(math.sqrt(sum(v * v for v in f)), 1e-12)
        unit.append([v / norm for v in f])
    dist = [[math.sqrt(sum((a - b) ** 2 for a, b in zip(unit[i], unit[j]))) for j in range(n)] for i in range(n)]
    w = [[0.0] * n for _ in range(n)]
    if affinity == "knn":
        n_neighbors = min(knn + 1, n)  # the event itself and its neighbours
        for i in range(n):
            # Ties (equal up to rounding: 10 decimals) go to the lower index.
            others = sorted((j for j in range(n) if j != i), key=lambda j: (round(dist[i][j], 10), j))
            for j in others[: n_neighbors - 1]:
                w[i][j] = 1.0
    elif affinity == "rbf":
        rank = min(knn, n)
        sigma = sum(sorted(dist[i])[rank - 1] for i in range(n)) / n
        for i in range(n):
            for j in range(n):
                if sigma == 0:
                    w[i][j] = 1.0 if dist[i][j] == 0 else 0.0
                else:
                    w[i][j] = math.exp(-dist[i][j] ** 2 / (2 * sigma**2))
    else:
        for i in range(n):
            for j in range(n):
                w[i][j] = sum(a * b for a, b in zip(unit[i], unit[j]))

    def softmax(row):
        top = max(row)
        e = [math.exp(v - top) for v in row]
        s = sum(e)
        return [v / s for v in e]

    unary = [[-math.log(p + 1e-10) for p in row] for row in probs]
    y = [softmax([-u for u in row]) for row in unary]
    old_energy = math.inf
    for step in range(max_steps):
        pairwise = [[sum(w[i][j] * y[j][k] for j in range(n)) for k in range(n_classes)] for i in range(n)]
        y = [softmax([-unary[i][k] + pairwise[i][k] for k in range(n_classes)]) for i in range(n)]
        energy = 0.0
        for i in range(n):
            for k in range(n_classes):
                energy += unary[i][k] * y[i][k] - pairwise[i][k] * y[i][k] + y[i][k] * math.log(max(y[i][k], 1e-20))
        if step > 1 and abs(energy - old_energy) <= 1e-8 * abs(old_energy):
            break
        old_energy = energy
    return (np.array(y), step + 1) if return_steps else np.array(y)


def random_case(rng, n=None, n_classes=None, dim=None):
    n = int(rng.integers(1, 24)) if n is None else n
    n_classes = int(rng.integers(2, 7)) if n_classes is None else n_classes
    dim = int(rng.integers(1, 9)) if dim is None else dim
    logits = rng.normal(size=(n, n_classes)) * rng.uniform(0.3, 10.0)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    if rng.random() < 0.3:  # exact zeros and near-one-hot rows exercise the 1e-10 and 1e-20 clips
        probs[rng.random(probs.shape) < 0.4] = 0.0
        probs[:, 0] += 1e-3
    probs /= probs.sum(axis=1, keepdims=True)
    features = rng.normal(size=(n, dim)) + rng.normal(size=(1, dim))
    return probs, features


@pytest.mark.parametrize("affinity", ["knn", "rbf", "linear"])
def test_matches_literal_reference_on_random_batches(affinity):
    rng = np.random.default_rng({"knn": 1, "rbf": 2, "linear": 3}[affinity])
    for _ in range(40):
        probs, features = random_case(rng)
        knn = int(rng.integers(1, 9))
        max_steps = int(rng.choice([1, 2, 3, 5, 100]))
        got = LAME(affinity=affinity, knn=knn, max_steps=max_steps).adapt(probs, features)
        want = literal_lame(probs.tolist(), features.tolist(), affinity, knn, max_steps)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_matches_literal_reference_when_the_exponent_is_shifted_per_step(monkeypatch):
    # Large affinities (big linear/rbf batches) take the per-step row-maximum path.
    monkeypatch.setattr(lame_module, "_SAFE_SHIFT", 0.0)
    rng = np.random.default_rng(4)
    for affinity in ("knn", "rbf", "linear"):
        for _ in range(10):
            probs, features = random_case(rng)
            got = LAME(affinity=affinity, knn=3).adapt(probs, features)
            np.testing.assert_allclose(got, literal_lame(probs.tolist(), features.tolist(), affinity, 3), atol=1e-6)


def test_stops_at_the_same_step_as_the_reference():
    rng = np.random.default_rng(17)
    for _ in range(60):
        affinity = str(rng.choice(["knn", "rbf", "linear"]))
        probs, features = random_case(rng)
        knn = int(rng.integers(1, 6))
        kernel = affinity_matrix(features, affinity, knn)
        _, steps = laplacian_optimization(np.log(probs + 1e-10), kernel, return_steps=True)
        assert steps == literal_lame(probs.tolist(), features.tolist(), affinity, knn, return_steps=True)[1]
    # W = 0 (kNN on a batch of one): the energy never changes, and the first check is at the third step.
    _, steps = laplacian_optimization(np.log(np.array([[0.3, 0.7]])), np.zeros((1, 1)), return_steps=True)
    assert steps == 3
    assert laplacian_optimization(np.log(probs + 1e-10), kernel, max_steps=1, return_steps=True)[1] == 1


def test_adapt_accepts_float32_and_lists():
    rng = np.random.default_rng(5)
    probs, features = random_case(rng, n=10)
    lame = LAME()
    np.testing.assert_allclose(
        lame.adapt(probs.astype(np.float32), features.tolist()),
        literal_lame(probs.astype(np.float32).tolist(), features.tolist(), "rbf", 5),  # the defaults
        atol=1e-6,
    )


# --------------------------------------------------------------------------- hand-checkable cases


def test_affinities_on_three_unit_vectors():
    # Unit vectors at 0°, 90°, 180°: distances √2 (neighbours) and 2 (opposite).
    unit = np.array([[2.0, 0.0], [0.0, 0.5], [-3.0, 0.0]])  # normalised inside
    # kNN, k = 1: event 1 is √2 from both others, the tie goes to event 0.
    np.testing.assert_array_equal(affinity_matrix(unit, "knn", 1), [[0, 1, 0], [1, 0, 0], [0, 1, 0]])
    # rbf, k = 2: the 2nd nearest counting the event itself is at √2 for all three, so σ = √2.
    e = math.exp
    np.testing.assert_allclose(
        affinity_matrix(unit, "rbf", 2),
        [[1, e(-0.5), e(-1)], [e(-0.5), 1, e(-0.5)], [e(-1), e(-0.5), 1]],
        rtol=1e-12,
    )
    np.testing.assert_allclose(affinity_matrix(unit, "linear"), [[1, 0, -1], [0, 1, 0], [-1, 0, 1]], atol=1e-15)


def test_knn_is_capped_at_n_minus_one():
    rng = np.random.default_rng(6)
    probs, features = random_case(rng, n=4, n_classes=3, dim=5)
    w = affinity_matrix(features, "knn", 5)
    np.testing.assert_array_equal(w, np.ones((4, 4)) - np.eye(4))  # everyone else, never itself
    knn5, knn3 = LAME(affinity="knn", knn=5), LAME(affinity="knn", knn=3)
    np.testing.assert_array_equal(knn5.adapt(probs, features), knn3.adapt(probs, features))
    want = literal_lame(probs.tolist(), features.tolist(), "knn", 5)
    np.testing.assert_allclose(knn5.adapt(probs, features), want, atol=1e-6)


def test_duplicate_features():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.6, 0.8], [0.0, 2.0]])  # 0≡2 and 1≡4 after normalising
    w = affinity_matrix(features, "knn", 1)
    # A duplicate is a neighbour at distance 0 — never the event itself.
    np.testing.assert_array_equal(np.diag(w), 0)
    assert w[0, 2] == w[2, 0] == w[1, 4] == w[4, 1] == 1
    # Three copies and k = 1: the tie goes to the lowest other index.
    same = np.tile([[0.3, -0.2, 0.9]], (3, 1))
    np.testing.assert_array_equal(affinity_matrix(same, "knn", 1), [[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    # rbf on identical events: σ = 0, the kernel's limit connects exactly the duplicates.
    # (knn = 1: σ is the mean distance of each event to itself.)
    duplicates = [[1, 0, 1, 0, 0], [0, 1, 0, 0, 1], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 1, 0, 0, 1]]
    np.testing.assert_array_equal(affinity_matrix(features, "rbf", 1), duplicates)
    np.testing.assert_array_equal(affinity_matrix(same, "rbf", 3), np.ones((3, 3)))
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.55, 0.45]])
    for affinity in ("knn", "rbf", "linear"):
        np.testing.assert_allclose(
            LAME(affinity=affinity, knn=1).adapt(probs, features),
            literal_lame(probs.tolist(), features.tolist(), affinity, 1),
            atol=1e-6,
        )


def test_discrete_features_with_many_exact_ties():
    # Binary features (zero vectors included): equal distances everywhere; the lower index wins, as in the literal.
    rng = np.random.default_rng(18)
    for _ in range(20):
        n = int(rng.integers(2, 16))
        probs, _ = random_case(rng, n=n, n_classes=3)
        features = rng.integers(0, 2, size=(n, int(rng.integers(1, 5)))).astype(float)
        for affinity in ("knn", "rbf", "linear"):
            np.testing.assert_allclose(
                LAME(affinity=affinity, knn=2).adapt(probs, features),
                literal_lame(probs.tolist(), features.tolist(), affinity, 2),
                atol=1e-6,
            )


def test_batch_of_one():
    p = np.array([[0.6, 0.3, 0.1, 0.0]])
    f = np.array([[0.5, -1.0, 2.0]])
    # kNN: no neighbour, so the output is the input (with the 1e-10 of the logarithm).
    np.testing.assert_allclose(LAME(affinity="knn").adapt(p, f), (p + 1e-10) / (p + 1e-10).sum(), rtol=1e-12)
    # rbf (σ = 0 limit) and linear: W = [[1]], the fixed point of y = softmax(log p + y).
    for affinity in ("rbf", "linear"):
        y = LAME(affinity=affinity).adapt(p, f)[0]
        fixed = np.exp(np.log(p[0] + 1e-10) + y)
        np.testing.assert_allclose(y, fixed / fixed.sum(), atol=1e-5)
        assert y[0] > p[0, 0]  # self-affinity sharpens the leading class
    # A zero feature vector stays zero (no division by zero).
    assert np.isfinite(LAME(affinity="linear").adapt(p, np.zeros((1, 3)))).all()


def test_two_classes_by_hand():
    # Two events that are each other's neighbour: y_i = σ(log(p_i0/p_i1) + 2·y_j − 1) at the fixed point.
    p = np.array([[0.9, 0.1], [0.4, 0.6]])
    y = LAME(affinity="knn", knn=1).adapt(p, np.array([[1.0, 0.0], [1.0, 0.1]]))[:, 0]
    logit = np.log((p[:, 0] + 1e-10) / (p[:, 1] + 1e-10))
    sigmoid = 1 / (1 + np.exp(-(logit + 2 * y[::-1] - 1)))
    np.testing.assert_allclose(y, sigmoid, atol=1e-5)
    assert y[1] > 0.5 > p[1, 0]  # the uncertain event follows its confident neighbour
    # Two clusters of two: each ambiguous event takes its cluster's class.
    probs = np.array([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8], [0.55, 0.45]])
    feats = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    assert LAME(affinity="knn", knn=1).adapt(probs, feats).argmax(axis=1).tolist() == [0, 0, 1, 1]


def test_features_are_normalised_inside_whatever_their_scale():
    rng = np.random.default_rng(19)
    probs, features = random_case(rng, n=12, dim=4)
    features[3] = 0.0  # a zero row stays zero
    for affinity in ("knn", "rbf", "linear"):
        want = LAME(affinity=affinity).adapt(probs, features)
        for scale in (1e-200, 1e-3, 1e150, 1e300):
            np.testing.assert_allclose(LAME(affinity=affinity).adapt(probs, features * scale), want, atol=1e-9)


def test_empty_batch():
    for affinity in ("knn", "rbf", "linear"):
        assert LAME(affinity=affinity).adapt(np.empty((0, 3)), np.empty((0, 2))).shape == (0, 3)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "params, message",
    [
        ({"affinity": "cosine"}, "affinity"),
        ({"knn": 0}, "knn"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"batch_size": True}, "batch_size"),
        ({"window": 0}, "window"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        LAME(**params)


def test_bad_inputs():
    lame = LAME()
    p, f = np.full((3, 2), 0.5), np.ones((3, 4))
    with pytest.raises(ValueError, match="probs has NaN"):
        lame.adapt(np.array([[np.nan, 1.0]] * 3), f)
    with pytest.raises(ValueError, match="features has NaN"):
        lame.adapt(p, np.full((3, 4), np.inf))
    with pytest.raises(ValueError, match="negative"):
        lame.adapt(-p, f)
    with pytest.raises(ValueError, match="rows"):
        lame.adapt(p, f[:2])
    with pytest.raises(ValueError, match="2-d"):
        lame.adapt(p[0], f)
    with pytest.raises(TypeError, match="features"):
        lame.adapt(p, [["a"] * 4] * 3)
    lame.push_one(p[0], f[0])
    with pytest.raises(ValueError, match="K = 2 classes and d = 4"):
        lame.push_one([0.2, 0.3, 0.5], f[0])
    with pytest.raises(ValueError, match="K = 2 classes and d = 4"):
        lame.push_many(p, np.ones((3, 5)))
    with pytest.raises(ValueError, match="neither"):
        lame.predict_one({"features": [1.0] * 4})
    assert lame.n_buffered == 1  # nothing bad got in


# --------------------------------------------------------------------------- streaming


def test_batch_mode_answers_whole_batches_whatever_the_chunking():
    rng = np.random.default_rng(7)
    probs, features = random_case(rng, n=50, n_classes=5, dim=6)
    want = np.concatenate([LAME(batch_size=8).adapt(probs[i : i + 8], features[i : i + 8]) for i in range(0, 48, 8)])
    lame = LAME(batch_size=8)
    got, cuts = [], [0, 1, 2, 9, 9, 30, 47, 50]
    for a, b in zip(cuts, cuts[1:]):
        rows = lame.push_many(probs[a:b], features[a:b])
        assert len(rows) % 8 == 0
        got.append(rows)
    np.testing.assert_array_equal(np.concatenate(got), want)
    assert lame.n_buffered == 2
    np.testing.assert_array_equal(lame.flush(), LAME().adapt(probs[48:], features[48:]))
    assert lame.n_buffered == 0 and lame.flush().shape == (0, 5)


def test_window_mode_answers_each_event_in_the_context_of_the_past():
    rng = np.random.default_rng(8)
    probs, features = random_case(rng, n=20, n_classes=5, dim=6)
    lame = LAME(window=6, affinity="rbf", knn=3)
    for t in range(20):
        x = {"probs": probs[t].tolist(), "features": features[t].tolist()}
        predicted = lame.predict_proba_one(x)
        predicted_class = lame.predict_one(x)
        before = lame.state_dict()
        row = lame.push_one(probs[t], features[t])
        start = max(0, t - 5)
        want = LAME(affinity="rbf", knn=3).adapt(probs[start : t + 1], features[start : t + 1])[-1]
        np.testing.assert_array_equal(row[0], want)
        # predict gives the same answer, without changing the state.
        assert list(predicted.values()) == row[0].tolist() and predicted_class == int(np.argmax(want))
        lame_again = LAME(window=6, affinity="rbf", knn=3)
        lame_again.load_state_dict(before)
        assert lame_again.predict_proba_one(x) == predicted
    assert lame.n_buffered == 5
    assert lame.flush().shape == (0, 5)


def test_river_style_api():
    rng = np.random.default_rng(9)
    probs, features = random_case(rng, n=5, n_classes=5, dim=6)
    lame = LAME(batch_size=4)
    events = [{"logits": np.log(p).tolist(), "features": f.tolist()} for p, f in zip(probs, features)]
    for x in events[:3]:
        lame.learn_one(x, y="ignored")
    # predict: the answer if the pending batch, x included, were adapted now.
    want = LAME().adapt(probs[:4], features[:4])[-1]
    np.testing.assert_allclose(list(lame.predict_proba_one(events[3]).values()), want, atol=1e-12)
    assert lame.predict_one(events[3]) == int(np.argmax(want))
    assert lame.n_buffered == 3
    lame.learn_one(events[3])
    assert lame.n_buffered == 0  # the batch was completed
    assert lame._get_params() == {"affinity": "rbf", "knn": 5, "max_steps": 100, "batch_size": 4, "window": None}
    assert LAME().batch_size == 16  # the authors' defaults: rbf, k = 5, batches of 16


@pytest.mark.parametrize("params", [{"batch_size": 16}, {"window": 10, "affinity": "linear"}])
def test_state_round_trip_continues_identically(params):
    rng = np.random.default_rng(10)
    probs, features = random_case(rng, n=60, n_classes=5, dim=6)
    uninterrupted = LAME(**params)
    want = uninterrupted.push_many(probs, features)
    first = LAME(**params)
    got = [first.push_many(probs[:37], features[:37])]
    # Through a checkpoint's Parquet table, as the engine stores it.
    state = state_from_table(state_to_table(first.state_dict()))
    assert states_equal(state, first.state_dict())
    restored = LAME(**params)
    restored.load_state_dict(state)
    assert states_equal(restored.state_dict(), first.state_dict())
    got.append(restored.push_many(probs[37:], features[37:]))
    np.testing.assert_array_equal(np.concatenate(got), want)
    np.testing.assert_array_equal(restored.flush(), uninterrupted.flush())
    assert states_equal(restored.state_dict(), uninterrupted.state_dict())


def test_state_of_a_fresh_learner_round_trips():
    fresh = LAME()
    restored = LAME()
    restored.load_state_dict(state_from_table(state_to_table(fresh.state_dict())))
    assert restored.n_classes is None and states_equal(restored.state_dict(), fresh.state_dict())
    with pytest.raises(ValueError, match="buffers at most"):
        LAME(batch_size=2).load_state_dict(
            {"n_classes": 2, "n_features": 1, "buffer/probs": np.full((3, 2), 0.5), "buffer/features": np.ones((3, 1))}
        )


# --------------------------------------------------------------------------- the processor


def clustered_events(rng, n, n_classes=4, dim=8, noise=1.3):
    """A frozen classifier's outputs on a class-grouped stream: clustered features, noisy probabilities."""
    centers = rng.normal(size=(n_classes, dim)) * 3
    labels = np.repeat(np.arange(n_classes), -(-n // n_classes))[:n]
    features = centers[labels] + rng.normal(size=(n, dim))
    logits = np.eye(n_classes)[labels] + rng.normal(size=(n, n_classes)) * noise
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return [
        {"id": f"e{i}", "probs": p.tolist(), "features": f.tolist(), "y": int(y)}
        for i, (p, f, y) in enumerate(zip(probs, features, labels, strict=True))
    ]


def make_processor(emit=True, metrics=(), **params):
    return LAMEProcessor(LAME(**params), EvalOptions(metrics=list(metrics)), emit=emit)


def items_of(processor, events, start=0):
    return [Item({"row": start + i}, processor.decode(e), e) for i, e in enumerate(events)]


@pytest.mark.parametrize(
    "event, reason",
    [
        ({"features": [1.0]}, "exactly one of 'probs' and 'logits'"),
        ({"probs": [1.0], "logits": [0.0], "features": [1.0]}, "exactly one"),
        ({"probs": [0.5, 0.5]}, "missing field 'features'"),
        ({"probs": [0.5, 0.5], "features": []}, "features"),
        ({"probs": [0.5, 0.5], "features": [1.0, float("nan")]}, r"features\[1\] is not finite"),
        ({"probs": [0.5, 0.5], "features": [1.0, "2"]}, r"features\[1\] must be a number"),
        ({"probs": [0.5, True], "features": [1.0]}, r"probs\[1\] must be a number"),
        ({"probs": "0.5,0.5", "features": [1.0]}, "probs must be a list"),
        ({"probs": [0.7, 0.5], "features": [1.0]}, "sum to 1"),
        ({"probs": [1.5, -0.5], "features": [1.0]}, "negative"),
        ({"logits": [1.0, float("inf")], "features": [1.0]}, r"logits\[1\] is not finite"),
        ({"probs": [0.5, 0.5], "features": [10**400, 1.0]}, "too large"),
        ({"probs": [0.5, 0.5], "features": [1.0], "y": "cat"}, "class index"),
        ({"probs": [0.5, 0.5], "features": [1.0], "y": -1}, "class index"),
    ],
)
def test_decode_rejects_bad_events(event, reason):
    with pytest.raises(BadEvent, match=reason):
        make_processor().decode(event)


def test_processor_batches_and_scores():
    rng = np.random.default_rng(11)
    events = clustered_events(rng, 100)
    events[5].pop("y")  # an unlabelled event is answered, not scored
    processor = make_processor(batch_size=32)
    outputs = []
    for start in range(0, 100, 30):  # engine micro-batches that do not line up with LAME's batches
        outputs += processor.process(items_of(processor, events[start : start + 30], start))
        assert len(outputs) == 32 * (min(start + 30, 100) // 32)  # only whole batches are answered
    assert len(outputs) == 96 and processor.details()["lame"]["events_pending"] == 4
    outputs += processor.flush()
    assert [o.position["row"] for o in outputs] == list(range(100))
    assert [o.payload["id"] for o in outputs] == [e["id"] for e in events]
    # Each answer is its row of LAME on its batch of 32 (the last batch: the 4 left at the end).
    probs = np.array([e["probs"] for e in events])
    features = np.array([e["features"] for e in events])
    adapted = np.concatenate([LAME().adapt(probs[i : i + 32], features[i : i + 32]) for i in range(0, 100, 32)])
    np.testing.assert_array_equal([o.payload["proba"] for o in outputs], adapted)
    assert [o.payload["y_pred"] for o in outputs] == adapted.argmax(axis=1).tolist()
    assert [o.payload["y_pred_unadapted"] for o in outputs] == probs.argmax(axis=1).tolist()
    labelled = [i for i, e in enumerate(events) if "y" in e]
    y = np.array([events[i]["y"] for i in labelled])
    accuracy = float(np.mean(adapted.argmax(axis=1)[labelled] == y))
    # fewer scored events than the window: the windowed accuracy equals the cumulative one
    assert processor.metrics() == {"Accuracy": pytest.approx(accuracy), "Accuracy@1000": pytest.approx(accuracy)}
    details = processor.details()["lame"]
    assert details["labelled"] == 99 and details["events_answered"] == 100
    assert details["accuracy_unadapted"] == pytest.approx(float(np.mean(probs.argmax(axis=1)[labelled] == y)))
    # The point of LAME: on a class-grouped stream the adapted predictions are far better.
    assert details["accuracy_adapted"] > details["accuracy_unadapted"] + 0.1


def test_processor_window_mode_answers_at_once_with_class_names():
    rng = np.random.default_rng(12)
    events = clustered_events(rng, 12, n_classes=3)
    names = ["a", "b", "c"]
    for e in events:
        e["y"] = names[e["y"]]
        e["logits"] = np.log(e.pop("probs")).tolist()
    learner = LAME(window=4)
    processor = LAMEProcessor(learner, EvalOptions(metrics=["Accuracy", "LogLoss"]), LAMEProcessor.Options(classes=names))
    for i, event in enumerate(events):
        (output,) = processor.process(items_of(processor, [event], i))
        assert output.payload["y_pred"] in names and output.position == {"row": i}
    assert processor.flush() == []
    assert set(processor.metrics()) == {"Accuracy", "LogLoss", "Accuracy@1000", "LogLoss@1000"}
    with pytest.raises(BadEvent, match="one of the classes"):
        processor.decode({**events[0], "y": "d"})
    with pytest.raises(ValueError, match="duplicate"):
        LAMEProcessor(LAME(), options=LAMEProcessor.Options(classes=["a", "a"]))


def test_processor_rejects_events_that_do_not_fit_the_stream():
    processor = make_processor(batch_size=4)
    good = {"probs": [0.5, 0.5], "features": [1.0, 2.0]}
    first = [good, {"probs": [0.2, 0.3, 0.5], "features": [1.0, 2.0]}, {**good, "features": [1.0]}, {**good, "y": 2}]
    assert processor.process(items_of(processor, first)) == []
    rejected = processor.take_rejected()
    assert [item.position["row"] for item, _ in rejected] == [1, 2, 3]
    assert "K = 2 classes and d = 2" in rejected[0][1] and "class index below K = 2" in rejected[2][1]
    assert processor.learner.n_buffered == 1
    # Once K and d are known, decode itself sends misfits to the dead letters.
    with pytest.raises(BadEvent, match="probs must have 2 values"):
        processor.decode(first[1])
    with pytest.raises(BadEvent, match="features must have 2 values"):
        processor.decode(first[2])


def test_processor_state_round_trip_mid_batch():
    rng = np.random.default_rng(13)
    events = clustered_events(rng, 90)
    run = make_processor(batch_size=20, metrics=["Accuracy"])
    want = run.process(items_of(run, events)) + run.flush()
    first = make_processor(batch_size=20, metrics=["Accuracy"])
    got = first.process(items_of(first, events[:47]))
    learner_state = state_from_table(state_to_table(first.learner.state_dict()))
    processor_state = state_from_table(state_to_table(first.state_dict()))
    restored = make_processor(batch_size=20, metrics=["Accuracy"])
    restored.learner.load_state_dict(learner_state)
    restored.load_state_dict(processor_state)
    assert states_equal(restored.state_dict(), first.state_dict())
    got += restored.process(items_of(restored, events[47:], 47)) + restored.flush()
    assert [(o.position, o.payload) for o in got] == [(o.position, o.payload) for o in want]
    assert restored.metrics() == run.metrics() and restored.details() == run.details()


def test_processor_without_outputs_still_scores():
    rng = np.random.default_rng(14)
    events = clustered_events(rng, 40)
    processor = make_processor(emit=False, batch_size=8)
    assert processor.process(items_of(processor, events)) == []
    assert processor.details()["lame"]["labelled"] == 40 and 0 < processor.metrics()["Accuracy"] <= 1


# --------------------------------------------------------------------------- end to end


def write_stream(path: Path, n: int, seed: int) -> tuple[Path, int]:
    events = clustered_events(np.random.default_rng(seed), n)
    bad = ['{"probs": [0.5, 0.5, 0.0, 0.0], "features": [1, 2]}', '{"probs": [0.5, 0.5]}', "not json"]
    lines = [json.dumps(e) for e in events]
    for k, b in enumerate(bad):
        lines.insert(100 + 50 * k, b)
    write_jsonl(path, lines)
    return path, len(bad)


def test_replay_of_the_shipped_config_from_the_cli(tmp_path):
    data, n_bad = write_stream(tmp_path / "events.jsonl", 300, seed=15)
    done = run_cli("replay", str(CONFIG), "--input", str(data), "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["events"] == 303 and report["dead_letters"] == n_bad
    details = report["details"]["lame"]
    assert details["events_answered"] == 300 and details["events_pending"] == 0  # the partial batch was flushed
    assert report["final_metrics"]["Accuracy"] == pytest.approx(details["accuracy_adapted"])
    assert details["accuracy_adapted"] > details["accuracy_unadapted"] + 0.1
    predictions = [json.loads(line) for line in (tmp_path / "out" / "lame" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 300 and {"source", "y_pred", "y_pred_unadapted", "proba", "id"} <= set(predictions[0])
    assert len((tmp_path / "out" / "lame" / "dead_letters.jsonl").read_text().splitlines()) == n_bad


def test_replay_resumed_from_a_checkpoint_mid_batch_matches_an_uninterrupted_one(tmp_path):
    data, _ = write_stream(tmp_path / "events.jsonl", 200, seed=16)

    def config(name: str, checkpoints: bool):
        raw = tomllib.loads(CONFIG.read_text())
        raw["output"] = {"predictions": str(tmp_path / name / "predictions.jsonl")}
        raw["engine"] = {"batch_size": 25}
        raw["checkpoint"] = {"dir": str(tmp_path / name / "ckpt"), "every_events": 50} if checkpoints else {}
        return parse_config(raw)

    whole = replay(config("whole", False), data, progress=False)
    replay(config("parts", True), data, progress=False, max_records=111)  # stops inside the second LAME batch
    resumed = replay(config("parts", True), data, progress=False)
    assert resumed["resumed_from_events"] == 111
    assert resumed["final_metrics"] == whole["final_metrics"] and resumed["details"] == whole["details"]

    def answers(name):
        lines = (tmp_path / name / "predictions.jsonl").read_text().splitlines()
        return {json.dumps(r["source"], sort_keys=True): r for r in map(json.loads, lines)}

    assert answers("parts") == answers("whole")

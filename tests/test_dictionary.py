"""Frank-Wolfe online orthogonal dictionary learning: recovery, read-out, state, processor, replay."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from streamlearn.datasets import dataset_events
from streamlearn.engine.checkpoint import state_from_table, state_to_table
from streamlearn.engine.config import parse_config
from streamlearn.engine.processor import BadEvent, EvalOptions, Item
from streamlearn.engine.processors.dictionary import DictionaryProcessor
from streamlearn.engine.replay import replay
from streamlearn.learners import dictionary
from streamlearn.learners.base import state_hash, states_equal
from streamlearn.learners.dictionary import (
    FrankWolfeODL,
    make_sparse_orthogonal,
    polar,
    polar_iterative,
    random_orthogonal,
    recovery_error,
)

from tests.conftest import REPO, run_cli, write_jsonl

CONFIG = REPO / "configs" / "fw_dictionary.toml"


def signed_permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.eye(n)[:, rng.permutation(n)] * rng.choice([-1.0, 1.0], size=n)


# --------------------------------------------------------------------------- the metric


def test_recovery_error_is_invariant_to_signed_permutations():
    rng = np.random.default_rng(0)
    D0 = random_orthogonal(12, rng)
    D = polar(D0 + 0.3 * rng.standard_normal((12, 12)))  # some other orthogonal matrix
    base_error = recovery_error(D, D0)
    assert 0.05 < base_error < 1
    for _ in range(5):
        P, Q = signed_permutation(12, rng), signed_permutation(12, rng)
        assert recovery_error(D0 @ P, D0) == pytest.approx(0.0, abs=1e-12)
        assert recovery_error(D @ P, D0) == pytest.approx(base_error, abs=1e-12)
        assert recovery_error(D, D0 @ Q) == pytest.approx(base_error, abs=1e-12)
    # A rotation that is not a signed permutation is penalised.
    assert recovery_error(random_orthogonal(12, rng), D0) > 0.3
    with pytest.raises(ValueError, match="same shape"):
        recovery_error(np.eye(3), np.eye(4))


# --------------------------------------------------------------------------- the method


def learn_until(model, Y, D0, target, check_every=50):
    """Learn Y in chunks of check_every mini-batches; the mini-batch count when the error first falls below target."""
    chunk = check_every * model.batch_size
    for start in range(0, len(Y), chunk):
        model.learn_many(Y[start : start + chunk])
        if recovery_error(model.dictionary, D0) < target:
            return model.n_steps
    return None


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_recovers_an_orthogonal_dictionary_at_n16(noise):
    n, batch, max_batches = 16, 16, 5000
    Y, D0 = make_sparse_orthogonal(max_batches * batch, n, theta=0.3, noise=noise, seed=1)
    model = FrankWolfeODL(n_features=n, batch_size=batch, seed=2)
    assert recovery_error(model.dictionary, D0) > 0.5  # a random start is far from D0
    steps = learn_until(model, Y, D0, target=1e-2)
    assert steps is not None and steps <= max_batches
    assert recovery_error(model.dictionary, D0) < 1e-2


def test_dictionary_is_orthogonal_at_read_out_while_the_iterate_is_not():
    n = 10
    Y, _ = make_sparse_orthogonal(16 * 40, n, seed=3)
    model = FrankWolfeODL(n_features=n, batch_size=16, seed=4)
    gaps = []
    for chunk in np.split(Y, 8):
        model.learn_many(chunk)
        D = model.dictionary
        assert np.abs(D.T @ D - np.eye(n)).max() < 1e-8
        assert np.abs(D @ D.T - np.eye(n)).max() < 1e-8
        R = model.relaxed_dictionary
        assert np.linalg.norm(R, 2) <= 1 + 1e-12  # the iterate stays in the spectral-norm ball
        gaps.append(np.abs(R.T @ R - np.eye(n)).max())
    assert max(gaps) > 1e-3  # so the read-out does real work


def first_step(n, m, seed):
    """A learner after one mini-batch of m random samples, its starting iterate and the (first, so averaged) gradient."""
    rng = np.random.default_rng(seed)
    model = FrankWolfeODL(n_features=n, batch_size=m, p=3, seed=seed + 1)
    D = model.relaxed_dictionary
    Y = rng.standard_normal((m, n))
    model.learn_many(Y)
    Z = D.T @ Y.T  # n × m codes, the column convention of the paper
    gradient = 3 * Y.T @ (np.abs(Z) * Z).T / m  # ρ_1 = 1: the average is the first gradient
    return model, D, gradient


def test_one_step_by_hand():
    # m ≥ n: the gradient has full rank, so its polar factor U Vᵀ is unique.
    model, D, gradient = first_step(n=5, m=8, seed=5)
    U, _, Vt = np.linalg.svd(gradient)
    gamma = 2 ** -0.75
    np.testing.assert_allclose(model.relaxed_dictionary, (1 - gamma) * D + gamma * U @ Vt, atol=1e-12)
    assert model.n_steps == 1 and model.n_buffered == 0


@pytest.mark.parametrize("n", [5, 16])  # the SVD-only size and one where the iteration is on
def test_rank_deficient_gradient_gives_a_valid_oracle_step(n):
    # m < n: the gradient has rank m, its polar factors U Vᵀ differ on the null space,
    # and any of them is a maximiser of ⟨G, S⟩ over the spectral-norm ball.
    m = 4
    model, D, gradient = first_step(n=n, m=m, seed=7)
    gamma = 2 ** -0.75
    S = (model.relaxed_dictionary - (1 - gamma) * D) / gamma  # the oracle's answer
    np.testing.assert_allclose(S.T @ S, np.eye(n), atol=1e-10)  # orthogonal
    U, sigma, Vt = np.linalg.svd(gradient)
    assert sigma[m - 1] > 1e-8 * sigma[0] and sigma[m] < 1e-10 * sigma[0]
    np.testing.assert_allclose(S @ Vt[:m].T, U[:, :m], atol=1e-10)  # fixed on the gradient's row space
    assert np.sum(gradient * S) == pytest.approx(sigma.sum(), rel=1e-12)  # attains the nuclear norm
    R = model.dictionary
    np.testing.assert_allclose(R.T @ R, np.eye(n), atol=1e-10)  # the read-out is still orthogonal
    np.testing.assert_allclose(R, polar(model.relaxed_dictionary), atol=1e-10)


def test_frank_wolfe_gap_is_the_linear_oracles_improvement():
    Y, _ = make_sparse_orthogonal(16 * 30, 8, seed=9)
    model = FrankWolfeODL(n_features=8, batch_size=16, seed=10)
    model.learn_many(Y)
    state = model.state_dict()
    G, D = state["averaged_gradient"], model.relaxed_dictionary
    S = polar(G)  # the oracle's maximiser over the spectral-norm ball
    assert model.frank_wolfe_gap == pytest.approx(np.sum(G * (S - D)), rel=1e-10)
    rng = np.random.default_rng(11)
    for _ in range(20):  # no other point of the ball improves more
        other = polar(rng.standard_normal((8, 8))) * rng.uniform(0, 1)
        assert np.sum(G * (other - D)) <= model.frank_wolfe_gap + 1e-12
    assert model.frank_wolfe_gap > 0


# --------------------------------------------------------------------------- the oracle's polar factor


def with_singular_values(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A matrix U diag(values) Vᵀ with random orthogonal U, V, and its polar factor U Vᵀ."""
    U, V = random_orthogonal(len(values), rng), random_orthogonal(len(values), rng)
    return (U * values) @ V.T, U @ V.T


@pytest.mark.parametrize("n", [16, 64])
def test_iterative_polar_factor_equals_the_svd_one(n):
    rng = np.random.default_rng(20)
    cases = []
    for kappa in (1.0, 10.0, 300.0):  # condition numbers up to 300: all spreads of the spectrum
        for values in (np.geomspace(1, 1 / kappa, n), np.r_[np.ones(n - 1), 1 / kappa], np.r_[1.0, np.full(n - 1, 1 / kappa)]):
            cases.append(with_singular_values(values * 10.0 ** rng.uniform(-6, 6), rng))  # at any scale
    near_orthogonal = random_orthogonal(n, rng) + 0.05 * rng.standard_normal((n, n)) / np.sqrt(n)  # like the read-out
    cases.append((near_orthogonal, polar(near_orthogonal)))
    for M, factor in cases:
        S = polar_iterative(M)
        assert S is not None
        np.testing.assert_allclose(S, factor, rtol=0, atol=1e-12)
        np.testing.assert_allclose(S, polar(M), rtol=0, atol=1e-12)
    converged = 0
    for _ in range(5):  # random Gaussian matrices: condition numbers of order n, sometimes far more
        M = rng.standard_normal((n, n))
        S = polar_iterative(M)
        if np.linalg.cond(M) < 200:
            assert S is not None
        if S is not None:
            converged += 1
            np.testing.assert_allclose(S, polar(M), rtol=0, atol=1e-12)
    assert converged >= 3


def test_iterative_polar_factor_gives_up_on_singular_and_bad_matrices():
    rng = np.random.default_rng(21)
    n = 32
    rank_deficient = rng.standard_normal((n, n - 4)) @ rng.standard_normal((n - 4, n))
    ill_conditioned, _ = with_singular_values(np.geomspace(1, 1e-8, n), rng)
    zero_row = rng.standard_normal((n, n))
    zero_row[5] = 0.0
    nan = rng.standard_normal((n, n))
    nan[1, 2] = np.nan
    for M in (rank_deficient, ill_conditioned, zero_row, np.zeros((n, n)), nan, np.full((n, n), np.inf)):
        assert polar_iterative(M) is None


def test_polar_schedule_maps_the_design_interval_near_one_and_lifts_small_singular_values():
    x = np.linspace(dictionary._POLAR_LOW, 1.0, 20_001)
    small = np.geomspace(1e-6, dictionary._POLAR_LOW, 200)
    for a, b, c in dictionary._POLAR_SCHEDULE:
        lifted = a * small + b * small**3 + c * small**5
        assert np.all(lifted > small)  # below the interval, singular values still grow
        small = lifted
        error = 1 - (a * x + b * x**3 + c * x**5)
        # Minimax: the error equioscillates, the same size at both ends of the interval.
        assert error[0] == pytest.approx(np.abs(error).max(), rel=1e-9)
        assert -error[-1] == pytest.approx(np.abs(error).max(), rel=1e-9)
        x = 1 - error
    assert np.abs(x - 1).max() <= 0.05


def count_polar_iterations(monkeypatch) -> list[bool]:
    """Records, for each call of polar_iterative, whether it converged."""
    converged: list[bool] = []

    def counted(matrix):
        factor = polar_iterative(matrix)
        converged.append(factor is not None)
        return factor

    monkeypatch.setattr(dictionary, "polar_iterative", counted)
    return converged


def test_iterative_oracle_gives_the_svd_oracles_iterates(monkeypatch):
    n = 32
    Y, D0 = make_sparse_orthogonal(16 * 400, n, noise=0.1, seed=22)
    fast, exact = FrankWolfeODL(n_features=n, seed=23), FrankWolfeODL(n_features=n, seed=23, polar_solver="svd")
    converged = count_polar_iterations(monkeypatch)
    for chunk in np.split(Y, 8):
        fast.learn_many(chunk)
        exact.learn_many(chunk)
        assert np.abs(fast.relaxed_dictionary - exact.relaxed_dictionary).max() < 1e-10
        assert np.abs(fast.dictionary - exact.dictionary).max() < 1e-10
    # The SVD at step 1 (16 samples < 32 features: G has rank 16), at step 2 the iteration fails
    # (G is ill-conditioned), SVD again until it is retried at step 18; from then on it converges.
    # Plus one call per read-out.
    assert converged == [False] + [True] * (400 - 17) + [True] * 8
    assert recovery_error(fast.dictionary, D0) == pytest.approx(recovery_error(exact.dictionary, D0), abs=1e-10)


def test_singular_gradients_fall_back_to_the_svd(monkeypatch):
    n = 16
    Y, _ = make_sparse_orthogonal(8 * 100, n, seed=24)
    Y[:, 3] = 0.0  # a dead sensor: every averaged gradient is singular
    fast = FrankWolfeODL(n_features=n, batch_size=8, seed=25)
    exact = FrankWolfeODL(n_features=n, batch_size=8, seed=25, polar_solver="svd")
    converged = count_polar_iterations(monkeypatch)
    fast.learn_many(Y)
    exact.learn_many(Y)
    # Step 1 has rank 8 < 16: SVD without trying. The iteration fails at step 2 and is retried every 16 steps.
    assert converged == [False] * len(range(2, 101, 16))
    assert np.array_equal(fast.relaxed_dictionary, exact.relaxed_dictionary)
    # Without gradient averaging G has the rank of one mini-batch (8 < 16): never tried.
    FrankWolfeODL(n_features=n, batch_size=8, averaging_power=0).learn_many(Y)
    assert len(converged) == len(range(2, 101, 16))


def test_codes_are_thresholded_projections():
    rng = np.random.default_rng(7)
    Y, _ = make_sparse_orthogonal(320, 6, seed=8)
    x = rng.standard_normal(6)
    hard = FrankWolfeODL(n_features=6, threshold=0.4, seed=9)
    soft = FrankWolfeODL(n_features=6, threshold=0.4, shrinkage="soft", seed=9)
    hard.learn_many(Y)
    soft.learn_many(Y)
    full = hard.dictionary.T @ x
    assert np.array_equal(hard.transform_one(x), np.where(np.abs(full) > 0.4, full, 0.0))
    np.testing.assert_allclose(soft.transform_one(x), np.sign(full) * np.maximum(np.abs(full) - 0.4, 0), atol=1e-15)
    assert hard.predict_one(list(x)) == hard.transform_one(x).tolist()
    both = np.stack([hard.transform_one(x), hard.transform_one(2 * x)])
    np.testing.assert_allclose(hard.transform_many(np.stack([x, 2 * x])), both, atol=1e-12)
    code, error = hard.encode_one(x)
    reconstruction = hard.inverse_transform_many(code[None])[0]
    assert error == pytest.approx(np.sum((x - reconstruction) ** 2) / np.sum(x**2), rel=1e-10)
    assert 0 < error < 1
    # Threshold 0: the code is Dᵀy and reconstructs y exactly.
    lossless = FrankWolfeODL(n_features=6, threshold=0.0, seed=9)
    np.testing.assert_allclose(lossless.inverse_transform_many(lossless.transform_many(Y[:5])), Y[:5], atol=1e-12)
    assert lossless.encode_one(np.zeros(6))[1] == 0.0


def test_learn_one_and_learn_many_give_identical_states():
    Y, _ = make_sparse_orthogonal(16 * 7 + 5, 8, seed=10)
    one, many, chunked = (FrankWolfeODL(n_features=8, seed=11) for _ in range(3))
    for row in Y:
        one.learn_one(row.tolist())
    many.learn_many(Y)
    for chunk in np.array_split(Y, [3, 20, 21, 70]):
        chunked.learn_many(chunk)
    assert states_equal(one.state_dict(), many.state_dict())
    assert states_equal(one.state_dict(), chunked.state_dict())
    assert one.n_buffered == 5 and one.n_steps == 7 and one.n_samples_seen == len(Y)


def test_dict_samples_use_a_fixed_feature_order():
    Y, _ = make_sparse_orthogonal(40, 3, seed=12)
    by_list, by_dict = FrankWolfeODL(n_features=3, batch_size=4), FrankWolfeODL(n_features=3, batch_size=4)
    for row in Y:
        by_list.learn_one(list(row))
        # Keys in scrambled order: the learner sorts them once and keeps that order.
        by_dict.learn_one({"c": row[2], "a": row[0], "b": row[1]})
    assert by_dict.feature_order == ["a", "b", "c"]
    assert by_dict.predict_one({"b": 1.0, "c": 2.0, "a": 3.0}) == by_list.predict_one([3.0, 1.0, 2.0])
    named = FrankWolfeODL(n_features=3, batch_size=4, features=["c", "b", "a"])
    named.learn_one({"a": 1.0, "b": 2.0, "c": 3.0})
    assert np.array_equal(named.state_dict()["batch"], [[3.0, 2.0, 1.0]])
    with pytest.raises(ValueError, match=r"missing \['c'\], unexpected \['d'\]"):
        by_dict.learn_one({"a": 1.0, "b": 2.0, "d": 3.0})


def test_predict_is_pure_and_bad_input_changes_nothing():
    model = FrankWolfeODL(n_features=4, batch_size=4)
    model.learn_many(np.arange(14.0).reshape(7, 2).repeat(2, axis=1) / 10)
    before = state_hash(model.state_dict())
    model.predict_one([1.0, 2.0, 3.0, 4.0])
    model.transform_many(np.ones((3, 4)))
    model.encode_one({"a": 1, "b": 2, "c": 3, "d": 4})
    bad = [
        ([1.0, 2.0, 3.0], ValueError, "4 values"),
        ([1.0, float("nan"), 3.0, 4.0], ValueError, "non-finite values at positions \\[1\\]"),
        ([1.0, float("inf"), 3.0, 4.0], ValueError, "non-finite"),
        (["a", 2.0, 3.0, 4.0], TypeError, "numbers only"),
        ("1234", TypeError, "dict of features or a sequence"),
        ({"a": 1.0}, ValueError, "1 features, expected 4"),
        (None, TypeError, "dict of features or a sequence"),
    ]
    for x, error, message in bad:
        with pytest.raises(error, match=message):
            model.learn_one(x)
        with pytest.raises(error, match=message):
            model.predict_one(x)
    with pytest.raises(ValueError, match=r"\(m, 4\) array"):
        model.learn_many(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        model.learn_many([[1, 2, 3, 4], [1, 2, np.nan, 4]])
    assert state_hash(model.state_dict()) == before


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_features": 0}, "n_features"),
        ({"n_features": 2.5}, "n_features"),
        ({"n_features": 3, "batch_size": 0}, "batch_size"),
        ({"n_features": 3, "p": 2}, "p must be"),
        ({"n_features": 3, "threshold": -1}, "threshold"),
        ({"n_features": 3, "threshold": float("nan")}, "threshold"),
        ({"n_features": 3, "shrinkage": "medium"}, "shrinkage"),
        ({"n_features": 3, "averaging_power": 1.5}, "averaging_power"),
        ({"n_features": 3, "step_power": 0}, "step_power"),
        ({"n_features": 3, "features": ["a", "a", "b"]}, "distinct"),
        ({"n_features": 3, "polar_solver": "qr"}, "polar_solver"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        FrankWolfeODL(**params)


def test_river_style_parameters_and_clone():
    model = FrankWolfeODL(n_features=5, batch_size=8, p=4, threshold=0.2, seed=3)
    params = model._get_params()
    assert params["n_features"] == 5 and params["p"] == 4 and params["seed"] == 3
    json.dumps(params)  # a TOML/JSON config can name them
    assert np.array_equal(model.clone().relaxed_dictionary, model.relaxed_dictionary)


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("params", [{}, {"p": 4, "shrinkage": "soft"}, {"standardize": True}])
def test_state_round_trip_mid_batch_continues_bit_for_bit(params):
    Y, _ = make_sparse_orthogonal(16 * 30 + 9, 7, noise=0.05, seed=13)
    Y = Y * np.arange(1, 8) + 5  # different scales and offsets, for standardize
    first, rest = Y[:16 * 12 + 9], Y[16 * 12 + 9 :]
    whole = FrankWolfeODL(n_features=7, seed=14, **params)
    whole.learn_many(Y)
    part = FrankWolfeODL(n_features=7, seed=14, **params)
    part.learn_many(first)
    # Through the Parquet checkpoint's table layout, into a learner built with another seed.
    restored = FrankWolfeODL(n_features=7, seed=99, **params)
    restored.load_state_dict(state_from_table(state_to_table(part.state_dict())))
    assert restored.n_buffered == 9
    assert states_equal(restored.state_dict(), part.state_dict())
    probe = Y[:5]
    assert np.array_equal(restored.transform_many(probe), part.transform_many(probe))
    for row in rest:
        restored.learn_one(row)
    assert states_equal(restored.state_dict(), whole.state_dict())
    assert np.array_equal(restored.dictionary, whole.dictionary)


def test_state_round_trip_keeps_the_oracles_retry_step():
    n = 16
    Y, _ = make_sparse_orthogonal(16 * 60 + 5, n, seed=26)
    Y[: 16 * 20, 0] = 0.0  # singular gradients at first: the iteration fails at step 1, again at 17, works from 33
    cut = 16 * 25 + 5
    whole = FrankWolfeODL(n_features=n, seed=27)
    whole.learn_many(Y)
    part = FrankWolfeODL(n_features=n, seed=27)
    part.learn_many(Y[:cut])
    state = part.state_dict()
    assert state["polar/retry_step"] == 33
    restored = FrankWolfeODL(n_features=n, seed=28)
    restored.load_state_dict(state_from_table(state_to_table(state)))
    restored.learn_many(Y[cut:])
    assert states_equal(restored.state_dict(), whole.state_dict())
    # A state saved before the key existed still loads; the iteration is then tried at once (step 26,
    # not 33), so the continuation agrees with the uninterrupted run to rounding error, not bit for bit.
    legacy_state = {k: v for k, v in state.items() if k != "polar/retry_step"}
    legacy = FrankWolfeODL(n_features=n, seed=28)
    legacy.load_state_dict(legacy_state)
    legacy.learn_many(Y[cut:])
    difference = np.abs(legacy.relaxed_dictionary - whole.relaxed_dictionary).max()
    assert 0 < difference < 1e-10


def test_fresh_state_round_trips_and_mismatched_state_is_refused():
    model = FrankWolfeODL(n_features=4)
    other = FrankWolfeODL(n_features=4, seed=1)
    other.load_state_dict(state_from_table(state_to_table(model.state_dict())))
    assert states_equal(other.state_dict(), model.state_dict())
    with pytest.raises(ValueError, match="another n_features"):
        FrankWolfeODL(n_features=5).load_state_dict(model.state_dict())
    model.learn_many(np.ones((3, 4)))
    with pytest.raises(ValueError, match="batch_size is 2"):
        FrankWolfeODL(n_features=4, batch_size=2).load_state_dict(model.state_dict())


def test_memory_does_not_grow_with_the_stream():
    def state_bytes(model):
        return sum(v.nbytes if isinstance(v, np.ndarray) else len(str(v)) for v in model.state_dict().values())

    short, long = FrankWolfeODL(n_features=8, seed=0), FrankWolfeODL(n_features=8, seed=0)
    short.learn_many(make_sparse_orthogonal(16 * 10, 8, seed=1)[0])
    long.learn_many(make_sparse_orthogonal(16 * 2000, 8, seed=1)[0])
    assert long.n_samples_seen == 200 * short.n_samples_seen
    assert abs(state_bytes(long) - state_bytes(short)) <= 8  # only the digits of the counters differ


def test_standardize_learns_in_standard_units_and_reconstructs_original_units():
    rng = np.random.default_rng(15)
    Y, D0 = make_sparse_orthogonal(16 * 3000, 6, seed=16)
    scale, offset = rng.uniform(0.5, 50, 6), rng.uniform(-100, 100, 6)
    model = FrankWolfeODL(n_features=6, standardize=True, threshold=0.0, seed=17)
    model.learn_many(Y * scale + offset)
    raw = Y[:3] * scale + offset
    np.testing.assert_allclose(model.inverse_transform_many(model.transform_many(raw)), raw, rtol=1e-9, atol=1e-9)
    # Standardised Bernoulli-Gaussian samples through an orthogonal D0 rescaled per feature
    # are no longer exactly y = D0 x; the columns of D0 are still found approximately.
    assert recovery_error(model.dictionary, D0) < recovery_error(random_orthogonal(6, rng), D0)


# --------------------------------------------------------------------------- processor


def make_processor(emit=True, **options):
    learner = FrankWolfeODL(n_features=4, batch_size=4, threshold=0.3, seed=18)
    return DictionaryProcessor(learner, options=DictionaryProcessor.Options(**options), emit=emit)


def items_of(processor, events, start=0):
    return [Item({"row": start + i}, processor.decode(e), e) for i, e in enumerate(events)]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({}, "missing field 'x'"),
        ({"x": "1,2,3,4"}, "x must be a list"),
        ({"x": [1, 2, 3]}, "x must have 4 values, got 3"),
        ({"x": [1, 2, float("nan"), 4]}, r"x\[2\] is not finite"),
        ({"x": [1, 2, float("inf"), 4]}, r"x\[2\] is not finite"),
        ({"x": [1, 2, True, 4]}, r"x\[2\] must be a number"),
        ({"x": [1, 2, None, 4]}, r"x\[2\] must be a number"),
        ({"x": {"a": 1, "b": 2}}, "x must have 4 features, got 2"),
        ({"x": {"a": 1, "b": "2", "c": 3, "d": 4}}, r"x\['b'\] must be a number"),
        ({"x": {"a": 1, "b": float("nan"), "c": 3, "d": 4}}, r"x\['b'\] is not finite"),
    ],
)
def test_decode_rejects_bad_events(event, reason):
    with pytest.raises(BadEvent, match=reason):
        make_processor().decode(event)


def test_processor_codes_before_learning_and_reports_metrics():
    Y, _ = make_sparse_orthogonal(400, 4, seed=19)
    processor = make_processor()
    twin = FrankWolfeODL(n_features=4, batch_size=4, threshold=0.3, seed=18)
    events = [{"x": row.tolist(), "id": i} for i, row in enumerate(Y)]
    outputs = processor.process(items_of(processor, events[:10])) + processor.process(items_of(processor, events[10:], 10))
    assert len(outputs) == 400 and outputs[7].position == {"row": 7} and outputs[7].payload["id"] == 7
    errors = []
    for event, output in zip(events, outputs, strict=True):
        code, error = twin.encode_one(event["x"])  # prequential: coded with the dictionary before this event
        assert output.payload["code"] == code.tolist() and output.payload["error"] == error
        errors.append(error)
        twin.learn_one(event["x"])
    assert states_equal(processor.learner.state_dict(), twin.state_dict())
    metrics = processor.metrics()
    assert metrics["reconstruction_error"] == pytest.approx(np.mean(errors))
    assert 0 < metrics["code_density"] < 1
    details = processor.details()["dictionary"]
    assert details["events_coded"] == 400 and details["frank_wolfe_steps"] == 100
    assert details["orthogonality_error"] < 1e-8


def test_processor_sparse_output_river_metrics_and_no_emit():
    Y, _ = make_sparse_orthogonal(40, 4, seed=20)
    processor = make_processor(sparse_output=True, include_error=False)
    outputs = processor.process(items_of(processor, [{"x": r.tolist()} for r in Y]))
    code = outputs[-1].payload["code"]
    dense = np.zeros(4)
    dense[code["index"]] = code["value"]
    assert set(outputs[-1].payload) == {"code"} and 0 < len(code["index"]) <= 4 and np.count_nonzero(dense) == len(code["index"])

    learner = FrankWolfeODL(n_features=4, batch_size=4, threshold=0.3, seed=18)
    quiet = DictionaryProcessor(learner, EvalOptions(metrics=["MAE"]), emit=False)
    assert quiet.process(items_of(quiet, [{"x": r.tolist()} for r in Y])) == []
    metrics = quiet.metrics()
    assert metrics["MAE"] > 0 and metrics["reconstruction_error"] > 0
    with pytest.raises(ValueError, match="recent_window"):
        make_processor(recent_window=0)


def test_processor_rejects_dicts_with_other_features_than_the_first():
    processor = make_processor()
    events = [{"x": {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}}, {"x": {"a": 1.0, "b": 2.0, "c": 3.0, "e": 4.0}}]
    outputs = processor.process(items_of(processor, events))  # the first fixes the features within the batch
    assert len(outputs) == 1
    (rejected, reason), = processor.take_rejected()
    assert rejected.position == {"row": 1} and "unexpected ['e']" in reason
    with pytest.raises(BadEvent, match=r"missing \['d'\], unexpected \['e'\]"):
        processor.decode(events[1])  # later batches are checked at decode
    assert processor.learner.n_samples_seen == 1


def test_processor_state_round_trip_mid_batch():
    Y, _ = make_sparse_orthogonal(50, 4, seed=21)
    events = [{"x": r.tolist()} for r in Y]
    whole = make_processor()
    expected = whole.process(items_of(whole, events))
    part = make_processor()
    head = part.process(items_of(part, events[:23]))
    restored = make_processor()
    restored.learner.load_state_dict(part.learner.state_dict())
    restored.load_state_dict(state_from_table(state_to_table(part.state_dict())))
    tail = restored.process(items_of(restored, events[23:], 23))
    assert [o.payload for o in head + tail] == [o.payload for o in expected]
    assert restored.metrics() == whole.metrics()


# --------------------------------------------------------------------------- end to end


def write_shuttle_stream(path: Path, n: int) -> tuple[Path, int]:
    # river's bundled Shuttle sensor data, raw units (the config standardises online).
    lines = [json.dumps(e) for e in dataset_events("shuttle", n)]
    with_nan = {f"f{i}": 0 for i in range(1, 10)} | {"f1": float("nan")}
    bad = ['{"x": {"f1": 1}}', '{"x": [1, 2]}', '{"y": 1}', "not json", json.dumps({"x": with_nan})]
    for k, b in enumerate(bad):
        lines.insert(50 + 97 * k, b)
    write_jsonl(path, lines)
    return path, len(bad)


def test_replay_of_the_shipped_config_streams_codes(tmp_path):
    data, n_bad = write_shuttle_stream(tmp_path / "shuttle.jsonl", 3000)
    done = run_cli("replay", str(CONFIG), "--input", str(data), "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["events"] == 3000 + n_bad and report["dead_letters"] == n_bad
    metrics, details = report["final_metrics"], report["details"]["dictionary"]
    assert details["samples_learned"] == 3000 and details["orthogonality_error"] < 1e-8
    # Sparse codes that still describe the standardised readings well.
    assert metrics["reconstruction_error_recent"] < 0.1 and metrics["code_density"] < 0.6
    codes = [json.loads(line) for line in (tmp_path / "out" / "fw_dictionary" / "codes.jsonl").read_text().splitlines()]
    assert len(codes) == 3000 and len(codes[0]["code"]) == 9 and {"source", "code", "error", "id"} <= set(codes[0])
    letters = (tmp_path / "out" / "fw_dictionary" / "dead_letters.jsonl").read_text().splitlines()
    assert len(letters) == n_bad


def test_replay_resumed_from_a_checkpoint_mid_batch_matches_an_uninterrupted_one(tmp_path):
    data, _ = write_shuttle_stream(tmp_path / "shuttle.jsonl", 600)

    def config(name: str, checkpoints: bool):
        raw = tomllib.loads(CONFIG.read_text())
        raw["output"] = {"predictions": str(tmp_path / name / "codes.jsonl")}
        raw["engine"] = {"batch_size": 64}
        raw["checkpoint"] = {"dir": str(tmp_path / name / "ckpt"), "every_events": 100} if checkpoints else {}
        return parse_config(raw)

    whole = replay(config("whole", False), data, progress=False)
    replay(config("parts", True), data, progress=False, max_records=331)  # stops inside a mini-batch
    resumed = replay(config("parts", True), data, progress=False)
    assert resumed["resumed_from_events"] == 331
    assert resumed["final_metrics"] == whole["final_metrics"] and resumed["details"] == whole["details"]

    def codes(name):
        lines = (tmp_path / name / "codes.jsonl").read_text().splitlines()
        return {json.dumps(r["source"], sort_keys=True): r for r in map(json.loads, lines)}

    assert codes("parts") == codes("whole")

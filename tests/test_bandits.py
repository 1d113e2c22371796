"""Recovering-reward bandits: the LP bound, periodic plans, RecoveringUCB, its state, the processor, replay."""

from __future__ import annotations

import itertools
import json
import math
import tomllib

import numpy as np
import pytest

from streamlearn.engine.checkpoint import state_from_table, state_to_table
from streamlearn.engine.config import parse_config
from streamlearn.engine.processor import BadEvent, Item
from streamlearn.engine.processors.bandit import BanditProcessor
from streamlearn.engine.replay import replay
from streamlearn.learners import bandits
from streamlearn.learners.bandits import (
    OracleGreedy,
    PeriodicPolicy,
    PlainUCB,
    RecoveringEnv,
    RecoveringUCB,
    UCBGreedy,
    fluid_upper_bound,
)
from streamlearn.learners.base import check_state, states_equal
from tests.conftest import REPO, run_cli, write_jsonl

CONFIG = REPO / "configs" / "recovering_bandit.toml"


def step_curves(mu, deadlines, d_max):
    d = np.arange(1, d_max + 1)
    return np.asarray(mu)[:, None] * (d[None, :] >= np.asarray(deadlines)[:, None])


def random_instance(kind, n, d_max, seed):
    rng = np.random.default_rng(seed)
    d = np.arange(1, d_max + 1)
    if kind == "smooth":
        a, b = rng.uniform(0.3, 1.0, n), rng.uniform(0.1, 1.0, n)
        return a[:, None] * (1 - np.exp(-b[:, None] * d))
    return step_curves(rng.uniform(0.2, 1.0, n), rng.integers(1, d_max + 1, n), d_max)


def optimal_average_reward(r, k, iterations=3000):
    """Bounds on the best long-run average reward of any policy (value iteration over idle-time states)."""
    n, d_max = r.shape
    states = list(itertools.product(range(1, d_max + 1), repeat=n))
    index = {s: i for i, s in enumerate(states)}
    actions = [a for size in range(k + 1) for a in itertools.combinations(range(n), size)]
    successor = np.empty((len(states), len(actions)), dtype=np.int64)
    reward = np.empty((len(states), len(actions)))
    for i, s in enumerate(states):
        for j, a in enumerate(actions):
            reward[i, j] = sum(r[arm, s[arm] - 1] for arm in a)
            successor[i, j] = index[tuple(1 if arm in a else min(s[arm] + 1, d_max) for arm in range(n))]
    # Relative value iteration on the aperiodic version (stay put with probability 1/2, same
    # optimal gain): min and max of T v − v bracket the optimal gain and close in on it.
    v = np.zeros(len(states))
    for _ in range(iterations):
        new = 0.5 * np.max(reward + v[successor], axis=1) + 0.5 * v
        gain = 2.0 * (new - v)
        v = new - new.min()
    return float(gain.min()), float(gain.max())


def simulate(policy, r, periods, seed=0, noise="bernoulli"):
    """Run a policy on RecoveringEnv; returns the expected reward of each period."""
    env = RecoveringEnv(r, noise=noise, seed=seed)
    expected = np.zeros(periods)
    for t in range(periods):
        arms = policy.select(t) if hasattr(policy, "select") else policy.arms(t)
        expected[t] = env.expected(arms).sum()
        for arm, reward in zip(arms, env.step(arms), strict=True):
            if hasattr(policy, "update"):
                policy.update(t, arm, float(reward))
    return expected


# --------------------------------------------------------------------------- the LP bound


def test_bound_with_every_arm_every_period():
    mu = np.array([0.2, 0.5, 0.9])
    r = np.repeat(mu[:, None], 4, axis=1)  # no drop at all
    assert fluid_upper_bound(r, k=3) == pytest.approx(mu.sum())
    assert fluid_upper_bound(r, k=5) == pytest.approx(mu.sum())  # k beyond n buys nothing
    assert fluid_upper_bound(r, k=2) == pytest.approx(0.5 + 0.9)


def test_bound_of_one_arm_is_its_best_reward_rate():
    d = np.arange(1, 9)
    r = (1 - np.exp(-0.4 * d))[None, :]
    assert fluid_upper_bound(r, k=1) == pytest.approx(np.max(r[0] / d))
    assert fluid_upper_bound(r, k=3) == pytest.approx(np.max(r[0] / d))  # one arm: capacity does not help


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_bound_of_step_curves_is_a_fractional_knapsack(seed, k):
    # r_i(d) = mu_i·1[d ≥ D_i]: a pull is worth mu_i whatever the rest, and arm i takes at most
    # one pull per D_i periods, so the best use of k pulls fills them with the largest mu first.
    rng = np.random.default_rng(seed)
    mu, deadlines = rng.uniform(0.1, 1.0, 9), rng.integers(1, 7, 9)
    capacity, want = float(k), 0.0
    for i in np.argsort(-mu):
        take = min(1.0 / deadlines[i], capacity)
        want, capacity = want + mu[i] * take, capacity - take
    assert fluid_upper_bound(step_curves(mu, deadlines, 6), k) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    "r, k",
    [
        (step_curves([0.9, 0.6, 0.5, 0.8], [2, 4, 1, 4], 4), 1),  # harmonic: the bound is attained
        (random_instance("smooth", 3, 3, seed=1), 1),
        (random_instance("step", 3, 3, seed=2), 1),
        (random_instance("smooth", 3, 3, seed=3), 2),
    ],
)
def test_bound_covers_the_optimal_policy_and_the_plan_stays_below(r, k):
    best_low, best_high = optimal_average_reward(r, k)
    bound = fluid_upper_bound(r, k)
    plan = PeriodicPolicy.plan(r, k)
    assert best_high <= bound + 1e-9
    assert plan.average_reward(r) <= best_high + 1e-9


def test_bound_is_attained_on_a_harmonic_instance():
    r = step_curves([0.9, 0.6, 0.5, 0.8], [2, 4, 1, 4], 4)
    assert fluid_upper_bound(r, 1) == pytest.approx(0.8)
    assert optimal_average_reward(r, 1)[0] == pytest.approx(0.8)
    plan = PeriodicPolicy.plan(r, 1)
    assert plan.periods.tolist() == [2, 4, 0, 4]
    assert plan.average_reward(r) == pytest.approx(0.8)


@pytest.mark.parametrize("kind", ["smooth", "step"])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_lagrangian_periods_match_the_lp(kind, k):
    # Over all periods the Lagrangian choice + refill is the LP rounded in one arm: never
    # above the HiGHS bound, and below it by less than one arm's best reward rate.
    r = random_instance(kind, 15, 8, seed=k)
    periods = bandits._choose_periods(r, np.arange(1, 33), k)
    on = periods > 0
    value = np.sum(r[on, np.minimum(periods[on], 8) - 1] / periods[on])
    bound = fluid_upper_bound(r, k)
    assert np.sum(1.0 / periods[on]) <= k + 1e-9
    assert bound - np.max(r / np.arange(1, 9)) - 1e-9 <= value <= bound + 1e-9


def test_bound_rejects_bad_input():
    with pytest.raises(ValueError, match="n_arms, d_max"):
        fluid_upper_bound([1.0, 2.0], 1)
    with pytest.raises(ValueError, match="finite"):
        fluid_upper_bound([[0.5, np.nan]], 1)
    with pytest.raises(ValueError, match="k must be at least 1"):
        fluid_upper_bound([[0.5, 1.0]], 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        fluid_upper_bound([[0.5, 1.0]], 1.5)


# --------------------------------------------------------------------------- periodic plans


@pytest.mark.parametrize("harmonic", [True, False])
@pytest.mark.parametrize("kind", ["smooth", "step"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_plans_respect_k_and_the_periods(kind, k, harmonic):
    r = random_instance(kind, 12, 8, seed=10 + k)
    plan = PeriodicPolicy.plan(r, k, harmonic=harmonic)
    periods, offsets = plan.periods, plan.offsets
    assert np.sum(1.0 / periods[periods > 0]) <= k + 1e-9
    horizon = 2 * bandits._hyperperiod(periods[periods > 0], at_least=50)
    last = {}
    for t in range(horizon):
        arms = plan.arms(t)
        due = [i for i in range(12) if periods[i] > 0 and (t - offsets[i]) % periods[i] == 0]
        assert len(arms) == len(set(arms)) <= k
        assert set(arms) <= set(due)
        assert len(arms) == min(k, len(due))  # only overflow is skipped
        for arm in arms:
            if arm in last:
                assert (t - last[arm]) % periods[arm] == 0
            last[arm] = t
    assert not any(periods[i] == 0 and i in last for i in range(12))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_harmonic_periods_pack_without_collisions(k):
    rng = np.random.default_rng(k)
    for chain in bandits._harmonic_chains(10, 20):
        periods = []
        for _ in range(60):  # random periods of the chain, as many as the capacity takes
            p = int(rng.choice(chain))
            if sum(1 / q for q in periods) + 1 / p <= k + 1e-9:
                periods.append(p)
        periods = np.array(periods)
        offsets = bandits._balanced_offsets(periods)
        t = np.arange(periods.max())[:, None]  # the pattern repeats every max(periods)
        assert ((t - offsets) % periods == 0).sum(axis=1).max() <= k, chain


@pytest.mark.parametrize("kind", ["smooth", "step"])
def test_average_reward_is_what_a_simulation_earns(kind):
    r = random_instance(kind, 10, 6, seed=4)
    for plan in (PeriodicPolicy.plan(r, 2), PeriodicPolicy.plan(r, 2, harmonic=False)):
        expected = simulate(plan, r, 3000, noise=0.0)
        window = bandits._hyperperiod(plan.periods[plan.periods > 0], at_least=6)
        tail = expected[-(3000 // window - 1) * window :]  # whole hyperperiods after the warm-up
        assert tail.mean() == pytest.approx(plan.average_reward(r), rel=1e-9)


@pytest.mark.parametrize("kind", ["smooth", "step"])
def test_pull_rates_are_the_pulls_a_simulation_makes(kind):
    r = random_instance(kind, 10, 6, seed=5)
    for plan in (PeriodicPolicy.plan(r, 2), PeriodicPolicy.plan(r, 2, harmonic=False)):
        window = bandits._hyperperiod(plan.periods[plan.periods > 0], at_least=6)
        env = RecoveringEnv(r, noise=0.0)
        pulls = np.zeros_like(r)
        for t in range(4 * window):
            arms = plan.arms(t)
            if t >= 2 * window:  # whole hyperperiods after the warm-up
                np.add.at(pulls, (arms, env.idle(arms) - 1), 1.0)
            env.step(arms)
        rates = plan.pull_rates(6)
        np.testing.assert_allclose(rates, pulls / (2 * window), rtol=1e-12)
        assert rates.sum() <= 2 + 1e-12
        assert plan.average_reward(r) == pytest.approx(np.sum(rates * r), rel=1e-12)
    # At k = 1 arm 0 (period 2) gives way to arm 1 (period 4) every other time: it rests 4 periods.
    clash = PeriodicPolicy([2, 4], [0, 0], [0.5, 1.0], k=1)
    np.testing.assert_allclose(clash.pull_rates(4), [[0, 0, 0, 0.25], [0, 0, 0, 0.25]])


@pytest.mark.parametrize("kind", ["smooth", "step"])
def test_periodic_plan_is_near_the_bound_at_k8(kind):
    r = random_instance(kind, 20, 10, seed=7)
    assert PeriodicPolicy.plan(r, 8).average_reward(r) >= 0.95 * fluid_upper_bound(r, 8)


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        PeriodicPolicy([1, 2], [0], [1.0, 1.0], 1)
    with pytest.raises(ValueError, match="≥ 0"):
        PeriodicPolicy([-1], [0], [1.0], 1)


# --------------------------------------------------------------------------- RecoveringUCB


def test_recovering_ucb_learns_the_offline_plan():
    r = step_curves([0.9, 0.6, 0.5, 0.8], [2, 4, 1, 4], 10)
    policy = RecoveringUCB(n_arms=4, k=1, d_max=10, seed=3)
    expected = simulate(policy, r, 12000, seed=3)
    bound = fluid_upper_bound(r, 1)
    assert expected[-3000:].mean() >= 0.97 * bound
    assert policy.plan.average_reward(r) >= 0.97 * bound  # the offline plan [2, 4, 0, 4] earns the bound
    assert policy.replans < 200
    # The plain UCB keeps pulling the same arm, which never recovers.
    plain = simulate(PlainUCB(n_arms=4, k=1, seed=3), r, 3000, seed=3)
    assert plain[-1000:].mean() < 0.7 * bound


def learner_with_statistics(counts, means, n_decisions=1000, **params):
    """A RecoveringUCB whose per-pair statistics are set directly."""
    counts = np.asarray(counts, dtype=np.int64)
    policy = RecoveringUCB(n_arms=counts.shape[0], k=counts.shape[0], d_max=counts.shape[1], **params)
    policy.counts, policy.sums, policy.n_decisions = counts, counts * np.asarray(means, dtype=float), n_decisions
    return policy


def test_joint_bound_adds_the_widths_in_quadrature():
    # Four arms pulled every period, each pair known from 100 samples of mean 0.5:
    # the per-pair values add four widths, the joint bound √4 = 2 of them.
    counts, means = np.full((4, 3), 100), np.full((4, 3), 0.5)
    width = math.sqrt(0.5 * math.log(1000) / 100)
    every_period = PeriodicPolicy([1, 1, 1, 1], [0, 0, 0, 0], [1.0] * 4, k=4)
    joint = learner_with_statistics(counts, means, monotone=False)
    per_pair = learner_with_statistics(counts, means, monotone=False, joint=False)
    assert per_pair.plan_upper_bound(every_period) == pytest.approx(4 * (0.5 + width), rel=1e-12)
    assert joint.plan_upper_bound(every_period) == pytest.approx(2 + 2 * width, rel=1e-12)
    # An unsampled pair counts at its upper confidence value (1) and adds no width.
    counts[3, 0] = 0
    joint = learner_with_statistics(counts, means, monotone=False)
    assert joint.plan_upper_bound(every_period) == pytest.approx(1.5 + 1 + math.sqrt(3) * width, rel=1e-12)
    # Near 1 the per-pair values are capped at 1 and the per-pair sum is the smaller bound.
    high = learner_with_statistics([[100, 100]], [[0.99, 0.99]], monotone=False)
    assert high.plan_upper_bound(PeriodicPolicy([1], [0], [1.0], k=1)) == pytest.approx(1.0)
    # Candidates come from the scales 1, 1/2, … down to the first ≤ 1/√n_arms, and 0.
    assert RecoveringUCB(n_arms=20, k=2, d_max=3)._scales == (1.0, 0.5, 0.25, 0.125, 0.0)
    assert RecoveringUCB(n_arms=4, k=2, d_max=3)._scales == (1.0, 0.5, 0.0)


def test_joint_planner_never_bounds_its_plan_below_the_per_pair_plan():
    r = random_instance("smooth", 8, 5, seed=6)
    policy = RecoveringUCB(n_arms=8, k=3, d_max=5, seed=6)
    simulate(policy, r, 400, seed=6)
    per_pair_plan = PeriodicPolicy.plan(policy.planning_values(), 3)
    chosen = policy._joint_plan()
    assert policy.plan_upper_bound(chosen) >= policy.plan_upper_bound(per_pair_plan) - 1e-12
    # Without `joint` the learner plans on the per-pair values alone, as before.
    per_pair = RecoveringUCB(n_arms=8, k=3, d_max=5, seed=6, joint=False)
    per_pair.load_state_dict(policy.state_dict())
    per_pair._replan(400)
    np.testing.assert_array_equal(per_pair.plan.periods, per_pair_plan.periods)
    np.testing.assert_array_equal(per_pair.plan.offsets, per_pair_plan.offsets)


def test_joint_bound_lowers_the_regret_with_several_arms_per_period():
    # With k = 4 the per-pair values overshoot by the sum of four widths and keep
    # pulling plans for their widths; the joint bound loses less to the offline plan.
    regret = {True: 0.0, False: 0.0}
    for seed in range(2):
        r = random_instance("step", 10, 5, seed)
        benchmark = simulate(PeriodicPolicy.plan(r, 4), r, 3000, seed=seed).sum()
        for joint in regret:
            regret[joint] += benchmark - simulate(RecoveringUCB(10, 4, 5, seed=seed, joint=joint), r, 3000, seed=seed).sum()
    assert 0 < regret[True] < 0.8 * regret[False]


def test_statistics_are_filed_under_the_idle_time_of_the_pull():
    policy = RecoveringUCB(n_arms=3, k=3, d_max=4, seed=0, min_epoch=1000)
    for t in range(3):  # the first plan pulls every arm every period (all values look like 1)
        arms = policy.select(t)
        assert arms == [0, 1, 2]
        for arm in arms:
            policy.update(t, arm, 0.25 * (arm + 1))
    # First pulls find fresh arms (idle d_max), later ones idle 1.
    np.testing.assert_array_equal(policy.counts, [[2, 0, 0, 1]] * 3)
    np.testing.assert_allclose(policy.means()[:, 0], [0.25, 0.5, 0.75])
    ucb = policy.upper_confidence()
    np.testing.assert_allclose(ucb[:, 0], np.minimum(1, [0.25, 0.5, 0.75] + np.sqrt(0.5 * math.log(3) / 2)))
    assert np.all(ucb[:, 1:3] == 1.0)
    monotone = policy.planning_values()
    assert np.all(np.diff(monotone, axis=1) >= 0)


def test_rewards_may_arrive_late_and_in_any_order():
    policy = RecoveringUCB(n_arms=5, k=2, d_max=3, seed=1)
    chosen = {t: policy.select(t) for t in range(0, 20, 2)}  # gaps between periods are fine
    assert all(len(arms) <= 2 for arms in chosen.values())
    pulls = [(t, arm) for t, arms in chosen.items() for arm in arms]
    for t, arm in reversed(pulls):
        assert policy.is_pending(t, arm)
        policy.update(t, arm, 0.5)
    assert policy.counts.sum() == len(pulls) and not policy._pending
    with pytest.raises(ValueError, match="not chosen"):
        policy.update(*pulls[0], 0.5)  # twice
    with pytest.raises(ValueError, match="t must increase"):
        policy.select(18)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        policy.update(20, 0, 1.5)
    with pytest.raises(TypeError, match="t must be an integer"):
        policy.select(21.0)


def test_max_pending_drops_the_oldest_decisions():
    policy = RecoveringUCB(n_arms=4, k=4, d_max=2, max_pending=6)
    for t in range(3):
        policy.select(t)
    assert len(policy._pending) == 6 and not policy.is_pending(0, 0) and policy.is_pending(2, 3)


@pytest.mark.parametrize(
    "params, error",
    [
        ({"n_arms": 0, "k": 1, "d_max": 3}, "n_arms must be at least 1"),
        ({"n_arms": 3, "k": 0, "d_max": 3}, "k must be at least 1"),
        ({"n_arms": 3, "k": 1, "d_max": 0}, "d_max must be at least 1"),
        ({"n_arms": 3, "k": 1, "d_max": 3, "c": -1}, "c must be a number"),
        ({"n_arms": 3, "k": 1, "d_max": 3, "min_epoch": 0}, "min_epoch must be at least 1"),
    ],
)
def test_bad_parameters(params, error):
    with pytest.raises(ValueError, match=error):
        RecoveringUCB(**params)


def test_predict_one_is_pure_and_learn_one_updates():
    policy = RecoveringUCB(n_arms=6, k=2, d_max=4, seed=5)
    simulate(policy, random_instance("smooth", 6, 4, seed=5), 200, seed=5)
    before = policy.state_dict()
    arms = policy.predict_one({"t": 200})
    assert states_equal(policy.state_dict(), before)
    assert policy.select(200) == arms
    policy.learn_one({"t": 200, "arm": arms[0]}, 1.0)
    policy.learn_one({"t": 200, "arm": arms[1], "reward": 0.0})
    assert policy.counts.sum() == before["counts"].sum() + 2
    assert policy._get_params()["c"] == 0.5 and policy.clone().n_arms == 6


def run_stream(policy, env, periods, start=0, late=None):
    """Closed loop from period `start`; each period's rewards are delivered one period late."""
    late = list(late or [])
    for t in range(start, start + periods):
        arms = policy.select(t)
        for pending in late:
            policy.update(*pending)
        late = [(t, arm, float(reward)) for arm, reward in zip(arms, env.step(arms), strict=True)]
    return late


@pytest.mark.parametrize("joint", [True, False])
def test_statistics_after_a_restart_equal_the_uninterrupted_ones(joint):
    r = random_instance("step", 8, 5, seed=9)
    uninterrupted = RecoveringUCB(n_arms=8, k=3, d_max=5, seed=9, joint=joint)
    late = run_stream(uninterrupted, RecoveringEnv(r, seed=9), 900)
    for pending in late:
        uninterrupted.update(*pending)

    first = RecoveringUCB(n_arms=8, k=3, d_max=5, seed=9, joint=joint)
    env = RecoveringEnv(r, seed=9)
    late = run_stream(first, env, 437)  # stops with rewards still in flight
    assert first._pending and first.replans > 1
    state = state_from_table(state_to_table(check_state(first.state_dict())))  # as a checkpoint stores it
    assert states_equal(state, first.state_dict())
    restored = RecoveringUCB(n_arms=8, k=3, d_max=5, seed=9, joint=joint)
    restored.load_state_dict(state)
    late = run_stream(restored, env, 900 - 437, start=437, late=late)
    for pending in late:
        restored.update(*pending)

    np.testing.assert_array_equal(restored.counts, uninterrupted.counts)
    np.testing.assert_array_equal(restored.sums, uninterrupted.sums)
    np.testing.assert_array_equal(restored.upper_confidence(), uninterrupted.upper_confidence())
    np.testing.assert_array_equal(restored.plan.periods, uninterrupted.plan.periods)
    assert restored.replans == uninterrupted.replans
    assert states_equal(restored.state_dict(), uninterrupted.state_dict())


def test_state_of_a_fresh_learner_round_trips_and_shapes_are_checked():
    fresh = RecoveringUCB(n_arms=4, k=2, d_max=3)
    restored = RecoveringUCB(n_arms=4, k=2, d_max=3)
    restored.load_state_dict(state_from_table(state_to_table(fresh.state_dict())))
    assert restored.plan is None and restored.last_t is None
    assert states_equal(restored.state_dict(), fresh.state_dict())
    assert restored.select(0) == RecoveringUCB(n_arms=4, k=2, d_max=3).select(0)
    with pytest.raises(ValueError, match="counts"):
        RecoveringUCB(n_arms=5, k=2, d_max=3).load_state_dict(fresh.state_dict())


# --------------------------------------------------------------------------- baselines and the simulator


def test_baselines_pull_at_most_k_distinct_arms():
    r = random_instance("step", 10, 5, seed=2)
    for policy in (OracleGreedy(r, 3), UCBGreedy(10, 3, 5, seed=2), PlainUCB(10, 3, seed=2)):
        env = RecoveringEnv(r, seed=2)
        for t in range(60):
            arms = policy.select(t)
            assert len(arms) == len(set(arms)) <= 3 and all(0 <= a < 10 for a in arms)
            for arm, reward in zip(arms, env.step(arms), strict=True):
                policy.update(t, arm, float(reward))


def test_oracle_greedy_leaves_worthless_arms_to_rest():
    r = step_curves([1.0, 0.5], [3, 3], 3)
    greedy = OracleGreedy(r, 2)
    assert [greedy.select(t) for t in range(4)] == [[0, 1], [], [], [0, 1]]


def test_plain_greedy_pulls_k_arms_even_when_they_are_worth_nothing():
    r = step_curves([1.0, 0.5], [3, 3], 3)
    greedy = OracleGreedy(r, 2, rest_worthless=False)
    assert [greedy.select(t) for t in range(4)] == [[0, 1]] * 4  # each pull resets the deadline: nothing is ever earned


def test_env_rewards_are_unbiased():
    r = np.array([[0.0, 0.3, 0.8]])
    env = RecoveringEnv(r, seed=0)
    rewards = [env.step([0] if t % 3 == 0 else [])[:1].sum() for t in range(30000)][::3]  # idle 3 each time
    assert np.mean(rewards) == pytest.approx(0.8, abs=0.02)
    assert set(np.unique(rewards)) == {0.0, 1.0}
    exact = RecoveringEnv(r, noise=0.0)
    assert exact.step([0]).tolist() == [0.8] and exact.step([0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="distinct"):
        exact.step([0, 0])
    with pytest.raises(ValueError, match="Bernoulli noise needs r in"):
        RecoveringEnv(np.array([[1.5]]))


# --------------------------------------------------------------------------- the processor


def make_processor(n_arms=4, k=2, d_max=3, emit=True):
    return BanditProcessor(RecoveringUCB(n_arms=n_arms, k=k, d_max=d_max, seed=0), emit=emit)


@pytest.mark.parametrize(
    "event, reason",
    [
        ({"t": 1}, "type must be one of"),
        ({"type": "pull", "t": 1}, "type must be one of"),
        ({"type": "decide"}, "missing field 't'"),
        ({"type": "decide", "t": 1.5}, "t must be an integer"),
        ({"type": "decide", "t": True}, "t must be an integer"),
        ({"type": "decide", "t": 2**70}, "out of range"),
        ({"type": "reward", "t": 1, "reward": 0.5}, "missing field 'arm'"),
        ({"type": "reward", "t": 1, "arm": 4, "reward": 0.5}, r"arm must lie in \[0, 4\)"),
        ({"type": "reward", "t": 1, "arm": -1, "reward": 0.5}, "arm must lie in"),
        ({"type": "reward", "t": 1, "arm": "0", "reward": 0.5}, "arm must be an integer"),
        ({"type": "reward", "t": 1, "arm": 0}, "missing field 'reward'"),
        ({"type": "reward", "t": 1, "arm": 0, "reward": float("nan")}, "reward is not finite"),
        ({"type": "reward", "t": 1, "arm": 0, "reward": float("inf")}, "reward is not finite"),
        ({"type": "reward", "t": 1, "arm": 0, "reward": "high"}, "reward must be a number"),
        ({"type": "reward", "t": 1, "arm": 0, "reward": 1.5}, r"reward must lie in \[0, 1\]"),
    ],
)
def test_decode_rejects_bad_events(event, reason):
    with pytest.raises(BadEvent, match=reason):
        make_processor().decode(event)


def items(processor, events):
    return [Item({"row": i}, processor.decode(e), e) for i, e in enumerate(events)]


def test_processor_decides_learns_and_rejects_what_does_not_fit():
    processor = make_processor()
    out = processor.process(items(processor, [{"type": "decide", "t": 0}]))
    assert len(out) == 1 and out[0].payload["type"] == "decision" and out[0].payload["t"] == 0
    arms = out[0].payload["arms"]
    unchosen = next(a for a in range(4) if a not in arms)
    events = [
        {"type": "reward", "t": 0, "arm": arms[0], "reward": 1.0},
        {"type": "reward", "t": 0, "arm": arms[0], "reward": 1.0},  # twice
        {"type": "reward", "t": 0, "arm": unchosen, "reward": 1.0},  # not chosen
        {"type": "reward", "t": 5, "arm": arms[1], "reward": 1.0},  # no decision at 5
        {"type": "decide", "t": 0},  # not increasing
        {"type": "reward", "t": 0, "arm": arms[1], "reward": 0.0},
        {"type": "decide", "t": 3},
    ]
    before = processor.learner.counts.sum()
    out = processor.process(items(processor, events))
    rejected = processor.take_rejected()
    assert [item.position["row"] for item, _ in rejected] == [1, 2, 3, 4]
    assert "already arrived" in rejected[0][1] and "t must increase" in rejected[3][1]
    assert processor.learner.counts.sum() == before + 2
    assert [o.payload["t"] for o in out] == [3] and out[0].position == {"row": 6}
    assert processor.metrics() == {"average_reward": 0.5, "rewards": 2.0, "decisions": 2.0}
    assert set(processor.details()["plan"]) == {"periods", "offsets"}


# --------------------------------------------------------------------------- simulated environment (offline evaluation)


def environment_event(n_arms=4, d_max=3, seed=5, **extra):
    r = step_curves(np.linspace(0.4, 1.0, n_arms), [1 + i % d_max for i in range(n_arms)], d_max)
    return {"type": "environment", "r": r.tolist(), "noise": "bernoulli", "seed": seed, **extra}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"r": [[0.5, 0.5]] * 3}, "environment r has 3 arms, the learner has n_arms = 4"),
        ({"r": [[0.5, 0.5]] * 3 + [[0.5]]}, "rows of one length"),
        ({"r": [[0.5, 0.5]] * 3 + [[0.5, float("nan")]]}, "not finite"),
        ({"r": [[0.5, 1.5]] * 4}, "Bernoulli noise needs r in"),
        ({"r": "flat"}, "environment r must be a list"),
        ({"seed": -1}, "seed must be an integer"),
        ({"noise": -0.1}, "noise must be 'bernoulli' or a standard deviation"),
    ],
)
def test_decode_rejects_a_bad_environment(change, reason):
    with pytest.raises(BadEvent, match=reason):
        make_processor().decode({**environment_event(), **change})


def test_environment_answers_every_decision_and_refuses_logged_rewards():
    processor = make_processor()
    events = [environment_event(), *({"type": "decide", "t": t} for t in range(0, 40, 2))]
    events.insert(3, {"type": "reward", "t": 0, "arm": 0, "reward": 1.0})
    events.append(environment_event(seed=6))  # a second environment
    out = processor.process(items(processor, events))
    rejected = processor.take_rejected()
    assert [(item.position["row"], reason.split(",")[0]) for item, reason in rejected] == [
        (3, "this stream's rewards come from its simulated environment"),
        (len(events) - 1, "an environment must come once"),
    ]
    # every decision carries the simulator's rewards for its arms, and the learner learned them all
    assert [o.payload["t"] for o in out] == list(range(0, 40, 2))
    assert all(len(o.payload["rewards"]) == len(o.payload["arms"]) == 2 for o in out)
    assert processor.learner.counts.sum() == 40
    metrics = processor.metrics()
    assert metrics["rewards"] == 40 and metrics["average_reward"] == np.mean([r for o in out for r in o.payload["rewards"]])
    # the rewards are the environment's own: the same pulls in a fresh RecoveringEnv give the same values
    env = RecoveringEnv(np.array(environment_event()["r"]), seed=5)
    assert [env.pull(o.payload["t"], o.payload["arms"]).tolist() for o in out] == [o.payload["rewards"] for o in out]
    assert 0 < metrics["bound_ratio"] <= 1
    details = processor.details()
    assert details["evaluation"].startswith("simulated recovering-reward environment (4 arms")
    assert details["fluid_upper_bound"] == pytest.approx(fluid_upper_bound(env.r, 2))


def test_environment_after_a_decision_is_refused():
    processor = make_processor()
    processor.process(items(processor, [{"type": "decide", "t": 0}, environment_event()]))
    ((item, reason),) = processor.take_rejected()
    assert item.position["row"] == 1 and "before the first decision" in reason
    assert "fluid_upper_bound" not in processor.details()


def test_simulated_run_resumed_from_its_state_equals_the_uninterrupted_run():
    events = [environment_event(), *({"type": "decide", "t": t} for t in range(60))]
    whole = make_processor()
    expected = whole.process(items(whole, events))
    first = make_processor()
    head = first.process(items(first, events[:25]))
    second = make_processor()
    second.learner.load_state_dict(first.learner.state_dict())
    second.load_state_dict(state_from_table(state_to_table(first.state_dict())))
    tail = second.process([Item({"row": i}, second.decode(e), e) for i, e in enumerate(events[25:], 25)])
    assert [o.payload for o in head + tail] == [o.payload for o in expected]
    assert second.metrics() == whole.metrics() and second.details() == whole.details()


def test_pull_in_a_period_does_not_depend_on_the_calls_before_it():
    r = np.full((3, 2), 0.5)
    a, b = RecoveringEnv(r, seed=1), RecoveringEnv(r, seed=1)
    a.pull(0, [0, 1])
    a.pull(4, [2])
    b.last_pulled[:] = a.last_pulled  # a copy restored from a's bookkeeping only
    b.t = a.t
    assert a.pull(9, [0, 1, 2]).tolist() == b.pull(9, [0, 1, 2]).tolist()
    with pytest.raises(ValueError, match="t must be an integer period ≥ 10"):
        a.pull(3, [0])
    with pytest.raises(ValueError, match="needs an environment with an integer seed"):
        RecoveringEnv(r).pull(0, [0])


def test_processor_without_outputs_still_learns_and_its_state_round_trips():
    processor = make_processor(emit=False)
    assert processor.metrics()["average_reward"] == 0.0
    assert processor.process(items(processor, [{"type": "decide", "t": 0}])) == []
    arm = next(iter(processor.learner._pending))[1]
    processor.process(items(processor, [{"type": "reward", "t": 0, "arm": arm, "reward": 0.75}]))
    restored = make_processor(emit=False)
    restored.load_state_dict(state_from_table(state_to_table(processor.state_dict())))
    assert restored.metrics() == processor.metrics() == {"average_reward": 0.75, "rewards": 1.0, "decisions": 1.0}
    config = parse_config({"learner": {"name": "bandit", "params": {"n_arms": 3, "k": 1, "d_max": 2}}, "eval": {"metrics": ["MAE"]}})
    with pytest.raises(ValueError, match="leave \\[eval\\] metrics empty"):
        config.build_processor(config.build_learner())


# --------------------------------------------------------------------------- end to end


def logged_stream(path, periods, seed=0):
    """A closed-loop log: the config's learner decides, a simulator answers, rewards come one period late.

    Replaying it makes the same decisions, so every reward matches a decision; a
    few bad events are mixed in. Returns the decisions and the number of bad events.
    """
    params = tomllib.loads(CONFIG.read_text())["learner"]["params"]
    policy = RecoveringUCB(**params)
    env = RecoveringEnv(random_instance("step", params["n_arms"], params["d_max"], seed), seed=seed)
    events, decisions, late, rewards, n_bad = [], [], [], [], 0
    bad = [
        '{"type": "decide", "t": "soon"}',
        '{"type": "reward", "t": 3, "arm": 999, "reward": 0.5}',
        "not json",
        '{"type": "reward", "t": 4, "arm": 0, "reward": NaN}',
    ]
    for t in range(periods):
        events.append({"type": "decide", "t": t})
        arms = policy.select(t)
        decisions.append(arms)
        for pending in late:
            policy.update(*pending)
            events.append({"type": "reward", "t": pending[0], "arm": pending[1], "reward": pending[2]})
            rewards.append(pending[2])
        late = [(t, arm, float(x)) for arm, x in zip(arms, env.step(arms), strict=True)]
        if t % 100 == 50 and bad:
            events.append(bad.pop())
            n_bad += 1
    write_jsonl(path, events)
    return decisions, n_bad, float(np.mean(rewards)), policy


def test_replay_of_the_shipped_config_from_the_cli(tmp_path):
    decisions, n_bad, mean_reward, policy = logged_stream(tmp_path / "events.jsonl", 600)
    done = run_cli("replay", str(CONFIG), "--input", str(tmp_path / "events.jsonl"), "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["dead_letters"] == n_bad
    assert report["final_metrics"]["decisions"] == 600
    assert report["final_metrics"]["average_reward"] == pytest.approx(mean_reward, rel=1e-12)
    assert report["details"]["plan"]["periods"] == policy.plan.periods.tolist()
    lines = (tmp_path / "out" / "bandit" / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(line)["arms"] for line in lines] == decisions
    assert len((tmp_path / "out" / "bandit" / "dead_letters.jsonl").read_text().splitlines()) == n_bad


def test_replay_resumed_from_a_checkpoint_matches_an_uninterrupted_one(tmp_path):
    logged_stream(tmp_path / "events.jsonl", 300, seed=1)

    def config(name, checkpoints):
        raw = tomllib.loads(CONFIG.read_text())
        raw["output"] = {"predictions": str(tmp_path / name / "decisions.jsonl")}
        raw["engine"] = {"batch_size": 64}
        raw["checkpoint"] = {"dir": str(tmp_path / name / "ckpt"), "every_events": 100} if checkpoints else {}
        return parse_config(raw)

    whole = replay(config("whole", False), tmp_path / "events.jsonl", progress=False)
    replay(config("parts", True), tmp_path / "events.jsonl", progress=False, max_records=333)
    resumed = replay(config("parts", True), tmp_path / "events.jsonl", progress=False)
    assert resumed["resumed_from_events"] == 333
    assert resumed["final_metrics"] == whole["final_metrics"] and resumed["details"] == whole["details"]

    def answers(name):
        lines = (tmp_path / name / "decisions.jsonl").read_text().splitlines()
        return {json.dumps(r["source"], sort_keys=True): r for r in map(json.loads, lines)}

    assert answers("parts") == answers("whole")


# --------------------------------------------------------------------------- the paper's randomised periodic policy


def test_randomised_rounding_is_the_lp_in_expectation():
    # Period d with probability d·x[i, d]: each arm's expected rate is the LP's, and so is
    # the expected number of arms due per period (Σ x ≤ k), before any collision.
    r = random_instance("smooth", 12, 6, seed=4)
    k = 3
    bound, x = bandits._solve_fluid_lp(r, k)
    rates, loads = [], []
    for seed in range(150):
        plan = PeriodicPolicy.randomized(r, k, seed=seed)
        on = plan.periods > 0
        p = plan.periods[on]
        rates.append(float(np.sum(r[np.flatnonzero(on), np.minimum(p, 6) - 1] / p)))
        loads.append(float(np.sum(1.0 / p)))
        assert np.all((plan.offsets >= 0) & (plan.offsets < np.maximum(plan.periods, 1)))
    assert np.mean(rates) == pytest.approx(bound, rel=0.02)
    assert np.mean(loads) == pytest.approx(x.sum(), rel=0.02) and x.sum() <= k + 1e-9


def test_randomised_offsets_are_uniform_and_independent_of_the_period():
    r = np.tile([0.0, 0.0, 0.0, 1.0], (3, 1))  # the LP puts every arm on period 4
    offsets = np.array([PeriodicPolicy.randomized(r, k=1, seed=seed).offsets for seed in range(600)])
    assert set(np.unique(offsets)) == {0, 1, 2, 3}
    assert np.bincount(offsets[:, 0], minlength=4) / 600 == pytest.approx([0.25] * 4, abs=0.06)
    assert abs(np.corrcoef(offsets[:, 0], offsets[:, 1])[0, 1]) < 0.15


def test_paper_policy_gap_to_the_bound_shrinks_with_k():
    # The paper's 1 − O(1/√K): with N = 5K arms, collisions cost less the larger K.
    def ratio(k):
        r = random_instance("smooth", 5 * k, 8, seed=k)
        values = [PeriodicPolicy.randomized(r, k, seed=s).average_reward(r) for s in range(4)]
        return np.mean(values) / fluid_upper_bound(r, k)

    small, large = ratio(1), ratio(16)
    assert large > small + 0.1
    assert 1 - large < 2 * (1 - small) / math.sqrt(16) + 0.02

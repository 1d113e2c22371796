"""OER and its parts: TD3+BC, the dynamics ensemble, MBES, dual behaviour cloning, state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamlearn.learners.base import check_state, state_hash
from streamlearn.learners.corl import MBES, OER, TD3BC, DynamicsEnsemble, TD3BCConfig, Transitions
from streamlearn.learners.corl.buffers import TaskBuffer
from streamlearn.learners.corl.mbes import successors
from streamlearn.learners.corl.pointmass import PointMass, transition_events

torch.set_num_threads(1)

TINY = {
    "hidden": 16,
    "batch_size": 32,
    "steps_per_task": 12,
    "dynamics_hidden": 16,
    "dynamics_steps": 10,
    "n_models": 3,
    "n_neighbors": 16,
}


def tiny_oer(**params) -> OER:
    return OER(4, 2, **{"buffer_size": 30, **TINY, **params})


@pytest.fixture(scope="module")
def datasets() -> dict[str, dict[str, np.ndarray]]:
    env = PointMass()
    return {f"goal{k}": env.dataset(k, 120, "medium", seed=k) for k in (0, 2)}


def one_step_task(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Contextual bandit: reward 1 − (a − a*(s))²; the behaviour is biased by +0.5 and noisy."""
    obs = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    best = np.tanh(obs[:, :1] - obs[:, 1:])
    action = np.clip(best + 0.5 + rng.normal(0, 0.3, size=(n, 1)), -1, 1).astype(np.float32)
    reward = 1 - ((action - best) ** 2)[:, 0]
    return {"obs": obs, "action": action, "reward": reward, "next_obs": obs, "done": np.ones(n, bool)}


# --------------------------------------------------------------------------- TD3+BC


def test_td3bc_improves_on_behaviour_cloning():
    rng = np.random.default_rng(0)
    data = Transitions.from_arrays(one_step_task(1000, rng), task=0)
    probe = rng.uniform(-1, 1, size=(500, 2)).astype(np.float32)
    best = np.tanh(probe[:, :1] - probe[:, 1:])
    regret = {}
    for alpha in (2.5, 0.0):  # alpha = 0 is pure behaviour cloning
        agent = TD3BC(2, 1, config=TD3BCConfig(hidden=32, batch_size=128, lr=1e-3, alpha=alpha), seed=0)
        agent.fit(data, steps=300, rng=np.random.default_rng(1))
        regret[alpha] = float(((agent.act(probe, 0) - best) ** 2).mean())
    assert regret[0.0] > 0.1  # cloning copies the +0.5 bias of the behaviour
    assert regret[2.5] < 0.5 * regret[0.0]


def test_td3bc_config_is_checked():
    with pytest.raises(ValueError, match="gamma"):
        TD3BCConfig(gamma=1.5)
    with pytest.raises(ValueError, match="hidden"):
        TD3BCConfig(hidden=0)


# --------------------------------------------------------------------------- dynamics + MBES


def test_dynamics_ensemble_learns_and_is_unsure_away_from_data():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, size=(1000, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(1000, 1)).astype(np.float32)
    next_obs = obs + 0.2 * np.concatenate([act, -act], axis=1)
    model = DynamicsEnsemble(2, 1, n_models=5, hidden=32, generator=torch.Generator().manual_seed(0))
    model.fit(obs, act, next_obs, steps=400, batch_size=64, lr=3e-3, rng=rng)
    pred = model.predict(obs, act)
    assert pred.shape == (5, 1000, 2)
    assert np.abs(pred.mean(0) - next_obs).mean() < 0.02
    far = model.predict(obs[:100] + 8.0, act[:100])
    assert far.var(0).mean() > 10 * pred.var(0).mean()


def test_successors_follow_episodes():
    obs = np.array([[0.0], [1.0], [2.0], [5.0], [6.0]], np.float32)
    next_obs = np.array([[1.0], [2.0], [3.0], [6.0], [7.0]], np.float32)
    done = np.array([False, False, False, True, False])
    # 2 → 3 is a break (next_obs ≠ obs), 3 is terminal, 4 is the last row.
    assert successors(obs, next_obs, done).tolist() == [1, 2, -1, -1, -1]


class ExactModel:
    """s' = s + 0.1 a, predicted with certainty (or, if ``unsure``, with a huge spread at sideways actions)."""

    def __init__(self, unsure: bool = False):
        self.unsure = unsure

    def predict(self, obs, act):
        mean = obs + 0.1 * act
        if self.unsure and np.any(act[:, 1] != 0):  # the logged actions never move sideways
            return np.stack([mean - 10, mean + 10])
        return np.stack([mean, mean])


def two_way_dataset(rng: np.random.Generator, n_episodes: int = 40, length: int = 10):
    """Half the episodes move right (+x), half left, from starts near the origin."""
    obs, act = [], []
    for e in range(n_episodes):
        direction = 1.0 if e % 2 == 0 else -1.0
        s = rng.normal(0, 0.01, size=2)
        for _ in range(length):
            obs.append(s.copy())
            act.append([direction, 0.0])
            s = s + 0.1 * np.array([direction, 0.0])
    obs, act = np.array(obs, np.float32), np.array(act, np.float32)
    next_obs = (obs + 0.1 * act).astype(np.float32)
    return obs, act, next_obs, np.zeros(len(obs), bool)


def test_mbes_prefers_transitions_on_the_policy_trajectory():
    rng = np.random.default_rng(0)
    obs, act, next_obs, done = two_way_dataset(rng)
    policy = np.tile([[1.0, 0.0]], (len(obs), 1)).astype(np.float32)  # the learned policy goes right
    chosen = MBES(n_neighbors=16).select(obs, act, next_obs, done, policy, ExactModel(), size=60, rng=rng)
    assert len(chosen) == 60 and len(set(chosen.tolist())) == 60
    on_policy = float((act[chosen, 0] > 0).mean())
    uniform = float((act[rng.choice(len(obs), 60, replace=False), 0] > 0).mean())
    assert on_policy > 0.85
    assert on_policy > uniform + 0.2


def test_mbes_follows_the_logged_trajectory_when_the_model_is_unsure():
    rng = np.random.default_rng(0)
    obs, act, next_obs, done = two_way_dataset(rng)
    def policy(o):  # right and a little sideways: a move the model is unsure of
        return np.tile([[1.0, 0.5]], (len(o), 1)).astype(np.float32)

    # 100 = one batch of 10 lockstep walks along 10-step episodes: all of them are kept.
    chosen = MBES(n_neighbors=16).select(obs, act, next_obs, done, policy, ExactModel(unsure=True), size=100, rng=rng)
    # Whole logged episodes, start to end, in both directions.
    assert sorted(chosen.tolist()) == sorted(set(chosen.tolist()))
    episodes = sorted({int(i) // 10 for i in chosen})
    assert sorted(chosen.tolist()) == [e * 10 + t for e in episodes for t in range(10)]
    assert {e % 2 for e in episodes} == {0, 1}


def test_mbes_ranks_the_nearest_states_by_their_predicted_next_state():
    """The k-d tree candidates of the walks' states are what a search over all states finds."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    n, m, walks = 300, 12, 40
    keys, mean_data = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    mean_policy, var_policy = rng.normal(size=(walks, 3)), rng.uniform(0.5, 3.5, size=(walks, 3))
    var_data = rng.uniform(0.5, 1.5, size=n)
    here = rng.choice(n, walks, replace=False)
    ranked, confident = MBES(n_neighbors=m, confidence=2.0)._rank(
        cKDTree(keys), keys[here], m, mean_data, var_data, mean_policy, var_policy
    )
    for w, k in enumerate(here):
        near = np.argsort(((keys - keys[k]) ** 2).sum(1))[:m]
        assert ranked[w].tolist() == near[np.argsort(((mean_data[near] - mean_policy[w]) ** 2).sum(1))].tolist()
        assert confident[w] == (var_policy[w].mean() <= 2.0 * var_data[near].mean())
    assert 0 < confident.mean() < 1  # both branches occur


class PointMassModel:
    """The point mass's own (deterministic) dynamics as a certain transition model."""

    def __init__(self, env: PointMass):
        self.env = env

    def predict(self, obs, act):
        return self.env.step(np.asarray(obs, np.float64), np.asarray(act, np.float64), 0)[0][None]


def test_mbes_walks_follow_a_policy_faster_than_the_data_instead_of_standing_still():
    """The expert accelerates beyond any logged velocity: the best match is then often the predecessor of the
    current state (it predicts that state itself); a walk must not step back onto kept states and stay pinned."""
    env = PointMass()
    data = env.dataset(0, 4000, "medium", seed=0)
    policy = env.expert_action(data["obs"], 0).astype(np.float32)
    selector = MBES()
    chosen = selector.select(data["obs"], data["action"], data["next_obs"], data["done"], policy,
                             PointMassModel(env), size=400, rng=np.random.default_rng(0))
    assert selector.padded == 0  # the walks alone filled the buffer (pinned walks left ~60% to random padding)
    kept = data["obs"][chosen]
    uniform = data["obs"][np.random.default_rng(1).choice(len(data["obs"]), 400, replace=False)]
    # Pinned walks keep states near the starts; walks that follow the expert leave them (goal 0 is +x).
    assert (kept[:, 0] > 1.0).mean() > 0.7 > 0.6 > (uniform[:, 0] > 1.0).mean()
    _, visited = env.rollout(lambda o: env.expert_action(o, 0), 0, n_episodes=10, seed=1)

    def coverage(states: np.ndarray) -> float:  # mean distance of a visited state to the nearest kept one
        return float(np.sqrt(((visited[:, None, :] - states[None, :, :]) ** 2).sum(-1)).min(1).mean())

    assert coverage(kept) < coverage(uniform)


def test_mbes_small_buffers_sample_whole_walks_not_their_first_steps():
    """A buffer far smaller than a batch of walks holds states from all along the walks (issue 17, point 1)."""
    env = PointMass(goals="positions")
    data = env.dataset(0, 5000, "expert", seed=0)
    step = np.tile(np.arange(env.horizon), len(data["obs"]) // env.horizon)  # time step of every transition
    selector = MBES(n_walks=10)
    chosen = selector.select(data["obs"], data["action"], data["next_obs"], data["done"],
                             lambda o: env.expert_action(o, 0), PointMassModel(env), size=20,
                             rng=np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 20 and selector.padded == 0
    assert selector.walked >= 10 * 20  # ten walks of 20 steps or more
    # Depth-first walks (or walks cut at N) would keep steps 0-1 of ten walks; a sample of the walks spreads out.
    assert step[chosen].max() > 20 and step[chosen].mean() > 8


@pytest.mark.parametrize("goals", ["directions", "positions"])
def test_mbes_leaves_random_policy_transitions_of_mixed_data_behind(goals):
    env = PointMass(goals=goals)
    data = env.dataset(0, 2000, "mixed", seed=0, random_share=0.5)
    policy = env.expert_action(data["obs"], 0).astype(np.float32)
    chosen = MBES().select(data["obs"], data["action"], data["next_obs"], data["done"], policy,
                           PointMassModel(env), size=300, rng=np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 300
    # Half the data are random-policy transitions; the walks along the expert's trajectories rarely meet them
    # (half the walks start on a random episode's first transition, which is kept: ~0.05 of the buffer).
    assert data["random_policy"].mean() == 0.5
    assert data["random_policy"][chosen].mean() < 0.2


def test_mbes_buffer_holds_exactly_buffer_size_real_transitions(datasets):
    data = datasets["goal0"]
    learner = tiny_oer(selection="mbes", buffer_size=25, dual_bc=False)  # (DBC copies the clone into the actor)
    learner.train_task("goal0", data)
    kept = learner.buffer("goal0")
    assert len(kept["reward"]) == 25
    rows = np.concatenate([data["obs"], data["action"], data["next_obs"], data["reward"][:, None]], axis=1)
    kept_rows = np.concatenate([kept["obs"], kept["action"], kept["next_obs"], kept["reward"][:, None]], axis=1)
    index = [int(np.flatnonzero((rows == r).all(1))[0]) for r in kept_rows]  # IndexError if not a real row
    assert len(set(index)) == 25
    # The cloning target is the finished policy's action in the kept state.
    np.testing.assert_allclose(kept["target"], learner.agent.act(kept["obs"], 0), atol=1e-6)
    # A task smaller than the buffer is kept whole.
    small = tiny_oer(selection="mbes", buffer_size=500)
    small.train_task("goal0", data)
    assert len(small.buffer("goal0")["reward"]) == len(data["reward"])


# --------------------------------------------------------------------------- point mass


def test_point_mass_position_goals_need_state_dependent_actions():
    env = PointMass(goals="positions")
    goal = env.goal_radius * env.goal(1)
    at_start, at_goal = np.zeros((1, 4)), np.array([[*goal, 0.0, 0.0]])
    assert np.allclose(env.expert_action(at_goal, 1), 0.0)  # hold at the goal ...
    push = env.expert_action(at_start, 1)[0]
    assert push @ env.goal(1) > 0.9  # ... and head for it from the start
    returns = {q: env.dataset(1, 1000, q, seed=0)["reward"].sum() / 20 for q in ("medium", "random")}
    expert = env.evaluate(lambda o: env.expert_action(o, 1), 1, n_episodes=20, seed=0)
    assert expert > returns["medium"] > returns["random"]
    with pytest.raises(ValueError, match="goals"):
        PointMass(goals="rings")


def test_point_mass_goal_angles_place_each_task_goal():
    env = PointMass(n_tasks=3, goals="positions", goal_angles=(0.0, 180.0, 90.0))
    assert np.allclose([env.goal(k) for k in range(3)], [[1, 0], [-1, 0], [0, 1]], atol=1e-12)
    at_origin = np.zeros((1, 4))
    assert env.expert_action(at_origin, 0)[0] @ env.expert_action(at_origin, 1)[0] < 0  # opposite pushes
    with pytest.raises(ValueError, match="one angle per task"):
        PointMass(n_tasks=3, goal_angles=(0.0, 90.0))


def test_point_mass_mixed_data_hold_the_requested_share_of_random_episodes():
    env = PointMass()
    data = env.dataset(0, 2000, "mixed", seed=3, random_share=0.3)  # 40 episodes, 12 of them random
    flags = data["random_policy"].reshape(40, 50)
    assert np.all(flags == flags[:, :1]) and flags[:, 0].sum() == 12
    # Random episodes have uniform actions, medium ones aim near the goal direction (+x).
    assert abs(data["action"][data["random_policy"], 0].mean()) < 0.05
    assert data["action"][~data["random_policy"], 0].mean() > 0.3
    assert not env.dataset(0, 100, "medium", seed=0)["random_policy"].any()
    assert env.dataset(0, 100, "random", seed=0)["random_policy"].all()
    with pytest.raises(ValueError, match="random_share"):
        env.dataset(0, 100, "mixed", random_share=1.5)


# --------------------------------------------------------------------------- continual behaviour


def test_dual_bc_keeps_old_task_actions_when_a_new_task_is_learned():
    env = PointMass()
    data = {f"goal{k}": env.dataset(k, 1000, "medium", seed=k) for k in (0, 2)}
    probe = data["goal0"]["obs"][::5]
    drift = {}
    for name, params in {"dbc": {"selection": "random", "dual_bc": True},
                         "fine-tune": {"selection": "none", "dual_bc": False}}.items():
        learner = OER(4, 2, buffer_size=200, steps_per_task=250, hidden=32, batch_size=64, lr=1e-3, seed=0,
                      conditioning="input", **params)
        learner.train_task("goal0", data["goal0"])
        before = learner.act(probe, "goal0")
        learner.train_task("goal2", data["goal2"])
        drift[name] = float(np.abs(learner.act(probe, "goal0") - before).mean())
    assert drift["dbc"] < 0.05
    assert drift["dbc"] < 0.3 * drift["fine-tune"]


def test_dual_bc_copies_the_clone_into_the_actor_after_each_task(datasets):
    learner = tiny_oer(selection="random", dual_bc=True)
    learner.train_task("goal0", datasets["goal0"])
    for name, value in learner.clone_policy.state_dict().items():
        assert torch.equal(learner.agent.actor.state_dict()[name], value), name
    # The buffer's cloning targets are the TD3+BC actor's actions before the copy, so they differ from the clone's.
    kept = learner.buffer("goal0")
    assert not np.allclose(kept["target"], learner.act(kept["obs"], "goal0"))


def test_replay_draws_one_batch_per_old_task(datasets, monkeypatch):
    learner = tiny_oer(selection="random", dual_bc=False, buffer_size=10, batch_size=8)
    env = PointMass()
    seen = []
    original = TD3BC.update

    def spy(agent, batch, replay=None, replay_weight=1.0):
        seen.append(None if replay is None else replay.task.tolist())
        return original(agent, batch, replay, replay_weight)

    monkeypatch.setattr(TD3BC, "update", spy)
    for k in (0, 1, 2):
        learner.train_task(f"goal{k}", env.dataset(k, 100, "medium", seed=k))
    steps = learner.steps_per_task
    assert seen[:steps] == [None] * steps
    assert all(tasks == [0] * 8 for tasks in seen[steps : 2 * steps])
    assert all(tasks == [0] * 8 + [1] * 8 for tasks in seen[2 * steps :])  # 8 rows of each old task


def test_integer_task_ids_are_accepted_as_their_decimal_string(datasets):
    learner = tiny_oer(selection="random")
    events = list(transition_events({"7": datasets["goal0"]}))
    for event in events:
        learner.learn_one({**event, "task": 7})
    assert learner.finished_tasks == ["7"]
    assert learner.predict_one({"task": 7, "obs": [0.0] * 4}) == learner.predict_one({"task": "7", "obs": [0.0] * 4})


def test_a_task_end_trains_on_the_configured_threads_and_restores_them(datasets):
    learner = tiny_oer(threads=1)
    during = []
    learner.on_progress = lambda event: during.append(torch.get_num_threads())
    torch.set_num_threads(2)
    try:
        learner.train_task("goal0", datasets["goal0"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert set(during[:-1]) == {1} and during[-1] == 2  # every stage but "done" (reported after the restore)
    with pytest.raises(ValueError, match="threads"):
        OER(4, 2, threads=0)


def test_td3bc_states_are_normalised_per_task():
    """Shifting and scaling the states changes nothing the agent does: it sees them standardised."""
    rng = np.random.default_rng(0)
    data = one_step_task(500, rng)
    moved = {**data, "obs": data["obs"] * 50 + 100, "next_obs": data["next_obs"] * 50 + 100}
    actions = []
    for d in (data, moved):
        agent = TD3BC(2, 1, n_tasks=2, config=TD3BCConfig(hidden=16, batch_size=32), seed=0)
        agent.set_normalisation(1, d["obs"])
        agent.fit(Transitions.from_arrays(d, task=1), steps=20, rng=np.random.default_rng(1))
        actions.append(agent.act(d["obs"][:50], 1))
        np.testing.assert_allclose(agent.obs_mean[1].numpy(), d["obs"].mean(0), rtol=1e-5)
        np.testing.assert_allclose(agent.obs_std[1].numpy(), d["obs"].std(0) + 1e-3, rtol=1e-5)
        assert torch.equal(agent.obs_mean[0], torch.zeros(2))  # other tasks keep their own statistics
    np.testing.assert_allclose(actions[0], actions[1], atol=2e-3)
    raw = TD3BC(2, 1, config=TD3BCConfig(hidden=16, batch_size=32, normalize_states=False), seed=0)
    raw.set_normalisation(0, moved["obs"])
    assert torch.equal(raw.obs_std[0], torch.ones(2))


def test_task_change_finishes_the_open_task(datasets):
    learner = tiny_oer(selection="random")
    for event in transition_events(datasets):
        if event.get("type") != "task_end":
            learner.learn_one(event)
    assert learner.finished_tasks == ["goal0"]
    assert learner.current_task == "goal2"
    summary = learner.end_task()
    assert summary["task"] == "goal2" and summary["transitions"] == 120 and summary["buffer"] == 30
    assert learner.finished_tasks == ["goal0", "goal2"] and learner.current_task is None


def test_stream_and_batch_paths_give_the_same_learner(datasets):
    streamed, batched = tiny_oer(), tiny_oer()
    for event in transition_events(datasets):
        streamed.learn_one(event)
    for task, data in datasets.items():
        batched.train_task(task, data)
    assert state_hash(streamed.state_dict()) == state_hash(batched.state_dict())


@pytest.mark.parametrize(
    "params",
    [
        {"selection": "mbes", "dual_bc": True},
        {"selection": "random", "dual_bc": False},
        {"selection": "none", "conditioning": "input"},
    ],
)
def test_restore_and_continue_equals_uninterrupted(datasets, params):
    events = list(transition_events(datasets))
    uninterrupted = tiny_oer(**params)
    for event in events:
        uninterrupted.learn_one(event)
    # Cut once right after the first task and once in the middle of the second one.
    for cut in (121, 121 + 57):
        first = tiny_oer(**params)
        for event in events[:cut]:
            first.learn_one(event)
        state = check_state(first.state_dict())
        restored = first.clone()  # river's clone: a fresh learner with the same parameters
        assert restored.finished_tasks == [] and restored._get_params() == first._get_params()
        restored.load_state_dict(state)
        assert state_hash(restored.state_dict()) == state_hash(state)
        if first.finished_tasks:
            query = {"task": "goal0", "obs": [0.1, -0.2, 0.3, 0.0]}
            assert restored.predict_one(query) == first.predict_one(query)
        for event in events[cut:]:
            restored.learn_one(event)
        assert state_hash(restored.state_dict()) == state_hash(uninterrupted.state_dict())


def test_state_dict_is_flat_bounded_and_storable(datasets):
    learner = tiny_oer(buffer_size=20)
    for task, data in datasets.items():
        learner.train_task(task, data)
    state = check_state(learner.state_dict())
    assert all(isinstance(v, np.ndarray | int | float | str | bool) for v in state.values())
    kept = [k for k in state if k.startswith("buffer/") and k.endswith("/obs")]
    assert sorted(kept) == ["buffer/0/obs", "buffer/1/obs"]
    assert all(state[k].shape == (20, 4) for k in kept)
    assert len(state["data/reward"]) == 0  # nothing of a finished task is held beyond its buffer


# --------------------------------------------------------------------------- bounds and bad input


def test_task_buffer_overflow_policies():
    ring = TaskBuffer(1, 1, capacity=3, overflow="drop_oldest")
    for t in range(5):
        ring.append([t], [0], t, [t + 1], False)
    assert ring.arrays()["obs"][:, 0].tolist() == [2, 3, 4] and ring.dropped == 2
    restored = TaskBuffer(1, 1, capacity=3)
    restored.load_state_dict(ring.state_dict())
    ring.append([5], [0], 5, [6], False)
    restored.append([5], [0], 5, [6], False)
    assert state_hash(ring.state_dict()) == state_hash(restored.state_dict())

    strict = TaskBuffer(1, 1, capacity=2, overflow="reject")
    strict.extend({"obs": [[0], [1]], "action": [[0], [0]], "reward": [0, 1], "next_obs": [[1], [2]], "done": [0, 0]})
    with pytest.raises(ValueError, match="task_capacity"):
        strict.append([2], [0], 2, [3], False)
    assert len(strict) == 2


def test_learner_keeps_only_task_capacity_transitions(datasets):
    learner = tiny_oer(task_capacity=50)
    for event in transition_events({"goal0": datasets["goal0"]}):
        learner.learn_one(event)
    summary = learner.summary("goal0")
    assert summary["transitions"] == 50 and summary["dropped"] == 70

    strict = tiny_oer(task_capacity=50, overflow="reject")
    events = [e for e in transition_events({"goal0": datasets["goal0"]}) if "obs" in e]
    for event in events[:50]:
        strict.learn_one(event)
    before = state_hash(strict.state_dict())
    with pytest.raises(ValueError, match="task_capacity"):
        strict.learn_one(events[50])
    assert state_hash(strict.state_dict()) == before


def test_bad_input_raises_and_changes_nothing(datasets):
    learner = tiny_oer(max_tasks=1)
    good = next(transition_events(datasets))
    learner.learn_one(good)
    before = state_hash(learner.state_dict())
    bad = [
        ({**good, "obs": [0.0, 1.0]}, ValueError, "obs"),
        ({**good, "action": [0.0, float("nan")]}, ValueError, "action is not finite"),
        ({**good, "reward": float("inf")}, ValueError, "reward"),
        ({**good, "done": "yes"}, TypeError, "done"),
        ({**good, "task": True}, TypeError, "task"),
        ({**good, "task": 3.5}, TypeError, "task"),
        ({k: v for k, v in good.items() if k != "next_obs"}, ValueError, "next_obs"),
        ({**good, "task": "another"}, ValueError, "max_tasks"),
        ({"type": "task_end", "task": "another"}, ValueError, "open task"),
        ({"type": "reset"}, ValueError, "type"),
    ]
    for event, error, match in bad:
        with pytest.raises(error, match=match):
            learner.learn_one(event)
    assert state_hash(learner.state_dict()) == before
    with pytest.raises(ValueError, match="unknown task"):
        learner.act([0.0] * 4, "goal7")
    with pytest.raises(ValueError, match="4 values"):
        learner.act([0.0] * 3, "goal0")
    with pytest.raises(ValueError, match="selection"):
        OER(4, 2, selection="best")
    with pytest.raises(ValueError, match="compare_dims"):
        OER(4, 2, compare_dims=[4])

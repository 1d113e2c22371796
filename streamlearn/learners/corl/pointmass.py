"""A 2-D point mass with goal directions or goal positions: the built-in continual offline RL benchmark.

State ``(x, y, vx, vy)``, action ``(ax, ay)`` in ``[-1, 1]²``. One step::

    v' = inertia · v + (1 − inertia) · a
    p' = p + dt · v'

Task ``k`` of ``n_tasks`` has the angle ``θ = 2πk / n_tasks`` (or ``goal_angles[k]``
degrees) and the unit vector ``g = (cos θ, sin θ)``. Two task families (``goals``):

- ``"directions"`` (the default): move fast along ``g`` while staying on the line
  through the origin, cheaply:
  ``r = v'·g − control_cost · ‖a‖² − lateral_cost · |p'·g⊥|``. A good policy pushes
  along ``g`` almost everywhere, so its action barely depends on the state;
- ``"positions"``: reach the goal point ``goal_radius · g`` and stay there:
  ``r = −‖p' − goal_radius · g‖ − control_cost · ‖a‖²``. A good policy accelerates
  towards the goal, brakes and holds, so its action depends on where it is.

Episodes start at ``p ~ N(0, start_noise²)``, ``v = 0`` and are truncated after
``horizon`` steps (``done`` stays False). The goal is not part of the observation,
so a policy must know the task (a head per task, or a task id).

Offline datasets come from behaviour policies (``quality``):

- ``"expert"``: a PD controller (along ``g`` correcting the lateral offset, or to the goal point);
- ``"medium"``: a noisy scripted controller that, for a whole episode, aims at ``g``
  (directions: a push of magnitude 0.6; positions: the expert's law scaled by 0.6
  towards the goal point) turned by an angle drawn from U(−60°, 60°), with
  N(0, 0.3²) action noise — mediocre returns and trajectories that fan out around
  the goal;
- ``"random"``: uniform actions;
- ``"mixed"``: whole episodes of both, a share ``random_share`` of them random (at
  random positions in the log) and the rest medium, like D4RL's medium-replay data;
- ``"explore"``: wide random exploration plus a little noisy expert data. A share
  ``random_share`` of the episodes start anywhere in the square
  ``[−explore_radius, explore_radius]²`` with a random velocity and take uniform
  actions; the others start like evaluation episodes and follow the expert with
  N(0, 0.3²) action noise. The random episodes cover the state space (the critic
  learns everywhere) but hardly ever lie on the expert's path, so a buffer drawn
  uniformly from such data holds few states a good policy visits.

Every dataset also holds ``random_policy``: whether a transition comes from a
random-policy episode (learners ignore it; the benchmark reports what buffers keep).

Example
-------
>>> from streamlearn.learners.corl.pointmass import PointMass
>>> env = PointMass()
>>> data = env.dataset(task=0, n_transitions=120, quality="medium", seed=0)
>>> data["obs"].shape, data["action"].shape
((120, 4), (120, 2))
>>> expert = env.evaluate(lambda obs: env.expert_action(obs, 0), task=0, n_episodes=5, seed=1)
>>> bool(expert > env.evaluate(lambda obs: 0 * obs[:, :2], task=0, n_episodes=5, seed=1))
True
>>> mixed = PointMass(goals="positions").dataset(0, 1000, "mixed", seed=0, random_share=0.5)
>>> float(mixed["random_policy"].mean())
0.5
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np

__all__ = ["GOALS", "QUALITIES", "PointMass", "transition_events"]

QUALITIES = ("expert", "medium", "random", "mixed", "explore")
GOALS = ("directions", "positions")


@dataclasses.dataclass(frozen=True)
class PointMass:
    n_tasks: int = 5
    horizon: int = 50  # steps per episode
    dt: float = 0.1  # position update per unit velocity
    inertia: float = 0.8  # share of the velocity kept each step
    control_cost: float = 0.5
    lateral_cost: float = 0.5  # directions only
    start_noise: float = 0.1  # std of the start position
    goals: str = "directions"  # task family: "directions" or "positions"
    goal_radius: float = 2.0  # positions only: distance of the goal points from the origin
    explore_radius: float = 3.0  # "explore" data: random episodes start in [-r, r]^2
    goal_angles: tuple[float, ...] | None = None  # degrees, one per task; default 360·k / n_tasks

    obs_dim = 4
    act_dim = 2

    def __post_init__(self) -> None:
        if self.goals not in GOALS:
            raise ValueError(f"goals must be one of {GOALS}, got {self.goals!r}")
        if self.goal_angles is not None and len(self.goal_angles) != self.n_tasks:
            raise ValueError(f"goal_angles needs one angle per task ({self.n_tasks}), got {len(self.goal_angles)}")

    def goal(self, task: int) -> np.ndarray:
        """The task's unit direction ``g`` (its goal point is ``goal_radius · g``)."""
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task must be in [0, {self.n_tasks}), got {task}")
        angle = self._angle(task)
        return np.array([math.cos(angle), math.sin(angle)])

    def _angle(self, task: int) -> float:
        if self.goal_angles is None:
            return 2 * math.pi * task / self.n_tasks
        return math.radians(self.goal_angles[task])

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        obs = np.zeros((n, 4))
        obs[:, :2] = rng.normal(0.0, self.start_noise, size=(n, 2))
        return obs

    def step(self, obs: np.ndarray, action: np.ndarray, task: int) -> tuple[np.ndarray, np.ndarray]:
        """Next observations and rewards for a batch of states and actions."""
        goal = self.goal(task)
        action = np.clip(action, -1.0, 1.0)
        velocity = self.inertia * obs[:, 2:] + (1 - self.inertia) * action
        position = obs[:, :2] + self.dt * velocity
        control = self.control_cost * (action**2).sum(1)
        if self.goals == "positions":
            reward = -np.linalg.norm(position - self.goal_radius * goal, axis=1) - control
        else:
            normal = np.array([-goal[1], goal[0]])
            reward = velocity @ goal - control - self.lateral_cost * np.abs(position @ normal)
        return np.concatenate([position, velocity], axis=1), reward

    def expert_action(self, obs: np.ndarray, task: int) -> np.ndarray:
        goal = self.goal(task)
        if self.goals == "positions":
            return self._reach(obs, self.goal_radius * goal[None, :])
        normal = np.array([-goal[1], goal[0]])
        lateral = obs[:, :2] @ normal
        lateral_speed = obs[:, 2:] @ normal
        push = goal[None, :] - (2.0 * lateral + 2.0 * lateral_speed)[:, None] * normal[None, :]
        return np.clip(push, -1.0, 1.0)

    @staticmethod
    def _reach(obs: np.ndarray, target: np.ndarray) -> np.ndarray:
        """PD control towards ``target`` points (one row per observation, or one for all)."""
        return np.clip(3.0 * (target - obs[:, :2]) - 1.0 * obs[:, 2:], -1.0, 1.0)

    def evaluate(
        self, policy: Callable[[np.ndarray], np.ndarray], task: int, n_episodes: int = 10, seed: int = 0
    ) -> float:
        """Mean undiscounted return of ``policy`` (batch of observations → batch of actions)."""
        return float(self.rollout(policy, task, n_episodes, seed)[0].mean())

    def rollout(
        self, policy: Callable[[np.ndarray], np.ndarray], task: int, n_episodes: int = 10, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Returns of ``n_episodes`` episodes and every state visited, shape (n_episodes · horizon, 4)."""
        obs = self.reset(n_episodes, np.random.default_rng(seed))
        total, visited = np.zeros(n_episodes), []
        for _ in range(self.horizon):
            visited.append(obs)
            action = np.asarray(policy(obs.astype(np.float32)), dtype=np.float64).reshape(n_episodes, 2)
            obs, reward = self.step(obs, action, task)
            total += reward
        return total, np.concatenate(visited)

    def dataset(
        self, task: int, n_transitions: int, quality: str = "medium", seed: int = 0, random_share: float = 0.5
    ) -> dict[str, np.ndarray]:
        """``n_transitions`` logged transitions of a behaviour policy, episode after episode.

        ``random_share`` is the share of random-policy episodes of a ``"mixed"`` or ``"explore"`` dataset.
        """
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
        if not 0.0 <= random_share <= 1.0:
            raise ValueError(f"random_share must be in [0, 1], got {random_share}")
        rng = np.random.default_rng(seed)
        n_episodes = max(1, math.ceil(n_transitions / self.horizon))
        goal_angle = self._angle(task)
        aim = goal_angle + rng.uniform(-math.pi / 3, math.pi / 3, size=n_episodes)
        aim_unit = np.stack([np.cos(aim), np.sin(aim)], axis=1)
        obs = self.reset(n_episodes, rng)
        if quality == "mixed":
            random_policy = np.zeros(n_episodes, dtype=bool)
            random_policy[rng.permutation(n_episodes)[: round(random_share * n_episodes)]] = True
        elif quality == "explore":
            random_policy = np.zeros(n_episodes, dtype=bool)
            random_policy[rng.permutation(n_episodes)[: round(random_share * n_episodes)]] = True
            wide = np.concatenate(
                [rng.uniform(-self.explore_radius, self.explore_radius, size=(n_episodes, 2)),
                 rng.uniform(-1.0, 1.0, size=(n_episodes, 2))],
                axis=1,
            )
            obs = np.where(random_policy[:, None], wide, obs)
        else:
            random_policy = np.full(n_episodes, quality == "random")
        steps = []
        for _ in range(self.horizon):
            if quality == "expert":
                action = self.expert_action(obs, task)
            elif quality == "explore":
                noisy = self.expert_action(obs, task) + rng.normal(0.0, 0.3, size=(n_episodes, 2))
                uniform = rng.uniform(-1.0, 1.0, size=(n_episodes, 2))
                action = np.clip(np.where(random_policy[:, None], uniform, noisy), -1.0, 1.0)
            elif quality == "random":
                action = rng.uniform(-1.0, 1.0, size=(n_episodes, 2))
            else:  # medium, or mixed: medium with some episodes replaced by random ones
                if self.goals == "positions":
                    scripted = 0.6 * self._reach(obs, self.goal_radius * aim_unit)
                else:
                    scripted = 0.6 * aim_unit
                action = np.clip(scripted + rng.normal(0.0, 0.3, size=(n_episodes, 2)), -1.0, 1.0)
                if quality == "mixed":
                    uniform = rng.uniform(-1.0, 1.0, size=(n_episodes, 2))
                    action = np.where(random_policy[:, None], uniform, action)
            next_obs, reward = self.step(obs, action, task)
            steps.append((obs, action, reward, next_obs))
            obs = next_obs

        def episode_major(i: int) -> np.ndarray:
            column = np.stack([s[i] for s in steps], axis=1)  # (episodes, horizon, ...)
            return column.reshape(n_episodes * self.horizon, *column.shape[2:])[:n_transitions].astype(np.float32)

        n = min(n_transitions, n_episodes * self.horizon)
        return {
            "obs": episode_major(0),
            "action": episode_major(1),
            "reward": episode_major(2),
            "next_obs": episode_major(3),
            "done": np.zeros(n, dtype=bool),
            "random_policy": np.repeat(random_policy, self.horizon)[:n],
        }


def transition_events(datasets: Mapping[str, Mapping[str, np.ndarray]]) -> Iterator[dict]:
    """The stream form of task datasets: every transition as an event, a ``task_end`` after each task."""
    for task, data in datasets.items():
        for i in range(len(data["reward"])):
            yield {
                "task": task,
                "obs": [float(v) for v in data["obs"][i]],
                "action": [float(v) for v in data["action"][i]],
                "reward": float(data["reward"][i]),
                "next_obs": [float(v) for v in data["next_obs"][i]],
                "done": bool(data["done"][i]),
            }
        yield {"type": "task_end", "task": task}

"""TD3+BC: offline actor-critic with a behaviour-cloning term, for several tasks at once.

The critic learns with TD3's clipped double-Q target (target policy noise, twin
critics, delayed actor updates, Polyak-averaged targets). The actor maximises Q
but stays near the data:

    actor loss = −(α / mean|Q(s, π(s))|) · mean Q(s, π(s)) + mean (π(s) − a)²

Dividing by mean|Q| makes α (2.5) independent of the reward scale. As in the
reference TD3+BC, states are normalised with the mean and standard deviation
(+ 10⁻³) of the training data's observations; here each task has its own
statistics (:meth:`TD3BC.set_normalisation`), fixed when the task is learned, so
what an old task's policy sees does not change when later tasks arrive. Here the
policy serves several tasks — one head per task on a shared trunk, or a one-hot
task id appended to the observation (``conditioning``) — and the critic sees
the task as a one-hot input, so a batch may mix tasks (the multi-task
baseline). An optional *replay* batch ``(obs, task, target)`` adds ``replay_weight · mean (π(s) − target)²``
to the actor loss: plain experience replay through the single actor.

Parameters
----------
obs_dim, act_dim
    Sizes of observations and actions.
n_tasks
    Number of tasks (policy heads, or the size of the one-hot task id).
config
    A :class:`TD3BCConfig` (defaults: the paper's hyper-parameters, 2×256 MLPs).
seed
    Seeds the torch generator used for initialisation and target-policy noise.

Example
-------
>>> import numpy as np, torch
>>> from streamlearn.learners.corl import TD3BC, TD3BCConfig, Transitions
>>> rng = np.random.default_rng(0)
>>> obs = rng.normal(size=(64, 3)).astype(np.float32)
>>> action = np.tanh(obs[:, :1])
>>> data = Transitions.from_arrays({"obs": obs, "action": action, "reward": -np.abs(action[:, 0]),
...                                 "next_obs": obs, "done": np.zeros(64, bool)}, task=0)
>>> agent = TD3BC(3, 1, config=TD3BCConfig(hidden=16, batch_size=32), seed=0)
>>> losses = agent.fit(data, steps=4, rng=rng)
>>> agent.act(obs[:2], task=0).shape
(2, 1)

References
----------
Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning",
NeurIPS 2021 (arXiv 2106.06860). The single-file layout follows the readable
TD3+BC of tinkoff-ai/CORL (code written independently).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from streamlearn.learners.base import (
    State,
    load_torch_generator_state,
    load_torch_module_state,
    load_torch_optimizer_state,
    subset,
    torch_generator_state,
    torch_module_state,
    torch_optimizer_state,
)
from streamlearn.learners.corl.nets import TaskActor, TwinCritic, adam

__all__ = ["TD3BC", "TD3BCConfig", "Transitions"]


@dataclasses.dataclass
class TD3BCConfig:
    hidden: int = 256  # width of every hidden layer (actor and critics)
    n_layers: int = 2  # hidden layers
    lr: float = 3e-4  # Adam learning rate of actor and critic
    batch_size: int = 256  # transitions per gradient step (used by fit and by OER)
    alpha: float = 2.5  # weight of the Q term relative to behaviour cloning
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak factor of the target networks
    policy_noise: float = 0.2  # std of the target-policy smoothing noise (× max_action)
    noise_clip: float = 0.5  # the noise is clipped to ± this (× max_action)
    policy_freq: int = 2  # one actor step every this many critic steps
    max_action: float = 1.0  # actions lie in [-max_action, max_action]
    conditioning: str = "heads"  # how the actor knows the task: "heads" (one per task) or "input" (one-hot)
    normalize_states: bool = True  # standardise states with each task's data statistics (reference TD3+BC)

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "batch_size", "policy_freq"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "max_action"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("alpha", "policy_noise", "noise_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not 0 <= self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ValueError(f"need 0 <= gamma <= 1 and 0 < tau <= 1, got gamma={self.gamma}, tau={self.tau}")


@dataclasses.dataclass
class Transitions:
    """Transitions as tensors: float32 arrays, ``done`` as 0/1 floats, ``task`` as task indices.

    ``target`` (optional) holds the action a finished task's policy took in ``obs``:
    the cloning target of a replay buffer.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor
    task: torch.Tensor
    target: torch.Tensor | None = None

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray], task: int | np.ndarray) -> Transitions:
        def f32(key: str) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(data[key], dtype=np.float32))

        n = len(data["obs"])
        tasks = np.broadcast_to(np.asarray(task, dtype=np.int64), (n,))
        return cls(
            obs=f32("obs"),
            action=f32("action"),
            reward=f32("reward").reshape(n),
            next_obs=f32("next_obs"),
            done=f32("done").reshape(n),
            task=torch.from_numpy(np.array(tasks)),
            target=f32("target") if "target" in data else None,
        )

    def __len__(self) -> int:
        return self.obs.shape[0]

    def rows(self, index: torch.Tensor) -> Transitions:
        return Transitions(
            **{f.name: None if (t := getattr(self, f.name)) is None else t[index] for f in dataclasses.fields(self)}
        )

    def sample(self, rng: np.random.Generator, size: int) -> Transitions:
        """``size`` rows drawn uniformly with replacement."""
        return self.rows(torch.from_numpy(rng.integers(0, len(self), size=size)))

    @staticmethod
    def concat(parts: list[Transitions]) -> Transitions:
        columns = {}
        for f in dataclasses.fields(Transitions):
            values = [getattr(p, f.name) for p in parts]
            columns[f.name] = None if any(v is None for v in values) else torch.cat(values)
        return Transitions(**columns)


class TD3BC:
    """TD3+BC with a task-conditioned actor and critic (see the module docstring)."""

    def __init__(self, obs_dim: int, act_dim: int, n_tasks: int = 1, config: TD3BCConfig | None = None, seed: int = 0):
        self.obs_dim, self.act_dim, self.n_tasks = int(obs_dim), int(act_dim), int(n_tasks)
        if min(self.obs_dim, self.act_dim, self.n_tasks) < 1:
            raise ValueError(f"obs_dim, act_dim and n_tasks must be at least 1, got {obs_dim}, {act_dim}, {n_tasks}")
        self.config = config or TD3BCConfig()
        self.generator = torch.Generator().manual_seed(int(seed))
        c = self.config
        self.actor = TaskActor(
            obs_dim, act_dim, n_tasks, c.hidden, c.n_layers, c.max_action, self.generator, c.conditioning
        )
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.actor_optimizer = adam(self.actor, c.lr)
        self.reset_critic()
        #: Critic steps taken so far (the actor steps every ``policy_freq``-th).
        self.n_updates = 0
        #: Per-task state statistics (identity until :meth:`set_normalisation` is called for a task).
        self.obs_mean = torch.zeros(self.n_tasks, self.obs_dim)
        self.obs_std = torch.ones(self.n_tasks, self.obs_dim)

    def set_normalisation(self, task: int, obs: np.ndarray) -> None:
        """Fix task ``task``'s state statistics from its data (a no-op without ``normalize_states``)."""
        if not self.config.normalize_states or len(obs) == 0:
            return
        obs = np.asarray(obs, dtype=np.float64)
        self.obs_mean[task] = torch.from_numpy(obs.mean(0)).float()
        self.obs_std[task] = torch.from_numpy(obs.std(0) + 1e-3).float()  # the reference's epsilon

    def normalise(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """States as the networks see them: standardised with each row's task statistics."""
        return (obs - self.obs_mean[task]) / self.obs_std[task]

    def normalised(self, batch: Transitions) -> Transitions:
        """``batch`` with ``obs`` and ``next_obs`` normalised (the networks' view of it)."""
        return dataclasses.replace(
            batch, obs=self.normalise(batch.obs, batch.task), next_obs=self.normalise(batch.next_obs, batch.task)
        )

    def reset_critic(self) -> None:
        """A freshly initialised critic, its target and optimiser (done at the start of every task)."""
        c = self.config
        self.critic = TwinCritic(self.obs_dim, self.act_dim, self.n_tasks, c.hidden, c.n_layers, self.generator)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = adam(self.critic, c.lr)

    def sync_actor_target(self) -> None:
        self.actor_target.load_state_dict(self.actor.state_dict())

    def update(
        self, batch: Transitions, replay: Transitions | None = None, replay_weight: float = 1.0
    ) -> dict[str, float]:
        """One critic step, and every ``policy_freq``-th call one actor step; returns the losses.

        ``batch`` and ``replay`` hold raw states (normalised here).
        """
        c = self.config
        batch = self.normalised(batch)
        with torch.no_grad():
            noise = torch.randn(batch.action.shape, generator=self.generator) * c.policy_noise
            noise = noise.clamp(-c.noise_clip, c.noise_clip) * c.max_action
            next_action = (self.actor_target(batch.next_obs, batch.task) + noise).clamp(-c.max_action, c.max_action)
            target_q1, target_q2 = self.critic_target(batch.next_obs, next_action, batch.task)
            target_q = batch.reward + c.gamma * (1.0 - batch.done) * torch.minimum(target_q1, target_q2)
        q1, q2 = self.critic(batch.obs, batch.action, batch.task)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.n_updates += 1
        losses = {"critic_loss": critic_loss.item()}
        if self.n_updates % c.policy_freq:
            return losses

        pi = self.actor(batch.obs, batch.task)
        q = self.critic(batch.obs, pi, batch.task)[0]
        lmbda = c.alpha / q.abs().mean().detach().clamp_min(1e-6)
        actor_loss = -lmbda * q.mean() + F.mse_loss(pi, batch.action)
        if replay is not None:
            replay_obs = self.normalise(replay.obs, replay.task)
            actor_loss = actor_loss + replay_weight * F.mse_loss(self.actor(replay_obs, replay.task), replay.target)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        with torch.no_grad():
            for net, target in ((self.critic, self.critic_target), (self.actor, self.actor_target)):
                for p, tp in zip(net.parameters(), target.parameters(), strict=True):
                    tp.lerp_(p, c.tau)
        losses["actor_loss"] = actor_loss.item()
        return losses

    def fit(self, data: Transitions, steps: int, rng: np.random.Generator) -> dict[str, float]:
        """``steps`` updates on batches drawn uniformly from ``data``; the last losses."""
        losses: dict[str, float] = {}
        for _ in range(int(steps)):
            losses.update(self.update(data.sample(rng, self.config.batch_size)))
        return losses

    def act(self, obs: Any, task: int | np.ndarray) -> np.ndarray:
        """Actions for a batch of observations (rows) with the given task head(s)."""
        obs = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim))
        heads = torch.as_tensor(np.broadcast_to(np.asarray(task, dtype=np.int64), (obs.shape[0],)).copy())
        with torch.no_grad():
            return self.actor(self.normalise(obs, heads), heads).numpy()

    # ----------------------------------------------------------------------- state

    def _parts(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }

    def state_dict(self) -> State:
        state: State = {
            "n_updates": self.n_updates,
            "generator": torch_generator_state(self.generator),
            "obs_mean": self.obs_mean.numpy().copy(),
            "obs_std": self.obs_std.numpy().copy(),
        }
        for name, module in self._parts().items():
            state.update({f"{name}/{k}": v for k, v in torch_module_state(module).items()})
        for name, opt in (("actor_optimizer", self.actor_optimizer), ("critic_optimizer", self.critic_optimizer)):
            state.update({f"{name}/{k}": v for k, v in torch_optimizer_state(opt).items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, module in self._parts().items():
            load_torch_module_state(module, subset(state, f"{name}/"))
        # Fresh optimisers so no step count or moment of the old ones survives a partial load.
        self.actor_optimizer = adam(self.actor, self.config.lr)
        self.critic_optimizer = adam(self.critic, self.config.lr)
        load_torch_optimizer_state(self.actor_optimizer, subset(state, "actor_optimizer/"))
        load_torch_optimizer_state(self.critic_optimizer, subset(state, "critic_optimizer/"))
        self.n_updates = int(state["n_updates"])
        for name in ("obs_mean", "obs_std"):
            value = np.asarray(state[name], dtype=np.float32)
            if value.shape != (self.n_tasks, self.obs_dim):
                raise ValueError(f"{name} must have shape {(self.n_tasks, self.obs_dim)}, got {value.shape}")
            setattr(self, name, torch.from_numpy(value.copy()))
        load_torch_generator_state(self.generator, state["generator"])

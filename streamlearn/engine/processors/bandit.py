"""Decisions and rewards for recovering-reward bandits (:mod:`streamlearn.learners.bandits`).

Two kinds of events, in stream order:

- ``{"type": "decide", "t": int}`` asks for the arms of period t; the processor
  answers with an output ``{"type": "decision", "t": t, "arms": [...]}``. Periods
  must increase (gaps are fine).
- ``{"type": "reward", "t": int, "arm": int, "reward": float}`` reports the reward
  of an arm chosen in period t; the learner files it under the arm's idle time
  at t. Rewards may come late and in any order, but each only once.

Offline evaluation in a simulated environment
---------------------------------------------
Logged rewards cannot evaluate a bandit: they exist only for the arms the logging
policy chose, and a recovering arm's reward depends on when *this* policy last
pulled it, so even the replay method for logged uniformly random choices (Li et
al., WSDM 2011: keep the events where the logged arm is the policy's) would score
rewards at idle times the policy never produced. A stream may instead start with

- ``{"type": "environment", "r": [[r_i(1), ..., r_i(D)] per arm], "noise": "bernoulli" | σ, "seed": int}``:
  a simulated recovering-reward environment
  (:class:`~streamlearn.learners.bandits.RecoveringEnv`, one row of expected rewards by
  idle time per arm). Every later ``decide`` is answered by the simulator: the chosen
  arms are pulled in period t, their rewards learned at once and added to the output
  (``"rewards"``); ``reward`` events are then refused. The report's details say which
  evaluation was used (``"evaluation"``) and the fluid LP bound on the reward per period;
  the metric ``bound_ratio`` is the policy's expected reward per period over that bound.
  ``streamlearn export recovering`` writes such a stream.

What ``decode`` can check on its own (the type, integers, the arm's range, a
finite reward in [0, 1], an environment's shape) becomes a :class:`BadEvent`; what needs the learner's
state (a period that does not increase, a reward for an arm that was not chosen
at t or whose reward already came, an environment after the first decision) is rejected from ``process`` without touching
the learner. Both go to the dead-letter sink with the reason.

Metrics: ``average_reward`` (running mean of the rewards received; 0 before any), ``rewards``
and ``decisions`` (counts), and in a simulated environment ``bound_ratio``. ``details()`` gives the current plan. The running
sums and the environment are part of the checkpointed state, the learner's state holds the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from streamlearn.engine.processor import BadEvent, EvalOptions, Item, Output, Processor, finite_number
from streamlearn.learners.bandits import RecoveringEnv, fluid_upper_bound
from streamlearn.learners.base import State

__all__ = ["BanditProcessor"]

_TYPES = ("decide", "reward", "environment")
#: Most (arm, idle time) cells an environment event may declare.
_MAX_ENV_CELLS = 1_000_000
#: Periods beyond this would overflow the learner's int64 bookkeeping.
_MAX_T = 1 << 60


def _integer(event: Mapping[str, Any], field: str) -> int:
    value = event.get(field)
    if value is None:
        raise BadEvent(f"missing field {field!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(f"{field} must be an integer, got {type(value).__name__} {value!r}")
    return value


class BanditProcessor(Processor):
    """Runs a :class:`~streamlearn.learners.bandits.RecoveringUCB` (or any learner with
    ``select(t)``, ``update(t, arm, reward)``, ``is_pending(t, arm)`` and ``n_arms``)."""

    def __init__(self, learner: Any, eval: EvalOptions | None = None, options: Any = None, emit: bool = True):
        if eval is not None and eval.metrics:
            raise ValueError(
                "the bandit processor reports average_reward, rewards and decisions; "
                f"leave [eval] metrics empty (got {eval.metrics})"
            )
        super().__init__(learner, eval, options, emit)
        self.reward_sum = 0.0
        self.reward_count = 0
        self.decisions = 0
        self.env: RecoveringEnv | None = None
        self.bound = 0.0  # the environment's fluid LP bound on the reward per period
        self.expected_sum = 0.0  # expected rewards of the simulated pulls

    def _environment(self, event: Mapping[str, Any]) -> tuple:
        r, noise, seed = event.get("r"), event.get("noise", "bernoulli"), event.get("seed", 0)
        if not isinstance(r, list) or not r or not all(isinstance(row, list) and row for row in r):
            raise BadEvent("environment r must be a list (one per arm) of non-empty lists of expected rewards")
        if len(r) != self.learner.n_arms:
            raise BadEvent(f"environment r has {len(r)} arms, the learner has n_arms = {self.learner.n_arms}")
        if len({len(row) for row in r}) != 1 or len(r) * len(r[0]) > _MAX_ENV_CELLS:
            raise BadEvent(f"environment r must have rows of one length and at most {_MAX_ENV_CELLS} cells")
        values = [finite_number(v, "environment r", self.limits) for row in r for v in row]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise BadEvent(f"environment seed must be an integer ≥ 0, got {seed!r}")
        if noise != "bernoulli":
            noise = finite_number(noise, "environment noise", self.limits)
        try:
            env = RecoveringEnv(np.array(values).reshape(len(r), -1), noise=noise, seed=seed)
        except ValueError as exc:
            raise BadEvent(f"environment: {exc}") from None
        return ("environment", env)

    def decode(self, event: Any) -> tuple:
        kind = event.get("type")
        if kind not in _TYPES:
            raise BadEvent(f"type must be one of {list(_TYPES)}, got {kind!r}")
        if kind == "environment":
            return self._environment(event)
        t = _integer(event, "t")
        if abs(t) > _MAX_T:
            raise BadEvent(f"t is out of range: {t}")
        if kind == "decide":
            return ("decide", t)
        arm = _integer(event, "arm")
        if not 0 <= arm < self.learner.n_arms:
            raise BadEvent(f"arm must lie in [0, {self.learner.n_arms}), got {arm}")
        if event.get("reward") is None:
            raise BadEvent("missing field 'reward'")
        reward = finite_number(event["reward"], "reward", self.limits)
        if not 0.0 <= reward <= 1.0:
            raise BadEvent(f"reward must lie in [0, 1], got {reward}")
        return ("reward", t, arm, reward)

    def process(self, items: list[Item]) -> list[Output]:
        learner = self.learner
        outputs: list[Output] = []
        for item in items:
            if item.value[0] == "environment":
                if self.env is not None or self.decisions:
                    self.reject(item, "an environment must come once, before the first decision")
                else:
                    self.env = item.value[1]
                    self.bound = fluid_upper_bound(self.env.r, learner.k)
                continue
            kind, t, *rest = item.value
            if kind == "decide":
                last_t = learner.last_t
                if last_t is not None and t <= last_t:
                    self.reject(item, f"t must increase: period {t} comes after period {last_t}")
                    continue
                arms = learner.select(t)
                self.decisions += 1
                payload = {"type": "decision", "t": t, "arms": arms}
                if self.env is not None:
                    payload["rewards"] = self._simulate(t, arms)
                if self.emit:
                    outputs.append(Output(item.position, payload))
                continue
            if self.env is not None:
                self.reject(item, "this stream's rewards come from its simulated environment, not from reward events")
                continue
            arm, reward = rest
            if not learner.is_pending(t, arm):
                self.reject(item, f"arm {arm} was not chosen in period {t}, or its reward already arrived")
                continue
            learner.update(t, arm, reward)
            self.reward_sum += reward
            self.reward_count += 1
        return outputs

    def _simulate(self, t: int, arms: list[int]) -> list[float]:
        """Pull ``arms`` in the simulated environment at period t; the learner learns the rewards."""
        self.expected_sum += float(self.env.expected_at(t, arms).sum()) if arms else 0.0
        rewards = self.env.pull(t, arms).tolist() if arms else []
        for arm, reward in zip(arms, rewards, strict=True):
            # Gaussian noise may leave [0, 1]; the learner's statistics take rewards in [0, 1].
            self.learner.update(t, arm, min(max(reward, 0.0), 1.0))
        self.reward_sum += sum(rewards)
        self.reward_count += len(rewards)
        return rewards

    def metrics(self) -> dict[str, float]:
        mean = self.reward_sum / self.reward_count if self.reward_count else 0.0
        values = {"average_reward": mean, "rewards": float(self.reward_count), "decisions": float(self.decisions)}
        if self.env is not None:
            values["bound_ratio"] = self.expected_sum / (self.decisions * self.bound) if self.decisions and self.bound else 0.0
        return values

    def details(self) -> dict[str, Any]:
        if self.env is None:
            details: dict[str, Any] = {"evaluation": "rewards from the stream's reward events"}
        else:
            details = {
                "evaluation": (
                    f"simulated recovering-reward environment ({self.env.n_arms} arms, idle times up to "
                    f"{self.env.d_max}, noise {self.env.noise!r}, seed {self.env.seed}): every decision's arms "
                    "are pulled in the simulator and their rewards learned at once"
                ),
                "fluid_upper_bound": self.bound,
            }
        plan = getattr(self.learner, "plan", None)
        if plan is not None:
            details["plan"] = {"periods": plan.periods.tolist(), "offsets": plan.offsets.tolist()}
            details["replans"] = int(getattr(self.learner, "replans", 0))
        return details

    def state_dict(self) -> State:
        state = super().state_dict()
        state.update({"reward_sum": self.reward_sum, "reward_count": self.reward_count, "decisions": self.decisions})
        if self.env is not None:
            env = self.env
            noise = env.noise if env.noise == "bernoulli" else float(env.noise)
            state.update({"env/r": env.r, "env/noise": noise, "env/seed": env.seed, "env/t": env.t,
                          "env/last_pulled": env.last_pulled, "env/expected_sum": self.expected_sum})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.reward_sum = float(state["reward_sum"])
        self.reward_count = int(state["reward_count"])
        self.decisions = int(state["decisions"])
        self.env, self.bound, self.expected_sum = None, 0.0, 0.0
        if "env/r" in state:
            noise = state["env/noise"]
            self.env = RecoveringEnv(np.asarray(state["env/r"]), noise=noise if noise == "bernoulli" else float(noise), seed=int(state["env/seed"]))
            self.env.t = int(state["env/t"])
            self.env.last_pulled = np.asarray(state["env/last_pulled"], dtype=np.int64).copy()
            self.expected_sum = float(state["env/expected_sum"])
            self.bound = fluid_upper_bound(self.env.r, self.learner.k)

"""Decisions and rewards for recovering-reward bandits (:mod:`streamlearn.learners.bandits`).

Two kinds of events, in stream order:

- ``{"type": "decide", "t": int}`` asks for the arms of period t; the processor
  answers with an output ``{"type": "decision", "t": t, "arms": [...]}``. Periods
  must increase (gaps are fine).
- ``{"type": "reward", "t": int, "arm": int, "reward": float}`` reports the reward
  of an arm chosen in period t; the learner files it under the arm's idle time
  at t. Rewards may come late and in any order, but each only once.

What ``decode`` can check on its own (the type, integers, the arm's range, a
finite reward in [0, 1]) becomes a :class:`BadEvent`; what needs the learner's
state (a period that does not increase, a reward for an arm that was not chosen
at t or whose reward already came) is rejected from ``process`` without touching
the learner. Both go to the dead-letter sink with the reason.

Metrics: ``average_reward`` (running mean of the rewards received; 0 before any), ``rewards``
and ``decisions`` (counts). ``details()`` gives the current plan. The running
sums are part of the checkpointed state, the learner's state holds the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamlearn.engine.processor import BadEvent, EvalOptions, Item, Output, Processor, finite_number
from streamlearn.learners.base import State

__all__ = ["BanditProcessor"]

_TYPES = ("decide", "reward")
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

    def decode(self, event: Any) -> tuple:
        kind = event.get("type")
        if kind not in _TYPES:
            raise BadEvent(f"type must be one of {list(_TYPES)}, got {kind!r}")
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
            kind, t, *rest = item.value
            if kind == "decide":
                last_t = learner.last_t
                if last_t is not None and t <= last_t:
                    self.reject(item, f"t must increase: period {t} comes after period {last_t}")
                    continue
                arms = learner.select(t)
                self.decisions += 1
                if self.emit:
                    outputs.append(Output(item.position, {"type": "decision", "t": t, "arms": arms}))
                continue
            arm, reward = rest
            if not learner.is_pending(t, arm):
                self.reject(item, f"arm {arm} was not chosen in period {t}, or its reward already arrived")
                continue
            learner.update(t, arm, reward)
            self.reward_sum += reward
            self.reward_count += 1
        return outputs

    def metrics(self) -> dict[str, float]:
        mean = self.reward_sum / self.reward_count if self.reward_count else 0.0
        return {"average_reward": mean, "rewards": float(self.reward_count), "decisions": float(self.decisions)}

    def details(self) -> dict[str, Any]:
        plan = getattr(self.learner, "plan", None)
        if plan is None:
            return {}
        return {
            "plan": {"periods": plan.periods.tolist(), "offsets": plan.offsets.tolist()},
            "replans": int(getattr(self.learner, "replans", 0)),
        }

    def state_dict(self) -> State:
        state = super().state_dict()
        state.update({"reward_sum": self.reward_sum, "reward_count": self.reward_count, "decisions": self.decisions})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.reward_sum = float(state["reward_sum"])
        self.reward_count = int(state["reward_count"])
        self.decisions = int(state["decisions"])

"""Continual offline RL on a stream of logged transitions (the ``oer`` learner).

Events (one JSON object each):

- a transition ``{"task": str or int, "obs": [...], "action": [...], "reward": number,
  "next_obs": [...], "done": bool}`` (``"type": "transition"`` may be given) is
  stored for the open task. A transition of another task first finishes the
  open one;
- ``{"type": "task_end", "task": str}`` finishes the open task: TD3+BC training,
  buffer selection, clone-policy update. It must name the open task;
- ``{"type": "act", "task": str, "obs": [...], "id": optional}`` asks for the
  action of ``task``'s policy in ``obs``; the answer is an output
  ``{"type": "action", "task", "action": [...], "id"}``.

Every finished task produces an output ``{"type": "task_finished", "task",
"task_index", "transitions", "dropped", "buffer", "padded", "steps",
"critic_loss", "actor_loss", "clone_loss" (with DBC), "seconds"}``: transitions
trained on, transitions dropped by the task store's bound, transitions kept in
its buffer (of which ``padded`` were drawn at random because no MBES walk
reached them), gradient steps, the last losses and the training wall time.

Bad input — a missing field, a list of the wrong length (``obs``/``next_obs``
must have the learner's ``obs_dim`` values, ``action`` its ``act_dim``), a
non-finite number, a ``done`` that is not a boolean — is a :class:`BadEvent`.
Events only the learner can refuse go to the dead letters too, leaving it
unchanged: a ``task_end`` that does not name the open task, an ``act`` for a
task never seen, a transition of a task beyond ``max_tasks`` or one arriving
at a full task store with ``overflow = "reject"``.

Task ids are strings or integers; an integer is used as its decimal string, so
``3`` and ``"3"`` are the same task (and outputs name it ``"3"``).

Training at a task end takes a while (seconds to minutes): it is logged as it
goes (``oer task training`` about every 10% of the steps with the losses,
``oer buffer selection``, ``oer task finished``), so a replay or the daemon is
never silent while it learns.

Options (``[processor]``): ``finish_on_flush`` (default true) finishes the open
task when a finite stream (a replay) ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import structlog

from streamlearn.engine.processor import BadEvent, Item, Output, Processor, finite_number, number_list
from streamlearn.learners.base import State, json_state, load_json_state

__all__ = ["OERProcessor"]

log = structlog.get_logger("streamlearn.oer")

EVENT_TYPES = ("transition", "task_end", "act")


class OERProcessor(Processor):
    """Feeds transitions, task ends and action queries to :class:`~streamlearn.learners.corl.OER`."""

    @dataclasses.dataclass
    class Options:
        #: Finish the open task when a finite stream ends (a replay); turn off for a stream continued later.
        finish_on_flush: bool = True

    def __init__(self, learner: Any, *args: Any, **kwargs: Any):
        super().__init__(learner, *args, **kwargs)
        self._counts = {"transitions": 0, "tasks_finished": 0, "actions": 0}
        #: Position of the last processed event: a task finished by flush() is reported there.
        self._last_position: dict[str, Any] | None = None
        learner.on_progress = self._log_progress

    @staticmethod
    def _log_progress(event: dict[str, Any]) -> None:
        stage = event.pop("stage")
        message = {"train": "oer task training", "select": "oer buffer selection", "done": "oer task finished"}
        log.info(message.get(stage, f"oer {stage}"), **event)

    # ----------------------------------------------------------------------- decoding

    def decode(self, event: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(event, dict):
            raise BadEvent(f"an event must be a JSON object, got {type(event).__name__}")
        kind = event.get("type", "transition")
        if kind not in EVENT_TYPES:
            raise BadEvent(f"type must be one of {', '.join(EVENT_TYPES)}, got {kind!r}")
        task = event.get("task")
        if isinstance(task, int) and not isinstance(task, bool):
            task = str(task)  # integer task ids name the task by their decimal string (3 and "3" are one task)
        if not isinstance(task, str) or not task:
            raise BadEvent(f"task must be a non-empty string or an integer, got {task!r}")
        obs_dim, act_dim = self.learner.obs_dim, self.learner.act_dim
        if kind == "task_end":
            return kind, {"type": kind, "task": task}
        if kind == "act":
            return kind, {"task": task, "obs": number_list(event, "obs", obs_dim, self.limits), "id": event.get("id")}
        if "reward" not in event:
            raise BadEvent("missing field 'reward'")
        done = event.get("done")
        if not isinstance(done, bool):
            raise BadEvent(f"done must be true or false, got {done!r}")
        return kind, {
            "task": task,
            "obs": number_list(event, "obs", obs_dim, self.limits),
            "action": number_list(event, "action", act_dim, self.limits),
            "reward": finite_number(event["reward"], "reward", self.limits),
            "next_obs": number_list(event, "next_obs", obs_dim, self.limits),
            "done": done,
        }

    # ----------------------------------------------------------------------- processing

    def process(self, items: list[Item]) -> list[Output]:
        learner = self.learner
        outputs: list[Output] = []
        for item in items:
            kind, event = item.value
            task = event["task"]
            if kind == "transition":
                try:
                    learner.check_can_learn(task)
                except ValueError as exc:
                    self.reject(item, str(exc))
                    continue
                if learner.current_task not in (None, task):
                    outputs += self._finish(item.position, learner.current_task)
                learner.learn_one(event)
                self._counts["transitions"] += 1
            elif kind == "task_end":
                if learner.current_task != task:
                    self.reject(item, f"task_end for {task!r}, but the open task is {learner.current_task!r}")
                    continue
                outputs += self._finish(item.position, task)
            else:
                if task not in learner.tasks:
                    self.reject(item, f"act for unknown task {task!r}")
                    continue
                action = learner.predict_one(event)
                self._counts["actions"] += 1
                if self.emit:
                    answer = {"type": "action", "task": task, "action": action, "id": event["id"]}
                    outputs.append(Output(item.position, answer))
            self._last_position = item.position
        return outputs

    def _finish(self, position: dict[str, Any], task: str) -> list[Output]:
        summary = self.learner.end_task(task)
        self._counts["tasks_finished"] += 1
        return [Output(position, {"type": "task_finished", **summary})] if self.emit else []

    def flush(self) -> list[Output]:
        task = self.learner.current_task
        if not self.options.finish_on_flush or task is None:
            return []
        return self._finish(self._last_position or {}, task)

    # ----------------------------------------------------------------------- reporting and state

    def metrics(self) -> dict[str, float]:
        values = self.metric_set.values()
        values.update({k: float(v) for k, v in self._counts.items()})
        return values

    def details(self) -> dict[str, Any]:
        return {"tasks": {task: self.learner.summary(task) for task in self.learner.finished_tasks}}

    def state_dict(self) -> State:
        state = super().state_dict()
        state.update({f"count/{k}": int(v) for k, v in self._counts.items()})
        state["last_position"] = json_state(self._last_position)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._counts = {k: int(state[f"count/{k}"]) for k in self._counts}
        self._last_position = load_json_state(state["last_position"])

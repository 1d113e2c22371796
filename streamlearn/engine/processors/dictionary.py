"""Stream processing for online orthogonal dictionary learning (:mod:`streamlearn.learners.dictionary`).

Events carry one sample::

    {"x": [y_1, ..., y_n]}  or  {"x": {"feature": y, ...}}   (+ optional "id", "ts")

``x`` has exactly the learner's ``n_features`` finite numbers; a dict's keys must
be the learner's features (fixed by its ``features`` parameter or by the first
dict learned). Anything else goes to the dead letters with the reason.

Each event is coded, then learned (prequential, like test-then-train): its
output is the sparse code under the dictionary learned from the events before
it, ``{"code": [c_1, ..., c_n], "error": ‖y − Dc‖²/‖y‖², "id": ...}`` — or, with
``[processor] sparse_output = true``, ``"code": {"index": [...], "value": [...]}``
holding only the non-zero entries. The learner buffers events into its
mini-batches; the partial mini-batch is part of the learner's checkpointed
state, so a restart continues exactly where the uninterrupted run would be.

Metrics: ``reconstruction_error`` (mean relative squared reconstruction error of
the prequential codes), ``reconstruction_error_recent`` (the same, exponentially
weighted over about ``recent_window`` events) and ``code_density`` (mean fraction
of non-zero code entries). river regression metrics named in ``[eval] metrics``
(``"MAE"``, ``"RMSE"``, ...) are updated with every coordinate of ``y`` against
its reconstruction ``Dc``. ``[eval] label_delay`` does not apply (nothing is
labelled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamlearn.engine.processor import BadEvent, Item, Output, Processor, number_list, numeric_features
from streamlearn.learners.base import State

__all__ = ["DictionaryProcessor"]


class DictionaryProcessor(Processor):
    """Codes each event with the current dictionary, then learns it."""

    event_fields = ("x",)

    @dataclasses.dataclass
    class Options:
        #: Write codes as ``{"index": [...], "value": [...]}`` (non-zero entries only).
        sparse_output: bool = False
        #: Put each event's relative reconstruction error in its output.
        include_error: bool = True
        #: Events over which ``reconstruction_error_recent`` is averaged (exponential weights).
        recent_window: int = 1000

    default_metrics = ()

    def __init__(self, learner: Any, *args: Any, **kwargs: Any):
        super().__init__(learner, *args, **kwargs)
        if self.options.recent_window < 1:
            raise ValueError(f"processor.recent_window must be >= 1, got {self.options.recent_window}")
        self._recent_weight = 2.0 / (self.options.recent_window + 1.0)
        self._coded = 0
        self._error_mean = 0.0
        self._error_recent = 0.0
        self._density_mean = 0.0

    # ------------------------------------------------------------------ decoding

    def decode(self, event: Any) -> tuple[Any, Any]:
        if not isinstance(event, Mapping):
            raise BadEvent(f"an event must be a JSON object, got {type(event).__name__}")
        n = self.learner.n_features
        if isinstance(event.get("x"), dict):
            x = numeric_features(event, "x", self.limits)
            order = self.learner.feature_order
            if order is not None and x.keys() != set(order):
                missing = sorted(map(str, set(order) - x.keys()))
                unexpected = sorted(map(str, x.keys() - set(order)))
                raise BadEvent(f"x has other features than the learner's: missing {missing}, unexpected {unexpected}")
            if len(x) != n:
                raise BadEvent(f"x must have {n} features, got {len(x)}")
        else:
            x = number_list(event, "x", n, self.limits)
        return x, event.get("id")

    # ------------------------------------------------------------------ processing

    def process(self, items: list[Item]) -> list[Output]:
        learner, emit, options = self.learner, self.emit, self.options
        river_metrics = bool(self.metric_set.names)
        outputs: list[Output] = []
        for item in items:
            x, event_id = item.value
            try:
                code, error = learner.encode_one(x)
            except (TypeError, ValueError) as exc:
                # A dict whose keys differ from those the learner fixed earlier in this micro-batch.
                self.reject(item, str(exc))
                continue
            density = float(np.count_nonzero(code)) / code.size
            self._update_stats(error, density)
            if river_metrics:
                y = learner.as_vector(x)
                for y_true, y_pred in zip(y.tolist(), learner.inverse_transform_many(code[None])[0].tolist(), strict=True):
                    self.metric_set.update(y_true, y_pred)
            learner.learn_one(x)
            if emit:
                if options.sparse_output:
                    index = np.flatnonzero(code)
                    payload: dict[str, Any] = {"code": {"index": index.tolist(), "value": code[index].tolist()}}
                else:
                    payload = {"code": code.tolist()}
                if options.include_error:
                    payload["error"] = error
                if event_id is not None:
                    payload["id"] = event_id
                outputs.append(Output(item.position, payload))
        return outputs

    def _update_stats(self, error: float, density: float) -> None:
        self._coded += 1
        self._error_mean += (error - self._error_mean) / self._coded
        self._density_mean += (density - self._density_mean) / self._coded
        if self._coded == 1:
            self._error_recent = error
        else:
            self._error_recent += self._recent_weight * (error - self._error_recent)

    # ------------------------------------------------------------------ reporting

    def metrics(self) -> dict[str, float]:
        return {
            "reconstruction_error": self._error_mean,
            "reconstruction_error_recent": self._error_recent,
            "code_density": self._density_mean,
            **self.metric_set.values(),
        }

    def details(self) -> dict[str, Any]:
        learner = self.learner
        dictionary = learner.dictionary
        n = learner.n_features
        return {
            "dictionary": {
                "events_coded": self._coded,
                "samples_learned": learner.n_samples_seen,
                "frank_wolfe_steps": learner.n_steps,
                "samples_buffered": learner.n_buffered,
                # How far the relaxed iterate is from the orthogonal group (0 on it).
                "relaxation_gap": float(np.linalg.norm(learner.relaxed_dictionary - dictionary) / np.sqrt(n)),
                "orthogonality_error": float(np.abs(dictionary.T @ dictionary - np.eye(n)).max()),
            }
        }

    # ------------------------------------------------------------------ state

    def state_dict(self) -> State:
        state = super().state_dict()
        state.update(
            {
                "stats/coded": self._coded,
                "stats/error_mean": self._error_mean,
                "stats/error_recent": self._error_recent,
                "stats/density_mean": self._density_mean,
            }
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._coded = int(state["stats/coded"])
        self._error_mean = float(state["stats/error_mean"])
        self._error_recent = float(state["stats/error_recent"])
        self._density_mean = float(state["stats/density_mean"])

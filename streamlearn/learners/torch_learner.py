"""Your own torch module as an online learner (``name = "torch"``).

Parameters
----------
module
    ``"package.module:factory"``: a callable returning a ``torch.nn.Module`` that maps a
    ``(batch, n_features)`` float tensor to ``(batch, n_outputs)`` (logits for
    classification, values for regression).
module_params
    Keyword arguments for the factory.
task
    ``"classification"`` or ``"regression"``.
features
    Feature names, in the order of the input columns. None: the sorted names of the
    first event. A missing feature is 0, an unknown one is ignored (river's convention).
classes
    Class labels in the order of the outputs. None: labels take outputs in order of
    first appearance; more labels than outputs is an error.
loss, loss_params
    A ``torch.nn`` loss by class name (``"CrossEntropyLoss"``, ``"MSELoss"``,
    ``"HuberLoss"``, ...) and its parameters. Default: cross-entropy or MSE.
optimizer, optimizer_params
    A ``torch.optim`` optimiser by class name and its parameters (default ``Adam``,
    ``lr = 0.001``).
seed
    Seeds the module's initial weights (the global torch generator is left alone).

The engine feeds it micro-batches test-then-train: the whole batch is predicted, scored,
then learned in one optimiser step (``predict_many`` / ``learn_many``); ``learn_one`` is
a step on one event. Its state (the module's parameters and buffers, the optimiser's
tensors and settings, features, classes) is stored as arrays in the Parquet checkpoint,
without pickle, and a loaded learner predicts exactly as the saved one.

A checkpoint of a torch learner names code (its ``module``), so
``streamlearn.load_learner`` rebuilds one only when told to trust it:
``load_learner(path, learner_class=TorchLearner)``.

Example
-------

>>> learner = TorchLearner("streamlearn.learners.torch_learner:mlp", {"n_features": 2, "n_outputs": 2},
...                        optimizer_params={"lr": 0.05})
>>> for i in range(300):
...     x = {"a": (i % 10) / 10, "b": (i % 7) / 7}
...     learner.learn_one(x, x["a"] > 0.5)
>>> learner.predict_one({"a": 0.9, "b": 0.5}), learner.predict_one({"a": 0.1, "b": 0.5})
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from streamlearn.learners.base import (
    State,
    json_state,
    load_json_state,
    load_torch_module_state,
    load_torch_optimizer_state,
    subset,
    torch_module_state,
    torch_optimizer_state,
)

__all__ = ["TorchLearner", "mlp"]

TASKS = ("classification", "regression")


def mlp(n_features: int, n_outputs: int, hidden: Sequence[int] = (32,)) -> torch.nn.Module:
    """A small multi-layer perceptron with ReLU activations: a ready factory for ``module``."""
    layers: list[torch.nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    layers.append(torch.nn.Linear(width, n_outputs))
    return torch.nn.Sequential(*layers)


def _torch_class(namespace: Any, name: str, base: type, what: str) -> type:
    cls = getattr(namespace, name, None) if isinstance(name, str) and not name.startswith("_") else None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        known = sorted(n for n in dir(namespace) if isinstance(getattr(namespace, n), type) and issubclass(getattr(namespace, n), base) and not n.startswith("_"))
        raise ValueError(f"unknown {what} {name!r}; one of: {', '.join(known)}")
    return cls


class TorchLearner:
    """A ``torch.nn.Module`` of yours, trained online; see the module docstring."""

    #: The supervised processor feeds this learner whole micro-batches.
    learns_in_batches = True

    def __init__(
        self,
        module: str,
        module_params: Mapping[str, Any] | None = None,
        task: str = "classification",
        features: Sequence[str] | None = None,
        classes: Sequence[Any] | None = None,
        loss: str | None = None,
        loss_params: Mapping[str, Any] | None = None,
        optimizer: str = "Adam",
        optimizer_params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ):
        from streamlearn.engine.registry import UnknownName, import_object

        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.module_path, self.module_params, self.task = module, dict(module_params or {}), task
        self.loss_name = loss or ("CrossEntropyLoss" if task == "classification" else "MSELoss")
        self.loss_params, self.optimizer_name = dict(loss_params or {}), optimizer
        self.optimizer_params = dict(optimizer_params if optimizer_params is not None else {"lr": 0.001})
        self.seed = seed
        self.features = list(features) if features is not None else None
        self.fixed_classes = list(classes) if classes is not None else None
        self.classes: list[Any] = list(classes or [])
        self.is_classifier = task == "classification"
        self.kind = "classifier" if self.is_classifier else "regressor"
        try:
            factory = import_object(module)
        except UnknownName as exc:
            raise ValueError(f"module: {exc}") from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = factory(**self.module_params)
        if not isinstance(net, torch.nn.Module):
            raise ValueError(f"{module} returned a {type(net).__name__}, not a torch.nn.Module")
        self.net = net
        self.loss_fn = _torch_class(torch.nn, self.loss_name, torch.nn.modules.loss._Loss, "loss")(**self.loss_params)
        optimizer_cls = _torch_class(torch.optim, optimizer, torch.optim.Optimizer, "optimizer")
        try:
            self.optimizer = optimizer_cls(self.net.parameters(), **self.optimizer_params)
        except TypeError as exc:
            raise ValueError(f"optimizer {optimizer}: {exc}") from None

    def _get_params(self) -> dict[str, Any]:
        return {
            "module": self.module_path,
            "module_params": self.module_params,
            "task": self.task,
            "features": self.features,
            "classes": self.fixed_classes,
            "loss": self.loss_name,
            "loss_params": self.loss_params,
            "optimizer": self.optimizer_name,
            "optimizer_params": self.optimizer_params,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ tensors

    def _inputs(self, X: Sequence[Mapping[str, float]]) -> torch.Tensor:
        if self.features is None:
            self.features = sorted(X[0])
        rows = [[float(x.get(name, 0.0)) for name in self.features] for x in X]
        return torch.tensor(rows, dtype=torch.float32)

    def _targets(self, ys: Sequence[Any]) -> torch.Tensor:
        if not self.is_classifier:
            return torch.tensor([float(y) for y in ys], dtype=torch.float32)
        for y in ys:
            if y not in self.classes:
                if self.fixed_classes is not None:
                    raise ValueError(f"label {y!r} is not one of the classes {self.fixed_classes}")
                self.classes.append(y)
        return torch.tensor([self.classes.index(y) for y in ys], dtype=torch.long)

    def _outputs(self, X: Sequence[Mapping[str, float]]) -> torch.Tensor:
        self.net.eval()
        with torch.no_grad():
            return self.net(self._inputs(X))

    # ------------------------------------------------------------------ learning

    def learn_many(self, X: Sequence[Mapping[str, float]], y: Sequence[Any]) -> None:
        """One optimiser step on a batch of events."""
        if len(X) != len(y):
            raise ValueError(f"{len(X)} events but {len(y)} labels")
        if not len(X):
            return
        inputs, targets = self._inputs(X), self._targets(y)
        self.net.train()
        outputs = self.net(inputs)
        if self.is_classifier:
            if len(self.classes) > outputs.shape[1]:
                self.classes = self.classes[: outputs.shape[1]]
                raise ValueError(f"more classes than the module has outputs ({outputs.shape[1]})")
        else:
            outputs = outputs.reshape(targets.shape)
        loss = self.loss_fn(outputs, targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def learn_one(self, x: Mapping[str, float], y: Any) -> None:
        self.learn_many([x], [y])

    # ------------------------------------------------------------------ predictions

    def predict_proba_many(self, X: Sequence[Mapping[str, float]]) -> list[dict[Any, float]]:
        if not self.is_classifier:
            raise AttributeError("a regression learner has no class probabilities")
        if not self.classes:
            return [{} for _ in X]
        proba = torch.softmax(self._outputs(X)[:, : len(self.classes)], dim=1).tolist()
        return [dict(zip(self.classes, row, strict=True)) for row in proba]

    def predict_many(self, X: Sequence[Mapping[str, float]]) -> list[Any]:
        if not len(X):
            return []
        if self.is_classifier:
            if not self.classes:
                return [None] * len(X)
            best = self._outputs(X)[:, : len(self.classes)].argmax(dim=1).tolist()
            return [self.classes[i] for i in best]
        return self._outputs(X).reshape(len(X), -1)[:, 0].tolist()

    def predict_proba_one(self, x: Mapping[str, float]) -> dict[Any, float]:
        return self.predict_proba_many([x])[0]

    def predict_one(self, x: Mapping[str, float]) -> Any:
        return self.predict_many([x])[0]

    # ------------------------------------------------------------------ state

    def state_dict(self) -> State:
        state: State = {f"module/{k}": v for k, v in torch_module_state(self.net).items()}
        state.update({f"optimizer/{k}": v for k, v in torch_optimizer_state(self.optimizer).items()})
        state["features"] = json_state(self.features)
        state["classes"] = json_state(self.classes)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_torch_module_state(self.net, subset(state, "module/"))
        load_torch_optimizer_state(self.optimizer, subset(state, "optimizer/"))
        self.features = load_json_state(state["features"])
        self.classes = load_json_state(state["classes"])

    def __repr__(self) -> str:
        return f"TorchLearner({self.module_path}, task={self.task!r}, {sum(p.numel() for p in self.net.parameters())} parameters)"

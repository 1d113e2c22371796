"""River estimators as config values, and back.

A config names a river object as ``"module.Class"`` relative to ``river``
(``"linear_model.LogisticRegression"``) or as a table with a ``class`` key and
the constructor's parameters, nested as deep as needed::

    {class = "ensemble.BaggingClassifier", n_models = 5,
     model = {class = "tree.HoeffdingTreeClassifier", grace_period = 50}}

A dict whose keys are not all strings (class weights by label) is ``{items = [[key,
value], ...]}``. A river function (a distance) is ``{function = "module:name"}``, e.g.
``{function = "river.utils.math:minkowski_distance"}``. Pipelines and unions take their parts as a list: ``{class = "compose.Pipeline",
steps = [...]}``, ``{class = "compose.TransformerUnion", transformers = [...]}``.
:func:`build` turns such a value into the object and :func:`describe` turns a
river object back into it (parameters left at their default are omitted), so a
model built in Python can be recorded in a checkpoint's metadata.

>>> from river import ensemble, tree
>>> model = ensemble.BaggingClassifier(tree.HoeffdingTreeClassifier(grace_period=50), n_models=3)
>>> spec = describe(model)
>>> spec["class"], spec["n_models"], spec["model"]["class"], spec["model"]["grace_period"]
('ensemble.BaggingClassifier', 3, 'tree.HoeffdingTreeClassifier', 50)
>>> build(describe(model))._get_params() == model._get_params()
True
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from typing import Any

from streamlearn.learners import river_state

__all__ = ["build", "catalogue", "describe", "public_name", "river_class"]

#: river subpackages that hold no estimators (data, I/O, evaluation, helpers).
NOT_ESTIMATOR_MODULES = frozenset(
    {"api", "base", "checks", "compat", "conf", "datasets", "evaluate", "metrics", "stream", "utils"}
)

#: Classes whose parts are positional arguments, and the key that lists them.
_PARTS = {"compose.Pipeline": "steps", "compose.TransformerUnion": "transformers", "compose.TransformerProduct": "transformers"}


@functools.cache
def catalogue() -> dict[str, type]:
    """Every concrete estimator class river exports, by its public name (``"tree.HoeffdingTreeClassifier"``)."""
    import river
    from river import base

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(river.__path__):
        if info.name.startswith("_") or info.name in NOT_ESTIMATOR_MODULES:
            continue
        module = importlib.import_module(f"river.{info.name}")
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if isinstance(obj, type) and issubclass(obj, base.Estimator) and not inspect.isabstract(obj):
                found[f"{info.name}.{name}"] = obj
    return found


def river_class(name: str) -> type:
    """The river class called ``name`` (``"module.Class"``); a misspelling gets suggestions.

    Only classes of the modules the checkpoint codec allows (estimators and what they are
    made of) can be named: never data sets, stream readers or anything doing I/O.
    """
    if not isinstance(name, str):
        raise ValueError(f"a river class is named by a string such as 'linear_model.LogisticRegression', got {name!r}")
    module_name, _, class_name = name.rpartition(".")
    cls = None
    if module_name and river_state.allowed_module(f"river.{module_name}"):
        try:
            cls = getattr(importlib.import_module(f"river.{module_name}"), class_name, None)
        except ImportError:
            cls = None
    if not isinstance(cls, type) or not river_state.allowed_module(cls.__module__):
        names = list(catalogue()) + [n for n in _helper_names() if n not in catalogue()]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        by_class = [n for n in names if n.rpartition(".")[2].lower() == class_name.lower()]
        hint = list(dict.fromkeys(by_class + close))
        suggestion = f"; did you mean {' or '.join(repr(n) for n in hint)}?" if hint else ""
        raise ValueError(f"no such model in river: {name!r}{suggestion} (name it 'module.Class', e.g. 'linear_model.LogisticRegression')")
    return cls


@functools.cache
def _helper_names() -> tuple[str, ...]:
    """Non-estimator river classes a parameter may name (optimisers, losses, statistics, ...)."""
    names = []
    for module_name in ("optim", "optim.losses", "optim.schedulers", "optim.initializers", "stats", "proba", "drift", "metrics"):
        module = importlib.import_module(f"river.{module_name}")
        names += [f"{module_name}.{n}" for n in getattr(module, "__all__", ()) if isinstance(getattr(module, n, None), type)]
    return tuple(names)


def public_name(cls: type) -> str:
    """``"tree.HoeffdingTreeClassifier"`` for the class, the shortest river path that exports it."""
    parts = cls.__module__.split(".")
    if parts[0] != "river":
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not a river class")
    for end in range(2, len(parts) + 1):
        module_name = ".".join(parts[1:end])
        if getattr(importlib.import_module(f"river.{module_name}"), cls.__name__, None) is cls:
            return f"{module_name}.{cls.__name__}"
    raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not exported by a river module")


def build(spec: str | Mapping[str, Any]) -> Any:
    """``"optim.SGD"`` or ``{"class": "optim.SGD", "lr": 0.1}`` → a river object (nested tables too)."""
    if isinstance(spec, str):
        return river_class(spec)()
    if not isinstance(spec, Mapping) or "class" not in spec:
        raise ValueError(f"expected a river class name or a table with a 'class' key, got {spec!r}")
    cls = river_class(spec["class"])
    parts_key = _PARTS.get(spec["class"])
    params = {k: _build_param(v) for k, v in spec.items() if k not in ("class", parts_key)}
    args = []
    if parts_key:
        parts = spec.get(parts_key, [])
        if not isinstance(parts, list) or not parts:
            raise ValueError(f"{spec['class']}: '{parts_key}' must be a non-empty list of river objects")
        args = [build(p) for p in parts]
    try:
        return cls(*args, **params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{spec['class']}: {exc}") from None


def _build_param(value: Any) -> Any:
    if isinstance(value, Mapping) and "class" in value:
        return build(value)
    if isinstance(value, Mapping) and set(value) == {"function"}:
        return river_state.function(value["function"])
    if isinstance(value, Mapping) and set(value) == {"items"}:
        return {_hashable(k): _build_param(v) for k, v in value["items"]}
    if isinstance(value, list):
        return [_build_param(v) for v in value]
    return value


def describe(obj: Any) -> str | dict[str, Any]:
    """The config value that :func:`build` turns into an untrained copy of ``obj``."""
    from river import base

    name = public_name(type(obj))
    parts_key = _PARTS.get(name)
    if parts_key:
        parts = obj.steps if parts_key == "steps" else obj.transformers
        return {"class": name, parts_key: [describe(p) for p in parts.values()]}
    spec: dict[str, Any] = {"class": name}
    signature = inspect.signature(type(obj)).parameters
    for key, value in obj._get_params().items():
        attribute = getattr(obj, key, None)
        if isinstance(attribute, base.Base):
            value = attribute
        default = signature[key].default if key in signature else inspect.Parameter.empty
        if default is not inspect.Parameter.empty and _same(value, default):
            continue
        spec[key] = _describe_param(f"{name}.{key}", value)
    return spec


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, tuple) and value and isinstance(value[0], type):  # a class parameter
        return False
    try:
        return bool(value == default) and type(value) is type(default)
    except Exception:  # an object whose == is not a plain comparison (arrays)
        return False


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _describe_param(where: str, value: Any) -> Any:
    from river import base

    if isinstance(value, base.Base):
        return describe(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], type) and isinstance(value[1], dict):
        return describe(value[0](**value[1]))
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_describe_param(where, v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_describe_param(where, v) for v in value)
    if callable(value) and river_state.function_name(value) is not None:
        return {"function": river_state.function_name(value)}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _describe_param(f"{where}.{k}", v) for k, v in value.items()}
    if isinstance(value, dict) and all(k is None or isinstance(k, bool | int | float | str) for k in value):
        return {"items": [[k, _describe_param(f"{where}[{k!r}]", v)] for k, v in value.items()]}
    raise ValueError(
        f"{where} = {value!r} cannot be written in a config (only numbers, strings, lists, river objects "
        "and river functions)"
    )

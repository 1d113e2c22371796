"""Pickle-free encoding of river objects (estimators, metrics, statistics) as JSON.

river estimators keep their learned state in plain Python attributes: numbers,
dicts keyed by feature name, ``collections`` containers and small river objects
(statistics, optimisers, schedulers, ``VectorDict``). :func:`encode` walks that
object graph and writes it as JSON; :func:`decode` rebuilds it.

Why this is safe to load: decoding only ever

- builds JSON primitives and the containers ``list``, ``tuple``, ``set``,
  ``frozenset``, ``dict``, ``OrderedDict``, ``defaultdict``, ``Counter``, ``deque``,
  and ``random.Random`` (through ``setstate``);
- creates instances of classes defined in the allow-listed river modules below,
  through ``object.__new__`` and ``__dict__`` assignment (no ``__init__``,
  ``__setstate__`` or ``__reduce__`` is called);
- refers to callables (``defaultdict`` factories, bound methods) that are
  allow-listed types, ``copy.deepcopy``, functions defined in allow-listed river
  modules looked up by name, or methods of allow-listed objects.

Nothing else can be named, so a checkpoint cannot make the loader run code. Any
object outside the allow-list makes :func:`encode` raise ``UnsupportedRiverObject``
naming it — a model that cannot be stored is refused, never half stored.

Floats are written with ``repr`` precision, dict insertion order and key types
are kept, and shared references (a ``Pipeline``'s cached steps, ``F1``'s shared
confusion matrix) stay shared, so predictions after a round trip are identical.
"""

from __future__ import annotations

import collections
import copy
import functools
import importlib
import json
import random
import types
from typing import Any

import numpy as np

__all__ = ["ALLOWED_MODULES", "UnsupportedRiverObject", "decode", "encode", "dumps", "loads"]

#: Modules whose classes and functions may appear in an encoded river object.
ALLOWED_MODULES = (
    "river.compose.pipeline",
    "river.compose.union",
    "river.linear_model",
    "river.metrics",
    "river.naive_bayes",
    "river.optim",
    "river.preprocessing.scale",
    "river.proba",
    "river.stats",
    "river.utils",
    "river._river_rust",
)

_ALLOWED_CALLABLES: dict[str, Any] = {
    t.__name__: t
    for t in (float, int, bool, str, list, dict, tuple, set, frozenset)
} | {
    "defaultdict": collections.defaultdict,
    "OrderedDict": collections.OrderedDict,
    "Counter": collections.Counter,
    "deque": collections.deque,
    # SoftmaxRegression builds one optimiser per class with partial(deepcopy, optimizer).
    "copy:deepcopy": copy.deepcopy,
}


_CALLABLE_TYPES = (
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    functools.partial,
)


class UnsupportedRiverObject(TypeError):
    """The object graph holds something that cannot be stored without pickle."""


def _allowed_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


def _qualified(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _resolve(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    if not _allowed_module(module_name):
        raise UnsupportedRiverObject(f"refusing to load {name!r}: module not allow-listed")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        if part.startswith("__") or part == "<locals>":
            raise UnsupportedRiverObject(f"refusing to load {name!r}")
        target = getattr(target, part)
    if getattr(target, "__module__", module_name) != module_name and not _allowed_module(
        getattr(target, "__module__", "")
    ):
        raise UnsupportedRiverObject(f"refusing to load {name!r}: defined outside allow-list")
    return target


def _is_vector_dict(obj: Any) -> bool:
    return type(obj).__name__ == "VectorDict" and type(obj).__module__.startswith("river.")


class _Encoder:
    def __init__(self) -> None:
        self.memo: dict[int, int] = {}
        self.keep_alive: list[Any] = []

    def callable_ref(self, fn: Any, where: str) -> Any:
        for name, t in _ALLOWED_CALLABLES.items():
            if fn is t:
                return {"type": name}
        if isinstance(fn, types.MethodType):
            # A bound method kept as an attribute (PA's ``calc_tau``): store its owner and name.
            return {"method": fn.__func__.__name__, "self": self.enc(fn.__self__, where)}
        if isinstance(fn, functools.partial):
            return {
                "partial": self.callable_ref(fn.func, where),
                "args": [self.enc(a, where) for a in fn.args],
                "kw": {k: self.enc(v, where) for k, v in fn.keywords.items()},
            }
        module = getattr(fn, "__module__", "") or ""
        if _allowed_module(module) and hasattr(fn, "__qualname__") and "<locals>" not in fn.__qualname__:
            return {"type": _qualified(fn)}
        raise UnsupportedRiverObject(f"{where}: cannot store the callable {fn!r}")

    def pairs(self, items: Any, where: str) -> list:
        return [[self.enc(k, where), self.enc(v, f"{where}[{k!r}]")] for k, v in items]

    def enc(self, obj: Any, where: str = "model") -> Any:
        if obj is None or isinstance(obj, bool | str):
            return obj
        if isinstance(obj, int) and type(obj) is int:
            return obj
        if isinstance(obj, float) and type(obj) is float:
            return obj
        if isinstance(obj, np.generic):
            return {"np": obj.dtype.str, "v": obj.item()}
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                raise UnsupportedRiverObject(f"{where}: object arrays cannot be stored")
            return {"nd": obj.tolist(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
        if isinstance(obj, _CALLABLE_TYPES):
            return self.callable_ref(obj, where)
        if isinstance(obj, collections.Counter):
            return {"Counter": self.pairs(obj.items(), where)}
        if isinstance(obj, collections.defaultdict):
            factory = None if obj.default_factory is None else self.callable_ref(obj.default_factory, where)
            return {"defaultdict": self.pairs(obj.items(), where), "factory": factory}
        if isinstance(obj, collections.OrderedDict):
            return {"OrderedDict": self.pairs(obj.items(), where)}
        if type(obj) is dict:
            return {"dict": self.pairs(obj.items(), where)}
        if isinstance(obj, collections.deque):
            return {"deque": [self.enc(v, where) for v in obj], "maxlen": obj.maxlen}
        if type(obj) in (list, tuple, set, frozenset):
            return {type(obj).__name__: [self.enc(v, where) for v in obj]}
        if type(obj) is random.Random:
            version, internal, gauss = obj.getstate()
            return {"random": [version, list(internal), gauss]}
        if _is_vector_dict(obj):
            _, (data, factory, mask, *_rest) = obj.__reduce__()
            return {
                "VectorDict": self.pairs(dict(data).items(), where),
                "factory": None if factory is None else self.enc(factory, where),
                "mask": None if mask is None else self.enc(mask, where),
            }
        cls = type(obj)
        if not _allowed_module(cls.__module__):
            raise UnsupportedRiverObject(
                f"{where}: {cls.__module__}.{cls.__qualname__} is not in the allow-listed river "
                f"modules ({', '.join(ALLOWED_MODULES)}), so it cannot be checkpointed without pickle"
            )
        if not hasattr(obj, "__dict__"):
            raise UnsupportedRiverObject(f"{where}: {cls.__qualname__} has no __dict__ to store")
        ident = self.memo.get(id(obj))
        if ident is not None:
            return {"ref": ident}
        ident = len(self.memo)
        self.memo[id(obj)] = ident
        self.keep_alive.append(obj)
        attrs = {k: self.enc(v, f"{where}.{k}") for k, v in vars(obj).items()}
        return {"obj": _qualified(cls), "id": ident, "attrs": attrs}


class _Decoder:
    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}

    def callable_ref(self, spec: dict) -> Any:
        if "method" in spec:
            owner, name = self.dec(spec["self"]), spec["method"]
            if name.startswith("__") or not _allowed_module(type(owner).__module__):
                raise UnsupportedRiverObject(f"refusing to bind method {name!r}")
            return getattr(owner, name)
        if "partial" in spec:
            return functools.partial(
                self.callable_ref(spec["partial"]),
                *[self.dec(a) for a in spec["args"]],
                **{k: self.dec(v) for k, v in spec["kw"].items()},
            )
        name = spec["type"]
        if name in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[name]
        return _resolve(name)

    def pairs(self, items: list) -> list[tuple[Any, Any]]:
        return [(self.dec(k), self.dec(v)) for k, v in items]

    def dec(self, spec: Any) -> Any:
        if not isinstance(spec, dict):
            return spec
        if "obj" in spec:
            cls = _resolve(spec["obj"])
            if not isinstance(cls, type):
                raise UnsupportedRiverObject(f"{spec['obj']!r} is not a class")
            obj = object.__new__(cls)
            self.memo[spec["id"]] = obj
            obj.__dict__.update({k: self.dec(v) for k, v in spec["attrs"].items()})
            return obj
        if "ref" in spec:
            return self.memo[spec["ref"]]
        if "dict" in spec:
            return dict(self.pairs(spec["dict"]))
        if "OrderedDict" in spec:
            return collections.OrderedDict(self.pairs(spec["OrderedDict"]))
        if "Counter" in spec:
            return collections.Counter(dict(self.pairs(spec["Counter"])))
        if "defaultdict" in spec:
            factory = None if spec["factory"] is None else self.callable_ref(spec["factory"])
            return collections.defaultdict(factory, self.pairs(spec["defaultdict"]))
        if "deque" in spec:
            return collections.deque((self.dec(v) for v in spec["deque"]), maxlen=spec["maxlen"])
        for name, container in (("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset)):
            if name in spec:
                return container(self.dec(v) for v in spec[name])
        if "VectorDict" in spec:
            from river.utils import VectorDict

            factory = None if spec["factory"] is None else self.dec(spec["factory"])
            mask = None if spec["mask"] is None else self.dec(spec["mask"])
            return VectorDict(dict(self.pairs(spec["VectorDict"])), factory, mask, False)
        if "random" in spec:
            version, internal, gauss = spec["random"]
            rng = random.Random()
            rng.setstate((version, tuple(internal), gauss))
            return rng
        if "nd" in spec:
            return np.asarray(spec["nd"], dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])
        if "np" in spec:
            return np.dtype(spec["np"]).type(spec["v"])
        if "type" in spec or "partial" in spec or "method" in spec:
            return self.callable_ref(spec)
        raise UnsupportedRiverObject(f"unknown encoded entry with keys {sorted(spec)}")


def encode(obj: Any) -> Any:
    """The JSON-compatible tree of ``obj``; raises ``UnsupportedRiverObject`` naming what cannot be stored."""
    return _Encoder().enc(obj)


def decode(tree: Any) -> Any:
    """Rebuild an object from :func:`encode`'s output, creating only allow-listed things."""
    return _Decoder().dec(tree)


def dumps(obj: Any) -> str:
    return json.dumps(encode(obj), separators=(",", ":"), allow_nan=True)


def loads(text: str) -> Any:
    return decode(json.loads(text))

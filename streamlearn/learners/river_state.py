"""Pickle-free encoding of river objects (estimators, metrics, statistics) as JSON.

river estimators keep their learned state in plain Python attributes: numbers,
dicts keyed by feature name, ``collections`` containers and small river objects
(statistics, optimisers, schedulers, ``VectorDict``). :func:`encode` walks that
object graph and writes it as JSON; :func:`decode` rebuilds it.

Why this is safe to load: decoding only ever

- builds JSON primitives and the containers ``list``, ``tuple``, ``set``,
  ``frozenset``, ``dict``, ``OrderedDict``, ``defaultdict``, ``Counter``, ``deque``,
  and ``random.Random`` (through ``setstate``);
- creates instances of classes defined in the allow-listed river estimator modules
  below, through ``object.__new__`` and ``__dict__`` or declared ``__slots__``
  assignment (no ``__init__``, ``__setstate__`` or ``__reduce__`` is called), and
  named tuples of those classes through ``tuple.__new__``;
- creates river's compiled helpers (ADWIN's ``AdaptiveWindowing``, the Rust
  statistics), only the types listed in ``NATIVE_TYPES``, from their numeric
  constructor arguments and their own binary state (``__setstate__`` of bytes:
  Rust decodes data, never code);
- ``numpy.random.RandomState`` (through ``set_state``), list iterators and public
  methods of ``str`` (text transformers keep ``str.lower``);
- refers to callables (``defaultdict`` factories, bound methods) that are
  allow-listed types, ``copy.deepcopy``, classes and functions defined in
  allow-listed river modules looked up by name, public sampling methods of a
  ``random.Random``, or methods of allow-listed objects.

The allow-list holds estimator modules only: river's data sets, stream readers,
evaluation, compatibility wrappers and anything else that touches files or the
network are excluded (``DENIED_MODULES``). Nothing else can be named, so a checkpoint cannot make the loader run code. Any
object outside the allow-list makes :func:`encode` raise ``UnsupportedRiverObject``
naming it — a model that cannot be stored is refused, never half stored.

Floats are written with ``repr`` precision, dict insertion order and key types
are kept, and shared references (a ``Pipeline``'s cached steps, ``F1``'s shared
confusion matrix) stay shared, so predictions after a round trip are identical.
"""

from __future__ import annotations

import base64
import collections
import copy
import functools
import importlib
import json
import random
import statistics
import types
from typing import Any

import numpy as np

__all__ = ["ALLOWED_MODULES", "UnsupportedRiverObject", "allowed_module", "decode", "dumps", "encode", "function", "function_name", "loads"]

#: Modules whose classes and functions may appear in an encoded river object: river's
#: estimator packages and what estimators are made of (statistics, optimisers, metrics).
ALLOWED_MODULES = tuple(
    f"river.{name}"
    for name in (
        "active", "anomaly", "bandit", "cluster", "compose", "covariance", "drift", "ensemble",
        "facto", "feature_extraction", "feature_selection", "forest", "imblearn", "linear_model",
        "metrics", "misc", "model_selection", "multiclass", "multioutput", "naive_bayes",
        "neighbors", "optim", "preprocessing", "proba", "reco", "rules", "sketch", "stats",
        "time_series", "tree", "utils", "dummy",
    )
)

#: Parts of the allowed packages that read files, reach the network or run other tools.
DENIED_MODULES = ("river.bandit.datasets", "river.bandit.envs", "river.bandit.evaluate", "river.utils.pandas")

#: river's compiled helpers, stored as numeric constructor arguments plus their own binary state.
NATIVE_TYPES = frozenset(
    {
        "river._river_rust.drift:AdaptiveWindowing",
        *(
            f"river._river_rust.stats:{name}"
            for name in (
                "RsEWMean", "RsEWVar", "RsIQR", "RsKurtosis", "RsPeakToPeak", "RsQuantile",
                "RsRollingIQR", "RsRollingPRAUC", "RsRollingQuantile", "RsRollingROCAUC", "RsSkew",
            )
        ),
    }
)
#: river's compiled functions that estimators keep as attributes (distance functions, hashing).
NATIVE_FUNCTIONS = frozenset(
    {
        "river._river_rust.vectordict:euclidean_distance_tuple",
        "river._river_rust.vectordict:euclidean_distance_dict",
        "river._river_rust.feature_hashing:feature_hash",
    }
)
#: Largest integer constructor argument of a compiled helper (window sizes): more is refused
#: on load, so a checkpoint cannot make one preallocate without bound.
NATIVE_MAX_INT = 10_000_000

#: Allow-listed classes whose state cannot survive a round trip, and why.
UNSUPPORTED_CLASSES = {
    "river.feature_extraction.kernel_approx:RandomTreesEmbedding": "it keys its state by id() of its tree nodes, "
    "and object identities do not survive a checkpoint",
}

#: Methods of ``random.Random`` that river keeps as attributes (samplers).
RANDOM_METHODS = frozenset({"random", "gauss", "normalvariate", "uniform", "randint", "choice", "shuffle", "betavariate", "expovariate", "sample", "getrandbits"})

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
    types.MethodDescriptorType,
    functools.partial,
)


#: Builtin containers that allow-listed classes may extend (HoltWinters' components are deques).
#: A subclass of defaultdict, Counter or OrderedDict is refused: its own constructor would be needed.
_CONTAINER_BASES = (collections.deque, list, dict)

#: Types the encoder stores as they are (JSON scalars).
_PLAIN = frozenset({bool, int, float, str})
_NOT_INLINE = object()


def _inline(value: Any) -> Any:
    """What ``_Encoder.enc`` gives for a list or tuple of plain values (nested, or empty
    dicts), or ``_NOT_INLINE`` for anything else (which may need the memo or checks)."""
    kind = type(value)
    if kind is not tuple and kind is not list:
        return {"dict": []} if kind is dict and not value else _NOT_INLINE
    out = []
    append = out.append
    for member in value:
        member_kind = type(member)
        if member_kind in _PLAIN or member is None:
            append(member)
        elif member_kind is dict and not member:
            append({"dict": []})
        else:
            encoded = _inline(member)
            if encoded is _NOT_INLINE:
                return _NOT_INLINE
            append(encoded)
    return {"tuple" if kind is tuple else "list": out}


_REFUSED_BASES = (collections.defaultdict, collections.Counter, collections.OrderedDict, set, frozenset)


class UnsupportedRiverObject(TypeError):
    """The object graph holds something that cannot be stored without pickle."""


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in prefixes)


def allowed_module(module: str) -> bool:
    """Whether classes and functions of ``module`` may appear in a checkpoint (and in a config)."""
    return _within(module, ALLOWED_MODULES) and not _within(module, DENIED_MODULES)


_allowed_module = allowed_module


def function(name: str) -> Any:
    """The allow-listed river function called ``"module:name"`` (a distance, a hash)."""
    target = _resolve(name) if isinstance(name, str) else None
    if not isinstance(target, types.FunctionType | types.BuiltinFunctionType):
        raise UnsupportedRiverObject(f"{name!r} is not an allow-listed river function")
    return target


def function_name(fn: Any) -> str | None:
    """``"module:name"`` of an allow-listed river function, else None."""
    if isinstance(fn, types.BuiltinFunctionType) and _qualified(fn) in NATIVE_FUNCTIONS:
        return _qualified(fn)
    if isinstance(fn, types.FunctionType) and allowed_module(fn.__module__) and "<" not in fn.__qualname__:
        return _qualified(fn)
    return None


def _qualified(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _resolve(name: str) -> Any:
    if name in NATIVE_FUNCTIONS:
        module_name, _, function = name.partition(":")
        return getattr(importlib.import_module(module_name), function)
    module_name, _, qualname = name.partition(":")
    if not _allowed_module(module_name):
        raise UnsupportedRiverObject(f"refusing to load {name!r}: module not allow-listed")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        if part.startswith("__") or part == "<locals>":
            raise UnsupportedRiverObject(f"refusing to load {name!r}")
        target = getattr(target, part)
    # Only classes and functions that say where they are defined: never a module, a value
    # imported from elsewhere or a helper not in NATIVE_TYPES.
    defined_in = getattr(target, "__module__", None) if isinstance(target, type | types.FunctionType) else None
    if not isinstance(defined_in, str) or not _allowed_module(defined_in):
        raise UnsupportedRiverObject(f"refusing to load {name!r}: not a class or function of an allow-listed module")
    return target


def _slot_names(cls: type) -> list[str]:
    names = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    return [n for n in dict.fromkeys(names) if n not in ("__dict__", "__weakref__")]


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
        if not isinstance(fn, _CALLABLE_TYPES):  # a callable river object (an initialiser)
            return {"value": self.enc(fn, where)}
        if isinstance(fn, types.MethodDescriptorType) and fn.__objclass__ is str and not fn.__name__.startswith("_"):
            return {"str_method": fn.__name__}
        if isinstance(fn, types.BuiltinMethodType) and type(fn.__self__) is random.Random and fn.__name__ in RANDOM_METHODS:
            return {"method": fn.__name__, "self": self.enc(fn.__self__, where)}
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
        if isinstance(fn, types.BuiltinFunctionType) and _qualified(fn) in NATIVE_FUNCTIONS:
            return {"type": _qualified(fn)}
        if _allowed_module(module) and hasattr(fn, "__qualname__") and "<locals>" not in fn.__qualname__:
            return {"type": _qualified(fn)}
        raise UnsupportedRiverObject(f"{where}: cannot store the callable {fn!r}")

    def pairs(self, items: Any, where: str) -> list:
        return [[self.enc(k, where), self.enc(v, f"{where}[{k!r}]")] for k, v in items]

    def members(self, values: Any, where: str) -> list:
        """``[enc(v) for v in values]``, with plain values and nests of them inline.

        A rolling metric's window is a deque of ``((y_true, y_pred), {})`` (a thousand
        by default) and every safe point encodes it: :func:`_inline` gives the same
        JSON without the general encoder's checks.
        """
        out = []
        append, enc = out.append, self.enc
        for v in values:
            if type(v) in _PLAIN or v is None:
                append(v)
                continue
            encoded = _inline(v)
            append(enc(v, where) if encoded is _NOT_INLINE else encoded)
        return out

    def shared(self, obj: Any, spec: Any) -> dict:
        """``spec()`` with an id, or a reference to it when ``obj`` was met before (the sharing is kept)."""
        ident = self.memo.get(id(obj))
        if ident is not None:
            return {"ref": ident}
        ident = self.memo[id(obj)] = len(self.memo)
        self.keep_alive.append(obj)
        return {**spec(), "id": ident}

    @staticmethod
    def ndarray(arr: np.ndarray) -> dict:
        spec = {"nd": arr.tolist(), "dtype": arr.dtype.str, "shape": list(arr.shape)}
        if arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
            spec["order"] = "F"  # in-place BLAS updates (BayesianLinearRegression) need Fortran order
        return spec

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
            return self.shared(obj, lambda: self.ndarray(obj))
        if isinstance(obj, _CALLABLE_TYPES):
            return self.callable_ref(obj, where)
        if type(obj) is collections.Counter:
            return {"Counter": self.pairs(obj.items(), where)}
        if type(obj) is collections.defaultdict:
            factory = None if obj.default_factory is None else self.callable_ref(obj.default_factory, where)
            return {"defaultdict": self.pairs(obj.items(), where), "factory": factory}
        if type(obj) is collections.OrderedDict:
            return {"OrderedDict": self.pairs(obj.items(), where)}
        if type(obj) is dict:
            return {"dict": self.pairs(obj.items(), where)}
        if type(obj) is collections.deque:
            return {"deque": self.members(obj, where), "maxlen": obj.maxlen}
        if type(obj) in (set, frozenset):
            # Sorted when the members allow it: a set's iteration order depends on its history,
            # and the same set must always encode (and hash) the same way.
            members = list(obj)
            if all(type(v) is str for v in members) or all(type(v) in (int, float) for v in members):
                members.sort()
            return {type(obj).__name__: [self.enc(v, where) for v in members]}
        if type(obj) in (list, tuple):
            return {type(obj).__name__: self.members(obj, where)}
        if type(obj) is random.Random:
            version, internal, gauss = obj.getstate()
            # 625 words as base64 of little-endian uint32 (river keeps one generator per Gaussian:
            # in a forest these dominate the state, and base64 is half the size of a JSON list).
            words = base64.b64encode(np.asarray(internal, dtype="<u4").tobytes()).decode()
            return self.shared(obj, lambda: {"random": [version, words, gauss]})
        if _is_vector_dict(obj):
            _, (data, factory, mask, *_rest) = obj.__reduce__()
            return {
                "VectorDict": self.pairs(dict(data).items(), where),
                "factory": None if factory is None else self.enc(factory, where),
                "mask": None if mask is None else self.enc(mask, where),
            }
        if type(obj) is np.random.RandomState:
            name, keys, pos, has_gauss, cached = obj.get_state()
            return self.shared(obj, lambda: {"RandomState": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]})
        if type(obj) is statistics.NormalDist:
            return {"NormalDist": [obj.mean, obj.stdev]}
        if type(obj).__name__ == "list_iterator":
            _, (items,), index = obj.__reduce__()
            return {"list_iterator": [self.enc(v, where) for v in items[index:]]}
        cls = type(obj)
        if _qualified(cls) in NATIVE_TYPES:
            args = cls.__getnewargs__(obj) if hasattr(cls, "__getnewargs__") else ()
            return {"native": _qualified(cls), "args": list(args), "state": base64.b64encode(obj.__getstate__()).decode()}
        if not _allowed_module(cls.__module__):
            raise UnsupportedRiverObject(
                f"{where}: {cls.__module__}.{cls.__qualname__} is not in the allow-listed river "
                f"modules ({', '.join(ALLOWED_MODULES)}), so it cannot be checkpointed without pickle"
            )
        if _qualified(cls) in UNSUPPORTED_CLASSES:
            raise UnsupportedRiverObject(f"{where}: {cls.__qualname__} cannot be stored: {UNSUPPORTED_CLASSES[_qualified(cls)]}")
        if isinstance(obj, tuple):  # a named tuple
            return {"tuple_of": _qualified(cls), "items": [self.enc(v, where) for v in obj]}
        slots = _slot_names(cls)
        container = next((t for t in _CONTAINER_BASES if isinstance(obj, t)), None)
        if isinstance(obj, _REFUSED_BASES):
            raise UnsupportedRiverObject(f"{where}: {cls.__qualname__} extends a container type the codec does not store")
        if not hasattr(obj, "__dict__") and not slots:
            raise UnsupportedRiverObject(f"{where}: {cls.__qualname__} has no __dict__ or __slots__ to store")
        ident = self.memo.get(id(obj))
        if ident is not None:
            return {"ref": ident}
        ident = self.memo[id(obj)] = len(self.memo)
        self.keep_alive.append(obj)
        attrs = {k: self.enc(v, f"{where}.{k}") for k, v in getattr(obj, "__dict__", {}).items()}
        spec = {"obj": _qualified(cls), "id": ident, "attrs": attrs}
        if slots:
            spec["slots"] = {k: self.enc(getattr(obj, k), f"{where}.{k}") for k in slots if hasattr(obj, k)}
        if container is dict:
            spec["items"] = self.pairs(obj.items(), where)
        elif container is not None:
            spec["items"] = [self.enc(v, where) for v in obj]
            if container is collections.deque:
                spec["maxlen"] = obj.maxlen
        return spec


class _Decoder:
    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}

    def callable_ref(self, spec: dict) -> Any:
        if "value" in spec:
            return self.dec(spec["value"])
        if "str_method" in spec:
            name = spec["str_method"]
            if not isinstance(name, str) or name.startswith("_") or not hasattr(str, name):
                raise UnsupportedRiverObject(f"refusing to use str method {name!r}")
            return getattr(str, name)
        if "method" in spec:
            owner, name = self.dec(spec["self"]), spec["method"]
            if type(owner) is random.Random and name in RANDOM_METHODS:
                return getattr(owner, name)
            if not isinstance(name, str) or name.startswith("__") or not _allowed_module(type(owner).__module__):
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

    @staticmethod
    def native(spec: dict) -> Any:
        name, args = spec["native"], spec["args"]
        if name not in NATIVE_TYPES:
            raise UnsupportedRiverObject(f"refusing to load {name!r}: not a listed compiled helper")
        for arg in args:
            if isinstance(arg, bool) or not isinstance(arg, int | float | type(None)):
                raise UnsupportedRiverObject(f"{name}: constructor arguments must be numbers, got {arg!r}")
            if isinstance(arg, int) and abs(arg) > NATIVE_MAX_INT:
                raise UnsupportedRiverObject(f"{name}: constructor argument {arg} is larger than {NATIVE_MAX_INT}")
        module_name, _, class_name = name.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        obj = cls.__new__(cls, *args)
        try:
            obj.__setstate__(base64.b64decode(spec["state"], validate=True))
        except BaseException as exc:  # malformed bytes: an error, or a Rust panic (a BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise UnsupportedRiverObject(f"{name}: its stored state does not decode ({exc})") from None
        return obj

    def dec(self, spec: Any) -> Any:
        if not isinstance(spec, dict):
            return spec
        if "id" in spec and "obj" not in spec:  # a shared leaf: an array or a generator
            leaf = self.leaf(spec)
            self.memo[spec["id"]] = leaf
            return leaf
        return self.leaf(spec)

    def leaf(self, spec: dict) -> Any:
        if "obj" in spec:
            cls = _resolve(spec["obj"])
            if not isinstance(cls, type):
                raise UnsupportedRiverObject(f"{spec['obj']!r} is not a class")
            if issubclass(cls, _REFUSED_BASES):
                raise UnsupportedRiverObject(f"{spec['obj']!r} extends a container type the codec does not store")
            container = next((t for t in _CONTAINER_BASES if issubclass(cls, t)), None)
            # A container subclass is made by its builtin base (no Python code runs), then filled.
            obj = object.__new__(cls) if container is None else container.__new__(cls)
            self.memo[spec["id"]] = obj
            if container is dict:
                dict.update(obj, self.pairs(spec.get("items", [])))
            elif container is list:
                list.extend(obj, [self.dec(v) for v in spec.get("items", [])])
            elif container is collections.deque:
                collections.deque.__init__(obj, [self.dec(v) for v in spec.get("items", [])], spec.get("maxlen"))
            if spec["attrs"]:
                obj.__dict__.update({k: self.dec(v) for k, v in spec["attrs"].items()})
            slots = spec.get("slots") or {}
            allowed = set(_slot_names(cls))
            for name, value in slots.items():
                if name not in allowed:
                    raise UnsupportedRiverObject(f"{spec['obj']!r} declares no slot {name!r}")
                setattr(obj, name, self.dec(value))
            return obj
        if "native" in spec:
            return self.native(spec)
        if "tuple_of" in spec:
            cls = _resolve(spec["tuple_of"])
            if not isinstance(cls, type) or not issubclass(cls, tuple):
                raise UnsupportedRiverObject(f"{spec['tuple_of']!r} is not a named tuple")
            return tuple.__new__(cls, [self.dec(v) for v in spec["items"]])
        if "RandomState" in spec:
            name, keys, pos, has_gauss, cached = spec["RandomState"]
            if name != "MT19937" or len(keys) != 624:
                raise UnsupportedRiverObject("a RandomState must be an MT19937 state of 624 words")
            rng = np.random.RandomState()
            rng.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
            return rng
        if "NormalDist" in spec:
            mean, stdev = spec["NormalDist"]
            return statistics.NormalDist(float(mean), float(stdev))
        if "list_iterator" in spec:
            return iter([self.dec(v) for v in spec["list_iterator"]])
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
            if isinstance(internal, str):
                internal = np.frombuffer(base64.b64decode(internal, validate=True), dtype="<u4").tolist()
            if len(internal) != 625:
                raise UnsupportedRiverObject("a random.Random state must have 625 words")
            rng = random.Random()
            rng.setstate((version, tuple(internal), gauss))
            return rng
        if "nd" in spec:
            dtype = np.dtype(spec["dtype"])
            if dtype.hasobject:
                raise UnsupportedRiverObject("object arrays cannot be loaded")
            arr = np.asarray(spec["nd"], dtype=dtype).reshape(spec["shape"])
            return np.asfortranarray(arr) if spec.get("order") == "F" else arr
        if "np" in spec:
            return np.dtype(spec["np"]).type(spec["v"])
        if "type" in spec or "partial" in spec or "method" in spec or "str_method" in spec or "value" in spec:
            return self.callable_ref(spec)
        raise UnsupportedRiverObject(f"unknown encoded entry with keys {sorted(spec)}")


def encode(obj: Any) -> Any:
    """The JSON-compatible tree of ``obj``; raises ``UnsupportedRiverObject`` naming what cannot be stored."""
    return _Encoder().enc(obj)


def decode(tree: Any) -> Any:
    """Rebuild an object from :func:`encode`'s output, creating only allow-listed things."""
    return _Decoder().dec(tree)


def dumps(obj: Any) -> str:
    # The encoded tree is acyclic (shared objects are references), so the circular check is waste.
    return json.dumps(encode(obj), separators=(",", ":"), allow_nan=True, check_circular=False)


def loads(text: str) -> Any:
    return decode(json.loads(text))

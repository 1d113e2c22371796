"""The Learner protocol and the helpers that turn learner state into a flat dict.

Every streamlearn learner follows river's conventions::

    learner.learn_one(x, y=None)              # update from one event
    learner.predict_one(x)                    # pure: never changes state
    learner.learn_many(X, y) / predict_many(X)  # optional vectorised batch path
    learner.state_dict() -> State             # flat dict, see below
    learner.load_state_dict(state)            # exact inverse of state_dict

A *state* is a flat ``dict[str, np.ndarray | int | float | str | bool]``. Nested
structures are flattened with ``"/"`` separated keys (:func:`flatten`), NumPy and
Python RNGs are stored with :func:`rng_state` / :func:`python_rng_state`, torch
modules, optimisers and generators with the ``torch_*`` helpers. The checkpoint
store writes a state as Parquet rows without pickle, so nothing else may appear
in it. :func:`state_hash` is the SHA-256 that checkpoints and tests compare.

Constructor arguments are the learner's parameters (river's ``_get_params``),
JSON-serialisable, so a TOML config can name a learner and its parameters.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

StateValue = np.ndarray | int | float | str | bool
State = dict[str, StateValue]

SEP = "/"

__all__ = [
    "Learner",
    "State",
    "StateValue",
    "check_state",
    "flatten",
    "unflatten",
    "json_state",
    "load_json_state",
    "rng_state",
    "load_rng_state",
    "python_rng_state",
    "load_python_rng_state",
    "torch_module_state",
    "load_torch_module_state",
    "torch_optimizer_state",
    "load_torch_optimizer_state",
    "torch_generator_state",
    "load_torch_generator_state",
    "entry_bytes",
    "state_hash",
    "states_equal",
    "subset",
]


@runtime_checkable
class Learner(Protocol):
    """What the engine needs from a learner.

    ``learn_many`` / ``predict_many`` are optional; the engine uses them for
    micro-batches when they exist.
    """

    def learn_one(self, x: Any, y: Any = None) -> Any: ...

    def predict_one(self, x: Any) -> Any: ...

    def state_dict(self) -> State: ...

    def load_state_dict(self, state: Mapping[str, StateValue]) -> None: ...


# --------------------------------------------------------------------------- checks


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"state entry {key!r}: object arrays cannot be stored (no pickle)")
        return
    if isinstance(value, bool | int | float | str | np.bool_ | np.integer | np.floating):
        return
    raise TypeError(
        f"state entry {key!r} has type {type(value).__name__}; a state holds only "
        "numpy arrays, int, float, str and bool (use the helpers in streamlearn.learners.base)"
    )


def check_state(state: Mapping[str, Any]) -> State:
    """Validate that ``state`` is a flat dict of storable values and return it."""
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"state keys must be str, got {key!r}")
        _check_value(key, value)
    return dict(state)


# --------------------------------------------------------------------------- nesting


def flatten(nested: Mapping[str, Any], prefix: str = "") -> State:
    """Flatten nested mappings into ``"a/b/c"`` keys.

    >>> flatten({"w": 1.0, "opt": {"lr": 0.1, "step": 3}})
    {'w': 1.0, 'opt/lr': 0.1, 'opt/step': 3}
    """
    out: State = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"cannot flatten the empty mapping at {name!r}")
            out.update(flatten(value, name + SEP))
        else:
            _check_value(name, value)
            out[name] = value
    return out


def unflatten(state: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`.

    >>> unflatten({"w": 1.0, "opt/lr": 0.1, "opt/step": 3})
    {'w': 1.0, 'opt': {'lr': 0.1, 'step': 3}}
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        node = out
        *parents, leaf = key.split(SEP)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def subset(state: Mapping[str, Any], prefix: str) -> State:
    """The entries under ``prefix`` with the prefix removed.

    >>> subset({"a/x": 1, "a/y": 2, "b/x": 3}, "a/")
    {'x': 1, 'y': 2}
    """
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def json_state(value: Any) -> str:
    """Encode plain Python data (dicts, lists, numbers, strings) as a JSON string entry.

    Floats round-trip exactly (``repr``); NaN and infinities are allowed.
    """
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def load_json_state(text: str) -> Any:
    return json.loads(text)


# --------------------------------------------------------------------------- RNGs


def rng_state(rng: np.random.Generator) -> str:
    """A NumPy Generator's bit-generator state as a JSON string (128-bit ints included)."""
    state = rng.bit_generator.state

    def encode(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: encode(x) for k, x in v.items()}
        if isinstance(v, np.ndarray):
            return {"__ndarray__": v.tolist(), "dtype": str(v.dtype)}
        if isinstance(v, np.integer):
            return int(v)
        return v

    return json_state(encode(state))


def load_rng_state(rng: np.random.Generator, text: str) -> None:
    def decode(v: Any) -> Any:
        if isinstance(v, dict):
            if "__ndarray__" in v:
                return np.asarray(v["__ndarray__"], dtype=v["dtype"])
            return {k: decode(x) for k, x in v.items()}
        return v

    state = decode(json.loads(text))
    if state["bit_generator"] != type(rng.bit_generator).__name__:
        raise ValueError(
            f"RNG state is for {state['bit_generator']}, "
            f"the learner uses {type(rng.bit_generator).__name__}"
        )
    rng.bit_generator.state = state


def python_rng_state(rng: random.Random) -> State:
    """A ``random.Random`` state as ``{"version", "internal", "gauss"}`` entries."""
    version, internal, gauss = rng.getstate()
    return {
        "version": int(version),
        "internal": np.asarray(internal, dtype=np.uint32),
        "gauss": float("nan") if gauss is None else float(gauss),
    }


def load_python_rng_state(rng: random.Random, state: Mapping[str, Any]) -> None:
    gauss = float(state["gauss"])
    rng.setstate(
        (
            int(state["version"]),
            tuple(int(v) for v in np.asarray(state["internal"])),
            None if np.isnan(gauss) else gauss,
        )
    )


# --------------------------------------------------------------------------- torch


def torch_module_state(module: Any) -> State:
    """Parameters and buffers of a torch module as NumPy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_torch_module_state(module: Any, state: Mapping[str, Any]) -> None:
    import torch

    current = module.state_dict()
    missing = set(current) - set(state)
    unexpected = set(state) - set(current)
    if missing or unexpected:
        raise KeyError(
            f"torch module state mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    module.load_state_dict(
        {k: torch.from_numpy(np.array(state[k], copy=True)).to(current[k].dtype) for k in current}
    )


def torch_optimizer_state(optimizer: Any) -> State:
    """A torch optimiser's state: per-parameter tensors plus the param groups as JSON."""
    import torch

    sd = optimizer.state_dict()
    out: State = {}
    for index, per_param in sd["state"].items():
        for name, value in per_param.items():
            key = f"state/{index}/{name}"
            if isinstance(value, torch.Tensor):
                out[key] = value.detach().cpu().numpy().copy()
            else:
                out[key] = value
    out["param_groups"] = json_state(sd["param_groups"])
    return out


def load_torch_optimizer_state(optimizer: Any, state: Mapping[str, Any]) -> None:
    import torch

    per_param: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        if not key.startswith("state/"):
            continue
        _, index, name = key.split(SEP, 2)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.array(value, copy=True))
        per_param.setdefault(int(index), {})[name] = value
    groups = json.loads(state["param_groups"])
    for group in groups:  # JSON turns tuples (Adam's betas) into lists
        for k, v in group.items():
            if isinstance(v, list) and k != "params":
                group[k] = tuple(v)
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def torch_generator_state(generator: Any) -> np.ndarray:
    return generator.get_state().numpy().copy()


def load_torch_generator_state(generator: Any, value: np.ndarray) -> None:
    import torch

    generator.set_state(torch.from_numpy(np.array(value, dtype=np.uint8, copy=True)))


# --------------------------------------------------------------------------- hashing

#: Array data is hashed in chunks of this size, in parallel threads (hashlib releases the GIL).
HASH_CHUNK = 1 << 22


def entry_bytes(value: Any) -> tuple[str, tuple[int, ...], memoryview | bytes]:
    """(dtype, shape, bytes) of a state value: C-order little-endian array data (no copy when
    already so), or for scalars the type name with a decimal integer, an IEEE-754 double, one
    byte for a bool, or UTF-8 text. The checkpoint layout and :func:`state_hash` share it."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return arr.dtype.str, arr.shape, memoryview(arr.reshape(-1).view(np.uint8))
    if isinstance(value, bool | np.bool_):
        return "bool", (), b"\x01" if value else b"\x00"
    if isinstance(value, int | np.integer):
        return "int", (), str(int(value)).encode()
    if isinstance(value, float | np.floating):
        return "float", (), np.float64(value).tobytes()
    if isinstance(value, str):
        return "str", (), value.encode()
    raise TypeError(f"a state cannot hold a {type(value).__name__}")


def _sha256(data: memoryview | bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hash_chunks(data: memoryview | bytes) -> list[memoryview | bytes]:
    """How :func:`state_hash` splits one entry's bytes (one chunk unless it exceeds ``HASH_CHUNK``)."""
    n = len(data) if isinstance(data, bytes) else data.nbytes
    if n <= HASH_CHUNK:
        return [data]
    return [data[i : i + HASH_CHUNK] for i in range(0, n, HASH_CHUNK)]


_pool = None


#: Below this many bytes a state is hashed on the calling thread (a pool round trip costs more).
PARALLEL_HASH_BYTES = 2 << 20


def _parallel_map(fn: Any, items: list) -> list:
    """``list(map(fn, items))`` on a shared thread pool when there is enough work to share."""
    global _pool
    if sum(len(c) if isinstance(c, bytes) else c.nbytes for c in items) < PARALLEL_HASH_BYTES:
        return [fn(item) for item in items]
    if _pool is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="state-hash")
    return list(_pool.map(fn, items))


def state_hash(state: Mapping[str, Any]) -> str:
    """SHA-256 of a state, identical for identical states and different otherwise.

    For each entry in sorted key order: a JSON header ``[key, dtype, shape,
    nbytes]`` and the SHA-256 of each ``HASH_CHUNK`` of its bytes (a scalar or a
    small array is one chunk); the result is the SHA-256 of all of that. Chunks
    are hashed in parallel threads, so hashing a large state uses every core.
    Two states have the same hash exactly when every entry has the same name,
    type, shape and bit pattern (NaNs included).
    """
    entries = []
    chunks: list[memoryview | bytes] = []
    for key in sorted(state):
        dtype, shape, data = entry_bytes(state[key])
        first = len(chunks)
        chunks.extend(_hash_chunks(data))
        n = len(data) if isinstance(data, bytes) else data.nbytes
        entries.append((json_state([key, dtype, list(shape), n]).encode(), first, len(chunks)))
    digests = _parallel_map(_sha256, chunks)
    h = hashlib.sha256()
    for header, first, last in entries:
        h.update(len(header).to_bytes(8, "little"))
        h.update(header)
        for digest in digests[first:last]:
            h.update(digest)
    return h.hexdigest()


def states_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Bit-for-bit equality of two states (NaNs at the same places compare equal)."""
    return state_hash(a) == state_hash(b)

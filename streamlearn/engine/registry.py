"""Learner names usable in a config, and the processor that feeds each one.

A config's ``[learner] name`` is one of the names below, or ``"package.module:Class"``
for a learner of your own together with ``processor = "<one of PROCESSORS>"``.
Such a name must be a class with the learner's methods (``LEARNER_METHODS``): a
function (``os:system``), a module or a class that is no learner (``subprocess:Popen``)
is refused before it is called. Naming importable code makes a config trusted code
(docs/security.md). Modules are imported only when used, so a learner's heavy
dependencies (torch) cost nothing to the others.
"""

from __future__ import annotations

import importlib
from typing import Any

#: name → (learner class, processor name)
LEARNERS: dict[str, tuple[str, str]] = {
    "river": ("streamlearn.learners.river_adapter:RiverLearner", "supervised"),
    "torch": ("streamlearn.learners.torch_learner:TorchLearner", "supervised"),
    "active": ("streamlearn.learners.active:ActiveLearner", "active"),
    "groupwise": ("streamlearn.learners.groupwise:GroupwiseRegressor", "groupwise"),
    "dictionary": ("streamlearn.learners.dictionary:FrankWolfeODL", "dictionary"),
    "lame": ("streamlearn.learners.lame:LAME", "lame"),
    "bandit": ("streamlearn.learners.bandits:RecoveringUCB", "bandit"),
    "oer": ("streamlearn.learners.corl:OER", "oer"),
}

#: processor name → processor class
PROCESSORS: dict[str, str] = {
    "supervised": "streamlearn.engine.processors.supervised:SupervisedProcessor",
    "active": "streamlearn.engine.processors.active:ActiveProcessor",
    "groupwise": "streamlearn.engine.processors.groupwise:GroupwiseProcessor",
    "dictionary": "streamlearn.engine.processors.dictionary:DictionaryProcessor",
    "lame": "streamlearn.engine.processors.lame:LAMEProcessor",
    "bandit": "streamlearn.engine.processors.bandit:BanditProcessor",
    "oer": "streamlearn.engine.processors.oer:OERProcessor",
}


#: What a learner of your own must define (the ``Learner`` protocol of ``streamlearn.learners.base``).
LEARNER_METHODS = ("learn_one", "predict_one", "state_dict", "load_state_dict")


class UnknownName(LookupError):
    """A learner or processor name that cannot be resolved; the message says why."""


def import_object(spec: str) -> Any:
    """``"package.module:Name"`` → the object."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UnknownName(f"{spec!r} is not of the form 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UnknownName(f"cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UnknownName(f"module {module_name!r} has no {attr!r}") from None


def learner_class(name: str) -> type:
    """The class a learner name stands for; a ``"package.module:Class"`` must be a learner class."""
    if name in LEARNERS:
        return import_object(LEARNERS[name][0])
    if ":" in name:
        return check_learner_class(name, import_object(name))
    raise UnknownName(f"unknown learner {name!r}; known learners: {', '.join(LEARNERS)} (or 'package.module:Class')")


def check_learner_class(name: str, obj: Any) -> type:
    """``obj`` if it is a class with every method in ``LEARNER_METHODS``; else :class:`UnknownName`."""
    if not isinstance(obj, type):
        raise UnknownName(f"{name!r} is a {type(obj).__name__}, not a class: a learner is a class with {', '.join(LEARNER_METHODS)}")
    missing = [m for m in LEARNER_METHODS if not callable(getattr(obj, m, None))]
    if missing:
        raise UnknownName(f"{name!r} is not a learner class: it has no {', '.join(missing)}")
    return obj


def processor_class(learner_name: str, processor: str | None = None) -> type:
    if learner_name not in LEARNERS and ":" not in learner_name:
        raise UnknownName(f"unknown learner {learner_name!r}; known learners: {', '.join(LEARNERS)} (or 'package.module:Class')")
    if processor is None:
        if learner_name not in LEARNERS:
            raise UnknownName(
                f"learner {learner_name!r} is not built in, so learner.processor must name one of: {', '.join(PROCESSORS)}"
            )
        processor = LEARNERS[learner_name][1]
    if processor not in PROCESSORS:
        raise UnknownName(f"unknown processor {processor!r}; known processors: {', '.join(PROCESSORS)}")
    return import_object(PROCESSORS[processor])

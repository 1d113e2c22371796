"""Online learners. Nothing here knows about Kafka, files or the engine.

``from streamlearn.learners import LAME`` works for every learner; each is
imported only when first used, so torch is loaded only for OER.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RiverLearner": "streamlearn.learners.river_adapter",
    "TorchLearner": "streamlearn.learners.torch_learner",
    "ActiveLearner": "streamlearn.learners.active",
    "GroupwiseRegressor": "streamlearn.learners.groupwise",
    "OnlineRidge": "streamlearn.learners.groupwise",
    "AdaNormalHedge": "streamlearn.learners.groupwise",
    "FrankWolfeODL": "streamlearn.learners.dictionary",
    "LAME": "streamlearn.learners.lame",
    "RecoveringUCB": "streamlearn.learners.bandits",
    "PeriodicPolicy": "streamlearn.learners.bandits",
    "OER": "streamlearn.learners.corl",
    "TD3BC": "streamlearn.learners.corl",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamlearn.learners' has no attribute {name!r}")

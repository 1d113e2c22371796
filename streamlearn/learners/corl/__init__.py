"""Continual offline reinforcement learning: Offline Experience Replay (OER) and its parts.

- :class:`OER` — the continual learner (stream form and batch form);
- :class:`TD3BC` / :class:`TD3BCConfig` — the offline RL learner of each task;
- :class:`DynamicsEnsemble` — the transition-model ensemble of MBES;
- :class:`MBES` — model-based experience selection of a finished task's buffer;
- :mod:`~streamlearn.learners.corl.pointmass` — the built-in 2-D point-mass benchmark.

Reference: Gai, Wang, He, "OER: Offline Experience Replay for Continual Offline
Reinforcement Learning" (arXiv 2305.13804).
"""

from streamlearn.learners.corl.dynamics import DynamicsEnsemble
from streamlearn.learners.corl.mbes import MBES
from streamlearn.learners.corl.oer import OER
from streamlearn.learners.corl.pointmass import PointMass
from streamlearn.learners.corl.td3bc import TD3BC, TD3BCConfig, Transitions

__all__ = ["MBES", "OER", "TD3BC", "DynamicsEnsemble", "PointMass", "TD3BCConfig", "Transitions"]

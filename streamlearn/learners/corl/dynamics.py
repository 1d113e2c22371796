"""An ensemble of MLP transition models, T̂(s, a) = s + Δ̂(s, a), for model-based experience selection.

Each of ``n_models`` MLPs predicts the state change ``Δs = s' − s`` from ``(s, a)``
(inputs and targets standardised with the training data's statistics) and is
trained with mean squared error on its own bootstrap draw of every batch, so the
members disagree where data are scarce: the spread of their predictions is the
model's uncertainty. The members are evaluated together with batched matrix
products, so an ensemble costs about as much as one wider MLP.

Parameters
----------
obs_dim, act_dim
    Sizes of observations and actions.
n_models
    Ensemble members (the paper: 5).
hidden, n_layers
    Width and number of hidden layers of every member.
generator
    torch generator the weights are drawn from.

Example
-------
>>> import numpy as np, torch
>>> from streamlearn.learners.corl import DynamicsEnsemble
>>> rng = np.random.default_rng(0)
>>> obs = rng.normal(size=(512, 2)).astype(np.float32)
>>> act = rng.uniform(-1, 1, size=(512, 1)).astype(np.float32)
>>> next_obs = obs + 0.1 * act
>>> model = DynamicsEnsemble(2, 1, n_models=3, hidden=32, generator=torch.Generator().manual_seed(0))
>>> loss = model.fit(obs, act, next_obs, steps=300, batch_size=64, lr=3e-3, rng=rng)
>>> bool(np.abs(model.predict(obs, act).mean(0) - next_obs).mean() < 0.05)
True

Reference: Gai, Wang, He, "OER: Offline Experience Replay for Continual Offline
Reinforcement Learning" (arXiv 2305.13804), section on MBES.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamlearn.learners.corl.nets import EnsembleMLP, adam

__all__ = ["DynamicsEnsemble"]


class DynamicsEnsemble(nn.Module):
    """Ensemble of MLPs predicting next states (see the module docstring)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_models: int = 5,
        hidden: int = 200,
        n_layers: int = 2,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if min(obs_dim, act_dim, n_models, hidden, n_layers) < 1:
            raise ValueError("obs_dim, act_dim, n_models, hidden and n_layers must all be at least 1")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.obs_dim, self.n_models = obs_dim, n_models
        sizes = [obs_dim + act_dim] + [hidden] * n_layers + [obs_dim]
        self.net = EnsembleMLP(n_models, sizes, generator)
        # Standardisation of inputs and targets, set from the training data by fit().
        self.register_buffer("in_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("in_std", torch.ones(obs_dim + act_dim))
        self.register_buffer("delta_mean", torch.zeros(obs_dim))
        self.register_buffer("delta_std", torch.ones(obs_dim))

    def fit(
        self,
        obs: np.ndarray,
        act: np.ndarray,
        next_obs: np.ndarray,
        steps: int,
        batch_size: int,
        lr: float,
        rng: np.random.Generator,
    ) -> float:
        """Train every member for ``steps`` Adam steps on its own bootstrap batches; the last loss."""
        inputs = torch.from_numpy(np.concatenate([obs, act], axis=1).astype(np.float32))
        delta = torch.from_numpy((np.asarray(next_obs) - np.asarray(obs)).astype(np.float32))
        with torch.no_grad():
            # A constant column (std 0) must not divide by zero: its scale is kept at 1.
            self.in_mean.copy_(inputs.mean(0))
            self.in_std.copy_(torch.where(inputs.std(0) > 1e-6, inputs.std(0), torch.ones(())))
            self.delta_mean.copy_(delta.mean(0))
            self.delta_std.copy_(torch.where(delta.std(0) > 1e-6, delta.std(0), torch.ones(())))
        x_all = (inputs - self.in_mean) / self.in_std
        y_all = (delta - self.delta_mean) / self.delta_std
        optimizer = adam(self, lr)
        loss = torch.zeros(())
        for _ in range(int(steps)):
            index = torch.from_numpy(rng.integers(0, len(x_all), size=(self.n_models, batch_size)))
            loss = ((self.net(x_all[index]) - y_all[index]) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return float(loss.item())

    def predict(self, obs: np.ndarray, act: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Every member's predicted next state: an array of shape (n_models, len(obs), obs_dim)."""
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        act_t = torch.as_tensor(np.asarray(act, dtype=np.float32))
        out = []
        with torch.no_grad():
            for start in range(0, len(obs_t), chunk):
                o, a = obs_t[start : start + chunk], act_t[start : start + chunk]
                x = (torch.cat([o, a], dim=1) - self.in_mean) / self.in_std
                delta = self.net(x.expand(self.n_models, -1, -1))
                out.append(o + delta * self.delta_std + self.delta_mean)
        if not out:
            return np.zeros((self.n_models, 0, self.obs_dim), dtype=np.float32)
        return torch.cat(out, dim=1).numpy()

"""Every learner the engine knows survives a Parquet checkpoint exactly.

For each registered learner: run its processor over part of a stream, store the
learner and processor state with ``CheckpointStore``, load it into a learner and
processor freshly built from the same config, and drive both the original and
the restored pair on the rest of the stream. Outputs (predictions, decisions,
label requests, codes, actions) and the final state hash must be identical.
"""

import copy
import json
import random

import numpy as np
import pytest
from river import datasets

from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.checkpointing import state_of
from streamlearn.engine.config import parse_config
from streamlearn.engine.processor import Item
from streamlearn.engine.registry import LEARNERS
from streamlearn.learners.base import state_hash, subset

PHISHING = [{"id": i, "x": x, "y": y} for i, (x, y) in enumerate(datasets.Phishing().take(240))]


class Stream:
    """Events for one learner; closed-loop streams look at the previous outputs."""

    def __init__(self, kind: str):
        self.kind, self.rng, self.i = kind, random.Random(0), 0

    def next(self, outputs: list) -> list[dict]:
        rng, i = self.rng, self.i
        self.i += 1
        if self.kind in ("river", "active", "torch"):
            return [PHISHING[i % len(PHISHING)]]
        if self.kind == "groupwise":
            x = {f"f{j}": rng.random() for j in range(4)}
            g1, g2 = rng.random() < 0.5, rng.random() < 0.3
            return [{"x": {**x, "g1": g1, "g2": g2}, "y": min(1.0, 0.3 * x["f0"] + 0.4 * g1 + 0.2 * rng.random())}]
        if self.kind == "dictionary":
            return [{"x": [rng.gauss(0, 1) for _ in range(4)]}]
        if self.kind == "lame":
            logits = [rng.gauss(0, 1) for _ in range(3)]
            z = np.exp(logits) / np.exp(logits).sum()
            return [{"probs": z.tolist(), "features": [rng.gauss(0, 1) for _ in range(5)], "y": rng.randrange(3), "id": i}]
        if self.kind == "bandit":
            rewards = [
                {"type": "reward", "t": o["t"], "arm": arm, "reward": rng.random()}
                for o in outputs
                if o.get("type") == "decision"
                for arm in o["arms"]
            ]
            return [*rewards, {"type": "decide", "t": i}]
        if self.kind == "oer":
            task = f"task{i // 40}"
            if i % 40 == 39:
                return [{"type": "task_end", "task": task}, {"type": "act", "task": "task0", "obs": [0.1, 0.2, 0.0, 0.0], "id": i}]
            obs = [rng.uniform(-1, 1) for _ in range(4)]
            action = [rng.uniform(-1, 1) for _ in range(2)]
            next_obs = [o + 0.1 * a for o, a in zip(obs, action * 2, strict=True)]
            return [{"task": task, "obs": obs, "action": action, "reward": rng.random(), "next_obs": next_obs, "done": i % 10 == 9}]
        raise AssertionError(self.kind)


LEARNER_TABLES = {
    "river": {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}},
    "torch": {
        "name": "torch",
        "params": {"module": "streamlearn.learners.torch_learner:mlp", "module_params": {"n_features": 9, "n_outputs": 2}},
    },
    "active": {"name": "active", "params": {"classifier": "linear_model.LogisticRegression", "strategy": "randvar", "budget": 0.3, "seed": 3}},
    "groupwise": {"name": "groupwise", "params": {"groups": ["g1", "g2"]}},
    "dictionary": {"name": "dictionary", "params": {"n_features": 4, "batch_size": 5, "seed": 1}},
    "lame": {"name": "lame", "params": {"batch_size": 8, "knn": 3}},
    "bandit": {"name": "bandit", "params": {"n_arms": 6, "k": 2, "d_max": 3, "seed": 2}},
    "oer": {
        "name": "oer",
        "params": {
            "obs_dim": 4, "act_dim": 2, "buffer_size": 12, "steps_per_task": 4, "hidden": 8, "batch_size": 8,
            "dynamics_steps": 3, "dynamics_hidden": 8, "n_models": 2, "n_neighbors": 4, "seed": 5,
        },
    },
}
EXTRA = {"active": {"processor": {"label_delay": 5}}, "river": {"eval": {"label_delay": 4}}}


def test_every_registered_learner_is_covered():
    assert set(LEARNER_TABLES) == set(LEARNERS)


def _build(kind):
    config = parse_config({"learner": LEARNER_TABLES[kind], **EXTRA.get(kind, {})}, env={})
    learner = config.build_learner()
    return learner, config.build_processor(learner, emit=True)


def _drive(processor, stream, steps, position):
    outputs = []
    last: list = []
    for _ in range(steps):
        items = []
        for event in stream.next(last):
            position["row"] += 1
            items.append(Item(dict(position), processor.decode(json.loads(json.dumps(event))), None))
        last = [o.payload for o in processor.process(items)]
        assert not processor.take_rejected()
        outputs.extend(last)
    return [{k: v for k, v in o.items() if k != "seconds"} for o in outputs]


@pytest.mark.parametrize("kind", sorted(LEARNER_TABLES))
def test_parquet_checkpoint_roundtrip_continues_identically(kind, tmp_path):
    import torch

    torch.set_num_threads(1)
    stream = Stream(kind)
    learner, processor = _build(kind)
    position = {"path": "s", "row": -1}
    _drive(processor, stream, 83, position)

    store = CheckpointStore(tmp_path)
    info = store.save(state_of(learner, processor), events=position["row"] + 1, positions={"s": dict(position)})
    checkpoint = store.load_latest()
    assert checkpoint.metadata["sha256"] == info.sha256
    restored, restored_processor = _build(kind)
    restored.load_state_dict(subset(checkpoint.state, "learner/"))
    restored_processor.load_state_dict(subset(checkpoint.state, "processor/"))
    assert state_hash(state_of(restored, restored_processor)) == info.sha256

    twin = copy.deepcopy(stream)
    original_out = _drive(processor, stream, 77, dict(position))
    restored_out = _drive(restored_processor, twin, 77, dict(position))
    assert original_out, "the continuation produced no outputs to compare"
    assert restored_out == original_out
    assert processor.metrics() == restored_processor.metrics()
    assert state_hash(state_of(learner, processor)) == state_hash(state_of(restored, restored_processor))

import random

import numpy as np
import pytest
import torch

from streamlearn.learners import base


def test_flatten_roundtrip():
    nested = {"a": {"b": np.arange(3), "c": 1.5}, "d": "x", "e": True}
    flat = base.flatten(nested)
    assert set(flat) == {"a/b", "a/c", "d", "e"}
    back = base.unflatten(flat)
    assert back["a"]["c"] == 1.5 and back["d"] == "x" and back["e"] is True
    np.testing.assert_array_equal(back["a"]["b"], np.arange(3))


def test_check_state_rejects_unstorable_values():
    with pytest.raises(TypeError, match="object arrays"):
        base.check_state({"a": np.array([object()])})
    with pytest.raises(TypeError, match="'b' has type list"):
        base.check_state({"b": [1, 2]})


def test_numpy_rng_state_continues_identically():
    rng = np.random.default_rng(42)
    rng.random(10)
    saved = base.rng_state(rng)
    expected = rng.random(5)
    other = np.random.default_rng(0)
    base.load_rng_state(other, saved)
    np.testing.assert_array_equal(other.random(5), expected)


def test_python_rng_state_continues_identically():
    rng = random.Random(3)
    rng.gauss(0, 1)  # leaves a cached gauss value in the state
    saved = base.python_rng_state(rng)
    expected = [rng.gauss(0, 1), rng.random()]
    other = random.Random(9)
    base.load_python_rng_state(other, saved)
    assert [other.gauss(0, 1), other.random()] == expected


def test_torch_module_optimizer_and_generator_roundtrip():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(8, 3, generator=gen)
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
    state = base.flatten(
        {
            "net": base.torch_module_state(net),
            "opt": base.torch_optimizer_state(opt),
        }
    )
    state["gen"] = base.torch_generator_state(gen)
    base.check_state(state)

    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    gen2 = torch.Generator()
    base.load_torch_module_state(net2, base.subset(state, "net/"))
    base.load_torch_optimizer_state(opt2, base.subset(state, "opt/"))
    base.load_torch_generator_state(gen2, state["gen"])
    for n, o, g in ((net, opt, gen), (net2, opt2, gen2)):
        xb = torch.randn(8, 3, generator=g)
        o.zero_grad()
        n(xb).pow(2).sum().backward()
        o.step()
    for p1, p2 in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_state_hash_is_sensitive_to_value_type_and_shape():
    a = {"w": np.zeros(4), "n": 1}
    assert base.state_hash(a) == base.state_hash({"n": 1, "w": np.zeros(4)})
    assert base.state_hash(a) != base.state_hash({"w": np.zeros((2, 2)), "n": 1})
    assert base.state_hash(a) != base.state_hash({"w": np.zeros(4, np.float32), "n": 1})
    assert base.state_hash(a) != base.state_hash({"w": np.zeros(4), "n": 1.0})
    assert base.state_hash(a) != base.state_hash({"w": np.zeros(4), "n": True})
    b = {"w": np.zeros(4), "n": 1}
    b["w"][2] = -0.0  # a different bit pattern
    assert base.state_hash(a) != base.state_hash(b)

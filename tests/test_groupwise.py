"""Groupwise-regret experts: online ridge, AdaNormalHedge, the learner, the regret metric, the processor."""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from decimal import MAX_EMAX, Decimal, localcontext

import numpy as np
import pytest

from streamlearn.datasets import export_dataset
from streamlearn.engine.config import load_config
from streamlearn.engine.processor import BadEvent, EvalOptions, Item
from streamlearn.engine.processors.groupwise import GroupwiseProcessor
from streamlearn.engine.replay import replay
from streamlearn.learners.base import check_state, states_equal
from streamlearn.learners.groupwise import (
    ALWAYS_ON,
    AdaNormalHedge,
    GroupRegret,
    GroupwiseRegressor,
    OnlineRidge,
    group_regret,
)
from streamlearn.synthetic import overlapping_groups
from tests.conftest import REPO, run_cli, write_jsonl

GROUPS = ["a", "b", "c"]


def _bench():
    spec = importlib.util.spec_from_file_location("groupwise_bench", REPO / "benchmarks" / "groupwise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stream(n: int, seed: int = 0, d: int = 4):
    """Events with intersecting groups a, b, c (booleans in x) and group-specific linear labels."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(-0.3, 0.3, (len(GROUPS), d))
    events = []
    for _ in range(n):
        member = rng.random(len(GROUPS)) < [0.5, 0.4, 0.3]
        features = rng.uniform(0, 1, d)
        y = 0.5 + float(np.clip(features @ weights[member].sum(axis=0), -0.45, 0.45))
        x = {f"f{k}": float(v) for k, v in enumerate(features)} | {g: bool(m) for g, m in zip(GROUPS, member)}
        events.append((x, y))
    return events


def _matrix(model, events):
    names = model.features
    X = np.array([[float(x.get(f, 0.0)) for f in names] for x, _ in events])
    member = np.array([[bool(x.get(g)) for g in GROUPS] + [True] for x, _ in events])
    return X, np.array([y for _, y in events]), member


# --------------------------------------------------------------------------- online ridge


@pytest.mark.parametrize("l2", [1.0, 0.3])
def test_online_ridge_equals_batch_ridge(l2):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(300, 6)), rng.normal(size=300)
    model = OnlineRidge(l2=l2)
    for row, label in zip(X, y):
        model.learn_one({f"f{k}": v for k, v in enumerate(row)}, float(label))
    batch = np.linalg.solve(l2 * np.eye(6) + X.T @ X, X.T @ y)
    np.testing.assert_allclose([model.weights[f"f{k}"] for k in range(6)], batch, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.state_dict()["inverse"][0], np.linalg.inv(l2 * np.eye(6) + X.T @ X), atol=1e-12)
    x = {f"f{k}": 0.5 for k in range(6)}
    assert model.predict_one(x) == pytest.approx(0.5 * batch.sum(), rel=1e-9)


def test_online_ridge_clips_and_rejects_bad_input():
    model = OnlineRidge(clip=(0.0, 1.0))
    for i in range(20):
        model.learn_one({"a": 1.0, "b": float(i % 2)}, 1.0)
    assert model.predict_one({"a": 5.0, "b": 0.0}) == 1.0
    assert model.predict_one({"a": 0.5, "zzz": 1.0}) == model.predict_one({"a": 0.5})  # not learned yet: ignored
    with pytest.raises(ValueError, match="outside the label range"):
        model.learn_one({"a": 1.0}, 2.0)
    with pytest.raises(TypeError, match=r"x\['a'\] must be a number"):
        model.predict_one({"a": "1.5"})
    with pytest.raises(ValueError, match=r"x\['a'\] is not finite"):
        model.learn_one({"a": math.nan}, 0.5)
    with pytest.raises(ValueError, match="l2 must be a positive number"):
        OnlineRidge(l2=0)


def test_each_group_expert_is_the_batch_ridge_of_its_subsequence():
    events = _stream(400)
    model = GroupwiseRegressor(groups=GROUPS, l2=1.0)
    for x, y in events:
        model.learn_one(x, y)
    X, y, member = _matrix(model, events)
    theta = model.state_dict()["ridge/theta"]
    for g, name in enumerate(model.experts):
        rows = member[:, g]
        batch = np.linalg.solve(np.eye(X.shape[1]) + X[rows].T @ X[rows], X[rows].T @ y[rows])
        np.testing.assert_allclose(theta[g], batch, rtol=1e-8, atol=1e-10, err_msg=name)


# --------------------------------------------------------------------------- AdaNormalHedge


def _closed_form(R, C):
    s = 3 * (C + 1)
    return 0.5 * (math.exp(max(R + 1, 0) ** 2 / s) - math.exp(max(R - 1, 0) ** 2 / s))


def test_ada_normal_hedge_weights_match_the_closed_form():
    rng = np.random.default_rng(2)
    C = rng.uniform(0, 60, 200)
    R = rng.uniform(-1, 1, 200) * C  # |R| ≤ C, as cumulative regrets are
    R[:3], C[:3] = [-1.0, 0.999, 1.0], [1.0, 1.0, 1.0]  # the pieces' edges
    log_w = AdaNormalHedge.log_weight(R, C)
    expected = np.array([_closed_form(r, c) for r, c in zip(R, C)])
    np.testing.assert_allclose(np.exp(log_w), expected, rtol=1e-10, atol=1e-300)
    assert (log_w[R <= -1] == -np.inf).all()

    hedge = AdaNormalHedge(200)
    hedge.load_state_dict({"R": R, "C": C})
    awake = np.array([5, 17, 40, 41, 199])
    np.testing.assert_allclose(hedge.probabilities(awake), expected[awake] / expected[awake].sum(), rtol=1e-10)


def test_ada_normal_hedge_never_overflows_with_large_regret():
    R = np.array([1e4, 5e5, 2e7, -3.0])
    C = np.array([1e4, 6e5, 2e7, 10.0])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        log_w = AdaNormalHedge.log_weight(R, C)
        hedge = AdaNormalHedge(4)
        hedge.load_state_dict({"R": R, "C": C})
        p = hedge.probabilities(np.arange(4))
    # exp(R²/3(C+1)) is far beyond float range here; compare the logs with exact decimals
    with localcontext() as ctx:
        ctx.prec, ctx.Emax = 60, MAX_EMAX
        for r, c, got in zip(R[:3], C[:3], log_w[:3]):
            s = Decimal(3) * (Decimal(c) + 1)
            exact = ((((Decimal(r) + 1) ** 2 / s).exp() - ((Decimal(r) - 1) ** 2 / s).exp()) / 2).ln()
            assert got == pytest.approx(float(exact), rel=1e-12)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0) and p[2] == pytest.approx(1.0) and p[3] == 0.0

    # a long run where one expert is always right: the weights concentrate on it
    hedge = AdaNormalHedge(2)
    both = np.array([0, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for _ in range(2000):
            hedge.update(both, np.array([0.0, 1.0]))
    assert hedge.probabilities(both)[0] > 0.999 and hedge.R[1] < -1000


def test_all_zero_weights_play_uniformly_over_the_awake_experts():
    hedge = AdaNormalHedge(4)
    hedge.load_state_dict({"R": np.array([-2.0, -5.0, 3.0, -1.0]), "C": np.array([2.0, 5.0, 3.0, 1.0])})
    assert hedge.probabilities(np.array([0, 1, 3])).tolist() == pytest.approx([1 / 3] * 3)


def test_sleeping_experts_keep_R_C_and_parameters():
    hedge = AdaNormalHedge(4)
    hedge.update(np.array([0, 1, 2, 3]), np.array([0.1, 0.5, 0.9, 0.3]))
    R, C = hedge.R.copy(), hedge.C.copy()
    hedge.update(np.array([1, 3]), np.array([0.0, 1.0]))
    assert hedge.R[[0, 2]].tobytes() == R[[0, 2]].tobytes() and hedge.C[[0, 2]].tobytes() == C[[0, 2]].tobytes()
    assert (hedge.R[[1, 3]] != R[[1, 3]]).all() and (hedge.C[[1, 3]] > C[[1, 3]]).all()

    model = GroupwiseRegressor(groups=GROUPS)
    for x, y in _stream(50):
        model.learn_one(x, y)
    before = model.state_dict()
    x = {"f0": 0.3, "f1": 0.9, "f2": 0.1, "f3": 0.4, "a": False, "b": True, "c": False}
    model.learn_one(x, 0.8)
    after = model.state_dict()
    asleep, awake = [0, 2], [1, 3]  # a and c sleep; b and always_on learn
    for key in ("hedge/R", "hedge/C", "ridge/theta", "ridge/inverse"):
        assert after[key][asleep].tobytes() == before[key][asleep].tobytes(), key
        assert not np.array_equal(after[key][awake], before[key][awake]), key


def test_combiner_loss_and_instantaneous_regret():
    hedge = AdaNormalHedge(3)
    hedge.load_state_dict({"R": np.array([0.4, -0.2, 2.0]), "C": np.array([1.0, 0.5, 3.0])})
    awake, losses = np.array([0, 2]), np.array([0.25, 0.04])
    p = hedge.probabilities(awake)
    mixed = hedge.update(awake, losses)
    assert mixed == pytest.approx(p @ losses)
    assert hedge.R.tolist() == pytest.approx([0.4 + mixed - 0.25, -0.2, 2.0 + mixed - 0.04])
    assert hedge.C.tolist() == pytest.approx([1.0 + abs(mixed - 0.25), 0.5, 3.0 + abs(mixed - 0.04)])


# --------------------------------------------------------------------------- the learner


def test_prediction_is_the_clipped_mixture_of_the_awake_experts():
    model = GroupwiseRegressor(groups=GROUPS, clip=(0.0, 1.0))
    for x, y in _stream(200):
        model.learn_one(x, y)
    x = {"f0": 0.9, "f1": 0.9, "f2": 0.9, "f3": 0.9, "a": True, "b": False, "c": True}
    experts = model.expert_predictions(x)
    assert list(experts) == ["a", "c", ALWAYS_ON]
    p = model.hedge.probabilities(np.array([0, 2, 3]))
    assert model.predict_one(x) == pytest.approx(p @ np.array(list(experts.values())))
    # a groups list overrides the booleans in x
    assert list(model.expert_predictions(x, groups=["b"])) == ["b", ALWAYS_ON]
    state = model.state_dict()
    model.predict_one(x)
    assert states_equal(state, model.state_dict())  # predict_one is pure


def test_learn_one_after_predict_one_reuses_it_with_the_same_result():
    events = _stream(400, seed=5)
    plain, reusing = GroupwiseRegressor(groups=GROUPS), GroupwiseRegressor(groups=GROUPS)
    for t, (x, y) in enumerate(events):
        plain.learn_one(x, y)
        if t % 7 == 3:  # predicted for another event: nothing to reuse
            reusing.predict_one(events[t - 1][0])
        elif t % 7 == 5:  # the same event, changed in place after the prediction
            x = dict(x)
            x["f1"] += 0.5
            reusing.predict_one(x)
            x["f1"] = events[t][0]["f1"]
        elif t % 7 == 6:
            reusing.predict_one(x, groups=["a"])  # the same x, other groups
        else:
            reusing.predict_one(x)
        reusing.learn_one(x, y)
        assert states_equal(plain.state_dict(), reusing.state_dict()), t
    x, y = events[0]
    reusing.predict_one(x)
    reusing.learn_one(x | {"new": 1.0}, y)  # a new feature: the prediction's encoding is too short
    plain.learn_one(x | {"new": 1.0}, y)
    assert states_equal(plain.state_dict(), reusing.state_dict())


def _reference_predictions(events, groups, l2=1.0, lo=0.0, hi=1.0):
    """The learner spelled out without any of its shortcuts: each expert re-solves its ridge
    problem from the rows it learned, the weights are AdaNormalHedge's closed form."""
    names = sorted(events[0][0])
    experts = [*groups, ALWAYS_ON]
    rows = {e: ([], []) for e in experts}
    R, C = dict.fromkeys(experts, 0.0), dict.fromkeys(experts, 0.0)
    out = []
    for x, y in events:
        v = np.array([float(x[f]) for f in names])
        awake = [g for g in groups if x[g]] + [ALWAYS_ON]
        preds = []
        for e in awake:
            X, Y = np.array(rows[e][0]).reshape(-1, len(names)), np.array(rows[e][1])
            theta = np.linalg.solve(l2 * np.eye(len(names)) + X.T @ X, X.T @ Y)
            preds.append(min(max(float(theta @ v), lo), hi))
        w = np.array([_closed_form(R[e], C[e]) for e in awake])
        p = w / w.sum() if w.sum() > 0 else np.full(len(awake), 1 / len(awake))
        out.append(min(max(float(p @ preds), lo), hi))
        losses = ((np.array(preds) - y) / (hi - lo)) ** 2
        for e, loss in zip(awake, losses):
            r = float(p @ losses) - loss
            R[e], C[e] = R[e] + r, C[e] + abs(r)
            rows[e][0].append(v)
            rows[e][1].append(y)
    return np.array(out)


def test_public_path_equals_the_reference_implementation():
    events = _stream(150, seed=11)
    model = GroupwiseRegressor(groups=GROUPS)
    model.extend_features(events[0][0])  # the reference knows every feature from the start
    predicted = []
    for x, y in events:
        predicted.append(model.predict_one(x))
        model.learn_one(x, y)
    np.testing.assert_allclose(predicted, _reference_predictions(events, GROUPS), rtol=0, atol=1e-9)


def test_groups_in_any_form_give_the_same_active_experts():
    model = GroupwiseRegressor(groups=GROUPS)
    x = {"f0": 0.5, "a": True, "b": False, "c": True}
    forms = [lambda: ["c", "a"], lambda: ("a", "c", "a"), lambda: iter(["a", "c"]), lambda: None]
    for make in forms:
        for _ in range(2):  # the second time comes from the remembered combinations
            assert list(model.expert_predictions(x, make())) == ["a", "c", ALWAYS_ON]
    for _ in range(2):
        with pytest.raises(ValueError, match="unknown groups"):
            model.predict_one(x, groups=["a", "nope"])
        with pytest.raises(ValueError, match="unknown groups"):
            model.predict_one(x, groups=["a", ["b"]])
    active = model.encode(x)[1]
    with pytest.raises(ValueError):
        active[0] = 1  # shared by the events with the same groups: read-only


def test_paper_mode_leaves_experts_unclipped_and_reports_the_expected_loss_of_sampling():
    rng = np.random.default_rng(8)
    model = GroupwiseRegressor(groups=GROUPS, clip_experts=False)
    clipped = GroupwiseRegressor(groups=GROUPS)
    for x, y in _stream(300, seed=6):
        model.learn_one(x, y)
        clipped.learn_one(x, y)
    # features far outside the training range: some experts predict outside [0, 1]
    x = {"f0": 4.0, "f1": -3.0, "f2": 5.0, "f3": 2.0, "a": True, "b": True, "c": False}
    experts = model.expert_predictions(x)
    raw = np.array(list(experts.values()))
    assert raw.min() < 0.0 or raw.max() > 1.0
    assert all(0.0 <= p <= 1.0 for p in clipped.expert_predictions(x).values())
    assert 0.0 <= model.predict_one(x) <= 1.0  # the mixture is still clipped
    y = float(rng.uniform())
    p = model.hedge.probabilities(np.array([0, 1, 3]))
    R_before = model.hedge.R
    model.extend_features(x)
    y_pred, expected = model.learn_encoded_with_loss(*model.encode(x), y)
    assert expected == pytest.approx(p @ (raw - y) ** 2)
    assert y_pred == pytest.approx(min(max(p @ raw, 0.0), 1.0))
    # the hedge was charged the unclipped losses
    assert model.hedge.R[[0, 1, 3]] - R_before[[0, 1, 3]] == pytest.approx(expected - (raw - y) ** 2)
    with pytest.raises(TypeError, match="clip_experts"):
        GroupwiseRegressor(groups=GROUPS, clip_experts=1)


def test_learner_rejects_bad_input_without_changing_state():
    model = GroupwiseRegressor(groups=GROUPS)
    with pytest.raises(ValueError, match="unknown groups"):
        model.learn_one({"f0": 0.5}, 0.5, groups=["nope"])
    assert model.features == ()  # nothing was fixed by the failed call
    for x, y in _stream(20):
        model.learn_one(x, y)
    state = model.state_dict()
    with pytest.raises(ValueError, match="outside the label range"):
        model.learn_one({"f0": 0.5}, 1.5)
    with pytest.raises(TypeError, match="y must be a number"):
        model.learn_one({"f0": 0.5}, "0.5")
    with pytest.raises(ValueError, match="not finite"):
        model.learn_one({"f0": math.inf}, 0.5)
    with pytest.raises(ValueError, match=r"x\['f0'\] is not finite"):
        model.learn_one({"f0": math.nan, "other": 1.0}, 0.5)  # a new feature is not added either
    with pytest.raises(TypeError, match=r"x\['other'\] must be a number"):
        model.learn_one({"f0": 0.5, "other": "1.0"}, 0.5)
    with pytest.raises(TypeError, match="list of group names"):
        model.predict_one({"f0": 0.5}, groups="a")
    assert states_equal(state, model.state_dict())
    with pytest.raises(ValueError, match="added automatically"):
        GroupwiseRegressor(groups=["a", ALWAYS_ON])
    with pytest.raises(ValueError, match="clip"):
        GroupwiseRegressor(groups=GROUPS, clip=(1.0, 0.0))


def test_restored_learner_continues_identically():
    events = _stream(600, seed=3)
    model = GroupwiseRegressor(groups=GROUPS, l2=0.5)
    for x, y in events[:300]:
        model.learn_one(x, y)
    state = check_state(model.state_dict())
    restored = GroupwiseRegressor(groups=GROUPS, l2=0.5)
    restored.load_state_dict({k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in state.items()})
    assert states_equal(state, restored.state_dict())
    for x, y in events[300:]:
        assert restored.predict_one(x) == model.predict_one(x)
        model.learn_one(x, y)
        restored.learn_one(x, y)
    assert states_equal(model.state_dict(), restored.state_dict())
    with pytest.raises(ValueError, match="state is for groups"):
        GroupwiseRegressor(groups=["a", "b"]).load_state_dict(state)


def test_river_regressor_conventions():
    from river import checks

    checks.check_estimator(OnlineRidge())
    checks.check_estimator(GroupwiseRegressor(groups=["a", "b"], clip=(-1e6, 1e6)))  # river's checks use raw labels
    model = GroupwiseRegressor(groups=GROUPS, l2=2.0, clip=[0.0, 2.0])
    assert model._get_params() == {"groups": GROUPS, "l2": 2.0, "clip": [0.0, 2.0], "clip_experts": True}
    clone = model.clone()
    assert isinstance(clone, GroupwiseRegressor) and clone.label_range == (0.0, 2.0)
    assert model.predict_one({"f0": 1.0}) == 0.0  # nothing learned yet: every expert predicts 0


# --------------------------------------------------------------------------- regret


def test_group_regret_matches_least_squares_on_stored_rows():
    rng = np.random.default_rng(4)
    n, d = 500, 5
    X = rng.normal(size=(n, d))
    member = np.column_stack([rng.random(n) < 0.4, rng.random(n) < 0.6, np.ones(n, dtype=bool)])
    # group 0's indicator is a feature (constant on the group) and column 3 repeats it:
    # the moment matrices are singular, the least-squares fit is not unique
    X[:, 4] = member[:, 0]
    X[:, 3] = X[:, 4] * 2.0
    y = X @ rng.normal(size=d) + rng.normal(scale=0.5, size=n)
    y_pred = y + rng.normal(scale=0.7, size=n)
    metric = GroupRegret(["g0", "g1", ALWAYS_ON])
    for t in range(n):
        metric.update(X[t], np.flatnonzero(member[t]), y[t], y_pred[t])
    batch = group_regret(X, y, y_pred, member, ["g0", "g1", ALWAYS_ON])
    for g, name in enumerate(["g0", "g1", ALWAYS_ON]):
        rows = member[:, g]
        theta = np.linalg.lstsq(X[rows], y[rows], rcond=None)[0]
        expected = np.sum((y_pred[rows] - y[rows]) ** 2) - np.sum((X[rows] @ theta - y[rows]) ** 2)
        assert metric.regret()[g] == pytest.approx(expected, rel=1e-7)
        assert batch[name] == pytest.approx(expected, rel=1e-7)
    table = metric.table()
    assert [r["n"] for r in table] == member.sum(axis=0).tolist()
    charged = GroupRegret(["g0", "g1", ALWAYS_ON])
    charged.update_many_losses(X, y, (y_pred - y) ** 2 + 1.0, member)  # one more per round
    np.testing.assert_allclose(charged.regret(), metric.regret() + member.sum(axis=0), rtol=1e-9)
    restored = GroupRegret(["g0", "g1", ALWAYS_ON])
    restored.load_state_dict(metric.state_dict())
    assert restored.table() == table


def test_groupwise_has_lower_regret_than_one_ridge_on_every_group():
    bench = _bench()
    for data in (bench.synthetic(4000, "min"), bench.medical()):
        order = np.random.default_rng(0).permutation(len(data.y))
        names = [*data.groups, ALWAYS_ON]
        ours = group_regret(data.X[order], data.y[order], bench.run_groupwise(data, order)[0], data.member[order], names)
        base = group_regret(data.X[order], data.y[order], bench.run_baseline(data, order), data.member[order], names)
        worse = [g for g in names if ours[g] >= base[g]]
        assert not worse, f"{data.name}: regret not lower on {worse}: {ours} vs {base}"


# --------------------------------------------------------------------------- processor


def _processor(delay: int = 0, **options):
    model = GroupwiseRegressor(groups=GROUPS)
    options_obj = GroupwiseProcessor.Options(**options)
    return GroupwiseProcessor(model, EvalOptions(label_delay=delay), options_obj)


def _items(proc, events, start=0):
    return [Item({"row": start + i}, proc.decode({"x": x, "y": y})) for i, (x, y) in enumerate(events)]


def test_processor_decode_rejects_bad_events():
    proc = _processor()
    bad = {
        "missing field 'x'": {"y": 0.5},
        "x has no features": {"x": {}, "y": 0.5},
        r"x\['f0'\] is not finite": {"x": {"f0": math.nan}, "y": 0.5},
        r"x\['f0'\] must be a number": {"x": {"f0": "1"}, "y": 0.5},
        "y is not finite": {"x": {"f0": 1.0}, "y": math.inf},
        "y must be a number": {"x": {"f0": 1.0}, "y": "0.5"},
        "outside the learner's label range": {"x": {"f0": 1.0}, "y": 1.5},
        "groups must be a list": {"x": {"f0": 1.0}, "groups": "a"},
        "unknown groups": {"x": {"f0": 1.0}, "groups": ["a", "zz"]},
        "JSON object": [1, 2],
        "too large for a float": {"x": {"f0": 10**400}, "y": 0.5},
    }
    for reason, event in bad.items():
        with pytest.raises(BadEvent, match=reason):
            proc.decode(event)
    assert proc.decode({"x": {"f0": 1, "a": True}, "groups": ["a"], "id": 7}).id == 7


def test_processor_is_test_then_train_and_reports_group_regret():
    events = _stream(300, seed=5)
    proc = _processor(include_experts=True)
    outputs = proc.process(_items(proc, events))
    reference = GroupwiseRegressor(groups=GROUPS)
    preds = []
    for (x, y), out in zip(events, outputs):
        preds.append(reference.predict_one(x))
        assert out.payload["y_pred"] == preds[-1]
        assert out.payload["groups"] == [g for g in GROUPS if x[g]] + [ALWAYS_ON]
        assert list(out.payload["experts"]) == out.payload["groups"]
        reference.learn_one(x, y)
    assert states_equal(reference.state_dict(), proc.learner.state_dict())
    X, y, member = _matrix(reference, events)
    expected = group_regret(X, y, np.array(preds), member, reference.experts)
    rows = proc.details()["group_regret"]
    assert [r["group"] for r in rows] == [*GROUPS, ALWAYS_ON]
    assert [r["regret"] for r in rows] == pytest.approx([expected[g] for g in reference.experts], rel=1e-7)
    metrics = proc.metrics()
    assert metrics["MAE"] == pytest.approx(np.mean(np.abs(np.array(preds) - y)))
    assert metrics["max_group_regret"] == pytest.approx(max(expected.values()), rel=1e-7)


def test_new_features_join_as_if_they_had_been_zero():
    events = _stream(300, seed=7)
    late = [({**x, "late": 0.7 * x["f0"]} if t >= 150 else x, y) for t, (x, y) in enumerate(events)]
    padded = [({**x, "late": 0.0} if t < 150 else x, y) for t, (x, y) in enumerate(late)]
    grown, from_start = GroupwiseRegressor(groups=GROUPS), GroupwiseRegressor(groups=GROUPS)
    for (x_late, y), (x_padded, _) in zip(late, padded):
        assert grown.predict_one(x_late) == pytest.approx(from_start.predict_one(x_padded), abs=1e-12)
        grown.learn_one(x_late, y)
        from_start.learn_one(x_padded, y)
    assert grown.features[-1] == "late" and set(grown.features) == set(from_start.features)

    ridge_grown, ridge_padded = OnlineRidge(), OnlineRidge()
    for (x_late, y), (x_padded, _) in zip(late, padded):
        ridge_grown.learn_one(x_late, y)
        ridge_padded.learn_one(x_padded, y)
    assert ridge_grown.weights == pytest.approx(ridge_padded.weights, abs=1e-12)

    # the processor's regret statistics grow with the features
    proc = _processor()
    proc.process(_items(proc, late))
    X, y, member = _matrix(proc.learner, late)
    reference = GroupwiseRegressor(groups=GROUPS)
    preds = []
    for x, label in late:
        preds.append(reference.predict_one(x))
        reference.learn_one(x, label)
    expected = group_regret(X, y, np.array(preds), member, reference.experts)
    assert [r["regret"] for r in proc.details()["group_regret"]] == pytest.approx(list(expected.values()), rel=1e-7)


def test_processor_with_label_delay_and_checkpoint_round_trip():
    events = _stream(200, seed=6)
    uninterrupted = _processor(delay=5)
    out_a = uninterrupted.process(_items(uninterrupted, events)) + uninterrupted.flush()

    first = _processor(delay=5)
    out_b = first.process(_items(first, events[:120]))
    learner_state, proc_state = check_state(first.learner.state_dict()), check_state(first.state_dict())
    second = _processor(delay=5)
    second.learner.load_state_dict(learner_state)
    second.load_state_dict(proc_state)
    out_b += second.process(_items(second, events[120:], start=120)) + second.flush()

    assert [o.payload for o in out_a] == [o.payload for o in out_b]
    assert states_equal(uninterrupted.learner.state_dict(), second.learner.state_dict())
    assert states_equal(uninterrupted.state_dict(), second.state_dict())
    assert uninterrupted.details() == second.details()
    # with a delay the first predictions are made before anything was learned
    assert [o.payload["y_pred"] for o in out_a[:6]] == [0.0] * 6 and out_a[6].payload["y_pred"] > 0
    assert uninterrupted.regret.count.tolist()[-1] == 200


# --------------------------------------------------------------------------- end to end


GROUPS_ROWS = 1338


@pytest.fixture(scope="module")
def groups_jsonl(tmp_path_factory):
    """The ready stream of configs/groupwise.toml (`streamlearn export groups`), 1,338 rows."""
    path = tmp_path_factory.mktemp("groupwise") / "groups.jsonl"
    export_dataset("groups", path, GROUPS_ROWS)
    return path


def test_replay_of_the_config_reports_per_group_regret(tmp_path, groups_jsonl):
    lines = groups_jsonl.read_text().splitlines()
    lines.insert(10, json.dumps({"x": {"x00": 0.5}, "y": 3.0}))  # label outside [0, 1]
    lines.insert(20, '{"x": {"x00": NaN}, "y": 0.5}')
    path = write_jsonl(tmp_path / "groups.jsonl", lines)
    config = load_config(REPO / "configs" / "groupwise.toml")
    config.output.predictions = str(tmp_path / "predictions.jsonl")
    config.output.dead_letters = str(tmp_path / "dead.jsonl")
    config.checkpoint.dir = None
    report = replay(config, path, tmp_path / "report", progress=False)
    assert report["events"] == GROUPS_ROWS + 2 and report["processed"] == GROUPS_ROWS and report["dead_letters"] == 2
    rows = {r["group"]: r for r in report["details"]["group_regret"]}
    assert list(rows) == [*config.learner.params["groups"], ALWAYS_ON]
    member = overlapping_groups(GROUPS_ROWS)[4]
    assert rows[ALWAYS_ON]["n"] == GROUPS_ROWS and rows["circle"]["n"] == int(member[:, 0].sum())
    assert report["final_metrics"]["max_group_regret"] == pytest.approx(max(r["regret"] for r in rows.values()))
    # small regret on every group's subsequence: below 0.002 per round (labels in [0, 1])
    assert all(r["regret"] < 0.002 * r["n"] for r in rows.values()), rows
    assert set(report["final_metrics"]) == {"MAE", "RMSE", "MAE@1000", "RMSE@1000", "max_group_regret"}
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["details"]["group_regret"] == report["details"]["group_regret"]
    first = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert set(first) >= {"source", "y_pred", "groups", "id"}


def test_cli_replay_resumes_from_a_checkpoint(tmp_path, groups_jsonl):
    def config(checkpoints=None):
        parsed = load_config(REPO / "configs" / "groupwise.toml")
        parsed.output.predictions = parsed.output.dead_letters = None
        parsed.checkpoint.dir = checkpoints and str(checkpoints)
        return parsed

    whole = replay(config(), groups_jsonl, progress=False)
    # stopped after 700 events with the config's checkpoint directory (relative to the working directory) ...
    replay(config(tmp_path / "out" / "groupwise" / "checkpoints"), groups_jsonl, progress=False, max_records=700)
    # ... then `streamlearn replay` resumes at row 700
    done = run_cli(
        "replay", str(REPO / "configs" / "groupwise.toml"), "--input", str(groups_jsonl), "--report", "rep", "--no-progress", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    resumed = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert resumed["resumed_from_events"] == 700 and resumed["events"] == GROUPS_ROWS
    assert resumed["final_metrics"] == whole["final_metrics"]
    assert resumed["details"] == whole["details"]

"""Online active learning: the ActiveLearner's strategies and budget, and the label-request workflow."""

from __future__ import annotations

import collections
import copy
import itertools
import json
import pickle
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from river import base, checks, compose, datasets, linear_model, naive_bayes, preprocessing, tree
from river.datasets import synth

from streamlearn.engine.config import ConfigError, load_config, parse_config
from streamlearn.engine.processor import BadEvent, EvalOptions, Item
from streamlearn.engine.processors.active import ActiveProcessor
from streamlearn.engine.replay import replay
from streamlearn.learners import active
from streamlearn.learners.active import STRATEGIES, ActiveLearner
from streamlearn.learners.base import check_state, states_equal

ROOT = Path(__file__).resolve().parents[1]
SEA = list(itertools.islice(synth.SEA(seed=7, noise=0.1), 1500))
PHISHING = list(datasets.Phishing())


class Scripted(base.Classifier):
    """A classifier whose posterior is a parameter; it records what it learns."""

    def __init__(self, proba: tuple = (("a", 0.5), ("b", 0.5))):
        self.proba = proba
        self.learned: list = []

    def learn_one(self, x, y, **kwargs):
        self.learned.append(y)

    def predict_proba_one(self, x, **kwargs):
        return dict(self.proba)


def lr():
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def always_asks(budget=1.0, **kwargs):
    """Fixed uncertainty with a threshold above 1 asks whenever the budget allows."""
    return ActiveLearner(lr(), strategy="fixed", budget=budget, threshold=1.01, **kwargs)


def primed(strategy, budget=1.0, **params):
    """A learner around ``Scripted`` that has learned one label (so its posterior counts)."""
    learner = ActiveLearner(Scripted(), strategy=strategy, budget=budget, seed=3, **params)
    learner.learn_one({"f": 0.0}, "a")
    return learner


# --------------------------------------------------------------------------- river conventions


def test_check_estimator_around_logistic_regression():
    checks.check_estimator(ActiveLearner(linear_model.LogisticRegression()))


@pytest.mark.parametrize("strategy", ["split", "qbc", "dbal"])
def test_check_estimator_stateful_strategies(strategy):
    checks.check_estimator(ActiveLearner(linear_model.LogisticRegression(), strategy=strategy))


def test_classifier_from_config_values():
    assert isinstance(ActiveLearner("linear_model.LogisticRegression").model, linear_model.LogisticRegression)
    model = ActiveLearner({"class": "linear_model.LogisticRegression", "l2": 0.01}).model
    assert model.l2 == 0.01
    pipeline = ActiveLearner(["preprocessing.StandardScaler", "naive_bayes.GaussianNB"]).model
    assert isinstance(list(pipeline.steps.values())[-1], naive_bayes.GaussianNB)
    with pytest.raises(ValueError, match="not a river classifier"):
        ActiveLearner("preprocessing.StandardScaler")
    with pytest.raises(TypeError, match="classifier must be"):
        ActiveLearner(42)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "uncertain"}, "unknown strategy 'uncertain'"),
        ({"budget": 0.0}, "budget must be"),
        ({"budget": 1.5}, "budget must be"),
        ({"strategy": "fixed", "step": 0.1}, "takes no parameter 'step'"),
        ({"strategy": "randvar", "step": 2.0}, "step must be"),
        ({"strategy": "qbc", "committee_size": 1}, "committee_size must be"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ActiveLearner(linear_model.LogisticRegression(), **kwargs)


def test_config_names_a_bad_strategy_parameter():
    text = (ROOT / "configs" / "active.toml").read_text().replace("step = 0.01", "stpe = 0.01")
    with pytest.raises(ConfigError, match="takes no parameter 'stpe'"):
        parse_config(tomllib.loads(text)).build_learner()


def test_state_of_an_unstorable_classifier_is_refused_clearly():
    # a function of the user's own cannot be stored without pickle (trees can, since issue 19)
    learner = ActiveLearner(compose.FuncTransformer(lambda x: x) | tree.HoeffdingTreeClassifier())
    learner.learn_one({"f": 1.0}, True)
    with pytest.raises(TypeError, match="cannot checkpoint its classifier"):
        learner.state_dict()


# --------------------------------------------------------------------------- the budget


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("budget", [0.01, 0.1, 0.5])
def test_budget_is_never_exceeded(strategy, budget):
    learner = ActiveLearner(lr(), strategy=strategy, budget=budget, seed=1)
    stream = itertools.islice(synth.ConceptDriftStream(seed=5, position=1500, width=10), 3000)
    for x, y in stream:
        if learner.query_one(x):
            learner.learn_one(x, y)
        assert learner.labels_asked <= budget * learner.events_seen
    assert learner.events_seen == 3000
    assert learner.labels_asked > 0


def test_budget_holds_over_a_long_drifting_stream():
    learner = ActiveLearner(lr(), budget=0.02, seed=0)
    for x, y in itertools.islice(synth.ConceptDriftStream(seed=1, position=10_000, width=100), 20_000):
        if learner.query_one(x):
            learner.learn_one(x, y)
        assert learner.labels_asked <= 0.02 * learner.events_seen
    assert learner.labels_asked >= 0.9 * 0.02 * 20_000  # and the budget is used


def test_windowed_gate_follows_the_spending_estimate():
    # Žliobaitė et al.: u_t = u_{t-1} (w - 1) / w + labelled_t; a query needs u / w < B.
    budget, w = 0.2, 40
    learner = always_asks(budget=budget, budget_window=w)
    u = 0.0
    for x, y in SEA[:600]:
        expected = u / w < budget
        assert learner.query_one(x) is expected
        learner.learn_one(x, y)
        u = u * (w - 1) / w + expected
    assert learner.labels_asked / 600 == pytest.approx(budget, abs=0.02)


def test_windowed_gate_forgets_hoarded_budget():
    # 3,000 confident events, then uncertain ones: the cumulative gate spends its savings
    # in a burst, the windowed one asks about B·w at once and then B per event.
    def after_confident_stretch(budget_window):
        learner = ActiveLearner(Scripted((("a", 0.99), ("b", 0.01))), strategy="fixed", budget=0.1, budget_window=budget_window)
        learner.learn_one({}, "a")
        for _ in range(3000):
            assert not learner.query_one({})
        learner.model.proba = (("a", 0.5), ("b", 0.5))
        return sum(learner.query_one({}) for _ in range(500))

    assert after_confident_stretch(None) >= 300  # the credit of 3,000 events, spent at once
    assert 0.1 * 500 <= after_confident_stretch(100) <= 0.1 * 500 + 0.1 * 100 + 2


def test_budget_window_must_be_a_positive_integer():
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="budget_window"):
            ActiveLearner(lr(), budget_window=bad)


def test_budget_gate_spends_exactly_the_credit_when_every_point_is_uncertain():
    learner = always_asks(budget=0.25)
    asked = 0
    for i, (x, y) in enumerate(SEA[:400], start=1):
        if learner.query_one(x):
            asked += 1
            learner.learn_one(x, y)
        assert asked == i // 4  # a label per 4 events, never ahead of the credit


@pytest.mark.parametrize("budget", [0.1, 0.3, 1 / 3, 0.07, 0.999, 1])
def test_budget_gate_is_the_integer_count_rule(budget):
    # The learner counts in floats; the gate must still be exactly asked + 1 <= B * seen.
    learner = ActiveLearner(Scripted(), strategy="fixed", budget=budget, threshold=1.01)  # always wants to ask
    asked = 0
    for seen in range(1, 3001):
        allowed = asked + 1 <= budget * seen
        assert learner.query_one({}, proba={"a": 0.5, "b": 0.5}) is allowed
        asked += allowed
    assert (learner.events_seen, learner.labels_asked) == (3000, asked)
    assert type(learner.events_seen) is int and type(learner.labels_asked) is int


# --------------------------------------------------------------------------- decision rules


def test_empty_posterior_asks_first():
    learner = ActiveLearner(Scripted((("a", 0.99), ("b", 0.01))), strategy="fixed", budget=1.0)
    assert learner.query_one({"f": 1.0})  # nothing learned yet: the posterior means nothing
    learner.learn_one({"f": 1.0}, "a")
    assert not learner.query_one({"f": 1.0})  # now u = 0.99 >= 0.9
    assert learner.query_one({"f": 1.0}, proba={})  # a classifier with no posterior
    assert learner.query_one({"f": 1.0}, proba={"a": 1.0})  # one class known: no uncertainty to measure


def test_fixed_uncertainty():
    learner = primed("fixed")
    assert learner.query_one({}, proba={"a": 0.85, "b": 0.15})
    assert not learner.query_one({}, proba={"a": 0.95, "b": 0.05})
    assert learner.query_one({}, proba={"a": 0.5, "b": 0.3, "c": 0.2})
    assert learner.threshold == 1.0  # fixed never moves a threshold


def test_variable_uncertainty_moves_its_threshold():
    learner = primed("variable", step=0.1)
    assert learner.query_one({}, proba={"a": 0.95, "b": 0.05})  # 0.95 < θ=1
    assert learner.threshold == pytest.approx(0.9)
    assert not learner.query_one({}, proba={"a": 0.95, "b": 0.05})  # 0.95 >= 0.9
    assert learner.threshold == pytest.approx(0.99)
    assert learner.query_one({}, proba={"a": 0.95, "b": 0.05})
    assert learner.threshold == pytest.approx(0.891)


def test_randomised_variable_uncertainty_multiplies_the_threshold_by_a_gaussian():
    learner = primed("randvar", step=0.05, noise_std=0.5)
    # Žliobaitė et al.'s rule: ask if u < θ·η. η are the learner's generator's N(1, 0.5)
    # draws, in order (drawn in blocks, a block boundary falls inside this run); three
    # classes take the general path for u.
    n = active.RNG_BLOCK + 300
    etas, theta = np.random.default_rng(3).normal(1.0, 0.5, n).tolist(), 1.0
    assert sum(eta < 0 for eta in etas) > 10  # the draws that u / η < θ would always ask on
    probas = [{"a": p, "b": 1 - p} for p in np.linspace(0.5, 1.0, n - 50).tolist()]
    probas += [{"a": p, "b": (1 - p) / 2, "c": (1 - p) / 2} for p in np.linspace(0.34, 1.0, 50).tolist()]
    for proba, eta in zip(probas, etas, strict=True):
        expected = max(proba.values()) < theta * eta
        theta *= 0.95 if expected else 1.05
        assert learner.query_one({}, proba=proba) is expected
        assert learner.threshold == pytest.approx(theta)


def test_randomised_threshold_never_asks_on_a_negative_draw():
    learner = primed("randvar", noise_std=1.0)
    learner._block, learner._draws = [-0.5, 0.0, 1.5], iter([-0.5, 0.0, 1.5])
    uncertain = {"a": 0.5, "b": 0.5}
    assert [learner.query_one({}, proba=uncertain) for _ in range(3)] == [False, False, True]


def test_randomisation_reaches_confident_points():
    randvar, variable = primed("randvar"), primed("variable")
    randvar._threshold = variable._threshold = 0.5  # as after a run of uncertain points
    confident = {"a": 0.999, "b": 0.001}
    assert not any(variable.query_one({}, proba=confident) for _ in range(20))
    assert sum(randvar.query_one({}, proba=confident) for _ in range(20)) >= 2


def test_random_strategy_asks_with_probability_budget():
    learner = primed("random", budget=0.3)
    learner._seen = 10_000  # plenty of unused credit, so only the coin decides
    for coin in np.random.default_rng(3).random(active.RNG_BLOCK + 200).tolist():
        assert learner.query_one({}, proba={"a": 0.99, "b": 0.01}) is (coin < 0.3)


def test_selective_sampling_probability_shrinks_with_the_margin():
    learner = primed("selective", b=0.2)
    coins = iter(np.random.default_rng(3).random(200).tolist())
    for p in np.linspace(0.5, 1.0, 100).tolist():
        # two classes, and three (the margin is between the two largest posteriors)
        for proba in ({"a": 1 - p, "b": p}, {"a": p, "b": (1 - p) / 3, "c": 2 * (1 - p) / 3}):
            top = sorted(proba.values(), reverse=True)
            margin = (top[0] - top[1]) / sum(proba.values())
            assert learner.query_one({}, proba=proba) is (next(coins) < 0.2 / (0.2 + margin))
    learner = primed("selective", b=0.2)
    certain = sum(learner.query_one({}, proba={"a": 1.0, "b": 0.0}) for _ in range(500))
    assert certain / 500 == pytest.approx(0.2 / 1.2, abs=0.05)


def test_query_by_committee_asks_on_disagreement_above_its_running_mean():
    learner = primed("qbc", committee_size=3, step=0.1)
    agree = Scripted((("a", 0.9), ("b", 0.1)))
    near = Scripted((("a", 0.8), ("b", 0.2)))
    far = Scripted((("b", 0.8), ("a", 0.2)))
    proba = {"a": 0.9, "b": 0.1}
    learner._committee = [agree, agree, near]  # same votes, different posteriors
    assert learner.query_one({}, proba=proba)  # first measure: equal to its mean, at θ = 1
    assert learner.threshold == pytest.approx(1.1)
    assert not learner.query_one({}, proba=proba)  # the same disagreement is now below 1.1 × mean
    assert learner.threshold == pytest.approx(0.99)
    learner._committee = [agree, agree, far]
    assert learner.query_one({}, proba=proba)  # a dissenting member: far above the mean
    members = [dict(m.proba) for m in learner._committee]
    mean = {c: sum(m[c] for m in members) / 3 for c in "ab"}
    entropy = lambda p: -sum(v * np.log(v) for v in p.values())  # noqa: E731
    expected = (entropy(mean) - sum(entropy(m) for m in members) / 3) / np.log(2)
    assert active._consensus_divergence(members) / np.log(2) == pytest.approx(expected)
    learner._committee = [agree, agree, agree]
    learner._mean_disagreement = 0.0
    assert learner.query_one({}, proba=proba)  # identical members and no history: nothing to rank, ask


@pytest.mark.parametrize("stream", ["phishing", "bananas"])
@pytest.mark.parametrize("budget", [0.05, 0.2])
def test_query_by_committee_spends_its_budget(stream, budget):
    # The committee used to agree for ever after a few labels (Bananas: 5 labels at B = 1,
    # Phishing seed 1: 1 label); a query strategy must keep asking while budget is left.
    if stream == "phishing":
        data, classifier = PHISHING, lr()
    else:
        data, classifier = list(itertools.islice(datasets.Bananas(), 2000)), tree.HoeffdingTreeClassifier(grace_period=50)
    for seed in (0, 1):
        learner = ActiveLearner(classifier.clone(), strategy="qbc", budget=budget, seed=seed)
        for x, y in data:
            if learner.query_one(x, proba=learner.predict_proba_one(x)):
                learner.learn_one(x, y)
        assert learner.labels_asked >= 0.5 * budget * len(data)


def test_committee_is_trained_by_online_bagging():
    learner = ActiveLearner(Scripted(), strategy="qbc", committee_size=4, seed=0)
    for i in range(200):
        learner.learn_one({"f": float(i)}, "a")
    counts = [len(m.learned) for m in learner._committee]
    assert learner.model.learned == ["a"] * 200
    assert len(set(counts)) > 1 and all(150 < c < 250 for c in counts)  # Poisson(1) copies per member


def test_density_weighted_asks_only_where_points_are_dense():
    learner = primed("dbal", noise_std=0.0, window=100)  # η = 1: the uncertainty test is the variable one
    uncertain = {"a": 0.6, "b": 0.4}
    for i in range(20):
        learner.query_one({"f": float(i)}, proba=uncertain)
    theta = learner.threshold
    assert not learner.query_one({"f": 500.0}, proba=uncertain)  # far from all: nobody's nearest neighbour
    assert learner.threshold == theta  # not dense: the uncertainty rule is not even consulted
    assert learner.query_one({"f": 10.4}, proba=uncertain)  # between 10 and 11: nearer to 10 than 11 is
    assert not learner.query_one({"f": 10.6}, proba={"a": 1.0, "b": 0.0})  # dense but certain


def test_split_detects_change_on_random_labels_and_resets_the_classifier():
    learner = ActiveLearner(Scripted((("a", 0.9), ("b", 0.1))), strategy="split", budget=1.0, random_fraction=1.0)
    first = learner.model
    for i in range(600):
        x = {"f": float(i)}
        assert learner.query_one(x)
        learner.learn_one(x, "a" if i < 300 else "b")  # the classifier keeps predicting "a"
    assert learner.drifts_detected >= 1
    assert learner.model is not first
    assert len(learner.model.learned) < 300


def test_split_without_random_labels_is_variable_uncertainty():
    split = primed("split", random_fraction=0.0, step=0.1)
    variable = primed("variable", step=0.1)
    for p in np.linspace(0.5, 1.0, 50).tolist():
        proba = {"a": p, "b": 1 - p}
        assert split.query_one({}, proba=proba) is variable.query_one({}, proba=proba)
    assert split.threshold == variable.threshold


class Counting(base.Classifier):
    """A logistic regression that counts, across clones, the predictions and updates asked of it."""

    calls: collections.Counter = collections.Counter()

    def __init__(self):
        self.model = linear_model.LogisticRegression()

    def learn_one(self, x, y, **kwargs):
        Counting.calls["learn"] += 1
        self.model.learn_one(x, y)

    def predict_proba_one(self, x, **kwargs):
        Counting.calls["predict"] += 1
        return self.model.predict_proba_one(x)


@pytest.mark.parametrize("strategy", ["random", "fixed", "variable", "randvar", "split", "selective"])
def test_simple_strategies_cost_no_prediction_or_update_of_their_own(strategy):
    # The structure behind the overhead benchmark: beside the caller's one prediction per
    # event and one update per answered query, the wrapper asks nothing of its classifier
    # (split used to predict each random label a second time for its drift detector).
    Counting.calls.clear()
    params = {"split": {"random_fraction": 0.5}, "fixed": {"threshold": 1.01}}.get(strategy, {})
    learner = ActiveLearner(Counting(), strategy=strategy, budget=0.3, seed=2, **params)
    stream = itertools.islice(synth.ConceptDriftStream(seed=5, position=1000, width=10), 2000)
    for x, y in stream:
        if learner.query_one(x, proba=learner.predict_proba_one(x)):
            learner.learn_one(x, y)
    assert learner.labels_asked > 100
    assert Counting.calls == {"predict": 2000, "learn": learner.labels_asked}


def test_committee_costs_one_prediction_per_member_per_gated_event():
    Counting.calls.clear()
    learner = ActiveLearner(Counting(), strategy="qbc", budget=0.3, seed=2, committee_size=4)
    learned = 0
    for x, y in SEA[:1000]:
        if learner.query_one(x, proba=learner.predict_proba_one(x)):
            learner.learn_one(x, y)
            learned += 1
    # Members learn Poisson(1) copies each: 4 per label on average, so about 5 updates in all.
    assert 4 * learned < Counting.calls["learn"] < 6 * learned
    assert Counting.calls["predict"] > 1000 + 4 * learned  # the committee votes on every gated event


# --------------------------------------------------------------------------- state


def _run(learner, stream):
    trace = []
    for x, y in stream:
        proba = learner.predict_proba_one(x)
        ask = learner.query_one(x, proba=proba)
        trace.append((proba, ask))
        if ask:
            learner.learn_one(x, y)
    return trace


@pytest.mark.parametrize("budget_window", [None, 50])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_state_round_trip_continues_bit_for_bit(strategy, budget_window):
    def make():
        return ActiveLearner(lr(), strategy=strategy, budget=0.3, seed=11, budget_window=budget_window)

    stream = list(itertools.islice(synth.ConceptDriftStream(seed=2, position=300, width=5), 800))
    learner = make()
    _run(learner, stream[:400])
    state = check_state(learner.state_dict())
    restored = make()
    restored.load_state_dict(state)
    assert states_equal(restored.state_dict(), state)
    assert _run(restored, stream[400:]) == _run(learner, stream[400:])
    assert states_equal(restored.state_dict(), learner.state_dict())


@pytest.mark.parametrize("strategy", ["randvar", "random", "qbc"])
@pytest.mark.parametrize("cut", [0, 1, 200, active.RNG_BLOCK, active.RNG_BLOCK + 1])
def test_random_draws_continue_from_a_checkpoint_anywhere_in_a_block(strategy, cut):
    # At B = 1 randvar and random draw one number per event once a label is learned, so
    # ``cut`` events use up ``cut - 1`` draws: the checkpoint falls before the first block,
    # inside it (the run then crosses into the next block), one draw before its end or at it.
    def make():
        return ActiveLearner(lr(), strategy=strategy, budget=1.0, seed=7)

    stream = SEA[:1400]
    learner = make()
    _run(learner, stream[:cut])
    state = check_state(learner.state_dict())
    assert len(state["rng/unused"]) <= active.RNG_BLOCK
    restored = make()
    restored.load_state_dict(state)
    assert _run(restored, stream[cut:]) == _run(learner, stream[cut:])
    assert restored.threshold == learner.threshold
    assert states_equal(restored.state_dict(), learner.state_dict())


def test_state_without_the_numpy_generator_is_refused_clearly():
    state = ActiveLearner(lr(), strategy="randvar").state_dict()
    del state["rng/generator"]  # as in checkpoints of the version that used Python's random module
    with pytest.raises(ValueError, match="rng/generator"):
        ActiveLearner(lr(), strategy="randvar").load_state_dict(state)


def test_pickled_and_copied_learners_continue_identically():
    learner = ActiveLearner(lr(), strategy="split", budget=0.5, seed=2)
    _run(learner, SEA[:700])
    copies = [pickle.loads(pickle.dumps(learner)), copy.deepcopy(learner)]
    expected = _run(learner, SEA[700:])
    for other in copies:
        assert _run(other, SEA[700:]) == expected
        assert states_equal(other.state_dict(), learner.state_dict())


def test_split_state_holds_the_drift_detector(monkeypatch):
    monkeypatch.setattr(active, "ADWIN_HISTORY", 64)  # force re-basing of the detector's log

    def make():
        return ActiveLearner(lr(), strategy="split", budget=0.5, random_fraction=0.5, seed=4)

    stream = list(itertools.islice(synth.ConceptDriftStream(synth.SEA(variant=0, seed=1), synth.SEA(variant=3, seed=2), seed=2, position=500, width=5), 1200))
    learner = make()
    _run(learner, stream[:700])
    assert len(learner.state_dict()["adwin/history"]) <= 64
    restored = make()
    restored.load_state_dict(learner.state_dict())
    assert _run(restored, stream[700:]) == _run(learner, stream[700:])
    assert states_equal(restored.state_dict(), learner.state_dict())


def test_load_state_of_another_strategy_is_refused():
    state = ActiveLearner(lr(), strategy="fixed").state_dict()
    with pytest.raises(ValueError, match="strategy 'fixed'"):
        ActiveLearner(lr(), strategy="randvar").load_state_dict(state)


# --------------------------------------------------------------------------- processor


def _items(events):
    decode = ActiveProcessor(always_asks()).decode
    return [Item({"row": i}, decode(e), e) for i, e in enumerate(events)]


def _processor(learner=None, **options):
    learner = learner or always_asks()
    opts = ActiveProcessor.Options(**options)
    return ActiveProcessor(learner, EvalOptions(), opts)


def test_decode_names_the_bad_field():
    processor = _processor()
    for event, field in [
        ({"id": 1, "x": {"a": float("nan")}}, "x['a']"),
        ({"id": 1, "x": {"a": 1.0}, "y": [1]}, "y must be"),
        ({"id": True, "x": {"a": 1.0}}, "id must be"),
        ({"id": 1}, "needs 'x'"),
        ({"y": True}, "needs 'x'"),
        ({"id": 1, "x": [1.0]}, "x must be"),
    ]:
        with pytest.raises(BadEvent, match=re.escape(field)):
            processor.decode(event)


def test_label_requests_and_answers_joined_by_id():
    learner = always_asks(budget=0.5)
    processor = _processor(learner)
    examples = [{"id": f"e{i}", "x": x} for i, (x, _) in enumerate(PHISHING[:40])]
    outputs = processor.process(_items(examples))
    requests = [o.payload for o in outputs if o.payload["type"] == "label_request"]
    predictions = [o.payload for o in outputs if o.payload["type"] == "prediction"]
    assert len(predictions) == 40 and len(requests) == 20
    assert all(r["x"] == examples[int(r["id"][1:])]["x"] for r in requests)
    assert learner.labels_asked == 20 and processor.metrics()["pending"] == 20
    labels = {f"e{i}": y for i, (_, y) in enumerate(PHISHING[:40])}
    answers = [{"id": r["id"], "y": labels[r["id"]]} for r in reversed(requests)]
    answers += [{"id": "e0", "y": True}, {"id": "nobody", "y": False}]  # e0 was not asked / unknown id
    answers.append({"id": requests[0]["id"], "y": True})  # answered twice
    processor.process(_items(answers))
    rejected = processor.take_rejected()
    assert [item.value[1] for item, _ in rejected] == ["e0", "nobody", requests[0]["id"]]
    assert all("no pending label request" in reason for _, reason in rejected)
    assert processor.metrics()["labels_learned"] == 20 and processor.metrics()["pending"] == 0


def test_requests_expire_after_their_ttl_and_the_store_is_bounded():
    processor = _processor(always_asks(), pending_ttl=5, max_pending=3)
    examples = [{"id": i, "x": x} for i, (x, _) in enumerate(PHISHING[:4])]
    processor.process(_items(examples))
    assert list(processor.pending) == [1, 2, 3]  # bounded: the oldest went first
    processor.process(_items([{"id": 100 + i, "x": PHISHING[10][0]} for i in range(3)]))
    assert list(processor.pending) == [100, 101, 102]
    filler = [{"x": PHISHING[20][0]}] * 6  # no id, no y: only predicted
    processor.process(_items(filler))
    processor.process(_items([{"id": 100, "y": True}]))
    assert "no pending label request" in processor.take_rejected()[0][1]
    assert processor.metrics()["expired"] == 7 and processor.details()["active_learning"]["unanswerable"] == 6


def _labelled_events(n, start=0):
    return [{"id": start + i, "x": x, "y": y} for i, (x, y) in enumerate(PHISHING[start : start + n])]


@pytest.mark.parametrize("delay", [0, 7])
def test_replayed_labels_arrive_label_delay_events_later(delay):
    learner = always_asks()
    processor = _processor(learner, label_delay=delay)
    learned_after = []
    for event in _labelled_events(30):
        processor.process(_items([event]))
        learned_after.append(processor.metrics()["labels_learned"])
    assert learned_after == [max(0, k - delay) for k in range(1, 31)]
    processor.flush()
    assert processor.metrics()["labels_learned"] == 30


def test_eval_label_delay_is_the_default():
    processor = ActiveProcessor(always_asks(), EvalOptions(label_delay=4), ActiveProcessor.Options())
    assert processor.label_delay == 4


def _restarted(make_learner, options, before, after):
    """Run ``before``, checkpoint learner + processor, restore into fresh objects, run ``after``."""
    learner = make_learner()
    processor = _processor(learner, **options)
    out = processor.process(_items(before))
    state = check_state(learner.state_dict()), check_state(processor.state_dict())
    learner2 = make_learner()
    processor2 = _processor(learner2, **options)
    learner2.load_state_dict(state[0])
    processor2.load_state_dict(state[1])
    out += processor2.process(_items(after))
    processor2.flush()
    return learner2, processor2, out


def test_labels_for_requests_made_before_a_restart_are_joined():
    def make():
        return ActiveLearner(lr(), strategy="randvar", budget=0.3, seed=5)

    examples = [{"id": i, "x": x} for i, (x, _) in enumerate(PHISHING[:300])]
    labels = {i: y for i, (_, y) in enumerate(PHISHING[:300])}
    # First pass: learn which ids are asked (deterministic for this seed).
    processor = _processor(make())
    asked = [o.payload["id"] for o in processor.process(_items(examples[:200])) if o.payload["type"] == "label_request"]
    assert len(asked) > 20
    answers = [{"id": i, "y": labels[i]} for i in asked]
    before, after = examples[:200], answers + examples[200:]
    uninterrupted = make()
    p = _processor(uninterrupted)
    p.process(_items(before))
    p.process(_items(after))
    restarted, p2, _ = _restarted(make, {}, before, after)
    assert not p2.take_rejected()
    assert p2.details()["active_learning"]["answers_joined"] == len(asked)
    assert states_equal(restarted.state_dict(), uninterrupted.state_dict())
    assert states_equal(p2.state_dict(), p.state_dict())


def test_delayed_replayed_labels_in_flight_survive_a_restart():
    def make():
        return ActiveLearner(lr(), strategy="split", budget=0.5, seed=9)

    events = _labelled_events(400)
    options = {"label_delay": 25}
    uninterrupted = make()
    p = _processor(uninterrupted, **options)
    p.process(_items(events))
    p.flush()
    restarted, p2, _ = _restarted(make, options, events[:210], events[210:])
    assert p2.metrics() == p.metrics()
    assert states_equal(restarted.state_dict(), uninterrupted.state_dict())


def test_duplicate_id_while_pending_is_a_dead_letter():
    processor = _processor()
    processor.process(_items([{"id": 1, "x": PHISHING[0][0]}, {"id": 1, "x": PHISHING[1][0]}]))
    (item, reason), = processor.take_rejected()
    assert item.position == {"row": 1} and "already has a pending label request" in reason


# --------------------------------------------------------------------------- end to end


def _write(path, events):
    with open(path, "w") as f:
        for event in events:
            f.write(json.dumps(event) + "\n")


def _read(path):
    return [json.loads(line) for line in open(path)]


def test_replay_of_configs_active_toml_emits_label_requests(tmp_path):
    events = _labelled_events(600)
    events.insert(100, {"id": 9999, "x": {"a": "text"}})  # bad input goes to dead letters
    _write(tmp_path / "events.jsonl", events)
    config = load_config(ROOT / "configs" / "active.toml")
    config.output.predictions = str(tmp_path / "outputs.jsonl")
    config.output.dead_letters = str(tmp_path / "dead.jsonl")
    report = replay(config, tmp_path / "events.jsonl", tmp_path / "report", progress=False)
    outputs = _read(tmp_path / "outputs.jsonl")
    requests = [o for o in outputs if o["type"] == "label_request"]
    assert len([o for o in outputs if o["type"] == "prediction"]) == 600
    assert len(requests) == report["final_metrics"]["labels_requested"] > 0
    assert report["final_metrics"]["label_rate"] <= config.learner.params["budget"]
    assert report["final_metrics"]["labels_learned"] == len(requests)  # delayed answers all arrive (flush)
    assert report["final_metrics"]["Accuracy"] > 0.75
    assert report["dead_letters"] == 1 and "x['a']" in _read(tmp_path / "dead.jsonl")[0]["reason"]
    assert (tmp_path / "report" / "report.json").exists()


def test_replay_resumes_from_a_checkpoint_and_joins_answers_to_earlier_requests(tmp_path):
    config_text = (ROOT / "configs" / "active.toml").read_text()
    config_text = config_text.replace('# dir = "out/active/checkpoints"', f'dir = "{tmp_path / "ckpt"}"')
    config_text = config_text.replace("every_events = 500", "every_events = 100")
    config_text = config_text.replace('"out/active', f'"{tmp_path}/out')
    (tmp_path / "active.toml").write_text(config_text)
    examples = [{"id": f"q{i}", "x": x} for i, (x, _) in enumerate(PHISHING[:300])]
    labels = {f"q{i}": y for i, (_, y) in enumerate(PHISHING[:300])}
    config = load_config(tmp_path / "active.toml")
    config.checkpoint.dir = None
    config.output.predictions = str(tmp_path / "first.jsonl")
    _write(tmp_path / "probe.jsonl", examples)
    replay(config, tmp_path / "probe.jsonl", progress=False)  # which ids does this learner ask about?
    asked = [o["id"] for o in _read(tmp_path / "first.jsonl") if o["type"] == "label_request"]
    assert asked
    _write(tmp_path / "events.jsonl", examples + [{"id": i, "y": labels[i]} for i in asked])
    config = load_config(tmp_path / "active.toml")
    first = replay(config, tmp_path / "events.jsonl", progress=False, max_records=300)
    assert first["final_metrics"]["labels_learned"] == 0 and first["final_metrics"]["pending"] == len(asked)
    second = replay(load_config(tmp_path / "active.toml"), tmp_path / "events.jsonl", progress=False)
    assert second["resumed_from_events"] == 300
    assert second["dead_letters"] == 0
    assert second["final_metrics"]["labels_learned"] == len(asked)
    assert second["final_metrics"]["pending"] == 0

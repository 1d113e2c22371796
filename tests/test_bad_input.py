"""No single event stops the loop or corrupts the state (issue 14, findings 1, 2 and 4).

Each case compares the state after a stream with bad events mixed in with the
state after the same stream without them: the good events must be in the state
exactly once, the bad ones not at all, and every bad one must be a dead letter
with its reason.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlearn.connectors.base import Record, Source
from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.checkpointing import state_of
from streamlearn.engine.config import ConfigError, parse_config
from streamlearn.engine.loop import Engine
from streamlearn.engine.processor import DEFAULT_LIMITS, BadEvent, InputLimits, numeric_features
from streamlearn.engine.replay import replay
from streamlearn.learners.base import state_hash

RIVER = {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}}
REGRESSION = {"name": "river", "params": {"model": "linear_model.LinearRegression", "preprocessing": ["preprocessing.StandardScaler"]}}


def good_events(n: int, regression: bool = False) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = {"a": float(rng.normal()), "b": float(rng.normal()), "c": int(i % 5)}
        y = x["a"] * 2 + 1 if regression else bool(x["a"] + x["b"] > 0)
        out.append(json.dumps({"x": x, "y": y}).encode())
    return out


#: The issue's events, and more of the same kinds; each with a part of its dead-letter reason.
BAD = [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"x": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    (b'{"x": {"a": 1' + b"0" * 400 + b', "b": -1' + b"0" * 400 + b'}, "y": true}', "integer of 401 digits"),
    (b'{"x": {"a": 1.0}, "y": "cat"}', "binary classifier"),
    (b'{"x": {"a": 1e155}, "y": true}', "beyond engine.max_feature_abs"),
    (b'{"x": {"a": -1e16}, "y": false}', "beyond engine.max_feature_abs"),
    (json.dumps({"x": {f"f{i}": 1.0 for i in range(20_000)}, "y": True}).encode(), "more than engine.max_features"),
    (b'{"x": {"a": NaN}, "y": true}', "not finite"),
    (b'{"x": {"a": Infinity}, "y": true}', "not finite"),
    (b'{"x": {"a": "1.0"}, "y": true}', "must be a number"),
    (b'{"x": {"a": 1.0}, "y": 1' + b"0" * 5000 + b"}", "invalid JSON"),  # Python refuses ints of over 4300 digits
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"not json", "invalid JSON"),
    (b"[1, 2]", "must be a JSON object"),
]


def write(path, lines: list[bytes]):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def config(tmp_path, name: str, learner=RIVER, engine=None, every_events=10**9):
    return parse_config(
        {
            "learner": learner,
            "engine": {"batch_size": 64, **(engine or {})},
            "output": {"dead_letters": str(tmp_path / name / "dead.jsonl")},
            "checkpoint": {"dir": str(tmp_path / name / "ckpt"), "every_events": every_events},
        }
    )


def run(tmp_path, name: str, lines: list[bytes], **options):
    report = replay(config(tmp_path, name, **options), write(tmp_path / f"{name}.jsonl", lines), progress=False)
    letters = [json.loads(line) for line in (tmp_path / name / "dead.jsonl").read_text().splitlines()]
    last = CheckpointStore(tmp_path / name / "ckpt").list()[-1]
    return report, letters, last


def mixed(good: list[bytes], bad: list[bytes], every: int) -> tuple[list[bytes], dict[int, int]]:
    """``bad`` spread over ``good``; returns the stream and {row: index into bad}."""
    stream, where = [], {}
    for i, line in enumerate(good):
        stream.append(line)
        if i % every == every - 1 and len(where) < len(bad):
            where[len(stream)] = len(where)
            stream.append(bad[len(where) - 1])
    return stream, where


def test_every_kind_of_bad_event_is_a_dead_letter_and_the_state_is_the_clean_one(tmp_path):
    good = good_events(1500)
    stream, where = mixed(good, [raw for raw, _ in BAD], every=97)
    assert len(where) == len(BAD)
    report, letters, last = run(tmp_path, "mixed", stream)
    _, _, clean = run(tmp_path, "clean", good)

    assert report["dead_letters"] == len(BAD)
    assert sorted(letter["source"]["row"] for letter in letters) == sorted(where)
    for letter in letters:
        raw, reason = BAD[where[letter["source"]["row"]]]
        assert reason in letter["reason"], (letter["reason"], raw[:60])
    assert last.events == len(stream)
    assert last.sha256 == clean.sha256  # each good event in the state once, nothing of the bad ones


def test_a_learner_that_raises_half_way_leaves_no_trace(tmp_path):
    """HalfUpdate counts the event, then raises: a batch redone from the safe point, event by event."""
    learner = {"name": "tests.poison_learners:HalfUpdate", "processor": "supervised"}
    good = [json.dumps({"x": {"a": float(i)}, "y": 0.0}).encode() for i in range(700)]
    bombs = [json.dumps({"x": {"a": 1.0, "boom": i}, "y": 0.0}).encode() for i in range(5)]
    stream, where = mixed(good, bombs, every=150)
    stream.insert(10, bombs[0])  # two in one batch, and one right at the start
    report, letters, last = run(tmp_path, "mixed", stream, learner=learner)
    _, _, clean = run(tmp_path, "clean", good, learner=learner)

    assert report["dead_letters"] == len(where) + 1
    assert all(letter["reason"].startswith("RuntimeError: boom at") for letter in letters)
    state = CheckpointStore(tmp_path / "mixed" / "ckpt").load_latest().state
    clean_state = CheckpointStore(tmp_path / "clean" / "ckpt").load_latest().state
    # The learner and the metrics are the clean run's; only the feature-name count also saw "boom".
    assert {k: v for k, v in state.items() if k != "processor/vocabulary"}.keys() == {k for k in clean_state if k != "processor/vocabulary"}
    for key, value in clean_state.items():
        if key != "processor/vocabulary":
            assert np.array_equal(state[key], value) if isinstance(value, np.ndarray) else state[key] == value, key
    assert state["learner/count"] == len(good)
    assert state["learner/total"][0] == sum(range(700))


@pytest.mark.parametrize(
    ("learner", "reason"),
    [
        (RIVER, "learner state became NaN or infinite"),  # silent: found by the state check
        (REGRESSION, "OverflowError"),  # raised by river: the event fails on its own
    ],
)
def test_a_diverging_learner_is_never_checkpointed_and_loses_only_the_culprit(tmp_path, learner, reason):
    """With the magnitude bound lifted, 1e155 overflows StandardScaler's variance (finding 2)."""
    regression = learner is REGRESSION
    good = good_events(900, regression=regression)
    poison = b'{"x": {"a": 1e155, "b": 0.0, "c": 0}, "y": 1}'
    stream = good[:400] + [poison] + good[400:]
    engine = {"max_feature_abs": 1e300}
    report, letters, last = run(tmp_path, "mixed", stream, learner=learner, engine=engine, every_events=300)
    _, _, clean = run(tmp_path, "clean", good, learner=learner, engine=engine, every_events=300)

    assert [letter["source"]["row"] for letter in letters] == [400]
    assert reason in letters[0]["reason"]
    assert report["dead_letters"] == 1
    assert last.sha256 == clean.sha256
    store = CheckpointStore(tmp_path / "mixed" / "ckpt")
    for info in store.list():  # no checkpoint ever held NaN
        pipeline = store.load(info.file).state["learner/pipeline"]
        assert "NaN" not in pipeline and "Infinity" not in pipeline


def test_the_learner_feature_cap_dead_letters_new_names_beyond_it(tmp_path, capsys):
    lines = [json.dumps({"x": {f"f{i}": 1.0, "common": 1.0}, "y": i % 2 == 0}).encode() for i in range(20)]
    report, letters, _ = run(tmp_path, "cap", lines, engine={"max_learner_features": 10})
    # "common" and f0..f8 make 10 names; every later event brings an 11th.
    assert report["dead_letters"] == 11
    assert all("engine.max_learner_features = 10" in letter["reason"] for letter in letters)
    assert "learner feature cap reached" in capsys.readouterr().out


def test_limits_are_validated_in_the_config():
    for engine, key in [({"max_feature_abs": 0}, "max_feature_abs"), ({"max_features": 0}, "max_features"), ({"max_learner_features": -1}, "max_learner_features")]:
        with pytest.raises(ConfigError, match=f"engine.{key}"):
            parse_config({"learner": RIVER, "engine": engine})


# --------------------------------------------------------------------------- properties

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=12,
)
BIG_INTS = st.integers(min_value=-(10**500), max_value=10**500)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), JSON | BIG_INTS, max_size=6))
def test_numeric_features_accepts_only_bounded_numbers_and_raises_nothing_else(x):
    try:
        out = numeric_features({"x": x})
    except BadEvent:
        return
    for value in out.values():
        assert isinstance(value, int | float)
        assert math.isfinite(value) and abs(value) <= DEFAULT_LIMITS.max_feature_abs


class _Lines(Source):
    def __init__(self, lines: list[bytes]):
        self.lines = [Record(line, {"row": i}) for i, line in enumerate(lines)]

    def read_batch(self, max_records: int) -> list[Record]:
        batch, self.lines = self.lines[:max_records], self.lines[max_records:]
        self.exhausted = not self.lines
        return batch

    def positions(self):
        return {}

    def seek(self, positions):
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64) | JSON.map(lambda v: json.dumps({"x": v, "y": True}).encode()), max_size=8))
def test_no_bytes_stop_the_engine(lines):
    cfg = parse_config({"learner": RIVER})
    learner = cfg.build_learner()
    engine = Engine(cfg.build_processor(learner), _Lines(lines), limits=InputLimits(max_features=4))
    stats = engine.run()
    assert stats.records == len(lines)
    assert stats.processed + stats.dead_letters == len(lines)
    assert "NaN" not in state_of(learner)["learner/pipeline"]


def test_safe_point_copies_are_private(tmp_path):
    """The safe point must not share arrays with a learner that updates them in place."""
    good = [json.dumps({"x": {"a": 1.0}, "y": 0.0}).encode() for _ in range(10)]
    stream = good + [json.dumps({"x": {"a": 1.0, "boom": 1}, "y": 0.0}).encode()] + good
    learner = {"name": "tests.poison_learners:HalfUpdate", "processor": "supervised"}
    _, _, last = run(tmp_path, "inplace", stream, learner=learner)
    state = CheckpointStore(tmp_path / "inplace" / "ckpt").load_latest().state
    assert state["learner/total"][0] == 20.0 and state["learner/count"] == 20
    assert last.sha256 == state_hash(state)

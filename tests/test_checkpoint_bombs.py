"""A small checkpoint cannot make the loader allocate without bound (issue 14, finding 6).

Memory is measured in a fresh interpreter (peak RSS), since Arrow's allocations are
not seen by tracemalloc.
"""

from __future__ import annotations

import json
import subprocess
import sys

import hypothesis.strategies as st
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from river import datasets

import streamlearn.engine.checkpoint as checkpoint_module
from streamlearn.api import check_params, learner_from_checkpoint
from streamlearn.engine.checkpoint import (
    METADATA_KEY,
    SCHEMA,
    CheckpointStore,
    CorruptCheckpoint,
    read_checkpoint,
    state_to_table,
)
from streamlearn.engine.checkpointing import learner_spec
from streamlearn.learners.river_adapter import RiverLearner

BOMB_BYTES = 256 << 20

PEAK = """
import json, resource, sys
import streamlearn.api as api
from streamlearn.engine.checkpoint import read_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    getattr(api, sys.argv[1])(sys.argv[2])
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"error": error, "grown": grown}))
"""


def _peak(function: str, path) -> dict:
    """Run ``streamlearn.api.<function>(path)`` in a fresh interpreter: its error and how much its peak RSS grew."""
    result = subprocess.run([sys.executable, "-c", PEAK, function, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _rewrite(path, table: pa.Table, metadata: dict, **options) -> None:
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()}), path, **options)


def test_a_zstd_bomb_is_refused_from_its_footer(tmp_path):
    # The bomb: a few KB of zstd that inflate to hundreds of MB of zeros.
    store = CheckpointStore(tmp_path)
    info = store.save({"w": np.arange(3.0)}, events=1)
    path = tmp_path / info.file
    metadata = read_checkpoint(str(path)).metadata
    _rewrite(path, state_to_table({"w": np.zeros(BOMB_BYTES // 8)}), metadata, compression="zstd")
    assert path.stat().st_size < 200_000
    outcome = _peak("read_latest", path)
    assert "zstd-compressed; checkpoints are written uncompressed" in outcome["error"].lower()
    assert outcome["grown"] < 64 << 20, outcome  # the bomb is 256 MB
    with pytest.raises(CorruptCheckpoint, match="compressed"):
        read_checkpoint(str(path))
    assert store.load_latest() is None  # refused, never loaded


def test_a_dictionary_bomb_is_refused(tmp_path):
    # One 1 MB value repeated by dictionary indices: tiny on disk, huge decoded.
    path = tmp_path / "checkpoint-0000000001.parquet"
    rows = [("w", "str", "str", [], b"x" * (1 << 20), None, None)] * 200
    table = pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in rows], schema=SCHEMA)
    _rewrite(path, table, {"sha256": "0" * 64}, compression="none", use_dictionary=True)
    with pytest.raises(CorruptCheckpoint, match="encodings"):
        read_checkpoint(str(path))


def test_levels_that_expand_beyond_the_file_are_refused(tmp_path):
    # Null rows cost a few bits of run-length levels on disk but offsets and validity decoded.
    path = tmp_path / "checkpoint-0000000001.parquet"
    table = pa.table({name: pa.nulls(2_000_000, field.type) for name, field in zip(SCHEMA.names, SCHEMA, strict=True)}, schema=SCHEMA)
    _rewrite(path, table, {"sha256": "0" * 64}, compression="none", use_dictionary=False)
    assert path.stat().st_size < 100_000
    with pytest.raises(CorruptCheckpoint, match="decoding would take about"):
        read_checkpoint(str(path))


def test_max_bytes_refuses_a_larger_file_and_is_a_config_key(tmp_path):
    store = CheckpointStore(tmp_path, max_bytes=10_000)
    store.save({"w": np.arange(100.0)}, events=1)
    store.save({"w": np.arange(5000.0)}, events=2)  # 40 KB: written, with an error logged
    loaded = store.load_latest()
    assert loaded.events == 1  # the big one is refused, the previous one used
    with pytest.raises(CorruptCheckpoint, match=r"more than the 10,000 a checkpoint may have \(\[checkpoint\] max_bytes\)"):
        read_checkpoint(str(tmp_path / "checkpoint-0000000002.parquet"), max_bytes=10_000)
    from streamlearn.engine.config import parse_config

    config = parse_config({"learner": {"name": "river"}, "checkpoint": {"max_bytes": 123}}, env={})
    assert config.checkpoint.max_bytes == 123


def _river_checkpoint(tmp_path):
    learner = RiverLearner("linear_model.LogisticRegression", preprocessing=["preprocessing.StandardScaler"])
    for x, y in datasets.Phishing().take(100):
        learner.learn_one(x, y)
    store = CheckpointStore(tmp_path)
    store.save({f"learner/{k}": v for k, v in learner.state_dict().items()}, events=100, learner=learner_spec(learner, "river"))
    return learner, tmp_path / store.list()[-1].file


def test_river_params_in_metadata_are_never_built(tmp_path):
    learner, path = _river_checkpoint(tmp_path)
    table = pq.read_table(path)
    metadata = read_checkpoint(str(path)).metadata
    # The second bomb: parameters that build sketch.NUnique(error_rate=1.3e-4), ~500 MB.
    metadata["learner"]["params"] = {"model": {"class": "sketch.NUnique", "error_rate": 1.3e-4}}
    _rewrite(path, table, metadata, compression="none", use_dictionary=False)
    outcome = _peak("load_learner", path)
    assert outcome["error"] is None
    assert outcome["grown"] < 100 << 20, outcome
    restored = learner_from_checkpoint(read_checkpoint(str(path)))
    x, _ = next(iter(datasets.Phishing().take(1)))
    assert restored.predict_proba_one(x) == learner.predict_proba_one(x)
    assert restored.model["class"] == "linear_model.LogisticRegression"
    assert restored.preprocessing[0]["class"] == "preprocessing.StandardScaler"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": 10**30}, r"beyond ±2\^53"),
        ({"x": "a" * 20_000}, "20,000 characters"),
        ({"deep": json.loads("[" * 40 + "]" * 40)}, "nested more than 16 deep"),
        ({"many": list(range(20_000))}, "more than 10,000 values"),
        ({"f": float("inf")}, "not finite"),
        ([1, 2], "must be an object"),
    ],
)
def test_stored_params_are_bounded_json(params, message):
    with pytest.raises(ValueError, match=message):
        check_params(params)


def test_a_non_river_builtin_is_rebuilt_only_from_checked_params(tmp_path):
    from streamlearn.learners.bandits import RecoveringUCB

    bandit = RecoveringUCB(n_arms=3, k=2, d_max=5)
    store = CheckpointStore(tmp_path)
    store.save({f"learner/{k}": v for k, v in bandit.state_dict().items()}, events=0, learner=learner_spec(bandit, "bandit"))
    checkpoint = store.load_latest()
    assert type(learner_from_checkpoint(checkpoint)) is RecoveringUCB
    checkpoint.metadata["learner"]["params"]["n_arms"] = 10**40
    with pytest.raises(ValueError, match=r"learner params.n_arms = 1.000e\+40 is beyond"):
        learner_from_checkpoint(checkpoint)


def test_the_writer_passes_its_own_checks(tmp_path):
    # Many tiny entries: the worst case for offsets and validity against file size.
    state = {f"k{i}": bool(i % 2) for i in range(20_000)} | {"big": np.zeros(200_000), "s": "x" * 100}
    store = CheckpointStore(tmp_path)
    store.save(state, events=1)
    assert store.load_latest().state["k3"] is True


def test_a_costly_but_valid_spec_in_other_learners_params_is_refused_within_a_budget(tmp_path):
    # ActiveLearner builds its river classifier from its stored parameters: the issue's
    # NUnique bomb placed there is refused before the memory is taken.
    from streamlearn.learners.active import ActiveLearner

    learner = ActiveLearner("linear_model.LogisticRegression", strategy="randvar", budget=0.5)
    store = CheckpointStore(tmp_path)
    spec = learner_spec(learner, "active", {"classifier": "linear_model.LogisticRegression", "budget": 0.5})
    info = store.save({f"learner/{k}": v for k, v in learner.state_dict().items()}, events=0, learner=spec)
    path = tmp_path / info.file
    assert type(learner_from_checkpoint(read_checkpoint(str(path)))) is ActiveLearner
    metadata = read_checkpoint(str(path)).metadata
    metadata["learner"]["params"]["classifier"] = {"class": "sketch.NUnique", "error_rate": 1.3e-4}
    _rewrite(path, pq.read_table(path), metadata, compression="none", use_dictionary=False)
    outcome = _peak("load_learner", path)
    assert outcome["error"].startswith("ValueError: building ActiveLearner from ")
    assert "bytes of memory allowed; refusing it" in outcome["error"]
    assert outcome["grown"] < 300 << 20, outcome  # the spec asks for ~515 MB


@pytest.mark.parametrize(
    ("options", "message"),
    [({"compression": "zstd"}, "is compressed"), ({"compression": "none", "use_dictionary": True}, "is not PLAIN with RLE levels")],
)
def test_pages_are_checked_even_behind_a_footer_that_lies(tmp_path, monkeypatch, options, message):
    # A crafted footer can claim plain, uncompressed chunks; Arrow decodes by the page
    # headers. With the footer check out of the way, the page check still refuses.
    path = tmp_path / "checkpoint-0000000001.parquet"
    _rewrite(path, state_to_table({"w": np.zeros(100_000)}), {"sha256": "0" * 64}, **options)
    monkeypatch.setattr(checkpoint_module, "check_layout", lambda *args: None)
    read = []
    monkeypatch.setattr(checkpoint_module, "state_from_table", lambda tables: read.append(tables))
    with pytest.raises(CorruptCheckpoint, match=f"row group 0, column name: page at byte .* {message}"):
        read_checkpoint(str(path))
    assert not read


def test_reading_page_headers_costs_little(tmp_path):
    import time

    state = {f"k{i}": i for i in range(20_000)} | {f"a{i}": np.zeros(200_000) for i in range(20)}  # 21 row groups
    store = CheckpointStore(tmp_path)
    path = tmp_path / store.save(state, events=1).file
    parquet = pq.ParquetFile(path)
    with open(path, "rb") as f:

        def read_at(n, offset):
            f.seek(offset)
            return f.read(n)

        t0 = time.perf_counter()
        checkpoint_module.check_page_headers(parquet.metadata, read_at, path.stat().st_size)
        assert time.perf_counter() - t0 < 0.1


def test_a_dictionary_page_where_a_data_page_should_be_is_refused(tmp_path):
    # What a footer hiding its dictionary page (pointing its data pages at it) leads to.
    from streamlearn.engine.pages import PageError, check_pages

    path = tmp_path / "d.parquet"
    pq.write_table(state_to_table({"w": "x"}), path, compression="none", use_dictionary=True)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    data = path.read_bytes()
    with pytest.raises(PageError, match="is of type 2; checkpoints hold plain data pages only"):
        check_pages(lambda n, at: data[at : at + n], chunk.dictionary_page_offset, chunk.total_compressed_size, chunk.num_values)


@settings(max_examples=500, deadline=1000)
@given(st.binary(max_size=300))
def test_any_bytes_as_a_page_header_end_in_a_page_error_or_a_struct(data):
    from streamlearn.engine.pages import PageError, check_pages, read_struct

    try:
        fields, size = read_struct(data)
    except PageError:
        return
    assert isinstance(fields, dict) and 0 < size <= len(data)
    try:  # as a column chunk: refused or accepted, never another error or a hang
        check_pages(lambda n, at: data[at : at + n], 0, len(data), 1)
    except PageError:
        pass

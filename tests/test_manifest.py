"""A hostile or damaged manifest.json cannot make a store read or delete files (issue 14, finding 5)."""

import json
import re

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from structlog.testing import capture_logs

from streamlearn.engine.checkpoint import CheckpointInfo, CheckpointStore
from streamlearn.engine.manifest import InvalidManifest, parse_manifest


def _manifest(store_dir):
    return json.loads((store_dir / "manifest.json").read_text())


def _write_manifest(store_dir, data):
    (store_dir / "manifest.json").write_text(json.dumps(data))


def _entry_for(store_dir, file):
    """A copy of the newest real entry, pointing at ``file``."""
    entry = dict(_manifest(store_dir)["checkpoints"][-1])
    entry["file"] = file
    return entry


def _warnings(logs):
    return [e for e in logs if e["log_level"] == "warning" and "invalid manifest entry" in e["event"]]


def test_an_entry_outside_the_store_is_never_loaded(tmp_path):
    store_dir, outside = tmp_path / "store", tmp_path / "outside"
    good = CheckpointStore(store_dir).save({"w": np.arange(3.0)}, events=1)
    # A valid checkpoint with other state, outside the store, listed as the newest.
    evil = CheckpointStore(outside).save({"w": np.full(3, 666.0)}, events=99)
    entry = _entry_for(store_dir, f"../outside/{evil.file}")
    entry.update(seq=2, sha256=evil.sha256, events=99)
    _write_manifest(store_dir, {**_manifest(store_dir), "checkpoints": [*_manifest(store_dir)["checkpoints"], entry]})
    with capture_logs() as logs:
        loaded = CheckpointStore(store_dir).load_latest()
    assert loaded.events == 1 and loaded.path.endswith(good.file)
    np.testing.assert_array_equal(loaded.state["w"], np.arange(3.0))
    (warning,) = _warnings(logs)
    assert "../outside/" in warning["file"] and "checkpoint-<digits>.parquet" in warning["problem"]


@pytest.mark.parametrize("name", ["../victim.txt", "/tmp/victim.txt", "sub/checkpoint-0000000001.parquet", "..\\victim.txt"])
def test_retention_never_deletes_what_the_manifest_names_outside_the_pattern(tmp_path, name):
    store_dir = tmp_path / "store"
    store = CheckpointStore(store_dir, keep=1)
    store.save({"i": 1}, events=1)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    absolute = str(victim) if name.startswith("/") else name
    entry = {**_entry_for(store_dir, absolute), "seq": 0}
    _write_manifest(store_dir, {"format": "streamlearn-checkpoint/1", "checkpoints": [entry, *_manifest(store_dir)["checkpoints"]]})
    with capture_logs() as logs:
        for i in (2, 3):
            CheckpointStore(store_dir, keep=1).save({"i": i}, events=i)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in store_dir.iterdir()) == ["checkpoint-0000000003.parquet", "manifest.json"]
    assert _warnings(logs)


def test_a_string_seq_does_not_break_save(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    store.save({"i": 1}, events=1)
    data = _manifest(tmp_path)
    data["checkpoints"][0]["seq"] = "1"
    _write_manifest(tmp_path, data)
    with capture_logs() as logs:
        info = store.save({"i": 2}, events=2)
    # The bad entry is ignored (never a crash), and its file is not overwritten either.
    assert info.seq == 2 and (tmp_path / "checkpoint-0000000001.parquet").exists()
    assert store.load_latest().state == {"i": 2}
    (warning,) = _warnings(logs)
    assert "seq must be an integer" in warning["problem"]


@pytest.mark.parametrize("body", ["[]", '"x"', "null", '{"checkpoints": 3}', "{ not json", "[" * 100_000])
def test_a_manifest_of_the_wrong_shape_is_treated_as_missing(tmp_path, body):
    store = CheckpointStore(tmp_path)
    store.save({"i": 1}, events=1)
    store.save({"i": 2}, events=2)
    (tmp_path / "manifest.json").write_text(body)
    with capture_logs() as logs:
        assert CheckpointStore(tmp_path).load_latest().state == {"i": 2}
    assert any("manifest unreadable" in e["event"] for e in logs)


def test_extra_files_and_extra_entry_keys_are_left_alone(tmp_path):
    # Other parts of the engine keep files beside the checkpoints and may add keys.
    store = CheckpointStore(tmp_path, keep=1)
    store.save({"i": 1}, events=1)
    (tmp_path / "attempts.json").write_text("{}")
    data = _manifest(tmp_path)
    data["checkpoints"][0]["epoch"] = 3
    data["fence"] = {"epoch": 3}
    _write_manifest(tmp_path, data)
    with capture_logs() as logs:
        store.save({"i": 2}, events=2)
    assert not _warnings(logs)
    assert (tmp_path / "attempts.json").exists()
    assert [e["seq"] for e in _manifest(tmp_path)["checkpoints"]] == [2]


def test_a_file_listed_twice_is_kept_once_and_not_deleted_while_kept(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    store.save({"i": 1}, events=1)
    data = _manifest(tmp_path)
    data["checkpoints"] *= 2
    _write_manifest(tmp_path, data)
    store.save({"i": 2}, events=2)
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["checkpoint-0000000001.parquet", "checkpoint-0000000002.parquet"]
    assert store.load("checkpoint-0000000001.parquet").state == {"i": 1}


def test_load_refuses_names_outside_the_pattern(tmp_path):
    with pytest.raises(ValueError, match="not a checkpoint file name"):
        CheckpointStore(tmp_path).load("../checkpoint-0000000001.parquet")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
_field_values = st.one_of(
    _json,
    st.sampled_from(["checkpoint-0000000001.parquet", "../x.parquet", "/etc/passwd", "checkpoint-1.parquet", "a" * 64]),
)
_entries = st.fixed_dictionaries(
    {},
    optional={k: _field_values for k in ("file", "seq", "events", "sha256", "time", "bytes", "positions", "epoch")},
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, st.fixed_dictionaries({"checkpoints": st.lists(st.one_of(_entries, _json), max_size=6)})))
def test_parse_manifest_never_crashes_and_returns_only_safe_entries(data):
    try:
        entries = parse_manifest(data, CheckpointInfo)
    except InvalidManifest:
        assert not (isinstance(data, dict) and isinstance(data.get("checkpoints"), list))
        return
    seqs = [e.seq for e in entries]
    assert seqs == sorted(seqs) and len({e.file for e in entries}) == len(entries)
    for e in entries:
        assert re.fullmatch(r"checkpoint-[0-9]+\.parquet", e.file)
        assert "/" not in e.file and "\\" not in e.file and ".." not in e.file
        assert type(e.seq) is int and e.seq == int(e.file[len("checkpoint-") : -len(".parquet")])
        assert type(e.events) is int and isinstance(e.sha256, str) and isinstance(e.positions, dict)

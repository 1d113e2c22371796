import json
import os
import pickle
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from streamlearn.engine.checkpoint import CheckpointStore, CorruptCheckpoint, read_checkpoint
from streamlearn.engine.config import parse_config
from streamlearn.engine.replay import replay
from streamlearn.learners.base import state_hash
from tests.conftest import run_cli

STATE = {
    "f64": np.linspace(0, 1, 7),
    "f32_3d": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "i64": np.array([-(2**62), 0, 2**62], dtype=np.int64),
    "u8": np.arange(5, dtype=np.uint8),
    "bool_arr": np.array([True, False, True]),
    "empty": np.zeros((0, 3)),
    "scalar_arr": np.array(3.5),
    "big_endian": np.arange(3, dtype=">i4"),
    "nan": float("nan"),
    "neg_zero": -0.0,
    "huge_int": 2**80,
    "flag": False,
    "text": "ünïcode ✓ {\"json\": [1, 2]}",
    "empty_text": "",
}


def _same(a, b):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype.newbyteorder("<") == b[k].dtype.newbyteorder("<") or a[k].dtype == b[k].dtype
            np.testing.assert_array_equal(a[k], b[k])
        elif isinstance(a[k], float) and np.isnan(a[k]):
            assert np.isnan(b[k])
        else:
            assert a[k] == b[k] and type(a[k]) is type(b[k])


def test_roundtrip_every_kind_of_entry(tmp_path):
    store = CheckpointStore(tmp_path)
    info = store.save(STATE, events=10, positions={"f": {"path": "f", "row": 10}}, learner={"name": "x"})
    loaded = store.load_latest()
    _same(STATE, loaded.state)
    assert state_hash(loaded.state) == state_hash(STATE) == info.sha256
    assert loaded.events == 10 and loaded.positions == {"f": {"path": "f", "row": 10}}
    loaded.state["f64"][0] = 42.0  # arrays handed back are the caller's to change
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_loaded_state_does_not_depend_on_the_file_afterwards(tmp_path):
    # Files are read memory-mapped; the state handed back must be its own memory, or a
    # file changed in place later would silently change a live learner.
    big = np.arange(300_000, dtype=np.float64)  # a row group of its own
    store = CheckpointStore(tmp_path)
    info = store.save({"big": big, "small": np.arange(5.0)}, events=1)
    loaded = store.load_latest().state
    path = tmp_path / info.file
    with open(path, "r+b") as f:
        f.write(b"\0" * path.stat().st_size)
    np.testing.assert_array_equal(loaded["big"], big)
    np.testing.assert_array_equal(loaded["small"], np.arange(5.0))
    assert loaded["big"].flags.writeable


def test_manifest_is_plain_json_and_retention_keeps_n(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for i in range(4):
        store.save({"i": i}, events=i)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["seq"] for e in manifest["checkpoints"]] == [3, 4]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.parquet")) == [
        "checkpoint-0000000003.parquet",
        "checkpoint-0000000004.parquet",
    ]
    assert store.load_latest().state == {"i": 3}


@pytest.mark.parametrize("size", [1000, 300_000])  # small; and big enough for a row group of its own
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_latest_falls_back_to_previous_and_says_so(tmp_path, damage, size):
    store = CheckpointStore(tmp_path)
    store.save({"w": np.arange(float(size))}, events=1)
    info = store.save({"w": np.arange(float(size)) * 2}, events=2)
    path = tmp_path / info.file
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        # flip a byte inside the array data (well past the Parquet header)
        at = data.find(np.float64(2.0 * (size - 1)).tobytes())
        assert at > 0
        data[at] ^= 0x01
        path.write_bytes(bytes(data))
    with capture_logs() as logs:
        loaded = store.load_latest()
    assert loaded.events == 1
    np.testing.assert_array_equal(loaded.state["w"], np.arange(float(size)))
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors and "falling back to the previous one" in errors[0]["event"]
    assert errors[0]["file"] == info.file
    with pytest.raises(CorruptCheckpoint):
        read_checkpoint(str(path))


def test_an_entry_stored_twice_is_corrupt_not_silently_overwritten(tmp_path):
    # The hash covers the decoded state, so a second row with an entry's name would
    # otherwise replace the first unnoticed whenever its value matches the hash.
    store = CheckpointStore(tmp_path)
    info = store.save({"w": np.arange(3.0)}, events=1)
    path = tmp_path / info.file
    table, metadata = pq.read_table(path), pq.read_metadata(path).metadata
    doubled = pa.concat_tables([table, table]).replace_schema_metadata(metadata)
    pq.write_table(doubled, path, compression="none", use_dictionary=False)  # the writer's own layout
    with pytest.raises(CorruptCheckpoint, match="'w' appears twice"):
        read_checkpoint(str(path))


def test_a_failed_write_leaves_no_partial_file_and_the_previous_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    store.save({"w": np.arange(3.0)}, events=1)

    def disk_full(self, batch, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save({"w": np.arange(3.0) * 2}, events=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0000000001.parquet", "manifest.json"]
    assert store.load_latest().events == 1


def test_partial_files_of_a_killed_writer_are_removed_by_the_next_store(tmp_path):
    CheckpointStore(tmp_path).save({"i": 1}, events=1)
    orphan = tmp_path / ".checkpoint-0000000002.parquet.0123abcd.tmp"  # a kill -9 mid-write
    orphan.write_bytes(b"PAR1 half a checkpoint")
    store = CheckpointStore(tmp_path)
    # written after this store started: another writer's, left alone
    recent = tmp_path / ".manifest.json.4567ef.tmp"
    recent.write_bytes(b"{")
    os.utime(orphan, (time.time() - 60, time.time() - 60))
    os.utime(recent, (time.time() + 60, time.time() + 60))
    with capture_logs() as logs:
        store.save({"i": 2}, events=2)
    assert not orphan.exists() and recent.exists()
    assert any("partial file" in e["event"] and e["file"] == orphan.name for e in logs)
    assert store.load_latest().state == {"i": 2}


def test_missing_manifest_is_rebuilt_from_the_files(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save({"i": 1}, events=1)
    store.save({"i": 2}, events=2)
    (tmp_path / "manifest.json").write_text("{ not json")
    with capture_logs() as logs:
        assert CheckpointStore(tmp_path).load_latest().state == {"i": 2}
    assert any("manifest unreadable" in e["event"] for e in logs)


def test_duckdb_and_pandas_read_a_checkpoint_without_streamlearn(tmp_path):
    store = CheckpointStore(tmp_path)
    info = store.save(STATE, events=5, positions={"t/0": {"topic": "t", "partition": 0, "offset": 5}})
    path = str(tmp_path / info.file)
    rows = duckdb.sql(f"select name, kind, dtype, shape, text, number from '{path}' order by name").fetchall()
    by_name = {r[0]: r for r in rows}
    assert by_name["f32_3d"][2:4] == ("<f4", [2, 3, 4])
    assert by_name["text"][4] == STATE["text"]
    assert by_name["huge_int"][5] == float(2**80)
    meta = duckdb.sql(f"select decode(value) from parquet_kv_metadata('{path}') where decode(key) = 'streamlearn'").fetchall()[0][0]
    meta = json.loads(meta)
    assert meta["events"] == 5 and meta["sha256"] == info.sha256
    assert meta["positions"]["t/0"]["offset"] == 5
    assert {"streamlearn", "numpy", "pyarrow", "python"} <= set(meta["versions"])
    frame = pq.read_table(path).to_pandas()
    row = frame.set_index("name").loc["f32_3d"]
    array = np.frombuffer(row["data"], dtype=row["dtype"]).reshape(row["shape"])
    np.testing.assert_array_equal(array, STATE["f32_3d"])


def test_any_pyarrow_filesystem(tmp_path):
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    memory = fsspec.filesystem("memory")
    fs = PyFileSystem(FSSpecHandler(memory))
    store = CheckpointStore("/bucket/ckpts", keep=2, filesystem=fs)
    for i in range(3):
        store.save({"w": np.full(4, float(i))}, events=i)
    assert memory.exists("/bucket/ckpts/manifest.json")
    assert not [p for p in memory.ls("/bucket/ckpts", detail=False) if p.endswith(".tmp")]
    loaded = CheckpointStore("/bucket/ckpts", filesystem=fs).load_latest()
    np.testing.assert_array_equal(loaded.state["w"], np.full(4, 2.0))
    assert [e.seq for e in store.list()] == [2, 3]


def test_loading_never_unpickles(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    store.save(STATE, events=1)

    def forbidden(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    _same(STATE, store.load_latest().state)
    with pytest.raises(TypeError, match="object arrays cannot be stored"):
        store.save({"obj": np.array([{"a": 1}], dtype=object)})


def test_stopped_replay_resumes_to_the_same_state(tmp_path, phishing_jsonl):
    def config(name):
        return parse_config(
            {
                "learner": {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}},
                "eval": {"metrics": ["Accuracy"], "label_delay": 25},
                "checkpoint": {"dir": str(tmp_path / name), "every_events": 97},
            },
            env={},
        )

    whole = replay(config("whole"), phishing_jsonl, progress=False)
    parts = [replay(config("parts"), phishing_jsonl, progress=False, max_records=n) for n in (333, 400)]
    last = replay(config("parts"), phishing_jsonl, progress=False)
    assert [p["events"] for p in parts] == [333, 733] and last["events"] == 1250
    assert last["resumed_from_events"] == 733
    assert last["final_metrics"] == whole["final_metrics"]
    assert CheckpointStore(tmp_path / "parts").list()[-1].sha256 == CheckpointStore(tmp_path / "whole").list()[-1].sha256


def test_checkpoints_cli(tmp_path):
    store = CheckpointStore(tmp_path / "c")
    store.save({"w": np.ones(3)}, events=3, positions={"a": {"row": 3}}, learner={"name": "river", "params": {"l2": 0.1}}, metrics={"Accuracy": 0.5})
    result = run_cli("checkpoints", "list", str(tmp_path / "c"))
    assert result.returncode == 0 and "checkpoint-0000000001.parquet" in result.stdout
    result = run_cli("checkpoints", "show", str(tmp_path / "c" / "checkpoint-0000000001.parquet"), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["events"] == 3 and shown["positions"] == {"a": {"row": 3}}
    assert shown["metrics"] == {"Accuracy": 0.5} and shown["learner"]["params"] == {"l2": 0.1}
    assert shown["entries"]["w"] == "float64 [3]" and shown["hash_verified"] is True
    result = run_cli("checkpoints", "show", str(tmp_path / "c" / "checkpoint-0000000001.parquet"))
    assert "verified" in result.stdout and "Accuracy: 0.5" in result.stdout
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    result = run_cli("checkpoints", "show", str(tmp_path / "junk.parquet"))
    assert result.returncode == 1 and "not a readable Parquet file" in result.stderr

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamlearn.connectors.files import (
    CsvSource,
    JsonlSink,
    JsonlSource,
    ParquetSink,
    ParquetSource,
    RowMapping,
    open_sink,
    open_source,
)

ROWS = [{"id": i, "a": float(i), "b": i % 3, "label": i % 2 == 0} for i in range(23)]


def _read_all(source, batch=4):
    out = []
    while True:
        recs = source.read_batch(batch)
        if not recs:
            assert source.exhausted
            return out
        out.extend(recs)


@pytest.fixture
def files(tmp_path):
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("".join(json.dumps({"id": r["id"], "x": {"a": r["a"], "b": r["b"]}, "y": r["label"]}) + "\n" for r in ROWS))
    csv_path = tmp_path / "s.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "a", "b", "label"])
        w.writeheader()
        for r in ROWS:
            w.writerow({**r, "label": str(r["label"]).lower()})
    pq_path = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), pq_path, row_group_size=5)
    return jsonl, csv_path, pq_path


def test_all_formats_give_the_same_events(files):
    jsonl, csv_path, pq_path = files
    mapping = RowMapping(target="label")
    events = []
    for source in (JsonlSource(jsonl), CsvSource(csv_path, mapping), ParquetSource(pq_path, mapping, read_rows=3)):
        with source:
            recs = _read_all(source)
        events.append([r.value if isinstance(r.value, dict) else json.loads(r.value) for r in recs])
        assert [r.position["row"] for r in recs] == list(range(len(ROWS)))
    assert events[0] == events[1] == events[2]
    assert events[0][3] == {"id": 3, "x": {"a": 3.0, "b": 0}, "y": False}


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_seek_resumes_after_the_stored_position(files, kind):
    path = dict(zip(["jsonl", "csv", "parquet"], files, strict=True))[kind]
    mapping = RowMapping(target="label")
    with open_source(path, mapping=mapping) as first:
        head = first.read_batch(7) + first.read_batch(4)
        positions = first.positions()
    assert positions[str(path)]["row"] == 11
    with open_source(path, mapping=mapping) as second:
        second.seek(positions)
        rest = _read_all(second, batch=5)
    with open_source(path, mapping=mapping) as whole:
        everything = _read_all(whole, batch=100)
    assert [r.position["row"] for r in head + rest] == [r.position["row"] for r in everything]
    assert [r.value for r in head + rest] == [r.value for r in everything]


def test_seek_to_a_checkpoint_of_another_file_is_an_error(files):
    jsonl, _, _ = files
    with JsonlSource(jsonl) as source, pytest.raises(ValueError, match="holds positions for"):
        source.seek({"/elsewhere.jsonl": {"row": 3, "byte": 10}})


def test_csv_rows_with_wrong_cell_count_carry_a_reason(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3\n4,5\n")
    with CsvSource(path) as source:
        recs = _read_all(source)
    assert [r.error for r in recs] == [None, "row has 1 cells, the header has 2", None]
    assert recs[1].value == b"3"


def test_csv_cell_typing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('i,f,b,s,j,e\n3,2.5,true,hello,"[1, 2]",\n')
    with CsvSource(path) as source:
        (rec,) = _read_all(source)
    assert rec.value == {"i": 3, "f": 2.5, "b": True, "s": "hello", "j": [1, 2]}


def test_jsonl_and_parquet_sinks(tmp_path):
    records = [{"source": {"row": i}, "y_pred": i % 2 == 0, "x": {"a": i}} for i in range(5)]
    with open_sink(tmp_path / "o.jsonl") as sink:
        assert isinstance(sink, JsonlSink)
        sink.write(records[:2])
        sink.write(records[2:])
    lines = (tmp_path / "o.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    with open_sink(tmp_path / "o.parquet") as sink:
        assert isinstance(sink, ParquetSink)
        sink.write(records[:2])
        sink.flush()
        sink.write(records[2:])
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.num_rows == 5
    assert [json.loads(s) for s in table.column("x").to_pylist()] == [r["x"] for r in records]
    with pytest.raises(ValueError, match="sinks write .jsonl or .parquet"):
        open_sink(tmp_path / "o.csv")


def test_missing_input_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="input file not found"):
        open_source(tmp_path / "nope.jsonl")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        open_source(tmp_path / "data.txt")


def test_jsonl_sink_cuts_a_half_written_last_line(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    with JsonlSink(path) as sink:
        sink.write([{"a": 4}])
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_parquet_sink_never_overwrites(tmp_path):
    for i in range(2):
        with ParquetSink(tmp_path / "o.parquet") as sink:
            sink.write([{"i": i}])
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == [{"i": 0}]
    assert pq.read_table(tmp_path / "o.1.parquet").to_pylist() == [{"i": 1}]


def test_parquet_columns_become_the_same_events_as_rows_with_nulls(tmp_path):
    rows = [
        {"id": 0, "ts": None, "a": 1.5, "b": None, "label": True},
        {"id": None, "ts": 7, "a": None, "b": 2, "label": None},
        {"id": 2, "ts": 8, "a": 0.0, "b": 3, "label": False},
    ]
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    for mapping in (RowMapping(target="label"), RowMapping(target="label", exclude=["b"]), RowMapping()):
        with ParquetSource(path, mapping, read_rows=2) as source:
            got = [r.value for r in _read_all(source)]
        assert got == [mapping(dict(r)) for r in rows]
    assert got[1] == rows[1]  # no target: rows as they are, nulls included


def test_parquet_rows_become_the_events_the_row_mapping_gives():
    """Batch conversion (pyarrow rows) = the per-row mapping, with nulls and excluded columns."""
    table = pa.table({"id": [1, None, 3], "a": [1.0, None, 2.0], "b": [1, 2, 3], "note": ["p", "q", "r"], "y": [True, None, False]})
    mapping = RowMapping(target="y", exclude=["note"])
    nullable = [name for name, column in zip(table.schema.names, table.columns, strict=True) if column.null_count]
    events = mapping.from_rows(table.to_pylist(), nullable)
    assert events == [mapping(row) for row in table.to_pylist()]
    assert events[1] == {"x": {"b": 2}}
    assert RowMapping().from_rows(table.to_pylist()) == table.to_pylist()

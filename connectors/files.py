"""Logged streams on disk: JSONL, CSV and Parquet sources; JSONL and Parquet sinks.

Every record's position is ``{"path": ..., "row": n}`` (0-based row of the
file; JSONL positions also carry the byte offset of the line). ``positions()``
gives where to resume after the rows read so far, so a replay that is stopped
and restarted from a checkpoint skips exactly the rows already in the state:
JSONL seeks straight to the stored byte offset, Parquet to the row group that
holds the row, CSV re-reads and discards the rows before it.

Tabular rows (CSV, Parquet) map to the JSON event fields: a row that has the
event's own fields (``x``, ``probs``, ...) passes through; with ``target`` set,
the target column becomes ``y`` and every other column (but ``id``, ``ts`` and
``exclude``) becomes a feature in ``x``. CSV cells are typed on read: numbers,
``true``/``false``, JSON arrays/objects, otherwise strings; empty cells are
left out.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from streamlearn.connectors.base import Record, Sink, Source

__all__ = [
    "CsvSource",
    "JsonlSink",
    "JsonlSource",
    "ParquetSink",
    "ParquetSource",
    "RowMapping",
    "detect_format",
    "open_sink",
    "open_source",
]

FORMATS = ("jsonl", "csv", "parquet")


def detect_format(path: str | os.PathLike) -> str:
    """The stream format from a file name: ``.jsonl``/``.json``/``.ndjson``, ``.csv``, ``.parquet``/``.pq``."""
    name = str(path).lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise ValueError(f"cannot tell the format of {str(path)!r}: use .jsonl, .csv or .parquet, or set input.format")


class RowMapping:
    """Turns a flat table row into an event: ``target`` → ``y``, other columns → ``x``."""

    def __init__(self, target: str | None = None, exclude: Iterable[str] = (), keep: Iterable[str] = ("id", "ts")):
        self.target = target
        self.keep = tuple(keep)
        self.skip = {target, *exclude, *self.keep}

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.target is None:
            return row
        event: dict[str, Any] = {k: row[k] for k in self.keep if row.get(k) is not None}
        event["x"] = {k: v for k, v in row.items() if k not in self.skip and v is not None}
        if row.get(self.target) is not None:
            event["y"] = row[self.target]
        return event

    def from_rows(self, rows: list[dict[str, Any]], nullable: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The events of table rows (what ``__call__`` gives row by row).

        ``rows`` are pyarrow's ``to_pylist()`` dicts (built in C++); each becomes its
        event's ``x`` once the target and the kept and excluded columns are taken out
        of it. ``nullable``: the columns holding nulls; only their values are checked.
        """
        if self.target is None or not rows:
            return rows
        names = rows[0].keys()
        moved = [(k, k) for k in self.keep if k in names]
        if self.target in names:
            moved.append(("y", self.target))
        dropped = [k for k in names if k in self.skip and k != self.target and k not in self.keep]
        sparse = [k for k in nullable if k not in self.skip]
        events = []
        for row in rows:
            event = {"x": row}
            for name, key in moved:
                value = row.pop(key)
                if value is not None:
                    event[name] = value
            for key in dropped:
                del row[key]
            for key in sparse:
                if row[key] is None:
                    del row[key]
            events.append(event)
        return events


def _stream_key(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


def _check_positions(key: str, positions: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not positions:
        return None
    if key not in positions:
        raise ValueError(
            f"the checkpoint holds positions for {sorted(positions)}, not for {key!r}: "
            "resume with the same input, or start from an empty checkpoint directory"
        )
    return positions[key]


class JsonlSource(Source):
    """One JSON object per line; blank lines are skipped (they still count as rows)."""

    def __init__(self, path: str | os.PathLike):
        self.path = _stream_key(path)
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        self._size = os.fstat(self._file.fileno()).st_size
        self._row = 0
        self._byte = 0

    def read_batch(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        readline, path = self._file.readline, self.path
        row, byte = self._row, self._byte
        while len(out) < max_records:
            line = readline()
            if not line:
                self.exhausted = True
                break
            if not line.isspace():
                out.append(Record(line, {"path": path, "row": row, "byte": byte}))
            row += 1
            byte += len(line)
        self._row, self._byte = row, byte
        return out

    def positions(self) -> dict[str, dict[str, Any]]:
        return {self.path: {"path": self.path, "row": self._row, "byte": self._byte}}

    def seek(self, positions: dict[str, dict[str, Any]]) -> None:
        pos = _check_positions(self.path, positions)
        if pos is None:
            return
        self._row, self._byte = int(pos["row"]), int(pos["byte"])
        self._file.seek(self._byte)
        self.exhausted = False

    def progress(self) -> tuple[int, int | None]:
        return self._byte, self._size

    def close(self) -> None:
        self._file.close()


def _csv_cell(text: str) -> Any:
    if text == "":
        return None
    first = text[0]
    if first in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return text
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class _RowSource(Source):
    """A tabular file whose position is the next row to read."""

    path: str
    _row: int

    def positions(self) -> dict[str, dict[str, Any]]:
        return {self.path: {"path": self.path, "row": self._row}}

    def columns(self) -> list[str]:
        """The file's column names (its header), known before the first row is read."""
        raise NotImplementedError


class CsvSource(_RowSource):
    """A CSV file with a header row; cells are typed (see module docstring)."""

    def __init__(self, path: str | os.PathLike, mapping: RowMapping | None = None):
        self.path = _stream_key(path)
        self.mapping = mapping or RowMapping()
        self._file = open(self.path, newline="", encoding="utf-8")  # noqa: SIM115
        self._size = os.fstat(self._file.fileno()).st_size
        self._reader = csv.reader(self._file)
        try:
            self._header = next(self._reader)
        except StopIteration:
            self._header = []
            self.exhausted = True
        self._row = 0

    def read_batch(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        header, mapping = self._header, self.mapping
        for cells in self._reader:
            position = {"path": self.path, "row": self._row}
            self._row += 1
            if len(cells) != len(header):
                raw = io.StringIO()
                csv.writer(raw).writerow(cells)
                reason = f"row has {len(cells)} cells, the header has {len(header)}"
                out.append(Record(raw.getvalue().rstrip("\r\n").encode(), position, reason))
            else:
                row = {k: _csv_cell(v) for k, v in zip(header, cells, strict=True)}
                out.append(Record(mapping({k: v for k, v in row.items() if v is not None}), position))
            if len(out) >= max_records:
                return out
        self.exhausted = True
        return out

    def seek(self, positions: dict[str, dict[str, Any]]) -> None:
        pos = _check_positions(self.path, positions)
        if pos is None:
            return
        target = int(pos["row"])
        while self._row < target and next(self._reader, None) is not None:
            self._row += 1
        self.exhausted = self._row < target

    def progress(self) -> tuple[int, int | None]:
        return self._row, None

    def columns(self) -> list[str]:
        return list(self._header)

    def close(self) -> None:
        self._file.close()


class ParquetSource(_RowSource):
    """A Parquet file read in Arrow record batches (never row by row from disk)."""

    def __init__(self, path: str | os.PathLike, mapping: RowMapping | None = None, read_rows: int = 8192):
        import pyarrow.parquet as pq

        self.path = _stream_key(path)
        self.mapping = mapping or RowMapping()
        self._file = pq.ParquetFile(self.path)
        self._total = self._file.metadata.num_rows
        self._read_rows = read_rows
        self._row = 0
        #: The record batch being handed out, its rows taken so far and its columns with nulls.
        self._batch: Any = None
        self._taken = 0
        self._nullable: list[str] = []
        self._batches = self._iter_from(0)

    def _iter_from(self, row: int) -> Iterator[Any]:
        """The record batches from ``row`` on."""
        meta = self._file.metadata
        start_group, first_row = 0, 0
        while start_group < meta.num_row_groups and first_row + meta.row_group(start_group).num_rows <= row:
            first_row += meta.row_group(start_group).num_rows
            start_group += 1
        groups = list(range(start_group, meta.num_row_groups))
        skip = row - first_row
        if not groups:
            return
        for batch in self._file.iter_batches(batch_size=self._read_rows, row_groups=groups):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            if skip:
                batch, skip = batch.slice(skip), 0
            yield batch

    def read_batch(self, max_records: int) -> list[Record]:
        # Rows become Python objects only when handed out (a slice of the Arrow batch at
        # a time): thousands of rows converted ahead would live long enough for the
        # garbage collector to scan them again and again.
        events: list[dict[str, Any]] = []
        while len(events) < max_records:
            batch = self._batch
            if batch is None or self._taken >= batch.num_rows:
                batch = self._batch = next(self._batches, None)
                if batch is None:
                    break
                self._taken = 0
                self._nullable = [name for name, column in zip(batch.schema.names, batch.columns, strict=True) if column.null_count]
            n = min(max_records - len(events), batch.num_rows - self._taken)
            events += self.mapping.from_rows(batch.slice(self._taken, n).to_pylist(), self._nullable)
            self._taken += n
        path, start = self.path, self._row
        out = [Record(event, {"path": path, "row": row}) for row, event in enumerate(events, start)]
        self._row += len(events)
        if self._row >= self._total:
            self.exhausted = True
        return out

    def seek(self, positions: dict[str, dict[str, Any]]) -> None:
        pos = _check_positions(self.path, positions)
        if pos is None:
            return
        self._row = int(pos["row"])
        self._batch, self._taken = None, 0
        self._batches = self._iter_from(self._row)
        self.exhausted = self._row >= self._total

    def progress(self) -> tuple[int, int | None]:
        return self._row, self._total

    def columns(self) -> list[str]:
        return list(self._file.schema_arrow.names)

    def close(self) -> None:
        self._file.close()


def open_source(path: str | os.PathLike, format: str | None = None, mapping: RowMapping | None = None) -> Source:
    """A file source for ``path``; the format comes from the file name unless given."""
    if Path(path).is_dir():
        inside = sorted(p.name for p in Path(path).iterdir() if p.suffix.lower() in (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".pq"))
        hint = f" such as {Path(path) / inside[0]}" if inside else ""
        raise IsADirectoryError(f"the input {path} is a directory: pass one .jsonl, .csv or .parquet file{hint}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    fmt = format or detect_format(path)
    if fmt == "jsonl":
        return JsonlSource(path)
    if fmt == "csv":
        return CsvSource(path, mapping)
    if fmt == "parquet":
        return ParquetSource(path, mapping)
    raise ValueError(f"unknown input format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- sinks


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def _drop_partial_line(path: str) -> None:
    try:
        f = open(path, "r+b")  # noqa: SIM115
    except FileNotFoundError:
        return
    with f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Scan back for the last complete line.
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            chunk = f.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return
            end = start
        f.truncate(0)


def dumps_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), default=_json_default) + "\n"


class JsonlSink(Sink):
    """Appends one JSON object per line; ``flush`` fsyncs.

    A process killed mid-write can leave half a line at the end. Everything up
    to the last checkpoint was flushed whole, so such a tail belongs to events
    the restarted run processes again: it is cut off on open.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._file.write("".join(map(dumps_line, records)))

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


class ParquetSink(Sink):
    """Buffers records and writes them as Parquet row groups.

    Top-level scalar fields become columns; nested values (dicts, lists) are
    stored as JSON text so records with different feature sets share a schema.
    A Parquet file is only complete once closed: ``flush`` ends the current row
    group but the footer is written by ``close``. A file cannot be appended to,
    so when ``path`` exists each run writes the next free ``<stem>.<n>.parquet``;
    for runs that are killed and resumed, JSONL outputs are the robust choice.
    """

    def __init__(self, path: str | os.PathLike, row_group_size: int = 65536):
        target = Path(path)
        n = 1
        while target.exists():
            target = Path(path).with_suffix(f".{n}.parquet")
            n += 1
        self.path = os.fspath(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.row_group_size = row_group_size
        self._rows: list[dict[str, Any]] = []
        self._writer = None

    @staticmethod
    def _flat(record: dict[str, Any]) -> dict[str, Any]:
        return {
            k: json.dumps(v, default=_json_default) if isinstance(v, dict | list | tuple) else v
            for k, v in record.items()
        }

    def write(self, records: list[dict[str, Any]]) -> None:
        self._rows.extend(map(self._flat, records))
        if len(self._rows) >= self.row_group_size:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        else:
            try:
                table = table.select(self._writer.schema.names).cast(self._writer.schema)
            except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise ValueError(
                    f"{self.path}: records no longer match the Parquet schema {self._writer.schema}: {exc}"
                ) from exc
        self._writer.write_table(table)
        self._rows = []

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def open_sink(path: str | os.PathLike) -> Sink:
    """A JSONL or Parquet sink chosen by the file name."""
    fmt = detect_format(path)
    if fmt == "jsonl":
        return JsonlSink(path)
    if fmt == "parquet":
        return ParquetSink(path)
    raise ValueError(f"cannot write {str(path)!r}: sinks write .jsonl or .parquet files")

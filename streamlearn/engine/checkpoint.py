"""Parquet checkpoints of learner state, and the store that keeps them.

A checkpoint is one Parquet file with one row per state entry:

========  ===============  ==============================================================
column    type             meaning
========  ===============  ==============================================================
name      string           the state key, e.g. ``learner/weights``
kind      string           ``ndarray``, ``int``, ``float``, ``str`` or ``bool``
dtype     string           NumPy dtype of an array (``<f8``), else the kind
shape     list<int64>      array shape (empty for scalars)
data      large_binary     the exact bytes: C-order little-endian array data, UTF-8 text,
                           a decimal integer, an IEEE-754 double, or one byte for a bool
text      string           the value of ``str`` entries (JSON state is readable in SQL)
number    double           the value of numeric scalars
========  ===============  ==============================================================

so ``duckdb.sql("select name, dtype, shape, text, number from 'ckpt.parquet'")``
works without streamlearn, and ``np.frombuffer(data, dtype).reshape(shape)``
rebuilds an array. The file's key-value metadata ``streamlearn`` holds JSON:
learner class and parameters, library versions, the source positions the state
includes, events processed, the SHA-256 of the state (``state_hash``), metrics
and the wall-clock time.

``manifest.json`` beside the checkpoints lists them oldest first (file name,
sequence, events, hash, positions, time) and is plain JSON. Its entries are
validated on read (:mod:`streamlearn.engine.manifest`): only plain file names of
the store's own pattern are ever read or deleted.

Rules (see docs/architecture.md, "Checkpoints"): a checkpoint is written under a temporary name, fsync'd and
renamed; the manifest likewise, so a reader never sees half of either. Loading
checks the file's size, footer and page headers before decoding anything
(:func:`check_layout`, docs/security.md), then verifies the hash; a corrupt or
truncated checkpoint is reported and the previous good one is used. Nothing is pickled: loading reads arrays, numbers and strings,
never code. The location is a local directory or any ``pyarrow.fs`` URI
(``s3://bucket/prefix``); on object stores each PUT is atomic, so the temporary
name + move protocol gives the same guarantee. The last ``keep`` are retained, and
the first save of a store removes temporary files that a writer killed mid-write
left behind (one writer uses a location at a time).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import structlog

from streamlearn import __version__
from streamlearn.engine.manifest import MAX_MANIFEST_BYTES, InvalidManifest, checkpoint_seq, parse_manifest
from streamlearn.engine.pages import PageError, check_pages
from streamlearn.learners.base import State, check_state, entry_bytes, state_hash

__all__ = [
    "Checkpoint",
    "CheckpointInfo",
    "CheckpointStore",
    "CorruptCheckpoint",
    "MAX_BYTES",
    "check_layout",
    "check_page_headers",
    "check_size",
    "read_checkpoint",
    "state_from_table",
    "state_to_batches",
    "state_to_table",
]

log = structlog.get_logger("streamlearn.checkpoint")

FORMAT = "streamlearn-checkpoint/1"
MANIFEST = "manifest.json"
METADATA_KEY = b"streamlearn"
PREFIX = "checkpoint-"

SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("kind", pa.string()),
        ("dtype", pa.string()),
        ("shape", pa.list_(pa.int64())),
        ("data", pa.large_binary()),
        ("text", pa.string()),
        ("number", pa.float64()),
    ]
)


class CorruptCheckpoint(ValueError):
    """A checkpoint that cannot be read or whose state does not match its hash."""


@dataclasses.dataclass
class CheckpointInfo:
    """One manifest entry."""

    file: str
    seq: int
    events: int
    sha256: str
    time: str
    bytes: int = 0
    positions: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint: the verified state and its metadata."""

    state: State
    metadata: dict[str, Any]
    path: str

    @property
    def positions(self) -> dict[str, Any]:
        return self.metadata.get("positions", {})

    @property
    def events(self) -> int:
        return int(self.metadata.get("events", 0))


# --------------------------------------------------------------------------- state <-> Arrow


def _encode_entry(value: Any) -> tuple[str, str, list[int], memoryview | bytes, str | None, float | None]:
    dtype, shape, data = entry_bytes(value)
    if isinstance(value, np.ndarray):
        return "ndarray", dtype, list(shape), data, None, None
    if isinstance(value, str):
        return "str", dtype, [], data, value, None
    return dtype, dtype, [], data, None, float(value)


#: Entries at least this big get a row group of their own, written straight from the array's memory.
LARGE_ENTRY = 1 << 20


def _batch(rows: list[tuple[str, tuple]]) -> pa.RecordBatch:
    """One record batch of encoded entries; a single entry's bytes are not copied."""
    chunks = [row[1][3] for row in rows]
    sizes = [c.nbytes if isinstance(c, memoryview) else len(c) for c in chunks]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if len(chunks) == 1:
        body = pa.py_buffer(chunks[0])
    else:
        joined = np.empty(int(offsets[-1]), dtype=np.uint8)
        for chunk, start, stop in zip(chunks, offsets[:-1], offsets[1:], strict=True):
            joined[start:stop] = np.frombuffer(chunk, dtype=np.uint8)
        body = pa.py_buffer(joined)
    data = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(rows), [None, pa.py_buffer(offsets), body])
    return pa.RecordBatch.from_arrays(
        [
            pa.array([r[0] for r in rows], pa.string()),
            pa.array([r[1][0] for r in rows], pa.string()),
            pa.array([r[1][1] for r in rows], pa.string()),
            pa.array([r[1][2] for r in rows], pa.list_(pa.int64())),
            data,
            pa.array([r[1][4] for r in rows], pa.string()),
            pa.array([r[1][5] for r in rows], pa.float64()),
        ],
        schema=SCHEMA,
    )


def state_to_batches(state: Mapping[str, Any]) -> list[pa.RecordBatch]:
    """A state in the checkpoint layout: small entries in one batch, each large array in its own."""
    check_state(state)
    rows = [(name, _encode_entry(state[name])) for name in sorted(state)]
    small = [r for r in rows if not isinstance(r[1][3], memoryview) or r[1][3].nbytes < LARGE_ENTRY]
    large = [r for r in rows if isinstance(r[1][3], memoryview) and r[1][3].nbytes >= LARGE_ENTRY]
    return ([_batch(small)] if small or not large else []) + [_batch([r]) for r in large]


def state_to_table(state: Mapping[str, Any]) -> pa.Table:
    """A state as an Arrow table in the checkpoint layout."""
    return pa.Table.from_batches(state_to_batches(state), schema=SCHEMA)


def _decode_value(name: str, kind: str, dtype: str, shape: list[int], raw: np.ndarray) -> Any:
    if kind == "ndarray":
        dtype_ = np.dtype(dtype)
        if raw.flags.writeable and raw.ctypes.data % dtype_.alignment == 0 and raw.nbytes >= LARGE_ENTRY:
            # A large entry has a row group, hence an Arrow buffer, of its own: take it as is.
            return raw.view(dtype_).reshape(shape)
        return raw.copy().view(dtype_).reshape(shape)
    if kind == "str":
        return raw.tobytes().decode("utf-8")
    if kind == "int":
        return int(raw.tobytes().decode("ascii"))
    if kind == "float":
        return float(raw.view(np.float64)[0])
    if kind == "bool":
        return bool(raw[0])
    raise CorruptCheckpoint(f"entry {name!r} has unknown kind {kind!r}")


def state_from_table(table: pa.Table | list[pa.Table]) -> State:
    """Inverse of :func:`state_to_table` (or of a file's row groups read one by one).

    Arrays are writable and owned by the caller.
    """
    tables = table if isinstance(table, list) else [table]
    state: State = {}
    for part in tables:
        if part.schema.names[: len(SCHEMA.names)] != SCHEMA.names:
            raise CorruptCheckpoint(f"unexpected columns {part.schema.names}")
        for batch in part.to_batches():
            names = batch.column("name").to_pylist()
            kinds = batch.column("kind").to_pylist()
            dtypes = batch.column("dtype").to_pylist()
            shapes = batch.column("shape").to_pylist()
            data = batch.column("data")
            _, offsets_buf, body_buf = data.buffers()
            offsets = np.frombuffer(offsets_buf, dtype=np.int64)[data.offset : data.offset + len(data) + 1]
            body = np.frombuffer(body_buf, dtype=np.uint8) if body_buf is not None else np.empty(0, np.uint8)
            for i, name in enumerate(names):
                if name in state:
                    raise CorruptCheckpoint(f"entry {name!r} appears twice")
                try:
                    state[name] = _decode_value(name, kinds[i], dtypes[i], shapes[i], body[offsets[i] : offsets[i + 1]])
                except (ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
                    raise CorruptCheckpoint(f"entry {name!r} cannot be decoded: {exc}") from None
    return state


def _library_versions() -> dict[str, str]:
    versions = {"streamlearn": __version__, "python": platform.python_version(), "pyarrow": pa.__version__}
    versions["numpy"] = np.__version__
    for name in ("river", "torch", "kafka"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            versions[name] = str(module.__version__)
    return versions


#: Largest checkpoint file a store reads by default (``[checkpoint] max_bytes``).
MAX_BYTES = 4 << 30
#: What decoding a checkpoint may allocate, as a multiple of its file size (plus 1 MiB).
#: The writer stores every value uncompressed and plain, so a real checkpoint decodes to
#: about its own size (at most ~4x for a state of many tiny entries, whose offsets and
#: validity bits outweigh their bytes); a crafted one that expands more is refused.
MAX_EXPANSION = 8
#: The Parquet columns the writer produces: (path, physical type).
_COLUMNS = (
    ("name", "BYTE_ARRAY"),
    ("kind", "BYTE_ARRAY"),
    ("dtype", "BYTE_ARRAY"),
    ("shape.list.element", "INT64"),
    ("data", "BYTE_ARRAY"),
    ("text", "BYTE_ARRAY"),
    ("number", "DOUBLE"),
)
#: Encodings the writer produces (plain values, run-length definition/repetition levels):
#: never a dictionary, whose indices can repeat a large value without bound.
_ENCODINGS = frozenset({"PLAIN", "RLE"})


def check_size(size: int, max_bytes: int = MAX_BYTES) -> None:
    """Refuse a checkpoint file larger than ``max_bytes`` (before its footer is read)."""
    if size > max_bytes:
        raise CorruptCheckpoint(f"{size:,} bytes, more than the {max_bytes:,} a checkpoint may have ([checkpoint] max_bytes)")


def check_layout(metadata: pq.FileMetaData, size: int, max_bytes: int = MAX_BYTES) -> None:
    """Refuse, from the footer alone, a file the writer could not have produced or too big to decode.

    Checked before any column is read, for a file of ``size`` bytes: the columns and
    their physical types; every column chunk uncompressed (its stored and
    uncompressed sizes equal), plainly encoded, without a dictionary page; and the
    memory decoding would take (values, their offsets and validity, per the footer's
    value counts and sizes) against ``MAX_EXPANSION`` times the file size and
    ``max_bytes``. Raises :class:`CorruptCheckpoint` naming what is wrong.
    """
    columns = tuple((metadata.schema.column(i).path, metadata.schema.column(i).physical_type) for i in range(metadata.num_columns))
    if columns != _COLUMNS:
        raise CorruptCheckpoint(f"unexpected columns {columns}")
    decoded = 0
    for r in range(metadata.num_row_groups):
        group = metadata.row_group(r)
        decoded += 16 * group.num_rows
        for c in range(group.num_columns):
            chunk = group.column(c)
            where = f"row group {r}, column {chunk.path_in_schema}"
            if chunk.compression != "UNCOMPRESSED" or chunk.total_compressed_size != chunk.total_uncompressed_size:
                raise CorruptCheckpoint(f"{where} is {chunk.compression}-compressed; checkpoints are written uncompressed")
            if chunk.has_dictionary_page or not _ENCODINGS.issuperset(chunk.encodings):
                raise CorruptCheckpoint(f"{where} uses encodings {chunk.encodings}; checkpoints use only PLAIN and RLE")
            # Values, plus up to 16 bytes of offsets, levels and validity for each.
            decoded += chunk.total_uncompressed_size + 16 * chunk.num_values
    allowed = min(max_bytes, MAX_EXPANSION * size + (1 << 20))
    if decoded > allowed:
        raise CorruptCheckpoint(f"decoding would take about {decoded:,} bytes, more than the {allowed:,} allowed for a {size:,}-byte file")


def check_page_headers(metadata: pq.FileMetaData, read_at: Any, size: int) -> None:
    """Refuse a file whose pages are not what its footer (as :func:`check_layout` accepted it) says.

    Arrow decodes each page by its own header, so every header is read
    (:func:`streamlearn.engine.pages.check_pages`; ``read_at(nbytes, offset)`` reads the
    file): a dictionary or compressed page behind a plain, uncompressed footer is refused
    before it is decoded.
    """
    for r in range(metadata.num_row_groups):
        group = metadata.row_group(r)
        for c in range(group.num_columns):
            chunk = group.column(c)
            start, length = chunk.data_page_offset, chunk.total_compressed_size
            where = f"row group {r}, column {chunk.path_in_schema}"
            if start < 4 or length < 0 or start + length > size:
                raise CorruptCheckpoint(f"{where} lies outside the file (bytes {start} to {start + length} of {size})")
            try:
                check_pages(read_at, start, length, chunk.num_values)
            except PageError as exc:
                raise CorruptCheckpoint(f"{where}: {exc}") from None


def read_checkpoint(path: str, filesystem: pafs.FileSystem | None = None, max_bytes: int = MAX_BYTES) -> Checkpoint:
    """Read one checkpoint file and verify its hash; raises :class:`CorruptCheckpoint`.

    Nothing is decoded before :func:`check_layout` has accepted the file's footer and
    :func:`check_page_headers` its pages.
    """
    if filesystem is None:
        filesystem, path = _resolve(path)
    try:
        size = filesystem.get_file_info(path).size
        if size is None:
            raise FileNotFoundError(path)
        check_size(size, max_bytes)
        with filesystem.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            check_layout(parquet.metadata, size, max_bytes)
            check_page_headers(parquet.metadata, f.read_at, size)
            raw_meta = (parquet.metadata.metadata or {}).get(METADATA_KEY)
            # Row group by row group: read() would concatenate them into one buffer (a copy).
            # One thread each: a row group holds one large value or a few small ones.
            tables = [parquet.read_row_group(i, use_threads=False) for i in range(parquet.num_row_groups)]
    except FileNotFoundError:
        raise
    except CorruptCheckpoint as exc:
        raise CorruptCheckpoint(f"{path}: {exc}") from None
    except (OSError, pa.ArrowException) as exc:
        raise CorruptCheckpoint(f"{path}: not a readable Parquet file ({exc})") from None
    if raw_meta is None:
        raise CorruptCheckpoint(f"{path}: no streamlearn metadata")
    try:
        metadata = json.loads(raw_meta)
    except (ValueError, RecursionError) as exc:
        raise CorruptCheckpoint(f"{path}: metadata is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise CorruptCheckpoint(f"{path}: metadata is not a JSON object")
    state = state_from_table(tables)
    digest = state_hash(state)
    if digest != metadata.get("sha256"):
        raise CorruptCheckpoint(f"{path}: state hash {digest[:12]}… does not match the stored {str(metadata.get('sha256'))[:12]}…")
    return Checkpoint(state=state, metadata=metadata, path=path)


def _resolve(location: str) -> tuple[pafs.FileSystem, str]:
    if "://" in location and not location.startswith("file://"):
        return pafs.FileSystem.from_uri(location)
    path = location.removeprefix("file://")
    # Memory-mapped reads: Parquet decodes straight from the page cache, one copy fewer.
    return pafs.LocalFileSystem(use_mmap=True), os.path.abspath(path)


# --------------------------------------------------------------------------- the store


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: One thread that computes state hashes next to the Parquet writer (the hash itself
#: fans out over the shared hashing pool).
_HASH_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-hash")


def _side_name(name: str) -> str:
    """A side file's name: plain, and neither a checkpoint nor the manifest."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == MANIFEST or checkpoint_seq(name) is not None:
        raise ValueError(f"{name!r} is not a side-file name")
    return name


class CheckpointStore:
    """Checkpoints in a directory (or ``pyarrow.fs`` location) with a manifest and retention.

    Parameters
    ----------
    location
        A local directory, or a URI ``pyarrow.fs`` understands (``s3://bucket/prefix``).
    keep
        Checkpoints retained; older ones are deleted after a newer one is durable.
    filesystem
        A ``pyarrow.fs.FileSystem`` to use instead of resolving ``location``
        (then ``location`` is a path inside it).
    max_bytes
        Largest checkpoint file read (see :func:`check_layout`); a larger one is
        corrupt, and writing one logs an error.

    Example
    -------

    >>> import numpy as np, tempfile
    >>> store = CheckpointStore(tempfile.mkdtemp(), keep=2)
    >>> info = store.save({"w": np.arange(3.0), "n": 3}, events=3, positions={"f": {"row": 3}})
    >>> store.load_latest().state["w"]
    array([0., 1., 2.])
    """

    def __init__(
        self, location: str | os.PathLike, keep: int = 5, filesystem: pafs.FileSystem | None = None, max_bytes: int = MAX_BYTES
    ):
        location = os.fspath(location)
        if filesystem is None:
            self.fs, self.root = _resolve(location)
        else:
            self.fs, self.root = filesystem, location.rstrip("/")
        self.keep = keep
        self.max_bytes = max_bytes
        self.location = location
        self._local = isinstance(self.fs, pafs.LocalFileSystem)
        self._dir_ready = False
        self._created = time.time()
        self._swept = False

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    # ------------------------------------------------------------------ writing

    def _write_atomic(self, name: str, write: Any, durable: bool = True) -> int:
        """Write via ``write(stream)`` to a temporary name, fsync (if ``durable``), rename; returns the size."""
        if not self._dir_ready:
            self.fs.create_dir(self.root, recursive=True)
            self._dir_ready = True
        tmp_name = f".{name}.{uuid.uuid4().hex}.tmp"
        tmp, final = self._path(tmp_name), self._path(name)
        try:
            # Arrow's native stream: a Python file object would cost pyarrow a copy per write.
            with self.fs.open_output_stream(tmp) as stream:
                write(stream)
                size = stream.tell()
            if self._local:
                if durable:
                    _fsync(tmp)  # fsync acts on the file, whichever descriptor asks
                os.replace(tmp, final)
            else:
                self.fs.move(tmp, final)
        except BaseException:
            # A full disk or a failing store must not leave half a checkpoint lying around.
            self._delete(tmp_name, missing_ok=True)
            raise
        if self._local and name == MANIFEST:
            # Makes both renames durable (a manifest naming a checkpoint whose rename
            # was lost falls back to the previous checkpoint on load).
            _fsync(self.root)
        return size

    def save(
        self,
        state: Mapping[str, Any],
        *,
        events: int = 0,
        positions: Mapping[str, Any] | None = None,
        learner: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> CheckpointInfo:
        """Write a checkpoint durably, then record it in the manifest and apply retention."""
        t0 = time.perf_counter()
        batches = state_to_batches(state)
        # The hash runs on other threads while Parquet writes (pyarrow releases the GIL);
        # it goes into the footer, which is written last.
        hashing = _HASH_THREAD.submit(state_hash, state)
        entries = self._read_manifest()
        # Past every file too: a file the manifest does not list (an ignored entry's, one
        # whose manifest update was lost) is never overwritten.
        seq = max((e.seq for e in [*entries, *self._scan()]), default=0) + 1
        now = dt.datetime.now(dt.UTC)
        metadata = {
            "format": FORMAT,
            "seq": seq,
            "events": int(events),
            "positions": dict(positions or {}),
            "sha256": None,
            "learner": dict(learner or {}),
            "metrics": dict(metrics or {}),
            "versions": _library_versions(),
            "time": now.isoformat(),
            "unix_time": now.timestamp(),
            **dict(extra or {}),
        }
        name = f"{PREFIX}{seq:010d}.parquet"

        def write(stream: Any) -> None:
            with pq.ParquetWriter(
                stream,
                SCHEMA,
                compression="none",
                use_dictionary=False,
                write_statistics=["name", "kind", "dtype"],
                # Large pages: a big array is one value, and small pages cost time to split.
                data_page_size=1 << 30,
            ) as writer:
                for batch in batches:  # one row group each
                    writer.write_batch(batch)
                metadata["sha256"] = hashing.result()
                writer.add_key_value_metadata({METADATA_KEY: json.dumps(metadata).encode()})

        try:
            size = self._write_atomic(name, write)
        finally:
            digest = hashing.result()
        info = CheckpointInfo(
            file=name,
            seq=seq,
            events=int(events),
            sha256=digest,
            time=metadata["time"],
            bytes=size,
            positions=metadata["positions"],
        )
        entries.append(info)
        kept, dropped = entries[-self.keep :], entries[: -self.keep]
        self._write_manifest(kept)
        for old in dropped:
            self._delete(old.file)
        if not self._swept:
            self._sweep_partial_files()
            self._swept = True
        if size > self.max_bytes:
            log.error(
                "checkpoint larger than [checkpoint] max_bytes: it will be refused on load; raise the limit",
                file=name,
                bytes=size,
                max_bytes=self.max_bytes,
            )
        log.info(
            "checkpoint written",
            file=name,
            events=events,
            bytes=size,
            seconds=round(time.perf_counter() - t0, 4),
            sha256=digest[:12],
        )
        return info

    def _sweep_partial_files(self) -> None:
        """Delete temporary files that writers killed mid-write left behind.

        One writer uses a location at a time, so a temporary file older than this
        store is not being written any more. Without this, a daemon killed while
        checkpointing, again and again, would fill the disk with partial files.
        """
        for item in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            if item.base_name.startswith(".") and item.base_name.endswith(".tmp") and item.mtime is not None:
                if item.mtime.timestamp() < self._created:
                    log.warning("removing a partial file left by an interrupted checkpoint", file=item.base_name)
                    self._delete(item.base_name, missing_ok=True)

    def _delete(self, name: str, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self._path(name))
        except FileNotFoundError:
            if not missing_ok:
                log.warning("could not delete a checkpoint file: already gone", file=name)
        except OSError as exc:
            log.warning("could not delete a checkpoint file", file=name, error=str(exc))

    # ------------------------------------------------------------------ manifest

    def _write_manifest(self, entries: list[CheckpointInfo]) -> None:
        body = json.dumps(
            {"format": FORMAT, "checkpoints": [dataclasses.asdict(e) for e in entries]}, indent=1
        ).encode()
        self._write_atomic(MANIFEST, lambda f: f.write(body))

    def _read_manifest(self) -> list[CheckpointInfo]:
        """The valid manifest entries (see :mod:`streamlearn.engine.manifest`), else the directory's files."""
        path = self._path(MANIFEST)
        try:
            with self.fs.open_input_stream(path) as f:
                body = f.read(MAX_MANIFEST_BYTES + 1)
            if len(body) > MAX_MANIFEST_BYTES:
                raise InvalidManifest(f"larger than {MAX_MANIFEST_BYTES} bytes")
            return parse_manifest(json.loads(body), CheckpointInfo, where=path)
        except FileNotFoundError:
            return self._scan()
        except (OSError, ValueError, RecursionError) as exc:  # InvalidManifest and JSON errors are ValueErrors
            log.error("manifest unreadable; scanning the directory instead", manifest=path, error=str(exc))
            return self._scan()

    def _scan(self) -> list[CheckpointInfo]:
        """Checkpoint files found in the directory, oldest first (when the manifest is missing)."""
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        entries = []
        for item in self.fs.get_file_info(selector):
            seq = checkpoint_seq(item.base_name)
            if seq is not None and item.type == pafs.FileType.File:
                entries.append(CheckpointInfo(file=item.base_name, seq=seq, events=-1, sha256="", time="", bytes=item.size or 0))
        return sorted(entries, key=lambda e: e.seq)

    def list(self) -> list[CheckpointInfo]:
        """The checkpoints, oldest first."""
        return self._read_manifest()

    def read_metadata(self, name: str) -> dict[str, Any]:
        """A checkpoint's ``streamlearn`` metadata from its footer alone (the state is not read or verified)."""
        if checkpoint_seq(name) is None:
            raise ValueError(f"{name!r} is not a checkpoint file name of this store (checkpoint-<digits>.parquet)")
        path = self._path(name)
        try:
            size = self.fs.get_file_info(path).size
            if size is None:
                raise FileNotFoundError(path)
            check_size(size, MAX_BYTES)
            with self.fs.open_input_file(path) as f:
                footer = pq.ParquetFile(f).metadata
                check_layout(footer, size, MAX_BYTES)
                raw = (footer.metadata or {}).get(METADATA_KEY)
            metadata = json.loads(raw) if raw is not None else None
        except FileNotFoundError:
            raise
        except (OSError, ValueError, RecursionError, pa.ArrowException) as exc:  # CorruptCheckpoint is a ValueError
            raise CorruptCheckpoint(f"{name}: metadata unreadable ({exc})") from None
        if not isinstance(metadata, dict):
            raise CorruptCheckpoint(f"{name}: no streamlearn metadata")
        return metadata

    # ------------------------------------------------------------------ side files (the engine's own records)

    def write_side_file(self, name: str, data: bytes, durable: bool = True) -> None:
        """Replace a small file beside the checkpoints atomically (``durable=False``: no fsync).

        Not fsync'd is enough for records that must outlive the process, not the machine.
        """
        self._write_atomic(_side_name(name), lambda f: f.write(data), durable=durable)

    def read_side_file(self, name: str, limit: int = 1 << 20) -> bytes | None:
        """A side file's bytes (None: there is none); one larger than ``limit`` raises ``ValueError``."""
        try:
            with self.fs.open_input_stream(self._path(_side_name(name))) as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            return None
        if len(data) > limit:
            raise ValueError(f"{name} is larger than {limit} bytes")
        return data

    # ------------------------------------------------------------------ reading

    def load(self, name: str) -> Checkpoint:
        """Load one checkpoint by file name (verifies its hash); only names of the store's own pattern."""
        if checkpoint_seq(name) is None:
            raise ValueError(f"{name!r} is not a checkpoint file name of this store (checkpoint-<digits>.parquet)")
        return read_checkpoint(self._path(name), self.fs, self.max_bytes)

    def load_latest(self, exclude: Collection[str] = ()) -> Checkpoint | None:
        """The newest checkpoint whose hash verifies; corrupt ones are logged and skipped, ``exclude``d files too."""
        entries = self._read_manifest()
        for info in reversed(entries):
            if info.file in exclude:
                continue
            try:
                checkpoint = self.load(info.file)
            except (CorruptCheckpoint, FileNotFoundError, OSError) as exc:
                log.error(
                    "checkpoint corrupt or unreadable; falling back to the previous one",
                    file=info.file,
                    error=str(exc),
                )
                continue
            if info.sha256 and checkpoint.metadata.get("sha256") != info.sha256:
                log.error(
                    "checkpoint does not match its manifest entry; falling back to the previous one",
                    file=info.file,
                )
                continue
            return checkpoint
        if entries:
            log.error("no good checkpoint found; starting from scratch", location=self.location)
        return None

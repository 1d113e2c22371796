"""Ready event streams for every config in ``configs/`` (``streamlearn export``).

:data:`READY_STREAMS` names a stream for each config: river's bundled data sets
(no download) and seeded generators (:mod:`streamlearn.synthetic`) for the learners
no bundled data set fits. Any other river bundled data set exports too: each example
``(x, y)`` becomes ``{"id": i, "x": x, "y": y}``, the event format of supervised
learners. A stream can be replayed or produced to Kafka.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from streamlearn import synthetic

__all__ = ["READY_STREAMS", "ReadyStream", "dataset_events", "export_dataset", "river_dataset", "shared_data", "stream_events"]


@dataclasses.dataclass(frozen=True)
class ReadyStream:
    """A named stream that a config in ``configs/`` is run on."""

    #: What the stream is (one line for ``export --help``).
    description: str
    #: The configs (file names in ``configs/``) it feeds.
    configs: tuple[str, ...]
    #: What ``--size N`` sets.
    size: str
    #: ``events(size, seed)``: the events; ``None`` means the stream's default.
    events: Callable[[int | None, int | None], Iterator[dict[str, Any]]]


def _river(name: str) -> Callable[[int | None, int | None], Iterator[dict[str, Any]]]:
    def events(size: int | None, seed: int | None) -> Iterator[dict[str, Any]]:
        if seed is not None:
            raise ValueError(f"{name!r} is a fixed data set; --seed applies to generated streams only")
        return dataset_events(name, size)

    return events


def _generated(generate: Callable[..., Iterator[dict[str, Any]]], size: str) -> Callable[[int | None, int | None], Iterator[dict[str, Any]]]:
    def events(n: int | None, seed: int | None) -> Iterator[dict[str, Any]]:
        kwargs = {k: v for k, v in ((size, n), ("seed", seed)) if v is not None}
        return generate(**kwargs)

    return events


READY_STREAMS: dict[str, ReadyStream] = {
    "phishing": ReadyStream(
        "river's Phishing web pages (1,250 rows, 9 features, binary label)",
        ("phishing.toml", "torch_phishing.toml", "active.toml"), "rows", _river("phishing"),
    ),
    "shuttle": ReadyStream(
        "river's NASA Shuttle sensor readings (49,097 rows, 9 numeric attributes)",
        ("fw_dictionary.toml",), "rows", _river("shuttle"),
    ),
    "groups": ReadyStream(
        "synthetic regression with overlapping groups (shape x colour; Acharya et al. 2024), seed 21",
        ("groupwise.toml",), "rows (default 10,000)", _generated(synthetic.overlapping_groups_events, "n"),
    ),
    "segments-shift": ReadyStream(
        "a frozen classifier's outputs on river's image segments with noise, grouped by class, seed 0",
        ("lame.toml",), "events (at most 1,155)", _generated(synthetic.shifted_segments, "limit"),
    ),
    "recovering": ReadyStream(
        "a simulated recovering-reward environment (20 arms, step curves) and its periods, seed 0",
        ("recovering_bandit.toml",), "periods (default 3,000)", _generated(synthetic.recovering_bandit, "periods"),
    ),
    "pointmass": ReadyStream(
        "logged point-mass transitions, 2 tasks one after another (integer ids), then act queries, seed 0",
        ("oer.toml",), "transitions per task (default 500)", _generated(synthetic.pointmass_tasks, "transitions"),
    ),
}  # fmt: skip


def shared_data(name: str) -> Path:
    """A file of the project's shared real data (``../shared/data/`` beside the repository).

    Looked up in ``$STREAMLEARN_SHARED_DATA``, then in ``shared/data`` in any folder
    above the package or the working directory (``../shared/data`` from a checkout),
    then above the checkout a local clone was made from (a clone in a scratch folder).
    """
    candidates = []
    if os.environ.get("STREAMLEARN_SHARED_DATA"):
        candidates.append(Path(os.environ["STREAMLEARN_SHARED_DATA"]) / name)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        candidates += [parent / "shared" / "data" / name for parent in start.parents]
    for path in candidates:
        if path.is_file():
            return path
    origin = _local_origin(Path(__file__).resolve().parent)
    if origin is not None:
        for folder in (origin, *origin.parents):
            if (folder / "shared" / "data" / name).is_file():
                return folder / "shared" / "data" / name
    raise FileNotFoundError(
        f"shared data file {name!r} not found; set STREAMLEARN_SHARED_DATA to the folder holding it "
        f"(looked in: {', '.join(str(p.parent) for p in candidates[:4])}, ...)"
    )


def _local_origin(folder: Path) -> Path | None:
    """The checkout this repository was cloned from, when that is a folder on this machine."""
    import subprocess

    try:
        url = subprocess.run(
            ["git", "-C", str(folder), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://")) if url else None
    return path.resolve() if path is not None and path.is_dir() else None


def river_dataset(name: str) -> Any:
    """A river bundled data set by class name, case-insensitively (``"phishing"`` → ``Phishing()``)."""
    from river import datasets

    classes = {n.lower(): getattr(datasets, n) for n in dir(datasets) if isinstance(getattr(datasets, n), type)}
    cls = classes.get(name.lower())
    if cls is None or not issubclass(cls, datasets.base.Dataset):
        raise ValueError(f"unknown river data set {name!r}")
    dataset = cls()
    if isinstance(dataset, datasets.base.RemoteDataset) and not dataset.is_downloaded:
        raise ValueError(f"river data set {name!r} is not bundled (it needs a download)")
    return dataset


def dataset_events(name: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """A river bundled data set's first ``limit`` examples as events (an unknown name fails at once)."""
    dataset = river_dataset(name)
    return ({"id": i, "x": x, "y": y} for i, (x, y) in enumerate(itertools.islice(dataset, limit)))


def stream_events(name: str, size: int | None = None, seed: int | None = None) -> Iterator[dict[str, Any]]:
    """The events of a ready stream (:data:`READY_STREAMS`) or of any river bundled data set."""
    if size is not None and size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    ready = READY_STREAMS.get(name.lower())
    if ready is not None:
        return ready.events(size, seed)
    try:
        return _river(name)(size, seed)
    except ValueError as exc:
        raise ValueError(f"{exc}; the ready streams are {', '.join(READY_STREAMS)} (see `streamlearn export --help`)") from None


def export_dataset(name: str, path: str | os.PathLike, limit: int | None = None, seed: int | None = None) -> int:
    """Write a ready stream or a river data set as JSONL; returns the number of events written.

    ``limit`` is the stream's size (see :attr:`ReadyStream.size`; for a data set, its first rows).
    """
    events = stream_events(name, limit, seed)  # errors before the file is created
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(event, default=str, separators=(",", ":")) + "\n")
            n += 1
    return n

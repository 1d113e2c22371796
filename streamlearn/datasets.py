"""Export river's bundled data sets as JSONL event streams (``streamlearn export``).

Each example ``(x, y)`` becomes ``{"id": i, "x": x, "y": y}``, the event format
of supervised learners, so a bundled data set can be replayed or produced to
Kafka without any download.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["dataset_events", "export_dataset", "river_dataset", "shared_data"]


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
    for i, (x, y) in enumerate(itertools.islice(river_dataset(name), limit)):
        yield {"id": i, "x": x, "y": y}


def export_dataset(name: str, path: str | os.PathLike, limit: int | None = None) -> int:
    """Write the data set as JSONL; returns the number of events written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for event in dataset_events(name, limit):
            f.write(json.dumps(event, default=str, separators=(",", ":")) + "\n")
            n += 1
    return n

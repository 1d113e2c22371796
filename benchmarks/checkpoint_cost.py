"""Time and bytes to write and read checkpoints of 1, 10 and 100 MB of state, against pickle.

streamlearn's ``CheckpointStore.save`` (Parquet, SHA-256 of the state, fsync,
atomic rename, manifest update) and ``load_latest`` (read + hash verification)
against ``pickle.dump`` (protocol 5, fsync'd) / ``pickle.load`` of the same state
dict in the same process. For a like-for-like view, writes are also compared with a
crash-safe pickle (temporary name, fsync, rename, fsync of the directory) and reads
with ``pickle.load`` followed by the same SHA-256 verification. Each measurement is
the median of several rounds after one warm-up round; every read starts with the
previous result freed.
Targets: write ≤ 2× pickle's time, read ≤ pickle's time.

    python benchmarks/checkpoint_cost.py [--sizes 1 10 100] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import pickle
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import structlog

from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.learners.base import json_state, state_hash

RESULTS = Path(__file__).resolve().parent / "results"


def make_state(megabytes: float, seed: int = 0) -> dict:
    """A learner-like state: a few big float arrays, small ones, scalars and a JSON entry."""
    rng = np.random.default_rng(seed)
    total = int(megabytes * 1e6)
    state = {
        "weights/layer0": rng.standard_normal(total // 2 // 8),
        "weights/layer1": rng.standard_normal(total // 4 // 4).astype(np.float32),
        "buffer/obs": rng.standard_normal((total // 4 // 8 // 16, 16)),
        "buffer/index": np.arange(1000, dtype=np.int64),
        "rng": json_state({"state": int(rng.integers(2**62)), "inc": 12345}),
        "steps": 123456,
        "lr": 3e-4,
        "done": False,
    }
    return state


def nbytes(state: dict) -> int:
    return sum(v.nbytes for v in state.values() if isinstance(v, np.ndarray))


def pickle_write(state: dict, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(state, f, protocol=5)
        f.flush()
        os.fsync(f.fileno())


def pickle_write_atomic(state: dict, path: Path) -> None:
    """pickle with the crash safety a checkpoint needs (temporary name, fsync, rename, fsync
    of the directory), as CheckpointStore does: a like-for-like view of the write."""
    tmp = path.with_suffix(".tmp")
    pickle_write(state, tmp)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pickle_read(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def pickle_read_verified(path: Path) -> tuple[dict, str]:
    """pickle.load plus the SHA-256 verification streamlearn does on load: a like-for-like view."""
    state = pickle_read(path)
    return state, state_hash(state)


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 10, 100], help="state sizes in MB")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1 and 10 MB, 2 rounds")
    parser.add_argument("--out", default=str(RESULTS / "checkpoint_cost.json"))
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds = [1, 10], 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for size in args.sizes:
            state = make_state(size)
            store = CheckpointStore(Path(tmp) / f"store-{size}", keep=2)
            pkl = Path(tmp) / f"state-{size}.pkl"
            writers = {
                "sl": lambda: store.save(state, events=1),
                "pickle": lambda: pickle_write(state, pkl),
                "pickle_atomic": lambda: pickle_write_atomic(state, pkl),
            }
            readers = {
                "sl": store.load_latest,
                "pickle": lambda: pickle_read(pkl),
                "pickle_sha256": lambda: pickle_read_verified(pkl),
            }
            times = {f"{who}_write": [] for who in writers} | {f"{who}_read": [] for who in readers}
            # Round 0 warms up (allocators, page cache, the hash pool) and is not recorded.
            for round_ in range(args.rounds + 1):
                # Alternate which goes first, and start every write with no dirty pages
                # waiting for the disk (os.sync), so all see the same machine conditions.
                order = ("pickle", "sl") if round_ % 2 == 0 else ("sl", "pickle")
                for who in (*order, "pickle_atomic"):
                    os.sync()
                    t, _ = timed(writers[who])
                    if round_:
                        times[f"{who}_write"].append(t)
                for who in (*order, "pickle_sha256"):
                    # Each read starts with the previous result freed, so every reader
                    # allocates its state under the same conditions.
                    result = None
                    gc.collect()
                    t, result = timed(readers[who])
                    if round_:
                        times[f"{who}_read"].append(t)
            result = None
            checkpoint = store.load_latest()
            assert checkpoint.metadata["sha256"] == store.list()[-1].sha256
            np.testing.assert_array_equal(checkpoint.state["weights/layer0"], state["weights/layer0"])
            # what hashing every byte costs on this machine (part of the write and read times)
            hash_times = [timed(state_hash, state)[0] for _ in range(args.rounds)]
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {
                "state_mb": size,
                "array_bytes": nbytes(state),
                "streamlearn_bytes": store.list()[-1].bytes,
                "pickle_bytes": pkl.stat().st_size,
                "streamlearn_write_s": med["sl_write"],
                "pickle_write_s": med["pickle_write"],
                "write_ratio": med["sl_write"] / med["pickle_write"],
                "pickle_atomic_write_s": med["pickle_atomic_write"],
                "write_ratio_vs_pickle_atomic": med["sl_write"] / med["pickle_atomic_write"],
                "streamlearn_read_s": med["sl_read"],
                "pickle_read_s": med["pickle_read"],
                "read_ratio": med["sl_read"] / med["pickle_read"],
                "state_hash_s": statistics.median(hash_times),
                "pickle_sha256_read_s": med["pickle_sha256_read"],
                "read_ratio_vs_pickle_sha256": med["sl_read"] / med["pickle_sha256_read"],
                "rounds": times,
            }
            rows.append(row)
            print(
                f"{size:>6g} MB  write {med['sl_write']*1e3:8.1f} ms vs pickle {med['pickle_write']*1e3:8.1f} ms"
                f" (x{row['write_ratio']:.2f}), vs atomic pickle {med['pickle_atomic_write']*1e3:.1f} ms"
                f" (x{row['write_ratio_vs_pickle_atomic']:.2f})\n{'':>10}read {med['sl_read']*1e3:8.1f} ms vs pickle"
                f" {med['pickle_read']*1e3:8.1f} ms (x{row['read_ratio']:.2f}), vs pickle + SHA-256"
                f" {med['pickle_sha256_read']*1e3:.1f} ms (x{row['read_ratio_vs_pickle_sha256']:.2f});"
                f"  SHA-256 alone {row['state_hash_s']*1e3:.1f} ms"
            )
    summary = {
        "benchmark": "checkpoint_cost",
        "what": "CheckpointStore.save/load_latest (Parquet + SHA-256 + fsync + manifest) vs pickle.dump(fsync)/load",
        "targets": {"write_ratio_max": 2.0, "read_ratio_max": 1.0},
        "results": rows,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

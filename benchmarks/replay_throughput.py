"""Events/s of ``streamlearn replay`` against river's own ``progressive_val_score``.

Same model (StandardScaler | LogisticRegression), same data (river's bundled
Phishing, repeated), same metrics (accuracy, cumulative and over the last
``WINDOW`` events through river's ``utils.Rolling``: streamlearn's ``[eval] window``),
same process; all runs alternate over several rounds and the median round of each
is reported. streamlearn parses and validates every event and writes nothing else.
The comparisons:

* JSONL: streamlearn replaying a JSONL file vs river fed by an orjson loop over the
  same file (target ≥ 1.1);
* Parquet: streamlearn replaying a flat Parquet file (``input.target = "y"``) vs river
  fed rows from pyarrow record batches of the same file (target ≥ 1.0), and vs
  streamlearn's own JSONL replay (target ≥ 1.0);
* river iterating its bundled CSV (the historical reference), also timed with the
  cumulative accuracy alone (what windowed metrics cost river).

    python benchmarks/replay_throughput.py [--copies 40] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from river import datasets, evaluate, linear_model, metrics, preprocessing, utils

from streamlearn.datasets import export_dataset
from streamlearn.engine.config import parse_config
from streamlearn.engine.replay import replay

RESULTS = Path(__file__).resolve().parent / "results"


WINDOW = 1000


def river_run(stream, windowed: bool = True) -> tuple[float, list[float]]:
    """Seconds and accuracies of ``progressive_val_score`` over ``stream`` (a generator: its reading is timed too)."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    scored = [metrics.Accuracy()] + ([utils.Rolling(metrics.Accuracy, WINDOW)] if windowed else [])
    t0 = time.perf_counter()
    evaluate.progressive_val_score(stream, model, metrics.base.Metrics(scored))
    return time.perf_counter() - t0, [m.get() for m in scored]


def river_csv(copies: int):
    return itertools.chain.from_iterable(datasets.Phishing() for _ in range(copies))


def river_orjson(path: Path):
    with open(path, "rb") as f:
        for line in f:
            event = orjson.loads(line)
            yield event["x"], event["y"]


def river_pyarrow(path: Path):
    for batch in pq.ParquetFile(path).iter_batches():
        for row in batch.to_pylist():
            del row["id"]
            y = row.pop("y")
            yield row, y


def write_parquet(jsonl: Path, path: Path) -> None:
    """The same events as a flat table: id, one column per feature, y."""
    with open(jsonl, "rb") as f:
        events = [orjson.loads(line) for line in f]
    columns = {"id": [e["id"] for e in events]}
    for name in events[0]["x"]:
        columns[name] = [e["x"][name] for e in events]
    columns["y"] = [e["y"] for e in events]
    pq.write_table(pa.table(columns), path, row_group_size=65536)


def streamlearn_run(path: Path, batch_size: int) -> tuple[float, list[float], int]:
    table = {
        "learner": {
            "name": "river",
            "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]},
        },
        "eval": {"metrics": ["Accuracy"], "window": WINDOW, "history_every": 1000},
        "engine": {"batch_size": batch_size},
    }
    if path.suffix == ".parquet":
        table["input"] = {"target": "y"}
    config = parse_config(table, env={})
    t0 = time.perf_counter()
    report = replay(config, path, progress=False)
    final = report["final_metrics"]
    return time.perf_counter() - t0, [final["Accuracy"], final[f"Accuracy@{WINDOW}"]], report["events"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40, help="passes over Phishing (1,250 events each)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="a few seconds: 4 copies, 2 rounds")
    parser.add_argument("--out", default=str(RESULTS / "replay_throughput.json"))
    args = parser.parse_args()
    if args.quick:
        args.copies, args.rounds = 4, 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "phishing.jsonl"
        export_dataset("phishing", one)
        path = Path(tmp) / "phishing_x.jsonl"
        path.write_text(one.read_text() * args.copies)
        parquet = Path(tmp) / "phishing_x.parquet"
        write_parquet(path, parquet)
        n_events = 1250 * args.copies
        runs = {
            "river_csv": lambda: river_run(river_csv(args.copies)),
            "river_csv_cumulative_only": lambda: river_run(river_csv(args.copies), windowed=False),
            "river_orjson": lambda: river_run(river_orjson(path)),
            "river_pyarrow": lambda: river_run(river_pyarrow(parquet)),
            "streamlearn_jsonl": lambda: streamlearn_run(path, args.batch_size),
            "streamlearn_parquet": lambda: streamlearn_run(parquet, args.batch_size),
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        accuracy: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                t, accuracy[name], *events = run()
                seconds[name].append(t)
                assert not events or events[0] == n_events, (name, events)
        # The same predictions everywhere (the cumulative-only run has no windowed value).
        assert len({tuple(a) for name, a in accuracy.items() if name != "river_csv_cumulative_only"}) == 1, accuracy

    eps = {name: n_events / statistics.median(times) for name, times in seconds.items()}
    result = {
        "benchmark": "replay_throughput",
        "model": "StandardScaler | LogisticRegression",
        "metrics": f"Accuracy, cumulative and over the last {WINDOW} events (river utils.Rolling) in every run but river_csv_cumulative_only",
        "data": f"river Phishing x{args.copies}",
        "events": n_events,
        "rounds": args.rounds,
        "events_per_s": eps,
        "ratios": {
            "streamlearn_jsonl / river_orjson": {"ratio": eps["streamlearn_jsonl"] / eps["river_orjson"], "target": 1.1},
            "streamlearn_parquet / river_pyarrow": {"ratio": eps["streamlearn_parquet"] / eps["river_pyarrow"], "target": 1.0},
            "streamlearn_parquet / streamlearn_jsonl": {"ratio": eps["streamlearn_parquet"] / eps["streamlearn_jsonl"], "target": 1.0},
            "streamlearn_jsonl / river_csv": {"ratio": eps["streamlearn_jsonl"] / eps["river_csv"], "target": 1.0},
            "streamlearn_jsonl / river_csv_cumulative_only": {"ratio": eps["streamlearn_jsonl"] / eps["river_csv_cumulative_only"]},
        },
        "accuracy": accuracy,
        "seconds": seconds,
        "load_average_1_5_15": os.getloadavg(),
        "batch_size": args.batch_size,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("events_per_s", "ratios")}, indent=2))


if __name__ == "__main__":
    main()

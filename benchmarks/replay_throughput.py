"""Events/s of ``streamlearn replay`` against river's own ``progressive_val_score``.

Same model (StandardScaler | LogisticRegression), same data (river's bundled
Phishing, repeated), same metrics (accuracy, cumulative and over the last
``WINDOW`` events through river's ``utils.Rolling``: streamlearn's ``[eval] window``),
same process; the two alternate over several rounds and the median round of each
is reported. river is also timed with the cumulative accuracy alone (what
windowed metrics cost river), reported beside it. streamlearn reads the stream
from a JSONL file (parsing and validating every event, writing nothing else);
river iterates its bundled CSV. The engine must not cost more than river's loop:
target ratio ≥ 1.0.

    python benchmarks/replay_throughput.py [--copies 40] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import structlog
from river import datasets, evaluate, linear_model, metrics, preprocessing, utils

from streamlearn.datasets import export_dataset
from streamlearn.engine.config import parse_config
from streamlearn.engine.replay import replay

RESULTS = Path(__file__).resolve().parent / "results"


WINDOW = 1000


def river_run(copies: int, windowed: bool = True) -> tuple[float, list[float]]:
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    stream = itertools.chain.from_iterable(datasets.Phishing() for _ in range(copies))
    scored = [metrics.Accuracy()] + ([utils.Rolling(metrics.Accuracy, WINDOW)] if windowed else [])
    t0 = time.perf_counter()
    evaluate.progressive_val_score(stream, model, metrics.base.Metrics(scored))
    return time.perf_counter() - t0, [m.get() for m in scored]


def streamlearn_run(path: Path, batch_size: int) -> tuple[float, list[float], int]:
    config = parse_config(
        {
            "learner": {
                "name": "river",
                "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]},
            },
            "eval": {"metrics": ["Accuracy"], "window": WINDOW, "history_every": 1000},
            "engine": {"batch_size": batch_size},
        },
        env={},
    )
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
        n_events = 1250 * args.copies
        river_times, sl_times, plain_times = [], [], []
        for _ in range(args.rounds):
            t, river_acc = river_run(args.copies)
            river_times.append(t)
            plain_times.append(river_run(args.copies, windowed=False)[0])
            t, sl_acc, events = streamlearn_run(path, args.batch_size)
            sl_times.append(t)
        assert events == n_events
        assert sl_acc == river_acc, (sl_acc, river_acc)

    river_eps = n_events / statistics.median(river_times)
    sl_eps = n_events / statistics.median(sl_times)
    plain_eps = n_events / statistics.median(plain_times)
    result = {
        "benchmark": "replay_throughput",
        "model": "StandardScaler | LogisticRegression",
        "metrics": f"Accuracy, cumulative and over the last {WINDOW} events (river utils.Rolling) in both",
        "data": f"river Phishing x{args.copies}",
        "events": n_events,
        "rounds": args.rounds,
        "river_events_per_s": river_eps,
        "streamlearn_events_per_s": sl_eps,
        "ratio_streamlearn_to_river": sl_eps / river_eps,
        "river_cumulative_only_events_per_s": plain_eps,
        "ratio_streamlearn_to_river_cumulative_only": sl_eps / plain_eps,
        "target_ratio": 1.0,
        "accuracy_river": river_acc,
        "accuracy_streamlearn": sl_acc,
        "river_seconds": river_times,
        "streamlearn_seconds": sl_times,
        "river_cumulative_only_seconds": plain_times,
        "batch_size": args.batch_size,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("river_events_per_s", "streamlearn_events_per_s", "ratio_streamlearn_to_river", "ratio_streamlearn_to_river_cumulative_only")}, indent=2))


if __name__ == "__main__":
    main()

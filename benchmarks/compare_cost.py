"""What ``streamlearn compare`` of three configs costs against the three replays run one
after another, on the same stream, in the same invocation of this script.

Three river learners (logistic regression, Gaussian naive Bayes, a Hoeffding tree), each
with accuracy and log loss, cumulative and windowed, over river's Phishing repeated
(50,000 events by default). Every run writes its reports (``report.json`` and plots);
none checkpoints (a comparison never does). Timed, wall clock, alternating over rounds,
median round of each:

* ``replay_cli``: ``streamlearn replay`` three times, one after another (what a user
  would type without ``compare``; each pays its interpreter start and imports);
* ``replay_in_process``: the three ``replay()`` calls one after another in this warm
  process (no start-up or import at all: the strictest baseline);
* ``compare``: ``streamlearn compare`` of the three, default ``--jobs`` (the cores);
* ``compare_jobs1``: the same with ``--jobs 1`` (one process at a time: the overhead
  of a process per config, without parallelism).

Target: ``compare`` ≤ 1.1× each baseline; on two or more cores it should be faster.
The final metrics of every run are checked to be the same.

    flock /tmp/bench.lock python benchmarks/compare_cost.py [--copies 40] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

from streamlearn.datasets import export_dataset
from streamlearn.engine.replay import replay

RESULTS = Path(__file__).resolve().parent / "results"

MODELS = {
    "logreg": ("linear_model.LogisticRegression", ["preprocessing.StandardScaler"]),
    "gaussian_nb": ("naive_bayes.GaussianNB", []),
    "hoeffding_tree": ("tree.HoeffdingTreeClassifier", []),
}

CONFIG = """[learner]
name = "river"
[learner.params]
model = "{model}"
preprocessing = {preprocessing}
[eval]
metrics = ["Accuracy", "LogLoss"]
history_every = 500
"""


def write_configs(directory: Path) -> list[Path]:
    paths = []
    for name, (model, preprocessing) in MODELS.items():
        path = directory / f"{name}.toml"
        path.write_text(CONFIG.format(model=model, preprocessing=json.dumps(preprocessing)))
        paths.append(path)
    return paths


def cli(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "streamlearn.cli", "--log-level", "warning", *args], check=True, stdout=subprocess.DEVNULL
    )


def final_metrics(report_json: Path) -> dict:
    return json.loads(report_json.read_text())["final_metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40, help="passes over Phishing (1,250 events each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="about a minute: 2 copies, 1 round")
    parser.add_argument("--out", default=str(RESULTS / "compare_cost.json"))
    args = parser.parse_args()
    if args.quick:
        args.copies, args.rounds = 2, 1
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = tmp / "phishing.jsonl"
        export_dataset("phishing", one)
        stream = tmp / "stream.jsonl"
        stream.write_text(one.read_text() * args.copies)
        n_events = 1250 * args.copies
        configs = write_configs(tmp)

        def replay_cli(out: Path) -> dict:
            for config in configs:
                cli("replay", str(config), "--input", str(stream), "--report", str(out / config.stem), "--no-progress")
            return {c.stem: final_metrics(out / c.stem / "report.json") for c in configs}

        def replay_in_process(out: Path) -> dict:
            return {c.stem: replay(c, stream, out / c.stem, progress=False)["final_metrics"] for c in configs}

        def compare(out: Path, *jobs: str) -> dict:
            cli("compare", *map(str, configs), "--input", str(stream), "--report", str(out), *jobs)
            return {r["name"]: r["final_metrics"] for r in json.loads((out / "report.json").read_text())["learners"]}

        runs = {
            "replay_cli": replay_cli,
            "replay_in_process": replay_in_process,
            "compare": compare,
            "compare_jobs1": lambda out: compare(out, "--jobs", "1"),
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        results: dict[str, dict] = {}
        for i in range(args.rounds):
            for name, run in runs.items():
                t0 = time.perf_counter()
                results[name] = run(tmp / f"{name}-{i}")
                seconds[name].append(time.perf_counter() - t0)
                print(f"round {i + 1}/{args.rounds} {name}: {seconds[name][-1]:.1f} s", file=sys.stderr)
        assert all(r == results["replay_in_process"] for r in results.values()), results

    median = {name: statistics.median(times) for name, times in seconds.items()}
    result = {
        "benchmark": "compare_cost",
        "configs": {name: " | ".join([*pre, model]) for name, (model, pre) in MODELS.items()},
        "metrics": "Accuracy, LogLoss, cumulative and over the last 1,000 events",
        "data": f"river Phishing x{args.copies}",
        "events": n_events,
        "rounds": args.rounds,
        "median_seconds": median,
        "ratios": {
            "compare / replay_cli": {"ratio": median["compare"] / median["replay_cli"], "target": 1.1},
            "compare / replay_in_process": {"ratio": median["compare"] / median["replay_in_process"], "target": 1.1},
            "compare_jobs1 / replay_cli": {"ratio": median["compare_jobs1"] / median["replay_cli"]},
            "compare_jobs1 / replay_in_process": {"ratio": median["compare_jobs1"] / median["replay_in_process"]},
        },
        "final_metrics": results["compare"],
        "seconds": seconds,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_1_5_15_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_seconds", "ratios")}, indent=2))


if __name__ == "__main__":
    main()

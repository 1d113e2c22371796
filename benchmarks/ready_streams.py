"""Every config in configs/ on its full ready stream, as the README runs it: export, then replay.

For each config (except ``kafka_demo.toml``, which reads a Kafka topic) this runs
``streamlearn export NAME data/NAME.jsonl`` and ``streamlearn replay CONFIG --input
data/NAME.jsonl --report out/CONFIG`` in a fresh temporary folder, as subprocesses,
and records the wall time of each, the events, dead letters and final metrics, and
what the report's details say (LAME's un-adapted accuracy, the bandit's evaluation).

    flock /tmp/bench.lock python benchmarks/ready_streams.py [--quick]

Writes benchmarks/results/ready_streams.json (``--quick``: small streams, into a
temporary directory unless ``--out`` says where).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlearn.datasets import READY_STREAMS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DAEMON_ONLY = {"kafka_demo.toml"}
#: --quick sizes per stream (what --size counts differs: see `streamlearn export --help`).
QUICK_SIZES = {"phishing": 300, "shuttle": 2000, "groups": 1000, "segments-shift": 400, "recovering": 300, "pointmass": 30}


def cli(*args: str, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "streamlearn.cli", *args], cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, done


def details_summary(details: dict) -> dict:
    """What a reader needs from a report's details: LAME's gain, the bandit's evaluation, the worst group."""
    out = {}
    if "lame" in details:
        out |= {k: details["lame"][k] for k in ("accuracy_adapted", "accuracy_unadapted")}
    if "evaluation" in details:
        out |= {k: details[k] for k in ("evaluation", "fluid_upper_bound") if k in details}
    if "group_regret" in details:
        out["groups"] = len(details["group_regret"])
    if "tasks" in details:
        out["tasks"] = list(details["tasks"])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small streams (seconds each)")
    parser.add_argument("--out", type=Path, help="where the JSON goes")
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else RESULTS)
    configs = sorted(p.name for p in (ROOT / "configs").glob("*.toml") if p.name not in DAEMON_ONLY)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        exported: dict[str, tuple[float, int]] = {}
        for config in configs:
            (stream,) = [name for name, s in READY_STREAMS.items() if config in s.configs]
            data = f"data/{stream}.jsonl"
            if stream not in exported:
                size = ["--size", str(QUICK_SIZES[stream])] if args.quick else []
                seconds, done = cli("export", stream, data, *size, cwd=work)
                if done.returncode != 0:
                    raise SystemExit(f"export {stream} failed: {done.stderr}")
                exported[stream] = (seconds, len((work / data).read_text().splitlines()))
            report_dir = f"out/{Path(config).stem}"
            seconds, done = cli("replay", str(ROOT / "configs" / config), "--input", data, "--report", report_dir, "--no-progress", cwd=work)
            row = {"config": config, "stream": stream, "export_seconds": round(exported[stream][0], 2),
                   "events_in_stream": exported[stream][1], "replay_seconds": round(seconds, 2), "exit_code": done.returncode}
            if done.returncode == 0:
                report = json.loads((work / report_dir / "report.json").read_text())
                row |= {k: report[k] for k in ("events", "processed", "dead_letters")}
                row["final_metrics"] = report["final_metrics"]
                row["details"] = details_summary(report.get("details", {}))
            else:
                row["stderr_tail"] = done.stderr[-2000:]
            print(json.dumps({k: row.get(k) for k in ("config", "events", "dead_letters", "replay_seconds", "exit_code")}), flush=True)
            runs.append(row)
    result = {
        "benchmark": "ready_streams",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "runs": runs,
        "all_ok": all(r["exit_code"] == 0 and r.get("dead_letters") == 0 for r in runs),
        "slowest_replay_seconds": max(r["replay_seconds"] for r in runs),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "ready_streams.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'ready_streams.json'}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["all_ok"] else 1)

"""The ``streamlearn`` command.

::

    streamlearn demo [--bootstrap HOST:PORT] [--seconds S]  # local broker, demo stream, daemon, live metrics
    streamlearn run CONFIG                                  # Kafka consumer daemon
    streamlearn replay CONFIG --input PATH [--report DIR] [--fresh | --resume]
                                                            # prequential evaluation of a logged stream
    streamlearn compare CONFIG... --input PATH --report DIR # several learners on one stream, one report
    streamlearn checkpoints list DIR | show DIR|FILE [--json]  # what is stored (show: the latest in DIR)
    streamlearn export DATASET PATH [--size N]              # a ready stream for a config, as JSONL events

Exit codes: 0 success, 1 runtime failure (message, no traceback), 2 bad usage or
an invalid config (the message names the key), or checkpoints that do not belong to
the config and input of a replay (the message names each difference).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

import structlog

from streamlearn import __version__
from streamlearn.logs import configure_logging

log = structlog.get_logger("streamlearn.cli")


def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT set the returned event; the loop then finishes its batch and checkpoints."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: the user insists
            raise KeyboardInterrupt
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _cmd_replay(args: argparse.Namespace) -> int:
    from streamlearn.engine.replay import replay

    report = replay(
        args.config,
        args.input,
        args.report,
        progress=False if args.no_progress else None,
        stop=_stop_on_signals(),
        max_records=args.max_events,
        fresh=args.fresh,
        resume=args.resume,
    )
    summary = {
        "events": report["events"],
        "dead_letters": report["dead_letters"],
        "events_per_second": round(report["events_per_second"], 1),
        "final_metrics": report["final_metrics"],
    }
    if "report_path" in report:
        summary["report"] = report["report_path"]
    print(json.dumps(summary, indent=2))
    for warning in report.get("warnings", []):
        print(f"streamlearn: warning: {warning}", file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from streamlearn.engine.compare import compare, format_table

    stop = _stop_on_signals()
    report = compare(
        args.configs, args.input, args.report, jobs=args.jobs, stop=stop, log_level=args.log_level, log_json=args.log_json
    )
    print(format_table(report))
    print(f"report: {args.report}/report.html")
    failed = [r for r in report["learners"] if r["status"] != "ok"]
    for row in failed:
        print(f"streamlearn: {row['name']} ({row['config_path']}) {row['status']}: {row.get('error', 'stopped early')}", file=sys.stderr)
    if stop.is_set():
        return 130
    if any(r.get("config_error") for r in failed):
        return 2
    return 1 if failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from streamlearn.datasets import export_dataset

    n = export_dataset(args.dataset, args.path, args.size, args.seed)
    print(f"wrote {n} events to {args.path}")
    return 0


def _export_epilog() -> str:
    from streamlearn.datasets import READY_STREAMS

    lines = ["ready streams (DATASET: the configs/ it feeds; what --size counts):"]
    for name, stream in READY_STREAMS.items():
        lines += [f"  {name:15} {', '.join(stream.configs)}; --size: {stream.size}", f"  {'':15} {stream.description}"]
    lines += [
        "  (configs/kafka_demo.toml reads a Kafka topic: `streamlearn demo` fills one)",
        "",
        "any other river bundled data set works too (e.g. bananas, imagesegments), as {id, x, y} events.",
        "example:",
        "  streamlearn export groups data/groups.jsonl",
        "  streamlearn replay configs/groupwise.toml --input data/groups.jsonl --report out/groupwise",
    ]
    return "\n".join(lines)


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    from streamlearn.engine import checkpoint_cli

    return checkpoint_cli.main(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from streamlearn.engine.daemon import run_daemon

    return run_daemon(args.config, stop=_stop_on_signals())


def _cmd_demo(args: argparse.Namespace) -> int:
    from streamlearn.demo import run_demo

    return run_demo(args, stop=_stop_on_signals())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlearn", description="Continual and online learning on event streams.")
    parser.add_argument("--version", action="version", version=f"streamlearn {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", default=None, help="JSON log lines (default when not a terminal)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="prequential evaluation of a logged stream")
    p.add_argument("config", help="TOML config")
    p.add_argument("--input", help="logged stream: .jsonl, .csv or .parquet (default: [input] path)")
    p.add_argument("--report", metavar="DIR", help="write report.json and plots here")
    p.add_argument("--max-events", type=int, help="stop after this many events")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--fresh",
        action="store_true",
        help="start over: move [checkpoint] dir and the output files aside (to NAME.old-TIME) first",
    )
    start.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints (required to exist); also continues on an input that grew since",
    )
    p.epilog = (
        "With neither flag, checkpoints of the same config and input are resumed (a replay that "
        "reached the end reports its stored result) and checkpoints of another config or input "
        "are refused (exit 2) with the differences named."
    )
    p.set_defaults(func=_cmd_replay)

    from streamlearn.engine.compare import STRATEGY

    p = sub.add_parser(
        "compare",
        help="several learners on one logged stream: one table, overlaid curves, report.html",
        description="Replay every CONFIG over the same --input and write one comparison into --report DIR: "
        "report.json (per learner: final cumulative and windowed metrics, events/s, peak memory, dead letters), "
        "curves.png (every learner's curves overlaid), report.html (self-contained: opens from disk), and "
        "DIR/<config stem>/ with each learner's own replay report. Checkpoints are off: each run starts at "
        "the first event.",
        epilog=f"How: {STRATEGY}. Exit codes: 0 every config ran to the end; 1 a config failed while running; "
        "2 a config is invalid; the report lists every config either way.",
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="TOML configs (a repeated file stem gets -2, -3, ...)")
    p.add_argument("--input", required=True, help="logged stream every config replays: .jsonl, .csv or .parquet")
    p.add_argument("--report", required=True, metavar="DIR", help="write the comparison here")
    p.add_argument("--jobs", type=int, help="configs run at a time, each in its own process (default: the cores)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("run", help="Kafka consumer daemon")
    p.add_argument("config", help="TOML config")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("demo", help="local broker + demo stream + daemon + live metrics")
    p.add_argument("--bootstrap", help="use this Kafka cluster instead of starting the bundled broker")
    p.add_argument("--events", type=int, default=20_000, help="events in the demo stream")
    p.add_argument("--seconds", type=float, default=60.0, help="stop after this long at most")
    p.add_argument("--dir", default="streamlearn-demo", help="checkpoints, outputs and the report go here")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("checkpoints", help="list or show stored checkpoints")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = csub.add_parser("list", help="the checkpoints in a directory (or pyarrow.fs URI)")
    q.add_argument("dir")
    q.add_argument("--json", action="store_true")
    q = csub.add_parser("show", help="one checkpoint: positions, events, hash, metrics, parameters")
    q.add_argument("path", help="a checkpoint file, or a checkpoint directory (its latest good checkpoint)")
    q.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_checkpoints)

    p = sub.add_parser(
        "export",
        help="write a ready stream for a config (or a river bundled data set) as JSONL events",
        epilog=_export_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="a ready stream (below) or a river bundled data set")
    p.add_argument("path", help="the JSONL file to write")
    p.add_argument("--size", "--limit", dest="size", type=int, help="a smaller (or larger) stream: what it counts is listed below")
    p.add_argument("--seed", type=int, help="seed of a generated stream (default: the one listed)")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from streamlearn.engine.config import ConfigError
    from streamlearn.engine.fingerprint import StaleCheckpoint

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_json)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"streamlearn: config error: {exc}", file=sys.stderr)
        return 2
    except StaleCheckpoint as exc:
        print(f"streamlearn: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"streamlearn: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("streamlearn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Several learners on one logged stream (``streamlearn compare``).

Strategy: **one process per config**, at most ``jobs`` at a time (default: the
usable cores). Learners are CPU-bound Python, so threads would take turns on the
GIL; a single pass feeding every learner would run them one after another on one
core. Separate processes use every core, keep one learner's failure or memory
from touching the others, and make "peak memory" a per-learner number (the peak
resident set of that learner's process). The price is reading and parsing the
stream once per config, which is small next to learning.

Each process runs an ordinary :func:`~streamlearn.engine.replay.replay` into
``DIR/<name>/`` (its ``report.json``, ``metrics.png``, and the config's
predictions / dead-letter files when it names them). Checkpoints are off: a
comparison always evaluates from the first event, so running it again gives the
same report. The parent then writes ``DIR/report.json`` (a row per learner),
``DIR/curves.png`` (every learner's curves overlaid) and ``DIR/report.html``, a
self-contained page (plots embedded as data URIs, no scripts, no external files)
that opens from disk.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from streamlearn import __version__

if TYPE_CHECKING:
    from streamlearn.engine.config import Config

# The engine is imported where it is used: the CLI imports this module for
# ``compare --help``, which should not wait for river.

__all__ = ["STRATEGY", "compare", "run_names"]

log = structlog.get_logger("streamlearn.compare")

#: What the report and ``compare --help`` say about how the configs are run.
STRATEGY = (
    "one process per config, at most --jobs at a time: learners are CPU-bound Python, so threads "
    "would share one core through the GIL; processes use every core and give each learner its own "
    "peak memory"
)

#: Dead-letter reasons listed per learner.
TOP_REASONS = 3


def run_names(config_paths: Sequence[str | os.PathLike]) -> list[str]:
    """A distinct directory name per config: its file stem, then ``stem-2``, ``stem-3``… for
    further configs with the same stem."""
    names: list[str] = []
    for path in config_paths:
        stem = Path(path).stem or "config"
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def _for_compare(config: Config, run_dir: Path) -> Config:
    """The config as a comparison runs it: no checkpoints (every run starts at the first
    event), and its output files, if any, inside the learner's own directory."""
    output = dataclasses.replace(
        config.output,
        predictions=str(run_dir / Path(config.output.predictions).name) if config.output.predictions else None,
        dead_letters=str(run_dir / Path(config.output.dead_letters).name) if config.output.dead_letters else None,
    )
    checkpoint = dataclasses.replace(config.checkpoint, dir=None)
    return dataclasses.replace(config, output=output, checkpoint=checkpoint)


def _learner_label(config: Config) -> str:
    """The learner as the table names it: ``river linear_model.LogisticRegression``."""
    model = config.learner.params.get("model")
    return f"{config.learner.name} {model}" if isinstance(model, str) else config.learner.name


def _peak_rss_bytes() -> int:
    """This process's peak resident set size.

    ``/proc/self/status`` ``VmHWM`` where there is one: ``ru_maxrss`` of a process
    started by fork + exec keeps the parent's peak (a compare started from a large
    process would report that for every learner), ``VmHWM`` belongs to the process's
    own memory map.
    """
    from streamlearn.api import proc_status_bytes

    peak = proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _error_text(exc: BaseException) -> str:
    """What the report says about a failed config: the CLI's wording for the errors it
    words itself, the exception's type and message otherwise."""
    from streamlearn.engine.config import ConfigError

    if isinstance(exc, ConfigError):
        return f"config error: {exc}"
    if isinstance(exc, OSError | ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _run_one(name: str, config_path: str, input_path: str, run_dir: str, log_level: str, log_json: bool | None, conn: Any) -> None:
    """A child process: replay one config into ``run_dir`` and send back its summary."""
    from streamlearn.engine.config import ConfigError, load_config
    from streamlearn.engine.replay import replay
    from streamlearn.logs import configure_logging

    configure_logging(log_level, log_json)
    structlog.contextvars.bind_contextvars(run=name)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the batch and report what was done
        signal.signal(sig, lambda *_: stop.set())
    result: dict[str, Any] = {"name": name}
    try:
        config = _for_compare(load_config(config_path), Path(run_dir))
        report = replay(config, input_path, run_dir, progress=False, stop=stop)
        result.update(
            status="ok" if report["completed"] else "stopped",
            learner=_learner_label(config),
            events=report["events"],
            processed=report["processed"],
            dead_letters=report["dead_letters"],
            dead_letter_reasons=dict(list(report["dead_letter_reasons"].items())[:TOP_REASONS]),
            events_per_second=report["events_per_second"],
            elapsed_seconds=report["elapsed_seconds"],
            final_metrics=report["final_metrics"],
            history=report["history"],
            report=str(Path(name) / "report.json"),
        )
    except Exception as exc:  # the parent reports it; the other configs go on
        if not isinstance(exc, ConfigError | OSError | ValueError):  # not a message the user can act on alone
            log.error("unexpected error", error=_error_text(exc), traceback=traceback.format_exc())
        result.update(status="failed", error=_error_text(exc), config_error=isinstance(exc, ConfigError))
    result["peak_rss_bytes"] = _peak_rss_bytes()
    conn.send(result)
    conn.close()


#: Imported once by the fork server: the engine, the river modules most configs use, and
#: the plotting of every replay's report (together about 3 s of imports per process here).
_PRELOAD = [
    "streamlearn.engine.replay",
    "streamlearn.engine.registry",
    "river.linear_model",
    "river.preprocessing",
    "river.metrics",
    "matplotlib.pyplot",
]


def _context() -> multiprocessing.context.BaseContext:
    """Processes forked from a server that has imported the engine once (no per-config
    import time), never from the caller itself, which may hold threads and a large heap."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _run_all(
    jobs: list[tuple[str, str]],
    input_path: str,
    report_dir: Path,
    parallel: int,
    log_level: str,
    log_json: bool | None,
    stop: threading.Event | None,
) -> dict[str, dict[str, Any]]:
    """Run ``(name, config path)`` jobs, ``parallel`` at a time; name → result."""
    ctx = _context()
    waiting, running, results = list(jobs), {}, {}
    while waiting or running:
        while waiting and len(running) < parallel and not (stop is not None and stop.is_set()):
            name, path = waiting.pop(0)
            receive, send = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=_run_one,
                args=(name, path, input_path, str(report_dir / name), log_level, log_json, send),
                name=f"streamlearn-compare-{name}",
            )
            process.start()
            send.close()  # the child holds the only writer: EOF when it dies without a result
            running[name] = (process, receive)
            log.info("config started", run=name, config=path, running=len(running), waiting=len(waiting))
        if stop is not None and stop.is_set():
            for name, _ in waiting:
                results[name] = {"name": name, "status": "stopped", "error": "not started: the comparison was stopped"}
            waiting.clear()
            for process, _ in running.values():
                if process.is_alive():
                    process.terminate()  # SIGTERM: the child finishes its batch and reports
        if not running:
            break
        ready = multiprocessing.connection.wait([r for _, r in running.values()], timeout=0.5)
        for name in [n for n, (_, r) in running.items() if r in ready]:
            process, receive = running.pop(name)
            try:
                result = receive.recv()
            except EOFError:  # killed (out of memory?) or crashed before it could answer
                process.join()
                code = process.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                result = {"name": name, "status": "failed", "error": f"the learner's process ended without a result ({why})"}
            receive.close()
            process.join()
            results[name] = result
            _log_result(result)
    return results


def _log_result(result: dict[str, Any]) -> None:
    if result["status"] == "failed":
        log.error("config failed", run=result["name"], error=result["error"])
        return
    log.info(
        "config finished" if result["status"] == "ok" else "config stopped",
        run=result["name"],
        events=result.get("events"),
        events_per_s=round(result.get("events_per_second", 0.0), 1),
        dead_letters=result.get("dead_letters"),
        peak_mib=round(result["peak_rss_bytes"] / 2**20, 1) if "peak_rss_bytes" in result else None,
        **{k: round(v, 6) for k, v in (result.get("final_metrics") or {}).items() if isinstance(v, float)},
    )


def compare(
    config_paths: Sequence[str | os.PathLike],
    input_path: str | os.PathLike,
    report_dir: str | os.PathLike,
    *,
    jobs: int | None = None,
    stop: threading.Event | None = None,
    log_level: str = "info",
    log_json: bool | None = None,
) -> dict[str, Any]:
    """Replay every config over ``input_path`` and write one comparison into ``report_dir``.

    Returns the report (also ``report_dir/report.json``); ``report["failed"]`` names
    the configs that did not run to the end, each row's ``error`` says why.

    Parameters
    ----------
    config_paths
        TOML configs; each one's file stem names its row and directory (``stem-2`` … when
        stems repeat).
    input_path
        The logged stream every config replays.
    report_dir
        ``report.json``, ``curves.png``, ``report.html`` and one directory per config.
    jobs
        Processes at a time (default: the usable cores).
    stop
        Set it to stop: running replays finish their batch and are reported as stopped.
    log_level, log_json
        The children's logging, as :func:`streamlearn.logs.configure_logging` takes it.
    """
    from streamlearn.engine.report import plot_curves, write_json

    if not config_paths:
        raise ValueError("compare needs at least one config")
    input_path = Path(input_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"--input {input_path}: {'a directory, not a file' if input_path.is_dir() else 'no such file'}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    names = run_names(config_paths)
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)

    # Each child loads its own config and reports one it cannot use: checking them here
    # first would import the engine into this process, a second or more before any learner starts.
    parallel = max(1, min(jobs or usable, len(names)))
    log.info("compare started", configs=len(names), processes=parallel, input=str(input_path), report=str(report_dir))
    started = time.perf_counter()
    jobs_to_run = [(name, str(path)) for name, path in zip(names, config_paths, strict=True)]
    results = _run_all(jobs_to_run, str(input_path.resolve()), report_dir, parallel, log_level, log_json, stop)
    elapsed = time.perf_counter() - started

    rows = [{"config_path": str(path), **results[name]} for name, path in zip(names, config_paths, strict=True)]
    histories = {r["name"]: r.pop("history") for r in rows if r.get("history")}
    panels = plot_curves(histories, report_dir / "curves.png", title=input_path.name)
    curves = {"file": "curves.png", "runs": list(histories), "panels": panels} if panels else None
    report = {
        "streamlearn": __version__,
        "input": str(input_path.resolve()),
        "strategy": STRATEGY,
        "processes": parallel,
        "elapsed_seconds": elapsed,
        "learners": rows,
        "failed": [r["name"] for r in rows if r["status"] != "ok"],
        "curves": curves,
    }
    write_json(report, report_dir / "report.json")
    (report_dir / "report.html").write_text(render_html(report, report_dir), encoding="utf-8")
    log.info("compare finished", seconds=round(elapsed, 1), failed=report["failed"], report=str(report_dir / "report.html"))
    return report


# --------------------------------------------------------------------------- the table and the page


def metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every metric key of any row, each cumulative key followed by its windowed keys."""
    from streamlearn.engine.processor import split_windowed_name
    keys: list[str] = []
    for row in rows:
        for key in row.get("final_metrics") or {}:
            if key not in keys:
                keys.append(key)
    order = {split_windowed_name(k)[0]: i for i, k in reversed(list(enumerate(keys)))}
    return sorted(keys, key=lambda k: (order[split_windowed_name(k)[0]], split_windowed_name(k)[1] or 0))


def table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The comparison as text cells: a header and a row per learner (the CLI prints it,
    the page shows it)."""
    rows = report["learners"]
    metrics = metric_columns(rows)
    header = ["run", "learner", "status", "events", "dead letters", "events/s", "peak MiB", *metrics]
    cells = []
    for row in rows:
        values = row.get("final_metrics") or {}
        dead = row.get("dead_letters")
        share = f" ({dead / row['events']:.1%})" if dead and row.get("events") else ""
        cells.append(
            [
                row["name"],
                str(row.get("learner", "")),
                row["status"],
                f"{row['events']:,}" if "events" in row else "",
                f"{dead:,}{share}" if dead is not None else "",
                f"{row['events_per_second']:,.0f}" if "events_per_second" in row else "",
                f"{row['peak_rss_bytes'] / 2**20:,.0f}" if "peak_rss_bytes" in row else "",
                *(_number(values.get(k)) for k in metrics),
            ]
        )
    return header, cells


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_table(report: dict[str, Any]) -> str:
    """The table as aligned plain text."""
    header, cells = table(report)
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *cells])


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:nth-child(-n+3), th:nth-child(-n+3) { text-align: left; }
tr.failed td { background: #fde8e8; }
img { max-width: 100%; }
.meta { color: #555; }
"""


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def render_html(report: dict[str, Any], report_dir: Path) -> str:
    """``report.html``: the table, problems per learner and every plot, embedded, so the
    one file can be mailed or opened from disk."""
    esc = html.escape
    header, cells = table(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<link rel="icon" href="data:,">',  # no favicon request: the page loads nothing else
        f"<title>streamlearn compare: {esc(Path(report['input']).name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Comparison on {esc(Path(report['input']).name)}</h1>",
        f'<p class="meta">input {esc(report["input"])}; {len(report["learners"])} configs in '
        f"{report['elapsed_seconds']:.1f} s, {esc(report['strategy'])} ({report['processes']} at a time); "
        f"streamlearn {esc(report['streamlearn'])}</p>",
        "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>",
    ]
    for row, cell in zip(report["learners"], cells, strict=True):
        css = ' class="failed"' if row["status"] != "ok" else ""
        parts.append(f"<tr{css}>" + "".join(f"<td>{esc(c)}</td>" for c in cell) + "</tr>")
    parts.append("</tbody></table>")
    notes = []
    for row in report["learners"]:
        if row.get("error"):
            notes.append(f"<li><b>{esc(row['name'])}</b> ({esc(row['config_path'])}) {esc(row['status'])}: {esc(row['error'])}</li>")
        if row.get("dead_letter_reasons"):
            reasons = "; ".join(f"{esc(k)} ({v:,})" for k, v in row["dead_letter_reasons"].items())
            notes.append(f"<li><b>{esc(row['name'])}</b> dead letters, most frequent reasons: {reasons}</li>")
    if notes:
        parts += ["<h2>Problems</h2><ul>", *notes, "</ul>"]
    if report["curves"]:
        parts += [
            "<h2>Curves</h2><p class=\"meta\">dashed: cumulative; solid: over the last events of the window</p>",
            f'<img src="{_data_uri(report_dir / "curves.png")}" alt="metrics of every learner against events">',
        ]
    for row in report["learners"]:
        own = report_dir / row["name"] / "metrics.png"
        if row["status"] != "failed" and own.is_file():
            parts += [f"<h3>{esc(row['name'])}</h3>", f'<img src="{_data_uri(own)}" alt="metrics of {esc(row["name"])}">']
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

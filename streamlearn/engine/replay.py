"""Prequential evaluation of a learner on a logged stream (``streamlearn replay``).

The config's learner runs test-then-train over every event of the file; the
result is a report (``report.json``: metric values over time, final metrics,
events/s, dead-letter counts, the config) and PNG plots. With a
``[checkpoint] dir`` the replay checkpoints as it goes and, started again,
resumes from the latest good checkpoint at the stored row.

A stale checkpoint is never resumed silently. Each replay checkpoint stores the
fingerprints of the config and of the input (:mod:`streamlearn.engine.fingerprint`),
the metric history and the run's counters in its metadata. Started again:

- no checkpoint: the replay starts from the first event;
- same fingerprints: it resumes; when the input was replayed to the end, nothing is
  left to do and the report is the stored one (the same ``report.json`` apart from
  :data:`RUN_FIELDS`);
- a different config or input: :class:`StaleCheckpoint` naming each difference.

``fresh=True`` (``--fresh``) first moves the checkpoint directory, and the
predictions and dead-letter files, aside to ``<name>.old-<UTC time>``;
``resume=True`` (``--resume``) requires a checkpoint, and also continues on an
input that grew since (its first bytes unchanged: a log appended to).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from streamlearn import __version__
from streamlearn.connectors.files import RowMapping, open_sink, open_source
from streamlearn.engine.checkpoint import Checkpoint
from streamlearn.engine.config import Config, ConfigError, load_config
from streamlearn.engine.fingerprint import StaleCheckpoint, compare, input_fingerprint, same_head, state_fingerprint
from streamlearn.engine.loop import Engine, RunStats
from streamlearn.engine.processor import rounded, split_windowed_name
from streamlearn.engine.processor import shown as metric_text
from streamlearn.engine.report import write_report

__all__ = ["DEAD_LETTER_WARNING", "RUN_FIELDS", "EmptyInput", "NothingLearned", "StaleCheckpoint", "replay"]

#: A replay whose dead letters are at least this share of its events says so
#: prominently (stderr, ``report.json`` ``warnings``) with the top reasons.
DEAD_LETTER_WARNING = 0.05


class EmptyInput(ValueError):
    """The input holds no event: there is nothing to evaluate."""


class NothingLearned(ValueError):
    """Every event was a dead letter: the metrics would describe an untrained learner."""

#: Report fields that describe one run rather than the evaluation: two runs of the
#: same command (the second resuming a finished replay) differ only in these.
RUN_FIELDS = ("elapsed_seconds", "events_per_second", "resumed_from_events", "checkpoints_written", "report_path")

log = structlog.get_logger("streamlearn.replay")


class _ProgressBar:
    """A tqdm bar over the source's own unit (bytes for JSONL, rows otherwise) whose text
    counts events (events read, events/s, dead letters), with the metrics on status
    lines below it, packed to the terminal's width: a line is never cut short of a
    metric, however many there are (a windowed value sits beside its cumulative one).
    """

    FORMAT = "{percentage:3.0f}%|{bar:10}| {elapsed}<{remaining}{postfix}"

    def __init__(self, source: Any, processor: Any, enabled: bool, file: Any = None, width: int | None = None):
        self.source, self.processor, self.bar = source, processor, None
        self.lines: list[Any] = []
        self._texts: list[str] = []
        if enabled:
            from tqdm import tqdm

            self._tqdm, self._file = tqdm, file or sys.stderr
            self._width = width
            done, total = source.progress()
            self.bar = tqdm(total=total, initial=done, bar_format=self.FORMAT, file=self._file, dynamic_ncols=width is None, ncols=width, mininterval=0.5)
            self._last = 0.0
            self._stats: RunStats | None = None

    def _status(self, texts: list[str]) -> None:
        while len(self.lines) < len(texts):
            self.lines.append(self._tqdm(total=0, position=len(self.lines) + 1, bar_format="{desc}", file=self._file, ncols=self._width))
        for line, text in zip(self.lines, texts + [""] * (len(self.lines) - len(texts)), strict=True):
            line.set_description_str(text, refresh=True)

    def __call__(self, stats: RunStats, force: bool = False) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self._last < 0.5 and not force:
            return
        self._last, self._stats = now, stats
        done, _ = self.source.progress()
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix_str(f"{stats.events_per_second:,.0f} events/s", refresh=True)
        width = (self._width or shutil.get_terminal_size((100, 20)).columns) - 1
        counts = [f"{stats.records:,} events", f"{stats.dead_letters:,} dead letters"]
        self._texts = _packed(counts + _metric_items(self.processor.metrics()), width)
        self._status(self._texts)

    def close(self) -> None:
        if self.bar is not None:
            if self._stats is not None:  # the final numbers, not those of half a second ago
                self(self._stats, force=True)
            # The status lines go, the bar stays, and the last numbers are printed under it.
            for line in reversed(self.lines):
                line.leave = False
                line.close()
            self.bar.close()
            for text in self._texts:
                print(text, file=self._file)


def _metric_items(metrics: dict[str, float | None]) -> list[str]:
    """``Accuracy 0.8928 (last 1,000: 0.906)``: one item per metric, its windowed value beside it."""
    items: dict[str, str] = {}
    for key, value in metrics.items():
        name, window = split_windowed_name(key)
        if window is not None and name in items:
            items[name] += f" (last {window:,}: {metric_text(value)})"
        else:
            items[key] = f"{key} {metric_text(value)}"
    return list(items.values())


def _packed(items: list[str], width: int) -> list[str]:
    """``items`` joined by ", " into lines of at most ``width`` characters (an item longer
    than that alone on its line)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += f", {item}"
        else:
            lines.append(item)
    return lines


def _aside_name(path: str, stamp: str, taken: Callable[[str], bool]) -> str:
    """``out/ckpt`` → ``out/ckpt.old-<stamp>``, ``p.jsonl`` → ``p.old-<stamp>.jsonl``;
    ``-2``, ``-3``, ... after the stamp while ``taken(name)`` (never onto an earlier one)."""
    root, ext = os.path.splitext(path.rstrip("/"))
    if not ext or os.path.isdir(path):
        root, ext = path.rstrip("/"), ""
    name, n = f"{root}.old-{stamp}{ext}", 1
    while taken(name):
        n += 1
        name = f"{root}.old-{stamp}-{n}{ext}"
    return name


def _move_aside(config: Config) -> list[str]:
    """``--fresh``: move the checkpoint directory and the output files of an earlier run
    out of the way (never delete them); returns the new names."""
    import pyarrow.fs as pafs

    from streamlearn.engine.checkpoint import _resolve

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    moved = []
    if config.checkpoint.dir:
        fs, root = _resolve(config.checkpoint.dir)
        if fs.get_file_info(root).type != pafs.FileType.NotFound:
            target = _aside_name(root, stamp, lambda name: fs.get_file_info(name).type != pafs.FileType.NotFound)
            try:
                fs.move(root, target)
            except OSError as exc:
                raise StaleCheckpoint(f"--fresh could not move {config.checkpoint.dir} aside to {target}: {exc}") from None
            moved.append(target)
    for path in (config.output.predictions, config.output.dead_letters):
        if path and os.path.exists(path):
            target = _aside_name(path, stamp, os.path.exists)
            os.replace(path, target)
            moved.append(target)
    for target in moved:
        log.info("moved aside for --fresh", to=target)
    return moved


def _checkpoint_check(config: Config, state: dict[str, Any], current: dict[str, Any], resume: bool):
    """The check a replay makes of the checkpoint it would resume (see the module docstring)."""
    where = config.checkpoint.dir
    start_over = f"--fresh starts over (moving {where} aside to {where}.old-<time>), or set another [checkpoint] dir"

    def check(checkpoint: Checkpoint | None) -> None:
        if checkpoint is None:
            if resume:
                raise StaleCheckpoint(f"--resume: no checkpoint in {where} to resume from (run without --resume to start)")
            return
        stored = checkpoint.metadata.get("replay")
        if stored is None:
            if resume:  # the user vouches for it; the learner class is still checked
                log.warning("resuming a checkpoint that records no fingerprint", file=checkpoint.path)
                return
            raise StaleCheckpoint(
                f"{checkpoint.path} records no replay fingerprint (written by `streamlearn run` or an older version), "
                f"so whether it belongs to this config and input cannot be told; --resume continues from it, {start_over}"
            )
        differences = compare(stored.get("state", {}), state)
        if differences:
            raise StaleCheckpoint(
                f"the checkpoints in {where} were made with a different configuration:\n  "
                + "\n  ".join(differences)
                + f"\n{start_over}"
            )
        old = stored.get("input", {})
        if old.get("path") != current["path"]:
            raise StaleCheckpoint(f"the checkpoints in {where} are of the input {old.get('path')}, not {current['path']}; {start_over}")
        if old.get("bytes") == current["bytes"] and old.get("head_sha256") == current["head_sha256"]:
            return
        grew = current["bytes"] > int(old.get("bytes", 0)) and same_head(old, current["path"])
        if grew and resume:
            log.info("the input grew since the checkpoint; resuming with the new events", before=old.get("bytes"), now=current["bytes"])
            return
        what = (
            f"it grew from {old.get('bytes'):,} to {current['bytes']:,} bytes (--resume continues with the new events)"
            if grew
            else f"it changed ({old.get('bytes'):,} bytes then, {current['bytes']:,} now; first bytes {'the same' if same_head(old, current['path']) else 'different'})"
        )
        raise StaleCheckpoint(f"the input {current['path']} is not the one the checkpoints in {where} were made from: {what}; {start_over}")

    return check


def replay(
    config: Config | str | os.PathLike,
    input_path: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    *,
    progress: bool | None = None,
    stop: threading.Event | None = None,
    max_records: int | None = None,
    fresh: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Replay a logged stream through the config's learner and return the report.

    Parameters
    ----------
    config
        A :class:`Config` or the path of a TOML config.
    input_path
        The logged stream (JSONL, CSV or Parquet); defaults to ``[input] path``.
    report_dir
        Where ``report.json`` and the plots go; no files when None.
    progress
        Show a progress bar (default: when stderr is a terminal).
    stop
        Set it to stop early (a final checkpoint is still written).
    max_records
        Stop after this many records (for tests and quick looks).
    fresh
        Start over: move earlier checkpoints and output files aside first.
    resume
        Require a checkpoint to resume (and accept an input that grew since).

    Raises
    ------
    StaleCheckpoint
        The checkpoint directory holds checkpoints of another config or input (or,
        with ``resume``, none).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    path = input_path or config.input.path
    if path is None:
        raise ValueError("no input: pass --input PATH or set [input] path in the config")
    if fresh and resume:
        raise ValueError("--fresh and --resume exclude each other")
    if resume and not config.checkpoint.dir:
        raise StaleCheckpoint("--resume needs a [checkpoint] dir in the config")
    mapping = RowMapping(config.input.target, config.input.exclude)
    learner = config.build_learner()
    processor = config.build_processor(learner)

    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(path, config.input.format, mapping))
        _check_columns(source, config, processor)
        if fresh:  # only once the input is known to fit: a refused run moves nothing
            _move_aside(config)
        state_print, input_print = state_fingerprint(config), input_fingerprint(path)
        outputs = stack.enter_context(open_sink(config.output.predictions)) if config.output.predictions else None
        dead = stack.enter_context(open_sink(config.output.dead_letters)) if config.output.dead_letters else None
        checkpointer = None
        if config.checkpoint.dir:
            from streamlearn.engine.checkpointing import Checkpointer

            checkpointer = Checkpointer.from_config(config, learner, processor, source, sinks=[outputs, dead])
            restored = checkpointer.restore(_checkpoint_check(config, state_print, input_print, resume))
            checkpointer.store_if_empty = False  # an empty input is an error, not a 0-event state
        bar = _ProgressBar(source, processor, sys.stderr.isatty() if progress is None else progress)
        engine = Engine(
            processor, source, outputs=outputs, dead_letters=dead, checkpointer=checkpointer, on_batch=bar, **config.engine_options()
        )
        if checkpointer is not None:
            engine.stats.records = engine.stats.resumed_at = checkpointer.events_before
            if restored is not None:
                _restore_stats(engine.stats, restored.metadata.get("replay", {}))
            checkpointer.metadata = lambda: {"replay": _replay_metadata(engine.stats, state_print, input_print, source.exhausted)}
            if restored is not None and source.exhausted:
                log.info(
                    "this input was replayed to the end with this config already; reporting the stored result "
                    "(--fresh replays it again)",
                    checkpoints=config.checkpoint.dir,
                )
        log.info("replay started", config=config.source, input=str(path), learner=config.learner.name)
        try:
            stats = engine.run(stop=stop, max_records=max_records)
        finally:
            bar.close()

    elapsed = stats.elapsed + stats.elapsed_before
    report = {
        "streamlearn": __version__,
        "learner": config.learner.name,
        "config": config.raw,
        "config_path": config.source,
        "input": str(Path(path).resolve()),
        "events": stats.records,
        "processed": stats.processed,
        "dead_letters": stats.dead_letters,
        "dead_letter_reasons": dict(stats.reasons.most_common()),
        "quarantined": stats.quarantined,
        "outputs": stats.outputs,
        # The whole replay's, over all the runs that made it (see RUN_FIELDS).
        "elapsed_seconds": elapsed,
        "events_per_second": stats.records / elapsed if elapsed > 0 else 0.0,
        "final_metrics": processor.metrics(),
        "history": stats.history,
        "details": processor.details(),
        "completed": source.exhausted,
        "fingerprint": {"config_sha256": _sha256_json(state_print), "input": input_print},
    }
    if checkpointer is not None:
        report["resumed_from_events"] = checkpointer.events_before
        report["checkpoints_written"] = checkpointer.written
    if not stats.records and source.exhausted:
        raise EmptyInput(f"the input {path} holds no events (an empty file, blank lines or a header only): nothing was evaluated")
    report["dead_letter_share"] = stats.dead_letters / stats.records if stats.records else None
    report["warnings"] = _warnings(stats)
    for warning in report["warnings"]:
        log.warning(warning)
    log.info(
        "replay finished",
        events=stats.records,
        events_per_s=round(stats.events_per_second, 1),
        dead_letters=stats.dead_letters,
        **rounded(report["final_metrics"]),
    )
    if report_dir is not None:
        report["report_path"] = str(write_report(report, report_dir))
    if stats.dead_letters and not stats.processed:
        written = f" (report: {report['report_path']})" if "report_path" in report else ""
        raise NothingLearned(f"the learner learned nothing: {_dead_letter_summary(stats)}{written}")
    return report


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _replay_metadata(stats: RunStats, state: dict[str, Any], input_print: dict[str, Any], completed: bool) -> dict[str, Any]:
    """What a replay checkpoint stores besides the state: fingerprints, curve, counters."""
    return {
        "state": state,
        "input": input_print,
        "completed": completed,
        "history": stats.history,
        "stats": {
            "processed": stats.processed,
            "dead_letters": stats.dead_letters,
            "outputs": stats.outputs,
            "diverged": stats.diverged,
            "reasons": dict(stats.reasons),
            "elapsed_seconds": stats.elapsed + stats.elapsed_before,
        },
    }


def _restore_stats(stats: RunStats, stored: dict[str, Any]) -> None:
    """Continue the counters and the metric curve of the run that wrote the checkpoint."""
    counters = stored.get("stats", {})
    stats.processed = int(counters.get("processed", 0))
    stats.dead_letters = int(counters.get("dead_letters", 0))
    stats.outputs = int(counters.get("outputs", 0))
    stats.diverged = int(counters.get("diverged", 0))
    stats.elapsed_before = float(counters.get("elapsed_seconds", 0.0))
    stats.reasons.update(counters.get("reasons", {}))
    stats.history = [dict(point) for point in stored.get("history", []) if point.get("events", 0) <= stats.records]


def _column_list(columns: list[str], most: int = 12) -> str:
    shown = ", ".join(columns[:most])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > most else "")


def _check_columns(source: Any, config: Config, processor: Any) -> None:
    """A CSV/Parquet header against ``[input]``, before the first row: a missing target
    would otherwise make every row a dead letter."""
    columns = source.columns() if hasattr(source, "columns") else None
    if not columns:  # JSONL, or an empty file (reported as an empty input)
        return
    where = f"{source.path} has the columns {_column_list(columns)}"
    target = config.input.target
    if target is not None and target not in columns:
        hint = difflib.get_close_matches(target, columns, n=1)
        did_you_mean = f" (did you mean [input] target = {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"[input] target = {target!r} is not a column of the input{did_you_mean}; {where}")
    missing = [name for name in config.input.exclude if name not in columns]
    if missing:
        raise ConfigError(f"[input] exclude names {', '.join(map(repr, missing))}, not columns of the input; {where}")
    needed = [name for name in processor.event_fields if name not in columns]
    if target is None and needed:
        raise ConfigError(
            f"{where} but no {', '.join(map(repr, needed))}: its rows are flat, so the config must say which column is "
            f'the label: add [input] target = "{columns[-1] if columns[-1] not in ("id", "ts") else columns[0]}" '
            "(or the name of your label column) and the other columns become the features x"
        )


def _dead_letter_summary(stats: RunStats, top: int = 5) -> str:
    reasons = "; ".join(f"{count:,} × {reason}" for reason, count in stats.reasons.most_common(top))
    return f"{stats.dead_letters:,} of {stats.records:,} events were dead letters; top reasons: {reasons}"


def _warnings(stats: RunStats) -> list[str]:
    """What the report must say prominently: a high share of dead letters, with why."""
    if stats.dead_letters and stats.dead_letters / stats.records >= DEAD_LETTER_WARNING:
        return [f"{stats.dead_letters / stats.records:.1%} dead letters: {_dead_letter_summary(stats)}"]
    return []

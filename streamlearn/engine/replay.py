"""Prequential evaluation of a learner on a logged stream (``streamlearn replay``).

The config's learner runs test-then-train over every event of the file; the
result is a report (``report.json``: metric values over time, final metrics,
events/s, dead-letter counts, the config) and PNG plots. With a
``[checkpoint] dir`` the replay checkpoints as it goes and, started again,
resumes from the latest good checkpoint at the stored row.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from streamlearn import __version__
from streamlearn.connectors.files import RowMapping, open_sink, open_source
from streamlearn.engine.config import Config, load_config
from streamlearn.engine.loop import Engine, RunStats
from streamlearn.engine.report import write_report

__all__ = ["replay"]

log = structlog.get_logger("streamlearn.replay")


class _ProgressBar:
    """A tqdm bar over the source's own unit (bytes for JSONL, rows otherwise) whose text
    counts events: events read, events/s, dead letters and every metric.

    The bar is kept short so the numbers fit a terminal line; tqdm trims a line only
    beyond the terminal's width.
    """

    FORMAT = "{percentage:3.0f}%|{bar:12}| {elapsed}<{remaining}{postfix}"

    def __init__(self, source: Any, processor: Any, enabled: bool):
        self.source, self.processor, self.bar = source, processor, None
        if enabled:
            from tqdm import tqdm

            done, total = source.progress()
            self.bar = tqdm(total=total, initial=done, bar_format=self.FORMAT, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
            self._last = 0.0
            self._stats: RunStats | None = None

    def __call__(self, stats: RunStats, force: bool = False) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self._last < 0.5 and not force:
            return
        self._last, self._stats = now, stats
        done, _ = self.source.progress()
        self.bar.update(done - self.bar.n)
        shown = [f"{stats.records:,} events", f"{stats.events_per_second:,.0f} events/s", f"{stats.dead_letters:,} dead letters"]
        shown += [f"{k} {v:.4g}" for k, v in self.processor.metrics().items()]
        self.bar.set_postfix_str(", ".join(shown), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            if self._stats is not None:  # the final numbers, not those of half a second ago
                self(self._stats, force=True)
            self.bar.close()


def replay(
    config: Config | str | os.PathLike,
    input_path: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    *,
    progress: bool | None = None,
    stop: threading.Event | None = None,
    max_records: int | None = None,
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
    """
    if not isinstance(config, Config):
        config = load_config(config)
    path = input_path or config.input.path
    if path is None:
        raise ValueError("no input: pass --input PATH or set [input] path in the config")
    mapping = RowMapping(config.input.target, config.input.exclude)
    learner = config.build_learner()
    processor = config.build_processor(learner)

    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(path, config.input.format, mapping))
        outputs = stack.enter_context(open_sink(config.output.predictions)) if config.output.predictions else None
        dead = stack.enter_context(open_sink(config.output.dead_letters)) if config.output.dead_letters else None
        checkpointer = None
        if config.checkpoint.dir:
            from streamlearn.engine.checkpointing import Checkpointer

            checkpointer = Checkpointer.from_config(config, learner, processor, source, sinks=[outputs, dead])
            checkpointer.restore()
        bar = _ProgressBar(source, processor, sys.stderr.isatty() if progress is None else progress)
        engine = Engine(
            processor, source, outputs=outputs, dead_letters=dead, checkpointer=checkpointer, on_batch=bar, **config.engine_options()
        )
        if checkpointer is not None:
            engine.stats.records = engine.stats.resumed_at = checkpointer.events_before
        log.info("replay started", config=config.source, input=str(path), learner=config.learner.name)
        try:
            stats = engine.run(stop=stop, max_records=max_records)
        finally:
            bar.close()

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
        "outputs": stats.outputs,
        "elapsed_seconds": stats.elapsed,
        "events_per_second": stats.events_per_second,
        "final_metrics": processor.metrics(),
        "history": stats.history,
        "details": processor.details(),
        "completed": source.exhausted,
    }
    if checkpointer is not None:
        report["resumed_from_events"] = checkpointer.events_before
        report["checkpoints_written"] = checkpointer.written
    log.info(
        "replay finished",
        events=stats.records,
        events_per_s=round(stats.events_per_second, 1),
        dead_letters=stats.dead_letters,
        **{k: round(v, 6) for k, v in report["final_metrics"].items()},
    )
    if report_dir is not None:
        report["report_path"] = str(write_report(report, report_dir))
    return report

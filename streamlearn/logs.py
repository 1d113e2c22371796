"""structlog set-up: readable console lines in a terminal, JSON lines otherwise (the daemon).

Every line is redacted (:func:`streamlearn.redact.redact_log_event`): a value under a
secret's name, or a URI's password, never reaches the log.
"""

from __future__ import annotations

import logging
import sys

import structlog

from streamlearn.redact import redact_log_event

__all__ = ["configure_logging"]


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing, not the stream it was
    when logging was configured (which a test harness or a caller may since have closed)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", json_logs: bool | None = None) -> None:
    """Log to stderr; ``json_logs`` defaults to True when stderr is not a terminal."""
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_log_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )

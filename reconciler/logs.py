"""Logging: one JSON object per line when not on a terminal (for log collectors), plain text on one."""
from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from reconciler import times

# Context fields a log call may pass with extra={...}: the figures of a message, so that a log
# search or an alert reads them without parsing the text.
# `changes` counts what a sync did ({"created": 2, ...}; a LogRecord has its own `created`).
CONTEXT = ("revision", "agent", "branch", "source", "folder", "session", "status", "duration_ms",
           "changes", "errors")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update({k: getattr(record, k) for k in CONTEXT if getattr(record, k, None) is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """For a terminal: local time with its zone, the message, then each of its `errors` (one per
    problem) on an indented line."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text + "".join(f"\n  {error}" for error in getattr(record, "errors", None) or ())

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return times.local(datetime.fromtimestamp(record.created, UTC))


def configure(level: int = logging.INFO, *, also: tuple[str, ...] = ()) -> None:
    """Our loggers, and those named in `also` (a server library's), write through one handler, so a
    log collector gets one format."""
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    for name in ("reconciler", *also):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False

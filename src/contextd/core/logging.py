"""Logs carrying the request id of the request being served: JSON lines for machines, a
short readable line when stdout is a terminal.

Fields passed through ``extra=`` land in the line; nothing else is added, so secrets and
query text appear only where a caller puts them on purpose. One handler on the root logger
formats every library's lines (uvicorn, apscheduler, httpx) the same way.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from contextd.core.telemetry import current_trace_id

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """Request id, trace id and the ``extra=`` fields of ``record``."""
    entry: dict[str, Any] = {}
    request_id = request_id_var.get()
    if request_id:
        entry["request_id"] = request_id
    trace_id = current_trace_id()
    if trace_id:
        entry["trace_id"] = trace_id
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            entry[key] = value
    return entry


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """``09:14:03 INFO  sync finished  connector=docs records=15`` for a person reading."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = _fields(record)
        fields.pop("trace_id", None)
        fields.pop("event", None)
        extras = " ".join(f"{k}={v}" for k, v in fields.items())
        name = record.name if not record.name.startswith("contextd") else ""
        line = "  ".join(part for part in (f"{when} {record.levelname:<7}", name,
                                           record.getMessage(), extras) if part)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", *, human: bool | None = None) -> None:
    """Send every logger's lines to stdout through one formatter (idempotent).

    ``human`` picks the readable format; by default it is used when stdout is a terminal
    and JSON otherwise. contextd logs at ``level``; other libraries at WARNING and above.
    """
    if human is None:
        human = sys.stdout.isatty()
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_contextd", False)), None)
    if handler is None:  # the first call picks the stream; later calls keep it
        handler = logging.StreamHandler(sys.stdout)
        handler._contextd = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(ConsoleFormatter() if human else JsonFormatter())
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logger = logging.getLogger("contextd")
    logger.setLevel(level.upper())
    logger.propagate = True
    for stale in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
        logger.removeHandler(stale)

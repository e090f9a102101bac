"""Structured logs: one JSON object per line (or a readable line in development).

Only named, known fields are written; request bodies, headers and query strings never reach a log.
"""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "region_id", "key_id", "mutation_id")


def exception_without_message(exc_info: Any) -> str:
    """The exception's type and where it happened, never its message: messages can quote personal
    data (a validation error repeats its input; a driver error its values). Frames name file, line
    and function but not the source line, whose literals are no business of the log either."""
    kind, _value, trace = exc_info
    frames = "".join(
        f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
        for frame in traceback.extract_tb(trace)
    )
    return f"{frames}{kind.__module__}.{kind.__qualname__} (message withheld)"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = exception_without_message(record.exc_info)
        return orjson.dumps(entry).decode()


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{n}={getattr(record, n)}" for n in _FIELDS if getattr(record, n, None) is not None
        )
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + exception_without_message(record.exc_info)
        return line


def configure_logging(environment: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ReadableFormatter() if environment == "development" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # uvicorn's own access log prints query strings; ours (onderwijsregio.access) does not.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request line at INFO, query strings (callback tokens) included.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True

"""Logging set-up: plain text lines by default, one JSON object a line on request.

Everything logs through the ``tuf_mirror`` logger. The summary line of a run and
the periodic ``--stats`` lines are not log records: ``emit_line`` prints them
whatever the log level (``-q`` is decided by the caller), as text or, with
``--log-format json``, as one JSON object carrying the same message and fields.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

log = logging.getLogger("tuf_mirror")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True)


def configure_logging(*, fmt: str = "text", verbose: int = 0, quiet: bool = False) -> None:
    """Send ``tuf_mirror`` logs to stderr as text or JSON lines; ``quiet`` keeps
    errors only."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("tuf-mirror: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    if quiet:
        log.setLevel(logging.ERROR)
    else:
        log.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


def emit_line(
    message: str, fields: dict[str, object] | None = None, *, fmt: str, level: str = "info"
) -> None:
    """Print one line that is not a log record (a summary, a progress line) on
    stderr: ``message`` as text, or a JSON object with ``message`` and ``fields``."""
    if fmt == "json":
        entry: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(),
            "level": level,
            "message": message,
        }
        entry.update(fields or {})
        line = json.dumps(entry, sort_keys=True, default=str)
    else:
        line = message
    print(line, file=sys.stderr, flush=True)


def emit_summary(message: str, report: dict[str, object], *, fmt: str) -> None:
    """The summary line of a run; in JSON it carries the report's scalar fields and
    versions (not its long lists, which ``--report`` and ``--json`` hold)."""
    fields: dict[str, object] = {"event": "summary"}
    for key, value in report.items():
        if not isinstance(value, list | dict) or key in ("versions_after", "versions_before"):
            fields[key] = value
    status = report.get("exit_status", 0)
    emit_line(message, fields, fmt=fmt, level="info" if status == 0 else "error")

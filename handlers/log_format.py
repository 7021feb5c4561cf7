"""``--log_format=json``: every log record, ours and Tornado's, as one JSON object per line.

Log collectors (Loki, Elasticsearch, CloudWatch) read such lines without a
parsing rule. The keys are in docs/logging.md: ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, ``exc`` (a traceback, when there is one) and
the fields of an access-log record (`handlers.access_log`) at the top level.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; a newline in a message stays inside its string."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            entry["event"] = event
            entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


def apply_log_format(name: str, logger: logging.Logger | None = None) -> None:
    """Put the formatter ``name`` names on every handler of ``logger`` (the root
    logger by default, where Tornado's option parsing installed its handler);
    ``text`` keeps Tornado's. Raises ValueError for an unknown name."""
    if name not in LOG_FORMATS:
        raise ValueError(f"--log_format={name}: use text or json")
    if name == "json":
        for handler in (logger or logging.getLogger()).handlers:
            handler.setFormatter(JsonFormatter())

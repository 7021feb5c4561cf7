"""No query string in any log line.

Tokens travel in ``?token=``. Our access log (`server._log_request`) logs only
paths, but Tornado's own records can carry a full URI: an uncaught exception
logs the request's repr (``uri='/ws?token=...'``), an `HTTPError` with a log
message logs ``GET /ws?token=... (127.0.0.1)``. `QueryRedactor`, put on every
handler of the root logger, rewrites any such URI in a record's message.
"""

from __future__ import annotations

import logging
import re

QUERY_IN_PATH = re.compile(r"(/[^\s?'\"]*)\?[^\s'\"()]*")
"""A path followed by a query: everything from the ``?`` to the next space,
quote or parenthesis (where a URI ends in Tornado's log formats)."""
REDACTED = r"\1?[query not logged]"


class QueryRedactor(logging.Filter):
    """Rewrites ``/path?query`` to ``/path?[query not logged]`` in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            redacted = QUERY_IN_PATH.sub(REDACTED, message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def keep_queries_out_of_logs(logger: logging.Logger | None = None) -> None:
    """Put a `QueryRedactor` on every handler of ``logger`` (the root logger by
    default; Tornado's log handler is installed there by its option parsing)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, QueryRedactor) for f in handler.filters):
            handler.addFilter(QueryRedactor())

"""No query string reaches any log line, Tornado's own records included
(issue 11, finding 7: tokens will travel in ``?token=``)."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request

import pytest

from handlers.log_privacy import QueryRedactor
from tests.hostile.proc import HubProcess, wait_for


def test_tornados_own_warnings_carry_no_query() -> None:
    """A 403 from the static handler is logged by Tornado with the full URI."""
    secret = os.urandom(8).hex()
    with HubProcess("--logging=debug") as server:
        mark = server.mark()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url(f"/static/?token={secret}"), timeout=5)
        assert refused.value.code == 403
        wait_for(lambda: any("403" in line for line in server.lines[mark:]), what="403 logged")
        logged = "".join(server.lines[mark:])
        assert secret not in logged, logged
        assert "/static/?[query not logged]" in logged, logged


def test_redactor_rewrites_uris_in_any_record() -> None:
    record = logging.LogRecord(
        "tornado.application",
        logging.ERROR,
        __file__,
        1,
        "Uncaught exception %s\n%r",
        ("GET /ws?token=abc (127.0.0.1)", "uri='/ws?token=abc'"),
        None,
    )
    QueryRedactor().filter(record)
    message = record.getMessage()
    assert "abc" not in message
    assert "GET /ws?[query not logged] (127.0.0.1)" in message
    assert "uri='/ws?[query not logged]'" in message

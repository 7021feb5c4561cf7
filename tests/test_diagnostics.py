"""/healthz's process-side counters belong to one server instance."""

from __future__ import annotations

import json
import logging

from tornado.httpclient import AsyncHTTPClient

from tests.support import HANDOFF, LiveServer


async def health(live: LiveServer) -> dict:
    response = await AsyncHTTPClient().fetch(live.url("/healthz"))
    return json.loads(response.body)


async def test_each_server_counts_only_its_own_sockets_and_errors(make_server) -> None:
    first = make_server()
    client = await first.connect("ann")
    logging.getLogger("wshub.test").error("an error while only the first server runs")
    second = make_server()
    body = await health(first)
    assert body["errors_logged"] == 1
    assert body["handed_off_sockets"] == (1 if HANDOFF else 0)
    body = await health(second)
    assert (body["errors_logged"], body["handed_off_sockets"], body["connections"]) == (0, 0, 0)
    client.close()

"""``GET /metrics``: every series equals what real clients did, on a live server,
on real server processes, and summed over ``--processes=2`` workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from hub.auth import TokenVerifier
from tests.command import Command
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import Closed
from tests.redis_server import RedisServer
from tests.support import REPO, JsonClient, LiveServer, wait_until

KEY = "metrics-key"
BEARER = {"Authorization": f"Bearer {KEY}"}
QUIET = {"ping_interval": 600.0, "ping_timeout": 600.0}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (name, sorted labels)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def scrape(live: LiveServer, headers: dict[str, str] | None = None) -> Samples:
    response = await AsyncHTTPClient().fetch(live.url("/metrics"), headers=headers)
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.body.decode())


async def health(live: LiveServer) -> dict[str, Any]:
    response = await AsyncHTTPClient().fetch(live.url("/healthz"))
    return json.loads(response.body)


async def test_every_series_equals_the_traffic(make_server) -> None:
    live = make_server(api_keys=(KEY,), metrics=True, **QUIET)
    ann, bob = await live.connect("ann"), await live.connect("bob")
    await ann.join("r")
    await bob.join("r")
    await ann.expect("presence")
    await bob.join("s")
    await live.connect(path="/ws/echo")
    for i in range(5):
        ann.send({"type": "publish", "room": "r", "data": i})
    bob.send({"type": "publish", "room": "r", "data": "now", "ephemeral": True})
    await AsyncHTTPClient().fetch(
        live.url("/api/publish"),
        method="POST",
        body=json.dumps({"room": "r", "data": "backend"}),
        headers=BEARER,
    )
    for client in (ann, bob):
        assert [(await client.expect("message"))["data"] for _ in range(7)][-1] == "backend"
    bob.connection.write_message(b"\x00", binary=True)
    assert (await bob.expect("error"))["code"] == "bad_request"
    leaver = await live.connect("leaver")
    leaver.connection.close(1000)
    await wait_until(lambda: len(live.hub.peers) == 3)

    samples = await scrape(live, BEARER)
    assert value(samples, "wshub_connections", endpoint="hub") == 2
    assert value(samples, "wshub_connections", endpoint="echo") == 1
    assert value(samples, "wshub_rooms") == 2 and value(samples, "wshub_memberships") == 3
    assert value(samples, "wshub_broker_connected") == 1
    assert value(samples, "wshub_messages_received_total") == 3 + 5 + 1 + 1
    assert value(samples, "wshub_messages_published_total", source="ws") == 6
    assert value(samples, "wshub_messages_published_total", source="api") == 1
    assert value(samples, "wshub_deliveries_total") == 2 * 7
    assert value(samples, "wshub_errors_total", code="bad_request") == 1
    assert value(samples, "wshub_disconnects_total", code="1000") == 1
    stats = await health(live)
    assert value(samples, "wshub_bytes_sent_total") == stats["bytes_sent"] > 0
    assert value(samples, "wshub_broadcast_duration_seconds_count") == 7  # not presence
    assert 0 < value(samples, "wshub_broadcast_duration_seconds_sum") < 7 * 5.0
    assert value(samples, "wshub_broadcast_duration_seconds_bucket", le="+Inf") == 7
    for reason in ("capacity", "per_ip", "origin", "unauthorized"):
        assert value(samples, "wshub_connections_rejected_total", reason=reason) == 0
    assert value(samples, "process_cpu_seconds_total") > 0
    assert not any(name.endswith("_created") for name, _ in samples)


async def test_rejections_are_counted_by_reason(make_server) -> None:
    crowded = make_server(max_connections=1, metrics=True)
    await crowded.connect("first")
    with pytest.raises(AssertionError):  # closed (1013) instead of welcomed
        await crowded.connect("second")
    per_ip = make_server(max_connections_per_ip=1, metrics=True)
    await per_ip.connect("first")
    with pytest.raises(AssertionError):  # closed (1008) instead of welcomed
        await per_ip.connect("second")
    with pytest.raises(HTTPClientError):
        await JsonClient.open(per_ip.ws_url("/ws"), headers={"Origin": "https://evil.example"})
    guarded = make_server(verifier=TokenVerifier("s" * 32), metrics=True)
    stranger = await JsonClient.open(guarded.ws_url("/ws"))
    assert (await stranger.expect("error"))["code"] == "unauthorized"
    assert (await stranger.closed())[0] == 4003

    for live, reasons in (
        (crowded, {"capacity": 1}),
        (per_ip, {"per_ip": 1, "origin": 1}),
        (guarded, {"unauthorized": 1}),
    ):
        samples = await scrape(live)
        for reason in ("capacity", "per_ip", "origin", "unauthorized"):
            counted = value(samples, "wshub_connections_rejected_total", reason=reason)
            assert counted == reasons.get(reason, 0), (reason, counted)


async def test_the_api_key_guards_metrics_when_set(make_server) -> None:
    live = make_server(api_keys=(KEY,), metrics=True)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        with pytest.raises(HTTPClientError) as refused:
            await AsyncHTTPClient().fetch(live.url("/metrics"), headers=headers)
        assert refused.value.code == 401
    assert value(await scrape(live, BEARER), "wshub_rooms") == 0


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_are_on_by_default_and_off_with_metrics_false() -> None:
    with HubProcess() as server:
        status, text = fetch(server.url("/metrics"))
        assert status == 200 and value(parse(text), "wshub_connections", endpoint="hub") == 0
        assert "metrics /metrics: on, open" in server.log()
    with HubProcess("--metrics=false") as server:
        assert fetch(server.url("/metrics"))[0] == 404
        assert "metrics /metrics: off" in server.log()


BLOCK_PROMETHEUS = (
    "import sys; sys.modules['prometheus_client'] = None; "  # as if it were not installed
    "sys.argv[0] = 'server.py'; import server; server.main()"
)


def test_without_prometheus_client_metrics_default_off_and_on_is_refused() -> None:
    command = [sys.executable, "-c", BLOCK_PROMETHEUS, "--port=0"]
    result = subprocess.run(
        [*command, "--metrics=on"], cwd=REPO, capture_output=True, text=True, timeout=15
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "wshub: error: --metrics=on needs prometheus_client: "
        "pip install 'tornado-wshub[metrics]' (or start with --metrics=off)"
    ]
    server = Command(command)
    try:
        assert fetch(f"http://127.0.0.1:{server.port}/metrics")[0] == 404
        assert "metrics /metrics: off (pip install 'tornado-wshub[metrics]')" in server.log()
    finally:
        server.stop()


def scrape_process(server: HubProcess) -> Samples:
    status, text = fetch(server.url("/metrics"))
    assert status == 200, text
    return parse(text)


def workers_of(server: HubProcess) -> list[int]:
    with open(f"/proc/{server.pid}/task/{server.pid}/children") as listing:
        return [int(pid) for pid in listing.read().split()]


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fd_limit(pid: int) -> float:
    with open(f"/proc/{pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    return float(line.split()[3])


def is_open(wire: HubWire) -> bool:
    try:
        wire.still_open()
    except (Closed, OSError):
        return False
    return True


def test_with_two_processes_one_scrape_reports_the_sum(redis_server: RedisServer) -> None:
    with HubProcess(f"--broker={redis_server.url}", "--processes=2", "--rate_limit=0") as server:
        wait_for(lambda: server.log().count("listening on") == 2, 10, what="both workers up")
        wires = [HubWire(server.port, f"c{n}") for n in range(16)]
        try:
            by_node: dict[str, list[HubWire]] = {}
            for wire in wires:
                by_node.setdefault(wire.welcome["node"], []).append(wire)
            assert len(by_node) == 2, "the kernel put every connection on one worker"
            for wire in wires:
                wire.join("r")
            for n in range(3):
                wires[0].send_json({"type": "publish", "room": "r", "data": n})
            for wire in wires:
                for _ in range(3):
                    while wire.recv_json()["type"] != "message":
                        pass

            def summed(name: str, expected: float, **labels: str) -> bool:
                return value(scrape_process(server), name, **labels) == expected

            # Each scrape is answered by either worker; the other's numbers are
            # at most a second old, so wait for them, one scrape at a time.
            wait_for(lambda: summed("wshub_connections", 16, endpoint="hub"), 5, what="16")
            wait_for(lambda: summed("wshub_memberships", 16), 5, what="memberships")
            wait_for(lambda: summed("wshub_rooms", 2), 5, what="a room on each node")
            wait_for(lambda: summed("wshub_deliveries_total", 3 * 16), 5, what="deliveries")
            wait_for(lambda: summed("wshub_messages_received_total", 16 + 3), 5, what="received")
            wait_for(
                lambda: summed("wshub_messages_published_total", 3, source="ws"), 5, what="pub"
            )
            # One observation per broadcast on each node with members in the room.
            wait_for(
                lambda: summed("wshub_broadcast_duration_seconds_count", 3 * 2), 5, what="hist"
            )
            samples = scrape_process(server)
            assert value(samples, "wshub_broker_connected") == 1

            # process_* (absent from prometheus_client's multiprocess mode): each
            # worker's own, summed, at most a second old.
            workers = workers_of(server)
            rss = [resident_bytes(pid) for pid in workers]
            wait_for(
                lambda: (
                    0.8 * sum(rss)
                    <= value(scrape_process(server), "process_resident_memory_bytes")
                    <= 1.25 * sum(rss)
                ),
                5,
                what=f"the workers' resident memory summed ({rss})",
            )
            assert value(samples, "process_max_fds") == fd_limit(workers[0])
            assert value(samples, "process_cpu_seconds_total") > 0
            assert value(samples, "process_open_fds") >= 16  # the clients' sockets at least

            # A worker that dies takes its connections out of the gauges (its
            # restarted successor forgets it), its counters stay in the sums.
            victim = workers_of(server)[0]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while len(workers_of(server)) < 2 or victim in workers_of(server):
                assert time.monotonic() < deadline, "the worker was not restarted"
                time.sleep(0.05)
            survivors = [w for w in wires if is_open(w)]  # the victim's clients lost theirs
            wait_for(
                lambda: summed("wshub_connections", len(survivors), endpoint="hub"),
                5,
                what="the dead worker's connections forgotten",
            )
            assert len(survivors) in {len(group) for group in by_node.values()}
            wait_for(lambda: summed("wshub_deliveries_total", 3 * 16), 5, what="counters kept")
        finally:
            for wire in wires:
                wire.close()
        named = re.search(r"\(metrics in (/\S+)\)", server.log())
        assert named is not None, server.log()
        assert os.path.isdir(named.group(1))
        server.stop()
        assert not os.path.exists(named.group(1))  # the parent removed it

"""The backend HTTP API through real sockets: every endpoint's answer, every
error's status and JSON, and what WebSocket members see of API messages."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import LiveServer, pair_in_room

KEY = "k-live"
OLD_KEY = "k-rotating-out"


@pytest.fixture
def api(make_server: Any) -> LiveServer:
    return make_server(api_keys=(KEY, OLD_KEY), max_message_size=4096)


async def call(
    live: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = KEY,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer); every answer, errors included, must be JSON."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if raw is None and body is not None:
        raw = json.dumps(body).encode()
    response = await AsyncHTTPClient().fetch(
        live.url(path),
        method=method,
        headers=headers,
        body=raw if method == "POST" else None,
        allow_nonstandard_methods=True,
        raise_error=False,
    )
    assert response.headers["Content-Type"].startswith("application/json"), response.body
    return response.code, json.loads(response.body)


def error_of(code: str) -> Any:
    class _Shape:
        def __eq__(self, answer: object) -> bool:
            return (
                isinstance(answer, dict)
                and set(answer) == {"error"}
                and answer["error"]["code"] == code
                and isinstance(answer["error"]["detail"], str)
            )

    return _Shape()


async def test_without_a_key_every_api_path_is_404(live: LiveServer) -> None:
    for method, path in [
        ("POST", "/api/publish"),
        ("GET", "/api/stats"),
        ("GET", "/api/rooms/x"),
        ("GET", "/api/nothing"),
    ]:
        assert await call(live, method, path, {}, key=KEY) == (404, error_of("not_found"))


async def test_the_key_is_checked_first(api: LiveServer) -> None:
    for key in (None, "wrong", KEY + "x"):
        for method, path, raw in [
            ("POST", "/api/publish", b"{not json"),
            ("GET", "/api/publish", None),  # wrong method too
            ("POST", "/api/publish", b"x" * 10_000),  # over the size limit too
            ("GET", "/api/nothing", None),
        ]:
            status, answer = await call(api, method, path, key=key, raw=raw)
            assert (status, answer) == (401, error_of("unauthorized"))
    # Both keys of a rotation are accepted.
    assert (await call(api, "GET", "/api/stats", key=OLD_KEY))[0] == 200


async def test_publish_reaches_members_in_seq_order_with_client_messages(
    api: LiveServer,
) -> None:
    ann, bob = await pair_in_room(api, "r")
    ann.send({"type": "publish", "room": "r", "data": "from ann", "id": 1})
    assert (await ann.expect("message"))["seq"] == 1
    await ann.expect("ack")
    status, answer = await call(api, "POST", "/api/publish", {"room": "r", "data": {"n": 2}})
    epoch = (await api.hub.broker.room_state("r")).epoch
    assert (status, answer) == (200, {"room": "r", "seq": 2, "epoch": epoch})
    ann.send({"type": "publish", "room": "r", "data": "from ann again"})
    await call(api, "POST", "/api/publish", {"room": "r", "data": 4, "from": "billing"})
    seen = [await bob.expect("message") for _ in range(4)]
    assert [m["seq"] for m in seen] == [1, 2, 3, 4]
    assert [m["from"] for m in seen] == ["ann", "server", "ann", "billing"]
    assert seen[0]["client_id"] == ann.client_id
    for api_message in (seen[1], seen[3]):
        assert "user" not in api_message and "client_id" not in api_message
    # Kept in history like any message: the history endpoint has the same frames.
    status, history = await call(api, "GET", "/api/rooms/r/history")
    assert status == 200 and history["messages"] == seen
    assert (history["room"], history["epoch"], history["seq"]) == ("r", epoch, 4)


async def test_ephemeral_api_publish_has_no_seq_and_no_history(api: LiveServer) -> None:
    ann, _ = await pair_in_room(api, "board")
    body = {"room": "board", "data": {"x": 1}, "ephemeral": True}
    assert await call(api, "POST", "/api/publish", body) == (
        200,
        {"room": "board", "ephemeral": True},
    )
    message = await ann.expect("message")
    assert message["ephemeral"] is True and "seq" not in message
    assert (await call(api, "GET", "/api/rooms/board/history"))[1]["messages"] == []


async def test_publish_to_a_personal_room_waits_in_history(api: LiveServer) -> None:
    # Nobody is in user:42 yet: the message is kept, and a join with since=0 gets it.
    status, answer = await call(api, "POST", "/api/publish", {"room": "user:42", "data": "hi"})
    assert status == 200 and answer["seq"] == 1
    client = await api.connect("u42")
    client.send({"type": "join", "room": "user:42", "since": 0, "epoch": answer["epoch"]})
    await client.expect("joined")
    assert (await client.expect("message"))["data"] == "hi"


async def test_broadcast_to_many_rooms(api: LiveServer) -> None:
    ann = await api.connect("ann")
    await ann.join("user:1")
    rooms = [f"user:{n}" for n in range(1, 4)]
    status, answer = await call(api, "POST", "/api/broadcast", {"rooms": rooms, "data": "x"})
    assert status == 200
    assert [(r["room"], r["seq"]) for r in answer["results"]] == [(r, 1) for r in rooms]
    for result in answer["results"]:
        assert result["epoch"] == (await api.hub.broker.room_state(result["room"])).epoch
    assert (await ann.expect("message"))["data"] == "x"


async def test_rooms_biggest_first_and_one_room(api: LiveServer) -> None:
    clients = [await api.connect(f"c{n}") for n in range(3)]
    for client in clients:
        await client.join("big")
    await clients[2].join("small")
    assert await call(api, "GET", "/api/rooms") == (
        200,
        {"rooms": [{"room": "big", "member_count": 3}, {"room": "small", "member_count": 1}]},
    )
    assert (await call(api, "GET", "/api/rooms?limit=1"))[1]["rooms"] == [
        {"room": "big", "member_count": 3}
    ]
    status, room = await call(api, "GET", "/api/rooms/small")
    assert status == 200
    assert room == {
        "room": "small",
        "epoch": (await api.hub.broker.room_state("small")).epoch,
        "seq": 0,
        "member_count": 1,
        "members": [{"client_id": clients[2].client_id, "name": "c2"}],
    }
    assert await call(api, "GET", "/api/rooms/nowhere") == (404, error_of("not_found"))
    assert await call(api, "GET", "/api/rooms/nowhere/history") == (404, error_of("not_found"))


async def test_history_pages_forward(api: LiveServer) -> None:
    for n in range(1, 6):
        await call(api, "POST", "/api/publish", {"room": "h", "data": n})
    status, page = await call(api, "GET", "/api/rooms/h/history?since=1&limit=2")
    assert status == 200 and [m["seq"] for m in page["messages"]] == [2, 3]
    page = (await call(api, "GET", "/api/rooms/h/history?since=3&limit=5000"))[1]
    assert [m["data"] for m in page["messages"]] == [4, 5] and page["seq"] == 5
    assert (await call(api, "GET", "/api/rooms/h/history?since=5"))[1]["messages"] == []
    for query in ("since=-1", "since=x", "limit=0", "limit=two"):
        assert await call(api, "GET", f"/api/rooms/h/history?{query}") == (
            400,
            error_of("bad_request"),
        )


async def test_disconnect_by_client_id_and_by_user(make_server: Any) -> None:
    from hub.auth import TokenVerifier
    from tests.test_tokens import SECRET, mint, welcomed

    live = make_server(api_keys=(KEY,), verifier=TokenVerifier(SECRET))
    a1 = await welcomed(live, mint({"sub": "alice"}))
    a2 = await welcomed(live, mint({"sub": "alice"}))
    bob = await welcomed(live, mint({"sub": "bob"}))
    answer = await call(live, "POST", "/api/disconnect", {"user": "alice"})
    assert answer == (200, {"disconnected": 2})
    for client in (a1, a2):
        assert await client.closed() == (4005, "disconnected by server")
    answer = await call(live, "POST", "/api/disconnect", {"client_id": bob.client_id})
    assert answer == (200, {"disconnected": 1})
    assert await bob.closed() == (4005, "disconnected by server")
    assert await call(live, "POST", "/api/disconnect", {"user": "nobody"}) == (
        200,
        {"disconnected": 0},
    )


async def test_stats_are_the_healthz_numbers(api: LiveServer) -> None:
    await api.connect("ann")
    status, stats = await call(api, "GET", "/api/stats")
    health = json.loads((await AsyncHTTPClient().fetch(api.url("/healthz"))).body)
    assert status == 200 and set(stats) == set(health) | {
        "nodes"
    }  # nodes: every node, shared broker
    assert stats["nodes"] == []  # the memory broker has no other nodes
    assert stats["hub_connections"] == 1 and stats["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/api/publish", b"{not json"),
        ("/api/publish", b"[1]"),
        ("/api/publish", b'{"data": 1}'),
        ("/api/publish", b'{"room": "r"}'),
        ("/api/publish", b'{"room": "bad room", "data": 1}'),
        ("/api/publish", b'{"room": "r", "data": 1, "ephemeral": "yes"}'),
        ("/api/publish", b'{"room": "r", "data": 1, "from": ""}'),
        ("/api/publish", b'{"room": "r", "data": 1e999}'),
        ("/api/publish", b'{"room": "r", "data": NaN}'),
        ("/api/broadcast", b'{"rooms": [], "data": 1}'),
        ("/api/broadcast", b'{"rooms": "r", "data": 1}'),
        ("/api/broadcast", b'{"rooms": ["r", "bad room"], "data": 1}'),
        ("/api/broadcast", b'{"rooms": ["r"]}'),
        ("/api/broadcast", b'{"rooms": ["r"], "data": 1e999}'),
        ("/api/disconnect", b"{}"),
        ("/api/disconnect", b'{"user": "a", "client_id": "b"}'),
        ("/api/disconnect", b'{"user": 5}'),
    ],
)
async def test_bad_input_is_400_and_publishes_nothing(
    api: LiveServer, path: str, raw: bytes
) -> None:
    ann, _ = await pair_in_room(api, "r")
    assert await call(api, "POST", path, raw=raw) == (400, error_of("bad_request"))
    assert (await api.hub.broker.room_state("r")).seq == 0
    assert api.hub.counters.published == 0


async def test_up_to_1000_rooms_in_one_broadcast(make_server: Any) -> None:
    live = make_server(api_keys=(KEY,))
    rooms = [f"r{n}" for n in range(1001)]
    body = {"rooms": rooms, "data": 1}
    assert await call(live, "POST", "/api/broadcast", body) == (400, error_of("bad_request"))
    assert live.hub.counters.published == 0
    status, answer = await call(live, "POST", "/api/broadcast", {**body, "rooms": rooms[:1000]})
    assert status == 200 and len(answer["results"]) == 1000


async def test_body_over_max_message_size_is_413(api: LiveServer) -> None:
    raw = json.dumps({"room": "r", "data": "x" * 5000}).encode()
    assert await call(api, "POST", "/api/publish", raw=raw) == (413, error_of("too_large"))
    assert (await api.hub.broker.room_state("r")) is None
    # Without a Content-Length (chunked), the same answer.
    assert await chunked_post(api, "/api/publish", raw) == 413


async def chunked_post(live: LiveServer, path: str, body: bytes) -> int:
    """Status of a POST whose body comes in chunks, with no Content-Length."""
    import asyncio

    def post() -> int:
        with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
                for i in range(0, len(body), 1000)
            )
            sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
            answer = b""
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
            return int(answer.split()[1])

    return await asyncio.get_running_loop().run_in_executor(None, post)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/publish"), ("POST", "/api/rooms"), ("DELETE", "/api/rooms/r")],
)
async def test_wrong_method_is_405(api: LiveServer, method: str, path: str) -> None:
    assert await call(api, method, path) == (405, error_of("method_not_allowed"))


async def test_unknown_api_path_is_404(api: LiveServer) -> None:
    assert await call(api, "GET", "/api/nothing/here") == (404, error_of("not_found"))


async def test_api_messages_reach_token_users_without_user(make_server: Any) -> None:
    from hub.auth import TokenVerifier
    from tests.test_tokens import SECRET, mint, welcomed

    live = make_server(api_keys=(KEY,), verifier=TokenVerifier(SECRET))
    user = await welcomed(live, mint({"sub": "42", "rooms": ["user:42"], "publish": []}))
    await user.join("user:42")
    await call(live, "POST", "/api/publish", {"room": "user:42", "data": "invoice ready"})
    message = await user.expect("message")
    assert message["from"] == "server" and "user" not in message and "client_id" not in message
    # Read-only: the user itself may not publish there.
    user.send({"type": "publish", "room": "user:42", "data": "spoof", "id": 1})
    assert (await user.expect("error"))["code"] == "forbidden"


def test_413_from_the_real_server_process() -> None:
    """`python server.py` caps bodies at max_message_size in its HTTPServer too:
    the API still answers an over-size body instead of dropping the connection."""
    import urllib.error
    import urllib.request

    from tests.hostile.proc import HubProcess

    with HubProcess(f"--api_key={KEY}", "--max_message_size=1000") as server:
        for size, status in [(500, 200), (2000, 413), (50_000, 413)]:
            body = json.dumps({"room": "r", "data": "x" * size}).encode()
            request = urllib.request.Request(
                server.url("/api/publish"), data=body, headers={"Authorization": f"Bearer {KEY}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    code, answer = response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                code, answer = error.code, json.loads(error.read())
            assert code == status
            assert status == 200 or answer == error_of("too_large")
        assert server.health()["published"] == 1

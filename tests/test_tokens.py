"""Connection tokens through real sockets: every way a token is refused, room
and publish patterns, refresh, expiry while connected, and the ``user`` and
``client_id`` that members and messages carry.

Tokens are minted here with PyJWT, keys generated here with cryptography.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

jwt = pytest.importorskip("jwt", reason="PyJWT is not installed (pip install '.[auth]')")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

from hub.auth import TokenVerifier  # noqa: E402
from tests.support import JsonClient, LiveServer, wait_until  # noqa: E402

SECRET = "test-secret-of-at-least-32-bytes!!"


def mint(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def unsigned(claims: dict[str, Any]) -> str:
    """A token with ``alg: none`` (PyJWT will not mint one for a server that checks)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.fixture
def secured(make_server: Any) -> LiveServer:
    return make_server(verifier=TokenVerifier(SECRET))


async def connect(live: LiveServer, token: str | None, name: str = "nick") -> JsonClient:
    path = f"/ws?name={name}" + (f"&token={token}" if token else "")
    return await JsonClient.open(live.ws_url(path))


async def welcomed(live: LiveServer, token: str, name: str = "nick") -> JsonClient:
    client = await connect(live, token, name)
    welcome = await client.expect("welcome")
    client.client_id = welcome["client_id"]
    client.welcome = welcome  # type: ignore[attr-defined]
    return client


async def refused(client: JsonClient) -> str:
    """The unauthorized error's detail; the server then closes with 4003."""
    error = await client.expect("error")
    assert error["code"] == "unauthorized"
    assert await client.closed() == (4003, "unauthorized")
    return error["detail"]


async def test_a_valid_token_names_the_user_everywhere(secured: LiveServer) -> None:
    ann = await welcomed(secured, mint({"sub": "u1", "name": "Ann"}), name="ignored")
    node = secured.hub.broker.node
    assert ann.welcome == {
        "type": "welcome",
        "client_id": ann.client_id,
        "node": node,
        "user": "u1",
    }
    # The same display name, another user: client_id and user tell them apart.
    twin = await welcomed(secured, mint({"sub": "u2", "name": "Ann"}))
    joined = await ann.join("lobby")
    assert joined["members"] == [{"client_id": ann.client_id, "name": "Ann", "user": "u1"}]
    await twin.join("lobby")
    presence = await ann.expect("presence")
    assert presence["member"] == {"client_id": twin.client_id, "name": "Ann", "user": "u2"}
    twin.send({"type": "publish", "room": "lobby", "data": "hi"})
    message = await ann.expect("message")
    assert (message["from"], message["client_id"], message["user"]) == ("Ann", twin.client_id, "u2")


async def test_bearer_header_works_for_non_browser_clients(secured: LiveServer) -> None:
    token = mint({"sub": "svc"})
    client = await JsonClient.open(
        secured.ws_url("/ws?name=bot"), headers={"Authorization": f"Bearer {token}"}
    )
    welcome = await client.expect("welcome")
    assert welcome["user"] == "svc"
    # Without a name claim, ?name= stays the display name.
    assert (await client.join("r"))["members"][0]["name"] == "bot"


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        (None, "a token is required"),
        ("not-a-jwt", "malformed"),
        (mint({"sub": "u1", "exp": int(time.time()) - 10}), "expired"),
        (mint({"sub": "u1"}, key="another-secret-of-32-bytes-or-more"), "signature"),
        (unsigned({"sub": "u1"}), "signed with HS256"),
        (mint({"name": "nobody"}), '"sub"'),
        (mint({"sub": "u1", "rooms": "lobby"}), '"rooms" must be a list'),
        (mint({"sub": "u1", "publish": ["bad room!"]}), '"publish" must be a list'),
    ],
    ids=["missing", "malformed", "expired", "forged", "alg-none", "no-sub", "rooms", "publish"],
)
async def test_bad_tokens_get_unauthorized_and_4003(
    secured: LiveServer, token: str | None, detail: str
) -> None:
    client = await connect(secured, token)
    assert detail in await refused(client)
    # Nobody is left behind and the server goes on serving others.
    other = await welcomed(secured, mint({"sub": "u9"}))
    assert (await other.join("r"))["seq"] == 0
    assert len(secured.hub.peers) == 1
    assert secured.hub.stats()["rejected_unauthorized"] == 1


async def test_tokens_on_tornados_path_too(make_server: Any) -> None:
    # With compression offered, a deflate client stays on Tornado's protocol.
    live = make_server(verifier=TokenVerifier(SECRET), compression=True)
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(live.ws_url("/ws?token=forged"), compression_options={})
    assert json.loads(await connection.read_message())["code"] == "unauthorized"
    assert await connection.read_message() is None
    assert connection.close_code == 4003
    good = await websocket_connect(
        live.ws_url(f"/ws?token={mint({'sub': 'u1'})}"), compression_options={}
    )
    assert json.loads(await good.read_message())["user"] == "u1"


async def test_audience_and_issuer_are_required_when_configured(make_server: Any) -> None:
    live = make_server(verifier=TokenVerifier(SECRET, audience="chat", issuer="https://app"))
    good = {"sub": "u1", "aud": "chat", "iss": "https://app"}
    await welcomed(live, mint(good))
    for claims, detail in [
        ({**good, "aud": "billing"}, "another audience"),
        ({"sub": "u1", "iss": "https://app"}, '"aud"'),
        ({**good, "iss": "https://evil"}, "another issuer"),
        ({"sub": "u1", "aud": "chat"}, '"iss"'),
    ]:
        assert detail in await refused(await connect(live, mint(claims)))


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
async def test_public_keys_and_no_hs_rs_confusion(make_server: Any, kind: str) -> None:
    if kind == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    pem = public_pem(private)
    live = make_server(verifier=TokenVerifier(public_key_pem=pem))
    assert (await welcomed(live, mint({"sub": "u1"}, private, kind))).welcome["user"] == "u1"
    # The public key is public: an HS256 token "signed" with it must not pass.
    forged = _hmac_token({"sub": "u1"}, pem)
    assert "signed with" in await refused(await connect(live, forged))


def _hmac_token(claims: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: PyJWT refuses to use a PEM key as an HMAC secret."""
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


async def test_room_and_publish_patterns(secured: LiveServer) -> None:
    token = mint({"sub": "42", "rooms": ["user:42", "chat:*"], "publish": ["chat:*"]})
    client = await welcomed(secured, token)
    await client.join("user:42")
    await client.join("chat:general")
    client.send({"type": "join", "room": "user:43", "id": "j1"})
    error = await client.expect("error")
    assert (error["code"], error["id"]) == ("forbidden", "j1")
    client.send({"type": "publish", "room": "user:42", "data": 1, "id": "p1"})
    error = await client.expect("error")
    assert (error["code"], error["id"]) == ("forbidden", "p1")
    client.send({"type": "publish", "room": "chat:general", "data": 2, "id": "p2"})
    assert (await client.expect("message"))["data"] == 2
    assert (await client.expect("ack"))["id"] == "p2"  # the connection stayed open


async def test_publish_patterns_default_to_the_room_patterns(secured: LiveServer) -> None:
    client = await welcomed(secured, mint({"sub": "7", "rooms": ["team:*"]}))
    await client.join("team:a")
    client.send({"type": "publish", "room": "team:a", "data": "ok", "id": 1})
    assert (await client.expect("message"))["data"] == "ok"
    await client.expect("ack")
    client.send({"type": "publish", "room": "other", "data": "no", "id": 2})
    assert (await client.expect("error"))["code"] == "forbidden"


async def test_refresh_same_user_and_its_refusals(make_server: Any) -> None:
    live = make_server(verifier=TokenVerifier(SECRET), ping_interval=0.2, ping_timeout=0.2)
    client = await welcomed(live, mint({"sub": "u1", "exp": int(time.time()) + 1}))
    first_expiry = live.hub.peers[client.client_id].expires_at
    exp = int(time.time()) + 3600
    client.send({"type": "refresh", "token": mint({"sub": "u1", "exp": exp}), "id": "r1"})
    assert await client.expect("refreshed") == {"type": "refreshed", "exp": exp, "id": "r1"}
    for token, detail in [
        (mint({"sub": "u2", "exp": exp}), "another user"),
        (mint({"sub": "u1"}, key="wrong-secret-that-is-32-bytes-long"), "signature"),
    ]:
        client.send({"type": "refresh", "token": token, "id": "r2"})
        error = await client.expect("error")
        assert (error["code"], error["id"]) == ("unauthorized", "r2")
        assert detail in error["detail"]
    # Sweeps (every 0.1 s here) have run past the first token's expiry: the
    # refreshed one is what counts, so the connection is still served.
    await wait_until(lambda: live.hub.clock() > first_expiry + 0.5)
    assert (await client.join("r"))["room"] == "r"
    assert not live.hub.peers[client.client_id].closed


async def test_expiry_while_connected_closes_with_4004(make_server: Any) -> None:
    live = make_server(verifier=TokenVerifier(SECRET), ping_interval=0.2, ping_timeout=0.2)
    # Three seconds of validity: "+1" could be a few milliseconds on a loaded machine
    # (exp is whole seconds) and the token would be refused before its welcome.
    short = await welcomed(live, mint({"sub": "u1", "exp": int(time.time()) + 3}))
    lasting = await welcomed(live, mint({"sub": "u2", "exp": int(time.time()) + 3600}))
    assert short.welcome["exp"] <= time.time() + 3
    error = await short.recv(timeout=8)
    assert (error["type"], error["code"]) == ("error", "token_expired")
    assert await short.closed() == (4004, "token expired")
    assert live.hub.stats()["tokens_expired"] == 1
    assert (await lasting.join("r"))["seq"] == 0


async def test_without_a_key_the_hub_stays_open(live: LiveServer) -> None:
    client = await live.connect("ann")
    client.send({"type": "refresh", "token": mint({"sub": "u1"}), "id": 3})
    error = await client.expect("error")
    assert (error["code"], error["id"]) == ("bad_request", 3)
    joined = await client.join("any-room")
    assert joined["members"] == [{"client_id": client.client_id, "name": "ann"}]


async def test_message_carries_the_senders_client_id(live: LiveServer) -> None:
    # Two users with one display name: client_id says which one spoke.
    first = await live.connect("sam")
    second = await live.connect("sam")
    await first.join("r")
    await second.join("r")
    await first.expect("presence")
    second.send({"type": "publish", "room": "r", "data": "x"})
    for client in (first, second):
        message = await client.expect("message")
        assert message["client_id"] == second.client_id and "user" not in message


async def test_secret_and_public_key_together(make_server: Any) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = public_pem(private)
    live = make_server(verifier=TokenVerifier(SECRET, pem))
    assert (await welcomed(live, mint({"sub": "a"}))).welcome["user"] == "a"
    assert (await welcomed(live, mint({"sub": "b"}, private, "ES256"))).welcome["user"] == "b"
    # HS256 is verified with the secret only, never with the public key.
    assert "signature" in await refused(await connect(live, _hmac_token({"sub": "c"}, pem)))
    # /ws/echo needs no token.
    echo = await live.connect(path="/ws/echo")
    echo.send("ping")
    assert await echo.recv_raw() == "ping"


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read"), (b"junk", "not a PEM public key")],
)
def test_a_bad_public_key_file_stops_start_up_with_one_line(
    tmp_path: Any, content: bytes | None, says: str
) -> None:
    import subprocess
    import sys

    from tests.support import REPO

    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "server.py", "--port=0", f"--token_public_key={path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr

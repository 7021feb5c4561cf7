"""Answering a plain WebSocket upgrade straight off the accepted socket.

Tornado's HTTP/1 path (an ``IOStream``, ``HTTP1ServerConnection``, the request
coroutines, routing, ``RequestHandler._execute``) was about half of a join's
server CPU in a join storm (docs/performance.md). Most upgrades are one small
request that is already in the socket when it is accepted, so `DirectUpgrade`
looks at it with ``MSG_PEEK`` first. A complete, plain upgrade (``GET`` over
HTTP/1.1 to a WebSocket route, version 13, a valid key, no body, no
permessage-deflate offer where compression is on) is answered here: the
handler's own ``prepare()``, ``open()`` and 101 (`handoff.answer_upgrade`),
then the socket goes to a `SocketConnection` on the event loop's transport.

A socket whose request has not arrived at its accept is watched until it is
readable (at most `WAIT_FOR_REQUEST`), then looked at once more; meanwhile it
counts as pending (`handlers.listener`'s caps), and stopping the server closes
it. A request already there by its accept is never pending.

Anything else is left exactly as it was (the peek consumed nothing) for
Tornado, which answers it with its own rules and timeouts: heads split over
several segments, other paths, malformed or unusual heads. So both paths
accept and refuse the same requests; only the cost differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from enum import Enum
from typing import Any

from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.web import Application, HTTPError

from handlers.diagnostics import Diagnostics
from handlers.handoff import adopt, answer_upgrade, plain_upgrade_key, upgrade_refusal
from handlers.tornado_compat import outside_execute

log = logging.getLogger("wshub")

MAX_HEAD = 8192
"""Bytes of a request head looked at; a longer head goes to Tornado's path
(whose ``max_header_size`` bounds it)."""
HEAD_END = b"\r\n\r\n"
WAIT_FOR_REQUEST = 1.0
"""Seconds a socket accepted before its request arrived is watched here; then
(or on its first readable event) Tornado's path takes it, with its own
``idle_connection_timeout`` for the rest of the head."""


class Outcome(Enum):
    """What `DirectUpgrade.try_serve` did with a socket."""

    SERVED = "served"
    """Its upgrade was answered here (or refused, as Tornado would have)."""
    NOT_YET = "not yet"
    """Nothing to read yet: `DirectUpgrade.wait` may watch it."""
    TORNADO = "tornado"
    """Not a request this path serves; untouched."""


Route = tuple[type, dict[str, Any]]
"""A WebSocket handler class and its ``initialize`` arguments."""


class DirectContext:
    """What a request's ``connection.context`` tells Tornado's request object."""

    __slots__ = ("address", "remote_ip", "protocol")

    def __init__(self, address: Any) -> None:
        self.address = address
        # As Tornado's own context: IP families give their address, others none.
        self.remote_ip = address[0] if isinstance(address, tuple) and address else "0.0.0.0"
        self.protocol = "http"


class DirectConnection(httputil.HTTPConnection):
    """The HTTP connection of a request `DirectUpgrade` serves.

    A handler only writes through it when it refuses the upgrade (``send_error``
    after ``prepare()`` raised): the response is sent as it is and the socket
    closed.
    """

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.context = DirectContext(address)
        self.response: list[bytes] = []

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        """The request ends within this call stack: nothing to call back later."""

    def write_headers(  # type: ignore[override]
        self,
        start_line: httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        lines = [f"HTTP/1.1 {start_line.code} {start_line.reason}"]
        lines += [f"{name}: {value}" for name, value in headers.get_all()]
        lines.append("Connection: close")  # this path serves one request per socket
        self.response.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin1"))
        return self.write(chunk or b"")

    def write(self, chunk: bytes) -> asyncio.Future[None]:  # type: ignore[override]
        if chunk:
            self.response.append(chunk)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def finish(self) -> None:
        """Send the refusal (a few hundred bytes: the empty socket buffer takes
        them) and close."""
        with contextlib.suppress(OSError):
            self.sock.send(b"".join(self.response))
        self.sock.close()


def request_head(data: bytes) -> bytes | None:
    """The head of the request at the start of ``data`` (without the blank line),
    when it is complete, uses CRLF line ends only and is a ``GET``; else None."""
    end = data.find(HEAD_END)
    if end < 0 or not data.startswith(b"GET /"):
        return None
    head = data[:end]
    if head.count(b"\n") != head.count(b"\r\n"):
        return None  # a bare LF: Tornado decides where such a head ends
    return head


def parse_request(head: bytes, connection: DirectConnection) -> httputil.HTTPServerRequest | None:
    """Tornado's request object for ``head``, or None where Tornado's parser would
    object, or the request has a body (both are Tornado's to answer)."""
    text = head.decode("latin1")
    first, _, rest = text.partition("\r\n")
    try:
        start_line = httputil.parse_request_start_line(first)
        headers = httputil.HTTPHeaders.parse(rest)
        if "Content-Length" in headers or "Transfer-Encoding" in headers:
            return None
        return httputil.HTTPServerRequest(
            start_line=start_line, headers=headers, connection=connection
        )
    except httputil.HTTPInputError:
        return None


class DirectUpgrade:
    """Serves the plain upgrades to ``routes`` (path -> handler class and arguments)."""

    def __init__(self, application: Application, routes: dict[str, Route]) -> None:
        self.application = application
        self.routes = routes
        self.diagnostics: Diagnostics = application.settings.get("diagnostics") or Diagnostics()
        self.waiting: dict[socket.socket, tuple[object, Callable[[], None]]] = {}
        """Sockets `wait` watches: their timeout and their ``released`` callback."""

    def try_serve(self, sock: socket.socket, address: Any) -> Outcome:
        """Serve ``sock`` if its request is a plain upgrade to a route."""
        try:
            sock.setblocking(False)
            data = sock.recv(MAX_HEAD, socket.MSG_PEEK)
        except BlockingIOError:
            return Outcome.NOT_YET
        except OSError:  # gone already: Tornado's path notices and cleans up
            return Outcome.TORNADO
        head = request_head(data)
        if head is None:
            return Outcome.TORNADO
        path = head[4 : head.find(b" ", 4)].partition(b"?")[0].decode("latin1")
        route = self.routes.get(path)
        if route is None:
            return Outcome.TORNADO
        connection = DirectConnection(sock, address)
        request = parse_request(head, connection)
        if request is None or request.version != "HTTP/1.1" or upgrade_refusal(request):
            return Outcome.TORNADO
        handler_class, kwargs = route
        if not plain_upgrade_key(request, kwargs.get("compression", False)):
            return Outcome.TORNADO
        sock.recv(len(head) + len(HEAD_END))  # the head only: frames behind it stay queued
        self.diagnostics.direct_upgrades += 1
        self._serve(handler_class, kwargs, request, sock)
        return Outcome.SERVED

    def wait(
        self,
        sock: socket.socket,
        address: Any,
        released: Callable[[], None],
        elsewhere: Callable[[socket.socket, Any], None],
    ) -> None:
        """Try ``sock`` again once it is readable. ``released()`` once it is done
        with here (served, or closed by `stop`); ``elsewhere(sock, address)`` when
        it is Tornado's after all (also after `WAIT_FOR_REQUEST` of silence)."""
        io_loop = IOLoop.current()

        def readable(fd: Any, events: int) -> None:
            self._unwatch(sock)
            if self.try_serve(sock, address) is Outcome.SERVED:
                released()
            else:
                elsewhere(sock, address)

        def silent() -> None:
            self._unwatch(sock)
            elsewhere(sock, address)

        io_loop.add_handler(sock, readable, IOLoop.READ)
        self.waiting[sock] = (io_loop.call_later(WAIT_FOR_REQUEST, silent), released)

    def _unwatch(self, sock: socket.socket) -> Callable[[], None]:
        """Stop watching ``sock`` (its handler and its timeout); its ``released``."""
        timeout, released = self.waiting.pop(sock)
        io_loop = IOLoop.current()
        io_loop.remove_handler(sock)
        io_loop.remove_timeout(timeout)  # (nothing to do when it is what fired)
        return released

    def stop(self) -> None:
        """Close the sockets still waiting for their request: the server is going
        away, and an upgrade answered now would miss the shutdown's 1001 (Tornado
        closes its own idle HTTP connections the same way)."""
        for sock in list(self.waiting):
            released = self._unwatch(sock)
            sock.close()
            released()

    def _serve(
        self,
        handler_class: type,
        kwargs: dict[str, Any],
        request: httputil.HTTPServerRequest,
        sock: socket.socket,
    ) -> None:
        """The handler's ``prepare()``, then the 101 and ``open()``; an error answers
        as Tornado would."""
        try:
            handler = outside_execute(handler_class(self.application, request, **kwargs))
        except Exception:
            log.error("direct upgrade failed", exc_info=True)
            sock.close()
            return
        try:
            handler.prepare()
            connection = answer_upgrade(handler)
        except Exception as error:
            if isinstance(error, HTTPError):
                handler.send_error(error.status_code, reason=error.reason)
            else:
                log.error("direct upgrade failed", exc_info=True)
                handler.send_error(500)
            return
        asyncio.ensure_future(adopt(handler, connection, sock, b""))

"""TLS on the listening port: ``https://`` and ``wss://`` with ``--certfile`` and
``--keyfile`` (docs/edge.md, "TLS").

One SSL context serves every socket of the server. Accepted sockets are
wrapped before Tornado reads a byte, and the TLS handshake runs as part of
reading the request's headers, so ``idle_connection_timeout`` bounds it and
``max_pending_connections`` counts it like any request in progress.

A TLS connection is never handed off (`handlers.handoff`): its session lives
in the ``SSLSocket`` that Tornado's ``SSLIOStream`` reads and writes, so its
file descriptor cannot be given to an asyncio transport or to the C helper,
which would write plaintext around the encryption. It stays on Tornado's
stream for its whole life, as a connection that negotiated permessage-deflate
does, under the same limits, heartbeats and slow-consumer bound.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from tornado.iostream import SSLIOStream

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
"""Older versions have known weaknesses; every browser and TLS library of the
last decade speaks 1.2 or 1.3. Ciphers are the stdlib's defaults (OpenSSL's
secure list), which the server does not narrow or widen."""


class TlsConfigError(ValueError):
    """The TLS options cannot work: a start-up error, with what to fix."""


def _encrypted_key() -> str:
    """Called by OpenSSL only for a key that needs a passphrase: the server has
    no way to ask for one (and OpenSSL would otherwise prompt on the terminal)."""
    raise TlsConfigError(
        "the key in --keyfile is encrypted; write it without a passphrase "
        "(openssl pkey -in KEY -out PLAIN_KEY) and keep that file readable only by the server"
    )


def _check_readable(name: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise TlsConfigError(f"--{name}={path} cannot be read: {error.strerror}") from None


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext | None:
    """The server's SSL context from the two options, None when neither is set.

    Raises `TlsConfigError` when only one is set, a file cannot be read, or the
    files are not a PEM certificate chain and its matching private key.
    """
    if not certfile and not keyfile:
        return None
    if not certfile or not keyfile:
        given, missing = ("certfile", "keyfile") if certfile else ("keyfile", "certfile")
        raise TlsConfigError(
            f"--{given} needs --{missing} too: give both (the PEM certificate chain and its "
            "private key) for https:// and wss://, or neither"
        )
    _check_readable("certfile", certfile)
    _check_readable("keyfile", keyfile)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    try:
        context.load_cert_chain(certfile, keyfile, password=_encrypted_key)
    except ssl.SSLError as error:
        detail = error.reason.replace("_", " ").lower() if error.reason else "no PEM block found"
        raise TlsConfigError(
            f"--certfile={certfile} and --keyfile={keyfile} are not a PEM certificate chain "
            f"and its private key ({detail})"
        ) from None
    return context


def wrap_accepted(context: ssl.SSLContext, connection: socket.socket) -> ssl.SSLSocket | None:
    """``connection`` under TLS, its handshake left to the stream's first read;
    None (and closed) when the peer is already gone."""
    try:
        return context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
    except OSError:  # ssl.SSLError included: reset, or closed right after the accept
        connection.close()
        return None


def is_tls_stream(stream: Any) -> bool:
    """Whether ``stream`` (an IOStream) carries TLS, whatever headers claim."""
    return isinstance(stream, SSLIOStream)

"""Certificates made in the test run (trustme): a throw-away CA and a server
certificate for the loopback names, written to PEM files for ``--certfile`` and
``--keyfile``, and the contexts a client uses with and without trusting the CA."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

import trustme

from handlers.tls import server_context

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
"""What the server certificate is valid for: every address the tests connect to."""


@dataclass(frozen=True)
class Certificates:
    """A CA, and the server's certificate chain and key it issued, as files."""

    ca: trustme.CA
    certfile: str
    keyfile: str

    def server_args(self) -> list[str]:
        """The server.py flags that serve TLS with these files."""
        return [f"--certfile={self.certfile}", f"--keyfile={self.keyfile}"]

    def server_context(self) -> ssl.SSLContext:
        context = server_context(self.certfile, self.keyfile)
        assert context is not None
        return context

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts our CA uses (hostname checked, as by default)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def make_certificates(directory: str) -> Certificates:
    """A fresh CA and server certificate, written under ``directory``."""
    ca = trustme.CA()
    issued = ca.issue_cert(*LOOPBACK_NAMES)
    certfile = os.path.join(directory, "server-chain.pem")
    keyfile = os.path.join(directory, "server-key.pem")
    issued.cert_chain_pems[0].write_to_path(certfile)
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(certfile, append=True)
    issued.private_key_pem.write_to_path(keyfile)
    return Certificates(ca, certfile, keyfile)

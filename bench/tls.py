"""TLS for the benchmark: a throw-away CA and server certificate (trustme, from
the ``test`` extra), made once per run, and the client context that trusts it.

Servers of a kind with ``tls`` get ``--certfile``/``--keyfile``; workers and the
publisher open ``wss://`` with `client_context` so that what TLS costs the
server per delivery and per connection is measured beside plain ``ws://``.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchCertificates:
    """PEM files: the server's chain and key, and the CA clients trust."""

    certfile: str
    keyfile: str
    cafile: str

    def server_flags(self) -> list[str]:
        return [f"--certfile={self.certfile}", f"--keyfile={self.keyfile}"]


@functools.cache
def bench_certificates() -> BenchCertificates:
    """Made on first use, in a temporary directory removed with the machine's /tmp."""
    import trustme  # only TLS runs need it

    directory = tempfile.mkdtemp(prefix="bench-tls-")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = BenchCertificates(
        os.path.join(directory, "chain.pem"),
        os.path.join(directory, "key.pem"),
        os.path.join(directory, "ca.pem"),
    )
    issued.cert_chain_pems[0].write_to_path(files.certfile)
    issued.private_key_pem.write_to_path(files.keyfile)
    ca.cert_pem.write_to_path(files.cafile)
    return files


@functools.cache
def client_context(cafile: str) -> ssl.SSLContext:
    """A client context trusting only ``cafile`` (one per process: cached)."""
    return ssl.create_default_context(cafile=cafile)

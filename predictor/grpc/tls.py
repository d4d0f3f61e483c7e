"""TLS on the gRPC port, from the certificate REST serves HTTPS with (--ssl_certfile and
--ssl_keyfile): with a certificate, gRPC speaks only TLS (a plaintext client's handshake
fails); without, only plaintext (h2c). As for REST (Python's `load_cert_chain`), the key is
read from the certificate's file when --ssl_keyfile is not given."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc import aio


class TlsFilesError(ValueError):
    """A certificate or key that cannot be read: the server refuses to start."""


def server_credentials(certfile: str | None, keyfile: str | None) -> grpc.ServerCredentials | None:
    """The credentials for `certfile` and `keyfile` (PEM), or None without a certificate."""
    if not certfile:
        if keyfile:
            raise TlsFilesError("--ssl_keyfile needs --ssl_certfile")
        return None
    try:
        chain, key = Path(certfile).read_bytes(), Path(keyfile or certfile).read_bytes()
    except OSError as e:
        raise TlsFilesError(f"cannot read the TLS certificate or key: {e}") from e
    return grpc.ssl_server_credentials([(key, chain)])


def add_port(server: aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind `address`, over TLS when `credentials` are given; the port bound."""
    port: int = (
        server.add_insecure_port(address)
        if credentials is None
        else server.add_secure_port(address, credentials)
    )
    return port

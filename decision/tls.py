"""TLS on the gRPC port, optional mutual TLS, and the client side for the CLI.

Server: `nba serve --tls-cert server.pem --tls-key server.key` serves TLS
only (no plaintext port); add `--tls-client-ca ca.pem` to require a client
certificate signed by that CA (mutual TLS). Files are PEM, read at start:
rotate certificates by restarting replicas one at a time.

Clients (`nba decide|reward|forget|health`): `--tls-ca ca.pem` (or
NBA_TLS_CA) trusts that CA; `--tls` alone trusts the system roots;
`--tls-cert/--tls-key` (NBA_CLIENT_TLS_CERT/NBA_CLIENT_TLS_KEY) present a client
certificate for mutual TLS; `--tls-server-name` checks the certificate for
another name than the target's host (e.g. connecting by IP; NBA_TLS_SERVER_NAME).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import grpc


class TlsConfigError(ValueError):
    pass


def _pem(path: Path, what: str, marker: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TlsConfigError(f"{what} {path}: {e.strerror or e}") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise TlsConfigError(f"{what} {path}: not a PEM file with a {marker.decode()!r} block")
    return data


def _cert(path: Path, what: str) -> bytes:
    return _pem(path, what, b"CERTIFICATE")


def _key(path: Path, what: str) -> bytes:
    return _pem(path, what, b"PRIVATE KEY")


@dataclass(frozen=True, slots=True)
class ServerTls:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set: mutual TLS, a client certificate is required

    def credentials(self) -> grpc.ServerCredentials:
        cert = _cert(self.cert, "--tls-cert")
        key = _key(self.key, "--tls-key")
        ca = _cert(self.client_ca, "--tls-client-ca") if self.client_ca else None
        # grpc would only fail the handshakes: check the pair now, by the stdlib.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert, self.key, password=lambda: b"")
        except ssl.SSLError as e:
            raise TlsConfigError(f"--tls-key {self.key} does not belong to --tls-cert {self.cert}, or is encrypted "
                                 f"({e.reason or e})") from None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)

    @classmethod
    def from_args(cls, cert: str | None, key: str | None, client_ca: str | None) -> "ServerTls | None":
        if not cert and not key:
            if client_ca:
                raise TlsConfigError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS runs over TLS)")
            return None
        if not (cert and key):
            raise TlsConfigError("--tls-cert and --tls-key go together")
        return cls(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def add_port(server: grpc.aio.Server, address: str, tls: ServerTls | None) -> int:
    """Listen on `address`, with TLS when configured. Returns the port (0: failed)."""
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, tls.credentials())


def peer_identity(context: grpc.aio.ServicerContext) -> str | None:
    """`cert:<common name>` of a mutual-TLS client, None otherwise."""
    try:
        names = context.auth_context().get("x509_common_name") or []
    except Exception:  # no auth context on a plaintext port
        return None
    return "cert:" + names[0].decode(errors="replace") if names else None


# --- client side -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClientTls:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None
    system_roots: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.ca or self.cert or self.system_roots)

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert) != bool(self.key):
            raise TlsConfigError("--tls-cert and --tls-key go together")
        return grpc.ssl_channel_credentials(
            root_certificates=_cert(self.ca, "--tls-ca") if self.ca else None,
            private_key=_key(self.key, "--tls-key") if self.key else None,
            certificate_chain=_cert(self.cert, "--tls-cert") if self.cert else None,
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    @classmethod
    def from_args(cls, args, environ: Mapping[str, str] = os.environ) -> "ClientTls":
        def pick(attr: str, env: str) -> Path | None:
            value = getattr(args, attr, None) or environ.get(env)
            return Path(value) if value else None

        return cls(ca=pick("tls_ca", "NBA_TLS_CA"), cert=pick("tls_cert", "NBA_CLIENT_TLS_CERT"),
                   key=pick("tls_key", "NBA_CLIENT_TLS_KEY"),
                   server_name=getattr(args, "tls_server_name", None) or environ.get("NBA_TLS_SERVER_NAME"),
                   system_roots=bool(getattr(args, "tls", False)))


def channel(target: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A blocking channel to `target`, TLS when configured."""
    if tls is None or not tls.enabled:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, tls.credentials(), options=tls.options())


def aio_channel(target: str, tls: ClientTls | None = None) -> grpc.aio.Channel:
    if tls is None or not tls.enabled:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, tls.credentials(), options=tls.options())


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a bearer token (also over plaintext, for a
    service behind a TLS-terminating proxy; the server warns about it)."""
    return (("authorization", f"Bearer {token}"),) if token else ()

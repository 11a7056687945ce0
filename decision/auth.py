"""Token authentication per calling application, with scopes.

Each calling application (a web front end, the call-center tool, the reward
collector, an operator) has its own bearer token and the scopes it may use:

    decide   DecisionService.Decide
    reward   DecisionService.Reward
    admin    AdminService (ReloadCatalog, Forget) and any method not listed

The health service and server reflection stay open (load balancers and
`grpcurl list` need them without a token).

Tokens file (`nba serve --tokens FILE`, or NBA_TOKENS_FILE), YAML or JSON,
application name -> token and scopes; or the same text in NBA_TOKENS:

    web:
      token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
      scopes: [decide, reward]
    ops:
      token_sha256: ...
      scopes: [admin]

`token_sha256` (hex SHA-256 of the token, what `nba token new` prints) keeps
the secret out of the file; a plain `token:` is accepted for development.
Callers send `authorization: Bearer <token>` metadata. The server keeps
only SHA-256 digests and compares them with `hmac.compare_digest` against
every application's digest (no early exit), so timing reveals neither the
token nor which application matched. Tokens are never logged, and errors
about the file name the application, never the token.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import grpc
import yaml

log = logging.getLogger("nba.auth")

SCOPES = ("decide", "reward", "admin")
METHOD_SCOPES = {
    "/nba.v1.DecisionService/Decide": "decide",
    "/nba.v1.DecisionService/Reward": "reward",
    "/nba.v1.AdminService/ReloadCatalog": "admin",
    "/nba.v1.AdminService/Forget": "admin",
}
# Methods every caller may use without a token.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
MIN_TOKEN_LEN = 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_APP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("nba_caller_app", default=None)


def current_app() -> str | None:
    """Name of the application calling the current RPC (None: auth is off)."""
    return _caller.get()


def required_scope(method: str) -> str | None:
    """The scope a method needs; None for the open ones. Methods nobody
    listed need `admin`: a new RPC is closed until someone decides."""
    if method.startswith(OPEN_PREFIXES):
        return None
    return METHOD_SCOPES.get(method, "admin")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A random token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


class TokenConfigError(ValueError):
    """A tokens file or NBA_TOKENS that cannot be used. The message names the
    source and the application, never a token."""


@dataclass(frozen=True, slots=True)
class Credential:
    app: str
    digest: bytes
    scopes: frozenset[str]


class TokenBook:
    """The applications allowed in, by token digest."""

    def __init__(self, credentials: list[Credential]) -> None:
        if not credentials:
            raise TokenConfigError("no application is defined: nobody could call the service")
        self._credentials = tuple(credentials)

    @property
    def apps(self) -> tuple[str, ...]:
        return tuple(c.app for c in self._credentials)

    def authenticate(self, token: str) -> Credential | None:
        digest = hashlib.sha256(token.encode()).digest()
        match = None
        for c in self._credentials:  # every digest is compared: no early exit
            if hmac.compare_digest(c.digest, digest):
                match = c
        return match

    @classmethod
    def from_mapping(cls, data: Any, source: str) -> "TokenBook":
        if isinstance(data, Mapping) and set(data) == {"apps"}:
            data = data["apps"]
        if not isinstance(data, Mapping):
            raise TokenConfigError(f"{source}: expected a mapping of application name -> {{token_sha256, scopes}}")
        problems: list[str] = []
        creds: list[Credential] = []
        for app, spec in data.items():
            app = str(app)
            where = f"{source}: {app}"
            if not _APP_NAME.match(app):
                problems.append(f"{where}: application names are 1..64 characters of [A-Za-z0-9_.-]")
                continue
            if not isinstance(spec, Mapping):
                problems.append(f"{where}: expected {{token_sha256: <hex>, scopes: [...]}}")
                continue
            unknown = set(spec) - {"token_sha256", "token", "scopes"}
            if unknown:
                problems.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
            has_hash, has_plain = "token_sha256" in spec, "token" in spec
            if has_hash == has_plain:
                problems.append(f"{where}: give exactly one of token_sha256 (preferred) or token")
                continue
            if has_hash:
                hexdigest = str(spec["token_sha256"]).strip().lower()
                if not _HEX64.match(hexdigest):
                    problems.append(f"{where}: token_sha256 must be 64 hex characters")
                    continue
                digest = bytes.fromhex(hexdigest)
            else:
                token = spec["token"]
                if not isinstance(token, str) or len(token) < MIN_TOKEN_LEN:
                    problems.append(f"{where}: token must be a string of at least {MIN_TOKEN_LEN} characters")
                    continue
                digest = hashlib.sha256(token.encode()).digest()
            scopes = spec.get("scopes")
            if isinstance(scopes, str):
                scopes = [s.strip() for s in scopes.split(",")]
            if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
                problems.append(f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}")
                continue
            bad = sorted(set(scopes) - set(SCOPES))
            if bad:
                problems.append(f"{where}: unknown scope(s) {', '.join(bad)} (known: {', '.join(SCOPES)})")
                continue
            creds.append(Credential(app, digest, frozenset(scopes)))
        seen: dict[bytes, str] = {}
        for c in creds:
            if c.digest in seen:
                problems.append(f"{source}: applications {seen[c.digest]} and {c.app} share one token")
            seen[c.digest] = c.app
        if problems:
            raise TokenConfigError("; ".join(problems))
        return cls(creds)

    @classmethod
    def from_text(cls, text: str, source: str) -> "TokenBook":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            # the parser's message may quote the text, hence a token: not shown
            raise TokenConfigError(f"{source}:{where}: not valid YAML/JSON") from None
        return cls.from_mapping(data, source)

    @classmethod
    def load(cls, path: str | Path) -> "TokenBook":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as e:
            raise TokenConfigError(f"{path}: cannot read the tokens file: {getattr(e, 'strerror', None) or e}") \
                from None
        book = cls.from_text(text, str(path))
        if re.search(r"^\s*token\s*:", text, re.MULTILINE) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s holds plain tokens and is readable by other users: chmod 600 it, or use token_sha256",
                        path)
        return book

    @classmethod
    def from_sources(cls, path: str | Path | None = None,
                     environ: Mapping[str, str] = os.environ) -> "TokenBook | None":
        """`--tokens FILE`, else NBA_TOKENS_FILE, else NBA_TOKENS text; None
        when none is given (auth off: plain local mode)."""
        path = path or environ.get("NBA_TOKENS_FILE")
        if path:
            return cls.load(path)
        text = environ.get("NBA_TOKENS")
        if text:
            return cls.from_text(text, "NBA_TOKENS")
        return None


def _bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class _Throttled:
    """At most one log line per reason every `every_s`, with the count of the
    ones not logged (a flood of bad tokens must not flood the log)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.every_s:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        log.warning(message + (f" (and {skipped} more since the last report)" if skipped else ""), *args)


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def deny(request, context):
        await context.abort(code, message)

    # No request deserializer: an unauthenticated payload is never parsed.
    return grpc.unary_unary_rpc_method_handler(deny)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, book: TokenBook) -> None:
        self.book = book
        self._log = _Throttled()
        self._wrapped: dict[tuple[str, str], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        method = details.method
        scope = required_scope(method)
        if scope is None:
            return await continuation(details)
        token = _bearer(details.invocation_metadata)
        cred = self.book.authenticate(token) if token is not None else None
        if cred is None:
            why = "no bearer token" if token is None else "unknown token"
            self._log.warning(f"unauth:{why}", "refused a call to %s: %s", method, why)
            return _deny(grpc.StatusCode.UNAUTHENTICATED,
                         "a valid bearer token is required (metadata `authorization: Bearer <token>`)")
        if scope not in cred.scopes:
            self._log.warning(f"scope:{cred.app}:{method}", "refused a call to %s by app %s: scope %s missing",
                              method, cred.app, scope)
            return _deny(grpc.StatusCode.PERMISSION_DENIED,
                         f"application {cred.app!r} lacks the {scope!r} scope needed for {method}")
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        return self._as_app(method, cred.app, handler)

    def _as_app(self, method: str, app: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler, running with current_app() = app (for the audit)."""
        cached = self._wrapped.get((method, app))
        if cached is not None and cached[0] is handler:
            return cached[1]
        inner = handler.unary_unary

        async def behavior(request, context):
            reset = _caller.set(app)
            try:
                return await inner(request, context)
            finally:
                _caller.reset(reset)

        wrapped = grpc.unary_unary_rpc_method_handler(behavior, request_deserializer=handler.request_deserializer,
                                                      response_serializer=handler.response_serializer)
        self._wrapped[(method, app)] = (handler, wrapped)
        return wrapped

"""A small pipelining client for the request path: one connection, hiredis.

A Decide makes three round trips (profile read, pressure reservation,
decision log) and a Reward two. With redis-py's asyncio client each costs
80-100 µs of CPU in Python (connection pool, command packing, response
callbacks, a stream reader per connection); the same pipeline through a bare
asyncio protocol with hiredis packing and parsing costs 10-15 µs. At a few
hundred decisions per second per core that difference is a quarter of the
service's CPU, so the request path uses this client and everything else
(admin, learner, tools, tests) keeps redis-py.

What it is:

- One connection per client, multiplexed: every caller's commands are
  written as they come and replies are matched in order (Redis answers a
  connection's commands in the order they arrived). No pool, no lock on the
  hot path.
- The subset of redis-py's API that the request path uses, with redis-py's
  reply shapes (``decode_responses=True``): ``pipeline(transaction=...)``
  with hgetall, hset, expire, xadd, zrangebyscore, zrevrangebyscore;
  ``evalsha``, ``eval``, ``hgetall``, ``hset``, ``expire``, ``xadd``,
  ``get``, ``set``, ``execute_command``. The code of the stores runs unchanged on either
  client, and the tests run it on both.
- redis-py's exception classes, so callers' error handling is the same:
  ResponseError (NoScriptError, BusyLoadingError for a server still loading
  its data, ReadOnlyError), ConnectionError when the connection is lost or
  cannot be made, TimeoutError when it cannot be made in time.

Timeouts belong to the caller (decision/store/guard.py runs every call in
a time budget). A caller that gives up leaves its reply to be read and
dropped. When the oldest unanswered command is older than ``stale_s`` (5 s:
a hung server, a half-open socket; not a busy event loop, which can leave
replies unread for a while), the connection is dropped, every waiter gets
ConnectionError, and the next call connects again.

URLs: ``unix://`` and ``redis://`` with user, password and db. Anything
else (``rediss://``, cluster) is served by redis-py: see ``hot_client``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable, Mapping, Sequence

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

_pack = hiredis.pack_command

# Reply errors by their first word, as redis-py maps them.
_ERRORS: dict[str, type[ResponseError]] = {
    "NOSCRIPT": NoScriptError,
    "LOADING": BusyLoadingError,  # a ConnectionError too: the store is not available yet
    "READONLY": ReadOnlyError,
}


def _error(e: ResponseError) -> Exception:
    message = str(e)
    cls = _ERRORS.get(message.split(" ", 1)[0])
    return cls(message) if cls is not None else e


class _Protocol(asyncio.Protocol):
    """Replies in arrival order, handed to the waiter of each written batch."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError, encoding="utf-8", errors="replace")
        # One entry per written batch: [future, replies expected, replies so far, sent at (loop time)]
        self.pending: deque[list] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                self.abort(ConnectionError(f"protocol error from the state store: {e}"))
                return
            if reply is False:
                return
            if not pending:
                self.abort(ConnectionError("the state store sent a reply nobody asked for"))
                return
            entry = pending[0]
            replies = entry[2]
            replies.append(reply)
            if len(replies) == entry[1]:
                pending.popleft()
                future = entry[0]
                if not future.done():  # a caller that gave up (timeout) left it cancelled
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"connection to the state store lost{f': {exc}' if exc else ''}"))

    def fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        pending, self.pending = self.pending, deque()
        for entry in pending:
            if not entry[0].done():
                entry[0].set_exception(self.lost)

    def abort(self, error: Exception) -> None:
        self.fail(error)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    # Concurrent commands share the one connection: callers may send several
    # at once (decision/store/pressure_store.py) without holding more.
    multiplexed = True

    def __init__(self, url: str, *, connect_timeout_s: float = 1.0, stale_s: float = 5.0) -> None:
        options = parse_url(url)
        self.url = url
        self.path: str | None = options.get("path")
        self.host: str = options.get("host") or "localhost"
        self.port: int = int(options.get("port") or 6379)
        self.db = int(options.get("db") or 0)
        self.username, self.password = options.get("username"), options.get("password")
        self.connect_timeout_s = connect_timeout_s
        self.stale_s = stale_s
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future | None = None
        self._closed = False

    # --- connection

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        # shield: one caller timing out must not cancel the others' connect
        return await asyncio.shield(self._connecting)

    def _connected(self, connecting: asyncio.Future) -> None:
        if self._connecting is connecting:
            self._connecting = None
        if not connecting.cancelled():
            connecting.exception()  # retrieved, even when every waiter gave up

    async def _open(self) -> _Protocol:
        if self._closed:
            raise ConnectionError("client closed")
        loop = asyncio.get_running_loop()
        proto: _Protocol | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.path:
                    _, proto = await loop.create_unix_connection(_Protocol, self.path)
                else:
                    _, proto = await loop.create_connection(_Protocol, self.host, self.port)
                hello: list[tuple] = []
                if self.password is not None:
                    hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
                if self.db:
                    hello.append(("SELECT", self.db))
                for reply in (await self._send(proto, hello)) if hello else ():
                    if isinstance(reply, ResponseError):
                        raise ConnectionError(f"the state store refused the connection setup: {reply}")
        except BaseException as e:
            if proto is not None:
                proto.abort(ConnectionError("connection setup failed"))
            if isinstance(e, asyncio.TimeoutError):
                raise TimeoutError(f"connecting to the state store took over {self.connect_timeout_s} s") from e
            if isinstance(e, OSError):
                raise ConnectionError(f"cannot connect to the state store: {e}") from e
            raise
        self._proto = proto
        return proto

    @staticmethod
    def _send(proto: _Protocol, commands: Sequence[Sequence[Any]]) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        payload = b"".join([_pack(tuple(c)) for c in commands])
        proto.pending.append([future, len(commands), [], future.get_loop().time()])
        assert proto.transport is not None
        proto.transport.write(payload)
        return future

    async def execute_raw(self, commands: Sequence[Sequence[Any]]) -> list:
        """Send the commands in one write; their replies, errors included as
        exception objects, in order."""
        proto = self._proto
        if proto is None or proto.lost is not None:
            proto = await self._connect()
        elif proto.pending and proto.pending[0][3] < asyncio.get_running_loop().time() - self.stale_s:
            proto.abort(ConnectionError(f"the state store has not answered for {self.stale_s} s"))
            proto = await self._connect()
        return await self._send(proto, commands)

    def send_now(self, *args: Any) -> "asyncio.Future | None":
        """Write one command before returning, ahead of anything sent later on
        this client, when the connection is up; a future of its reply (an
        error reply raised). None when a connect is needed first."""
        proto = self._proto
        if proto is None or proto.lost is not None:
            return None
        raw = self._send(proto, (args,))
        out = raw.get_loop().create_future()
        raw.add_done_callback(lambda f: copy_outcome(f, out, _only_reply))
        return out

    async def aclose(self) -> None:
        self._closed = True
        if self._proto is not None:
            self._proto.abort(ConnectionError("client closed"))
            self._proto = None

    close = aclose

    # --- redis-py's API, the subset the request path uses

    def pipeline(self, transaction: bool = True) -> "RespPipeline":
        return RespPipeline(self, transaction)

    async def _one(self, args: tuple, callback: Callable[[Any], Any] | None = None) -> Any:
        reply = _only_reply(await self.execute_raw((args,)))
        return callback(reply) if callback is not None else reply

    async def execute_command(self, *args: Any) -> Any:
        return await self._one(args)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self._one(("EVALSHA", sha, numkeys, *keys_and_args))

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self._one(("EVAL", script, numkeys, *keys_and_args))

    async def hgetall(self, name: str) -> dict:
        return await self._one(("HGETALL", name), _pairs)

    async def expire(self, name: str, seconds: int) -> bool:
        return await self._one(("EXPIRE", name, int(seconds)), bool)

    async def get(self, name: str) -> Any:
        return await self._one(("GET", name))

    async def set(self, name: str, value: Any, px: int | None = None) -> Any:
        return await self._one(("SET", name, value, "PX", px) if px else ("SET", name, value), _ok)

    async def hset(self, name: str, key: str | None = None, value: Any = None,
                   mapping: Mapping[str, Any] | None = None) -> int:
        return (await self.pipeline(False).hset(name, key, value, mapping).execute())[0]

    async def xadd(self, name: str, fields: Mapping[str, Any], id: str = "*", maxlen: int | None = None,
                   approximate: bool = True) -> str:
        return (await self.pipeline(False).xadd(name, fields, id, maxlen, approximate).execute())[0]

    async def ping(self) -> bool:
        return await self._one(("PING",), lambda r: r == "PONG")


class RespPipeline:
    """Commands queued, then sent in one write: MULTI/EXEC around them when
    transaction=True. ``execute`` raises the first command error, as
    redis-py does."""

    def __init__(self, client: RespClient, transaction: bool) -> None:
        self.client = client
        self.transaction = transaction
        self.commands: list[tuple] = []
        self.callbacks: list[Callable[[Any], Any] | None] = []

    def _add(self, args: tuple, callback: Callable[[Any], Any] | None = None) -> "RespPipeline":
        self.commands.append(args)
        self.callbacks.append(callback)
        return self

    def __len__(self) -> int:
        return len(self.commands)

    async def execute(self) -> list:
        if not self.commands:
            return []
        if self.transaction:
            replies = await self.client.execute_raw([("MULTI",), *self.commands, ("EXEC",)])
            for r in replies[:-1]:  # MULTI's OK, each QUEUED, or the error that aborts the transaction
                if isinstance(r, ResponseError):
                    raise _error(r)
            replies = replies[-1]
            if replies is None:
                raise ResponseError("transaction discarded")
        else:
            replies = await self.client.execute_raw(self.commands)
        out = []
        for reply, callback in zip(replies, self.callbacks):
            if isinstance(reply, ResponseError):
                raise _error(reply)
            out.append(callback(reply) if callback is not None else reply)
        self.commands, self.callbacks = [], []
        return out

    async def __aenter__(self) -> "RespPipeline":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.commands, self.callbacks = [], []

    def execute_command(self, *args: Any) -> "RespPipeline":
        return self._add(args)

    def hgetall(self, name: str) -> "RespPipeline":
        return self._add(("HGETALL", name), _pairs)

    def hset(self, name: str, key: str | None = None, value: Any = None,
             mapping: Mapping[str, Any] | None = None) -> "RespPipeline":
        args: list[Any] = ["HSET", name]
        if key is not None:
            args += [key, value]
        for k, v in (mapping or {}).items():
            args += [k, v]
        return self._add(tuple(args))

    def expire(self, name: str, seconds: int) -> "RespPipeline":
        return self._add(("EXPIRE", name, int(seconds)), bool)

    def xadd(self, name: str, fields: Mapping[str, Any], id: str = "*", maxlen: int | None = None,
             approximate: bool = True) -> "RespPipeline":
        args: list[Any] = ["XADD", name]
        if maxlen is not None:
            args += ["MAXLEN", "~" if approximate else "=", maxlen]
        args.append(id)
        for k, v in fields.items():
            args += [k, v]
        return self._add(tuple(args))

    def zrangebyscore(self, name: str, min: Any, max: Any, start: int | None = None, num: int | None = None,
                      withscores: bool = False) -> "RespPipeline":
        return self._zrange("ZRANGEBYSCORE", name, min, max, start, num, withscores)

    def zrevrangebyscore(self, name: str, max: Any, min: Any, start: int | None = None, num: int | None = None,
                         withscores: bool = False) -> "RespPipeline":
        return self._zrange("ZREVRANGEBYSCORE", name, max, min, start, num, withscores)

    def _zrange(self, command: str, name: str, a: Any, b: Any, start: int | None, num: int | None,
                withscores: bool) -> "RespPipeline":
        args: list[Any] = [command, name, a, b]
        if withscores:
            args.append("WITHSCORES")
        if start is not None and num is not None:
            args += ["LIMIT", start, num]
        return self._add(tuple(args), _scored if withscores else None)


def copy_outcome(source: asyncio.Future, target: asyncio.Future,
                 result: Callable[[Any], Any] | None = None) -> None:
    """Settle `target` as `source` was settled (for a done-callback); its
    result through `result` first, whose exception settles it too."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
        return
    try:
        e = source.exception()
        if e is None:
            value = source.result() if result is None else result(source.result())
    except Exception as failed:  # noqa: BLE001 - handed to the waiter
        e = failed
    if e is not None:
        target.set_exception(e)
    else:
        target.set_result(value)


def _only_reply(replies: list) -> Any:
    reply = replies[0]
    if isinstance(reply, ResponseError):
        raise _error(reply)
    return reply


def _pairs(reply: list) -> dict:
    it = iter(reply)
    return dict(zip(it, it))


def _scored(reply: list) -> list[tuple[str, float]]:
    it = iter(reply)
    return [(member, float(score)) for member, score in zip(it, it)]


def _ok(reply: Any) -> bool:
    return reply == "OK"


def hot_client(url: str, redis: aioredis.Redis, *, enabled: bool = True) -> Any:
    """The client for the request path: RespClient where it can serve the
    URL, else the redis-py client given (TLS, cluster, or turned off)."""
    scheme = url.split("://", 1)[0].lower()
    if enabled and scheme in ("unix", "redis"):
        return RespClient(url)
    return redis

"""Lua scripts kept next to their Python callers, sent by EVALSHA."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from redis.exceptions import NoScriptError

from decision.store.resp import copy_outcome

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, filename: str) -> "LuaScript":
        source = (_HERE / filename).read_text()
        return cls(filename, source, hashlib.sha1(source.encode()).hexdigest())

    async def __call__(self, redis: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)

    def send(self, redis: Any, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future:
        """Run the script without waiting for it: on a multiplexed client
        that is connected (resp.RespClient.send_now) the call is written
        before this returns, ahead of anything sent later on it, and its
        reply settles the future without a task; otherwise it is sent from a
        task. NOSCRIPT is handled as in __call__."""
        send_now = getattr(redis, "send_now", None)
        first = send_now("EVALSHA", self.sha, len(keys), *keys, *args) if send_now is not None else None
        if first is None:
            return asyncio.ensure_future(self(redis, keys, args))
        out = first.get_loop().create_future()

        def replied(f: asyncio.Future) -> None:
            if not f.cancelled() and isinstance(f.exception(), NoScriptError):  # the server lost it: EVAL, once
                asyncio.ensure_future(redis.eval(self.source, len(keys), *keys, *args)).add_done_callback(
                    lambda g: copy_outcome(g, out))
            else:
                copy_outcome(f, out)

        first.add_done_callback(replied)
        return out

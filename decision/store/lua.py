"""Lua scripts kept next to their Python callers, sent by EVALSHA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from redis.exceptions import NoScriptError

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

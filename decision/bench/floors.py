"""Floor B: the bare Redis read of one profile.

The same pipelined round trip RedisProfileStore.fetch sends for one person
(HGETALL profile, ZREVRANGEBYSCORE events with a limit, ZRANGEBYSCORE
exposures, HGETALL positive rewards), from the same client the service's
request path uses (`hot_client`: the pipelining hiredis client of
decision/store/resp.py for unix:// and redis:// URLs), over the embedded
server's unix socket. The replies are not turned into a Profile:
that parsing is the service's work, and belongs to Decide's figure, not the
floor's.

The load generator drives it open loop like any target (Target(kind="redis")).
"""

from __future__ import annotations

import time

from decision.store import keys
from decision.store.redis_store import EVENT_HORIZON_MS, EXPOSURE_HORIZON_MS, MAX_EVENTS, connect
from decision.store.resp import hot_client


class ProfileRead:
    def __init__(self, url: str) -> None:
        self._fallback = connect(url)
        self.redis = hot_client(url, self._fallback)

    async def read(self, pk: str) -> list:
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.profile(pk))
        pipe.zrevrangebyscore(keys.events(pk), "+inf", now_ms - EVENT_HORIZON_MS,
                              start=0, num=MAX_EVENTS, withscores=True)
        pipe.zrangebyscore(keys.exposures(pk), now_ms - EXPOSURE_HORIZON_MS, "+inf", withscores=True)
        pipe.hgetall(keys.positive_rewards(pk))
        return await pipe.execute()

    async def close(self) -> None:
        if self.redis is not self._fallback:
            await self.redis.aclose()
        await self._fallback.aclose()

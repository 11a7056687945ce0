"""What the bench itself reads from and writes to Redis, between steps:
people, memory figures, the decision log. Each call opens and closes its own
client, through the service's `connect`."""

from __future__ import annotations

import asyncio
import time

from decision.bench import population


def run_async(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _client(url: str):
    from decision.store.redis_store import connect

    return connect(url, timeout_s=60)  # a bulk write of 500 people can take a while on a busy machine


def load(url: str, start: int, stop: int, seed: int) -> dict:
    """Write people start..stop-1 (pipelined); the time it took and what
    Redis's used_memory grew by, per person."""
    async def go() -> dict:
        redis = _client(url)
        try:
            before = (await redis.info("memory"))["used_memory"]
            t0 = time.monotonic()
            await population.load_bulk(redis, start, stop, int(time.time() * 1000), seed)
            load_s = time.monotonic() - t0
            after = (await redis.info("memory"))["used_memory"]
        finally:
            await redis.aclose()
        n = stop - start
        return {"loaded": n, "load_s": load_s, "profiles_per_s": n / load_s if load_s else None,
                "used_memory_before": before, "used_memory_after": after,
                "bytes_per_profile": (after - before) / n if n else None}

    return run_async(go())


def used_memory(url: str) -> int:
    async def go() -> int:
        redis = _client(url)
        try:
            return (await redis.info("memory"))["used_memory"]
        finally:
            await redis.aclose()

    return run_async(go())


_BACKGROUND = ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")


def settle(url: str, timeout_s: float = 300.0) -> float:
    """Wait until the server has no append-only-file rewrite or snapshot
    running or scheduled (a bulk load triggers them: a fork, then gigabytes
    written, on the Redis core that the sweeps' other servers share).
    Returns the time waited."""
    async def go() -> float:
        redis = _client(url)
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < timeout_s:
                info = await redis.info("persistence")
                if not any(int(info.get(k) or 0) for k in _BACKGROUND):
                    break
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()
        return time.monotonic() - t0

    return run_async(go())


def recent_decisions(url: str, placement: str, count: int) -> list:
    """The newest `count` logged decisions (DecisionRecord) of `placement`,
    read with the service's own log reader, newest first."""
    from decision.logs import Logs

    async def go() -> list:
        redis = _client(url)
        try:
            rows = await Logs(redis).read_decisions(count)
        finally:
            await redis.aclose()
        return [r for r in rows if r.placement == placement]

    return run_async(go())

"""Every Redis call of a request runs inside a time budget, in a span.

A call that fails or overruns raises StoreUnavailable; the pipeline and the
reward path turn that into a degraded answer, never into an error the caller
did not cause.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.exceptions

from decision import metrics
from decision.errors import StoreUnavailable
from decision.tracing import span

STORE_ERRORS = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (server restarting)
    redis.exceptions.TimeoutError,
    asyncio.TimeoutError,
    OSError,
)


@contextlib.asynccontextmanager
async def store_call(op: str, budget_s: float):
    with span(f"redis {op}", {"db.system": "redis", "db.operation": op}):
        try:
            async with asyncio.timeout(budget_s):
                yield
        except STORE_ERRORS as e:
            kind = "timeout" if isinstance(e, (asyncio.TimeoutError, redis.exceptions.TimeoutError)) else "error"
            metrics.REDIS_ERRORS.add(1, {"op": op, "kind": kind})
            raise StoreUnavailable(f"state store unavailable during {op} ({kind})") from e

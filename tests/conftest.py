"""Shared fixtures: a real Redis-compatible server (the same embedded binary
the service runs) and, in tests/e2e, a real gRPC server on a local port."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import pytest_asyncio

from decision.store.embedded import EmbeddedRedis
from decision.store.redis_store import connect

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def redis_server():
    """One private server for the whole run (unix socket, no persistence)."""
    with tempfile.TemporaryDirectory(prefix="nba-test-redis-") as tmp:
        server = EmbeddedRedis(Path(tmp), appendonly=False).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest_asyncio.fixture
async def redis(redis_url):
    """An asyncio client on an empty database."""
    client = connect(redis_url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def sync_redis(redis_url):
    import redis as redis_sync

    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    try:
        yield client
    finally:
        client.close()

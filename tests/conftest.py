"""Shared fixtures: a real Redis-compatible server (the same embedded binary
the service runs) and, in tests/e2e, a real gRPC server on a local port."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import pytest_asyncio

from decision.store.embedded import EmbeddedRedis
from decision.store.redis_store import connect
from tests.helpers import EXAMPLES



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


@pytest.fixture
def catalog_file(tmp_path):
    """The experimenters' synthetic catalog (decision/experiments/synthetic.py) on disk."""
    from decision.experiments.synthetic import CATALOG

    p = tmp_path / "catalog.yaml"
    p.write_text(CATALOG)
    return p


@pytest_asyncio.fixture
async def service(redis, redis_url, tmp_path):
    """A real service (tests/e2e/conftest.py start_service) on the example
    catalog (a private copy, so tests may edit it), a flushed Redis, the
    example profiles loaded, a manual clock, and a private spool directory."""
    import shutil

    from decision.clock import ManualClock
    from tests.e2e.conftest import start_service

    catalog = tmp_path / "catalog.yaml"
    shutil.copy(EXAMPLES / "catalog.yaml", catalog)
    clock = ManualClock(ms=1_795_017_600_000)  # 2026-11-18 16:00 UTC: daytime in New York and Europe
    svc = await start_service(redis_url, catalog, clock, spool_dir=tmp_path / "spool")
    await svc.load_profiles()
    try:
        yield svc
    finally:
        await svc.channel.close()
        await svc.app.stop()

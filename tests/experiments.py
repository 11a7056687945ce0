"""Shared by the experimenters' tests (export, ope, report): synthetic logs
written to Redis, and the `nba` CLI run on them (the synthetic catalog file
is the `catalog_file` fixture of tests/conftest.py)."""

from __future__ import annotations

import asyncio

from decision.cli import main
from decision.experiments.synthetic import write_logs
from decision.store.redis_store import connect


def write(redis_url: str, logs) -> None:
    async def go():
        client = connect(redis_url)
        try:
            await write_logs(client, logs)
        finally:
            await client.aclose()

    asyncio.run(go())


def nba(redis_url, catalog_file, *args):
    return main([*args, "--redis-url", redis_url, "--catalog", str(catalog_file)])

"""Faults survived with nothing lost: the real Redis server killed and
restarted under load, and the service itself restarted under load."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from decision.bench.procs import free_port
from decision.clock import SystemClock
from decision.logs import Logs
from decision.nba.v1 import decision_pb2 as pb
from decision.nba.v1 import decision_pb2_grpc as pb_grpc
from decision.server import App, Settings
from decision.store import keys
from decision.store.embedded import EmbeddedRedis
from tests.e2e.conftest import decide_request
from tests.helpers import ROOT

CATALOG = ROOT / "tests" / "data" / "pressure_catalog.yaml"
SERVING = health_pb2.HealthCheckResponse.SERVING


class Load:
    """Closed-loop clients: Decide, then a Reward (sometimes sent twice, as a
    retrying caller would) for what was served. Every call must be answered."""

    def __init__(self, stub: pb_grpc.DecisionServiceStub, serving: asyncio.Event | None = None) -> None:
        self.stub = stub
        # Set while the service says SERVING, for clients that honour health
        # the way a load balancer does.
        self.serving = serving
        self.answered = 0
        self.failures: list[str] = []
        self.degraded = 0
        self.acked_events: set[str] = set()
        self.served: list[tuple[str, str]] = []  # (person key, decision id) of each item reserved for a person
        self.deferred = 0
        self.stop = asyncio.Event()

    async def client(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            if self.serving is not None:
                await self.serving.wait()
            try:
                person = f"cookie:c{n}-{i % 5}"
                resp = await self.stub.Decide(decide_request("capped_spot", person), timeout=5,
                                              wait_for_ready=True)
                self.answered += 1
                self.degraded += resp.degraded
                if resp.items and not resp.fallback:
                    self.served.append((person, resp.decision_id))
                if resp.decision_id and resp.items:
                    event_id = uuid.uuid4().hex
                    req = pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id=event_id)
                    for _ in range(1 + (i % 3 == 0)):  # every third reward is sent twice
                        ack = await self.stub.Reward(req, timeout=5, wait_for_ready=True)
                        self.answered += 1
                        self.deferred += ack.deferred
                    self.acked_events.add(event_id)
            except grpc.aio.AioRpcError as e:
                self.failures.append(f"{e.code().name}: {e.details()}")
            await asyncio.sleep(0.005)


async def _wait_until(predicate, timeout: float, step: float = 0.05) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(step)
    raise AssertionError("condition not reached in time")


async def _rewards_in_log(redis) -> Counter:
    rows = await redis.xrange(keys.REWARD_STREAM)
    from decision.records import RewardRecord

    return Counter(RewardRecord.from_json(f["r"]).event_id for _, f in rows)


@pytest.mark.slow
async def test_redis_killed_and_restarted_under_load(tmp_path: Path):
    server = EmbeddedRedis(tmp_path / "redis", appendfsync="always").start()
    port = free_port()
    app = await App(Settings(port=port, catalog=CATALOG, redis_url=server.url, spool_dir=tmp_path / "spool",
                             health_poll_s=0.2, redis_budget_s=0.05), clock=SystemClock()).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    load = Load(pb_grpc.DecisionServiceStub(channel))
    clients = [asyncio.create_task(load.client(n)) for n in range(6)]
    try:
        await asyncio.sleep(1.0)
        server.kill()  # SIGKILL: no goodbye
        await _wait_until(lambda: _not_serving(health), timeout=5)
        await asyncio.sleep(1.0)  # decisions and rewards keep coming while it is down
        server = EmbeddedRedis(tmp_path / "redis", appendfsync="always").start()
        back_after = await _wait_until(lambda: _serving(health), timeout=5)
        await asyncio.sleep(1.0)
    finally:
        load.stop.set()
        await asyncio.gather(*clients)
    try:
        assert load.failures == []
        assert load.degraded > 0 and load.deferred > 0, "the outage was not exercised"
        assert back_after <= 2.0
        await _wait_until(lambda: _drained(app), timeout=10)
        counts = await _rewards_in_log(app.redis)
        assert set(counts) == load.acked_events  # none lost
        assert max(counts.values()) == 1  # none counted twice
        # every item served counts against the person's pressure, including
        # those answered before their reservation was written (the lease's
        # fast path) whose reservation the kill cut off: spooled, replayed
        assert len(load.served) > 0
        missing = [d for pk, d in load.served if not any(
            m.startswith(d + "|") for m in await app.redis.zrange(keys.exposures(pk), 0, -1))]
        assert missing == []
    finally:
        await channel.close()
        await app.stop()
        server.stop()


@pytest.mark.slow
async def test_service_restarted_gracefully_under_load(tmp_path: Path, redis, redis_url):
    port = free_port()

    def settings() -> Settings:
        return Settings(port=port, catalog=CATALOG, redis_url=redis_url, spool_dir=tmp_path / "spool",
                        health_poll_s=0.2, grace_s=5, drain_s=0.5)

    app = await App(settings(), clock=SystemClock()).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=FAST_RECONNECT)
    serving = asyncio.Event()
    watcher = asyncio.create_task(_watch_health(health_pb2_grpc.HealthStub(channel), serving))
    load = Load(pb_grpc.DecisionServiceStub(channel), serving)
    clients = [asyncio.create_task(load.client(n)) for n in range(6)]
    try:
        await asyncio.sleep(1.0)
        answered_before = load.answered
        await app.stop()  # what SIGTERM does: NOT_SERVING, drain, finish in-flight calls, flush, close
        app = await App(settings(), clock=SystemClock()).start()
        await _wait_until(lambda: _answered_more(load, answered_before), timeout=10)
    finally:
        load.stop.set()
        serving.set()
        await asyncio.gather(*clients)
        watcher.cancel()
    try:
        assert load.failures == []
        # a reward deferred to the spool (Redis slower than its budget on a
        # busy machine) is counted once the spool is replayed
        await _wait_until(lambda: _drained(app), timeout=10)
        counts = await _rewards_in_log(app.redis)
        assert set(counts) == load.acked_events and max(counts.values()) == 1
    finally:
        await channel.close()
        await app.stop()


FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 500)]


async def _answered_more(load: Load, before: int) -> bool:
    return load.answered > before + 50


async def _watch_health(health, serving: asyncio.Event) -> None:
    """The standard health Watch stream, as a load balancer uses it."""
    while True:
        try:
            async for status in health.Watch(health_pb2.HealthCheckRequest(), wait_for_ready=True):
                if status.status == SERVING:
                    serving.set()
                else:
                    serving.clear()
        except grpc.aio.AioRpcError:
            serving.clear()
        await asyncio.sleep(0.05)


async def _serving(health) -> bool:
    try:
        return (await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)).status == SERVING
    except grpc.aio.AioRpcError:
        return False


async def _not_serving(health) -> bool:
    return not await _serving(health)


async def _drained(app: App) -> bool:
    return app.spool.pending() == 0

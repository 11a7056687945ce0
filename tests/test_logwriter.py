"""Decision log rows written after the answer (decision/logwriter.py), on a
real Redis server: batched, never lost, waited for by Reward, drained at stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest_asyncio

from decision.feature_tables import TablePublisher
from decision.logs import Logs
from decision.logwriter import DecisionLogWriter, Pending
from decision.records import DecisionRecord
from decision.server import load
from decision.spool import Spool
from decision.store import keys
from decision.store.resp import RespClient
from tests.helpers import EXAMPLES

NOW = 1_795_017_600_000
CATALOG = load(EXAMPLES / "catalog.yaml")


def record(n: int) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"01LOGWRITER{n:05d}", ts_ms=NOW + n, placement="home_hero", arm="champion", policy="vw",
        model_version="m1", catalog_version=CATALOG.version, person="ps:abc", anonymous=False,
        assignment="person", context={"page": "home"}, actions=(), items=(), fallback=True,
        request_id=f"r-{n}", join_window_s=3600, default_reward=0.0)


def pending(n: int, build=None) -> Pending:
    r = record(n)
    return Pending(r.decision_id, CATALOG, build or (lambda: r), f"pid:p{n}", [("fallback_offer", 1)])


@pytest_asyncio.fixture
async def resp(redis_url):
    client = RespClient(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def writer(client, spool: Spool | None = None, **kw) -> DecisionLogWriter:
    logs = Logs(client)
    return DecisionLogWriter(logs, TablePublisher(client, logs.config), spool, **kw)


async def test_rows_queued_together_go_in_one_transaction(redis, resp):
    w = writer(resp)
    for n in range(5):
        w.submit(pending(n))
    assert w.pending() == 5 and w.holds(record(3).decision_id)
    await w.drain()
    assert (w.batches, w.written, w.pending()) == (1, 5, 0)
    rows = await Logs(redis).read_decisions(10)
    assert sorted(rows, key=lambda r: r.decision_id) == [record(n) for n in range(5)]
    stored = await redis.hgetall(keys.decision(record(2).decision_id))
    assert stored["pk"] == "pid:p2" and stored["items"] == '[{"offer":"fallback_offer","rank":1}]'
    assert 3600 < await redis.ttl(keys.decision(record(2).decision_id)) <= 3600 + 86_400
    # the catalog version's feature table, which the rows reference, went first
    assert await redis.exists(keys.catalog_actions(CATALOG.version))


async def test_rows_over_the_batch_limit_wait_for_the_next_batch(redis, resp):
    w = writer(resp, max_batch=2)
    for n in range(5):
        w.submit(pending(n))
    await w.drain()
    assert (w.batches, w.written) == (3, 5)
    assert len(await Logs(redis).read_decisions(10)) == 5


async def test_rows_submitted_during_a_write_follow_in_the_next_batch(redis, resp):
    w = writer(resp)
    w.submit(pending(0))
    await asyncio.sleep(0)  # the first batch is on the wire
    w.submit(pending(1))
    w.submit(pending(2))
    await w.landed(record(2).decision_id)
    assert await redis.exists(keys.decision(record(2).decision_id))
    await w.drain()
    assert (w.batches, w.written) == (2, 3)


async def test_landed_returns_once_the_row_is_in_redis(redis, resp):
    w = writer(resp)
    w.submit(pending(7))
    assert not await redis.exists(keys.decision(record(7).decision_id))
    await w.landed(record(7).decision_id)
    assert await redis.exists(keys.decision(record(7).decision_id))
    assert not w.holds(record(7).decision_id)
    await w.landed("not-queued-here")  # returns at once


async def test_rows_redis_does_not_take_go_to_the_spool(tmp_path: Path):
    dead = RespClient(f"unix://{tmp_path}/no-server.sock", connect_timeout_s=0.2)
    spool = Spool(tmp_path / "spool")
    w = writer(dead, spool)
    for n in range(3):
        w.submit(pending(n))
    await w.landed(record(1).decision_id)
    await w.drain()
    assert (w.written, w.spooled, w.lost) == (0, 3, 0)
    assert spool.pending() == 3 and {record(n).decision_id for n in range(3)} <= spool.decision_ids

    # ... and the spool's replay writes them as the writer would have
    replayed: list[str] = []

    async def replay(r: DecisionRecord, person_key: str, served) -> bool:
        replayed.append(r.decision_id)
        return True

    await spool.replay(replay, lambda event: asyncio.sleep(0), lambda *exposure: asyncio.sleep(0))
    assert replayed == [record(n).decision_id for n in range(3)]


async def test_without_a_spool_lost_rows_are_counted(tmp_path: Path):
    dead = RespClient(f"unix://{tmp_path}/no-server.sock", connect_timeout_s=0.2)
    w = writer(dead, None)
    w.submit(pending(0))
    w.submit(pending(1))
    await w.drain()
    assert (w.written, w.spooled, w.lost, w.pending()) == (0, 0, 2, 0)


async def test_a_record_that_cannot_be_built_loses_only_itself(redis, resp):
    def broken() -> DecisionRecord:
        raise RuntimeError("a bug")

    w = writer(resp)
    w.submit(pending(0))
    w.submit(pending(1, build=broken))
    w.submit(pending(2))
    await w.drain()
    assert (w.written, w.lost) == (2, 1)
    assert {r.decision_id for r in await Logs(redis).read_decisions(10)} == {record(0).decision_id,
                                                                            record(2).decision_id}


async def test_stopping_the_service_writes_the_rows_of_its_last_answers(redis, redis_url, tmp_path: Path):
    import shutil

    from decision.clock import ManualClock
    from tests.e2e.conftest import start_service

    catalog = tmp_path / "catalog.yaml"
    shutil.copy(EXAMPLES / "catalog.yaml", catalog)
    svc = await start_service(redis_url, catalog, ManualClock(ms=NOW), spool_dir=tmp_path / "spool",
                              drain_s=0.1, grace_s=5)
    try:
        await svc.load_profiles()
        answers = await asyncio.gather(*(svc.decide("home_hero", f"pid:{who}") for who in ("tom", "ana", "zoe")))
        # Writes held up past the drain period (yet within the write budget): stop waits for the last row.
        await redis.execute_command("CLIENT", "PAUSE", 700, "WRITE")
        svc.app.decider.log_writer.submit(pending(99))
    finally:
        await svc.channel.close()
        await svc.app.stop()  # no drain() here: stop must do it
    logged = {r.decision_id for r in await Logs(redis).read_decisions(10)}
    assert logged == {a.decision_id for a in answers} | {record(99).decision_id}
    assert svc.app.spool.pending() == 0


async def test_a_reward_sent_before_its_decision_row_landed_waits_for_it(redis, redis_url, tmp_path: Path):
    import shutil

    from decision.clock import ManualClock
    from decision.nba.v1 import decision_pb2 as pb
    from tests.e2e.conftest import start_service

    catalog = tmp_path / "catalog.yaml"
    shutil.copy(EXAMPLES / "catalog.yaml", catalog)
    # redis-py's pooled client: the Reward's read does not queue behind the
    # paused write on one connection, as it would on the pipelining client.
    svc = await start_service(redis_url, catalog, ManualClock(ms=NOW), spool_dir=tmp_path / "spool",
                              fast_redis=False)
    try:
        # The row is held up (writes paused); the Reward arrives first.
        await redis.execute_command("CLIENT", "PAUSE", 150, "WRITE")
        from dataclasses import replace

        from decision.ids import new_decision_id

        row = replace(record(5), decision_id=new_decision_id(NOW))
        svc.app.decider.log_writer.submit(
            Pending(row.decision_id, svc.app.holder.catalog, lambda: row, "pid:tom", [("brand_message", 1)]))
        assert svc.app.decider.log_writer.holds(row.decision_id)
        ack = await svc.stub.Reward(pb.RewardRequest(decision_id=row.decision_id, event_type="click",
                                                     event_id="e-before-row"))
    finally:
        await svc.channel.close()
        await svc.app.stop()
    assert not ack.deferred and not ack.duplicate and ack.reward == 1.0
    assert [r.event_id for r in await Logs(redis).read_rewards(10)] == ["e-before-row"]


async def test_a_reward_for_a_young_decision_of_another_process_looks_again(redis, resp):
    """Workers of `nba serve --workers` share Redis, not their queues: a
    Reward reaching another worker before the row is written looks again."""
    from dataclasses import replace

    import pytest

    from decision import errors
    from decision.clock import ManualClock
    from decision.domain import RewardEvent
    from decision.ids import issued_ms, new_decision_id
    from decision.rewards import Rewards

    rewards = Rewards(resp, Logs(resp), ManualClock(ms=NOW))  # no log writer: the row is another's
    young = new_decision_id(NOW)
    assert issued_ms(young) == NOW

    async def row_written_late() -> None:
        await asyncio.sleep(0.01)
        await Logs(redis).write_decision(replace(record(6), decision_id=young), "pid:tom", [("brand_message", 1)])

    late = asyncio.create_task(row_written_late())
    ack = await rewards.accept(CATALOG, RewardEvent(young, "", "click", "e-late-row"))
    await late
    assert ack.reward == 1.0 and not ack.deferred

    old = new_decision_id(NOW - 60_000)  # a minute old: not looked for again
    assert not rewards._young(old) and rewards._young(young)
    with pytest.raises(errors.NotFound):
        await rewards.accept(CATALOG, RewardEvent(old, "", "click", "e-old"))

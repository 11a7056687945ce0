"""The right to be forgotten, end to end: real gRPC, real Redis.

After Forget, no key and no log row of the person (or of any identity linked
to them) remains, other people are untouched, and an audit entry without the
raw id says who asked, when and why.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from decision import cli
from decision.clock import ManualClock
from decision.forget import ForgetOrder, Forgetter, is_forgotten
from decision.logs import LogConfig
from decision.nba.v1 import decision_pb2 as pb
from decision.store import keys
from tests.e2e.conftest import decide_request, identity

SARAH = ("pid:sarah", "cookie:sarah-web-1", "device:sarah-iphone", "crm:C-1001")


async def _all_keys(redis) -> list[str]:
    return sorted([k async for k in redis.scan_iter(count=1000)])


async def _rows(redis, stream: str) -> list[tuple[str, str]]:
    return [(i, f.get("r", "")) for i, f in await redis.xrange(stream)]


async def _decide_and_reward(service, placement: str, who: str, request_id: str, event: str) -> str:
    resp = await service.stub.Decide(decide_request(placement, who, request_id=request_id,
                                                    count=1))
    assert resp.decision_id
    await service.stub.Reward(pb.RewardRequest(decision_id=resp.decision_id, offer_id=resp.items[0].offer_id,
                                               event_type=event, event_id=f"ev-{request_id}"))
    return resp.decision_id


async def _history(service) -> tuple[list[str], list[str]]:
    """Decisions and rewards for Sarah (through three of her identities) and
    for Tom; the request ids carry the raw ids, as careless callers do."""
    sarah = [
        await _decide_and_reward(service, "outbound_daily", "pid:sarah", "req-sarah-1", "click"),
        await _decide_and_reward(service, "home_hero", "pid:sarah", "req-sarah-2", "click"),
        await _decide_and_reward(service, "home_hero", "cookie:sarah-web-1", "req-sarah-3", "dismiss"),
        await _decide_and_reward(service, "callcenter_next", "crm:C-1001", "req-sarah-4", "accept"),
    ]
    tom = [
        await _decide_and_reward(service, "home_hero", "pid:tom", "req-tom-1", "click"),
        await _decide_and_reward(service, "home_hero", "device:tom-tv", "req-tom-2", "click"),
    ]
    return sarah, tom


async def test_forget_removes_every_key_and_log_row_of_the_person(service):
    redis = service.app.redis
    sarah, tom = await _history(service)
    # an identity linked by an upstream writer that also keeps the reverse index
    await redis.hset(keys.profile("session:sarah-visit"), keys.LINK, "pid:sarah")
    await redis.sadd(keys.identities("pid:sarah"), "session:sarah-visit")
    pseudonyms = {service.app.decider.pseudonymizer.person(pk) for pk in SARAH + ("session:sarah-visit",)}
    decision_rows_before = await _rows(redis, keys.DECISION_STREAM)
    assert any("req-sarah" in r for _, r in decision_rows_before)

    # forgetting by her CRM id (an identity linked to her profile) forgets all of her
    resp = await service.admin.Forget(pb.ForgetRequest(identity=identity("crm:C-1001"), reason="ticket DSR-42"))

    assert resp.identities == 5
    assert resp.decisions == len(sarah)
    assert resp.decision_log_rows == len(sarah) and resp.reward_log_rows == len(sarah)
    assert resp.keys_deleted >= 5 + 2 * len(sarah)
    assert resp.pseudonym == service.app.decider.pseudonymizer.person("pid:sarah")

    # no key of hers remains: no profile, link, event, counter, index, pending join
    remaining = await _all_keys(redis)
    for pk in SARAH + ("session:sarah-visit",):
        assert not [k for k in remaining if k.startswith(keys.profile(pk))], pk
    for d in sarah:
        assert not await redis.exists(keys.decision(d), keys.decision_events(d))
    assert not [k for k in remaining if "sarah" in k or "C-1001" in k]

    # no log row of hers remains, by pseudonym, decision id or raw id
    decision_rows = await _rows(redis, keys.DECISION_STREAM)
    reward_rows = await _rows(redis, keys.REWARD_STREAM)
    assert len(decision_rows) == len(tom) and len(reward_rows) == len(tom)
    for _, raw in decision_rows:
        assert json.loads(raw)["person"] not in pseudonyms
    for _, raw in decision_rows + reward_rows:
        assert "sarah" not in raw and not any(d in raw for d in sarah)

    # Tom is untouched: his profile, links, pending joins and rows
    assert await redis.exists(keys.profile("pid:tom"), keys.profile("device:tom-tv")) == 2
    for d in tom:
        assert await redis.exists(keys.decision(d))
    again = await service.stub.Decide(decide_request("home_hero", "pid:tom"))
    assert again.decision_id

    # the audit entry: who, when, why, the pseudonym and counts; no raw id
    ((audit_id, fields),) = await redis.xrange(keys.AUDIT_STREAM)
    assert audit_id == resp.audit_id
    entry = json.loads(fields["r"])
    assert entry["action"] == "forget" and entry["reason"] == "ticket DSR-42"
    assert entry["app"] == "unauthenticated (token auth off)"
    assert entry["ts_ms"] == service.clock.now_ms()
    assert entry["pseudonym"] == resp.pseudonym and entry["identities"] == 5
    assert entry["decision_log_rows"] == len(sarah)
    assert "sarah" not in fields["r"] and "C-1001" not in fields["r"]
    # tombstones, so that rows spooled earlier and replayed later are dropped
    assert all([await is_forgotten(redis, p) for p in pseudonyms])


async def test_forget_is_idempotent_and_audited_every_time(service):
    await _history(service)
    first = await service.admin.Forget(pb.ForgetRequest(person_key="pid:sarah", reason="DSR-1"))
    second = await service.admin.Forget(pb.ForgetRequest(person_key="pid:sarah", reason="DSR-1 retry"))
    assert first.keys_deleted > 0
    assert (second.keys_deleted, second.decisions, second.decision_log_rows, second.reward_log_rows) == (0, 0, 0, 0)
    assert second.pseudonym == first.pseudonym
    assert await service.app.redis.xlen(keys.AUDIT_STREAM) == 2


async def test_an_unknown_person_is_forgotten_without_error(service):
    resp = await service.admin.Forget(pb.ForgetRequest(person_key="pid:nobody", reason="DSR-7"))
    assert (resp.identities, resp.keys_deleted, resp.decision_log_rows) == (1, 0, 0)
    assert await service.app.redis.exists(keys.profile("pid:sarah"))


async def test_links_written_without_the_reverse_index_need_the_keyspace_scan(service):
    redis = service.app.redis
    # an upstream writer set `link` by hand and did not maintain {p:<pk>}:ids
    await redis.hset(keys.profile("cookie:sarah-old"), mapping={keys.LINK: "pid:sarah", "a:theme": "dark"})
    plain = await service.admin.Forget(pb.ForgetRequest(person_key="pid:sarah", reason="DSR-2"))
    assert plain.identities == 4
    assert await redis.exists(keys.profile("cookie:sarah-old"))  # the documented limit

    scanned = await service.admin.Forget(pb.ForgetRequest(person_key="pid:sarah", reason="DSR-2 scan",
                                                          scan_keyspace=True))
    assert scanned.identities == 2 and scanned.keys_deleted == 1
    assert not await redis.exists(keys.profile("cookie:sarah-old"))


async def test_the_keyspace_scan_also_finds_pending_joins_without_exposures(service):
    redis = service.app.redis
    resp = await service.stub.Decide(decide_request("home_hero", "pid:sarah"))
    # the exposure and the log row are gone (trimmed), the pending join is not
    await redis.delete(keys.exposures("pid:sarah"), keys.DECISION_STREAM)
    plain = await service.admin.Forget(pb.ForgetRequest(person_key="pid:marco", reason="other person"))
    assert plain.decisions == 0
    await service.admin.Forget(pb.ForgetRequest(person_key="pid:sarah", reason="DSR-3"))
    assert await redis.exists(keys.decision(resp.decision_id))
    scanned = await service.admin.Forget(pb.ForgetRequest(person_key="pid:sarah", reason="DSR-3 scan",
                                                          scan_keyspace=True))
    assert scanned.decisions == 1
    assert not await redis.exists(keys.decision(resp.decision_id))


@pytest.mark.parametrize("request_, field", [
    (pb.ForgetRequest(person_key="pid:sarah"), "reason"),
    (pb.ForgetRequest(person_key="pid:sarah", reason="x" * 257), "reason"),
    (pb.ForgetRequest(person_key="pid:sarah", reason="line\nbreak"), "reason"),
    (pb.ForgetRequest(reason="DSR"), "identity"),
    (pb.ForgetRequest(person_key="sarah", reason="DSR"), "person_key"),
    (pb.ForgetRequest(person_key="pid:", reason="DSR"), "person_key"),
    (pb.ForgetRequest(person_key="pid:a b", reason="DSR"), "person_key"),
    (pb.ForgetRequest(person_key="{p:x}:ids", reason="DSR"), "person_key"),
    (pb.ForgetRequest(identity=pb.Identity(type=0, id="sarah"), reason="DSR"), "identity.type"),
])
async def test_a_bad_forget_request_names_the_field(service, request_, field):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await service.admin.Forget(request_)
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(field + ":")
    assert await service.app.redis.exists(keys.profile("pid:sarah"))
    assert not await service.app.redis.exists(keys.AUDIT_STREAM)


async def test_a_broken_identity_graph_is_refused_and_nothing_is_deleted(redis):
    from decision.privacy import Pseudonymizer

    for i in range(5):
        await redis.hset(keys.profile(f"cookie:c{i}"), keys.LINK, "device:shared")
        await redis.sadd(keys.identities("device:shared"), f"cookie:c{i}")
    forgetter = Forgetter(redis, Pseudonymizer(b"k"), ManualClock(ms=1_795_017_600_000), LogConfig(),
                          max_identities=3)
    from decision import errors

    with pytest.raises(errors.FailedPrecondition):
        await forgetter.forget(ForgetOrder("cookie:c0", "DSR"), caller="ops")
    assert await redis.exists(*[keys.profile(f"cookie:c{i}") for i in range(5)]) == 5
    assert not await redis.exists(keys.AUDIT_STREAM)


async def test_nba_forget_command(service, capsys):
    await _history(service)
    target = f"127.0.0.1:{service.app.port}"
    code = await asyncio.to_thread(cli.main, ["forget", "crm:C-1001", "--reason", "DSR-9", "--target", target])
    out = capsys.readouterr().out
    assert code == 0
    assert "forgot 4 identities" in out and "audit" in out
    assert not await service.app.redis.exists(keys.profile("pid:sarah"))
    code = await asyncio.to_thread(cli.main, ["forget", "crm:C-1001", "--target", target])
    assert code == 2  # a reason is required


async def test_nba_forget_direct_without_a_server(redis, redis_url, capsys, monkeypatch):
    from decision.store.redis_store import ProfileWriter, ProfileDocument

    monkeypatch.setenv("NBA_PSEUDONYM_KEY", "test-key")
    writer = ProfileWriter(redis)
    await writer.write(ProfileDocument("pid:ada", {"age": 40}, {}, {}, ("cookie:ada-1",), ()))
    code = await asyncio.to_thread(cli.main, ["forget", "pid:ada", "--reason", "DSR-10", "--direct",
                                              "--redis-url", redis_url])
    assert code == 0, capsys.readouterr()
    assert not await redis.exists(keys.profile("pid:ada"), keys.profile("cookie:ada-1"), keys.identities("pid:ada"))
    ((_, fields),) = await redis.xrange(keys.AUDIT_STREAM)
    assert json.loads(fields["r"])["app"].startswith("cli:")


# --- log retention ---------------------------------------------------------------

async def test_log_rows_older_than_the_retention_are_deleted(redis):
    """Retention is enforced exactly, also on a stream of a few rows (an
    approximate XTRIM only drops whole stream nodes of ~100 entries)."""
    from decision.logs import Logs

    day = 86_400_000
    config = LogConfig(retention_ms=7 * day)
    logs = Logs(redis, config)
    now = 1_795_017_600_000
    for age_days in (30, 10, 8, 6, 1):
        await redis.xadd(keys.DECISION_STREAM, {"r": "{}"}, id=f"{now - age_days * day}-0")
        await redis.xadd(keys.REWARD_STREAM, {"r": "{}"}, id=f"{now - age_days * day}-0")
    await logs.trim_by_age(now)
    for stream in (keys.DECISION_STREAM, keys.REWARD_STREAM):
        ids = [int(i.split("-")[0]) for i, _ in await redis.xrange(stream)]
        assert ids == [now - 6 * day, now - 1 * day], stream

"""The core service end to end: real gRPC on a local port, real Redis."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from decision.logs import Logs
from decision.nba.v1 import decision_pb2 as pb
from decision.records import DecisionRecord
from decision.store import keys
from tests.e2e.conftest import decide_request


async def _code(coro) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await coro
    return exc.value.code(), exc.value.details()


async def test_decide_returns_an_item_with_its_probability_and_logs_it(service):
    resp = await service.decide("home_hero", "pid:tom", context={"page": "home", "device": "desktop"})
    assert resp.decision_id and resp.logged
    assert len(resp.items) == 1
    item = resp.items[0]
    assert item.offer_id and item.content_id and item.channel in ("web", "app")
    assert 0 < item.probability <= 1 and item.rank == 1
    assert resp.arm and resp.policy and resp.model_version

    (record,) = await Logs(service.app.redis).read_decisions(1)
    assert isinstance(record, DecisionRecord)
    assert record.decision_id == resp.decision_id and record.placement == "home_hero"
    assert record.arm == resp.arm and record.policy == resp.policy
    chosen = record.actions[record.items[0].action]
    assert (chosen.offer_id, chosen.content_id, chosen.channel) == (item.offer_id, item.content_id, item.channel)
    assert record.items[0].probability == pytest.approx(item.probability)
    assert sum(a.probability for a in record.actions) == pytest.approx(1.0)
    # data minimisation: the person is a keyed hash, never the raw id
    assert "tom" not in record.to_json()
    assert len(record.person) == 32


async def test_several_items_are_distinct_offers(service):
    resp = await service.decide("callcenter_next", "crm:C-1001", count=3)
    offers = [i.offer_id for i in resp.items]
    assert len(offers) == len(set(offers)) >= 1
    assert [i.rank for i in resp.items] == list(range(1, len(offers) + 1))


async def test_reward_is_logged_once_per_event_id(service):
    resp = await service.decide("home_hero", "pid:tom")
    req = pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id="ev-1")
    first = await service.stub.Reward(req)
    again = await service.stub.Reward(req)
    assert not first.duplicate and again.duplicate
    assert first.reward == again.reward == 1.0
    rewards = await Logs(service.app.redis).read_rewards(10)
    assert [r.event_id for r in rewards] == ["ev-1"]
    assert rewards[0].offer_id == resp.items[0].offer_id and rewards[0].arm == resp.arm


async def test_concurrent_duplicate_rewards_count_once(service):
    resp = await service.decide("home_hero", "pid:tom")
    req = pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id="same")
    acks = await asyncio.gather(*(service.stub.Reward(req) for _ in range(20)))
    assert sum(not a.duplicate for a in acks) == 1
    assert len(await Logs(service.app.redis).read_rewards(100)) == 1


async def test_dry_run_reserves_and_logs_nothing(service):
    resp = await service.decide("home_hero", "pid:tom", dry_run=True)
    assert resp.items and not resp.logged and not resp.decision_id
    assert await service.app.redis.xlen(keys.DECISION_STREAM) == 0
    assert await service.app.redis.zcard(keys.exposures("pid:tom")) == 0


async def test_explain_lists_every_candidate(service):
    resp = await service.decide("home_hero", "pid:tom", explain=True)
    catalog = service.app.holder.catalog
    assert len(resp.explanations) == len(catalog.candidates["home_hero"])
    chosen = [e for e in resp.explanations if e.outcome == pb.OUTCOME_CHOSEN]
    assert [(e.offer_id, e.content_id) for e in chosen] == [(resp.items[0].offer_id, resp.items[0].content_id)]
    for e in resp.explanations:
        assert e.stage and e.rule
    assert any("identity" in n for n in resp.notes)


async def test_fallback_when_nothing_is_allowed(service):
    # The caller restricts to a channel none of whose candidates survive:
    # julia refuses push and sms, so the outbound placement has nothing.
    resp = await service.decide("outbound_daily", "pid:julia", channels=["push"], explain=True)
    assert resp.fallback or resp.items == [] or all(i.channel == "push" for i in resp.items)


@pytest.mark.parametrize(
    "request_, code, field",
    [
        (pb.DecideRequest(identity=pb.Identity(type=pb.IDENTITY_TYPE_PROFILE, id="tom")),
         grpc.StatusCode.INVALID_ARGUMENT, "placement"),
        (pb.DecideRequest(placement="home_hero"), grpc.StatusCode.INVALID_ARGUMENT, "identity"),
        (pb.DecideRequest(placement="home_hero", identity=pb.Identity(id="tom")),
         grpc.StatusCode.INVALID_ARGUMENT, "identity.type"),
        (pb.DecideRequest(placement="home_hero", identity=pb.Identity(type=pb.IDENTITY_TYPE_PROFILE, id="a b")),
         grpc.StatusCode.INVALID_ARGUMENT, "identity.id"),
        (pb.DecideRequest(placement="nowhere", identity=pb.Identity(type=pb.IDENTITY_TYPE_PROFILE, id="tom")),
         grpc.StatusCode.NOT_FOUND, "placement"),
        (decide_request("home_hero", "pid:tom", context={f"k{i}": i for i in range(65)}),
         grpc.StatusCode.INVALID_ARGUMENT, "context"),
        (decide_request("home_hero", "pid:tom", context={"bad key!": "x"}), grpc.StatusCode.INVALID_ARGUMENT, "context"),
        (decide_request("home_hero", "pid:tom", context={"ratio": float("nan")}),
         grpc.StatusCode.INVALID_ARGUMENT, "context[ratio]"),
        (decide_request("home_hero", "pid:tom", context={"page": "x" * 1000}),
         grpc.StatusCode.INVALID_ARGUMENT, "context[page]"),
        (decide_request("home_hero", "pid:tom", channels=["fax"]), grpc.StatusCode.INVALID_ARGUMENT, "channels"),
        (decide_request("home_hero", "pid:tom", count=500), grpc.StatusCode.INVALID_ARGUMENT, "count"),
        (decide_request("home_hero", "pid:tom", as_of=__import__("google.protobuf.timestamp_pb2").protobuf
                        .timestamp_pb2.Timestamp(seconds=1_795_000_000)),
         grpc.StatusCode.INVALID_ARGUMENT, "as_of"),
    ],
)
async def test_bad_decide_input_names_the_field_and_changes_nothing(service, request_, code, field):
    got, details = await _code(service.stub.Decide(request_))
    assert got == code
    assert details.startswith(field), details
    assert await service.app.redis.xlen(keys.DECISION_STREAM) == 0


async def test_bad_reward_input(service):
    resp = await service.decide("callcenter_next", "pid:tom", count=2)
    missing = "0" * 26
    cases = [
        (pb.RewardRequest(decision_id=missing, event_type="click", event_id="e"), grpc.StatusCode.NOT_FOUND, "decision_id"),
        (pb.RewardRequest(decision_id="nope", event_type="click", event_id="e"), grpc.StatusCode.INVALID_ARGUMENT, "decision_id"),
        (pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id=""),
         grpc.StatusCode.INVALID_ARGUMENT, "event_id"),
        (pb.RewardRequest(decision_id=resp.decision_id, event_type="Click!", event_id="e"),
         grpc.StatusCode.INVALID_ARGUMENT, "event_type"),
        (pb.RewardRequest(decision_id=resp.decision_id, event_type="teleport", event_id="e",
                          offer_id=resp.items[0].offer_id), grpc.StatusCode.INVALID_ARGUMENT, "event_type"),
        (pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id="e", offer_id="not_in_it"),
         grpc.StatusCode.INVALID_ARGUMENT, "offer_id"),
        (pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id="e", value=float("inf"),
                          offer_id=resp.items[0].offer_id), grpc.StatusCode.INVALID_ARGUMENT, "value"),
    ]
    if len(resp.items) > 1:
        cases.append((pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id="e"),
                      grpc.StatusCode.INVALID_ARGUMENT, "offer_id"))
    for req, code, field in cases:
        got, details = await _code(service.stub.Reward(req))
        assert (got, details.split(":")[0]) == (code, field), details
    assert await service.app.redis.xlen(keys.REWARD_STREAM) == 0


async def test_reward_of_a_dry_run_is_not_found(service):
    resp = await service.decide("home_hero", "pid:tom", dry_run=True)
    assert not resp.decision_id


async def test_health_and_reflection(service):
    status = await service.health.Check(health_pb2.HealthCheckRequest(service=""))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    status = await service.health.Check(health_pb2.HealthCheckRequest(service="nba.v1.DecisionService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(service.channel)

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in stub.ServerReflectionInfo(requests()):
        names = {s.name for s in reply.list_services_response.service}
        assert {"nba.v1.DecisionService", "nba.v1.AdminService", "grpc.health.v1.Health"} <= names
        break


async def test_broken_catalog_is_refused_and_the_old_one_stays(service):
    before = service.app.holder.catalog.version
    good = service.catalog_path.read_text()
    service.catalog_path.write_text(good.replace("placements:", "placements:\n  - id: broken\n    channels: [fax]\n", 1))
    result = await service.admin.ReloadCatalog(pb.ReloadCatalogRequest())
    assert not result.reloaded and result.catalog_version == before
    assert any("catalog.yaml:" in e and "fax" in e for e in result.errors), result.errors
    resp = await service.decide("home_hero", "pid:tom")  # still serving with the old catalog
    assert resp.items


async def test_catalog_reloads_on_change_without_dropping_requests(service):
    before = service.app.holder.catalog.version
    stop = asyncio.Event()
    failures: list[Exception] = []
    served = 0

    async def load():
        nonlocal served
        while not stop.is_set():
            try:
                await service.decide("home_hero", f"cookie:{uuid.uuid4().hex[:8]}")
                served += 1
            except Exception as e:  # noqa: BLE001 - counted, asserted below
                failures.append(e)

    tasks = [asyncio.create_task(load()) for _ in range(4)]
    await asyncio.sleep(0.2)
    service.catalog_path.write_text(service.catalog_path.read_text() + "\n# edited\n")
    for _ in range(100):
        await asyncio.sleep(0.05)
        if service.app.holder.catalog.version != before:
            break
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    assert service.app.holder.catalog.version != before
    assert failures == [] and served > 0

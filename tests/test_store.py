"""The Redis profile store and writer against a real server."""

from __future__ import annotations

import json

import pytest

from decision.domain import Event
from decision.profiles_file import ProfileFileError, parse_line, read_profiles
from decision.store import keys
from decision.store.redis_store import (
    ProfileDocument,
    ProfileWriter,
    RedisProfileStore,
    parse_value,
)
from tests.helpers import EXAMPLES

NOW = 1_780_000_000_000


def test_attribute_values_read_as_json_else_string():
    assert parse_value("33") == 33
    assert parse_value("0.82") == 0.82
    assert parse_value("true") is True
    assert parse_value("US") == "US"
    assert parse_value('"02134"') == "02134"
    assert parse_value('["a","b"]') == ("a", "b")
    assert parse_value("{not json") == "{not json"


async def test_write_then_fetch_round_trips(redis):
    doc = ProfileDocument(
        key="pid:1",
        attributes={"age": 33, "country": "US", "zip": "02134", "vip": True},
        segments={"paying_user": NOW - 1000},
        consent={"marketing": "granted", "channel:email": "denied"},
        links=("cookie:c1",),
        events=(Event("purchase", NOW - 5000, "P1", "store", 49.0), Event("app_open", NOW - 1000)),
    )
    await ProfileWriter(redis).write(doc)
    store = RedisProfileStore(redis)
    person, cookie = await store.fetch(("pid:1", "cookie:c1"), NOW)
    assert person.found and person.attributes == {"age": 33, "country": "US", "zip": "02134", "vip": True}
    assert person.segments == {"paying_user": NOW - 1000}
    assert person.consent == {"marketing": "granted", "channel:email": "denied"}
    assert [e.type for e in person.events] == ["purchase", "app_open"]  # oldest first
    assert person.events[0].item == "P1" and person.events[0].value == 49.0
    assert cookie.link == "pid:1"


async def test_fetch_is_one_person_one_slot(redis):
    """Every key of one person carries the same hash tag."""
    tags = {k[k.index("{"): k.index("}") + 1] for k in keys.person_keys("pid:42")}
    assert tags == {"{p:pid:42}"}


async def test_events_outside_horizon_are_not_read(redis):
    writer = ProfileWriter(redis)
    old = Event("purchase", NOW - 40 * 86_400_000)
    await writer.write(ProfileDocument("pid:2", {}, {}, {}, (), (old, Event("click", NOW - 10))))
    (p,) = await RedisProfileStore(redis).fetch(("pid:2",), NOW)
    assert [e.type for e in p.events] == ["click"]


async def test_malformed_upstream_event_is_skipped_not_fatal(redis):
    await redis.zadd(keys.events("pid:3"), {"not json": NOW - 1, json.dumps({"type": "ok"}): NOW - 2})
    (p,) = await RedisProfileStore(redis).fetch(("pid:3",), NOW)
    assert [e.type for e in p.events] == ["ok"]


async def test_unknown_person_is_empty_not_an_error(redis):
    (p,) = await RedisProfileStore(redis).fetch(("cookie:nobody",), NOW)
    assert not p.found and p.attributes == {} and p.link is None


async def test_rewriting_a_profile_keeps_service_counters(redis):
    await redis.zadd(keys.exposures("pid:4"), {"D1|offer|email": NOW - 100})
    await ProfileWriter(redis).write(ProfileDocument("pid:4", {"age": 1}, {}, {}, (), ()))
    (p,) = await RedisProfileStore(redis).fetch(("pid:4",), NOW)
    assert len(p.exposures) == 1 and p.exposures[0].offer_id == "offer"


def test_example_profiles_parse():
    docs = list(read_profiles(EXAMPLES / "profiles.jsonl", NOW))
    keys_ = {d.key for d in docs}
    assert {"pid:sarah", "pid:marco", "cookie:anon-1"} <= keys_
    marco = next(d for d in docs if d.key == "pid:marco")
    assert any(e.type == "purchase" and e.channel == "store" for e in marco.events)


@pytest.mark.parametrize(
    "line, message",
    [
        ({"id": "sarah"}, "id: expected a person key"),
        ({"id": "pid:1", "atributes": {}}, "unknown field(s) atributes"),
        ({"id": "pid:1", "events": [{"type": "x", "ago": "soon"}]}, "events[0].ago"),
        ({"id": "pid:1", "links": ["nope"]}, "links"),
    ],
)
def test_profile_file_errors_name_the_field(line, message):
    with pytest.raises(ProfileFileError, match=r"f\.jsonl:7: .*" ) as exc:
        parse_line(line, NOW, "f.jsonl:7")
    assert message in str(exc.value)


def test_the_embedded_server_keeps_log_rows_and_decision_keys_compact(redis_server, sync_redis):
    """Its settings (decision/store/embedded.py, measured in docs/OPERATIONS.md):
    stream nodes of 16 KB, and decision keys with a hashed e-mail person key
    and two items still a listpack."""
    from decision.store import embedded

    assert sync_redis.config_get("stream-node-max-bytes") == {"stream-node-max-bytes": str(embedded.STREAM_NODE_MAX_BYTES)}
    key = keys.decision("01KAB000000000000000000000")
    sync_redis.hset(key, mapping={"placement": "product_banner", "arm": "champion", "policy": "vw_value",
                                  "pk": "email:" + "ab" * 32, "ts": 1763900000000, "window": 1800,
                                  "items": json.dumps([{"offer": "premium_upgrade", "rank": 1},
                                                       {"offer": "family_plan", "rank": 2}])})
    assert sync_redis.object("encoding", key) == "listpack"


async def test_a_burst_beyond_the_pool_waits_for_a_connection(redis_url):
    """More concurrent calls than connections: they queue for one (within the
    client's timeout) instead of failing, which on the request path would be
    degraded answers."""
    import asyncio

    from decision.store.redis_store import connect

    client = connect(redis_url, max_connections=4)
    try:
        await client.set("burst", "x")
        replies = await asyncio.gather(*(client.get("burst") for _ in range(200)))
    finally:
        await client.aclose()
    assert replies == ["x"] * 200

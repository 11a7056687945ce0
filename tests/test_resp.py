"""The request path's client (decision/store/resp.py) against a real server:
the same replies as redis-py for what the stores use, the stores' own code
running on it, errors as redis-py raises them, and connections that recover."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
import redis.exceptions as rx

from decision.domain import Event
from decision.logs import Logs
from decision.records import DecisionRecord
from decision.store import keys
from decision.store.lua import LuaScript
from decision.store.redis_store import ProfileDocument, ProfileWriter, RedisProfileStore
from decision.store.resp import RespClient, hot_client

NOW = 1_795_017_600_000


@pytest_asyncio.fixture
async def resp(redis, redis_url):
    client = RespClient(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_replies_have_redis_py_shapes(redis, resp):
    await redis.hset("h", mapping={"a": "1", "b": "x y"})
    await redis.zadd("z", {"m1": 1.5, "m2": 2, "m3": 3})
    for client in (redis, resp):
        p = client.pipeline(transaction=False)
        p.hgetall("h")
        p.hgetall("missing")
        p.zrangebyscore("z", 1, "+inf", withscores=True)
        p.zrevrangebyscore("z", "+inf", 0, start=0, num=2, withscores=True)
        p.zrangebyscore("z", "-inf", "+inf")
        p.expire("h", 100)
        p.expire("missing", 100)
        assert await p.execute() == [{"a": "1", "b": "x y"}, {}, [("m1", 1.5), ("m2", 2.0), ("m3", 3.0)],
                                     [("m3", 3.0), ("m2", 2.0)], ["m1", "m2", "m3"], True, False]
    assert await resp.hgetall("h") == await redis.hgetall("h")
    assert await resp.set("k", "v", px=10_000) is True and await resp.get("k") == "v"
    assert await resp.execute_command("STRLEN", "k") == 1
    assert await resp.hset("h2", mapping={"f": 1}) == 1 and await redis.hget("h2", "f") == "1"
    assert await resp.ping() is True


async def test_transaction_and_stream_entries(redis, resp):
    p = resp.pipeline(transaction=True)
    p.hset("d", mapping={"a": "1", "n": 2})
    p.expire("d", 60)
    p.xadd("s", {"r": "é"}, maxlen=1000, approximate=True)
    count, expired, entry_id = await p.execute()
    assert (count, expired) == (2, True) and entry_id.count("-") == 1
    assert await redis.xrange("s") == [(entry_id, {"r": "é"})]
    assert 0 < await redis.ttl("d") <= 60


async def test_command_errors_raise_redis_py_exceptions(redis, resp):
    await redis.set("str", "x")
    with pytest.raises(rx.ResponseError, match="WRONGTYPE"):
        await resp.hgetall("str")
    p = resp.pipeline(transaction=True)
    p.hset("ok", mapping={"a": 1})
    p.execute_command("NOSUCHCOMMAND")
    with pytest.raises(rx.ResponseError):
        await p.execute()
    assert await redis.exists("ok") == 0  # the transaction was discarded as a whole
    with pytest.raises(rx.NoScriptError):
        await resp.evalsha("0" * 40, 0)
    # the connection is still good after errors
    assert await resp.get("str") == "x"


async def test_lua_scripts_load_themselves_on_either_client(redis, resp):
    script = LuaScript("t.lua", "return {KEYS[1], ARGV[1], 7}", "")
    script = LuaScript("t.lua", script.source, __import__("hashlib").sha1(script.source.encode()).hexdigest())
    await redis.script_flush()
    assert await script(resp, ["k"], ["a"]) == ["k", "a", 7]  # NOSCRIPT -> EVAL
    assert await script(resp, ["k"], ["b"]) == ["k", "b", 7]  # now cached: EVALSHA


async def test_profile_store_reads_the_same_profile_on_both_clients(redis, resp):
    doc = ProfileDocument(
        key="p:42", attributes={"tier": "gold", "age": 41, "tags": ["a", "b"], "vip": True},
        segments={"churn_risk": NOW - 1000}, consent={"marketing": "granted", "email": "denied"}, links=(),
        events=(Event("view", NOW - 5000, item="x", channel="web"), Event("buy", NOW - 2000, value=9.5)))
    await ProfileWriter(redis).write(doc)
    await redis.zadd(keys.events("p:42"), {"{not json": NOW - 10})  # malformed upstream event: skipped
    slow = await RedisProfileStore(redis).fetch(["p:42", "p:none"], NOW)
    fast = await RedisProfileStore(resp).fetch(["p:42", "p:none"], NOW)
    assert fast == slow
    assert fast[0].attributes["tags"] == ("a", "b") and len(fast[0].events) == 2 and not fast[1].found


async def test_decision_log_written_by_the_fast_client_reads_back(redis, resp):
    record = DecisionRecord(
        decision_id="01TESTDECISION", ts_ms=NOW, placement="home_hero", arm="champion", policy="vw",
        model_version="m1", catalog_version="c1", person="ps:abc", anonymous=False, assignment="person",
        context={"page": "home"}, actions=(), items=(), fallback=True, request_id="r-1",
        join_window_s=3600, default_reward=0.0)
    await Logs(resp).write_decision(record, "p:42", [("fallback_offer", 1)])
    logs = Logs(redis)
    assert (await logs.read_decisions(1))[0] == record
    stored = await redis.hgetall(keys.decision("01TESTDECISION"))
    assert stored["pk"] == "p:42" and stored["items"] == '[{"offer":"fallback_offer","rank":1}]'


async def test_concurrent_callers_share_one_connection_in_order(redis, resp):
    await redis.mset({f"k{i}": str(i) for i in range(200)})
    await resp.ping()
    before = {c["id"] for c in await redis.client_list()}
    got = await asyncio.gather(*(resp.get(f"k{i}") for i in range(200)))
    assert got == [str(i) for i in range(200)]
    assert {c["id"] for c in await redis.client_list()} <= before  # no new connection for 200 callers


async def test_a_caller_that_gives_up_leaves_the_next_reply_in_place(redis, resp):
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await resp.execute_command("BLPOP", "empty-list", 0.3)
    await redis.set("after", "yes")
    assert await resp.get("after") == "yes"  # not the BLPOP's late nil


async def test_a_lost_connection_fails_waiters_and_the_next_call_reconnects(redis, resp):
    assert await resp.ping()
    waiting = asyncio.ensure_future(resp.execute_command("BLPOP", "empty-list", 5))
    await asyncio.sleep(0.05)
    await redis.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(rx.ConnectionError):
        await waiting
    assert await resp.ping()


async def test_a_server_that_stops_answering_is_given_up_on(redis_url, redis):
    resp = RespClient(redis_url, stale_s=0.1)
    try:
        waiting = asyncio.ensure_future(resp.execute_command("BLPOP", "empty-list", 5))
        await asyncio.sleep(0.2)
        assert await resp.ping()  # on a new connection
        with pytest.raises(rx.ConnectionError):
            await waiting
    finally:
        await resp.aclose()


async def test_unreachable_server_is_a_connection_error(tmp_path):
    resp = RespClient(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(rx.ConnectionError):
        await resp.ping()
    with pytest.raises(rx.ConnectionError):
        await resp.ping()  # and again: nothing cached


async def test_connection_setup_refused_by_the_server_is_a_connection_error(redis_url):
    # The embedded server has one database: selecting another is refused, and said so.
    resp = RespClient(redis_url + ("&" if "?" in redis_url else "?") + "db=3")
    with pytest.raises(rx.ConnectionError, match="refused the connection setup: .*DB index"):
        await resp.ping()


def test_urls_it_does_not_serve_go_to_redis_py():
    sentinel = object()
    assert hot_client("rediss://localhost:6380", sentinel) is sentinel
    assert hot_client("redis://localhost:6379", sentinel, enabled=False) is sentinel
    assert isinstance(hot_client("redis://localhost:6379", sentinel), RespClient)

"""Reading a profile: the shortcuts of parse_value and build_profile give
exactly what the plain definitions give, on tricky and random inputs."""

from __future__ import annotations

import json
import random
from types import MappingProxyType

import pytest

from decision.domain import Candidate, Event, Exposure, Removal
from decision.records import loads
from decision.store import keys
from decision.store.redis_store import RedisProfileStore, build_profile, parse_event, parse_exposure, parse_value

NOW = 1_780_000_000_000


def reference_value(raw: str):
    """parse_value by its definition, with no shortcut: JSON when it parses."""
    if raw[:1] in "-0123456789tfn[\"{" and raw:
        try:
            v = loads(raw)
        except ValueError:
            return raw
        if isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return tuple(v)
        return raw
    return raw


def reference_event(member: str, score: float):
    try:
        d = loads(member)
        value = d.get("value")
        return Event(
            type=str(d["type"]),
            at_ms=int(score),
            item=None if d.get("item") is None else str(d["item"]),
            channel=None if d.get("channel") is None else str(d["channel"]),
            value=None if value is None else float(value),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def same(a, b) -> bool:
    """Equal, of the same type (True is not 1, 1.0 is not 1) and with the same repr (nan, -0.0)."""
    return type(a) is type(b) and repr(a) == repr(b)


TRICKY = [
    "", " ", "01234", "00", "0", "-0", "-01", "0.5", "0e1", "0x10", "-", "--1", "+1", "1_000", "1.", ".5", "1e",
    "1e400",
    "-1e400", "1e-400", "2.5E+3", "123456789012345678901234567890", "18446744073709551616", "-9223372036854775809",
    "nan", "NaN", "-NaN", "Infinity", "-Infinity", "-Infinity ", "-inf", "inf", "true", "false", "null", "True",
    "true ", "true\n", "false\r\n\t ", "null ", "true\x0b", "true\xa0", " true", "tru", "truex", "true,", "t", "f", "n",
    "free", "fr", "family_monthly", "no", "none", "nul", "null\n", '["a"]', '["a","b"]', "[ ]", "[]", "[1]", '["a",1]',
    '["a", null]', "[", "[[]]", '[["a"]]', "{}", '{"a":1}', "{not json", "{", '"02134"', '"a"', '"', '""', '"\\u00e9"',
    '"\\ud800"', '["\\ud800"]', '"\ud83d\ude00"', "\u00e9t\u00e9", "1\u0661", "\u0661", "0\u0661", "2024-01-05",
    "48", "48 ", "1399.83", "0.227", "-3.5", "7 days", "US", "Europe/Paris", "1 2", "1\n", "0 ", "0\t", "01", "0.",
]


@pytest.mark.parametrize("raw", TRICKY)
def test_parse_value_is_its_definition_on_tricky_values(raw):
    assert same(parse_value(raw), reference_value(raw))


def test_parse_value_is_its_definition_on_random_values():
    rng = random.Random(7)
    alphabet = ' -+.0123456789eEtrufalsn[]{}",:\\\t\n\xa0\u0661aINy'
    pieces = ["true", "false", "null", "NaN", "Infinity", "0", "01", "-", "1e400", '"x"', "[", "]", ","]
    for _ in range(20_000):
        if rng.random() < 0.5:
            raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        else:
            raw = "".join(rng.choice(pieces + list(alphabet)) for _ in range(rng.randint(1, 4)))
        assert same(parse_value(raw), reference_value(raw)), raw


def test_parse_value_reads_written_values_back():
    for v in (0, 1, -7, 3.25, -0.0, 1e300, True, False, "01234", "free", "null", "true", "", ["a", "b"], [], 2 ** 70):
        raw = json.dumps(v)
        assert same(parse_value(raw), reference_value(raw)), raw


EVENTS = [
    '{"channel":"app","id":"6fc446b9533449c8","item":"title-466","type":"search"}',
    '{"id":"1","type":"purchase","value":49}', '{"type":"x","value":"12.5"}', '{"type":"x","value":"abc"}',
    '{"type":"x","value":[1]}', '{"type":"x","value":true}', '{"type":7,"item":12,"channel":false}',
    '{"item":"no type"}', '{"type":null}', '{"type":"x","item":null,"channel":null,"value":null}',
    '["type"]', '"type"', "7", "null", "not json", "", "{", '{"type":"x","value":1e400}',
    '{"type":"x","value":NaN}', '{"type":"\\ud800"}',
]


@pytest.mark.parametrize("member", EVENTS)
def test_parse_event_is_its_definition(member):
    for score in (0.0, 1.5, float(NOW), -3.0):
        assert parse_event(member, score) == reference_event(member, score)
    assert type(parse_event(member, 1.0)) is type(reference_event(member, 1.0))


def test_build_profile_orders_events_oldest_first_keeping_redis_order_within_a_millisecond():
    # Redis (ZREVRANGEBYSCORE) sends newest first, members of one score in reverse order.
    events = [('{"id":"b","type":"t2"}', 20.0), ('{"id":"z","type":"t1"}', 10.7), ('{"id":"a","type":"t1"}', 10.2),
              ("broken", 10.0), ('{"id":"y","type":"t0"}', 5.0)]
    p = build_profile("pid:1", {}, events, [], {})
    assert [(e.type, e.at_ms) for e in p.events] == [("t0", 5), ("t1", 10), ("t1", 10), ("t2", 20)]
    reference = sorted((e for e in (reference_event(m, s) for m, s in events) if e is not None), key=lambda e: e.at_ms)
    assert p.events == tuple(reference) and p.found


def test_build_profile_fields():
    fields = {"a:age": "48", "a:zip": "01234", "a:tier": "free", "a:kids": "false", "a:tags": '["x","y"]',
              "s:trial": "1790187568381", "s:bad": "soon", "s:float": "12.9", "c:marketing": "granted",
              "c:channel:email": "denied", "link": "pid:9", "other": "ignored", "a": "short", "s:": "empty name"}
    exposures = [("D1|o|email", 5.0), ("bad", 6.0), ("D2|o|web", 7.9)]
    p = build_profile("cookie:1", fields, [], exposures, {"o": "12", "x": "?"})
    assert dict(p.attributes) == {"age": 48, "zip": "01234", "tier": "free", "kids": False, "tags": ("x", "y")}
    assert dict(p.segments) == {"trial": 1790187568381, "bad": 0, "float": 12, "": 0}
    assert dict(p.consent) == {"marketing": "granted", "channel:email": "denied"}
    assert p.link == "pid:9" and p.found and p.events == ()
    assert p.exposures == (Exposure(at_ms=5, offer_id="o", channel="email", decision_id="D1"),
                           Exposure(at_ms=7, offer_id="o", channel="web", decision_id="D2"))
    assert dict(p.positive_rewards) == {"o": 12}
    assert isinstance(p.attributes, MappingProxyType) and isinstance(p.segments, MappingProxyType)
    empty = build_profile("cookie:2", {}, [], [], {})
    assert not empty.found and empty.link is None and dict(empty.attributes) == {}


async def test_fetched_profile_is_built_like_the_definition(redis):
    """Through a real server: ties, malformed members and values as upstream writes them."""
    await redis.hset(keys.profile("pid:7"), mapping={"a:zip": "01234", "a:plan": "family_monthly", "a:n": "1e400",
                                                     "a:big": "123456789012345678901234567890", "a:w": "-Infinity"})
    await redis.zadd(keys.events("pid:7"), {'{"id":"1","type":"a"}': NOW - 10, '{"id":"2","type":"b"}': NOW - 10,
                                            '{"id":"3","type":"c"}': NOW - 10, "junk": NOW - 5,
                                            '{"id":"4","type":"d","value":2}': NOW - 20})
    (p,) = await RedisProfileStore(redis).fetch(("pid:7",), NOW)
    assert [e.type for e in p.events] == ["d", "c", "b", "a"]
    assert p.attributes == {"zip": "01234", "plan": "family_monthly", "n": float("inf"), "big": 1.2345678901234568e29,
                            "w": float("-inf")}


def test_event_exposure_removal_are_immutable_values():
    e = Event("view", 5, channel="web")
    assert e == Event(type="view", at_ms=5, item=None, channel="web", value=None)
    assert hash(e) == hash(Event("view", 5, None, "web"))
    assert repr(e) == "Event(type='view', at_ms=5, item=None, channel='web', value=None)"
    r = Removal(Candidate("o", "c", "web"), "eligibility", "rule", "detail")
    assert r.candidate.offer_id == "o" and Removal(Candidate("o", "c", "web"), "eligibility", "rule").detail == ""
    for obj, name in ((e, "type"), (Exposure(1, "o", "web", "d"), "at_ms"), (r, "rule")):
        with pytest.raises(AttributeError):
            setattr(obj, name, None)


def test_an_event_or_exposure_scored_infinite_is_skipped_not_fatal():
    # Redis allows +inf and -inf scores, and the event read goes up to +inf.
    assert parse_event('{"type":"purchase"}', float("inf")) is None
    assert parse_event('{"type":"purchase"}', float("-inf")) is None
    assert parse_exposure("d1|offer|web", float("inf")) is None
    profile = build_profile("pid:x", {}, [('{"type":"a"}', float("inf")), ('{"type":"b"}', 5.0)],
                            [("d1|offer|web", float("inf"))], {})
    assert [e.type for e in profile.events] == ["b"] and profile.exposures == ()

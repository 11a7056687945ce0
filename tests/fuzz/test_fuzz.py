"""Property-based fuzzing of the real server (docs/FUZZ.md).

Malformed and random Decide/Reward requests, raw random and mutated bytes
on every RPC, and random or mutated catalog files (to the loader and to
ReloadCatalog) are thrown at `nba serve` running in its own process on the
real test Redis. Properties, for every input:

- the status is OK, INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION
  (RESOURCE_EXHAUSTED only for a message over the size limit): never
  UNKNOWN or INTERNAL, never a timeout;
- INVALID_ARGUMENT names the field first (`context[x]: ...`);
- a rejected request leaves no row in the decision or reward log;
- the catalog loader raises nothing but CatalogError;
- ReloadCatalog always answers OK and serving goes on;
- the server stays SERVING, never logs an unexpected error, and exits
  cleanly on SIGTERM at the end.

NBA_FUZZ_PROFILE=ci (default) is a short derandomized run for CI;
NBA_FUZZ_PROFILE=long is the documented 100,000+ input run.
"""

from __future__ import annotations

import math
import random
import re
import string
import time

import grpc
import pytest
import yaml
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, note, settings
from hypothesis import strategies as st

from decision.catalog import load_catalog
from decision.errors import CatalogError
from decision.nba.v1 import decision_pb2 as pb
from decision.server import CATALOG_CHECKS, MAX_MESSAGE_BYTES
from decision.store import keys
from tests.fuzz.conftest import TALLY, examples
from tests.helpers import EXAMPLES

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION}
FIELDS = {"placement", "identity", "extra_identities", "context", "channels", "count", "request_id", "as_of",
          "decision_id", "offer_id", "event_type", "event_id", "value", "occurred_at", "request", "reason",
          "person_key"}
TIMEOUT_S = 30.0

PLACEMENTS = ["home_hero", "product_banner", "callcenter_next", "outbound_daily"]
OFFERS = ["premium_upgrade", "family_plan", "annual_plan_discount", "sports_addon", "cart_reminder",
          "retention_discount", "retention_call_back", "kids_profile_tip", "welcome_trial", "brand_message"]
CHANNELS = ["web", "app", "email", "sms", "push", "callcenter"]
KNOWN_IDS = [(pb.IDENTITY_TYPE_PROFILE, "sarah"), (pb.IDENTITY_TYPE_PROFILE, "marco"),
             (pb.IDENTITY_TYPE_PROFILE, "lena"), (pb.IDENTITY_TYPE_PROFILE, "tom"), (pb.IDENTITY_TYPE_PROFILE, "julia"),
             (pb.IDENTITY_TYPE_COOKIE, "anon-1"), (pb.IDENTITY_TYPE_COOKIE, "sarah-web-1"),
             (pb.IDENTITY_TYPE_DEVICE, "sarah-iphone"), (pb.IDENTITY_TYPE_CRM, "C-1001"),
             (pb.IDENTITY_TYPE_DEVICE, "tom-tv")]
EVENT_TYPES = ["click", "dismiss", "convert", "decline", "accept", "unsubscribe", "impression"]
CONTEXT_KEYS = ["page", "device", "country", "locale", "hour", "cart_value", "items", "ratio", "user_id", "email",
                "segment", "channel", "local_time", "ts"]

# --- building blocks ---------------------------------------------------------

ID_ALPHABET = string.ascii_letters + string.digits + "._:@+=-"
huge_text = st.integers(1_000, 200_000).map(lambda n: "x" * n)
nasty_text = st.sampled_from(["", " ", "\x00", "\n", "|", ":", "a b", "a|b c:d", "' or 1=1 --", "{p:x}", "\u202e",
                              "\U0001F600", "\ud7ff", "e\u0301", "😀" * 64, "-", ".", "..", "nan", "inf", "1e309",
                              "%s%n", "${jndi:ldap://x}", "\\", '"', "a" * 129, "a" * 257])
any_text = st.one_of(st.text(max_size=40), st.text(ID_ALPHABET, min_size=1, max_size=140), nasty_text,
                     st.text(max_size=300), huge_text)
finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 3.5e38,
                                           1e15, 1e15 + 1, 2.0 ** 53, 1e12, -1e12, 1e12 + 1, 4e-167, 1e-127,
                                           1e-30, 9.9e-31, 1e-200]))
int64 = st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1),
                  st.sampled_from([0, -1, 2 ** 63 - 1, -(2 ** 63), 10 ** 15, 10 ** 15 + 1]))


@st.composite
def timestamps(draw) -> Timestamp:
    seconds = draw(st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1), st.integers(0, 4_200_000_000),
                             st.integers(946_684_800, 4_102_444_800)))
    nanos = draw(st.one_of(st.integers(0, 999_999_999), st.integers(-(2 ** 31), 2 ** 31 - 1)))
    return Timestamp(seconds=seconds, nanos=nanos)


@st.composite
def values(draw) -> pb.Value:
    kind = draw(st.sampled_from(["string", "number", "int", "bool", "list", "time", "empty"]))
    if kind == "string":
        return pb.Value(string_value=draw(any_text))
    if kind == "number":
        return pb.Value(number_value=draw(finite_or_not))
    if kind == "int":
        return pb.Value(int_value=draw(int64))
    if kind == "bool":
        return pb.Value(bool_value=draw(st.booleans()))
    if kind == "list":
        items = draw(st.one_of(st.lists(st.text(max_size=20), max_size=10),
                               st.lists(any_text, max_size=4), st.integers(60, 300).map(lambda n: ["v"] * n)))
        return pb.Value(list_value=pb.StringList(values=items))
    if kind == "time":
        return pb.Value(time_value=draw(timestamps()))
    return pb.Value()


@st.composite
def identities(draw) -> pb.Identity:
    if draw(st.integers(0, 3)) == 0:
        kind, ident = draw(st.sampled_from(KNOWN_IDS))
        return pb.Identity(type=kind, id=ident)
    kind = draw(st.one_of(st.integers(0, 6), st.integers(-5, 1000)))
    ident = draw(st.one_of(st.text(ID_ALPHABET, min_size=1, max_size=12), any_text))
    return pb.Identity(type=kind, id=ident)


context_keys = st.one_of(st.sampled_from(CONTEXT_KEYS), st.text("abcxyz_.-0189", min_size=1, max_size=70), any_text)
PLACEMENT_SPECS = {"home_hero": (("web", "app"), 1), "product_banner": (("web",), 2),
                   "callcenter_next": (("callcenter",), 3), "outbound_daily": (("email", "sms", "push"), 1)}
good_number = st.one_of(st.floats(-1e15, 1e15, allow_nan=False).filter(lambda x: x == 0 or abs(x) >= 1e-30),
                        st.integers(-1000, 1000).map(float))
good_value = st.one_of(
    st.text(max_size=60).map(lambda t: pb.Value(string_value=t)),
    good_number.map(lambda x: pb.Value(number_value=x)),
    st.integers(-(10 ** 15), 10 ** 15).map(lambda x: pb.Value(int_value=x)),
    st.booleans().map(lambda b: pb.Value(bool_value=b)),
    st.lists(st.text(max_size=30), max_size=10).map(lambda v: pb.Value(list_value=pb.StringList(values=v))),
    st.integers(946_684_800, 4_102_444_799).map(lambda t: pb.Value(time_value=Timestamp(seconds=t))),
)


def _corrupt_decide(draw, msg: pb.DecideRequest) -> None:
    """One malformed or extreme field on an otherwise valid request."""
    what = draw(st.sampled_from(["placement", "identity", "no_identity", "extras", "context_key", "context_value",
                                 "context_many", "channels", "count", "request_id", "as_of", "values"]))
    if what == "placement":
        msg.placement = draw(any_text)
    elif what == "identity":
        msg.identity.CopyFrom(draw(identities()))
    elif what == "no_identity":
        msg.ClearField("identity")
    elif what == "extras":
        msg.extra_identities.extend(draw(st.lists(identities(), min_size=1, max_size=12)))
    elif what == "context_key":
        msg.context[draw(context_keys)].CopyFrom(draw(good_value))
    elif what == "context_value":
        msg.context[draw(st.sampled_from(CONTEXT_KEYS))].CopyFrom(draw(values()))
    elif what == "context_many":
        for i in range(draw(st.integers(60, 70))):
            msg.context[f"k{i}"].string_value = "v"
    elif what == "channels":
        msg.channels.extend(draw(st.one_of(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3),
                                           st.lists(any_text, min_size=1, max_size=3),
                                           st.integers(30, 40).map(lambda n: ["web"] * n))))
    elif what == "count":
        msg.count = draw(st.one_of(st.integers(0, 25), st.integers(0, 2 ** 32 - 1)))
    elif what == "request_id":
        msg.request_id = draw(any_text)
    elif what == "as_of":
        msg.as_of.CopyFrom(draw(timestamps()))
    else:
        for key in draw(st.lists(st.sampled_from(CONTEXT_KEYS), min_size=1, max_size=4)):
            msg.context[key].CopyFrom(draw(values()))


@st.composite
def decide_requests(draw) -> pb.DecideRequest:
    """A valid request (mostly answered OK), then 0..3 corruptions."""
    msg = pb.DecideRequest()
    msg.placement = draw(st.sampled_from(PLACEMENTS))
    channels, max_items = PLACEMENT_SPECS[msg.placement]
    kind, ident = draw(st.one_of(st.sampled_from(KNOWN_IDS),
                                 st.tuples(st.integers(1, 6), st.text(ID_ALPHABET, min_size=1, max_size=24))))
    msg.identity.CopyFrom(pb.Identity(type=kind, id=ident))
    for kind, ident in draw(st.lists(st.sampled_from(KNOWN_IDS), max_size=2)):
        msg.extra_identities.add(type=kind, id=ident)
    for key in draw(st.lists(st.sampled_from(CONTEXT_KEYS), max_size=6)):
        msg.context[key].CopyFrom(draw(good_value))
    msg.channels.extend(draw(st.lists(st.sampled_from(channels), max_size=2)))
    msg.count = draw(st.integers(0, max_items))
    msg.explain = draw(st.booleans())
    # Mostly dry runs, so that caps are not all spent after a few hundred inputs.
    msg.dry_run = draw(st.integers(0, 4)) > 0
    msg.request_id = draw(st.text(ID_ALPHABET, max_size=24))
    if draw(st.integers(0, 5)) == 0:
        msg.as_of.CopyFrom(Timestamp(seconds=draw(st.integers(946_684_800, 4_102_444_799))))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        _corrupt_decide(draw, msg)
    return msg


# --- the properties ----------------------------------------------------------

def _stream_lengths(server) -> tuple[int, int]:
    pipe = server.redis.pipeline(transaction=False)
    pipe.xlen(keys.DECISION_STREAM)
    pipe.xlen(keys.REWARD_STREAM)
    return tuple(pipe.execute())


def check_call(server, kind: str, call, request, size: int) -> tuple[grpc.StatusCode, object]:
    """Send one input; assert the properties common to every RPC."""
    before = _stream_lengths(server)
    try:
        response, code, details = call(request, timeout=TIMEOUT_S), grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        response, code, details = None, e.code(), e.details() or ""
    TALLY.count(kind, code.name)
    note(f"{kind}: {code.name} {details[:300]!r}")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert size > MAX_MESSAGE_BYTES, f"RESOURCE_EXHAUSTED for a message of {size} bytes: {details}"
    else:
        assert code in ALLOWED, f"{kind} answered {code.name}: {details!r}"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        field = re.split(r"[:\[.]", details, maxsplit=1)[0]
        assert field in FIELDS, f"INVALID_ARGUMENT does not name a field: {details!r}"
    if code is not grpc.StatusCode.OK:
        assert _stream_lengths(server) == before, f"a rejected {kind} ({code.name}) wrote a log row"
    elif getattr(response, "logged", False):
        _wait_logged(server, response.decision_id)
    return code, response


def _wait_logged(server, decision_id: str, timeout_s: float = 5.0) -> None:
    """A decision's log row is written right after its answer: wait for it, so
    that the next input's "no row written" check is about that input alone."""
    deadline = time.monotonic() + timeout_s
    while not server.redis.exists(keys.decision(decision_id)):
        assert time.monotonic() < deadline, f"decision {decision_id} answered as logged, but no row appeared"
        time.sleep(0.001)


REWARD_EVENTS = {"home_hero": ("click", "dismiss"), "product_banner": ("convert", "decline"),
                 "callcenter_next": ("accept", "decline"), "outbound_daily": ("click", "convert", "unsubscribe")}


@pytest.fixture(scope="module")
def decisions(fuzz_server) -> list[tuple[str, str, tuple[str, ...]]]:
    """Real, logged decisions for Reward to find: (id, placement, offers)."""
    out = []
    for i in range(60):
        kind, ident = KNOWN_IDS[i % len(KNOWN_IDS)]
        placement = PLACEMENTS[i % len(PLACEMENTS)]
        resp = fuzz_server.stub.Decide(pb.DecideRequest(placement=placement, identity=pb.Identity(type=kind, id=ident),
                                                        count=PLACEMENT_SPECS[placement][1]), timeout=TIMEOUT_S)
        if resp.decision_id:
            out.append((resp.decision_id, placement, tuple(item.offer_id for item in resp.items)))
    assert out
    return out


@settings(max_examples=examples(500, 50_000))
@given(msg=decide_requests())
def test_decide_fuzz(fuzz_server, msg):
    data = msg.SerializeToString()
    code, resp = check_call(fuzz_server, "Decide", fuzz_server.stub.Decide, msg, len(data))
    if code is grpc.StatusCode.OK:
        for item in resp.items:
            assert 0.0 <= item.probability <= 1.0 and math.isfinite(item.score)
        assert resp.logged == (not msg.dry_run)


@st.composite
def reward_requests(draw, decisions: list[tuple[str, str, tuple[str, ...]]]) -> pb.RewardRequest:
    """A valid reward for a real decision (mostly), then 0..2 corruptions."""
    decision_id, placement, offers = draw(st.sampled_from(decisions))
    msg = pb.RewardRequest(decision_id=decision_id,
                           offer_id=draw(st.sampled_from(offers + ("",))) if offers else "",
                           event_type=draw(st.sampled_from(REWARD_EVENTS[placement])),
                           event_id=draw(st.one_of(st.text(ID_ALPHABET, min_size=1, max_size=24),
                                                   st.sampled_from(["e1", "e2"]))))
    if draw(st.booleans()):
        msg.value = draw(st.floats(-1e6, 1e6))
    if draw(st.integers(0, 3)) == 0:
        msg.occurred_at.CopyFrom(Timestamp(seconds=draw(st.integers(946_684_800, 4_102_444_799))))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        what = draw(st.sampled_from(["decision_id", "offer_id", "event_type", "value", "event_id", "occurred_at"]))
        if what == "decision_id":
            msg.decision_id = draw(st.one_of(st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZIOLU", min_size=26, max_size=26),
                                             any_text))
        elif what == "offer_id":
            msg.offer_id = draw(st.one_of(st.sampled_from(OFFERS), any_text))
        elif what == "event_type":
            msg.event_type = draw(st.one_of(st.sampled_from(EVENT_TYPES), any_text))
        elif what == "value":
            msg.value = draw(finite_or_not)
        elif what == "event_id":
            msg.event_id = draw(any_text)
        else:
            msg.occurred_at.CopyFrom(draw(timestamps()))
    return msg


@settings(max_examples=examples(300, 25_000))
@given(data=st.data())
def test_reward_fuzz(fuzz_server, decisions, data):
    msg = data.draw(reward_requests(decisions))
    code, ack = check_call(fuzz_server, "Reward", fuzz_server.stub.Reward, msg, len(msg.SerializeToString()))
    if code is grpc.StatusCode.OK:
        assert ack.decision_id == msg.decision_id and math.isfinite(ack.reward)


# --- raw bytes -------------------------------------------------------------------

METHODS = ["/nba.v1.DecisionService/Decide", "/nba.v1.DecisionService/Reward", "/nba.v1.AdminService/Forget",
           "/nba.v1.AdminService/ReloadCatalog"]


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, byte in ops:
        if not buf:
            buf.append(byte)
            continue
        pos %= len(buf)
        if op == 0:
            buf[pos] = byte
        elif op == 1:
            buf.insert(pos, byte)
        elif op == 2:
            del buf[pos]
        else:
            buf[pos] ^= 1 << (byte % 8)
    return bytes(buf)


seed_messages = st.one_of(
    decide_requests().map(lambda m: m.SerializeToString()),
    st.just(pb.RewardRequest(decision_id="01J000000000000000000000AB", event_type="click",
                             event_id="e").SerializeToString()),
    st.just(pb.ForgetRequest(person_key="pid:nobody", reason="fuzz").SerializeToString()),
)
raw_bytes = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=4096),
    # mutations of valid messages: mostly parse, with wrong tags, lengths, UTF-8, varints
    st.tuples(seed_messages, st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2 ** 20), st.integers(0, 255)),
                                      min_size=1, max_size=8)).map(lambda t: _mutate(*t)),
    # deep nesting: a Value list inside a context map entry, repeated (recursion limits)
    st.integers(1, 200).map(lambda n: b"\x22" * n + b"\x00"),
)


@settings(max_examples=examples(300, 30_000))
@given(method=st.sampled_from(METHODS), data=raw_bytes)
def test_raw_bytes_fuzz(fuzz_server, method, data):
    call = fuzz_server.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    code, _ = check_call(fuzz_server, "raw " + method.rsplit("/", 1)[1], call, data, len(data))
    if method.endswith("/Forget"):
        # no token auth in this run: a parsed Forget for a random person is
        # fine, but must not have deleted the example profiles
        assert fuzz_server.redis.exists(keys.profile("pid:sarah"))


def test_oversized_message_is_refused(fuzz_server):
    msg = pb.DecideRequest(placement="home_hero", identity=pb.Identity(type=1, id="tom"),
                           request_id="x" * (MAX_MESSAGE_BYTES + 10))
    with pytest.raises(grpc.RpcError) as e:
        fuzz_server.stub.Decide(msg, timeout=TIMEOUT_S)
    assert e.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    TALLY.count("oversized", e.value.code().name)
    fuzz_server.assert_healthy()


# --- catalogs ------------------------------------------------------------------

CATALOG_TEXT = (EXAMPLES / "catalog.yaml").read_text()
CATALOG_LINES = CATALOG_TEXT.splitlines()
CATALOG_DATA = yaml.safe_load(CATALOG_TEXT)
NASTY_SCALARS = ["-1", "0", "1e309", ".nan", "-.inf", "[]", "{}", "~", "null", "''", "'x'", "yes", "NO", "0x1F",
                 "2038-01-19", "25:61", "&a x", "*a", "*undefined", "<<: *a",
                 "!!python/object/apply:os.system ['true']",
                 "!!binary aGVsbG8=", "|", ">", "? x", "- - -", "'" + "y" * 5000 + "'", "[" * 300 + "]" * 300,
                 "{a: " * 100 + "1" + "}" * 100, "\t", "\"\\ud800\"", "\"\\x00\"", "99999999999999999999999",
                 "profile.age >", "profile.tier == 'gold' &&", "size(context.items) > 1e400", "1/0 == 1",
                 "has(", "'a' * 1000000", "30x", "-5d", "1h-1m", "P1D", "True", "0.0000001", "-0"]
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=True),
              st.text(max_size=30), st.sampled_from(NASTY_SCALARS)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=12,
)


def _line_mutation(ops: list[tuple[int, int, int, str]]) -> str:
    lines = list(CATALOG_LINES)
    for op, i, j, token in ops:
        if not lines:
            break
        i %= len(lines)
        j %= len(lines)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(j, lines[i])
        elif op == 2:
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            head, sep, _ = lines[i].partition(": ")
            lines[i] = f"{head}{sep or ': '}{token}"
        elif op == 4:
            lines[i] = " " * (j % 7) + lines[i].lstrip()
        elif op == 5:
            lines = lines[:i]
        else:
            lines.insert(i, token)
    return "\n".join(lines) + "\n"


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _structural_mutation(seed: int, replacements: list) -> str:
    import copy

    rng = random.Random(seed)
    data = copy.deepcopy(CATALOG_DATA)
    for value in replacements:
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        if rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _byte_mutation(ops: list[tuple[int, int, int]]) -> bytes:
    return _mutate(CATALOG_TEXT.encode(), ops)


catalog_files = st.one_of(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 10_000), st.integers(0, 10_000),
                       st.one_of(st.sampled_from(NASTY_SCALARS), st.text(max_size=20))),
             min_size=1, max_size=6).map(_line_mutation).map(str.encode),
    st.tuples(st.integers(0, 2 ** 32), st.lists(JSONISH, min_size=1, max_size=4))
    .map(lambda t: _structural_mutation(*t)).map(str.encode),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2 ** 20), st.integers(0, 255)), min_size=1,
             max_size=10).map(_byte_mutation),
    st.binary(max_size=512),
    st.text(max_size=500).map(str.encode),
    st.sampled_from(NASTY_SCALARS).map(str.encode),
)


@settings(max_examples=examples(250, 8_000))
@given(data=catalog_files)
def test_catalog_loader_fuzz(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-catalog.yaml"
    path.write_bytes(data)
    try:
        load_catalog(path, **CATALOG_CHECKS)
        outcome = "loaded"
    except CatalogError as e:
        assert e.errors and all(isinstance(x, str) and x for x in e.errors)
        outcome = "CatalogError"
    TALLY.count("catalog_loader", outcome)


@settings(max_examples=examples(25, 1_500))
@given(data=catalog_files)
def test_reload_catalog_fuzz(fuzz_server, data):
    fuzz_server.catalog.write_bytes(data)
    code, resp = check_call(fuzz_server, "ReloadCatalog", fuzz_server.admin.ReloadCatalog,
                            pb.ReloadCatalogRequest(), 0)
    assert code is grpc.StatusCode.OK
    TALLY.outcome("catalog " + ("reloaded" if resp.reloaded else "refused" if resp.errors else "unchanged"))
    if not resp.reloaded:
        note(f"refused: {list(resp.errors)[:3]}")
    # serving goes on, whatever catalog is now in force
    request = pb.DecideRequest(placement="home_hero", identity=pb.Identity(type=1, id="tom"), dry_run=True)
    check_call(fuzz_server, "Decide-after-reload", fuzz_server.stub.Decide, request, 0)
    fuzz_server.assert_healthy()


def test_server_still_serves_the_example_catalog(fuzz_server):
    """Last: put the example catalog back; the server takes it and decides."""
    fuzz_server.catalog.write_text(CATALOG_TEXT)
    resp = fuzz_server.admin.ReloadCatalog(pb.ReloadCatalogRequest(), timeout=TIMEOUT_S)
    assert not resp.errors
    decision = fuzz_server.stub.Decide(pb.DecideRequest(placement="callcenter_next",
                                                        identity=pb.Identity(type=pb.IDENTITY_TYPE_CRM, id="C-1001"),
                                                        dry_run=True, count=2), timeout=TIMEOUT_S)
    assert decision.items
    fuzz_server.assert_healthy()

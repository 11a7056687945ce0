"""The only module that knows both protobuf and domain types.

Requests are validated here, at the edge: a bad field raises InvalidArgument
naming it, before anything is read or written.
"""

from __future__ import annotations

import math
import re
from types import MappingProxyType

from decision import errors
from decision.domain import (
    DecideRequest,
    Decision,
    Identity,
    IdentityType,
    RewardAck,
    RewardEvent,
    Value,
)
from decision.forget import ForgetOrder, ForgetResult
from decision.nba.v1 import decision_pb2 as pb

ID_RE = re.compile(r"^[A-Za-z0-9._:@+=-]{1,128}$")
CATALOG_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
CONTEXT_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
EVENT_TYPE_RE = re.compile(r"^[a-z0-9_]{1,32}$")
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9._:@+=-]{1,128}$")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:@+=-]{0,128}$")
MAX_CONTEXT_ENTRIES = 64
MAX_STRING_LEN = 256
MAX_LIST_LEN = 64
MAX_EXTRA_IDENTITIES = 8
MAX_COUNT = 20
MAX_CHANNELS = 32
# Context numbers reach the model as 32-bit floats: beyond ~3e38 they are
# infinite and the policy's probabilities NaN. 1e15 keeps integers exact
# (< 2**53) and leaves room for epoch milliseconds sent as plain numbers.
MAX_ABS_NUMBER = 1e15
# ... and below ~1e-127 Vowpal Wabbit's text parser reads them as infinity
# (found by the fuzz suite). Nobody means 1e-200: such a value is a bug.
MIN_ABS_NUMBER = 1e-30
# Timestamps outside 2000..2100 are a caller's bug, not a time.
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000

_IDENTITY_TYPES = {
    pb.IDENTITY_TYPE_PROFILE: IdentityType.PROFILE,
    pb.IDENTITY_TYPE_COOKIE: IdentityType.COOKIE,
    pb.IDENTITY_TYPE_DEVICE: IdentityType.DEVICE,
    pb.IDENTITY_TYPE_CRM: IdentityType.CRM,
    pb.IDENTITY_TYPE_HASHED_EMAIL: IdentityType.HASHED_EMAIL,
    pb.IDENTITY_TYPE_SESSION: IdentityType.SESSION,
}
_OUTCOMES = {"removed": pb.OUTCOME_REMOVED, "chosen": pb.OUTCOME_CHOSEN, "not_chosen": pb.OUTCOME_NOT_CHOSEN,
             "refused": pb.OUTCOME_RESERVATION_REFUSED}


def _identity(msg: pb.Identity, field: str) -> Identity:
    kind = _IDENTITY_TYPES.get(msg.type)
    if kind is None:
        raise errors.InvalidArgument("identity type is required (profile, cookie, device, crm, hashed_email, session)",
                                     field=f"{field}.type")
    if not ID_RE.match(msg.id):
        raise errors.InvalidArgument("must be 1..128 characters of [A-Za-z0-9._:@+=-]", field=f"{field}.id")
    return Identity(kind, msg.id)


def _timestamp_ms(ts, field: str) -> int:
    ms = ts.seconds * 1000 + ts.nanos // 1_000_000
    if not (MIN_TIME_MS <= ms <= MAX_TIME_MS) or not (0 <= ts.nanos < 1_000_000_000):
        raise errors.InvalidArgument("timestamp out of range (years 2000..2100)", field=field)
    return ms


def _string(s: str, field: str) -> str:
    if len(s) > MAX_STRING_LEN:
        raise errors.InvalidArgument(f"longer than {MAX_STRING_LEN} characters", field=field)
    return s


def _check_magnitude(x: float, field: str) -> None:
    if x != 0 and not (MIN_ABS_NUMBER <= abs(x) <= MAX_ABS_NUMBER):
        raise errors.InvalidArgument(f"must be 0 or of magnitude {MIN_ABS_NUMBER:g}..{MAX_ABS_NUMBER:g}", field=field)


def _value(v: pb.Value, field: str) -> Value:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise errors.InvalidArgument("a context value must set one kind", field=field)
    if kind == "string_value":
        return _string(v.string_value, field)
    if kind == "number_value":
        if not math.isfinite(v.number_value):
            raise errors.InvalidArgument("must be a finite number (no NaN or infinity)", field=field)
        _check_magnitude(v.number_value, field)
        return v.number_value
    if kind == "int_value":
        if abs(v.int_value) > MAX_ABS_NUMBER:
            raise errors.InvalidArgument(f"must be within ±{MAX_ABS_NUMBER:g}", field=field)
        return v.int_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "list_value":
        if len(v.list_value.values) > MAX_LIST_LEN:
            raise errors.InvalidArgument(f"more than {MAX_LIST_LEN} list entries", field=field)
        return tuple(_string(s, f"{field}[{i}]") for i, s in enumerate(v.list_value.values))
    # time_value: kept as epoch milliseconds
    return _timestamp_ms(v.time_value, field)


def decide_request(msg: pb.DecideRequest) -> DecideRequest:
    if not msg.placement:
        raise errors.InvalidArgument("placement is required", field="placement")
    if not CATALOG_ID_RE.match(msg.placement):
        raise errors.InvalidArgument("not a valid placement id", field="placement")
    if not msg.HasField("identity"):
        raise errors.InvalidArgument("an identity is required (profile, cookie, device, crm or hashed email id)",
                                     field="identity")
    identity = _identity(msg.identity, "identity")
    if len(msg.extra_identities) > MAX_EXTRA_IDENTITIES:
        raise errors.InvalidArgument(f"at most {MAX_EXTRA_IDENTITIES} extra identities", field="extra_identities")
    extra = tuple(_identity(x, f"extra_identities[{i}]") for i, x in enumerate(msg.extra_identities))
    if len(msg.context) > MAX_CONTEXT_ENTRIES:
        raise errors.InvalidArgument(f"at most {MAX_CONTEXT_ENTRIES} context entries, got {len(msg.context)}",
                                     field="context")
    context: dict[str, Value] = {}
    for key in sorted(msg.context):
        if not CONTEXT_KEY_RE.match(key):
            raise errors.InvalidArgument(f"context key {key[:70]!r} must be 1..64 characters of [A-Za-z0-9_.-]",
                                         field="context")
        context[key] = _value(msg.context[key], f"context[{key}]")
    if len(msg.channels) > MAX_CHANNELS:
        raise errors.InvalidArgument(f"at most {MAX_CHANNELS} channels", field="channels")
    for i, ch in enumerate(msg.channels):
        if not CATALOG_ID_RE.match(ch):
            raise errors.InvalidArgument("not a valid channel id", field=f"channels[{i}]")
    if msg.count > MAX_COUNT:
        raise errors.InvalidArgument(f"count must be at most {MAX_COUNT}", field="count")
    if not REQUEST_ID_RE.match(msg.request_id):
        raise errors.InvalidArgument("must be up to 128 characters of [A-Za-z0-9._:@+=-]", field="request_id")
    return DecideRequest(
        placement=msg.placement,
        identity=identity,
        extra_identities=extra,
        context=MappingProxyType(context),
        channels=tuple(dict.fromkeys(msg.channels)),
        count=msg.count or 1,
        explain=msg.explain,
        dry_run=msg.dry_run,
        request_id=msg.request_id,
        as_of_ms=_timestamp_ms(msg.as_of, "as_of") if msg.HasField("as_of") else None,
    )


def decide_response(d: Decision, explain: bool) -> pb.DecideResponse:
    resp = pb.DecideResponse(
        decision_id=d.decision_id if d.logged else "",
        arm=d.arm,
        policy=d.policy,
        model_version=d.model_version,
        fallback=d.fallback,
        request_id=d.request_id,
        logged=d.logged,
        degraded=d.degraded,
    )
    for item in d.items:
        resp.items.add(
            offer_id=item.candidate.offer_id,
            content_id=item.candidate.content_id,
            channel=item.candidate.channel,
            probability=item.probability,
            score=item.score,
            rank=item.rank,
            template=item.template,
        )
    if explain:
        for e in explain_rows(d):
            resp.explanations.add(**e)
        resp.notes.extend(d.notes)
    return resp


def explain_rows(d: Decision) -> list[dict]:
    """One row per candidate: the removals as the stages gave them, then the
    allowed ones with their probability and score."""
    rows: list[dict] = []
    for r in d.removed:
        outcome = _OUTCOMES["refused"] if r.stage == "commit" else _OUTCOMES["removed"]
        rows.append(dict(offer_id=r.candidate.offer_id, content_id=r.candidate.content_id, channel=r.candidate.channel,
                         outcome=outcome, stage=r.stage, rule=r.rule, detail=r.detail))
    chosen = {i.candidate: i for i in d.items} if not d.fallback else {}
    refused = {r.candidate for r in d.removed if r.stage == "commit"}
    for c, p, s in zip(d.allowed, d.probabilities, d.scores):
        if c in refused:
            continue
        item = chosen.get(c)
        if item is not None:
            detail = f"chosen at rank {item.rank} with probability {item.probability:.4f} by policy {d.policy} (arm {d.arm})"
            rows.append(dict(offer_id=c.offer_id, content_id=c.content_id, channel=c.channel,
                             outcome=_OUTCOMES["chosen"], stage="policy", rule=d.policy, detail=detail,
                             probability=item.probability, score=item.score))
        else:
            rows.append(dict(offer_id=c.offer_id, content_id=c.content_id, channel=c.channel,
                             outcome=_OUTCOMES["not_chosen"], stage="policy", rule=d.policy,
                             detail=f"allowed; rank-1 probability {p:.4f}", probability=p, score=s))
    if d.fallback:
        for item in d.items:
            rows.append(dict(offer_id=item.candidate.offer_id, content_id=item.candidate.content_id,
                             channel=item.candidate.channel, outcome=_OUTCOMES["chosen"], stage="fallback",
                             rule="placement fallback", detail="nothing else was allowed", probability=1.0))
    return rows


def reward_event(msg: pb.RewardRequest) -> RewardEvent:
    if not msg.decision_id:
        raise errors.InvalidArgument("decision_id is required", field="decision_id")
    if not re.fullmatch(r"[0-9A-Z]{26}", msg.decision_id):
        raise errors.InvalidArgument("not a decision id issued by this service", field="decision_id")
    if msg.offer_id and not CATALOG_ID_RE.match(msg.offer_id):
        raise errors.InvalidArgument("not a valid offer id", field="offer_id")
    if not EVENT_TYPE_RE.match(msg.event_type):
        raise errors.InvalidArgument("must be 1..32 characters of [a-z0-9_] (e.g. click, accept, convert)",
                                     field="event_type")
    if not EVENT_ID_RE.match(msg.event_id):
        raise errors.InvalidArgument("an event id of 1..128 characters of [A-Za-z0-9._:@+=-] is required",
                                     field="event_id")
    value = None
    if msg.HasField("value"):
        if not math.isfinite(msg.value) or abs(msg.value) > 1e12:
            raise errors.InvalidArgument("must be a finite number within ±1e12", field="value")
        if msg.value != 0 and abs(msg.value) < MIN_ABS_NUMBER:
            raise errors.InvalidArgument(f"must be 0 or of magnitude at least {MIN_ABS_NUMBER:g}", field="value")
        value = msg.value
    return RewardEvent(
        decision_id=msg.decision_id,
        offer_id=msg.offer_id,
        event_type=msg.event_type,
        event_id=msg.event_id,
        value=value,
        occurred_at_ms=_timestamp_ms(msg.occurred_at, "occurred_at") if msg.HasField("occurred_at") else None,
    )


def reward_ack(a: RewardAck) -> pb.RewardAck:
    return pb.RewardAck(decision_id=a.decision_id, event_id=a.event_id, duplicate=a.duplicate, reward=a.reward,
                        deferred=a.deferred)


# --- privacy: Forget ---------------------------------------------------------

MAX_REASON_LEN = 256
_PERSON_KEY_PREFIXES = frozenset(t.value for t in IdentityType)


def forget_request(msg: pb.ForgetRequest) -> ForgetOrder:
    who = msg.WhichOneof("who")
    if who == "identity":
        person_key = _identity(msg.identity, "identity").key
    elif who == "person_key":
        prefix, _, ident = msg.person_key.partition(":")
        if prefix not in _PERSON_KEY_PREFIXES or not ID_RE.match(ident):
            raise errors.InvalidArgument(
                f"must be <type>:<id> with type one of {', '.join(sorted(_PERSON_KEY_PREFIXES))} and an id of "
                "1..128 characters of [A-Za-z0-9._:@+=-]", field="person_key")
        person_key = msg.person_key
    else:
        raise errors.InvalidArgument("name the person: an identity or a person key", field="identity")
    reason = msg.reason.strip()
    if not reason or len(reason) > MAX_REASON_LEN or not reason.isprintable():
        raise errors.InvalidArgument(f"a reason of 1..{MAX_REASON_LEN} printable characters is required "
                                     "(ticket, legal basis; not the person's id)", field="reason")
    return ForgetOrder(person_key=person_key, reason=reason, scan_keyspace=msg.scan_keyspace)


def forget_response(r: ForgetResult) -> pb.ForgetResponse:
    return pb.ForgetResponse(pseudonym=r.pseudonym, identities=r.identities, keys_deleted=r.keys_deleted,
                             decisions=r.decisions, decision_log_rows=r.decision_log_rows,
                             reward_log_rows=r.reward_log_rows, audit_id=r.audit_id)

"""Logged decision -> the bandits examples the learner trains.

The service built `Context(shared features)` and one `Action` per allowed
candidate (decision/stages/policy.py); the learner rebuilds the same objects
from the record and its catalog version's feature table
(decision/feature_tables.py): `Action(id=label, features=the table's
features, value=offer value, priority=offer priority, group=offer id)`, one
interned object per (catalog version, label), so that bandits/vw.py's cached
action lines hit on every record after the first.

`LoggedDecision` is what the learner keeps of a record while its join window
is open: the record's header, its actions already resolved to those interned
Actions, and the rank-1 probabilities. `decode_decision` builds it straight
from the JSON (the hot path: no per-action objects are made), and
`LoggedDecision.of` from a `DecisionRecord` (a test checks the two agree;
records.py stays the contract).

Multi-item decisions (docs/LEARNING.md, "Several items"): item r is one
example over the actions still available at its rank,
`bandits.sampling.remaining(actions, items before r)` (the sampler's own
rule: an offer chosen at an earlier rank removes all its actions), with the
conditional probability the item was logged with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from bandits.policy import Action, Context
from bandits.sampling import remaining
from decision.feature_tables import FeatureTables
from decision.records import READABLE, REWARD_VERSION, DecisionRecord, Features, loads


class Item(NamedTuple):
    """A logged item: records.LoggedItem's fields and meaning, a NamedTuple
    for the reason LoggedDecision is one (the learner makes one per item)."""

    rank: int  # 1-based
    action: int  # index into the record's actions
    probability: float  # conditional on the items ranked before
    score: float


class LoggedDecision(NamedTuple):
    """A NamedTuple, not a frozen dataclass: as immutable and as typed, and
    the learner makes one per logged decision, where a frozen dataclass of 14
    fields costs 1.1 us to construct (object.__setattr__ per field) and this
    0.2 us - of a budget of 50 us per example (docs/LEARNING.md, "Figures")."""

    decision_id: str
    ts_ms: int
    placement: str
    arm: str
    policy: str
    catalog_version: str
    context: Features
    actions: tuple[Action, ...]  # interned (FeatureTables), in logged order
    probabilities: tuple[float, ...]  # the logged rank-1 distribution over `actions`
    items: tuple[Item, ...]
    fallback: bool
    refused: bool  # an item was refused at commit (see refused_at_commit)
    join_window_s: int
    default_reward: float
    # The person's pseudonym: decisions of a person forgotten after the row
    # was read are dropped, not trained (Learner._without_forgotten).
    person: str = ""

    @classmethod
    def of(cls, record: DecisionRecord, tables: FeatureTables) -> "LoggedDecision":
        return cls(record.decision_id, record.ts_ms, record.placement, record.arm, record.policy,
                   record.catalog_version, record.context, tables.actions(record),
                   tuple(a.probability for a in record.actions),
                   tuple(Item(i.rank, i.action, i.probability, i.score) for i in record.items), record.fallback,
                   any(r.stage == "commit" for r in record.removed), record.join_window_s, record.default_reward,
                   record.person)


def decode_decision(raw: str | bytes, tables: FeatureTables) -> LoggedDecision:
    """A decision log entry (records v1 or v2) -> LoggedDecision.

    Raises feature_tables.MissingFeatureTable when a v2 record's table is not
    loaded (the learner loads it and decodes again), ValueError / KeyError /
    TypeError / IndexError on a malformed record (a label missing from its
    table is a KeyError)."""
    d = loads(raw)
    v = d.get("v")
    version = d["catalog_version"]
    if v == 2:
        labels = d["actions"]
        actions = tables.action_set(version, tuple(labels)) if labels else ()
        probabilities = tuple(d["probabilities"])
        if len(probabilities) != len(actions):
            raise ValueError(f"{len(actions)} actions but {len(probabilities)} probabilities")
    elif v == 1:
        logged = d["actions"]
        inline = tables.inline_action
        actions = tuple([inline(version, a["offer"], a["content"], a["channel"], a["features"]) for a in logged])
        probabilities = tuple([float(a["p"]) for a in logged])
    else:
        raise ValueError(f"unsupported decision record version {v!r} (readable: {READABLE})")
    removed = d.get("removed")
    return LoggedDecision(
        d["decision_id"], int(d["ts_ms"]), d["placement"], d["arm"], d["policy"], version, d["context"], actions,
        probabilities,
        tuple([Item(int(i["rank"]), int(i["action"]), float(i["p"]), float(i["score"])) for i in d["items"]]),
        bool(d["fallback"]), bool(removed) and any(r[3] == "commit" for r in removed),
        int(d.get("join_window_s", 86_400)), float(d.get("default_reward", 0.0)), d.get("person") or "",
    )


class LoggedReward(NamedTuple):
    """What the join needs of a reward record (records.RewardRecord's fields
    of these names), a NamedTuple for the reason LoggedDecision is one."""

    event_id: str
    decision_id: str
    ts_ms: int
    occurred_ms: int
    offer_id: str
    reward: float


def decode_reward(raw: str | bytes) -> LoggedReward:
    """A reward log entry -> LoggedReward; refuses (ValueError / KeyError /
    TypeError) what RewardRecord.from_json refuses (a test checks the two agree)."""
    d = loads(raw)
    if d.get("v") != REWARD_VERSION:
        raise ValueError(f"unsupported reward record version {d.get('v')!r}")
    d["placement"], d["arm"], d["policy"], d["event_type"], int(d["rank"])  # required by the contract, unused here
    if d.get("value") is not None:
        float(d["value"])
    return LoggedReward(d["event_id"], d["decision_id"], int(d["ts_ms"]), int(d["occurred_ms"]), d["offer"],
                        float(d["reward"]))


@dataclass(frozen=True, slots=True)
class ItemExample:
    """One training example: item `rank` of a decision."""

    rank: int
    context: Context
    actions: tuple[Action, ...]  # the actions available at this rank
    chosen: int  # index into `actions`
    probability: float  # logged, conditional on the items ranked before


def item_examples(record: LoggedDecision) -> list[ItemExample]:
    """One example per logged item, in rank order."""
    context = Context(record.context)
    actions = record.actions
    items = record.items
    if len(items) == 1:  # the common case: one item, over every action
        item = items[0]
        return [ItemExample(item.rank, context, actions, item.action, item.probability)]
    out: list[ItemExample] = []
    before: list[int] = []
    for item in sorted(items, key=lambda i: i.rank):
        if before:
            available = remaining(actions, before)
            chosen = available.index(item.action)
            out.append(ItemExample(item.rank, context, tuple(actions[i] for i in available), chosen,
                                   item.probability))
        else:
            out.append(ItemExample(item.rank, context, actions, item.action, item.probability))
        before.append(item.action)
    return out


def refused_at_commit(record: LoggedDecision) -> bool:
    """A sampled item lost its reservation at commit: the survivors were
    renumbered, so their logged conditional probabilities no longer describe
    the draws (decision/join.py excludes these too)."""
    return record.refused


def full_support(record: LoggedDecision) -> bool:
    """Every allowed action had a positive rank-1 probability: the record can
    evaluate any policy off-line (IPS needs the logging policy's support)."""
    return bool(record.probabilities) and min(record.probabilities) > 0.0


def greedy(record: LoggedDecision) -> tuple[bool, float]:
    """(the rank-1 item was the logging policy's unique most probable action,
    that top probability). A flat distribution is never "greedy": a model
    that stays uniform shows a greedy share of 0 and a top p of 1/n."""
    probs = record.probabilities
    top = max(probs)
    items = record.items
    first = items[0] if len(items) == 1 else min(items, key=lambda i: i.rank)
    return probs[first.action] == top and probs.count(top) == 1, top


def reward_items(record: LoggedDecision) -> dict[str, int]:
    """offer id -> index into record.items (rewards name their item's offer)."""
    return {record.actions[item.action].group: n for n, item in enumerate(record.items)}


def clip(value: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return lo if value < lo else hi if value > hi else value



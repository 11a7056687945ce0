"""Logged decision -> the bandits examples the learner trains.

The service built `Context(shared features)` and one `Action` per allowed
candidate (decision/stages/policy.py); the learner rebuilds the same objects
from the record alone: `Action(id=label, features=logged features,
value=offer value, priority=offer priority, group=offer id)`.

Multi-item decisions (docs/LEARNING.md, "Several items"): item r is one
example over the actions still available at its rank,
`bandits.sampling.remaining(actions, items before r)` (the sampler's own
rule: an offer chosen at an earlier rank removes all its actions), with the
conditional probability the item was logged with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bandits.policy import Action, Context
from bandits.sampling import remaining
from decision.catalog import Catalog
from decision.records import DecisionRecord, LoggedAction, LoggedItem, LoggedRemoval

try:  # 2-3x faster on the learner's hot path; plain json otherwise
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads


FeatureCache = dict[tuple[str, str, str, str], Any]


def decode_decision(raw: str | bytes, features: FeatureCache | None = None) -> DecisionRecord:
    """DecisionRecord.from_json, with the faster JSON parser when installed.

    Mirrors records.py field by field (a test checks that both agree);
    records.py stays the contract. With `features`, each action's features
    mapping is interned by (catalog version, offer, content, channel): the
    same candidate's features are the same in every record of a catalog
    version (decision/features.py), so a pending decision holds one shared
    copy instead of its own (29 KiB -> ~4 KiB per pending decision with 20
    actions, and far fewer live objects for the garbage collector).
    """
    d = _loads(raw)
    if d.get("v") != 1:
        raise ValueError(f"unsupported decision record version {d.get('v')!r}")
    version = d["catalog_version"]
    if features is None:
        actions = tuple(
            LoggedAction(a["offer"], a["content"], a["channel"], a["features"], float(a["p"]), float(a["score"]))
            for a in d["actions"]
        )
    else:
        if len(features) > 200_000:
            features.clear()
        out = []
        for a in d["actions"]:
            key = (version, a["offer"], a["content"], a["channel"])
            f = features.get(key)
            if f is None:
                f = features[key] = a["features"]
            out.append(LoggedAction(key[1], key[2], key[3], f, float(a["p"]), float(a["score"])))
        actions = tuple(out)
    return DecisionRecord(
        decision_id=d["decision_id"],
        ts_ms=int(d["ts_ms"]),
        placement=d["placement"],
        arm=d["arm"],
        policy=d["policy"],
        model_version=d["model_version"],
        catalog_version=version,
        person=d["person"],
        anonymous=bool(d["anonymous"]),
        assignment=d["assignment"],
        context=d["context"],
        actions=actions,
        items=tuple(LoggedItem(int(i["rank"]), int(i["action"]), float(i["p"]), float(i["score"])) for i in d["items"]),
        fallback=bool(d["fallback"]),
        removed=tuple(LoggedRemoval(*r) for r in d.get("removed", ())),
        request_id=d.get("request_id", ""),
        join_window_s=int(d.get("join_window_s", 86_400)),
        default_reward=float(d.get("default_reward", 0.0)),
        simulated=bool(d.get("simulated", False)),
    )


@dataclass(frozen=True, slots=True)
class ItemExample:
    """One training example: item `rank` of a decision."""

    rank: int
    context: Context
    actions: tuple[Action, ...]  # the actions available at this rank
    chosen: int  # index into `actions`
    probability: float  # logged, conditional on the items ranked before


class Actions:
    """Interns the Action objects of logged records.

    An action's features are a function of the catalog version and the
    candidate (decision/features.py builds them once per catalog version), so
    (catalog version, offer, content, channel) names one Action. Reusing the
    object lets bandits.vw reuse its cached example line: measured in
    docs/BANDITS.md, the difference between 13,000 and 24,000 examples/s.
    """

    LIMIT = 20_000

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog
        self._cache: dict[tuple[str, str, str, str], Action] = {}
        # id(features) -> Action: records decoded with interned features
        # (decode_decision) find their Action with one int lookup; the entry
        # holds the features, so the id cannot be reused while it exists.
        self._by_features: dict[int, Action] = {}

    def set_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._cache.clear()  # value/priority may have changed
        self._by_features.clear()

    def get(self, catalog_version: str, a: LoggedAction) -> Action:
        key = (catalog_version, a.offer_id, a.content_id, a.channel)
        action = self._cache.get(key)
        if action is None:
            offer = self.catalog.offers.get(a.offer_id) if self.catalog is not None else None
            action = Action(
                id=f"{a.offer_id}/{a.content_id}@{a.channel}",
                features=a.features,
                value=offer.value if offer is not None else 0.0,
                priority=offer.priority if offer is not None else 1.0,
                group=a.offer_id,
            )
            if len(self._cache) >= self.LIMIT:
                self._cache.clear()
                self._by_features.clear()
            self._cache[key] = action
        return action

    def of(self, record: DecisionRecord) -> tuple[Action, ...]:
        by_features = self._by_features
        out = []
        for a in record.actions:
            f = a.features
            action = by_features.get(id(f))
            if action is None or action.features is not f or action.group != a.offer_id:
                action = self.get(record.catalog_version, a)
                if action.features is f:
                    by_features[id(f)] = action
            out.append(action)
        return tuple(out)


def item_examples(record: DecisionRecord, actions: tuple[Action, ...]) -> list[ItemExample]:
    """One example per logged item, in rank order."""
    context = Context(record.context)
    out: list[ItemExample] = []
    before: list[int] = []
    for item in sorted(record.items, key=lambda i: i.rank):
        if before:
            available = remaining(actions, before)
            chosen = available.index(item.action)
            out.append(ItemExample(item.rank, context, tuple(actions[i] for i in available), chosen,
                                   item.probability))
        else:
            out.append(ItemExample(item.rank, context, actions, item.action, item.probability))
        before.append(item.action)
    return out


def refused_at_commit(record: DecisionRecord) -> bool:
    """A sampled item lost its reservation at commit: the survivors were
    renumbered, so their logged conditional probabilities no longer describe
    the draws (decision/join.py excludes these too)."""
    return any(r.stage == "commit" for r in record.removed)


def full_support(record: DecisionRecord) -> bool:
    """Every allowed action had a positive rank-1 probability: the record can
    evaluate any policy off-line (IPS needs the logging policy's support)."""
    return bool(record.actions) and all(a.probability > 0.0 for a in record.actions)


def greedy(record: DecisionRecord) -> tuple[bool, float]:
    """(the rank-1 item was the logging policy's unique most probable action,
    that top probability). A flat distribution is never "greedy": a model
    that stays uniform shows a greedy share of 0 and a top p of 1/n."""
    probs = [a.probability for a in record.actions]
    top = max(probs)
    first = min(record.items, key=lambda i: i.rank)
    return probs[first.action] == top and probs.count(top) == 1, top


def reward_items(record: DecisionRecord) -> Mapping[str, int]:
    """offer id -> index into record.items (rewards name their item's offer)."""
    return {record.actions[item.action].offer_id: n for n, item in enumerate(record.items)}


def clip(value: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return lo if value < lo else hi if value > hi else value



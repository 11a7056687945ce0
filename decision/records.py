"""The log record: the contract between serving and learning.

One versioned record per decision and per reward event, written as JSON into
Redis Streams (see store/keys.py). Export, off-policy evaluation and the
learner read only these types. Bump `VERSION` on any incompatible change and
keep `from_json` able to read every older version.

Multi-item semantics: a decision of k items is a sequence of k choices
without replacement among *distinct offers*. `items[i].probability` is the
probability of choosing that action at rank i+1 given the items ranked before
it (the product over ranks is the probability of the whole slate). Rewards
name the item they are for; each item is learned as its own example over the
actions still available at its rank.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

# namespace -> feature name -> value (never a raw personal identifier)
Features = Mapping[str, Mapping[str, Any]]

VERSION = 1


@dataclass(frozen=True, slots=True)
class LoggedAction:
    offer_id: str
    content_id: str
    channel: str
    features: Features
    # The policy's distribution at rank 1 over all allowed actions, and score.
    probability: float
    score: float


@dataclass(frozen=True, slots=True)
class LoggedItem:
    rank: int  # 1-based
    action: int  # index into DecisionRecord.actions
    probability: float  # conditional on the items ranked before
    score: float


@dataclass(frozen=True, slots=True)
class LoggedRemoval:
    offer_id: str
    content_id: str
    channel: str
    stage: str
    rule: str


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    decision_id: str
    ts_ms: int
    placement: str
    arm: str
    policy: str
    model_version: str
    catalog_version: str
    # Keyed hash of the person key (pseudonym), never the raw id by default.
    person: str
    anonymous: bool
    # "person": arm from a stable hash of the person; "request": per-request
    # arm for visitors without a stable id.
    assignment: str
    context: Features
    actions: tuple[LoggedAction, ...]
    items: tuple[LoggedItem, ...]
    fallback: bool
    removed: tuple[LoggedRemoval, ...] = ()
    request_id: str = ""
    join_window_s: int = 86_400
    default_reward: float = 0.0
    # True when the decision ran at a simulated "as of" time.
    simulated: bool = False
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": self.version,
                "decision_id": self.decision_id,
                "ts_ms": self.ts_ms,
                "placement": self.placement,
                "arm": self.arm,
                "policy": self.policy,
                "model_version": self.model_version,
                "catalog_version": self.catalog_version,
                "person": self.person,
                "anonymous": self.anonymous,
                "assignment": self.assignment,
                "context": self.context,
                "actions": [
                    {
                        "offer": a.offer_id,
                        "content": a.content_id,
                        "channel": a.channel,
                        "features": a.features,
                        "p": a.probability,
                        "score": a.score,
                    }
                    for a in self.actions
                ],
                "items": [
                    {"rank": i.rank, "action": i.action, "p": i.probability, "score": i.score}
                    for i in self.items
                ],
                "fallback": self.fallback,
                "removed": [[r.offer_id, r.content_id, r.channel, r.stage, r.rule] for r in self.removed],
                "request_id": self.request_id,
                "join_window_s": self.join_window_s,
                "default_reward": self.default_reward,
                "simulated": self.simulated,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "DecisionRecord":
        d = json.loads(text)
        if d.get("v") != 1:
            raise ValueError(f"unsupported decision record version {d.get('v')!r}")
        return cls(
            decision_id=d["decision_id"],
            ts_ms=int(d["ts_ms"]),
            placement=d["placement"],
            arm=d["arm"],
            policy=d["policy"],
            model_version=d["model_version"],
            catalog_version=d["catalog_version"],
            person=d["person"],
            anonymous=bool(d["anonymous"]),
            assignment=d["assignment"],
            context=d["context"],
            actions=tuple(
                LoggedAction(a["offer"], a["content"], a["channel"], a["features"], float(a["p"]), float(a["score"]))
                for a in d["actions"]
            ),
            items=tuple(LoggedItem(int(i["rank"]), int(i["action"]), float(i["p"]), float(i["score"])) for i in d["items"]),
            fallback=bool(d["fallback"]),
            removed=tuple(LoggedRemoval(*r) for r in d.get("removed", ())),
            request_id=d.get("request_id", ""),
            join_window_s=int(d.get("join_window_s", 86_400)),
            default_reward=float(d.get("default_reward", 0.0)),
            simulated=bool(d.get("simulated", False)),
        )


@dataclass(frozen=True, slots=True)
class RewardRecord:
    event_id: str
    decision_id: str
    ts_ms: int  # when the service accepted it
    occurred_ms: int  # when it happened
    placement: str
    arm: str
    policy: str
    offer_id: str
    rank: int
    event_type: str
    value: float | None  # raw value sent by the caller, if any
    reward: float  # value after the placement's reward function
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": self.version,
                "event_id": self.event_id,
                "decision_id": self.decision_id,
                "ts_ms": self.ts_ms,
                "occurred_ms": self.occurred_ms,
                "placement": self.placement,
                "arm": self.arm,
                "policy": self.policy,
                "offer": self.offer_id,
                "rank": self.rank,
                "event_type": self.event_type,
                "value": self.value,
                "reward": self.reward,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "RewardRecord":
        d = json.loads(text)
        if d.get("v") != 1:
            raise ValueError(f"unsupported reward record version {d.get('v')!r}")
        return cls(
            event_id=d["event_id"],
            decision_id=d["decision_id"],
            ts_ms=int(d["ts_ms"]),
            occurred_ms=int(d["occurred_ms"]),
            placement=d["placement"],
            arm=d["arm"],
            policy=d["policy"],
            offer_id=d["offer"],
            rank=int(d["rank"]),
            event_type=d["event_type"],
            value=None if d.get("value") is None else float(d["value"]),
            reward=float(d["reward"]),
        )

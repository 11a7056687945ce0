"""Synthetic decision and reward logs with a known truth, and a catalog that
matches them: for tests, the docs' examples and trying the commands without
running the service. Records are built exactly as the service logs them
(decision/records.py) and drawn with the bandits library's own policies and
sampler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bandits.policy import Action, Context
from bandits.registry import make_policy
from bandits.sampling import choose_slate
from decision.records import DecisionRecord, LoggedAction, LoggedItem, LoggedRemoval, RewardRecord

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

CATALOG = """\
version: 1
channels:
  - id: web
policies:
  - name: uniform
    kind: uniform
  - name: greedy_fixed
    kind: fixed_priority
    params: {epsilon: 0.2}
offers:
  - id: o1
    name: Offer one
    value: 1
    priority: 3
    caps:
      - {scope: offer, limit: 3, window: 1d}
    contents:
      - {id: c1, channel: web}
  - id: o2
    name: Offer two
    value: 1
    priority: 2
    contents:
      - {id: c2, channel: web}
  - id: o3
    name: Offer three
    value: 1
    priority: 1
    contents:
      - {id: c3, channel: web}
placements:
  - id: banner
    channels: [web]
    max_items: 2
    arms:
      - {name: holdout, policy: uniform, share: 50}
      - {name: champion, policy: greedy_fixed, share: 50}
    reward:
      events: {click: 1}
      window: 1h
      default: 0
      range: [0, 1]
"""

# true click rate of (segment, offer) at rank 1; rank 2 clicks at half that
TRUTH: Mapping[tuple[str, str], float] = {
    ("a", "o1"): 0.7, ("a", "o2"): 0.2, ("a", "o3"): 0.1,
    ("b", "o1"): 0.1, ("b", "o2"): 0.3, ("b", "o3"): 0.6,
}
OFFERS = ("o1", "o2", "o3")
PRIORITY = {"o1": 3.0, "o2": 2.0, "o3": 1.0}


@dataclass(frozen=True)
class SyntheticLogs:
    decisions: list[DecisionRecord]
    rewards: list[RewardRecord]
    truth: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(TRUTH))


def action_features(offer: str) -> dict[str, dict[str, object]]:
    n = offer[1:]
    return {"offer": {"id": offer, "value": 1.0, "margin": 0.0}, "content": {"id": f"c{n}"},
            "channel": {"id": "web"}}


def true_value(choose: Mapping[str, str], segments: Sequence[str] = ("a", "b")) -> float:
    """Expected rank-1 reward of a deterministic policy segment -> offer
    (segments equally likely)."""
    return float(np.mean([TRUTH[(s, choose[s])] for s in segments]))


def make_logs(n: int, *, seed: int = 0, arms: Sequence[tuple[str, str, Mapping]] = (
        ("holdout", "uniform", {}), ("champion", "fixed_priority", {"epsilon": 0.2})),
        placement: str = "banner", items: int = 2, start_ms: int = START_MS, step_ms: int = 60_000,
        window_s: int = 3600, late_every: int = 0, removed_every: int = 0, new_version_every: int = 0
        ) -> SyntheticLogs:
    """n decisions, one a `step_ms` apart, arms taking turns; rewards from TRUTH.

    late_every k: every k-th clicked item's event arrives after the window.
    removed_every k: every k-th decision logs a pressure removal of o1.
    new_version_every k: the logged model version changes every k decisions
    (as when a learner publishes snapshots; the policy itself stays).
    """
    rng = np.random.default_rng(seed)
    policies = [(name, make_policy(kind, name, params)) for name, kind, params in arms]
    decisions: list[DecisionRecord] = []
    rewards: list[RewardRecord] = []
    features = {o: action_features(o) for o in OFFERS}
    actions = [Action(f"{o}/c{o[1:]}@web", features[o], value=1.0, priority=PRIORITY[o], group=o) for o in OFFERS]
    for i in range(n):
        arm, policy = policies[i % len(policies)]
        segment = "a" if rng.random() < 0.5 else "b"
        shared = {"user": {"segment": segment, "age": float(rng.integers(18, 70))}, "context": {"page": "home"}}
        ctx = Context(shared)
        first = policy.rank(ctx, actions)
        slate = choose_slate(policy, ctx, actions, items, rng, first=first)
        ts = start_ms + i * step_ms
        did = f"d{i:06d}"
        removed = ()
        if removed_every and i % removed_every == 0:
            removed = (LoggedRemoval("o1", "c1", "web", "pressure", "cap:offer:1d"),)
        decisions.append(DecisionRecord(
            decision_id=did, ts_ms=ts, placement=placement, arm=arm, policy=policy.name,
            model_version=policy.version + (f"#{i // new_version_every}" if new_version_every else ""),
            catalog_version="synthetic", person=f"{i % 97:032x}", anonymous=False,
            assignment="person", context=shared,
            actions=tuple(LoggedAction(o, f"c{o[1:]}", "web", features[o], float(p), float(s))
                          for o, p, s in zip(OFFERS, first.probabilities, first.scores)),
            items=tuple(LoggedItem(s.rank, s.index, s.probability, s.score) for s in slate),
            fallback=False, removed=removed, join_window_s=window_s, default_reward=0.0))
        for s in slate:
            offer = OFFERS[s.index]
            rate = TRUTH[(segment, offer)] * (1.0 if s.rank == 1 else 0.5)
            if rng.random() < rate:
                late = late_every and (len(rewards) % late_every == 0)
                at = ts + (window_s * 1000 + 5_000 if late else 30_000)
                rewards.append(RewardRecord(
                    event_id=f"e{len(rewards)}", decision_id=did, ts_ms=at, occurred_ms=at, placement=placement,
                    arm=arm, policy=policy.name, offer_id=offer, rank=s.rank, event_type="click", value=None,
                    reward=1.0))
    return SyntheticLogs(decisions, rewards)


async def write_logs(redis, logs: SyntheticLogs) -> None:
    """Into the real streams, as the service writes them (decision/logs.py)."""
    from decision.logs import Logs

    writer = Logs(redis)
    for d in logs.decisions:
        await redis.xadd(writer.config.decision_stream, {"r": d.to_json()})
    for r in logs.rewards:
        await writer.write_reward(r)

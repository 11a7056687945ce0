"""Policy: experiment arm -> contextual bandit -> probabilities -> sampled items.

Rules decided what is allowed; this stage decides what is best among it.
Every choice carries the probability it had, so any policy can be evaluated
offline against these logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from bandits.experiment import assign_arm, request_arm
from bandits.policy import Action, Context
from bandits.sampling import choose_slate
from decision.features import action_features, shared_features
from decision.policies import PolicyBook
from decision.catalog import Arm, Catalog, Placement
from decision.domain import Candidate
from decision.stages import Situation

STAGE = "policy"


@dataclass(frozen=True, slots=True)
class Pick:
    candidate: Candidate
    index: int  # into PolicyOutcome.candidates
    rank: int
    probability: float  # conditional on the items ranked before
    score: float


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    arm: str
    policy: str
    model_version: str
    assignment: str  # "person" | "request"
    context: Mapping[str, Mapping[str, Any]]
    candidates: tuple[Candidate, ...]
    action_features: tuple[Mapping[str, Mapping[str, Any]], ...]
    # rank-1 distribution and scores over all candidates
    probabilities: tuple[float, ...]
    scores: tuple[float, ...]
    picks: tuple[Pick, ...]


def pick_arm(situation: Situation, rng: np.random.Generator) -> tuple[Arm, str]:
    arms = situation.placement.arms
    if len(arms) == 1:
        return arms[0], "person"
    shares, by_name = _arm_shares(situation.catalog, situation.placement)
    if situation.request.identity.stable:
        name = assign_arm(situation.counted_key, situation.placement.salt, shares)
        assignment = "person"
    else:
        name = request_arm(rng, shares)
        assignment = "request"
    return by_name[name], assignment


def _arm_shares(catalog: Catalog, placement: Placement) -> tuple[tuple[tuple[str, float], ...], dict[str, Arm]]:
    """The placement's (name, share) pairs and its arms by name, built once
    per catalog (catalog.memo): the same tuple on every request, which
    assign_arm checks once. The entry keeps its placement alive, so the id
    stays its own."""
    key = ("arm_shares", id(placement))
    hit = catalog.memo.get(key)
    if hit is not None and hit[0] is placement:
        return hit[1], hit[2]
    shares = tuple([(a.name, a.share) for a in placement.arms])
    by_name = {a.name: a for a in placement.arms}  # unique: assign_arm and request_arm refuse repeats
    catalog.memo[key] = (placement, shares, by_name)
    return shares, by_name


def actions_of(catalog: Catalog, candidates: tuple[Candidate, ...]) -> tuple[Action, ...]:
    """The candidates' Actions, each built once per catalog (catalog.memo):
    the same objects come back on every request, and the VW policy caches
    its parsed examples by Action identity. An entry keeps its candidate
    alive, so the id stays its own."""
    memo = catalog.memo.get("actions")
    if memo is None:
        memo = catalog.memo["actions"] = {}
    out = []
    for c in candidates:
        hit = memo.get(id(c))
        if hit is None or hit[0] is not c:
            offer = catalog.offers[c.offer_id]
            hit = memo[id(c)] = (c, Action(id=c.label, features=action_features(catalog, c), value=offer.value,
                                           priority=offer.priority, group=c.offer_id))
        out.append(hit[1])
    return tuple(out)


def choose(situation: Situation, allowed: tuple[Candidate, ...], book: PolicyBook,
           rng: np.random.Generator, count: int) -> PolicyOutcome:
    arm, assignment = pick_arm(situation, rng)
    policy = book.get(situation.placement.id, arm.name)
    catalog = situation.catalog
    shared = shared_features(situation.profile, situation.request.context, situation.now_ms)
    if not allowed:
        return PolicyOutcome(arm.name, policy.name, policy.version, assignment, shared, (), (), (), (), ())
    actions = actions_of(catalog, allowed)
    feats = tuple([a.features for a in actions])
    context = Context(shared)
    first = policy.rank(context, actions)
    slate = choose_slate(policy, context, actions, count, rng, first=first)
    picks = tuple(
        Pick(allowed[s.index], s.index, s.rank, float(s.probability), float(s.score)) for s in slate
    )
    return PolicyOutcome(
        arm=arm.name,
        policy=policy.name,
        model_version=policy.version,
        assignment=assignment,
        context=shared,
        candidates=allowed,
        action_features=feats,
        probabilities=tuple(first.probabilities.tolist()),  # Python floats, as float() of each gives
        scores=tuple(first.scores.tolist()),
        picks=picks,
    )

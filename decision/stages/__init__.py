"""The stages of the decide pipeline, one module each.

A filtering stage is a pure function `apply(situation, candidates) ->
StageResult`: the survivors, plus one Removal per dropped candidate naming the
stage and the exact rule. Those removals are what `explain` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from decision.catalog import Catalog, Placement
from decision.domain import DecideRequest, Profile


@dataclass(frozen=True, slots=True)
class Situation:
    """What every stage may read about the decision being made."""

    request: DecideRequest
    catalog: Catalog
    placement: Placement
    # The profile the decision personalizes from: the resolved person, or the
    # visitor's own (anonymous) profile when there is no link or joining is
    # not allowed.
    profile: Profile
    # The person key pressure is counted on (explain names it).
    counted_key: str
    anonymous: bool
    now_ms: int
    # Offers whose global budget a recent reservation found spent (the
    # pipeline's memo, re-probed every minute): removed before the policy
    # chooses, so the next best offer is served instead of the fallback.
    spent_budgets: frozenset[str] = frozenset()

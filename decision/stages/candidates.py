"""Candidates: placement -> offer x content x channel, within validity dates
and the channels the caller asked for."""

from __future__ import annotations

from decision.domain import Candidate, Removal, StageResult
from decision.stages import Situation

STAGE = "candidates"


def apply(situation: Situation, candidates: tuple[Candidate, ...]) -> StageResult:
    requested = set(situation.request.channels)
    now = situation.now_ms
    offers = situation.catalog.offers
    survivors: list[Candidate] = []
    removed: list[Removal] = []
    for c in candidates:
        offer = offers[c.offer_id]
        if requested and c.channel not in requested:
            removed.append(Removal(c, STAGE, "channel not requested", f"caller asked for {', '.join(sorted(requested))}"))
        elif offer.valid_from_ms is not None and now < offer.valid_from_ms:
            removed.append(Removal(c, STAGE, "validity: not yet valid", f"valid from {offer.valid_from_ms} ms"))
        elif offer.valid_until_ms is not None and now >= offer.valid_until_ms:
            removed.append(Removal(c, STAGE, "validity: expired", f"valid until {offer.valid_until_ms} ms"))
        else:
            survivors.append(c)
    return StageResult(tuple(survivors), tuple(removed))

"""Eligibility: the CEL rules of the placement, the offer and the content.

All three apply to a candidate, in that order; the first that is false (or
fails) removes it. A placement rule that is false removes every candidate.
A rule that fails on this profile (missing attribute, wrong type in the
data) removes the candidates it guards with "eligibility error: ...", and
the request goes on.

Each distinct rule is evaluated once per request, per offer when it reads
`offer` and per channel when it reads `channel` (see rules.Evaluator).
"""

from __future__ import annotations

from decision.catalog import Rule
from decision.domain import Candidate, Removal, StageResult
from decision.rules import CompiledRule, Evaluator, RuleError, RuleEvaluationError, compiled
from decision.stages import Situation

STAGE = "eligibility"
FALSE = "rule is false for this profile"


def _label(owner: str, rule: Rule) -> str:
    return f"{owner}: {' '.join(rule.text.split())}"


_UNSEEN = object()


def _plan(catalog, placement, c: Candidate) -> tuple[tuple[str, Rule], ...]:
    """The candidate's rules as (label, rule), built once per catalog
    (catalog.memo; the entry keeps its candidate alive, so the id stays its own)."""
    key = ("eligibility", id(c), placement.id)
    hit = catalog.memo.get(key)
    if hit is not None and hit[0] is c:
        return hit[1]
    offer = catalog.offers[c.offer_id]
    content = catalog.contents.get(c.content_id)
    plan = []
    if placement.eligibility is not None:
        plan.append((_label(f"placement {placement.id}", placement.eligibility), placement.eligibility))
    if offer.eligibility is not None:
        plan.append((_label(f"offer {offer.id}", offer.eligibility), offer.eligibility))
    if content is not None and content.eligibility is not None:
        plan.append((_label(f"content {content.id}", content.eligibility), content.eligibility))
    built = tuple(plan)
    catalog.memo[key] = (c, built)
    return built


def apply(situation: Situation, candidates: tuple[Candidate, ...]) -> StageResult:
    catalog = situation.catalog
    placement = situation.placement
    # Each candidate's rules as (label, rule), and the distinct compiled rules.
    plans = [_plan(catalog, placement, c) for c in candidates]
    programs: dict[int, CompiledRule | RuleError] = {}
    for plan in plans:
        for _, rule in plan:
            if id(rule) not in programs:
                try:
                    programs[id(rule)] = compiled(rule)
                except RuleError as e:
                    programs[id(rule)] = e
    if not programs:
        return StageResult(candidates)

    evaluator = Evaluator(situation.profile, situation.request.context, situation.now_ms)
    evaluator.prepare(p for p in programs.values() if isinstance(p, CompiledRule))
    # A rule's verdict depends on the offer only when it reads `offer`, on the
    # channel only when it reads `channel`: (rule, offer?, channel?) -> None
    # (true) or why the candidate goes, worked out once per request.
    reads = {rid: (p.uses_offer, p.uses_channel) for rid, p in programs.items() if isinstance(p, CompiledRule)}
    verdicts: dict[tuple[int, str | None, str | None], str | None] = {}
    offers = catalog.offers
    survivors: list[Candidate] = []
    removed: list[Removal] = []
    for c, plan in zip(candidates, plans):
        reason: Removal | None = None
        for label, rule in plan:
            rid = id(rule)
            program = programs[rid]
            if isinstance(program, RuleError):
                reason = Removal(c, STAGE, label, f"eligibility error: {program}")
                break
            by_offer, by_channel = reads[rid]
            key = (rid, c.offer_id if by_offer else None, c.channel if by_channel else None)
            verdict = verdicts.get(key, _UNSEEN)
            if verdict is _UNSEEN:
                try:
                    verdict = None if evaluator.evaluate(program, offers[c.offer_id], c.channel) else FALSE
                except (RuleError, RuleEvaluationError) as e:
                    verdict = f"eligibility error: {e}"
                verdicts[key] = verdict
            if verdict is not None:
                reason = Removal(c, STAGE, label, verdict)
                break
        if reason is None:
            survivors.append(c)
        else:
            removed.append(reason)
    return StageResult(tuple(survivors), tuple(removed))

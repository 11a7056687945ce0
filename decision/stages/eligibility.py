"""Eligibility: the CEL rules of the placement, the offer and the content.

All three apply to a candidate, in that order; the first that is false (or
fails) removes it. A placement rule that is false removes every candidate.
A rule that fails on this profile (missing attribute, wrong type in the
data) removes the candidates it guards with "eligibility error: ...", and
the request goes on.

Each distinct rule (by text: offers that repeat a rule share it) is
evaluated once per request, per offer when it reads `offer` and per channel
when it reads `channel` (see rules.Evaluator), and its verdict is shared by
the candidates it guards. What does not depend on the request (each
candidate's rules and labels, the fields to convert for a set of rules) is
worked out once per catalog: see _Plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from decision.catalog import Offer, Placement, Rule
from decision.domain import Candidate, Removal, StageResult
from decision.rules import CompiledRule, Evaluator, RuleError, RuleEvaluationError, compiled, selected_fields
from decision.stages import Situation

STAGE = "eligibility"
FALSE = "rule is false for this profile"


def _label(owner: str, rule: Rule) -> str:
    return f"{owner}: {' '.join(rule.text.split())}"


_UNSEEN = object()
# Candidates and rule sets kept per placement (see _Plans): past this many a
# table starts over rather than grow (callers may build their own candidates).
_MAX_ENTRIES = 4096

# A candidate as planned: itself, its offer, its steps as (label, verdict
# index, compiled rule or None) in the order they apply, the bits of its rules.
_Entry = tuple[Candidate, Offer, tuple[tuple[str, int, CompiledRule | None], ...], int]


@dataclass(slots=True)
class _Plans:
    """What eligibility knows of a placement without looking at a profile:
    built once per catalog (catalog.memo), grown as candidates are first seen.

    Each (rule, offer if the rule reads `offer`, channel if it reads
    `channel`) has one verdict per request: None (the rule is true) or why
    the candidates it guards go. A request keeps them in a list, by index;
    `first` is that list before anything is evaluated, where the verdict of
    a rule that does not compile is already known.
    """

    placement: Placement
    # id(candidate) -> its entry, which keeps it alive: the id stays its own
    candidates: dict[int, _Entry] = field(default_factory=dict)
    # id(rule) -> (the rule, kept likewise; its bit; its compiled form, or
    # None when it does not compile; then the verdict it gets)
    rules: dict[int, tuple[Rule, int, CompiledRule | None, str]] = field(default_factory=dict)
    # (id(compiled rule), offer?, channel?) -> verdict index (id(rule) if it does not compile)
    verdicts: dict[tuple[int, str | None, str | None], int] = field(default_factory=dict)
    first: list[object] = field(default_factory=list)
    # bits of a request's rules -> the map fields its Evaluator converts
    fields: dict[int, dict[str, frozenset[str] | None]] = field(default_factory=dict)


def _plans(catalog, placement) -> _Plans:
    key = ("eligibility", placement.id)
    plans = catalog.memo.get(key)
    if plans is None or plans.placement is not placement:
        plans = catalog.memo[key] = _Plans(placement)
    return plans


def _rule(plans: _Plans, rule: Rule) -> tuple[Rule, int, CompiledRule | None, str]:
    known = plans.rules.get(id(rule))
    if known is None:
        bit = 1 << len(plans.rules)
        try:
            known = (rule, bit, compiled(rule), "")
        except RuleError as e:
            known = (rule, bit, None, f"eligibility error: {e}")
        plans.rules[id(rule)] = known
    return known


def _plan(plans: _Plans, catalog, placement, c: Candidate) -> _Entry:
    """The candidate's entry in `plans.candidates`, made on first sight."""
    hit = plans.candidates.get(id(c))
    if hit is not None and hit[0] is c:
        return hit
    if len(plans.candidates) >= _MAX_ENTRIES:
        plans.candidates.clear()
    offer = catalog.offers[c.offer_id]
    content = catalog.contents.get(c.content_id)
    owned: list[tuple[str, Rule]] = []
    if placement.eligibility is not None:
        owned.append((f"placement {placement.id}", placement.eligibility))
    if offer.eligibility is not None:
        owned.append((f"offer {offer.id}", offer.eligibility))
    if content is not None and content.eligibility is not None:
        owned.append((f"content {content.id}", content.eligibility))
    steps = []
    bits = 0
    for owner, rule in owned:
        _, bit, program, error = _rule(plans, rule)
        bits |= bit
        # Rules of one text share their compiled form (the catalog loader), so a
        # rule that many offers repeat has one verdict, not one per offer.
        key = (id(rule), None, None) if program is None else (
            id(program), c.offer_id if program.uses_offer else None, c.channel if program.uses_channel else None)
        index = plans.verdicts.get(key)
        if index is None:
            index = plans.verdicts[key] = len(plans.first)
            plans.first.append(_UNSEEN if program is not None else error)
        steps.append((_label(owner, rule), index, program))
    entry = (c, offer, tuple(steps), bits)
    plans.candidates[id(c)] = entry
    return entry


def _fields(plans: _Plans, bits: int) -> dict[str, frozenset[str] | None]:
    """What Evaluator.prepare would work out for the rules in `bits`."""
    hit = plans.fields.get(bits)
    if hit is None:
        if len(plans.fields) >= _MAX_ENTRIES:
            plans.fields.clear()
        rules = [p for _, bit, p, _ in plans.rules.values() if bits & bit and p is not None]
        hit = plans.fields[bits] = selected_fields(rules)
    return hit


def apply(situation: Situation, candidates: tuple[Candidate, ...]) -> StageResult:
    catalog = situation.catalog
    placement = situation.placement
    plans = _plans(catalog, placement)
    entries = [_plan(plans, catalog, placement, c) for c in candidates]
    bits = 0
    for entry in entries:
        bits |= entry[3]
    if not bits:
        return StageResult(candidates)

    evaluator = Evaluator(situation.profile, situation.request.context, situation.now_ms)
    evaluator.expect(_fields(plans, bits))
    verdicts = plans.first.copy()
    survivors: list[Candidate] = []
    removed: list[Removal] = []
    for c, offer, steps, _ in entries:
        for label, index, program in steps:
            verdict = verdicts[index]
            if verdict is _UNSEEN:
                try:
                    verdict = None if evaluator.evaluate(program, offer, c.channel) else FALSE
                except (RuleError, RuleEvaluationError) as e:
                    verdict = f"eligibility error: {e}"
                verdicts[index] = verdict
            if verdict is not None:
                removed.append(Removal(c, STAGE, label, verdict))
                break
        else:
            survivors.append(c)
    return StageResult(tuple(survivors), tuple(removed))

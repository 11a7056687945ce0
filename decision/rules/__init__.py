"""Eligibility rules: CEL expressions over the profile, its events and the
request context, compiled once at catalog load and evaluated per request.

    compile_rule(text) -> CompiledRule      raises RuleError(message, column)
    Evaluator(profile, context, now_ms)     one per request
        .evaluate(rule, offer, channel) -> bool   raises RuleEvaluationError

The language reference is docs/RULES.md.
"""

from decision.rules.engine import (
    NATIVE_FUNCTIONS,
    VARIABLES,
    CompiledRule,
    Evaluator,
    RuleError,
    RuleEvaluationError,
    compile_rule,
    compiled,
    offer_map,
    selected_fields,
)
from decision.rules.helpers import HELPERS, NEVER_DAYS, PURCHASE_TYPES

__all__ = [
    "HELPERS",
    "NATIVE_FUNCTIONS",
    "NEVER_DAYS",
    "PURCHASE_TYPES",
    "VARIABLES",
    "CompiledRule",
    "Evaluator",
    "RuleError",
    "RuleEvaluationError",
    "compile_rule",
    "compiled",
    "offer_map",
    "selected_fields",
]

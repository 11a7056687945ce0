"""Eligibility rules in CEL: compile once at catalog load, evaluate per request.

The engine is `cel` (common-expression-language, Rust bindings of the `cel`
crate), chosen by measurement over cel-python: see docs/RULES.md and
`python -m decision.rules.bench`.

The Rust library has no type checker, so `compile_rule` adds checks of its
own: a static pass (unknown variables, unknown functions, helper arity,
literal durations) that can point at a column, and a check pass that
evaluates the rule once against an empty profile, where every data-dependent
lookup fails with "no such key" while type errors in the rest of the
expression (`offer.value + 1`, `duration("1h") > 1`, a helper given a string
for a duration) surface. What still depends on profile data can only fail at
run time; the eligibility stage then removes the offer with the error.

Per request, an `Evaluator` builds the activation lazily: a variable is
converted into CEL values only when a rule evaluated in this request reads it
(conversion, not evaluation, is what costs: ~0.7 us per string), and each
distinct rule is evaluated once per (rule, offer if the rule reads `offer`,
channel if it reads `channel`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

import cel
from cel.stdlib import STDLIB_FUNCTIONS

from decision.catalog import Offer
from decision.domain import Profile, Value
from decision.errors import Code, NbaError
from decision.rules.fast import OFFER_FIELDS, Defer, Fast, compile_fast, consent_value
from decision.rules.helpers import EVENT_HELPERS, EVENTS_HANDLE, HELPERS, BoundHelpers
from decision.rules.timezone import BadTimezone, local_time

# What a rule can read. Documented in docs/RULES.md.
VARIABLES = ("profile", "segments", "consent", "events", "context", "now", "local_hour", "channel", "offer")
_VARIABLES = frozenset(VARIABLES)
# Per-candidate variables: part of the evaluation cache key when read.
_PER_CANDIDATE = frozenset({"offer", "channel"})

# Functions of the cel crate itself (member functions included). Macros
# (has, all, exists, exists_one, map, filter) are expanded by the parser and
# never reach the function list.
NATIVE_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches",
    "int", "uint", "double", "string", "bytes", "dyn", "type",
    "duration", "timestamp",
    "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getMonth",
    "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    "of", "none", "ofNonZeroValue", "hasValue", "value", "or", "orValue",
})
# Namespaces of dotted functions (`math.greatest`): the crate reports the
# namespace as a variable and the last part as the function.
_NAMESPACES = frozenset({"math", "sets", "base64", "strings", "lists", "optional"})
# cel-go's extension functions that the library ships in Python (lowerAscii,
# math.greatest, ...): registered only on rules that call them.
_STDLIB_SHORT = frozenset(n.rsplit(".", 1)[-1] for n in STDLIB_FUNCTIONS)
_STDLIB_UNDOTTED = frozenset(n for n in STDLIB_FUNCTIONS if "." not in n)

_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_DOTTED_CALL = re.compile(r"(?<![\w.])((?:math|sets|base64|strings|lists)\.\w+)\s*\(")
_MAPS = ("profile", "context", "consent")
_SYNTAX = re.compile(r"<input>:(\d+):(\d+): (.*)")
_HELPER_FAILURE = re.compile(
    r"Python function call failed: (?:\w+Error): (.*?)(?:\. Check function arguments.*)?$", re.S)
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']*)'")


class RuleError(NbaError):
    """A rule that cannot be used: syntax, unknown name, wrong type.

    `line` and `column` are 1-based positions inside the expression text
    (a multi-line YAML block counts its own lines); `column` is None when the
    library cannot tell where (type errors found by the check pass). The
    catalog loader adds the rule's file line and the offer id.
    """

    code = Code.FAILED_PRECONDITION

    def __init__(self, message: str, column: int | None = None, line: int = 1) -> None:
        super().__init__(message)
        self.column = column
        self.line = line

    def __str__(self) -> str:
        if self.column is None:
            return self.message
        where = f"column {self.column}" if self.line == 1 else f"line {self.line}, column {self.column}"
        return f"{where}: {self.message}"


class RuleEvaluationError(Exception):
    """A rule failed on one profile (run time). The message is for explain."""


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    text: str
    program: Any  # cel.Program
    variables: frozenset[str]
    # Python functions the rule calls (helpers and library extensions).
    functions: tuple[str, ...]
    # True when the rule reads `events` itself (events.exists(...), size(events)),
    # not only as the first argument of helpers: the activation must then
    # carry the events as CEL maps.
    native_events: bool
    # For the map variables (profile, context, consent, offer): the fields the
    # rule selects (`profile.age`, `has(profile.tier)`), or None when it uses
    # the map as a whole (`"x" in profile`, `profile["x"]`, `size(profile)`).
    # Only the selected fields are converted into CEL.
    selects: Mapping[str, frozenset[str] | None] = field(default_factory=lambda: MappingProxyType({}))
    # The rule as a Python closure when it only uses what decision/rules/fast.py
    # compiles; it answers or defers to `program`.
    fast: Fast | None = None

    @property
    def uses_offer(self) -> bool:
        return "offer" in self.variables

    @property
    def uses_channel(self) -> bool:
        return "channel" in self.variables


# ---------------------------------------------------------------------------
# Compile


def _mask(text: str) -> str:
    """The text with string literals and comments blanked out (same length),
    so that the regular expressions below only see code."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
            continue
        if ch in "'\"":
            k = i
            while k > 0 and text[k - 1] in "rRbB":
                k -= 1
            raw = "r" in text[k:i].lower()
            quote = text[i:i + 3] if text[i:i + 3] in ("'''", '"""') else ch
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if (text[j] == "\\" and not raw) else 1
            j = min(n, j + len(quote))
            # keep the quotes so that `duration("...")` stays recognisable
            out[i + len(quote):j - len(quote)] = " " * max(0, j - i - 2 * len(quote))
            i = j
            continue
        i += 1
    return "".join(out)


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _error_at(text: str, offset: int | None, message: str) -> RuleError:
    if offset is None or offset < 0:
        return RuleError(message)
    line, col = _position(text, offset)
    return RuleError(message, col, line)


def _find_call(masked: str, name: str) -> int | None:
    m = re.search(r"(?<![\w])" + re.escape(name) + r"\s*\(", masked)
    return m.start() if m else None


def _find_ident(masked: str, name: str) -> int | None:
    m = re.search(r"(?<![\w.])" + re.escape(name) + r"\b", masked)
    return m.start() if m else None


def _call_args(masked: str, open_paren: int) -> int:
    """Number of top-level arguments of the call whose `(` is at open_paren."""
    depth, count, empty = 0, 0, True
    for ch in masked[open_paren:]:
        if ch in "([{":
            depth += 1
            if depth == 1:
                continue
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                break
        elif ch == "," and depth == 1:
            count += 1
            continue
        if depth >= 1 and not ch.isspace():
            empty = False
    return 0 if empty else count + 1


def _selects(masked: str, name: str) -> frozenset[str] | None:
    fields: set[str] = set()
    for m in re.finditer(r"(?<![\w.])" + name + r"\b", masked):
        sel = re.match(r"\s*\.\s*([A-Za-z_]\w*)\b(?!\s*\()", masked[m.end():])
        if sel is None:
            return None
        fields.add(sel.group(1))
    return frozenset(fields)


def _static_checks(text: str, masked: str, program: Any) -> tuple[frozenset[str], tuple[str, ...], bool]:
    bound = set(_MACRO_BINDING.findall(masked))
    variables = set(program.variables())
    unknown_vars = sorted(variables - _VARIABLES - _NAMESPACES - bound)
    if unknown_vars:
        name = unknown_vars[0]
        raise _error_at(text, _find_ident(masked, name),
                        f"unknown variable '{name}' (rules can read: {', '.join(VARIABLES)})")

    functions: list[str] = []
    for m in _DOTTED_CALL.finditer(masked):
        if m.group(1) not in STDLIB_FUNCTIONS:
            raise _error_at(text, m.start(), f"unknown function '{m.group(1)}'")
        functions.append(m.group(1))
    for fn in program.functions():
        if fn[:1] in "_!-@":  # operators
            continue
        # Registering an extension never hides the crate's own overloads:
        # `contains` stays native for strings and the extension adds lists/maps.
        if fn in HELPERS or fn in _STDLIB_UNDOTTED:
            functions.append(fn)
        elif fn not in NATIVE_FUNCTIONS and fn not in _STDLIB_SHORT:
            raise _error_at(text, _find_call(masked, fn), f"unknown function '{fn}'")

    # Helper arity, with the receiver counted when called as a method.
    for name, arity in HELPERS.items():
        for m in re.finditer(r"(?<![\w])" + name + r"\s*\(", masked):
            got = _call_args(masked, m.end() - 1)
            if m.start() > 0 and masked[:m.start()].rstrip().endswith("."):
                got += 1
            if got != arity:
                raise _error_at(text, m.start(), f"{name} takes {arity} argument{'s' if arity > 1 else ''}, got {got}")

    # Literal durations: the commonest mistake is duration("7d").
    for m in re.finditer(r"(?<![\w.])duration\s*\(\s*(['\"])", masked):
        start = m.end()
        end = masked.find(m.group(1), start)
        if end < 0:
            continue
        literal = text[start:end]
        try:
            cel.evaluate(f"duration({m.group(1)}{literal}{m.group(1)})")
        except Exception:
            raise _error_at(text, m.start(),
                            f"invalid duration \"{literal}\": use h, m, s, ms (7 days is duration(\"168h\"))") from None

    native_events = False
    if "events" in variables:
        for m in re.finditer(r"(?<![\w.])events\b", masked):
            before = masked[:m.start()]
            after = masked[m.end():]
            as_helper_arg = re.search(r"(?<![\w.])(" + "|".join(EVENT_HELPERS) + r")\s*\(\s*$", before)
            if not (as_helper_arg and re.match(r"\s*[,)]", after)):
                native_events = True
                break
    return frozenset(variables & _VARIABLES), tuple(dict.fromkeys(functions)), native_events


def compile_rule(text: str) -> CompiledRule:
    """Compile and check one rule. Raises RuleError naming the position."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("empty rule", 1)
    try:
        program = cel.compile(text)
    except Exception as e:  # the library raises ValueError with the parser's message
        m = _SYNTAX.search(str(e))
        if m:
            raise RuleError(m.group(3).split("\n", 1)[0], int(m.group(2)), int(m.group(1))) from None
        raise RuleError(str(e).split("\n", 1)[0]) from None
    masked = _mask(text)
    variables, functions, native_events = _static_checks(text, masked, program)
    selects = MappingProxyType({name: _selects(masked, name) for name in (*_MAPS, "offer") if name in variables})
    rule = CompiledRule(text, program, variables, functions, native_events, selects,
                        compile_fast(text, native_events))
    _check_pass(rule, masked)
    return rule


@functools.lru_cache(maxsize=4096)
def _compile_cached(text: str) -> CompiledRule | RuleError:
    try:
        return compile_rule(text)
    except RuleError as e:
        return e


def compiled(rule: Any) -> CompiledRule:
    """The compiled form of a catalog `Rule`: the one the loader stored in
    `rule.compiled`, else compiled now (cached by text). Raises RuleError."""
    c = getattr(rule, "compiled", None)
    if isinstance(c, CompiledRule):
        return c
    r = _compile_cached(rule if isinstance(rule, str) else rule.text)
    if isinstance(r, RuleError):
        raise r
    return r


def _check_pass(rule: CompiledRule, masked: str) -> None:
    """Evaluate once against an empty profile: data lookups fail with "no
    such key" (accepted), while type errors elsewhere surface (refused)."""
    ev = Evaluator(Profile(key="check"), MappingProxyType({}), now_ms=1_767_225_600_000)
    try:
        # The library prints a helper's exception to stderr before raising it;
        # here that exception is the expected outcome of a bad rule, reported
        # as a RuleError, so the print is only noise at catalog load.
        with contextlib.redirect_stderr(io.StringIO()):
            result = ev.run(rule, _CHECK_OFFER, "web")
    except (KeyError, IndexError, ZeroDivisionError, OverflowError):
        return
    except TypeError as e:
        raise RuleError(f"type error: {_clean(e)}") from None
    except Exception as e:
        msg = str(e)
        undefined = _UNDEFINED.search(msg)
        if undefined:
            name = undefined.group(1)
            if name in HELPERS or name in NATIVE_FUNCTIONS or name in STDLIB_FUNCTIONS:
                raise _error_at(rule.text, _find_call(masked, name),
                                f"type error: no overload of {name} for these argument types") from None
            raise _error_at(rule.text, _find_ident(masked, name), f"unknown name '{name}'") from None
        if "Python function call failed" in msg or msg.startswith("Function '"):
            raise RuleError(_clean(e)) from None
        return  # data-dependent failure: decided at run time
    if not isinstance(result, bool):
        raise RuleError(f"a rule must be a boolean expression, this one gives {type(result).__name__}", 1)


def _clean(e: BaseException) -> str:
    msg = str(e)
    m = _HELPER_FAILURE.search(msg)
    if m:
        return m.group(1).strip()
    if isinstance(e, KeyError):
        return f"no such key {msg} (test presence with has(), e.g. has(profile.tier))"
    if isinstance(e, ZeroDivisionError):
        return "division by zero"
    msg = msg.split("\n", 1)[0]
    if isinstance(e, TypeError):
        msg = msg.split(". ", 1)[0]  # the library appends a tutorial
    return msg[:200]


# ---------------------------------------------------------------------------
# Evaluate


def _plain(v: Value) -> Any:
    return list(v) if isinstance(v, tuple) else v


def offer_map(offer: Offer, fields: frozenset[str] | None = None) -> dict[str, Any]:
    """`offer` as rules see it; only `fields` when given (conversion costs)."""
    if fields is None:
        return {k: f(offer) for k, f in OFFER_FIELDS.items()}
    return {k: OFFER_FIELDS[k](offer) for k in fields if k in OFFER_FIELDS}


_CHECK_OFFER = Offer(id="check", name="check")


def _event_map(e: Any) -> dict[str, Any]:
    return {
        "type": e.type,
        "item": e.item,
        "channel": e.channel,
        "value": e.value,
        "at": datetime.fromtimestamp(e.at_ms / 1000, timezone.utc),
    }


def _covers(have: frozenset[str] | None, need: frozenset[str] | None) -> bool:
    """None stands for "every field"."""
    return have is None or (need is not None and need <= have)


def _union(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return None if a is None or b is None else a | b


def selected_fields(rules: Any) -> dict[str, frozenset[str] | None]:
    """Per map variable, every field the rules select (None: the whole map)."""
    wanted: dict[str, frozenset[str] | None] = {}
    for rule in rules:
        for name, fields in rule.selects.items():
            wanted[name] = _union(wanted[name], fields) if name in wanted else fields
    return wanted


class Evaluator:
    """The rules of one request over one profile. Not shared across requests
    (it caches results and CEL contexts for that request only)."""

    __slots__ = ("profile", "context", "now_ms", "_helpers", "_values", "_ctx", "_added", "_fields", "_wanted",
                 "_offer_bound", "_channel_bound", "_results")

    def __init__(self, profile: Profile, context: Mapping[str, Value], now_ms: int) -> None:
        self.profile = profile
        self.context = context
        self.now_ms = now_ms
        self._helpers = BoundHelpers(now_ms, profile.events)
        self._values: dict[str, Any] = {}
        # [light, full]: events as the handle, events as CEL maps
        self._ctx: list[Any] = [None, None]
        # per context: variables and functions bound
        self._added: list[set[str]] = [set(), set()]
        # per context: map variable -> fields bound (None: the whole map)
        self._fields: list[dict[str, frozenset[str] | None]] = [{}, {}]
        # map variable -> fields the rules announced by prepare() need
        self._wanted: dict[str, frozenset[str] | None] = {}
        # per context: (offer id, fields) of the `offer` bound
        self._offer_bound: list[tuple[str, frozenset[str] | None] | None] = [None, None]
        self._channel_bound: list[str | None] = [None, None]
        self._results: dict[tuple[str, str | None, str | None], bool | str] = {}

    def prepare(self, rules: Any) -> None:
        """Announce the rules this request may evaluate, so that each map
        variable is converted once with every field they select (optional:
        without it a map is re-bound when a later rule needs more fields)."""
        self.expect(selected_fields(rules))

    def expect(self, fields: Mapping[str, frozenset[str] | None]) -> None:
        """`prepare` with the fields already worked out by selected_fields
        (which a caller can keep across requests)."""
        if not self._wanted:
            self._wanted = dict(fields)
            return
        for name, need in fields.items():
            self._wanted[name] = _union(self._wanted[name], need) if name in self._wanted else need

    def _map(self, name: str, fields: frozenset[str] | None) -> dict[str, Any]:
        p = self.profile
        if name == "profile":
            src: Mapping[str, Any] = p.attributes
        elif name == "context":
            src = self.context
        else:
            src = p.consent
        items = src.items() if fields is None else ((k, src[k]) for k in fields if k in src)
        if name == "consent":
            return {k: consent_value(x) for k, x in items}
        return {k: _plain(x) for k, x in items}

    def _bind_map(self, ctx: Any, slot: int, name: str, need: frozenset[str] | None) -> None:
        bound = self._fields[slot]
        if name in bound:
            if _covers(bound[name], need):
                return
            want = _union(bound[name], need)
        else:
            want = need
        if name in self._wanted:
            want = _union(want, self._wanted[name])
        ctx.add_variable(name, self._map(name, want))
        bound[name] = want

    def _value(self, name: str, full: bool) -> Any:
        if name == "events":
            return self._event_maps() if full else EVENTS_HANDLE
        v = self._values.get(name)
        if v is None:
            p = self.profile
            if name == "segments":
                v = sorted(p.segments)
            elif name == "now":
                v = datetime.fromtimestamp(self.now_ms / 1000, timezone.utc)
            elif name == "local_hour":
                try:
                    v = local_time(p, self.now_ms).hour
                except BadTimezone:
                    # The pressure stage reports the bad zone; rules fall back to UTC.
                    v = datetime.fromtimestamp(self.now_ms / 1000, timezone.utc).hour
            else:  # pragma: no cover - guarded by compile_rule
                raise KeyError(name)
            self._values[name] = v
        return v

    def _event_maps(self) -> list[dict[str, Any]]:
        v = self._values.get("events")
        if v is None:
            v = self._values["events"] = [_event_map(e) for e in self.profile.events]
        return v

    def _context_for(self, rule: CompiledRule) -> Any:
        slot = 1 if rule.native_events else 0
        ctx = self._ctx[slot]
        if ctx is None:
            ctx = self._ctx[slot] = cel.Context()
        added = self._added[slot]
        for name in rule.variables:
            if name in added or name in _PER_CANDIDATE:
                continue
            if name in _MAPS:
                self._bind_map(ctx, slot, name, rule.selects[name])
                continue
            ctx.add_variable(name, self._value(name, bool(slot)))
            added.add(name)
        for fn in rule.functions:
            if fn not in added:
                impl = getattr(self._helpers, fn) if fn in HELPERS else STDLIB_FUNCTIONS[fn]
                ctx.add_function(fn, impl)
                added.add(fn)
        return ctx

    def run(self, rule: CompiledRule, offer: Offer | None, channel: str) -> Any:
        """Evaluate without caching; raises whatever the library raises."""
        ctx = self._context_for(rule)
        slot = 1 if rule.native_events else 0
        # `offer` and `channel` are re-bound only when they change: converting
        # an offer map costs ~10 us, and candidates come grouped by offer.
        if rule.uses_offer:
            if offer is None:
                raise RuleEvaluationError("this rule reads `offer`, which is not set here")
            need = rule.selects.get("offer")
            cur = self._offer_bound[slot]
            if cur is None or cur[0] != offer.id or not _covers(cur[1], need):
                want = need if cur is None or cur[0] != offer.id else _union(cur[1], need)
                if "offer" in self._wanted:
                    want = _union(want, self._wanted["offer"])
                ctx.add_variable("offer", offer_map(offer, want))
                self._offer_bound[slot] = (offer.id, want)
        if rule.uses_channel and self._channel_bound[slot] != channel:
            ctx.add_variable("channel", channel)
            self._channel_bound[slot] = channel
        return rule.program.execute(ctx)

    def evaluate(self, rule: CompiledRule, offer: Offer | None, channel: str) -> bool:
        """True/False, once per (rule, offer if read, channel if read) per
        request. Raises RuleEvaluationError with a short message."""
        key = (rule.text, offer.id if (offer is not None and rule.uses_offer) else None,
               channel if rule.uses_channel else None)
        r = self._results.get(key)
        if r is None and rule.fast is not None:
            try:
                r = rule.fast(self, offer, channel)
            except Defer:
                pass
            else:
                if type(r) is bool:
                    self._results[key] = r
                    return r
                r = None
        if r is None:
            try:
                v = self.run(rule, offer, channel)
                r = v if isinstance(v, bool) else f"rule gave {type(v).__name__}, expected bool"
            except RuleEvaluationError as e:
                r = str(e)
            except Exception as e:  # any failure of the rule on this profile
                r = _clean(e)
            self._results[key] = r
        if isinstance(r, str):
            raise RuleEvaluationError(r)
        return r

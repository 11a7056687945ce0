"""A fast path for the common shape of eligibility rules.

Most rules are a few comparisons of profile fields, segment tests and helper
calls joined by `&&` and `||`. Handing such a rule to the CEL library costs
10-15 us per evaluation (binding the request's variables into a CEL context,
then the program's run); a Python closure over the same expression costs 1-3.

The closure is an accelerator, never a second implementation of CEL: it
answers only when the answer cannot differ from the library's, and otherwise
*defers* (raises `Defer`) so that the library evaluates the rule as before.
It defers on every error (a missing key, a failed conversion, a helper that
raises), so error messages stay the library's, and on every value whose CEL
semantics it does not model (comparisons across types, nulls, timestamps,
lists compared as wholes). `tests/test_rules_fast.py` checks the closures
against the library on the example catalogs and on generated rules and
profiles.

What compiles (anything else leaves the rule to the library alone):
literals (strings without escapes, ints, doubles, booleans, null), lists of
them, the variables, field selection (`profile.tier`, `offer.attributes.kind`),
`has()` of a selection, `!`, `&&`, `||`, `==`, `!=`, `<`, `<=`, `>`, `>=`,
`in`, and calls of the helpers, `int`, `double`, `size` and `duration` of a
literal.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import cel

from decision.rules.helpers import EVENTS_HANDLE, HELPERS

# A compiled rule: (evaluator, offer, channel) -> value; raises Defer.
Fast = Callable[[Any, Any, str], Any]


class Defer(Exception):
    """The library must evaluate this rule on this input."""


_DEFER = Defer()


class _Unsupported(Exception):
    """The rule uses something the fast path does not compile."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"[^"\\\n]*"|'[^'\\\n]*')
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\],.-])
""", re.X)

_KEYWORDS = {"true": True, "false": False, "null": None}
_SCALARS = (str, int, float, bool)
_ORDERED = (str, int, float)
_INT_TEXT = re.compile(r"-?\d{1,18}")
_DOUBLE_TEXT = re.compile(r"-?\d{1,300}(?:\.\d{1,300})?")
_MAPS = ("profile", "context", "consent", "offer")
_PLAIN_VARS = ("segments", "local_hour", "now")


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _Unsupported(text[pos])
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group()))
    out.append(("end", ""))
    return out


# --- values of the variables, as the engine binds them ----------------------

def _plain(v: Any) -> Any:
    t = type(v)
    if t is tuple:
        return list(v)
    if t is int and not -2 ** 63 <= v < 2 ** 63:  # not a CEL int: binding it fails
        raise _DEFER
    return v


def consent_value(v: Any) -> str:
    """A consent value as rules see it: "granted", "denied", ... (stages/consent.py's reading)."""
    return str(v).strip().lower()


# `offer.<field>` as rules see it (engine.offer_map binds the same).
OFFER_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": lambda o: o.id,
    "value": lambda o: float(o.value),
    "margin": lambda o: float(o.margin),
    "priority": lambda o: float(o.priority),
    "tags": lambda o: list(o.tags),
    "purpose": lambda o: o.purpose,
    "attributes": lambda o: dict(o.attributes),
}


def _source(name: str) -> Callable[[Any], Any]:
    """The raw mapping behind `profile`, `context` or `consent` (engine._map)."""
    if name == "context":
        return lambda ev: ev.context
    attribute = "consent" if name == "consent" else "attributes"
    return lambda ev: getattr(ev.profile, attribute)


def _field(name: str, key: str) -> Fast:
    """`<map>.<key>` on one of the map variables; a missing key defers (the
    library raises "no such key")."""
    if name == "offer":
        read = OFFER_FIELDS.get(key)
        if read is None:
            raise _Unsupported(key)

        def offer_field(ev, offer, channel):
            if offer is None:
                raise _DEFER
            return read(offer)
        return offer_field
    source = _source(name)
    convert = consent_value if name == "consent" else _plain

    def field(ev, offer, channel):
        v = source(ev).get(key, _DEFER)
        if v is _DEFER:
            raise _DEFER
        return convert(v)
    return field


def _has(name: str, key: str) -> Fast:
    if name == "offer":
        present = key in OFFER_FIELDS

        def offer_has(ev, offer, channel):
            if offer is None:
                raise _DEFER
            return present
        return offer_has
    source = _source(name)
    return lambda ev, offer, channel: key in source(ev)


def _select(base: Fast, key: str) -> Fast:
    def select(ev, offer, channel):
        m = base(ev, offer, channel)
        if type(m) is not dict:
            raise _DEFER
        v = m.get(key, _DEFER)
        if v is _DEFER:
            raise _DEFER
        return v
    return select


def _has_in(base: Fast, key: str) -> Fast:
    def has(ev, offer, channel):
        m = base(ev, offer, channel)
        if type(m) is not dict:
            raise _DEFER
        return key in m
    return has


# --- operators ---------------------------------------------------------------

def _junction(decisive: bool, a: Fast, b: Fast) -> Fast:
    """`a && b` (decisive False) or `a || b` (decisive True): `a` decides
    alone when it has the decisive value, else the result is `b`'s."""
    other = not decisive

    def junction(ev, offer, channel):
        x = a(ev, offer, channel)
        if x is decisive:
            return decisive
        if x is not other:
            raise _DEFER
        y = b(ev, offer, channel)
        if type(y) is not bool:
            raise _DEFER
        return y
    return junction


def _not(a: Fast) -> Fast:
    def not_(ev, offer, channel):
        x = a(ev, offer, channel)
        if type(x) is not bool:
            raise _DEFER
        return not x
    return not_


def _compare(op: str, a: Fast, b: Fast) -> Fast:
    # Same type only: CEL's rules across types (1 == 1.0, "1" == 1) are the
    # library's to apply.
    if op in ("==", "!="):
        equal = op == "=="

        def eq(ev, offer, channel):
            x = a(ev, offer, channel)
            y = b(ev, offer, channel)
            t = type(x)
            if t is not type(y) or t not in _SCALARS:
                raise _DEFER
            return (x == y) is equal
        return eq

    def check(ev, offer, channel):
        x = a(ev, offer, channel)
        y = b(ev, offer, channel)
        t = type(x)
        if t is not type(y) or t not in _ORDERED or (t is float and (x != x or y != y)):  # NaN: an error in CEL
            raise _DEFER
        return x < y if op == "<" else x <= y if op == "<=" else x > y if op == ">" else x >= y
    return check


def _in(a: Fast, b: Fast) -> Fast:
    def in_(ev, offer, channel):
        x = a(ev, offer, channel)
        c = b(ev, offer, channel)
        t = type(x)
        if t not in _SCALARS:
            raise _DEFER
        tc = type(c)
        if tc is list:
            for item in c:
                if type(item) is not t:
                    raise _DEFER
            return x in c
        if tc is dict and t is str:
            for k in c:
                if type(k) is not str:
                    raise _DEFER
            return x in c
        raise _DEFER
    return in_


# --- functions ---------------------------------------------------------------

def _int(v: Any) -> int:
    t = type(v)
    if t is int:
        return v
    if t is str and _INT_TEXT.fullmatch(v):
        return int(v)
    if t is float and v.is_integer() and abs(v) < 2.0 ** 53:
        return int(v)
    raise _DEFER


def _double(v: Any) -> float:
    t = type(v)
    if t is float:
        return v
    if t is int and abs(v) < 2 ** 53:
        return float(v)
    if t is str and _DOUBLE_TEXT.fullmatch(v):
        return float(v)
    raise _DEFER


def _size(v: Any) -> int:
    t = type(v)
    if t is list or t is dict or (t is str and v.isascii()):  # code points or bytes: the same in ASCII
        return len(v)
    raise _DEFER


_CONVERSIONS = {"int": _int, "double": _double, "size": _size}


def _call(name: str, args: list[Fast]) -> Fast:
    if name in _CONVERSIONS:
        if len(args) != 1:
            raise _Unsupported(name)
        fn, (a,) = _CONVERSIONS[name], args

        def convert(ev, offer, channel):
            return fn(a(ev, offer, channel))
        return convert
    if name in HELPERS:
        if len(args) != HELPERS[name]:
            raise _Unsupported(name)

        def helper(ev, offer, channel):
            values = [a(ev, offer, channel) for a in args]
            try:
                return getattr(ev._helpers, name)(*values)
            except Exception:  # the library's message for it
                raise _DEFER from None
        return helper
    raise _Unsupported(name)


def _const(v: Any) -> Fast:
    return lambda ev, offer, channel: v


# --- the parser (CEL's precedence; a subset of its grammar) ------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.reads_offer = False

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            raise _Unsupported(tok[1])
        self.i += 1
        return tok

    def parse(self) -> Fast:
        f = self.or_()
        if self.peek()[0] != "end":
            raise _Unsupported(self.peek()[1])
        if not self.reads_offer:
            return f

        def needs_offer(ev, offer, channel):
            if offer is None:  # the engine refuses the rule before it runs
                raise _DEFER
            return f(ev, offer, channel)
        return needs_offer

    def or_(self) -> Fast:
        f = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            f = _junction(True, f, self.and_())
        return f

    def and_(self) -> Fast:
        f = self.relation()
        while self.peek() == ("op", "&&"):
            self.take()
            f = _junction(False, f, self.relation())
        return f

    def relation(self) -> Fast:
        f = self.unary()
        kind, op = self.peek()
        if (kind == "op" and op in ("==", "!=", "<", "<=", ">", ">=")) or (kind, op) == ("id", "in"):
            self.take()
            g = self.unary()
            f = _in(f, g) if op == "in" else _compare(op, f, g)
            kind, op = self.peek()
            if (kind == "op" and op in ("==", "!=", "<", "<=", ">", ">=")) or (kind, op) == ("id", "in"):
                raise _Unsupported(op)  # chained relations: the library's
        return f

    def unary(self) -> Fast:
        kind, op = self.peek()
        if (kind, op) == ("op", "!"):
            self.take()
            return _not(self.unary())
        if (kind, op) == ("op", "-"):
            self.take()
            kind, text = self.take()
            if kind != "num":
                raise _Unsupported("-")
            return _const(-_number(text))
        return self.member()

    def member(self) -> Fast:
        kind, text = self.peek()
        if kind == "id" and text in _MAPS:
            self.take()
            self.reads_offer |= text == "offer"
            self.take(".")
            f = _field(text, self._ident())
            while self.peek() == ("op", "."):
                self.take()
                f = _select(f, self._ident())
            if self.peek() == ("op", "("):
                raise _Unsupported("method call")
            return f
        f = self.primary()
        if self.peek() in (("op", "."), ("op", "[")):
            raise _Unsupported(self.peek()[1])
        return f

    def _ident(self) -> str:
        kind, text = self.take()
        if kind != "id" or text in _KEYWORDS or text == "in":
            raise _Unsupported(text)
        return text

    def primary(self) -> Fast:
        kind, text = self.take()
        if kind == "str":
            return _const(text[1:-1])
        if kind == "num":
            return _const(_number(text))
        if kind == "op" and text == "(":
            f = self.or_()
            self.take(")")
            return f
        if kind == "op" and text == "[":
            items = []
            while self.peek() != ("op", "]"):
                k, t = self.take()
                if k == "str":
                    items.append(t[1:-1])
                elif k == "num":
                    items.append(_number(t))
                elif k == "op" and t == "-" and self.peek()[0] == "num":
                    items.append(-_number(self.take()[1]))
                elif k == "id" and t in ("true", "false"):
                    items.append(_KEYWORDS[t])
                else:
                    raise _Unsupported(t)
                if self.peek() != ("op", "]"):
                    self.take(",")
            self.take("]")
            return _const(items)  # read only: `in`, `size` and helpers never change it
        if kind != "id":
            raise _Unsupported(text)
        if text in _KEYWORDS:
            return _const(_KEYWORDS[text])
        if self.peek() == ("op", "("):
            return self.call(text)
        if text == "channel":
            return lambda ev, offer, channel: channel
        if text == "events":
            return _const(EVENTS_HANDLE)  # only as a helper's argument: see compile_fast
        if text in _PLAIN_VARS:
            return lambda ev, offer, channel: ev._value(text, False)
        raise _Unsupported(text)

    def call(self, name: str) -> Fast:
        self.take("(")
        if name == "has":
            kind, base = self.take()
            if kind != "id" or base not in _MAPS:
                raise _Unsupported("has")
            self.reads_offer |= base == "offer"
            self.take(".")
            path = [self._ident()]
            while self.peek() == ("op", "."):
                self.take()
                path.append(self._ident())
            self.take(")")
            if len(path) == 1:
                return _has(base, path[0])
            f = _field(base, path[0])
            for key in path[1:-1]:
                f = _select(f, key)
            return _has_in(f, path[-1])
        if name == "duration":
            kind, text = self.take()
            self.take(")")
            if kind != "str":
                raise _Unsupported("duration")
            return _const(cel.evaluate(f"duration({text})"))
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.or_())
            if self.peek() != ("op", ")"):
                self.take(",")
        self.take(")")
        return _call(name, args)


def _number(text: str) -> int | float:
    if re.fullmatch(r"\d+", text):
        n = int(text)
        if n >= 2 ** 63:
            raise _Unsupported(text)
        return n
    return float(text)


def compile_fast(text: str, native_events: bool) -> Fast | None:
    """The closure of a rule the library has compiled and checked, or None
    when the rule uses more than the fast path knows."""
    if native_events:  # `events` read as a list: the library's
        return None
    try:
        return _Parser(text).parse()
    except (_Unsupported, ValueError, OverflowError):
        return None
    except Exception:  # never let the accelerator refuse a valid rule
        return None

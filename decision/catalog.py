"""Catalog file -> validated, frozen objects.

The catalog (YAML) declares channels, offers with their contents, placements
with their experiment arms, policies, reward functions and pressure rules.
Every error names the file, the line and the field.

(Types first; the loader follows.) The file format is documented in
docs/CATALOG.md.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from decision.domain import Candidate, Scalar
from decision.errors import CatalogError
from decision.yamlpos import Node, YamlSyntaxError
from decision.yamlpos import parse as parse_yaml

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    # dataclasses refuse an unhashable default (a mappingproxy) even when it
    # is immutable; a factory handing out the one shared empty map is fine.
    return _EMPTY


@dataclass(frozen=True, slots=True)
class Rule:
    """An eligibility expression (CEL). `compiled` is filled at load by the
    rules engine; `line` is the catalog line of the expression."""

    text: str
    line: int
    compiled: Any = None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No contact between start and end, in the person's own time zone.
    `start` > `end` wraps midnight (22:00-08:00)."""

    start_minute: int  # minutes after local midnight, 0..1439
    end_minute: int


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    # Outbound channels (email, sms, push) contact the person unasked:
    # unknown consent denies, and pressure fails closed.
    outbound: bool = False
    # What a person's unknown (never given) consent for this channel means.
    unknown_consent: str = "deny"  # "deny" | "allow"
    quiet_hours: QuietHours | None = None
    min_delay_s: int = 0
    line: int = 0


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` exposures in a sliding `window_s` for one scope.

    scope: "offer" (person x offer), "channel" (person x channel),
    "person" (person across all channels), "offer_channel".

    `channels` restricts the cap to a group of channels, counted together
    ("3 outbound contacts a week" = person cap on email+sms+push); empty means
    every channel. `channel` is that group's only member when it has one.
    """

    scope: str
    limit: int
    window_s: int
    channel: str | None = None  # restrict a person/offer cap to one channel
    line: int = 0
    channels: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        ch = f"@{'+'.join(self.channels)}" if self.channels else (f"@{self.channel}" if self.channel else "")
        return f"cap {self.scope}{ch} {self.limit}/{self.window_s}s"


@dataclass(frozen=True, slots=True)
class Budget:
    """Global budget of an offer across all persons."""

    total: int | None = None
    per_day: int | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class Suppression:
    """Stop offering after `after_ignored` exposures without a positive reward
    within `window_s`."""

    after_ignored: int
    window_s: int
    line: int = 0


@dataclass(frozen=True, slots=True)
class Content:
    id: str
    offer_id: str
    channel: str
    template: str = ""
    # Features of the creative (tone, format, ...) for the bandit's action namespace.
    attributes: Mapping[str, Scalar] = field(default_factory=_empty)
    eligibility: Rule | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class Offer:
    id: str
    name: str
    value: float = 0.0
    margin: float = 0.0
    priority: float = 1.0
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None
    tags: tuple[str, ...] = ()
    # Consent purpose this offer needs (e.g. "marketing", "service").
    purpose: str = "marketing"
    eligibility: Rule | None = None
    caps: tuple[Cap, ...] = ()
    budget: Budget | None = None
    suppression: Suppression | None = None
    contents: tuple[Content, ...] = ()
    attributes: Mapping[str, Scalar] = field(default_factory=_empty)
    line: int = 0


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """A named policy: kind is a key of the bandits registry
    ("uniform", "fixed_priority", "vw"); params are kind-specific."""

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=_empty)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Apprentice:
    """Apprentice mode of an arm (docs/LEARNING.md): the arm serves
    `baseline` and logs its choices with the baseline's probabilities while
    the learner trains the arm's own (learning) policy on those logs. It
    switches to the learned policy when `until` says so: "ope", by the
    learner, once the learned policy's off-policy estimate (lower confidence
    bound, over at least `min_examples` logged decisions with full support)
    beats the baseline's reward rate; "manual", only by
    `nba models graduate`."""

    baseline: str  # PolicyConfig name
    until: str = "ope"  # "ope" | "manual"
    min_examples: int = 1000
    line: int = 0


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    policy: str  # PolicyConfig name
    share: float = 1.0
    line: int = 0
    apprentice: Apprentice | None = None


@dataclass(frozen=True, slots=True)
class RewardSpec:
    """How reward events turn into the number learning uses.

    `events` maps event type -> reward; the string "value" means "the
    event's numeric value" (e.g. revenue of a conversion), "offer_value" the
    offer's catalog value. Events of unknown types are refused. The join
    window closes after `window_s`; a decision without any reward event then
    counts `default`. `range` declares (min, max) of the reward so the
    learner can scale it into VW's cost range in one place.
    """

    events: Mapping[str, float | str] = field(default_factory=_empty)
    window_s: int = 86_400
    default: float = 0.0
    range: tuple[float, float] = (0.0, 1.0)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Placement:
    id: str
    channels: tuple[str, ...]
    max_items: int = 1
    # Offers allowed here (None: every offer with a content on the channels).
    offers: tuple[str, ...] | None = None
    arms: tuple[Arm, ...] = ()
    salt: str = ""
    fallback_offer: str | None = None
    fallback_content: str | None = None
    reward: RewardSpec = field(default_factory=RewardSpec)
    eligibility: Rule | None = None
    line: int = 0
    # Which logged decisions train a learning arm (docs/LEARNING.md):
    # "own" - its own decisions and those of the uniform-random arms;
    # "all_arms" - every arm's decisions of this placement.
    learn_from: str = "own"


@dataclass(frozen=True, slots=True)
class Catalog:
    path: str
    version: str  # content hash of the file
    channels: Mapping[str, Channel]
    offers: Mapping[str, Offer]
    placements: Mapping[str, Placement]
    policies: Mapping[str, PolicyConfig]
    # Caps over the person across all offers (scope "person"/"channel").
    person_caps: tuple[Cap, ...] = ()
    # placement id -> every (offer, content, channel) candidate, in catalog order
    candidates: Mapping[str, tuple[Candidate, ...]] = field(default_factory=_empty)
    # content id -> Content (content ids are unique across the catalog)
    contents: Mapping[str, Content] = field(default_factory=_empty)
    # What the stages derive from this catalog once instead of per request
    # (a candidate's Action and rule plan, its caps): it lives and dies with
    # this object, so a reload starts afresh. Not an init field: replace()
    # gives the new catalog an empty one.
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)


# ---------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------

RuleCompiler = Callable[[str], Any]
# (kind, params) -> problems, each "<param path>: <message>" or a bare message
PolicyValidator = Callable[[str, Mapping[str, Any]], list[str]]

FORMAT_VERSION = 1
DEFAULT_POLICY_KINDS: frozenset[str] = frozenset({"uniform", "fixed_priority", "vw"})
DEFAULT_POLICY = "fixed_priority"
# Kinds that need no params, so a placement may name them without declaring them.
IMPLICIT_POLICY_KINDS = ("uniform", "fixed_priority")
DEFAULT_PURPOSE = "marketing"
DEFAULT_REWARD_WINDOW_S = 86_400
REWARD_FROM_EVENT = "value"
REWARD_FROM_OFFER = "offer_value"
LEARN_FROM = ("own", "all_arms")
APPRENTICE_UNTIL = ("ope", "manual")
DEFAULT_APPRENTICE_MIN_EXAMPLES = 1000
# Built-in kinds that never learn: an apprentice arm's own policy cannot be one.
NON_LEARNING_KINDS = frozenset({"uniform", "fixed_priority"})

_ID = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,63}")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_UNIT_S = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_QUIET_HOURS = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_TOP_KEYS = ("version", "defaults", "channels", "policies", "offers", "pressure", "placements")
_DEFAULTS_KEYS = ("purpose", "policy")
_CHANNEL_KEYS = ("id", "outbound", "unknown_consent", "quiet_hours", "min_delay")
_POLICY_KEYS = ("name", "kind", "params")
_OFFER_KEYS = (
    "id", "name", "value", "margin", "priority", "valid_from", "valid_until", "tags", "purpose",
    "eligibility", "caps", "budget", "suppression", "attributes", "contents",
)  # fmt: skip
_CONTENT_KEYS = ("id", "channel", "template", "attributes", "eligibility")
_CAP_KEYS = ("scope", "limit", "window", "channel", "channels")
_BUDGET_KEYS = ("total", "per_day")
_SUPPRESSION_KEYS = ("after_ignored", "window")
_PLACEMENT_KEYS = (
    "id", "channels", "max_items", "offers", "policy", "arms", "salt", "fallback", "reward", "eligibility",
    "learn_from",
)  # fmt: skip
_ARM_KEYS = ("name", "policy", "share", "apprentice")
_APPRENTICE_KEYS = ("baseline", "until", "min_examples")
_FALLBACK_KEYS = ("offer", "content")
_REWARD_KEYS = ("events", "window", "default", "range")

_T = TypeVar("_T")

_OFFER_CAP_SCOPES = ("offer", "offer_channel")
_PERSON_CAP_SCOPES = ("person", "channel")


def load_catalog(
    path: str | Path,
    *,
    compile_rule: RuleCompiler | None = None,
    policy_kinds: Collection[str] | None = None,
    validate_policy: PolicyValidator | None = None,
) -> Catalog:
    """Read, validate and freeze a catalog file.

    `compile_rule` turns an eligibility text into the rules engine's compiled
    form (kept as text only when None). `policy_kinds` are the policy kinds
    the bandits registry knows; `validate_policy(kind, params)` checks a
    policy's params. Raises CatalogError listing every problem, sorted by line.
    """
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CatalogError([f"{file}: cannot read the catalog: {e.strerror or e}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CatalogError([f"{file}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    try:
        root = parse_yaml(text)
    except YamlSyntaxError as e:
        raise CatalogError([f"{file}:{e.line}: syntax error: {e.message}"]) from None

    errors = _Errors(file)
    reader = _Reader(
        errors,
        compile_rule=compile_rule,
        policy_kinds=frozenset(DEFAULT_POLICY_KINDS if policy_kinds is None else policy_kinds),
        validate_policy=validate_policy,
    )
    if root is None:
        errors.add(1, "", f"empty file: a catalog starts with 'version: {FORMAT_VERSION}'")
    else:
        reader.read(root)
    if errors:
        raise CatalogError(errors.sorted())
    return reader.catalog(file, hashlib.sha256(data).hexdigest()[:16])


def check_catalog(
    path: str | Path,
    *,
    compile_rule: RuleCompiler | None = None,
    policy_kinds: Collection[str] | None = None,
    validate_policy: PolicyValidator | None = None,
) -> list[str]:
    """Every problem of a catalog file, one string each; [] when it loads."""
    try:
        load_catalog(path, compile_rule=compile_rule, policy_kinds=policy_kinds, validate_policy=validate_policy)
    except CatalogError as e:
        return list(e.errors)
    return []


def parse_duration(value: object) -> int:
    """'30d', '24h', '90m', '45s', '1w', '1h30m' or integer seconds -> seconds.

    Raises ValueError, worded for a catalog error, for anything that is not a
    positive duration.
    """
    expected = f"expected a duration like '30d', '24h', '90m', '45s', '1w' or whole seconds, got {value!r}"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(expected)  # noqa: TRY004 - one exception type for every bad catalog value
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(expected)
        seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    else:
        seconds = value
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def _candidates(offers: Mapping[str, Offer], placement: Placement) -> tuple[Candidate, ...]:
    allowed = None if placement.offers is None else set(placement.offers)
    return tuple(
        Candidate(offer.id, content.id, content.channel)
        for offer in offers.values()
        if allowed is None or offer.id in allowed
        for content in offer.contents
        if content.channel in placement.channels
    )


# --- errors -----------------------------------------------------------------


class _Errors:
    """Every problem found, as `<file>:<line>: <field path>: <message>`."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._found: list[tuple[int, int, str]] = []

    def add(self, line: int, path: str, message: str) -> None:
        self._found.append((line, len(self._found), f"{self.file}:{line}: {path or '(top level)'}: {message}"))

    def sorted(self) -> list[str]:
        return [text for _, _, text in sorted(self._found)]

    def __bool__(self) -> bool:
        return bool(self._found)


class _Invalid(Exception):
    """Raised by a value converter; `suffix` extends the field path (`[2]`),
    `line` points inside the value (an item of a list)."""

    def __init__(self, message: str, *, suffix: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suffix = suffix
        self.line = line


def _unknown(kind: str, name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"unknown {kind} '{name}' (did you mean '{close[0]}'?)"
    if not known:
        return f"unknown {kind} '{name}' (none defined)"
    return f"unknown {kind} '{name}' (known: {', '.join(known)})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- one mapping, field by field --------------------------------------------


class _Fields:
    """The entries of one YAML mapping, checked once against the keys it may
    have: unknown keys (typos) and duplicate keys are reported on sight."""

    def __init__(self, errors: _Errors, node: Node, path: str, allowed: tuple[str, ...]) -> None:
        self.errors = errors
        self.line = node.line
        self.path = path
        self._nodes: dict[str, Node] = {}
        self._key_lines: dict[str, int] = {}
        # Keys some typo probably meant: "required field is missing" for
        # them would only repeat the "did you mean" error.
        self._meant: set[str] = set()
        for entry in node.entries:
            if entry.key is None:
                errors.add(entry.key_line, path, "keys must be plain strings")
            elif entry.key in self._key_lines:
                first = self._key_lines[entry.key]
                errors.add(entry.key_line, _join(path, entry.key), f"duplicate key (first at line {first})")
            elif entry.key not in allowed:
                self._key_lines[entry.key] = entry.key_line
                errors.add(entry.key_line, _join(path, entry.key), _unknown("key", entry.key, allowed))
                self._meant.update(difflib.get_close_matches(entry.key, allowed, n=1))
            else:
                self._key_lines[entry.key] = entry.key_line
                self._nodes[entry.key] = entry.value

    def node(self, key: str) -> Node | None:
        """The value of `key`, None when absent or null."""
        node = self._nodes.get(key)
        return None if node is None or node.is_null else node

    def has(self, key: str) -> bool:
        return self.node(key) is not None

    def line_of(self, key: str) -> int:
        """The line of `key:` (a block value starts on the next line, but
        the field is where its key is), or of the mapping when it is absent."""
        return self._key_lines.get(key, self.line)

    def path_of(self, key: str) -> str:
        return _join(self.path, key)

    def error(self, key: str, message: str) -> None:
        self.errors.add(self.line_of(key), self.path_of(key), message)

    def get(self, key: str, convert: Callable[[Node], Any], default: Any = None, *, required: bool = False) -> Any:
        """`convert(value)`, or `default` when the key is absent or invalid
        (the problem is recorded; loading fails at the end)."""
        node = self.node(key)
        if node is None:
            if required and key not in self._meant:
                self.errors.add(self.line, self.path_of(key), "required field is missing")
            return default
        try:
            return convert(node)
        except _Invalid as e:
            self.errors.add(e.line or self.line_of(key), self.path_of(key) + e.suffix, e.message)
            return default


def _mapping(errors: _Errors, node: Node, path: str, allowed: tuple[str, ...]) -> _Fields | None:
    if node.kind != "map":
        errors.add(node.line, path, f"expected a mapping, got {node.describe()}")
        return None
    return _Fields(errors, node, path, allowed)


# --- value converters: Node -> value, or raise _Invalid ---------------------


def _text(node: Node) -> str:
    if not isinstance(node.value, str) or node.kind != "scalar":
        raise _Invalid(f"expected a string, got {node.describe()}")
    return node.value


def _nonempty_text(node: Node) -> str:
    text = _text(node)
    if not text.strip():
        raise _Invalid("must not be empty")
    return text


def _ident(node: Node) -> str:
    if node.kind == "scalar" and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        raise _Invalid(f"expected an id, got {node.describe()} (quote it to make it a string)")
    return _ident_text(_text(node))


def _ident_text(text: str | None) -> str:
    if text is None or not _ID.fullmatch(text):
        raise _Invalid(
            f"invalid id {text!r}: use 1-64 characters among a-z 0-9 _ . - starting with a letter, a digit or _"
        )
    return text


def _number(node: Node) -> float:
    value = node.value
    if node.kind != "scalar" or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"expected a number, got {node.describe()}")
    if not math.isfinite(value):
        raise _Invalid(f"expected a finite number, got {value}")
    return float(value)


def _count(node: Node) -> int:
    value = node.value
    if node.kind != "scalar" or isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected a whole number, got {node.describe()}")
    if value < 1:
        raise _Invalid(f"must be at least 1, got {value}")
    return value


def _boolean(node: Node) -> bool:
    if node.kind != "scalar" or not isinstance(node.value, bool):
        raise _Invalid(f"expected true or false, got {node.describe()}")
    return node.value


def _choice(*options: str) -> Callable[[Node], str]:
    def convert(node: Node) -> str:
        text = _text(node)
        if text not in options:
            raise _Invalid(f"expected one of {', '.join(options)}, got {text!r}")
        return text

    return convert


def _duration(node: Node) -> int:
    if node.kind != "scalar":
        raise _Invalid(f"expected a duration like '30d', got {node.describe()}")
    try:
        return parse_duration(node.value)
    except ValueError as e:
        raise _Invalid(str(e)) from None


def _instant(*, end_of_day: bool) -> Callable[[Node], int]:
    """ISO date or date-time -> epoch ms. A naive time is UTC; a bare date is
    that day's midnight UTC, or the next midnight for an end (`valid_until:
    2026-12-31` includes the 31st)."""

    def convert(node: Node) -> int:
        value = node.value
        if isinstance(value, str):
            value = _parse_iso(value)
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
            moment += timedelta(days=1) if end_of_day else timedelta(0)
        else:
            raise _Invalid(
                f"expected an ISO date (2026-01-31) or date-time (2026-01-31T09:00:00Z), got {node.describe()}"
            )
        return (moment - _EPOCH) // timedelta(milliseconds=1)

    return convert


def _parse_iso(text: str) -> date | datetime | str:
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text.strip())
        except ValueError:
            continue
    return text  # not a date: the caller reports it


def _quiet_hours(node: Node) -> QuietHours:
    text = _text(node)
    match = _QUIET_HOURS.fullmatch(text.strip())
    if not match:
        raise _Invalid(f"expected 'HH:MM-HH:MM' such as '21:00-08:00', got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if max(h1, h2) > 23 or max(m1, m2) > 59:
        raise _Invalid(f"{text!r}: times must lie within 00:00..23:59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise _Invalid(f"{text!r}: start and end are the same time")
    return QuietHours(start, end)


def _items(node: Node) -> tuple[Node, ...]:
    if node.kind != "seq":
        raise _Invalid(f"expected a list, got {node.describe()}")
    return node.items


def _ident_list(node: Node) -> tuple[str, ...]:
    ids: list[str] = []
    for i, item in enumerate(_items(node)):
        ids.append(_at(i, item, _ident))
    return tuple(ids)


def _at(index: int, item: Node, convert: Callable[[Node], Any]) -> Any:
    """convert(item), re-raising its problem as one of list item `index`."""
    try:
        return convert(item)
    except _Invalid as e:
        raise _Invalid(e.message, suffix=f"[{index}]{e.suffix}", line=e.line or item.line) from None


def _scalar_map(node: Node) -> Mapping[str, Scalar]:
    """A flat map of features: id keys, string/number/boolean values."""
    if node.kind != "map":
        raise _Invalid(f"expected a mapping of name: value, got {node.describe()}")
    values: dict[str, Scalar] = {}
    for entry in node.entries:
        try:
            name = _ident_text(entry.key)
            if name in values:
                raise _Invalid("duplicate key")
            values[name] = _feature(entry.value)
        except _Invalid as e:
            raise _Invalid(e.message, suffix=f".{entry.key}", line=entry.key_line) from None
    return MappingProxyType(values)


def _feature(node: Node) -> Scalar:
    value = node.value
    if node.kind != "scalar" or value is None or not isinstance(value, (str, int, float)):
        raise _Invalid(f"expected a string, number or boolean, got {node.describe()}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"expected a finite number, got {value}")
    return value


def _frozen(node: Node, suffix: str = "") -> Any:
    """Any YAML value as immutable plain data (policy params)."""
    if node.kind == "seq":
        return tuple(_frozen(item, f"{suffix}[{i}]") for i, item in enumerate(node.items))
    if node.kind == "scalar":
        if isinstance(node.value, float) and not math.isfinite(node.value):
            raise _Invalid(f"expected a finite number, got {node.value}", suffix=suffix, line=node.line)
        return node.value
    values: dict[str, Any] = {}
    for entry in node.entries:
        where = f"{suffix}.{entry.key}"
        if entry.key is None:
            raise _Invalid("keys must be plain strings", suffix=suffix, line=entry.key_line)
        if entry.key in values:
            raise _Invalid("duplicate key", suffix=where, line=entry.key_line)
        values[entry.key] = _frozen(entry.value, where)
    return MappingProxyType(values)


def _params(node: Node) -> Mapping[str, Any]:
    if node.kind != "map":
        raise _Invalid(f"expected a mapping, got {node.describe()}")
    return _frozen(node)


def _reward_range(node: Node) -> tuple[float, float]:
    items = _items(node)
    if len(items) != 2:
        raise _Invalid(f"expected [low, high], got {len(items)} values")
    lo, hi = (_at(i, item, _number) for i, item in enumerate(items))
    if not lo < hi:
        raise _Invalid(f"low ({lo:g}) must be below high ({hi:g})")
    return lo, hi


def _format_version(node: Node) -> int:
    value = node.value
    if node.kind != "scalar" or isinstance(value, bool) or value != FORMAT_VERSION:
        shown = value if node.kind == "scalar" else node.describe()
        raise _Invalid(f"unsupported catalog format {shown!r} (this service reads version {FORMAT_VERSION})")
    return FORMAT_VERSION


def _share(node: Node) -> float:
    share = _number(node)
    if share <= 0:
        raise _Invalid(f"a share must be positive, got {share:g}")
    return share


def _rule_problem(e: Exception, node: Node) -> tuple[int, str]:
    """(file line, message) of a rules engine's complaint. Engines may give a
    1-based `line` and `column` inside the rule; a literal block (`|`) keeps
    the rule's lines as they are in the file, so its `line` maps onto one."""
    message = _one_line(str(getattr(e, "message", None) or e)) or type(e).__name__
    line, column = _position(e, "line"), _position(e, "column")
    file_line = node.text_line
    where = []
    if line is not None and line > 1:
        if node.style == "|":
            file_line += line - 1
        else:
            where.append(f"line {line} of the rule")
    if column is not None:
        where.append(f"column {column}")
    return file_line, f"{message} ({', '.join(where)})" if where else message


def _position(e: Exception, name: str) -> int | None:
    value = getattr(e, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _one_line(message: str) -> str:
    # Rule engines like to print the text with a caret under the problem;
    # one error is one line, and the column is reported separately.
    lines = [ln.strip() for ln in message.splitlines() if ln.strip() and set(ln.strip()) != {"^"}]
    return " | ".join(lines)


# --- the catalog, section by section ----------------------------------------


class _Reader:
    """Reads the sections in dependency order (channels and policies before
    the offers and placements that name them), whatever their order in the
    file, so each reference is checked where it is written."""

    def __init__(
        self,
        errors: _Errors,
        *,
        compile_rule: RuleCompiler | None,
        policy_kinds: frozenset[str],
        validate_policy: PolicyValidator | None,
    ) -> None:
        self.errors = errors
        self.compile_rule = compile_rule
        # One compiled form per distinct text: offers that share a rule share
        # its verdict in a request (decision/stages/eligibility.py).
        self._compiled: dict[str, Any] = {}
        self.policy_kinds = policy_kinds
        self.validate_policy = validate_policy
        self.default_purpose = DEFAULT_PURPOSE
        self.default_policy = DEFAULT_POLICY
        self.channels: dict[str, Channel] = {}
        self.policies: dict[str, PolicyConfig] = {}
        self.offers: dict[str, Offer] = {}
        self.contents: dict[str, Content] = {}
        self.person_caps: tuple[Cap, ...] = ()
        self.placements: dict[str, Placement] = {}
        # id -> line of its first definition, per kind, for duplicate reports
        self._seen: dict[str, dict[str, int]] = {}

    # -- the whole file

    def read(self, root: Node) -> None:
        top = _mapping(self.errors, root, "", _TOP_KEYS)
        if top is None:
            return
        top.get("version", _format_version, required=True)
        defaults = self._section_map(top, "defaults", _DEFAULTS_KEYS)
        if defaults is not None:
            self.default_purpose = defaults.get("purpose", _ident, DEFAULT_PURPOSE)
        channels = self._section(top, "channels", self._channel, "id", "channel", required=True)
        self.channels = {c.id: c for c in channels}
        policies = self._section(top, "policies", self._policy, "name", "policy", required=False)
        self.policies = {p.name: p for p in policies}
        if defaults is not None:
            self.default_policy = defaults.get("policy", self._policy_ref, DEFAULT_POLICY)
        offers = self._section(top, "offers", self._offer, "id", "offer", required=True)
        self.offers = {o.id: o for o in offers}
        self.person_caps = tuple(self._section(top, "pressure", self._person_cap, None, "cap", required=False))
        placements = self._section(top, "placements", self._placement, "id", "placement", required=True)
        self.placements = {p.id: p for p in placements}

    def catalog(self, file: str, version: str) -> Catalog:
        offers = MappingProxyType(dict(self.offers))
        placements = MappingProxyType(dict(self.placements))
        return Catalog(
            path=file,
            version=version,
            channels=MappingProxyType(dict(self.channels)),
            offers=offers,
            placements=placements,
            policies=MappingProxyType(dict(self.policies)),
            person_caps=self.person_caps,
            candidates=MappingProxyType({pid: _candidates(offers, p) for pid, p in placements.items()}),
            contents=MappingProxyType(dict(self.contents)),
        )

    def _section_map(self, top: _Fields, key: str, allowed: tuple[str, ...]) -> _Fields | None:
        node = top.node(key)
        return None if node is None else _mapping(self.errors, node, key, allowed)

    def _section(
        self,
        parent: _Fields,
        key: str,
        read_item: Callable[[Node, str], _T | None],
        id_key: str | None,
        kind: str,
        *,
        required: bool,
        scope: str = "",
    ) -> list[_T]:
        """Read a list of items, dropping repeated ids (`id_key`; None for
        items without one). Ids are unique per `scope`. A repeat is still
        read, so that its own problems are reported too."""
        found: list[_T] = []
        for path, item in self._list(parent, key, id_key, kind, required=required):
            item_id = _peek_id(item, id_key)
            first = (
                id_key is None or item_id is None or self._first_definition(kind, item_id, item, path, id_key, scope)
            )
            obj = read_item(item, path)
            if obj is not None and first:
                found.append(obj)
        return found

    def _list(
        self, parent: _Fields, key: str, id_key: str | None, kind: str, *, required: bool
    ) -> Iterator[tuple[str, Node]]:
        """(path, node) of each item; the path names the item by its id when
        it has a valid one (`offers[premium_upgrade]`), else by position."""
        node = parent.node(key)
        if node is None:
            if required:
                parent.get(key, _items, required=True)  # reports the absence
            return
        if node.kind != "seq":
            parent.error(key, f"expected a list of {kind}s, got {node.describe()}")
            return
        if required and not node.items:
            parent.error(key, f"needs at least one {kind}")
        for index, item in enumerate(node.items):
            yield f"{parent.path_of(key)}[{_peek_id(item, id_key) or index}]", item

    def _first_definition(self, kind: str, obj_id: str, item: Node, path: str, id_key: str, scope: str) -> bool:
        seen = self._seen.setdefault(f"{scope}/{kind}", {})
        line = _peek_line(item, id_key)
        if obj_id in seen:
            message = f"duplicate {kind} {id_key} '{obj_id}' (first defined at line {seen[obj_id]})"
            self.errors.add(line, _join(path, id_key), message)
            return False
        seen[obj_id] = line
        return True

    def _fields(self, node: Node, path: str, allowed: tuple[str, ...]) -> _Fields | None:
        return _mapping(self.errors, node, path, allowed)

    # -- rules and references

    def _rule(self, node: Node) -> Rule:
        text = _nonempty_text(node)
        if self.compile_rule is None:
            return Rule(text, node.text_line)
        compiled = self._compiled.get(text)
        if compiled is None:
            try:
                compiled = self.compile_rule(text)
            except Exception as e:  # noqa: BLE001 - the engine's own error type is not ours to know
                compiled = e
            self._compiled[text] = compiled
        if isinstance(compiled, Exception):
            line, message = _rule_problem(compiled, node)
            raise _Invalid(f"invalid rule: {message}", line=line) from None
        return Rule(text, node.text_line, compiled)

    def _channel_ref(self, node: Node) -> str:
        name = _ident(node)
        if name not in self.channels:
            raise _Invalid(_unknown("channel", name, self.channels))
        return name

    def _channel_refs(self, node: Node) -> tuple[str, ...]:
        names = tuple(_at(i, item, self._channel_ref) for i, item in enumerate(_items(node)))
        if not names:
            raise _Invalid("needs at least one channel")
        _refuse_repeats(names, node)
        return names

    def _offer_ref(self, node: Node) -> str:
        name = _ident(node)
        if name not in self.offers:
            raise _Invalid(_unknown("offer", name, self.offers))
        return name

    def _policy_ref(self, node: Node) -> str:
        name = _ident(node)
        if not self._resolve_policy(name):
            declared = [n for n, config in self.policies.items() if config.line]
            builtin = [k for k in IMPLICIT_POLICY_KINDS if k in self.policy_kinds and k not in declared]
            raise _Invalid(_unknown("policy", name, [*declared, *builtin]))
        return name

    def _resolve_policy(self, name: str) -> bool:
        """True when `name` is a declared policy or a parameterless built-in
        kind, which then joins the catalog's policies under its own name."""
        if name in self.policies:
            return True
        if name in IMPLICIT_POLICY_KINDS and name in self.policy_kinds:
            self.policies[name] = PolicyConfig(name=name, kind=name)
            return True
        return False

    # -- channels and policies

    def _channel(self, node: Node, path: str) -> Channel | None:
        f = self._fields(node, path, _CHANNEL_KEYS)
        if f is None:
            return None
        channel_id = f.get("id", _ident, required=True)
        outbound = f.get("outbound", _boolean, False)
        # Outbound contact is unasked for, so silence means no; a visitor
        # who opened the app or called has asked.
        unknown_consent = f.get("unknown_consent", _choice("deny", "allow"), "deny" if outbound else "allow")
        quiet_hours = f.get("quiet_hours", _quiet_hours)
        min_delay_s = f.get("min_delay", _duration, 0)
        if channel_id is None:
            return None
        return Channel(channel_id, outbound, unknown_consent, quiet_hours, min_delay_s, line=node.line)

    def _policy(self, node: Node, path: str) -> PolicyConfig | None:
        f = self._fields(node, path, _POLICY_KEYS)
        if f is None:
            return None
        name = f.get("name", _ident, required=True)
        kind = f.get("kind", self._policy_kind, required=True)
        params = f.get("params", _params)
        if params is None and f.has("params"):
            return None  # reported; a validator would only add noise
        params = _EMPTY if params is None else params
        if kind is not None and self.validate_policy is not None:
            try:
                problems = self.validate_policy(kind, params)
            except ValueError as e:  # a validator that builds the policy to check it
                problems = [str(e)]
            for problem in problems:
                self._policy_problem(f, problem)
        if name is None or kind is None:
            return None
        return PolicyConfig(name=name, kind=kind, params=params, line=node.line)

    def _policy_kind(self, node: Node) -> str:
        kind = _text(node)
        if kind not in self.policy_kinds:
            raise _Invalid(_unknown("policy kind", kind, sorted(self.policy_kinds)))
        return kind

    def _policy_problem(self, f: _Fields, problem: str) -> None:
        """Place a validator's "<param path>: <message>" on the param's line.
        The path may start with "params." (the bandits registry's habit)."""
        params = f.node("params")
        field_path, sep, message = problem.partition(": ")
        field_path = field_path.removeprefix("params.")
        if sep and field_path in _POLICY_KEYS:
            f.error(field_path, message)
            return
        head = re.split(r"[.\[]", field_path, maxsplit=1)[0]
        if sep and params is not None and params.kind == "map":
            for entry in params.entries:
                if entry.key == head:
                    self.errors.add(entry.key_line, f"{f.path_of('params')}.{field_path}", message)
                    return
        self.errors.add(f.line_of("params"), f.path_of("params"), problem)

    # -- offers

    def _offer(self, node: Node, path: str) -> Offer | None:
        f = self._fields(node, path, _OFFER_KEYS)
        if f is None:
            return None
        offer_id = f.get("id", _ident, required=True)
        valid_from = f.get("valid_from", _instant(end_of_day=False))
        valid_until = f.get("valid_until", _instant(end_of_day=True))
        if valid_from is not None and valid_until is not None and valid_from >= valid_until:
            f.error("valid_until", f"must be after valid_from (line {f.line_of('valid_from')})")
        offer = Offer(
            id=offer_id or "",
            name=f.get("name", _nonempty_text, offer_id or ""),
            value=f.get("value", _number, 0.0),
            margin=f.get("margin", _number, 0.0),
            priority=f.get("priority", _number, 1.0),
            valid_from_ms=valid_from,
            valid_until_ms=valid_until,
            tags=f.get("tags", _ident_list, ()),
            purpose=f.get("purpose", _ident, self.default_purpose),
            eligibility=f.get("eligibility", self._rule),
            caps=tuple(self._section(f, "caps", self._offer_cap, None, "cap", required=False)),
            budget=self._budget(f),
            suppression=self._suppression(f),
            contents=self._contents(f, offer_id or ""),
            attributes=f.get("attributes", _scalar_map, _EMPTY),
            line=node.line,
        )
        return offer if offer_id is not None else None

    def _contents(self, f: _Fields, offer_id: str) -> tuple[Content, ...]:
        # Content ids are unique across the catalog (one `scope`): logs and
        # rewards name a content without its offer.
        contents = self._section(
            f, "contents", lambda node, path: self._content(node, path, offer_id), "id", "content", required=True
        )
        self.contents.update((c.id, c) for c in contents)
        return tuple(contents)

    def _content(self, node: Node, path: str, offer_id: str) -> Content | None:
        f = self._fields(node, path, _CONTENT_KEYS)
        if f is None:
            return None
        content_id = f.get("id", _ident, required=True)
        channel = f.get("channel", self._channel_ref, required=True)
        template = f.get("template", _text, "")
        attributes = f.get("attributes", _scalar_map, _EMPTY)
        eligibility = f.get("eligibility", self._rule)
        if content_id is None or channel is None:
            return None
        return Content(content_id, offer_id, channel, template, attributes, eligibility, line=node.line)

    def _offer_cap(self, node: Node, path: str) -> Cap | None:
        return self._cap(node, path, _OFFER_CAP_SCOPES)

    def _person_cap(self, node: Node, path: str) -> Cap | None:
        return self._cap(node, path, _PERSON_CAP_SCOPES)

    def _cap(self, node: Node, path: str, scopes: tuple[str, ...]) -> Cap | None:
        f = self._fields(node, path, _CAP_KEYS)
        if f is None:
            return None
        scope = f.get("scope", _choice(*scopes), scopes[0])
        limit = f.get("limit", _count, required=True)
        window_s = f.get("window", _duration, required=True)
        if f.has("channel") and f.has("channels"):
            f.error("channels", "give channel or channels, not both")
            channels: tuple[str, ...] = ()
        elif f.has("channel"):
            one = f.get("channel", self._channel_ref)
            channels = (one,) if one is not None else ()
        else:
            channels = f.get("channels", self._channel_refs, ())
        if limit is None or window_s is None:
            return None
        channel = channels[0] if len(channels) == 1 else None
        return Cap(scope, limit, window_s, channel, line=node.line, channels=channels)

    def _budget(self, offer: _Fields) -> Budget | None:
        node = offer.node("budget")
        f = None if node is None else self._fields(node, offer.path_of("budget"), _BUDGET_KEYS)
        if f is None:
            return None
        total = f.get("total", _count)
        per_day = f.get("per_day", _count)
        if not f.has("total") and not f.has("per_day"):
            self.errors.add(f.line, f.path, "give total, per_day or both")
        return Budget(total, per_day, line=f.line)

    def _suppression(self, offer: _Fields) -> Suppression | None:
        node = offer.node("suppression")
        f = None if node is None else self._fields(node, offer.path_of("suppression"), _SUPPRESSION_KEYS)
        if f is None:
            return None
        after_ignored = f.get("after_ignored", _count, required=True)
        window_s = f.get("window", _duration, required=True)
        if after_ignored is None or window_s is None:
            return None
        return Suppression(after_ignored, window_s, line=f.line)

    # -- placements

    def _placement(self, node: Node, path: str) -> Placement | None:
        f = self._fields(node, path, _PLACEMENT_KEYS)
        if f is None:
            return None
        placement_id = f.get("id", _ident, required=True)
        channels = f.get("channels", self._channel_refs, required=True)
        offers = f.get("offers", self._placement_offers)
        fallback_offer, fallback_content = self._fallback(f, channels)
        shown = self._offers_shown(f, channels, offers, fallback_offer)
        placement = Placement(
            id=placement_id or "",
            channels=channels or (),
            max_items=f.get("max_items", _count, 1),
            offers=offers,
            arms=self._arms(f),
            salt=f.get("salt", _nonempty_text, placement_id or ""),
            fallback_offer=fallback_offer,
            fallback_content=fallback_content,
            reward=self._reward(f, shown),
            eligibility=f.get("eligibility", self._rule),
            line=node.line,
            learn_from=f.get("learn_from", _choice(*LEARN_FROM), "own"),
        )
        return placement if placement_id is not None and channels is not None else None

    def _placement_offers(self, node: Node) -> tuple[str, ...]:
        names = tuple(_at(i, item, self._offer_ref) for i, item in enumerate(_items(node)))
        if not names:
            raise _Invalid("needs at least one offer (leave `offers` out to allow every offer)")
        _refuse_repeats(names, node)
        return names

    def _offers_shown(
        self, f: _Fields, channels: tuple[str, ...] | None, offers: tuple[str, ...] | None, fallback: str | None
    ) -> list[Offer]:
        """The offers this placement can show; an offer listed here without a
        content on its channels is a mistake, never a silent no-op."""
        if channels is None:
            return []
        reach = [o for o in self.offers.values() if any(c.channel in channels for c in o.contents)]
        if offers is not None:
            listed = f.node("offers")
            for index, offer_id in enumerate(offers):
                if not any(c.channel in channels for c in self.offers[offer_id].contents):
                    line = listed.items[index].line if listed is not None else f.line
                    self.errors.add(
                        line,
                        f"{f.path_of('offers')}[{index}]",
                        f"offer '{offer_id}' has no content on this placement's channels ({', '.join(channels)})",
                    )
            reach = [o for o in reach if o.id in offers]
        elif not reach:
            f.error("channels", f"no offer has a content on these channels ({', '.join(channels)})")
        if fallback is not None and fallback not in {o.id for o in reach}:
            reach.append(self.offers[fallback])
        return reach

    def _arms(self, f: _Fields) -> tuple[Arm, ...]:
        if f.has("arms") and f.has("policy"):
            self.errors.add(f.line_of("arms"), f.path_of("arms"), "give either policy or arms, not both")
        if not f.has("arms"):
            name = f.get("policy", self._policy_ref)
            if name is None and not f.has("policy"):
                name = self.default_policy
                if not self._resolve_policy(name):
                    f.error("policy", f"required: the default policy '{name}' is not a known policy kind")
            return (Arm("default", name or self.default_policy, 1.0, line=f.line_of("policy")),)
        arms = self._section(f, "arms", self._arm, "name", "arm", required=True, scope=f.path)
        # Shares are relative weights; the splitter wants probabilities.
        total = sum(arm.share for arm in arms)
        return tuple(replace(a, share=a.share / total) for a in arms)

    def _arm(self, node: Node, path: str) -> Arm | None:
        f = self._fields(node, path, _ARM_KEYS)
        if f is None:
            return None
        name = f.get("name", _ident, required=True)
        policy = f.get("policy", self._policy_ref, required=True)
        share = f.get("share", _share, 1.0)
        apprentice = self._apprentice(f, policy)
        if name is None or policy is None:
            return None
        return Arm(name, policy, share, line=node.line, apprentice=apprentice)

    def _apprentice(self, arm: _Fields, policy: str | None) -> Apprentice | None:
        node = arm.node("apprentice")
        f = None if node is None else self._fields(node, arm.path_of("apprentice"), _APPRENTICE_KEYS)
        if f is None:
            return None
        baseline = f.get("baseline", self._policy_ref, required=True)
        until = f.get("until", _choice(*APPRENTICE_UNTIL), "ope")
        min_examples = f.get("min_examples", _count, DEFAULT_APPRENTICE_MIN_EXAMPLES)
        if policy is not None:
            kind = self.policies[policy].kind
            if kind in NON_LEARNING_KINDS:
                arm.error(
                    "apprentice",
                    f"the arm's policy '{policy}' (kind {kind}) does not learn: apprentice mode trains the arm's "
                    "own learning policy (e.g. kind vw) on the baseline's choices",
                )
            elif baseline == policy:
                f.error("baseline", f"'{baseline}' is the arm's own policy: name the policy to imitate")
        if baseline is None:
            return None
        return Apprentice(baseline, until, min_examples, line=f.line)

    def _fallback(self, placement: _Fields, channels: tuple[str, ...] | None) -> tuple[str | None, str | None]:
        node = placement.node("fallback")
        f = None if node is None else self._fields(node, placement.path_of("fallback"), _FALLBACK_KEYS)
        if f is None:
            return None, None
        offer_id = f.get("offer", self._offer_ref, required=True)
        content_id = f.get("content", _ident)
        if offer_id is None or channels is None:
            return offer_id, content_id
        offer = self.offers[offer_id]
        if content_id is None:
            # Unnamed: the offer's first content the placement can show.
            first = next((c for c in offer.contents if c.channel in channels), None)
            if first is None:
                f.error(
                    "offer", f"offer '{offer_id}' has no content on this placement's channels ({', '.join(channels)})"
                )
                return offer_id, None
            return offer_id, first.id
        content = self.contents.get(content_id)
        if content is None:
            f.error("content", _unknown("content", content_id, [c.id for c in offer.contents]))
        elif content.offer_id != offer_id:
            f.error(
                "content",
                f"content '{content_id}' belongs to offer '{content.offer_id}', not to the fallback offer '{offer_id}'",
            )
        elif content.channel not in channels:
            f.error(
                "content",
                f"content '{content_id}' is on channel '{content.channel}', "
                f"not on one of this placement's channels ({', '.join(channels)})",
            )
        return offer_id, content_id

    def _reward(self, placement: _Fields, shown: list[Offer]) -> RewardSpec:
        node = placement.node("reward")
        if node is None:
            placement.error(
                "reward", "required field is missing: the events that reward learning, e.g. {events: {click: 1}}"
            )
            return RewardSpec()
        f = self._fields(node, placement.path_of("reward"), _REWARD_KEYS)
        if f is None:
            return RewardSpec()
        window_s = f.get("window", _duration, DEFAULT_REWARD_WINDOW_S)
        declared = f.get("range", _reward_range)
        # A broken range is reported once; checking against it would pile on.
        low, high = declared or ((-math.inf, math.inf) if f.has("range") else (0.0, 1.0))
        default = f.get("default", _number, 0.0)
        if not low <= default <= high:
            f.error("default", f"{default:g} is outside range [{low:g}, {high:g}]")
        events = self._reward_events(f, (low, high), shown)
        return RewardSpec(events, window_s, default, declared or (0.0, 1.0), line=f.line)

    def _reward_events(self, f: _Fields, bounds: tuple[float, float], shown: list[Offer]) -> Mapping[str, float | str]:
        """event type -> a number, "value" (the event's own) or "offer_value";
        every fixed reward and every offer value used must lie in the range,
        since the learner scales by it."""
        node = f.node("events")
        if node is None or node.kind != "map" or not node.entries:
            got = "nothing" if node is None else node.describe()
            f.error("events", f"expected a mapping of event type: reward with at least one event, got {got}")
            return _EMPTY
        low, high = bounds
        events: dict[str, float | str] = {}
        for entry in node.entries:
            path = f"{f.path_of('events')}.{entry.key}"
            try:
                event = _ident_text(entry.key)
                if event in events:
                    raise _Invalid("duplicate key")
                reward = self._event_reward(entry.value, low, high, shown)
            except _Invalid as e:
                self.errors.add(entry.key_line, path, e.message)
                continue
            events[event] = reward
        return MappingProxyType(events)

    def _event_reward(self, node: Node, low: float, high: float, shown: list[Offer]) -> float | str:
        if node.kind == "scalar" and node.value in (REWARD_FROM_EVENT, REWARD_FROM_OFFER):
            if node.value == REWARD_FROM_OFFER:
                outside = [f"{o.id} ({o.value:g})" for o in shown if not low <= o.value <= high]
                if outside:
                    raise _Invalid(f"offer values outside range [{low:g}, {high:g}]: {', '.join(outside)}")
            return node.value
        try:
            reward = _number(node)
        except _Invalid:
            raise _Invalid(
                f"expected a number, '{REWARD_FROM_EVENT}' or '{REWARD_FROM_OFFER}', got {node.describe()}"
            ) from None
        if not low <= reward <= high:
            raise _Invalid(f"{reward:g} is outside range [{low:g}, {high:g}]")
        return reward


def _peek_id(node: Node, id_key: str | None) -> str | None:
    """The item's id if it has a valid one, to name it in field paths."""
    if id_key is None or node.kind != "map":
        return None
    for entry in node.entries:
        if entry.key == id_key and isinstance(entry.value.value, str) and _ID.fullmatch(entry.value.value):
            return entry.value.value
    return None


def _peek_line(node: Node, id_key: str) -> int:
    for entry in node.entries:
        if entry.key == id_key:
            return entry.value.line
    return node.line


def _refuse_repeats(names: tuple[str, ...], node: Node) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            line = node.items[index].line
            raise _Invalid(f"'{name}' is listed twice (also at [{seen[name]}])", suffix=f"[{index}]", line=line)
        seen[name] = index

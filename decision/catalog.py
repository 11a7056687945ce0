"""Catalog file -> validated, frozen objects.

The catalog (YAML) declares channels, offers with their contents, placements
with their experiment arms, policies, reward functions and pressure rules.
Every error names the file, the line and the field.

(Types first; the loader follows.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from decision.domain import Candidate, Scalar

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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
    # Consent purpose a contact on this channel needs besides the offer's.
    unknown_consent: str = "deny"  # "deny" | "allow"
    quiet_hours: QuietHours | None = None
    min_delay_s: int = 0
    line: int = 0


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` exposures in a sliding `window_s` for one scope.

    scope: "offer" (person x offer), "channel" (person x channel),
    "person" (person across all channels), "offer_channel".
    """

    scope: str
    limit: int
    window_s: int
    channel: str | None = None  # restrict a person/offer cap to one channel
    line: int = 0

    @property
    def name(self) -> str:
        ch = f"@{self.channel}" if self.channel else ""
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
    attributes: Mapping[str, Scalar] = _EMPTY
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
    attributes: Mapping[str, Scalar] = _EMPTY
    line: int = 0


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """A named policy: kind is a key of the bandits registry
    ("uniform", "fixed_priority", "vw"); params are kind-specific."""

    name: str
    kind: str
    params: Mapping[str, Any] = _EMPTY
    line: int = 0


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    policy: str  # PolicyConfig name
    share: float = 1.0
    line: int = 0


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

    events: Mapping[str, float | str] = _EMPTY
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
    candidates: Mapping[str, tuple[Candidate, ...]] = _EMPTY
    # content id -> Content (content ids are unique across the catalog)
    contents: Mapping[str, Content] = _EMPTY

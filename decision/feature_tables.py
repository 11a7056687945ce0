"""Feature tables: every action's features, once per catalog version.

An action's features are a pure function of the catalog and the candidate
(decision/features.py `action_features`). Decision records v2
(decision/records.py) therefore name only their `catalog_version` and each
action's label "offer/content@channel"; the features live in one Redis hash
per catalog version (store/keys.py):

    nba:catalog:{<version>}:actions   HASH  label -> JSON features
                                            {"offer": {..}, "content": {..}, "channel": {..}}

Writing (the service): `TablePublisher.publish(catalog)` at every catalog
load (server start and reload), and the decide pipeline checks `due()`
before it logs a decision, so no v2 record is ever written before its table
(a Decider built without the server - tests, tools - publishes on its first
decision). A catalog version is a hash of the file's content, so a table
never changes once written; writing it again is harmless.

Retention: the table expires `log retention + 1 day` after the last refresh,
and every process that logs decisions under a version refreshes it at least
every hour (`REFRESH_S`). The log streams are trimmed by age to the same
retention (decision/logs.py), so a table outlives every row that references
it. A longer-lived consumer (an export of old rows kept elsewhere) should
export the table with them (`table_json`).

Reading (every consumer, through this class and nothing else):
`FeatureTables` loads a version's table from Redis once (one HGETALL) and
keeps it; `resolve(record)` fills a v2 record's action features in (v1
records carry them and come back unchanged) and `actions(record)` gives the
bandits `Action`s the policy saw, interned per (catalog version, label) so
that bandits/vw.py's per-mapping text cache hits on every record after the
first. A table missing from Redis (expired, never written) is rebuilt from
the consumer's own catalog when that is the same version, and otherwise the
record is unresolvable (`MissingFeatureTable`): consumers count it, they
never guess features.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from bandits.policy import Action
from decision.catalog import Catalog
from decision.features import action_features
from decision.logs import LogConfig
from decision.records import DecisionRecord, Features, LoggedAction, label, split_label
from decision.store import keys

TTL_MARGIN_S = 86_400
REFRESH_S = 3_600.0
_HSET_CHUNK = 1_000  # fields per HSET: a catalog of 10,000 actions is 10 commands in one MULTI


def table_ttl_s(config: LogConfig) -> int:
    """How long a table lives after its last refresh: the log retention + a day."""
    return config.retention_ms // 1000 + TTL_MARGIN_S


def table(catalog: Catalog) -> dict[str, Features]:
    """label -> features of every candidate any placement of the catalog can offer."""
    out: dict[str, Features] = {}
    for candidates in catalog.candidates.values():
        for c in candidates:
            lab = label(c.offer_id, c.content_id, c.channel)
            if lab not in out:
                out[lab] = action_features(catalog, c)
    return out


def table_json(catalog: Catalog) -> dict[str, str]:
    """The table as its Redis hash fields."""
    return {lab: json.dumps(f, separators=(",", ":")) for lab, f in table(catalog).items()}


# ---- writing: the service ---------------------------------------------------------------

class TablePublisher:
    """Writes the feature table of each catalog version a process uses, and
    keeps it alive while the process uses it (module docstring)."""

    def __init__(self, redis, config: LogConfig = LogConfig(), refresh_s: float = REFRESH_S,
                 clock=time.monotonic) -> None:
        self.redis = redis
        self.ttl_s = table_ttl_s(config)
        self.refresh_s = refresh_s
        self._clock = clock
        self._refreshed: dict[str, float] = {}  # version -> when this process last wrote/refreshed it
        self._fields: dict[str, dict[str, str]] = {}  # version -> encoded fields (kept for refreshes)

    def due(self, version: str) -> bool:
        """True when the version's table must be (re)written before a record
        that references it is logged: never written by this process, or its
        expiry not refreshed for `refresh_s`. A dict lookup on the hot path."""
        at = self._refreshed.get(version)
        return at is None or self._clock() - at >= self.refresh_s

    async def publish(self, catalog: Catalog) -> None:
        """Write (or refresh) the catalog version's table: one MULTI round trip."""
        version = catalog.version
        key = keys.catalog_actions(version)
        if version in self._fields and await self.redis.expire(key, self.ttl_s):
            self._refreshed[version] = self._clock()  # still there: a refresh is one EXPIRE
            return
        fields = self._fields.get(version)
        if fields is None:
            fields = table_json(catalog)
            if len(self._fields) >= 8:  # a long-running process that reloads often
                self._fields.pop(next(iter(self._fields)))
            self._fields[version] = fields
        pipe = self.redis.pipeline(transaction=True)
        items = list(fields.items())
        for i in range(0, len(items), _HSET_CHUNK):
            pipe.hset(key, mapping=dict(items[i:i + _HSET_CHUNK]))
        pipe.expire(key, self.ttl_s)
        if items:
            await pipe.execute()
        self._refreshed[version] = self._clock()


# ---- reading: every consumer ------------------------------------------------------------

class MissingFeatureTable(LookupError):
    """A v2 record references a catalog version whose table is neither
    loaded nor loadable."""

    def __init__(self, version: str) -> None:
        super().__init__(f"no feature table for catalog version {version!r} (expired or never written; "
                         f"key {keys.catalog_actions(version)})")
        self.version = version


def make_action(a: LoggedAction, features: Features, catalog: Catalog | None) -> Action:
    """The Action decision/stages/policy.py built for a logged action: value
    and priority of the offer from `catalog`; for an offer it does not have,
    the logged offer features' value and priority 1."""
    offer = catalog.offers.get(a.offer_id) if catalog is not None else None
    if offer is not None:
        value, priority = offer.value, offer.priority
    else:
        v = features.get("offer", {}).get("value", 0.0)
        value, priority = (float(v) if isinstance(v, (int, float)) else 0.0), 1.0
    return Action(id=label(a.offer_id, a.content_id, a.channel), features=features, value=value,
                  priority=priority, group=a.offer_id)


class FeatureTables:
    """The one resolver of action features (module docstring).

    `catalog` (optional) gives the interned Actions their offers' value and
    priority and stands in for a missing table of its own version."""

    VERSIONS = 64  # tables kept (least recently loaded dropped first)
    INLINE = 20_000  # interned actions of v1 records (inline features)
    SETS = 4_096  # interned action sets (tuples of Actions)
    RETRY_S = 30.0  # a missing table is looked up again after this long

    def __init__(self, redis=None, catalog: Catalog | None = None, *, clock=time.monotonic) -> None:
        self.redis = redis
        self.catalog = catalog
        self._clock = clock
        self._features: OrderedDict[str, dict[str, Features]] = OrderedDict()
        self._actions: dict[str, dict[str, Action]] = {}  # version -> label -> Action
        self._inline: dict[tuple[str, str], Action] = {}  # (version, label) -> Action (v1 records)
        self._sets: dict[tuple[str, tuple[str, ...]], tuple[Action, ...]] = {}  # (version, labels) -> Actions
        self._missing: dict[str, float] = {}  # version -> when the lookup failed

    def set_catalog(self, catalog: Catalog) -> None:
        """A new catalog: tables stay, the Actions are rebuilt (value and priority may have changed)."""
        self.catalog = catalog
        self._actions.clear()
        self._inline.clear()
        self._sets.clear()
        self._missing.clear()

    # -- loading ---------------------------------------------------------------------

    def loaded(self, version: str) -> bool:
        return version in self._features

    def can_load(self, version: str) -> bool:
        """Not loaded, and not found missing within RETRY_S."""
        if version in self._features:
            return False
        at = self._missing.get(version)
        return at is None or self._clock() - at >= self.RETRY_S

    async def load(self, versions: Iterable[str]) -> list[str]:
        """Load the tables of these versions that are not loaded yet (one
        HGETALL each); returns the versions still without a table."""
        missing = []
        for version in dict.fromkeys(versions):
            if version in self._features:
                continue
            if not self.can_load(version):
                missing.append(version)
                continue
            fields = await self.redis.hgetall(keys.catalog_actions(version)) if self.redis is not None else {}
            if fields:
                self.add(version, {_text(k): json.loads(v) for k, v in fields.items()})
            elif self.catalog is not None and self.catalog.version == version:
                self.add(version, table(self.catalog))
            else:
                self._missing[version] = self._clock()
                missing.append(version)
        return missing

    async def load_for(self, records: Iterable[DecisionRecord]) -> list[str]:
        """load() the versions these records reference (v2 records only)."""
        return await self.load(r.catalog_version for r in records if r.actions and r.by_reference)

    def add(self, version: str, features: dict[str, Features]) -> None:
        """Adopt a table (read from Redis, rebuilt from the catalog, or handed over: a test, an export)."""
        self._missing.pop(version, None)
        self._features[version] = features
        if len(self._features) > self.VERSIONS:
            old, _ = self._features.popitem(last=False)
            self._actions.pop(old, None)

    def features(self, version: str) -> dict[str, Features]:
        """label -> features of a loaded version (MissingFeatureTable otherwise)."""
        f = self._features.get(version)
        if f is None:
            raise MissingFeatureTable(version)
        return f

    # -- resolving -------------------------------------------------------------------

    def resolve(self, record: DecisionRecord) -> DecisionRecord:
        """The record with every action's features inline (the table's own
        mappings: resolving never copies features)."""
        if not record.actions or not record.by_reference:
            return record
        table_ = self.features(record.catalog_version)
        try:
            return replace(record, actions=tuple(
                LoggedAction(a.offer_id, a.content_id, a.channel, table_[label(a.offer_id, a.content_id, a.channel)],
                             a.probability, a.score)
                for a in record.actions))
        except KeyError as e:
            raise ValueError(f"decision {record.decision_id}: action {e.args[0]} is not in the feature table "
                             f"of catalog version {record.catalog_version}") from None

    def table_actions(self, version: str) -> Mapping[str, Action]:
        """label -> interned Action of every action of a version's table: how
        the learner turns a v2 record's labels into Actions with one lookup each."""
        acts = self._actions.get(version)
        if acts is None:
            catalog = self.catalog
            acts = self._actions[version] = {
                lab: make_action(LoggedAction(*split_label(lab), None, 0.0, 0.0), f, catalog)
                for lab, f in self.features(version).items()}
        return acts

    def action_set(self, version: str, labels: tuple[str, ...]) -> tuple[Action, ...]:
        """The interned Actions of a v2 record's labels, as one interned
        tuple: the allowed sets of a placement recur, so a record costs one
        lookup, and the tuple's identity lets bandits/vw.py reuse the text of
        the whole action block."""
        key = (version, labels)
        actions = self._sets.get(key)
        if actions is None:
            acts = self.table_actions(version)
            try:
                actions = tuple([acts[lab] for lab in labels])
            except KeyError as e:
                raise KeyError(f"action {e.args[0]} is not in the feature table of catalog version {version}") from None
            if len(self._sets) >= self.SETS:
                self._sets.clear()
            self._sets[key] = actions
        return actions

    def inline_action(self, version: str, offer_id: str, content_id: str, channel: str, features: Features) -> Action:
        """The interned Action of a v1 record's action (features inline): the
        first record of (version, label) gives the features every later one
        shares, as they are a function of the two (decision/features.py)."""
        key = (version, label(offer_id, content_id, channel))
        action = self._inline.get(key)
        if action is None:
            if len(self._inline) >= self.INLINE:
                self._inline.clear()
            action = self._inline[key] = make_action(LoggedAction(offer_id, content_id, channel, None, 0.0, 0.0),
                                                     features, self.catalog)
        return action

    def actions(self, record: DecisionRecord) -> tuple[Action, ...]:
        """The interned Actions of a record of any version, resolved or not."""
        version = record.catalog_version
        if record.actions and record.by_reference:
            return self.action_set(version, tuple(label(a.offer_id, a.content_id, a.channel) for a in record.actions))
        out = []
        for a in record.actions:
            acts = self._actions.get(version)
            hit = acts.get(label(a.offer_id, a.content_id, a.channel)) if acts is not None else None
            # a resolved v2 record carries the table's own mappings
            out.append(hit if hit is not None and hit.features is a.features
                       else self.inline_action(version, a.offer_id, a.content_id, a.channel, a.features))
        return tuple(out)


def _text(k: Any) -> str:
    return k.decode() if isinstance(k, bytes) else k

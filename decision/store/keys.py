"""The Redis key schema: the contract with upstream profile writers.

Every key of one person carries the hash tag `{p:<person key>}` so that a
person's profile, events, identity link and counters live on one Redis
Cluster slot, and no multi-key command ever spans two persons.

A *person key* is `<type>:<id>`: `pid:42`, `cookie:abc`, `device:d-1`,
`crm:C-9`, `email:<sha256 hex>`. Every identity is a person key of its own;
an identity that belongs to a known profile carries a `link` field naming it.

    {p:<pk>}        HASH   the profile, written by upstream systems
        a:<name>     attribute; the value is read as JSON when it parses
                     (33 -> number, true -> bool, "02134" -> string) and as
                     a plain string otherwise (US -> "US")
        s:<segment>  segment membership; value = epoch ms of entry
        c:<purpose>  consent for a purpose: granted | denied
        c:channel:<channel>   consent for contact on a channel
        c:join       consent to join anonymous and authenticated data
        link         person key this identity belongs to (identity graph)
    {p:<pk>}:ev     ZSET   recent experience events, written upstream;
                     score = epoch ms, member = JSON
                     {"id": .., "type": .., "item": .., "channel": .., "value": ..}
    {p:<pk>}:x      ZSET   exposures reserved by the service (pressure);
                     score = epoch ms, member = "<decision id>|<offer>|<channel>"
    {p:<pk>}:r      HASH   offer id -> epoch ms of the latest positive reward
    {p:<pk>}:l      STRING the person's commit lease: the id of the decision that
                     read the exposures under it and may answer before its own
                     exposure is written; other reservations wait for it
                     (docs/RULES.md, "Reservation"). Expires after 1 s.
    {p:<pk>}:ids    SET    reverse identity index: the person keys whose
                     `link` names <pk>. Written with the link by
                     ProfileWriter.link; upstream writers that set `link`
                     themselves should SADD here too, otherwise Forget finds
                     those identities only with a keyspace scan.

Service-owned keys outside a person's slot:

    {d:<decision id>}      HASH  what Reward needs to find a decision
                           (placement, person key, items); expires after the
                           placement's join window
    {d:<decision id>}:e    HASH  reward event id -> "d" once counted (idempotency)
    {b:<offer>}:total      STRING global budget spent, all time
    {b:<offer>}:d:<yyyymmdd>  STRING global budget spent that UTC day
    nba:log:decisions      STREAM decision log (one versioned JSON record per entry)
    nba:log:rewards        STREAM reward log
    nba:catalog:version    STRING version of the catalog last loaded (info only)
    nba:catalog:{<version>}:actions  HASH  the feature table of one catalog
                           version: action label "offer/content@channel" ->
                           JSON {"features", "value", "priority"}. Decision
                           records v2 reference it instead of copying each
                           action's features (decision/feature_tables.py).
                           Written by the service at catalog load; expires the
                           log retention + 1 day after the last process that
                           used the version refreshed it, so it outlives every
                           log row that references it
    nba:audit              STREAM audit log of admin actions (Forget): who,
                           when, why, the person's pseudonym and counts; no raw id
    nba:forgotten          ZSET   pseudonyms of forgotten persons -> epoch ms of
                           the Forget (tombstones: log rows replayed later for
                           them are dropped); trimmed after the log retention
"""

from __future__ import annotations

DECISION_STREAM = "nba:log:decisions"
REWARD_STREAM = "nba:log:rewards"
CATALOG_VERSION = "nba:catalog:version"
AUDIT_STREAM = "nba:audit"
FORGOTTEN = "nba:forgotten"

ATTR = "a:"
SEGMENT = "s:"
CONSENT = "c:"
LINK = "link"


def profile(pk: str) -> str:
    return "{p:" + pk + "}"


def events(pk: str) -> str:
    return "{p:" + pk + "}:ev"


def exposures(pk: str) -> str:
    return "{p:" + pk + "}:x"


def positive_rewards(pk: str) -> str:
    return "{p:" + pk + "}:r"


def lease(pk: str) -> str:
    return "{p:" + pk + "}:l"


def identities(pk: str) -> str:
    return "{p:" + pk + "}:ids"


def person_keys(pk: str) -> tuple[str, ...]:
    """Every key of one person (for forgetting them)."""
    return (profile(pk), events(pk), exposures(pk), positive_rewards(pk), identities(pk))


def decision(decision_id: str) -> str:
    return "{d:" + decision_id + "}"


def decision_events(decision_id: str) -> str:
    return "{d:" + decision_id + "}:e"


def catalog_actions(catalog_version: str) -> str:
    return "nba:catalog:{" + catalog_version + "}:actions"


def budget_total(offer_id: str) -> str:
    return "{b:" + offer_id + "}:total"


def budget_day(offer_id: str, yyyymmdd: str) -> str:
    return "{b:" + offer_id + "}:d:" + yyyymmdd

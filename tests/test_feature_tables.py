"""Decision records v2 and the feature tables they reference: the record
format, the service's table writer, the one resolver, and the learner and
the offline join reading v2 (v1 stays readable: tests/test_learner.py writes
v1 records throughout)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from decision.feature_tables import (
    FeatureTables,
    MissingFeatureTable,
    TablePublisher,
    table,
    table_ttl_s,
)
from decision.features import action_features
from decision.join import JoinQuery, read_joined
from decision.learning.learner import Learner, load_learner_catalog
from decision.logs import DAY_MS, LogConfig
from decision.records import DecisionRecord, label, split_label
from decision.store import keys
from tests.test_learner import CATALOG, HOUR, MIN, T0, Joins, config, decision, log, reward


def by_reference(r: DecisionRecord, version: str | None = None) -> DecisionRecord:
    """The same decision as the service logs it: features in the table."""
    return replace(r, catalog_version=version or r.catalog_version,
                   actions=tuple(a._replace(features=None) for a in r.actions))


def features_of(r: DecisionRecord) -> dict:
    return {label(a.offer_id, a.content_id, a.channel): a.features for a in r.actions}


async def put_table(redis, version: str, features: dict) -> None:
    await redis.hset(keys.catalog_actions(version), mapping={k: json.dumps(v) for k, v in features.items()})


# --- the record --------------------------------------------------------------------------

def test_v2_names_the_actions_and_carries_no_features_v1_stays_readable():
    inline = decision("d1", T0, items=((2, 0.4), (0, 0.5)))
    v1, v2 = inline.to_json(), by_reference(inline).to_json()
    assert json.loads(v1)["v"] == 1 and json.loads(v2)["v"] == 2
    doc = json.loads(v2)
    assert doc["actions"] == ["offer_x/x_web@web", "offer_y/y_web@web", "offer_z/z_web@web", "offer_w/w_web@web"]
    assert doc["probabilities"] == [0.25] * 4 and doc["scores"] == [0.0] * 4
    assert "features" not in v2 and doc["context"] == inline.context  # shared features stay inline
    assert len(v2) < len(v1)
    back = DecisionRecord.from_json(v2)
    assert back.by_reference and back.version == 2 and back == by_reference(inline)
    assert DecisionRecord.from_json(v1) == inline and inline.version == 1
    assert back.to_json() == v2 and DecisionRecord.from_json(v1).to_json() == v1


def test_a_record_half_resolved_is_refused_and_labels_split_back():
    r = decision("d1", T0)
    mixed = replace(r, actions=(r.actions[0]._replace(features=None),) + r.actions[1:])
    with pytest.raises(ValueError, match="resolve the record"):
        mixed.to_json()
    assert split_label("o.1/c-2@web") == ("o.1", "c-2", "web")
    with pytest.raises(ValueError):
        split_label("no-label")
    with pytest.raises(ValueError, match="unsupported decision record version"):
        DecisionRecord.from_json('{"v": 3}')


# --- the service writes the table ------------------------------------------------------------

async def test_the_publisher_writes_every_candidate_once_and_keeps_it_alive(redis):
    catalog = load_learner_catalog(CATALOG)
    now = [0.0]
    pub = TablePublisher(redis, LogConfig(retention_ms=2 * DAY_MS), refresh_s=60, clock=lambda: now[0])
    assert pub.due(catalog.version)
    await pub.publish(catalog)
    key = keys.catalog_actions(catalog.version)
    stored = {k: json.loads(v) for k, v in (await redis.hgetall(key)).items()}
    want = {c.label: action_features(catalog, c) for cs in catalog.candidates.values() for c in cs}
    assert stored == json.loads(json.dumps(want)) == json.loads(json.dumps(table(catalog)))
    assert 0 < await redis.ttl(key) <= table_ttl_s(LogConfig(retention_ms=2 * DAY_MS)) == 3 * 86_400
    assert not pub.due(catalog.version)
    now[0] = 61.0
    assert pub.due(catalog.version)  # an hourly (here: a minute) refresh of the expiry
    await redis.delete(key)
    await pub.publish(catalog)  # the refresh finds it gone: written again
    assert await redis.hlen(key) == len(want) and not pub.due(catalog.version)


# --- the one resolver --------------------------------------------------------------------

async def test_the_resolver_loads_once_interns_and_refuses_to_guess(redis):
    r = decision("d1", T0)
    await put_table(redis, "tv", features_of(r))
    ref = by_reference(r, "tv")
    tables = FeatureTables(redis)
    assert await tables.load_for([ref, by_reference(r, "gone")]) == ["gone"]
    resolved = tables.resolve(ref)
    assert resolved == replace(r, catalog_version="tv") and not resolved.by_reference
    a1, a2 = tables.actions(ref), tables.actions(by_reference(decision("d2", T0), "tv"))
    assert a1 is a2 and [a.id for a in a1] == [f"{o}/{o[6:]}_web@web" for o in ("offer_x", "offer_y", "offer_z",
                                                                                 "offer_w")]
    assert tables.actions(resolved) == a1 and all(x is y for x, y in zip(tables.actions(resolved), a1))
    assert tables.resolve(r) is r  # v1: already inline
    with pytest.raises(MissingFeatureTable, match="gone"):
        tables.resolve(by_reference(r, "gone"))
    assert not tables.can_load("gone")  # looked up a moment ago: not again until RETRY_S

    # a consumer with the catalog of that very version rebuilds a missing table from it
    catalog = load_learner_catalog(CATALOG)
    own = FeatureTables(redis, catalog)
    assert await own.load([catalog.version]) == []
    assert own.features(catalog.version) == table(catalog)


# --- consumers read v2 ---------------------------------------------------------------------

async def test_the_learner_trains_v2_records_and_skips_those_without_a_table(redis):
    r = decision("x", T0)
    await put_table(redis, "tv", features_of(r))
    await log(redis,
              by_reference(decision("d1", T0), "tv"), reward("d1", "offer_x", T0 + MIN, "e1"),
              decision("d2", T0),  # v1, inline: still read
              by_reference(decision("d3", T0), "gone"),
              by_reference(decision("tick", T0 + 2 * HOUR), "tv"))
    joins = Joins()
    learner = Learner(redis, config(), on_joined=joins)
    await learner.run(once=True)
    assert joins.rewards == {"d1": (1.0,), "d2": (0.0,)}
    assert learner.counters["decisions_unresolved"] == 1
    assert (await redis.xpending(keys.DECISION_STREAM, "learner"))["pending"] == 1  # only "tick" waits
    # the table holds what v1 logged inline
    assert learner.tables.actions(by_reference(r, "tv"))[0].features == r.actions[0].features


async def test_the_offline_join_resolves_v2_and_counts_what_it_cannot(redis):
    r = decision("d1", T0)
    await put_table(redis, "tv", features_of(r))
    await log(redis, by_reference(r, "tv"), by_reference(decision("d2", T0), "gone"), decision("d3", T0),
              reward("d1", "offer_x", T0 + MIN, "e1"))
    res = await read_joined(redis, JoinQuery("hero", now_ms=T0 + 2 * HOUR))
    assert [j.record.decision_id for j in res.decisions] == ["d1", "d3"]
    assert res.decisions[0].record == replace(r, catalog_version="tv")  # features inline again
    assert res.stats.unresolved == 1 and "feature table" in res.stats.excluded_note()
    assert res.decisions[0].first.reward == 1.0

"""The service logs decision records v2: each action by reference to its
catalog version's feature table, which the service wrote at catalog load and
rewrites under a new version on reload."""

from __future__ import annotations

import json

from decision.feature_tables import FeatureTables
from decision.features import action_features
from decision.records import DecisionRecord, split_label
from decision.store import keys


async def test_records_reference_a_table_that_holds_what_the_policy_saw(service):
    resp = await service.decide("home_hero", "pid:tom", context={"page": "home", "device": "desktop"})
    redis = service.app.redis
    ((_, fields),) = await redis.xrevrange(keys.DECISION_STREAM, count=1)
    raw = fields["r"]
    doc = json.loads(raw)
    assert doc["v"] == 2 and "features" not in raw and doc["decision_id"] == resp.decision_id
    catalog = service.app.holder.catalog
    assert doc["catalog_version"] == catalog.version
    key = keys.catalog_actions(catalog.version)
    assert await redis.ttl(key) > 30 * 86_400  # the log retention + a day

    tables = FeatureTables(redis)
    logged = DecisionRecord.from_json(raw)
    await tables.load_for([logged])
    record = tables.resolve(logged)
    by_label = {c.label: c for cs in catalog.candidates.values() for c in cs}
    for label, a in zip(doc["actions"], record.actions):
        assert (a.offer_id, a.content_id, a.channel) == split_label(label)
        assert a.features == json.loads(json.dumps(action_features(catalog, by_label[label])))


async def test_a_reloaded_catalog_writes_its_own_table(service):
    old = service.app.holder.catalog.version
    text = service.catalog_path.read_text()
    service.catalog_path.write_text(text + "\n# a change: a new version\n")
    result = await service.app.reload_catalog()
    assert result.reloaded and result.version != old
    redis = service.app.redis
    assert await redis.exists(keys.catalog_actions(old), keys.catalog_actions(result.version)) == 2
    await service.decide("home_hero", "pid:tom", context={"page": "home"})
    ((_, fields),) = await redis.xrevrange(keys.DECISION_STREAM, count=1)
    assert json.loads(fields["r"])["catalog_version"] == result.version

"""The learner's hot path trains exactly what the slow path describes.

The trainer inlines item_examples for one-item decisions and VW reuses the
parsed examples of the interned Actions (VWPolicy.learn_interned); both are
speed-ups only. Here a learner runs over logs (records v1 and v2, single
items and slates, rewards) against a real Redis, and its model is compared,
byte for byte, with a policy trained by hand: item_examples of each joined
decision, in the learner's order, through Policy.learn (the example text).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bandits.policy import unpack
from bandits.registry import make_policy
from decision.learning.examples import LoggedDecision, item_examples
from decision.learning.learner import load_learner_catalog
from decision.records import DecisionRecord
from tests.test_learner import CATALOG, MIN, OFFERS, T0, Joins, decision, learn, log, model, reward


def logs(n: int, version: str, seed: int = 5) -> list:
    """Decisions a minute apart: champion and holdout, a quarter of them
    slates of two or three items, half by reference to the catalog's feature
    table (v2), rewards for about a third of the items."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arm = ("champion", "vw_champion") if i % 2 else ("holdout", "uniform")
        k = 1 if rng.random() < 0.75 else int(rng.integers(2, 4))
        picked = [int(a) for a in rng.permutation(4)[:k]]
        items = tuple((a, float(rng.choice([0.25, 0.4, 0.5]))) for a in picked)
        d = decision(f"d{i:05d}", T0 + i * MIN, arm=arm[0], policy=arm[1], segment="abc"[int(rng.integers(3))],
                     items=items)
        if i % 2 == 0:  # v2: labels only, features in the catalog version's table
            d = replace(d, catalog_version=version, actions=tuple(a._replace(features=None) for a in d.actions))
        out.append(d)
        for rank, a in enumerate(picked, 1):
            if rng.random() < 0.35:
                out.append(reward(d.decision_id, OFFERS[a], d.ts_ms + int(rng.integers(1, 50)) * MIN, f"e{i}-{rank}",
                                  value=float(rng.choice([0.5, 1.0])), rank=rank))
    return out


async def test_the_learners_model_is_the_one_item_examples_describe(redis):
    catalog = load_learner_catalog(CATALOG)
    records = logs(500, catalog.version)
    await log(redis, *records, decision("tick", T0 + 600 * MIN + 2 * 3_600_000))
    joins = Joins()
    learner = await learn(redis, joins, snapshot_every=150, batch=64)
    m = model(learner)
    assert m.examples > 500 and learner.counters["checkpoints"] >= 3

    # as the learner reads them: through the JSON (its sorted keys put the context namespaces in another
    # order than the dicts above, and VW's text follows the order)
    by_id = {r.decision_id: DecisionRecord.from_json(r.to_json()) for r in records if isinstance(r, DecisionRecord)}
    by_hand = make_policy(m.config.kind, m.config.name, m.config.params, reward_range=m.reward_range, seed=0)
    slates = 0
    for did in joins.order:  # the learner's order; both arms train the champion (learn_from: own)
        record = LoggedDecision.of(by_id[did], learner.tables)
        rewards = dict(zip((item.rank for item in record.items), joins.rewards[did]))
        examples = item_examples(record)
        slates += len(examples) > 1
        for ex in examples:
            by_hand.learn(ex.context, ex.actions, ex.chosen, ex.probability, rewards[ex.rank])
    assert slates > 50 and by_hand.examples_learned == m.examples
    assert by_hand.sum_loss == m.policy.sum_loss
    assert unpack(by_hand.save(), "vw")[1] == unpack(m.policy.save(), "vw")[1]  # VW's model file, byte for byte


def test_decode_reward_agrees_with_the_record_contract():
    import json

    import pytest

    from decision.learning.examples import decode_reward
    from decision.records import RewardRecord

    for r in (reward("d1", "offer_x", T0, "e1"), replace(reward("d2", "offer_y", T0 + 5, "e2", value=0.5),
                                                         value=12.5, occurred_ms=T0 - 7)):
        got, want = decode_reward(r.to_json()), RewardRecord.from_json(r.to_json())
        assert tuple(got) == (want.event_id, want.decision_id, want.ts_ms, want.occurred_ms, want.offer_id,
                              want.reward)
    good = json.loads(reward("d1", "offer_x", T0, "e1").to_json())
    bad = [{**good, "v": 2}, {**good, "rank": "first"}, {**good, "value": "much"}, {**good, "reward": None},
           *({k: v for k, v in good.items() if k != drop} for drop in good if drop != "value")]
    for d in bad:
        raw = json.dumps(d)
        with pytest.raises((ValueError, KeyError, TypeError)):
            RewardRecord.from_json(raw)
        with pytest.raises((ValueError, KeyError, TypeError)):
            decode_reward(raw)

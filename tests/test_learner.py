"""The learner against a real Redis: join semantics, checkpoint/restart,
snapshots and the replica's hot swap, refusals, rollback, apprentice mode.

Records are written to the log streams exactly as the service writes them
(field "r" = the versioned JSON record); the learner reads nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bandits.policy import Context
from bandits.registry import load_policy, make_policy
from decision.learning import join
from decision.feature_tables import FeatureTables
from decision.learning.examples import LoggedDecision, decode_decision, item_examples
from decision.learning.learner import Learner, LearnerBusy, LearnerConfig
from decision.models import ModelWatcher, SnapshotPolicy
from decision.pipeline import CatalogHolder
from decision.policies import PolicyBook
from decision.records import DecisionRecord, LoggedAction, LoggedItem, LoggedRemoval, RewardRecord
from decision.store import keys
from decision.store import models as mkeys
from decision.store.models import CHECKPOINT, LEARNER_LOCK, ModelStore

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "tests" / "data" / "learning.yaml"
OFFERS = ("offer_x", "offer_y", "offer_z", "offer_w")
T0 = 1_767_225_600_000
MIN = 60_000
HOUR = 3_600_000


# --- building the logs ---------------------------------------------------------------


def decision(did: str, ts: int, *, arm: str = "champion", policy: str = "vw_champion", segment: str = "a",
             items: tuple[tuple[int, float], ...] = ((0, 0.25),), probs: tuple[float, ...] = (0.25,) * 4,
             window_s: int = 3600, default: float = 0.0, fallback: bool = False,
             removed: tuple[LoggedRemoval, ...] = ()) -> DecisionRecord:
    actions = tuple(
        LoggedAction(o, o.removeprefix("offer_") + "_web", "web",
                     {"offer": {"id": o}, "content": {"id": o.removeprefix("offer_") + "_web"}, "channel": {"id": "web"}},
                     p, 0.0)
        for o, p in zip(OFFERS, probs)
    )
    return DecisionRecord(
        decision_id=did, ts_ms=ts, placement="hero", arm=arm, policy=policy, model_version="test",
        catalog_version="test-catalog", person="p" * 32, anonymous=False, assignment="person",
        context={"user": {f"seg_{segment}": 1.0}, "context": {"page": "home"}},
        actions=actions, items=tuple(LoggedItem(r + 1, a, p, 0.0) for r, (a, p) in enumerate(items)),
        fallback=fallback, removed=removed, join_window_s=window_s, default_reward=default)


def reward(did: str, offer: str, ts: int, event_id: str, *, value: float = 1.0, event: str = "click",
           occurred: int | None = None, rank: int = 1) -> RewardRecord:
    return RewardRecord(event_id=event_id, decision_id=did, ts_ms=ts, occurred_ms=ts if occurred is None else occurred,
                        placement="hero", arm="champion", policy="vw_champion", offer_id=offer, rank=rank,
                        event_type=event, value=None, reward=value)


async def log(redis, *records) -> None:
    pipe = redis.pipeline(transaction=False)
    for r in records:
        stream = keys.DECISION_STREAM if isinstance(r, DecisionRecord) else keys.REWARD_STREAM
        pipe.xadd(stream, {"r": r.to_json()})
    await pipe.execute()


def config(**kw) -> LearnerConfig:
    base = dict(catalog=CATALOG, lateness_s=0, snapshot_every=10_000, snapshot_seconds=3600, idle_s=0.01,
                pointer_poll_s=0.0)
    return LearnerConfig(**{**base, **kw})


class Joins:
    """Records every closed join the learner trains: decision id -> item rewards."""

    def __init__(self) -> None:
        self.rewards: dict[str, tuple[float, ...]] = {}
        self.order: list[str] = []

    def __call__(self, joined: join.Joined, rewards: tuple[float, ...]) -> None:
        assert joined.record.decision_id not in self.rewards, "trained twice"
        self.rewards[joined.record.decision_id] = rewards
        self.order.append(joined.record.decision_id)


async def learn(redis, joins: Joins | None = None, **kw) -> Learner:
    learner = Learner(redis, config(**kw), on_joined=joins)
    await learner.run(once=True)
    return learner


def model(learner: Learner, arm: str = "champion"):
    return learner.trainer.models[("hero", arm)]


# --- join semantics ------------------------------------------------------------------


async def test_rewards_inside_the_window_count_after_it_the_default(redis):
    await log(redis,
              decision("d1", T0), reward("d1", "offer_x", T0 + 59 * MIN, "e1"),  # late but inside: counts
              decision("d2", T0, default=0.25), reward("d2", "offer_x", T0 + 61 * MIN, "e2"),  # after the window
              decision("d3", T0, default=0.25),  # nothing: the default
              decision("tick", T0 + 2 * HOUR))  # moves the event-time watermark past the windows
    joins = Joins()
    learner = await learn(redis, joins)
    assert joins.rewards == {"d1": (1.0,), "d2": (0.25,), "d3": (0.25,)}
    assert learner.counters["rewards_attached"] == 1 and learner.counters["rewards_late"] == 1
    assert model(learner).examples == 3
    assert len(learner.joiner.pending) == 1  # "tick" waits for its own window


async def test_an_open_window_waits_for_the_watermark(redis):
    await log(redis, decision("d1", T0), reward("d1", "offer_x", T0 + MIN, "e1"), decision("d2", T0 + 30 * MIN))
    joins = Joins()
    await learn(redis, joins)
    assert joins.rewards == {}  # the newest event is 30 minutes in: d1's hour is not over
    await log(redis, decision("d3", T0 + 61 * MIN))
    await learn(redis, joins)  # a restart resumes d1 and d2 from the group's pending list
    assert joins.rewards == {"d1": (1.0,)}


async def test_events_add_up_clipped_to_the_range_and_duplicates_count_once(redis):
    await log(redis,
              decision("d1", T0),
              reward("d1", "offer_x", T0 + MIN, "click-1", value=0.25),
              reward("d1", "offer_x", T0 + MIN, "click-1", value=0.25),  # the same event id again
              reward("d1", "offer_x", T0 + 2 * MIN, "buy-1", value=0.5),
              decision("d2", T0),
              reward("d2", "offer_x", T0 + MIN, "c2", value=1.0), reward("d2", "offer_x", T0 + MIN, "v2", value=0.5),
              decision("d1", T0),  # a redelivered decision row
              decision("tick", T0 + 2 * HOUR))
    joins = Joins()
    learner = await learn(redis, joins)
    assert joins.rewards == {"d1": (0.75,), "d2": (1.0,)}  # 0.25 + 0.5; 1.5 clipped to [0, 1]
    assert learner.counters["rewards_duplicate"] == 1 and learner.counters["decisions_duplicate"] == 1
    assert model(learner).examples == 2


async def test_a_reward_read_before_its_decision_waits_for_it(redis):
    learner = Learner(redis, config(), on_joined=(joins := Joins()))
    await learner.start()
    await log(redis, reward("d1", "offer_x", T0 + MIN, "e1"), reward("ghost", "offer_x", T0 + MIN, "e2"))
    await learner.step()  # both rewards buffered: their decisions are not read yet
    assert learner.joiner.buffered == 2
    await log(redis, decision("d1", T0))  # the decision row lands after its reward was read
    await learner.step()
    assert learner.joiner.buffered == 0  # d1's reward attached; "ghost" had no decision: an orphan
    assert learner.counters["rewards_orphan"] == 1
    await log(redis, decision("tick", T0 + 2 * HOUR))
    await learner.run(once=True)
    assert joins.rewards == {"d1": (1.0,)}
    pending = await redis.xpending(keys.REWARD_STREAM, "learner")
    assert pending["pending"] == 0  # the orphan was acknowledged, d1's reward after the checkpoint


async def test_a_buffered_reward_survives_a_restart(redis):
    await log(redis, reward("d1", "offer_x", T0 + MIN, "e1"))
    joins = Joins()
    await learn(redis, joins)  # buffered, not acknowledged
    await log(redis, decision("d1", T0), decision("tick", T0 + 2 * HOUR))
    await learn(redis, joins)
    assert joins.rewards == {"d1": (1.0,)}


async def test_each_item_of_a_slate_is_an_example_over_the_actions_left_at_its_rank(redis):
    slate = decision("d1", T0, items=((2, 0.4), (0, 0.5), (3, 0.6)))  # offers z, x, w
    await log(redis, slate, reward("d1", "offer_x", T0 + MIN, "e1", rank=2), decision("tick", T0 + 2 * HOUR))
    joins = Joins()
    learner = await learn(redis, joins)
    assert joins.rewards == {"d1": (0.0, 1.0, 0.0)}  # in rank order: only x (rank 2) was clicked
    assert model(learner).examples == 3
    examples = item_examples(LoggedDecision.of(slate, learner.tables))
    assert [e.rank for e in examples] == [1, 2, 3]
    assert [[a.group for a in e.actions] for e in examples] == [
        list(OFFERS), ["offer_x", "offer_y", "offer_w"], ["offer_y", "offer_w"]]
    assert [e.actions[e.chosen].group for e in examples] == ["offer_z", "offer_x", "offer_w"]
    assert [e.probability for e in examples] == [0.4, 0.5, 0.6]


async def test_what_is_not_learned_is_acknowledged_and_counted(redis):
    await log(redis,
              decision("fb", T0, fallback=True, items=()), reward("fb", "offer_x", T0 + MIN, "e0"),
              decision("refused", T0, removed=(LoggedRemoval("offer_y", "y_web", "web", "commit", "cap"),)),
              decision("hold", T0, arm="holdout", policy="uniform"),
              decision("tick", T0 + 2 * HOUR))
    await redis.xadd(keys.DECISION_STREAM, {"r": "{not json"})
    joins = Joins()
    learner = await learn(redis, joins)
    assert set(joins.rewards) == {"hold"}  # the uniform holdout trains the champion (learn_from: own)
    assert learner.counters["decisions_ignored"] == 2 and learner.counters["decisions_bad"] == 1
    assert learner.counters["rewards_ignored"] + learner.counters["rewards_orphan"] == 1
    assert (await redis.xpending(keys.DECISION_STREAM, "learner"))["pending"] == 1  # only "tick" waits


async def test_a_decision_forgotten_while_it_waits_for_its_window_is_not_trained(redis):
    """Forget deletes a person's rows and writes their pseudonym to the
    tombstone set (decision/forget.py); a row the learner read before that
    waits in memory for its window, and must not be trained when it closes."""
    sarah, tom = "s" * 32, "t" * 32
    await log(redis, replace(decision("d-sarah", T0), person=sarah), reward("d-sarah", "offer_x", T0 + MIN, "e1"),
              replace(decision("d-tom", T0), person=tom), decision("later", T0 + 30 * MIN))
    joins = Joins()
    learner = Learner(redis, config(), on_joined=joins)
    await learner.start()
    try:
        while not await learner.step():
            pass
        assert joins.rewards == {} and len(learner.joiner.pending) == 3  # read, windows still open
        entry = next(eid for eid, f in await redis.xrange(keys.DECISION_STREAM) if "d-sarah" in f["r"])
        await redis.xdel(keys.DECISION_STREAM, entry)  # what Forget does to the log ...
        await redis.zadd(keys.FORGOTTEN, {sarah: T0 + 40 * MIN})  # ... and to the tombstones
        await log(redis, decision("tick", T0 + 2 * HOUR))
        while not await learner.step():
            pass
        assert set(joins.rewards) == {"d-tom", "later"}
        assert learner.counters["decisions_forgotten"] == 1
    finally:
        await learner.close()
    pending = await redis.xpending(keys.DECISION_STREAM, "learner")
    assert pending["pending"] == 1  # only "tick": sarah's decision and reward were acknowledged, not left behind
    assert (await redis.xpending(keys.REWARD_STREAM, "learner"))["pending"] == 0


def test_decode_decision_agrees_with_the_record_contract():
    r = decision("d1", T0, items=((1, 0.3), (0, 0.5)),
                 removed=(LoggedRemoval("offer_y", "y_web", "web", "commit", "r"),))
    r = replace(r, request_id="req", simulated=True)
    tables = FeatureTables()
    v1 = r.to_json()  # features inline
    assert decode_decision(v1, tables) == LoggedDecision.of(DecisionRecord.from_json(v1), tables)
    # v2: the same decision by reference to its catalog version's feature table
    features = {f"{a.offer_id}/{a.content_id}@{a.channel}": a.features for a in r.actions}
    v2 = replace(r, actions=tuple(a._replace(features=None) for a in r.actions)).to_json()
    assert '"v":2' in v2 and "features" not in v2
    tables.add(r.catalog_version, features)
    decoded = decode_decision(v2, tables)
    assert decoded == LoggedDecision.of(DecisionRecord.from_json(v2), tables) == LoggedDecision.of(r, tables)
    assert decoded.refused and decoded.actions is decode_decision(v2, tables).actions  # one interned set


# --- checkpoint and restart ------------------------------------------------------------

def scores(learner: Learner) -> list[list[float]]:
    return scores_of(model(learner).policy, learner)


def scores_of(policy, learner: Learner) -> list[list[float]]:
    actions = learner.tables.actions(decision("probe", T0))
    return [policy.rank(Context({"user": {f"seg_{s}": 1.0}, "context": {"page": "home"}}),
                        actions).scores.tolist() for s in "ab"]


def population(n: int, seed: int = 3) -> list:
    """n decisions a minute apart, half the arms each, rewards for a third."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arm = ("champion", "vw_champion") if i % 2 else ("holdout", "uniform")
        a = int(rng.integers(4))
        d = decision(f"d{i:05d}", T0 + i * MIN, arm=arm[0], policy=arm[1], segment="ab"[i % 3 % 2],
                     items=((a, 0.25),))
        out.append(d)
        if rng.random() < 0.35:
            out.append(reward(d.decision_id, OFFERS[a], d.ts_ms + int(rng.integers(1, 50)) * MIN, f"e{i}"))
    return out


async def _fresh(redis):
    await redis.flushall()


async def test_restart_trains_each_example_exactly_once(redis):
    records = population(600)
    await log(redis, *records)
    whole = Joins()
    single = await learn(redis, whole, snapshot_every=100, batch=64)
    want_examples = model(single).examples
    want_scores = scores(single)
    assert want_examples > 400

    await _fresh(redis)
    half = len(records) // 2
    split = Joins()
    await log(redis, *records[:half])
    first = await learn(redis, split, snapshot_every=100, batch=64)
    assert 0 < model(first).examples < want_examples
    await log(redis, *records[half:])
    second = await learn(redis, split, snapshot_every=100, batch=64)
    assert model(second).examples == want_examples
    assert split.rewards == whole.rewards and split.order == whole.order
    # same examples in the same order, through a save and a load: the same
    # weights (VW's saved run statistics differ, its predictions do not)
    assert scores(second) == want_scores


# pointer_poll_s: 0 polls every round, so a checkpoint is taken at once;
# a long interval lets it be pipelined into the next round (Learner.step)
AT_ONCE, PIPELINED = 0.0, 3600.0


@pytest.mark.parametrize("poll", [AT_ONCE, PIPELINED])
async def test_a_crash_before_the_checkpoint_loses_nothing(redis, poll):
    records = population(400)
    await log(redis, *records)
    whole = Joins()
    single = await learn(redis, whole, snapshot_every=50)
    want = model(single).examples

    await _fresh(redis)
    await log(redis, *records)
    crashed = Learner(redis, config(snapshot_every=50, batch=100, pointer_poll_s=poll))
    await crashed.start()
    await crashed.step()
    await crashed.step()  # trained and snapshotted some, read more; then the process dies
    assert crashed.counters["checkpoints"] >= 1
    await redis.delete(LEARNER_LOCK)  # its lock expires
    resumed = Joins()
    restarted = await learn(redis, resumed, snapshot_every=50, batch=100)
    assert model(restarted).examples == want


async def test_a_checkpoint_due_is_taken_in_the_next_round_and_covers_only_what_came_before(redis):
    """Pipelined (Learner.step): the models are saved after the next round is
    read and joined, before any of it is learned, and committed after it is."""
    await log(redis, *population(400))
    joins = Joins()
    learner = Learner(redis, config(snapshot_every=1, batch=100, pointer_poll_s=PIPELINED), on_joined=joins)
    await learner.start()
    try:
        await learner.step()  # round 1 learned; its checkpoint is due
        first, want = list(joins.order), scores(learner)
        assert first and await redis.get(CHECKPOINT) is None
        await learner.step()  # round 2: round 1's checkpoint, then round 2 learned
        assert len(joins.order) > len(first) and learner.counters["checkpoints"] == 1
        doc = json.loads(await redis.get(CHECKPOINT))
        assert doc["trained"] == first  # exactly round 1's decisions ...
        assert doc["counters"]["joined"] == len(first)
        version = doc["models"]["hero:champion"]["version"]
        assert await ModelStore(redis).current("hero", "champion") == version
        saved = load_policy(await ModelStore(redis).load_bytes("hero", "champion", version))
        assert scores_of(saved, learner) == want  # ... and the model as round 1 left it
        assert scores(learner) != want  # which round 2 has changed since
    finally:
        await learner.close()


async def test_a_crash_between_commit_and_publish_is_rolled_forward(redis):
    records = population(300)
    await log(redis, *records)
    single = await learn(redis, Joins(), snapshot_every=10_000)
    want = model(single).examples

    await _fresh(redis)
    await log(redis, *records)
    crashing = Learner(redis, config())
    await crashing.start()

    async def dies(*args, **kw):
        raise ConnectionError("killed after the checkpoint was committed")

    crashing.store.publish = dies  # fault injection: the process dies right after step 2
    with pytest.raises(ConnectionError):
        await crashing.run(once=True)
    store = ModelStore(redis)
    assert await store.current("hero", "champion") is None  # never published ...
    assert json.loads(await redis.get(CHECKPOINT))["models"]["hero:champion"]["version"] == 1  # ... but committed
    assert (await redis.xpending(keys.DECISION_STREAM, "learner"))["pending"] > want  # and nothing acknowledged

    restarted = await learn(redis, Joins())
    assert await store.current("hero", "champion") == 1  # published on restart
    assert model(restarted).examples == want  # redelivered decisions were not trained again
    assert restarted.counters["decisions_trained"] == want


async def test_one_learner_at_a_time(redis):
    first = Learner(redis, config())
    await first.start()
    with pytest.raises(LearnerBusy, match="another learner is running"):
        await Learner(redis, config()).start()
    await first.close()
    await Learner(redis, config()).start()


# --- snapshots on the replica -------------------------------------------------------------

def service_side(redis) -> tuple[ModelWatcher, dict]:
    from decision.server import load

    catalog = load(CATALOG)
    box = {"holder": CatalogHolder(catalog, PolicyBook.from_catalog(catalog))}
    return ModelWatcher(redis, lambda: box["holder"]), box


async def test_a_published_snapshot_is_swapped_in_between_requests(redis):
    watcher, box = service_side(redis)
    await watcher.load()
    fresh = box["holder"].book.get("hero", "champion")
    assert fresh.version.startswith("vw:")  # nothing published yet: the catalog's untrained model

    await log(redis, *population(200))
    learner = await learn(redis, Joins())
    await watcher.sync()
    served = box["holder"].book.get("hero", "champion")
    assert isinstance(served, SnapshotPolicy) and served.version == "vw_champion:v1"
    assert watcher.status().served["hero:champion"] == "vw_champion:v1"

    in_flight = served  # a request that already took the policy keeps it
    await log(redis, *[replace(r, decision_id="n" + r.decision_id, ts_ms=r.ts_ms + 400 * MIN)
                       if isinstance(r, DecisionRecord) else
                       replace(r, decision_id="n" + r.decision_id, ts_ms=r.ts_ms + 400 * MIN,
                               occurred_ms=r.occurred_ms + 400 * MIN) for r in population(200, seed=4)])
    await learner.run(once=True)
    await watcher.sync()
    assert box["holder"].book.get("hero", "champion").version == "vw_champion:v2"
    ctx = Context({"user": {"seg_a": 1.0}})
    acts = learner.tables.actions(decision("x", T0))
    assert in_flight.rank(ctx, acts).probabilities.sum() == pytest.approx(1.0)
    # a catalog reload that keeps the policy keeps the served snapshot
    catalog = box["holder"].catalog
    book = PolicyBook.from_catalog(catalog, previous=box["holder"].book)
    assert book.get("hero", "champion").version == "vw_champion:v2"


async def test_a_corrupt_or_foreign_snapshot_is_refused_and_the_current_kept(redis):
    watcher, box = service_side(redis)
    await log(redis, *population(200))
    await learn(redis, Joins())
    await watcher.load()
    assert box["holder"].book.get("hero", "champion").version == "vw_champion:v1"
    store = ModelStore(redis)
    good = await store.load_bytes("hero", "champion", 1)

    await store.write_bytes("hero", "champion", 2, good[:-40])  # truncated
    await redis.set(mkeys.model_current("hero", "champion"), 2)
    await watcher.sync()
    assert box["holder"].book.get("hero", "champion").version == "vw_champion:v1"
    assert watcher.status().refused == 1 and "v2 refused" in watcher.last_error()

    other = make_policy("vw", "vw_champion", {"exploration": "epsilon", "epsilon": 0.2}, reward_range=(0, 1))
    await store.write_bytes("hero", "champion", 3, other.save())  # valid bytes, not the catalog's policy
    await redis.set(mkeys.model_current("hero", "champion"), 3)
    await watcher.sync()
    await watcher.sync()  # refused once per version, not on every poll
    assert box["holder"].book.get("hero", "champion").version == "vw_champion:v1"
    assert watcher.status().refused == 2 and "the catalog says" in watcher.last_error()


async def test_rollback_serves_an_older_version_and_the_learner_continues_from_it(redis):
    watcher, box = service_side(redis)
    records = population(400)
    await log(redis, *records[:200])
    learner = Learner(redis, config(snapshot_every=10_000))
    await learner.run(once=True)
    await log(redis, *records[200:])
    await learner.run(once=True)
    store = ModelStore(redis)
    assert await store.versions("hero", "champion") == [1, 2]
    v1_examples = (await store.infos("hero", "champion"))[1].examples

    await store.rollback("hero", "champion", 1)
    await watcher.sync()
    assert box["holder"].book.get("hero", "champion").version == "vw_champion:v1"
    with pytest.raises(LookupError, match="no version 7"):
        await store.rollback("hero", "champion", 7)

    await log(redis, *[replace(r, decision_id="n" + r.decision_id, ts_ms=r.ts_ms + 900 * MIN)
                       for r in population(100, seed=9) if isinstance(r, DecisionRecord)])
    await learner.run(once=True)
    info = await store.infos("hero", "champion")
    assert await store.current("hero", "champion") == 3  # numbers only grow
    assert info[3].parent == 1 and info[3].examples == v1_examples + info[3].interval_examples
    events = [e["event"] for e in await store.events(placement="hero", arm="champion")]
    assert events[:2] == ["published", "rollback"]


# --- apprentice mode ---------------------------------------------------------------------

APPRENTICE = CATALOG.read_text().replace(
    "      - {name: champion, policy: vw_champion, share: 0.5}",
    "      - name: champion\n        policy: vw_champion\n        share: 0.5\n"
    "        apprentice: {baseline: fixed_priority, until: ope, min_examples: 300}",
)


def apprentice_logs(n: int, seed: int = 5) -> list:
    """The champion arm serves fixed_priority (always offer_x, p = 1); the
    holdout is uniform. Segment a clicks x with 0.6, segment b clicks y 0.6,
    everything else 0.1: the baseline earns (0.6 + 0.1) / 2 = 0.35, the best
    policy 0.6."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        seg = "ab"[int(rng.integers(2))]
        if i % 2:
            arm, policy, a, p, probs = "champion", "fixed_priority", 0, 1.0, (1.0, 0.0, 0.0, 0.0)
        else:
            arm, policy, a, p, probs = "holdout", "uniform", int(rng.integers(4)), 0.25, (0.25,) * 4
        d = decision(f"d{i:05d}", T0 + i * MIN, arm=arm, policy=policy, segment=seg, items=((a, p),), probs=probs)
        out.append(d)
        best = 0 if seg == "a" else 1
        if rng.random() < (0.6 if a == best else 0.1):
            out.append(reward(d.decision_id, OFFERS[a], d.ts_ms + MIN, f"e{i}"))
    return out


async def test_an_apprentice_serves_the_baseline_until_the_learned_policy_beats_it(redis, tmp_path):
    catalog_path = tmp_path / "apprentice.yaml"
    catalog_path.write_text(APPRENTICE)
    from decision.server import load

    catalog = load(catalog_path)
    box = {"holder": CatalogHolder(catalog, PolicyBook.from_catalog(catalog))}
    watcher = ModelWatcher(redis, lambda: box["holder"])
    await watcher.load()
    assert box["holder"].book.get("hero", "champion").name == "fixed_priority"  # the baseline serves

    await log(redis, *apprentice_logs(3000))
    learner = Learner(redis, config(catalog=catalog_path, snapshot_every=500))
    await learner.run(once=True)
    store = ModelStore(redis)
    state = await store.state("hero", "champion")
    assert state.apprentice == "graduated", learner.trainer.models[("hero", "champion")].judge.evidence()
    ev = state.evidence
    assert ev["by"] == "learner" and ev["learned_lcb"] > ev["baseline"]
    assert ev["baseline"] == pytest.approx(0.35, abs=0.05) and ev["learned"] > 0.45
    assert "graduated" in [e["event"] for e in await store.events(placement="hero", arm="champion")]

    await watcher.sync()
    served = box["holder"].book.get("hero", "champion")
    assert isinstance(served, SnapshotPolicy) and served.name == "vw_champion"

    await store.demote("hero", "champion")  # back to the baseline by command
    await watcher.sync()
    assert box["holder"].book.get("hero", "champion").name == "fixed_priority"


# --- the command line ---------------------------------------------------------------------

def nba(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "decision.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


async def test_nba_learn_and_nba_models(redis, redis_url):
    await log(redis, *population(300))
    out = nba(redis_url, "learn", "--once", "--catalog", str(CATALOG), "--lateness", "0")
    assert out.returncode == 0, out.stderr
    assert "hero:champion" in out.stdout and "v1" in out.stdout

    out = nba(redis_url, "models", "list")
    assert out.returncode == 0, out.stderr
    assert "hero:champion" in out.stdout and "v1" in out.stdout

    await log(redis, *[replace(r, decision_id="n" + r.decision_id, ts_ms=r.ts_ms + 900 * MIN)
                       for r in population(300, seed=8) if isinstance(r, DecisionRecord)])
    assert nba(redis_url, "learn", "--once", "--catalog", str(CATALOG), "--lateness", "0").returncode == 0
    out = nba(redis_url, "models", "show", "hero", "champion")
    assert out.returncode == 0, out.stderr
    assert "v2" in out.stdout and "EXAMPLES" in out.stdout

    out = nba(redis_url, "models", "rollback", "hero", "champion", "1")
    assert out.returncode == 0, out.stderr
    assert await ModelStore(redis).current("hero", "champion") == 1
    out = nba(redis_url, "models", "rollback", "hero", "champion", "9")
    assert out.returncode == 1 and "no version 9" in out.stderr

    out = nba(redis_url, "models", "graduate", "hero", "champion", "--catalog", str(CATALOG))
    assert out.returncode == 1 and "not an apprentice" in out.stderr

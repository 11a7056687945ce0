"""The join of decisions with rewards, and `nba export` (dsjson that VW trains
on unchanged, CSV/Parquet with the Open Bandit Pipeline's columns)."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import vowpalwabbit

from bandits.sampling import remaining
from bandits.vw import example_text, reward_to_cost
from decision.experiments.data import actions_of
from decision.experiments.synthetic import START_MS, make_logs
from decision.export import dsjson_lines
from decision.join import JoinQuery, join_records
from decision.records import LoggedRemoval, RewardRecord
from tests.e2e.conftest import start_service
from tests.helpers import EXAMPLES
from tests.experiments import nba, write

HOUR = 3_600_000


def reward(d, offer, value, at_ms, n=[0]):
    n[0] += 1
    return RewardRecord(f"ev{n[0]}", d.decision_id, at_ms, at_ms, d.placement, d.arm, d.policy, offer, 1, "click",
                        None, value)


# ---- the join -------------------------------------------------------------------------

def test_join_sums_clips_defaults_and_excludes_pending_fallback_and_refused():
    logs = make_logs(6, seed=0, arms=(("holdout", "uniform", {}),), items=1, step_ms=HOUR, window_s=3600)
    d = logs.decisions
    offer = [x.actions[x.items[0].action].offer_id for x in d]
    rewards = [
        reward(d[0], offer[0], 0.7, d[0].ts_ms + 1000), reward(d[0], offer[0], 0.6, d[0].ts_ms + 2000),  # 1.3 -> 1
        reward(d[1], offer[1], 1.0, d[1].ts_ms + HOUR + 1),  # late: ignored, default 0
        reward(d[2], offer[2], 0.25, d[2].ts_ms + HOUR),  # on the window's last ms: counted
        reward(d[2], "other", 1.0, d[2].ts_ms + 10),  # another offer: not this item's
    ]
    d[3] = replace(d[3], items=(), fallback=True)
    d[4] = replace(d[4], removed=(LoggedRemoval("o1", "c1", "web", "commit", "cap:offer:1d"),))
    now = d[5].ts_ms + HOUR - 1  # d[5]'s window is still open
    res = join_records(d, rewards, JoinQuery("banner", reward_range=(0.0, 1.0)), now_ms=now)
    got = {j.record.decision_id: j.first for j in res.decisions}
    assert list(got) == [d[0].decision_id, d[1].decision_id, d[2].decision_id]
    assert got[d[0].decision_id].reward == 1.0 and got[d[0].decision_id].events == 2
    assert got[d[1].decision_id].reward == 0.0 and got[d[1].decision_id].defaulted
    assert got[d[2].decision_id].reward == 0.25 and not got[d[2].decision_id].defaulted
    s = res.stats
    assert (s.decisions, s.joined, s.pending, s.fallback, s.refused) == (6, 3, 1, 1, 1)
    assert (s.rewards, s.late_rewards, s.clipped) == (3, 1, 1)
    assert len(res.records) == 6
    # without a range nothing is clipped; the arm and time filters select
    assert join_records(d, rewards, JoinQuery("banner"), now_ms=now).decisions[0].first.reward == pytest.approx(1.3)
    q = JoinQuery("banner", since_ms=d[1].ts_ms, until_ms=d[3].ts_ms)
    assert join_records(d, rewards, q, now_ms=now).stats.decisions == 2
    assert join_records(d, rewards, JoinQuery("banner", arm="other"), now_ms=now).stats.decisions == 0


def test_multi_slot_items_each_get_their_own_reward():
    logs = make_logs(40, seed=1, items=2)
    res = join_records(logs.decisions, logs.rewards, JoinQuery("banner"), now_ms=START_MS + 10**9)
    clicked = {(r.decision_id, r.offer_id) for r in logs.rewards}
    n = 0
    for jd in res.decisions:
        assert [i.rank for i in jd.items] == [1, 2]
        for it in jd.items:
            assert it.reward == float((jd.record.decision_id, it.offer_id) in clicked)
            n += 1
    assert n == 80


# ---- dsjson ----------------------------------------------------------------------------

def test_dsjson_trains_vw_cb_adf_unchanged_and_equals_the_learners_text_examples(tmp_path):
    logs = make_logs(300, seed=2, items=2)
    res = join_records(logs.decisions, logs.rewards, JoinQuery("banner", reward_range=(0.0, 1.0)),
                       now_ms=START_MS + 10**9)
    args = ["--cb_adf", "--interactions", "UO", "--interactions", "UC", "--interactions", "XO", "--quiet"]
    from_json = vowpalwabbit.Workspace(arg_list=args + ["--dsjson"])
    from_text = vowpalwabbit.Workspace(arg_list=args)
    n = 0
    for jd in res.decisions:
        actions = actions_of(jd.record, None)
        lines = list(dsjson_lines(jd, actions, (0.0, 1.0)))
        assert len(lines) == len(jd.items)
        before: list[int] = []
        for line, item in zip(lines, jd.items):
            ex = json.loads(line)
            avail = list(range(len(actions))) if item.rank == 1 else remaining(actions, before)
            assert len(ex["c"]["_multi"]) == len(avail)
            assert ex["_labelIndex"] == avail.index(item.action) == ex["_label_Action"] - 1
            assert ex["_label_probability"] == item.probability
            assert ex["_label_cost"] == reward_to_cost(item.reward, (0.0, 1.0))
            assert ex["_nba"]["arm"] == jd.record.arm and ex["_nba"]["model_version"] == jd.record.model_version
            from_json.learn(line)  # VW parses and trains on it as is
            text = example_text(jd.record.context, [actions[i].features for i in avail],
                                (avail.index(item.action), reward_to_cost(item.reward, (0.0, 1.0)), item.probability))
            from_text.learn(text)
            before.append(item.action)
            n += 1
    assert n == 600
    # same features, same hashes, same namespaces: the two models predict alike
    probe = make_logs(20, seed=9).decisions
    from_json.save(str(tmp_path / "json.model"))
    reloaded = vowpalwabbit.Workspace(f"-i {tmp_path / 'json.model'} --quiet")  # reads text examples
    for d in probe:
        text = example_text(d.context, [a.features for a in d.actions])
        assert np.allclose(reloaded.predict(text), from_text.predict(text), atol=1e-6)


# ---- nba export --------------------------------------------------------------------------

def test_export_csv_has_the_obp_columns(sync_redis, redis_url, catalog_file, tmp_path, capsys):
    logs = make_logs(120, seed=3, items=2, removed_every=5)
    write(redis_url, logs)
    out = tmp_path / "banner.csv"
    assert nba(redis_url, catalog_file, "export", "--placement", "banner", "--arm", "holdout", "--format", "csv",
               "--out", str(out)) == 0
    assert "wrote 120 row(s) from 60 decision(s)" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 120
    for col in ("action", "position", "reward", "pscore", "context.user.segment", "context.user.age",
                "context.context.page", "action.offer.id", "action.offer.value", "action.channel.id",
                "arm", "policy", "model_version", "timestamp", "decision_id", "person"):
        assert col in rows[0], col
    assert {r["arm"] for r in rows} == {"holdout"}
    assert {r["position"] for r in rows} == {"0", "1"}
    first = [r for r in rows if r["position"] == "0"]
    assert all(float(r["pscore"]) == pytest.approx(1 / 3) for r in first)
    assert all(float(r["pscore"]) == pytest.approx(1 / 2) for r in rows if r["position"] == "1")
    assert {r["action"] for r in rows} <= {"0", "1", "2"}
    assert all(len(r["person"]) == 32 for r in rows)  # the logged pseudonym
    assert rows[0]["timestamp"].startswith("2026-01-01T")


def test_export_dsjson_file_trains_vw(sync_redis, redis_url, catalog_file, tmp_path, capsys):
    write(redis_url, make_logs(100, seed=4, items=2))
    out = tmp_path / "banner.dsjson"
    assert nba(redis_url, catalog_file, "export", "--placement", "banner", "--format", "dsjson", "--out",
               str(out)) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 200
    ws = vowpalwabbit.Workspace("--cb_explore_adf --dsjson --quiet")
    for line in lines:
        ws.learn(line)


def test_export_parquet(sync_redis, redis_url, catalog_file, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is the optional [export] extra")
    write(redis_url, make_logs(50, seed=5, items=1))
    out = tmp_path / "banner.parquet"
    assert nba(redis_url, catalog_file, "export", "--placement", "banner", "--format", "parquet", "--out",
               str(out)) == 0
    table = pq.read_table(out)
    assert table.num_rows == 50
    assert {"action", "position", "reward", "pscore", "context.user.segment"} <= set(table.column_names)


def test_export_parquet_without_pyarrow_says_how_to_get_it(sync_redis, redis_url, catalog_file, tmp_path, capsys):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pyarrow is installed here")
    write(redis_url, make_logs(10, seed=5, items=1))
    assert nba(redis_url, catalog_file, "export", "--placement", "banner", "--format", "parquet", "--out",
               str(tmp_path / "x.parquet")) == 1
    err = capsys.readouterr().err
    assert "needs pyarrow: pip install 'nba-decisioning[export]'" in err and "Traceback" not in err


def test_export_of_a_range_with_no_data(sync_redis, redis_url, catalog_file, tmp_path, capsys):
    write(redis_url, make_logs(10, seed=1))
    out = tmp_path / "x.csv"
    assert nba(redis_url, catalog_file, "export", "--placement", "banner", "--until", "2025-12-31", "--format",
               "csv", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "nba export: no joined decisions for placement 'banner', until 2025-12-31T00:00:00.000Z" in err
    assert "Traceback" not in err and not out.exists()
    # everything pending: the windows are still open at --as-of
    assert nba(redis_url, catalog_file, "export", "--placement", "banner", "--as-of", "2026-01-01T00:10:00Z",
               "--format", "csv", "--out", str(out)) == 1
    assert "pending (join window still open)" in capsys.readouterr().err
    assert nba(redis_url, catalog_file, "export", "--placement", "banner", "--format", "csv", "--out",
               str(tmp_path / "missing" / "x.csv")) == 1
    assert "does not exist" in capsys.readouterr().err


# ---- real service logs -----------------------------------------------------------------

async def test_export_of_real_service_logs_trains_vw(redis, redis_url, tmp_path):
    from decision.clock import ManualClock
    from decision.export import run
    from tests.e2e.conftest import decide_request
    from decision.nba.v1 import decision_pb2 as pb

    catalog = tmp_path / "catalog.yaml"
    shutil.copy(EXAMPLES / "catalog.yaml", catalog)
    clock = ManualClock(ms=1_795_017_600_000)
    svc = await start_service(redis_url, catalog, clock)
    try:
        await svc.load_profiles()
        for i, who in enumerate(["pid:tom", "pid:sarah", "cookie:visitor-1", "pid:marco"] * 5):
            resp = await svc.stub.Decide(decide_request("product_banner", who, count=2))
            if resp.items and i % 3 == 0:
                await svc.stub.Reward(pb.RewardRequest(decision_id=resp.decision_id,
                                                       offer_id=resp.items[0].offer_id,
                                                       event_type="convert", event_id=f"e{i}"))
            clock.advance(minutes=5)
    finally:
        await svc.channel.close()
        await svc.app.stop()
    out = tmp_path / "pb.dsjson"
    args = argparse.Namespace(placement="product_banner", since=None, until=None, arm=None, catalog=str(catalog),
                              as_of="2026-12-31", format="dsjson", out=str(out), include_person=False,
                              command="export")
    assert await run(args, redis=redis) == 0
    lines = out.read_text().splitlines()
    assert lines
    ws = vowpalwabbit.Workspace("--cb_explore_adf --dsjson --quiet")
    for line in lines:
        ws.learn(line)
        ex = json.loads(line)
        assert set(ex["c"]) >= {"U", "X", "_multi"}
        assert {"O", "C", "H"} <= set(ex["c"]["_multi"][0])
    rewarded = [json.loads(x) for x in lines if json.loads(x)["_nba"]["reward"] > 0]
    # convert = the offer's value in a range of [0, 100]: cost -value/100
    assert rewarded and all(-1 <= x["_label_cost"] < 0 for x in rewarded)

"""Parts of `nba bench` that can be checked without running it: the
generated catalogs, the bulk population writer, the learner's figures, the
cores given to service processes, the ratio noise of the profiles sweep."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from decision.bench import candidates, learner, population, procs, report
from decision.server import load
from decision.store import keys
from decision.store.redis_store import ProfileWriter


@pytest.mark.parametrize("n", [1, 10, 11, 20, 200])
def test_generated_catalog_has_exactly_n_candidates(tmp_path, n) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(candidates.catalog_text(n))
    catalog = load(path)  # the service's own loader: rules compile, the VW policy validates
    assert candidates.candidate_count(catalog) == n
    placement = catalog.placements[candidates.PLACEMENT]
    assert placement.fallback_offer == "o000"
    assert {catalog.policies[a.policy].kind for a in placement.arms} == {"vw"}


def _without_event_ids(members: list[tuple[str, float]]) -> list[tuple[dict, float]]:
    out = []
    for member, score in members:
        d = json.loads(member)
        d.pop("id")  # a random id per event, so that equal events stay two members
        out.append((d, score))
    return sorted(out, key=lambda x: (x[1], json.dumps(x[0], sort_keys=True)))


async def test_bulk_load_writes_what_the_profile_writer_writes(redis) -> None:
    now = int(time.time() * 1000)
    await population.load_bulk(redis, 0, 3, now, seed=7, batch=2)
    bulk = {i: (await redis.hgetall(keys.profile(population.person_key(i))),
                _without_event_ids(await redis.zrange(keys.events(population.person_key(i)), 0, -1,
                                                      withscores=True)))
            for i in range(3)}
    await redis.flushall()
    writer = ProfileWriter(redis)
    for i in range(3):
        await writer.write(population.profile(i, now, seed=7))
        pk = population.person_key(i)
        assert bulk[i][0] == await redis.hgetall(keys.profile(pk))
        assert bulk[i][1] == _without_event_ids(await redis.zrange(keys.events(pk), 0, -1, withscores=True))
        assert len(bulk[i][0]) > 20 and len(bulk[i][1]) == 20


def test_decide_requests_sample_and_default() -> None:
    everybody = population.decide_requests("home_hero", 50, seed=3)
    assert len(everybody) == 50
    assert population.decide_requests("home_hero", 50, seed=3, count=50) == everybody
    assert len(population.decide_requests("home_hero", 50, seed=3, count=120, first=10)) == 120


LEARNER_OUTPUT = (
    "learner: 20,000 joined decisions (20,000 examples, 20 actions each, 5,990 rewards) in 1.41s = "
    "14,184 joined examples/s on one core\n"
    "  read           0.10s     5.0 us/example     7%\n"
    "VW alone (pre-built text -> parse -> learn): 29,533 examples/s\n"
)


def test_learner_figures_are_read_from_its_report() -> None:
    assert learner.parse(LEARNER_OUTPUT) == {"joined": 20_000, "elapsed_s": 1.41, "per_s": 14_184.0,
                                             "vw_only_per_s": 29_533.0}
    assert learner.parse("something else") == {}


def test_the_learners_figure_is_its_median_run() -> None:
    runs = [{"per_s": 18_000.0, "vw_only_per_s": 36_000.0, "elapsed_s": 1.11, "output": "a"},
            {"per_s": 16_000.0, "vw_only_per_s": None, "elapsed_s": 1.25, "output": "b"},
            {"per_s": 23_000.0, "vw_only_per_s": 39_000.0, "elapsed_s": 0.87, "output": "c"}]
    out = learner.combine(runs)
    assert (out["per_s"], out["elapsed_s"], out["output"]) == (18_000.0, 1.11, "a")
    assert out["vw_only_per_s"] == 36_000.0  # the median of the runs that timed VW
    assert [r["per_s"] for r in out["runs"]] == [18_000.0, 16_000.0, 23_000.0]
    assert all("output" not in r for r in out["runs"])
    assert learner.combine(runs[:1])["per_s"] == 18_000.0


def test_service_processes_take_the_server_core_first_and_redis_core_last() -> None:
    two = procs.CpuLayout(server=[0], redis=[1], generators=[[1]], note="", cpus=[0, 1])
    assert two.worker_cpus(2) == [[0], [1]]
    eight = procs.CpuLayout(server=[0], redis=[1], generators=[[6], [7]], note="", cpus=list(range(8)))
    assert eight.worker_cpus(8) == [[0], [2], [3], [4], [5], [6], [7], [1]]
    assert procs.CpuLayout(None, None, [None], note="", pinned=False).worker_cpus(2) == [None, None]


def test_p99_ratio_range_spans_the_halves_of_one_step_per_size() -> None:
    lo = {"p99_parts_ms": [4.0, 5.0]}
    hi = {"p99_parts_ms": [6.0, 5.0]}
    assert report.p99_ratio_range(lo, hi) == [1.0, 1.5]
    assert report.p99_ratio_range(lo, {"p99_parts_ms": [float("nan"), 1.0]}) is None


def test_p99_ratio_range_pairs_the_rounds() -> None:
    # each round's two steps ran close together: their ratio, not the extremes of all rounds
    lo = {"p99_parts_ms": [4.0, 8.0, 5.0], "rounds": 3}
    hi = {"p99_parts_ms": [5.0, 9.0, 4.0], "rounds": 3}
    assert report.p99_ratio_range(lo, hi) == [0.8, 1.25]
    assert report.p99_ratio_range(lo, {**hi, "rounds": 2, "p99_parts_ms": [5.0, 9.0]}) == [5.0 / 8.0, 9.0 / 4.0]


def test_machine_facts_say_whether_the_tree_is_clean():
    from decision.bench.run import REPO_ROOT, machine_facts

    facts = machine_facts()
    if (REPO_ROOT / ".git").exists():
        assert isinstance(facts["git_dirty"], bool) and len(facts["git_commit"]) == 40


def _samples(rate: float, duration_s: float, warmup_s: float, latencies_ms: list[float], start_ms: float = 0.0):
    """A step whose i-th request is scheduled i/rate after start and answered latency later."""
    import numpy as np

    from decision.bench.loadgen import OK, Step, StepSamples

    n = len(latencies_ms)
    scheduled = (np.arange(n) * 1e9 / rate + start_ms * 1e6).astype(np.int64)
    done = scheduled + (np.array(latencies_ms) * 1e6).astype(np.int64)
    return StepSamples(step=Step(rate, duration_s, warmup_s), scheduled=scheduled, sent=scheduled.copy(), done=done,
                       status=np.full(n, OK, dtype=np.int32), kind=np.zeros(n, dtype=np.int8), status_names={},
                       generator_cpu_s=0.5, workers=1, wall_s=duration_s)


def test_steps_of_one_rate_join_without_their_warmups() -> None:
    from decision.bench.loadgen import concat, summarize

    # 10 requests/s for 2 s, the first second a warm-up: latencies 100 ms there, 1 and 3 ms measured
    a = _samples(10, 2.0, 1.0, [100.0] * 10 + [1.0] * 10)
    b = _samples(10, 2.0, 1.0, [100.0] * 10 + [3.0] * 10)
    joined = concat([a, b])
    assert joined.step.warmup_s == 0 and joined.step.duration_s == 2.0
    assert len(joined.scheduled) == 20 and (joined.done - joined.scheduled).max() == 3_000_000
    assert list(joined.scheduled[:11:10]) == [0, 1_000_000_000]  # b's window follows a's
    s = summarize(joined)
    assert s["requests"] == 20 and s["latency_ms"]["p50"] == 2.0 and s["latency_ms"]["max"] == 3.0


def test_rounds_pool_their_samples_and_keep_their_own_ratios() -> None:
    from decision.bench.run import pool, round_figures

    echo = [_samples(10, 2.0, 1.0, [0.5] * 20), _samples(10, 2.0, 1.0, [1.0] * 20)]
    redis = [_samples(10, 2.0, 1.0, [0.1] * 20), _samples(10, 2.0, 1.0, [0.2] * 20)]
    decide = [_samples(10, 2.0, 1.0, [1.2] * 20), _samples(10, 2.0, 1.0, [1.8] * 20)]
    first = round_figures(echo[0], redis[0], decide[0], seed=1)
    second = round_figures(echo[1], redis[1], decide[1], seed=1)
    assert first["p50_ratio"] == pytest.approx(2.0) and second["p50_ratio"] == pytest.approx(1.5)
    summaries = [{"achieved_rps": 10.0, "server_cpu_us_per_request": c, "other_processes_cpu": o}
                 for c, o in ((900.0, 0.1), (1100.0, 0.4))]
    s, merged = pool(list(zip(summaries, decide)))
    assert s["rounds"] == 2 and s["requests"] == 20
    assert s["server_cpu_us_per_request"] == 1000.0 and s["other_processes_cpu"] == 0.4
    assert s["latency_ms"]["p50"] == pytest.approx(1.5)
    assert pool([(summaries[0], decide[0])])[0] is summaries[0]


def test_notes_name_cpu_steal_when_the_hypervisor_took_cores():
    def step(steal: float) -> dict:
        return {"offered_rps": 100, "requests": 100, "steal_cpu": steal, "other_processes_cpu": 0.0}

    quiet = {"decide": {"steps": [step(0.01), step(0.02)]}}
    assert not [n for n in report.notes(quiet) if "steal" in n]
    stolen = {"decide": {"steps": [step(0.01), step(0.46)]}, "half_rate": {"decide": step(0.24)}}
    (note,) = [n for n in report.notes(stolen) if "steal" in n]
    assert "up to 0.46 cores" in note and "2 of 3 steps" in note


def test_a_verdict_from_steps_with_steal_says_so():
    def size(n: int, p99: float, steal: float) -> dict:
        return {"candidates": n, "latency_ms": {"p50": 1.0, "p99": p99}, "steal_cpu": steal, "offered_rps": 100,
                "requests": 100}

    result = {"candidates": {"rate_rps": 100, "sizes": [size(10, 2.0, 0.24), size(200, 2.5, 0.0)]}}
    (row,) = [t for t in report.targets(result) if t["id"] == "candidates_p99"]
    assert row["pass"] is True and row["steal_cpu"] == 0.24
    assert report.verdict(row) == "PASS (steal 0.24 cores: the host's figure)"  # the table's last column
    result["candidates"]["sizes"][0]["steal_cpu"] = 0.02
    (row,) = [t for t in report.targets(result) if t["id"] == "candidates_p99"]
    assert report.verdict(row) == "PASS"


def _result(commit: str, cpu: str, p99_10: float, p99_200: float, rate: int = 100, steal: float = 0.0) -> dict:
    def size(n: int, p99: float) -> dict:
        return {"candidates": n, "latency_ms": {"p50": 1.0, "p99": p99}, "steal_cpu": steal, "offered_rps": rate,
                "requests": 100}

    return {"machine": {"git_commit": commit, "cpu_model": cpu, "git_dirty": False}, "profile": "small",
            "started_at": "2026-12-07T15:00:00+00:00",
            "candidates": {"rate_rps": rate, "sizes": [size(10, p99_10), size(200, p99_200)]},
            "reward": {"max_rps": 900, "steps": []}, "decide": {"max_rps": 600, "steps": []}}


def test_compare_puts_two_runs_side_by_side(tmp_path, capsys):
    from decision.bench import compare
    from decision.cli import main

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_result("a" * 40, "AMD EPYC", 2.0, 4.0)))
    new.write_text(json.dumps(_result("b" * 40, "Intel Xeon", 2.0, 2.5, rate=80, steal=0.3)))
    assert main(["bench", "--compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "commit aaaaaaaaaaaa" in out and "commit bbbbbbbbbbbb" in out
    assert "different CPUs: compare the ratios" in out
    (line,) = [x for x in out.splitlines() if x.startswith("  p99 at 80 rps, 200 vs 10 candidates *")]
    assert "2.00x" in line and "1.25x" in line and "0.62x (better)" in line
    assert "FAIL" in line and "PASS (steal 0.30 cores: the host's figure)" in line
    assert "  * before: p99 at 100 rps, 200 vs 10 candidates" in out
    (reward,) = [x for x in out.splitlines() if "max sustainable Reward rate" in x]
    assert "same" in reward  # 900/600 both times
    # same CPU, a worse ratio, no differing conditions
    text = compare.compare(_result("a" * 40, "AMD", 2.0, 2.5), _result("b" * 40, "AMD", 2.0, 4.0))
    assert "different CPUs" not in text and "other conditions" not in text and "1.60x (worse)" in text


def test_compare_refuses_what_is_not_a_result(tmp_path, capsys):
    from decision.cli import main

    good = tmp_path / "good.json"
    good.write_text(json.dumps(_result("a" * 40, "AMD", 2.0, 2.5)))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    for name, says in (("missing.json", "No such file"), ("bad.json", "not JSON"), ("other.json", "not a result")):
        assert main(["bench", "--compare", str(good), str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"nba bench --compare: {tmp_path / name}: ") and says in err


def test_pipeline_figures_from_two_readings_of_the_histogram() -> None:
    from decision.bench.measure import pipeline_figures

    inf = float("inf")
    before = {0.001: 10.0, 0.002: 20.0, 0.005: 20.0, inf: 20.0}
    after = {0.001: 10.0, 0.002: 70.0, 0.005: 119.0, inf: 120.0}  # 100 new: 50 in (1, 2] ms, 49 in (2, 5], 1 beyond
    got = pipeline_figures(before, after)
    assert got["count"] == 100
    assert got["p50"] == pytest.approx(2.0)  # the 50th is the last of (1, 2]
    assert got["p99"] == pytest.approx(5.0)
    assert got["buckets"] == [[0.001, 0.0], [0.002, 50.0], [0.005, 99.0], ["+Inf", 100.0]]
    assert pipeline_figures(after, after) is None  # nothing decided in between
    assert pipeline_figures(None, after) is None


def test_pipeline_percentile_past_the_last_bound_is_that_bound() -> None:
    from decision.bench.measure import pipeline_summary

    got = pipeline_summary([[0.001, 50], [0.002, 90], ["+Inf", 100]])
    assert got["p50"] == pytest.approx(1.0) and got["p99"] == pytest.approx(2.0)


def test_pool_adds_up_the_pipeline_histograms_of_its_steps() -> None:
    from decision.bench.loadgen import Step, StepSamples
    from decision.bench.measure import pipeline_summary, pool

    def step(buckets):
        n = 10
        samples = StepSamples(Step(100.0, 0.1, 0.0), np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64),
                              np.arange(n, dtype=np.int64) + 1_000_000, np.zeros(n, dtype=np.int8),
                              np.zeros(n, dtype=np.int8), status_names={}, generator_cpu_s=0.0, workers=1, wall_s=0.1)
        return {"pipeline_ms": pipeline_summary(buckets)}, samples

    s, _ = pool([step([[0.001, 10], ["+Inf", 10]]), step([[0.001, 0], ["+Inf", 10]])])
    assert s["pipeline_ms"]["count"] == 20
    assert s["pipeline_ms"]["buckets"] == [[0.001, 10], ["+Inf", 20]]
    assert s["pipeline_ms"]["p50"] == pytest.approx(1.0)


def test_the_service_histograms_are_read_by_metric_and_stage() -> None:
    from decision.bench.measure import parse_service_histograms, service_figures

    def body(n: int) -> str:
        return "\n".join([
            "# TYPE nba_decide_duration_seconds histogram",
            f'nba_decide_duration_seconds_bucket{{le="0.001",placement="a"}} {n}.0',
            f'nba_decide_duration_seconds_bucket{{le="+Inf",placement="a"}} {n}.0',
            f'nba_decide_duration_seconds_bucket{{le="0.001",placement="b"}} {n}.0',
            f'nba_decide_duration_seconds_bucket{{le="+Inf",placement="b"}} {2 * n}.0',
            f'nba_decide_duration_seconds_count{{placement="a"}} {n}.0',
            f'nba_stage_duration_seconds_bucket{{le="0.0001",stage="policy"}} {n}.0',
            f'nba_stage_duration_seconds_bucket{{le="+Inf",stage="policy"}} {n}.0',
            'nba_decisions_total{placement="a"} 3.0'])

    first = parse_service_histograms(body(2))
    assert first == {"decide": {0.001: 4.0, float("inf"): 6.0}, "stage:policy": {0.0001: 2.0, float("inf"): 2.0}}
    got = service_figures({}, parse_service_histograms(body(5)))  # {}: read before the first decision
    assert got["pipeline_ms"]["count"] == 15 and got["stages_ms"]["policy"]["count"] == 5
    got = service_figures(first, parse_service_histograms(body(5)))
    assert got["pipeline_ms"]["count"] == 9 and got["pipeline_ms"]["p50"] == pytest.approx(0.75)  # 4.5th of 6 below 1 ms
    assert service_figures(None, first) == {}

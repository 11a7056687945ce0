"""`nba simulate`, small and fast: a simulated population drives the real
service over gRPC and the real learner; the learned arm beats the uniform
holdout and the fixed-priority baseline on the hidden truth, and the
off-policy estimate on the holdout's logs agrees with the on-policy result."""

from __future__ import annotations

import pytest

from decision.simulate import SimConfig, simulate

pytest.importorskip("decision.learning.learner", reason="the learner (decision/learning) is not installed")


async def test_simulation_learns_and_the_ope_check_passes(redis, redis_url, tmp_path):
    cfg = SimConfig(persons=800, train=2000, rounds=4, eval=1200, seed=1, bootstrap=300)
    lines: list[str] = []
    result = await simulate(cfg, redis_url=redis_url, out=tmp_path / "sim", echo=lines.append)
    ev = result.phases["eval"]
    per = {arm: t.expected / t.decisions for arm, t in ev.items()}
    # expected reward per decision on the hidden truth: the champion learned to
    # show each persona its offer; uniform and fixed priority cannot (the
    # margins are 0.05+ on rates of ~0.08; 1200 decisions, fixed seed)
    assert per["champion"] > per["holdout"] + 0.03
    assert per["champion"] > per["baseline"] + 0.03
    assert ev["champion"].uniform - ev["champion"].expected < 0  # negative regret against uniform
    assert result.learner["examples"] > 1000
    check = result.check
    assert check["snapshot"].startswith("snapshot champion@") and int(check["snapshot"].rsplit("@")[1]) >= 4
    assert check["late_rewards"] > 0  # late clicks were sent and ignored by the join
    assert result.passed, "\n".join(lines)
    assert any("PASS: the on-policy mean is inside the DR estimate's 95% interval" in x for x in lines)
    assert (tmp_path / "sim" / "index.html").exists() and (tmp_path / "sim" / "simulate.csv").exists()

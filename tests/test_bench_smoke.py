"""`nba bench --profile smoke` end to end: every part runs and reports.

It checks that the bench works - the echo floor, the Redis floor, the
service under open-loop load, the JSON - and never how fast anything is:
timing assertions on a shared CI machine would only measure the machine.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _check_step(name: str, s: dict) -> None:
    assert s["requests"] > 0, name
    assert s["ok"] == s["requests"], f"{name}: {s['errors']} {s.get('error_examples')}"
    assert s["error_count"] == 0 and s["errors"] == {}, name
    assert s["generator_cap_hits"] == 0, name
    assert s["achieved_rps"] > 0, name
    for key in ("p50", "p95", "p99", "p99.9"):
        assert s["latency_ms"][key] > 0 and math.isfinite(s["latency_ms"][key]), (name, key)


def test_bench_smoke_profile_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "decision.cli", "bench", "--profile", "smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Decide against its floor" in proc.stdout  # the table was printed

    result = json.loads(out.read_text())
    assert result["schema"] == "nba-bench/1" and result["profile"] == "smoke"
    machine = result["machine"]
    assert machine["cpus"] >= 1 and machine["python"] and machine["packages"]["grpcio"]
    assert result["layout"]["note"]
    assert result["population"]["profiles"] > 0

    for section in ("floor_echo", "decide"):
        sec = result[section]
        assert "error" not in sec, sec.get("error")
        assert sec["steps"] and sec["max_rps"] > 0, section
        for s in sec["steps"]:
            _check_step(section, s)

    half = result["half_rate"]
    assert half["rate_rps"] > 0
    for name in ("echo", "redis", "decide"):
        _check_step(f"half_rate.{name}", half[name])
    assert half["floor_sum"]["latency_ms"]["p50"] > 0

    figures = {t["figure"]: t for t in result["targets"]}
    assert any(t["target"] for t in figures.values())
    for t in result["targets"]:
        assert t["decide"] is not None and t["floor"] is not None and t["ratio"] is not None, t

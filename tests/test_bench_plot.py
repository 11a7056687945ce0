"""The bench's charts (decision/bench/plot.py) from a small result shaped like
`nba bench`'s JSON: well-formed SVG, the series and labels each chart
promises, and no chart (and no error) for a phase the result lacks."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import pytest

from decision.bench import plot

SVG = "{http://www.w3.org/2000/svg}"


def _step(rate: float, p50: float, p99: float, cpu_us: float = 900.0, **extra) -> dict:
    return {"offered_rps": rate, "achieved_rps": rate, "verdict": "sustained", "sustained": True,
            "latency_ms": {"p50": p50, "p95": p99 * 0.8, "p99": p99, "p99.9": p99 * 1.5},
            "server_cpu_us_per_request": cpu_us} | extra


def _search(steps: list[dict], max_rps: int) -> dict:
    return {"steps": steps, "max_rps": max_rps, "first_failed_rps": steps[-1]["offered_rps"], "search_capped": False}


RESULT = {
    "schema": "nba-bench/1",
    "profile": "small",
    "started_at": "2026-11-23T19:04:17+00:00",
    "machine": {"cpus_usable": 2, "cpu_model": "AMD EPYC", "git_commit": "ca9bd219a1b1330b5476800077c38b1ac0e3ef2b",
                "git_dirty": None},
    "settings": {"step_s": 3.0, "half_s": 8.0},
    "floor_echo": _search([_step(1000, 0.36, 0.6), _step(1500, 0.35, 0.55), _step(2250, 0.5, 30.0)], 1500),
    "decide": _search([_step(100, 2.6, 3.4), _step(160, 1.9, 3.0), _step(256, 60.0, 65.0)], 160),
    "half_rate": {"rate_rps": 80, "echo": _step(80, 0.4, 0.7), "decide": _step(80, 1.2, 1.8)},
    "candidates": {"rate_rps": 40, "sizes": [_step(40, 1.9, 2.8, 1577, candidates=10),
                                             _step(40, 2.0, 6.5, 1540, candidates=20),
                                             _step(40, 2.2, 6.0, 2190, candidates=200)]},
    "profiles_sweep": {"rate_rps": 80, "candidates": 20,
                       "sizes": [_step(80, 1.3, 15.0, profiles=1000, bytes_per_profile=4544.3),
                                 _step(80, 1.2, 1.9, profiles=10000, bytes_per_profile=4441.8)]},
    "soak": {"rate_rps": 80, "duration_s": 60.0, "warmup_s": 20.0, "step": {"quiesce_wait_s": 0.25},
             "samples": [{"t_s": t, "service_rss_bytes": (128 + t / 10) * plot.MiB,
                          "redis_rss_bytes": (600 + t) * plot.MiB} for t in range(0, 81, 10)],
             "rss_start_bytes": 130 * plot.MiB, "growth_target": 1.1},
    "scaling": {"counts": [1, 2], "candidates": 20,
                "steps": [{"workers": 1, "max_rps": 1045}, {"workers": 2, "max_rps": 629}]},
}

EXPECTED = {  # file -> texts it must show: series in the legend, axis labels
    "bench-latency.svg": ["echo p50", "echo p99", "Decide p50", "Decide p99", "Decide at half rate, 8 s (p50, p99)",
                          "echo max 1,500/s", "Decide max 160/s", "half rate 80/s",
                          "offered rate (requests/s, log scale)", "latency (ms, log scale)"],
    "bench-candidates.svg": ["Decide p50", "Decide p99", "server CPU per request (µs, right)",
                             "candidates in the placement (log scale)", "latency (ms)", "server CPU per request (µs)"],
    "bench-profiles.svg": ["Decide p99", "Redis memory per profile (bytes, right)", "profiles in Redis (log scale)",
                           "bytes per profile"],
    "bench-soak.svg": ["nba serve RSS (left)", "target: 1.1 × RSS after the warm-up", "Valkey RSS (right)",
                       "warm-up ends", "time since the soak started (minutes)", "nba serve resident set size (MiB)",
                       "Valkey resident set size (MiB)"],
    "bench-scaling.svg": ["measured maximum", "ideal: N × one process", "service processes (nba serve --workers N)",
                          "sustained maximum (requests/s)",
                          "2+ processes on 2 cores share them with Valkey and the generator"],
}
PHASE_OF = {"bench-latency.svg": ("floor_echo", "decide", "half_rate"), "bench-candidates.svg": ("candidates",),
            "bench-profiles.svg": ("profiles_sweep",), "bench-soak.svg": ("soak",), "bench-scaling.svg": ("scaling",)}


def _texts(path) -> list[str]:
    root = ET.parse(path).getroot()  # raises on malformed XML
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == ("700", "400")
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_every_chart_is_well_formed_svg_with_its_series_and_labels(tmp_path) -> None:
    paths = plot.write([RESULT], tmp_path)
    assert [p.name for p in paths] == list(EXPECTED)
    for path in paths:
        texts = _texts(path)
        for wanted in EXPECTED[path.name]:
            assert wanted in texts, (path.name, wanted)
        assert any("commit ca9bd219a1" in t and "2026-11-23 19:04:17 UTC" in t for t in texts), path.name
        assert texts[0]  # the title


def test_series_are_drawn_with_a_point_per_measurement(tmp_path) -> None:
    root = ET.parse(plot.write([RESULT], tmp_path)[0]).getroot()
    tips = ["".join(c.itertext()) for c in root.iter(f"{SVG}circle") if c.find(f"{SVG}title") is not None]
    assert "echo p99: 30 at 2.25k" in tips
    assert "Decide at half rate, 8 s (p50, p99): 1.8 at 80" in tips
    assert len(root.findall(f"{SVG}polyline")) == 4  # p50 and p99 of echo and Decide; half rate is points alone


@pytest.mark.parametrize("chart", list(PHASE_OF))
def test_a_result_without_a_phase_has_no_chart_for_it(tmp_path, chart) -> None:
    result = {k: v for k, v in RESULT.items() if k not in PHASE_OF[chart]}
    assert [p.name for p in plot.write([result], tmp_path)] == [c for c in EXPECTED if c != chart]


def test_a_phase_that_broke_or_a_bare_result_gives_no_chart_and_no_error(tmp_path) -> None:
    broken = copy.deepcopy(RESULT) | {"soak": {"error": "RuntimeError: boom"}, "scaling": {"counts": [1], "steps": []}}
    written = [p.name for p in plot.write([broken], tmp_path / "a")]
    assert written == ["bench-latency.svg", "bench-candidates.svg", "bench-profiles.svg"]
    assert plot.write([{"schema": "nba-bench/1"}], tmp_path / "b") == []


def test_latency_shows_the_decides_inside_the_service_when_measured(tmp_path) -> None:
    result = copy.deepcopy(RESULT)
    for step, inside in zip(result["decide"]["steps"], (1.1, 0.9)):  # the last step has no histogram reading
        step["pipeline_ms"] = {"count": 100, "p50": inside, "p99": 2 * inside}
    root = ET.parse(plot.write([result], tmp_path)[0]).getroot()
    tips = ["".join(c.itertext()) for c in root.iter(f"{SVG}circle") if c.find(f"{SVG}title") is not None]
    assert "Decide p50 inside nba serve: 1.1 at 100" in tips and "Decide p50 inside nba serve: 0.9 at 160" in tips
    assert len(root.findall(f"{SVG}polyline")) == 5
    assert "Decide p50 inside nba serve" not in _texts(plot.write([RESULT], tmp_path / "without")[0])


def test_latency_with_echo_alone(tmp_path) -> None:
    result = {k: v for k, v in RESULT.items() if k not in ("decide", "half_rate")}
    texts = _texts(plot.write([result], tmp_path)[0])
    assert "echo p50" in texts and "Decide p50" not in texts


def test_each_chart_comes_from_the_result_that_holds_its_phases(tmp_path) -> None:
    small = {k: v for k, v in RESULT.items() if k != "soak"}
    soak = {k: RESULT[k] for k in ("profile", "machine", "started_at", "decide", "soak")} | {
        "profile": "soak", "machine": RESULT["machine"] | {"git_commit": "d5b61e39bc" + "0" * 30, "git_dirty": True}}
    by_name = {p.name: p for p in plot.write([soak, small], tmp_path)}
    assert set(by_name) == set(EXPECTED)
    assert any("--profile small" in t for t in _texts(by_name["bench-latency.svg"]))  # echo, Decide and half rate
    assert any("--profile soak" in t and "d5b61e39bc (uncommitted changes)" in t
               for t in _texts(by_name["bench-soak.svg"]))


def test_ranges_and_ticks() -> None:
    assert plot._range(plot.Axis("", log=True), [0.33, 11.0]) == (0.2, 20.0, [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0])
    assert plot._range(plot.Axis("", log=True), [0.33, 1107.0]) == (0.2, 2000.0, [1.0, 10.0, 100.0, 1000.0])
    assert plot._range(plot.Axis(""), [0.0, 11.1]) == (0, 12, [0, 2, 4, 6, 8, 10, 12])
    assert plot._range(plot.Axis("", zero=True), [1045.0, 2090.0])[:2] == (0, 2500)
    assert plot._range(plot.Axis("", log=True, ticks=(10, 20, 200)), [10.0, 200.0]) == (10, 200, [10, 20, 200])
    assert [plot._num(v) for v in (0.2, 20, 1500, 2500, 10000, 1e6)] == ["0.2", "20", "1.5k", "2.5k", "10k", "1M"]


def test_command_line_prints_the_paths(tmp_path, capsys) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(RESULT))
    assert plot.main([str(path), "--out", str(tmp_path / "plots")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "plots" / name) for name in EXPECTED]


def test_nba_bench_plots_charts_the_json_it_wrote(tmp_path, monkeypatch, capsys) -> None:
    from decision.bench import run
    from decision.cli import build_parser

    def fake_run(profile, *, out, **_) -> int:  # the phases are test_bench_smoke's business
        out.write_text(json.dumps(RESULT))
        return 0

    monkeypatch.setattr(run, "run", fake_run)
    args = build_parser().parse_args(["bench", "--out", str(tmp_path / "r.json"), "--plots", str(tmp_path / "p")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "p" / name) for name in EXPECTED]

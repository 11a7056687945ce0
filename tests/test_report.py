"""`nba report`: the numbers, a self-contained page, and that headless
Chromium renders it."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess

import pytest

from decision.cli import main
from decision.experiments.synthetic import make_logs
from tests.experiments import write

SECTIONS = ("summary", "reward-over-time", "lift", "exploration", "models", "rejections", "ope")


@pytest.fixture
def report_dir(sync_redis, redis_url, catalog_file, tmp_path):
    write(redis_url, make_logs(1200, seed=8, items=2, removed_every=4, new_version_every=300))
    out = tmp_path / "report"
    assert main(["report", "--placement", "banner", "--out", str(out), "--redis-url", redis_url, "--catalog",
                 str(catalog_file), "--bootstrap", "200"]) == 0
    return out


def read(path):
    return list(csv.DictReader(path.open()))


def test_report_numbers(report_dir):
    summary = {r["arm"]: r for r in read(report_dir / "summary.csv")}
    assert set(summary) == {"holdout", "champion"}
    assert summary["holdout"]["joined"] == summary["champion"]["joined"] == "600"
    # champion: epsilon 0.2 over 3 actions -> expected share off the top action 0.2 * 2/3
    assert float(summary["champion"]["exploration"]) == pytest.approx(0.2 * 2 / 3)
    assert float(summary["holdout"]["exploration"]) == pytest.approx(2 / 3)
    lift = read(report_dir / "lift.csv")
    assert [r["arm"] for r in lift] == ["champion"] and lift[0]["holdout"] == "holdout"
    assert float(lift[0]["low"]) <= float(lift[0]["lift"]) <= float(lift[0]["high"])
    rejections = read(report_dir / "rejections.csv")
    assert rejections == [{"stage": "pressure", "rule": "cap:offer:1d", "removed": "300"}]
    models = read(report_dir / "models.csv")
    assert {r["model_version"] for r in models if r["arm"] == "champion"} == {
        f"fixed_priority:eps=0.2#{k}" for k in range(4)}
    ope = read(report_dir / "ope.csv")
    policies = {r["policy"] for r in ope}
    assert {"uniform", "fixed_priority", "arm:holdout", "arm:champion", "logged:holdout",
            "logged:champion"} <= policies
    assert {r["estimator"] for r in ope} == {"ips", "snips", "dr", "on-policy"}
    series = read(report_dir / "reward_over_time.csv")
    assert {r["arm"] for r in series} == {"holdout", "champion"} and len(series) > 10


def test_report_page_is_self_contained(report_dir):
    page = (report_dir / "index.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    assert page.count("<svg") >= 6
    assert "<script" not in page and "<link" not in page and "<img" not in page
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1280,2400"]
    url = (report_dir / "index.html").as_uri()
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # plots, not a blank page
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, timeout=120, check=True, text=True).stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom, section
    assert "Lift over the holdout" in dom and "Off-policy evaluation of candidates" in dom
    assert dom.count("<svg") >= 6


def test_report_of_an_empty_range_fails_cleanly(sync_redis, redis_url, catalog_file, tmp_path, capsys):
    write(redis_url, make_logs(20, seed=1))
    code = main(["report", "--placement", "banner", "--since", "2031-01-01", "--out", str(tmp_path / "r"),
                 "--redis-url", redis_url, "--catalog", str(catalog_file)])
    err = capsys.readouterr().err
    assert code == 1 and "no joined decisions for placement 'banner', since 2031-01-01" in err
    assert "Traceback" not in err
    assert main(["report", "--placement", "banner", "--bucket", "often", "--out", str(tmp_path / "r"),
                 "--redis-url", redis_url, "--catalog", str(catalog_file)]) == 1
    assert "--bucket 'often'" in capsys.readouterr().err

"""`nba report`: one self-contained HTML page per placement, plus its numbers as CSV.

Everything comes from the logs (decision/join.py) and the catalog file; the
plots are inline SVG drawn here (no JavaScript, no network, no plotting
library), so the page opens anywhere, offline, and can be mailed as is.

Sections (docs/EXPERIMENTS.md shows and explains each):
  summary                per arm: decisions, reward per decision with a 95% interval,
                         lift over the holdout, exploration share
  reward over time       reward per decision per arm and time bucket, with 95% bands
  lift over the holdout  each arm's difference to the holdout, with 95% intervals
  exploration share      expected share of choices off the policy's top action
  model versions         which model each arm served when
  rejections by rule     candidates removed by pressure (and at commit), by rule;
                         the other stages in a table
  OPE of candidates      IPS/SNIPS/DR of the candidate policies on the holdout's logs
"""

from __future__ import annotations

import argparse
import csv
import html
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from decision.catalog import Catalog, parse_duration
from decision.experiments import ExperimentError
from decision.experiments.common import (
    describe_range, holdout_arm, iso, joined, load_catalog_opt, no_data, query, run_command, with_redis)
from decision.experiments.data import rank1_rows
from decision.experiments.evaluate import TargetResult, evaluate, observed
from decision.experiments.targets import default_specs, resolve
from decision.join import JoinedDecision, JoinResult

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
BUCKETS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 7 * 86_400)
Z95 = 1.959963984540054


# ---- numbers ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Mean:
    n: int
    value: float
    low: float
    high: float


def mean_ci(x: Sequence[float]) -> Mean:
    """Mean with a normal-approximation 95% interval (sample variance)."""
    a = np.asarray(x, dtype=np.float64)
    n = a.size
    if n == 0:
        return Mean(0, math.nan, math.nan, math.nan)
    m = float(a.mean())
    if n < 2:
        return Mean(n, m, math.nan, math.nan)
    half = Z95 * float(a.std(ddof=1)) / math.sqrt(n)
    return Mean(n, m, m - half, m + half)


def diff_ci(x: Sequence[float], y: Sequence[float]) -> Mean:
    """mean(x) - mean(y) with a Welch normal 95% interval."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.size < 2 or b.size < 2:
        return Mean(min(a.size, b.size), math.nan, math.nan, math.nan)
    d = float(a.mean() - b.mean())
    half = Z95 * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return Mean(int(a.size), d, d - half, d + half)


def decision_reward(jd: JoinedDecision) -> float:
    return float(sum(i.reward for i in jd.items))


def exploration(jd: JoinedDecision) -> float:
    """Expected share of rank-1 choices off the policy's top action: 1 - max p."""
    return 1.0 - max((a.probability for a in jd.record.actions), default=1.0)


def pick_bucket(span_ms: int, wanted: str | None) -> int:
    if wanted:
        try:
            return parse_duration(wanted) * 1000
        except ValueError as e:
            raise ExperimentError(f"--bucket {wanted!r}: {e}") from None
    for s in BUCKETS_S:
        if span_ms / (s * 1000) <= 30:
            return s * 1000
    return BUCKETS_S[-1] * 1000


@dataclass
class Report:
    placement: str
    title_range: str
    arms: list[str]
    holdout: str | None
    bucket_ms: int
    summary: list[dict]
    series: list[dict]
    lift: list[dict]
    models: list[dict]
    rejections: list[dict]
    ope: list[dict]
    ope_logs: str
    notes: list[str]
    stats: dict


def build(result: JoinResult, catalog: Catalog | None, placement: str, *, holdout: str | None, bucket: str | None,
          ope_results: Sequence[TargetResult], ope_logs: str, notes: list[str], title_range: str,
          observed_by_arm: dict) -> Report:
    decisions = result.decisions
    order = [a.name for a in catalog.placements[placement].arms] if catalog and placement in catalog.placements else []
    arms = [a for a in order if any(r.arm == a for r in result.records)]
    arms += sorted({r.arm for r in result.records} - set(arms))
    by_arm: dict[str, list[JoinedDecision]] = defaultdict(list)
    for jd in decisions:
        by_arm[jd.record.arm].append(jd)
    ho = holdout_arm(catalog, placement, arms, holdout)

    summary = []
    for arm in arms:
        rows = by_arm.get(arm, [])
        m = mean_ci([decision_reward(j) for j in rows])
        lift = diff_ci([decision_reward(j) for j in rows], [decision_reward(j) for j in by_arm.get(ho, [])]) \
            if ho and arm != ho else None
        summary.append({
            "arm": arm, "decisions": sum(r.arm == arm for r in result.records), "joined": len(rows),
            "reward": m.value, "low": m.low, "high": m.high,
            "lift": lift.value if lift else "", "lift_low": lift.low if lift else "",
            "lift_high": lift.high if lift else "",
            "exploration": float(np.mean([exploration(j) for j in rows])) if rows else math.nan,
        })

    # a mean cannot leave the span of the data: normal bands are clipped to it
    span = [decision_reward(j) for j in decisions] or [0.0]
    r_lo, r_hi = min(span), max(span)
    ts = [jd.record.ts_ms for jd in decisions] or [r.ts_ms for r in result.records] or [0]
    t0, t1 = min(ts), max(ts)
    bucket_ms = pick_bucket(t1 - t0, bucket)
    start = t0 - t0 % bucket_ms
    series = []
    for arm in arms:
        buckets: dict[int, list[JoinedDecision]] = defaultdict(list)
        for jd in by_arm.get(arm, []):
            buckets[start + (jd.record.ts_ms - start) // bucket_ms * bucket_ms].append(jd)
        for b in sorted(buckets):
            m = mean_ci([decision_reward(j) for j in buckets[b]])
            series.append({"arm": arm, "bucket_start": iso(b), "bucket_ms": b, "n": m.n, "reward": m.value,
                           "low": max(m.low, r_lo), "high": min(m.high, r_hi),
                           "exploration": float(np.mean([exploration(j) for j in buckets[b]]))})

    lift = [{"arm": s["arm"], "holdout": ho, "lift": s["lift"], "low": s["lift_low"], "high": s["lift_high"],
             "relative": (s["lift"] / base if base else math.nan)}
            for s in summary if ho and s["arm"] != ho
            for base in [next(x["reward"] for x in summary if x["arm"] == ho)]]

    versions: dict[tuple[str, str], list[int]] = {}
    for r in result.records:
        v = versions.setdefault((r.arm, r.model_version), [r.ts_ms, r.ts_ms, 0])
        v[0], v[1], v[2] = min(v[0], r.ts_ms), max(v[1], r.ts_ms), v[2] + 1
    models = [{"arm": a, "model_version": mv, "first": iso(v[0]), "last": iso(v[1]), "first_ms": v[0],
               "last_ms": v[1], "decisions": v[2]}
              for (a, mv), v in sorted(versions.items(), key=lambda kv: (arms.index(kv[0][0]) if kv[0][0] in arms
                                                                      else 99, kv[1][0]))]

    removed = Counter((x.stage, x.rule) for r in result.records for x in r.removed)
    rejections = [{"stage": s, "rule": rule, "removed": n} for (s, rule), n in removed.most_common()]

    ope = []
    for t in ope_results:
        for e in t.estimates:
            ope.append({"policy": t.spec, "description": t.description, "estimator": e.estimator,
                        "value": e.value, "low": e.low, "high": e.high, "n": e.n, "ess": e.ess,
                        "agreement": t.agreement, "warnings": " | ".join(e.warnings)})
    for arm, o in observed_by_arm.items():
        ope.append({"policy": f"logged:{arm}", "description": f"observed mean of arm {arm}'s own logs (rank 1)",
                    "estimator": "on-policy", "value": o.value, "low": o.low, "high": o.high, "n": o.n,
                    "ess": o.n, "agreement": "", "warnings": ""})

    s = result.stats
    stats = {"decisions": s.decisions, "joined": s.joined, "pending": s.pending, "fallback": s.fallback,
             "refused": s.refused, "unreadable": s.unreadable, "rewards": s.rewards, "late": s.late_rewards,
             "now": iso(s.now_ms)}
    return Report(placement, title_range, arms, ho, bucket_ms, summary, series, lift, models, rejections, ope,
                  ope_logs, notes, stats)


# ---- SVG ----------------------------------------------------------------------------------

def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x, digits: int = 3) -> str:
    if x == "" or x is None:
        return ""
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.{digits}f}"
    return str(x)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 2) if first + i * step <= hi + 1e-9]


def _range(values: Sequence[float], pad: float = 0.05, zero: bool = True) -> tuple[float, float]:
    v = [x for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    if not v:
        return 0.0, 1.0
    lo, hi = min(v), max(v)
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        hi = lo + 1.0
    span = hi - lo
    return lo - pad * span * (lo < 0), hi + pad * span


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> str:
    out = []
    for i, (name, color) in enumerate(items):
        xx = x + i * 150
        out.append(f'<rect x="{xx}" y="{y - 9}" width="12" height="12" fill="{color}"/>'
                   f'<text x="{xx + 17}" y="{y + 1}" class="lg">{_e(name)}</text>')
    return "".join(out)


def time_chart(lines: Sequence[dict], t0: int, t1: int, y_label: str, *, band: bool = True, width: int = 1080,
               height: int = 300, y_zero: bool = True) -> str:
    """lines: {name, color, points: [(t_ms, y, low, high)]}."""
    ml, mr, mt, mb = 64, 20, 28, 44
    w, h = width - ml - mr, height - mt - mb
    ys = [p[1] for ln in lines for p in ln["points"]]
    if band:
        ys += [p[2] for ln in lines for p in ln["points"]] + [p[3] for ln in lines for p in ln["points"]]
    lo, hi = _range(ys, zero=y_zero)
    t1 = max(t1, t0 + 1)

    def X(t):
        return ml + (t - t0) / (t1 - t0) * w

    def Y(v):
        return mt + h - (v - lo) / (hi - lo) * h

    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for tick in _nice_ticks(lo, hi):
        if lo <= tick <= hi:
            out.append(f'<line x1="{ml}" x2="{ml + w}" y1="{Y(tick):.1f}" y2="{Y(tick):.1f}" class="grid"/>'
                       f'<text x="{ml - 6}" y="{Y(tick) + 4:.1f}" class="ax" text-anchor="end">{tick:g}</text>')
    for i in range(7):
        t = t0 + (t1 - t0) * i / 6
        label = datetime.fromtimestamp(t / 1000, UTC).strftime("%m-%d %H:%M")
        anchor = "start" if i == 0 else "end" if i == 6 else "middle"
        out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{mt + h}" y2="{mt + h + 4}" class="axl"/>'
                   f'<text x="{X(t):.1f}" y="{mt + h + 18}" class="ax" text-anchor="{anchor}">{label}</text>')
    out.append(f'<line x1="{ml}" x2="{ml + w}" y1="{mt + h}" y2="{mt + h}" class="axl"/>'
               f'<line x1="{ml}" x2="{ml}" y1="{mt}" y2="{mt + h}" class="axl"/>'
               f'<text x="14" y="{mt + h / 2}" class="ax" transform="rotate(-90 14 {mt + h / 2})" '
               f'text-anchor="middle">{_e(y_label)}</text>'
               f'<text x="{ml + w}" y="{height - 6}" class="ax" text-anchor="end">time (UTC)</text>')
    for ln in lines:
        pts = [p for p in ln["points"] if math.isfinite(p[1])]
        if band:
            bp = [p for p in pts if math.isfinite(p[2]) and math.isfinite(p[3])]
            if len(bp) >= 2:
                up = " ".join(f"{X(p[0]):.1f},{Y(p[3]):.1f}" for p in bp)
                down = " ".join(f"{X(p[0]):.1f},{Y(p[2]):.1f}" for p in reversed(bp))
                out.append(f'<polygon points="{up} {down}" fill="{ln["color"]}" fill-opacity="0.15" stroke="none"/>')
        if len(pts) >= 2:
            out.append(f'<polyline points="{" ".join(f"{X(p[0]):.1f},{Y(p[1]):.1f}" for p in pts)}" fill="none" '
                       f'stroke="{ln["color"]}" stroke-width="2"/>')
        for p in pts:
            out.append(f'<circle cx="{X(p[0]):.1f}" cy="{Y(p[1]):.1f}" r="2.5" fill="{ln["color"]}">'
                       f'<title>{_e(ln["name"])} {iso(int(p[0]))}: {p[1]:.4g}</title></circle>')
    out.append(_legend([(ln["name"], ln["color"]) for ln in lines], ml + 8, 16))
    out.append("</svg>")
    return "".join(out)


def forest(rows: Sequence[dict], x_label: str, *, ref: float | None = None, ref_label: str = "", width: int = 1080,
           row_h: int = 26) -> str:
    """rows: {label, value, low, high, color}; horizontal intervals."""
    ml, mr, mt, mb = 260, 30, 24, 44
    height = mt + mb + row_h * max(1, len(rows))
    w = width - ml - mr
    vals = [v for r in rows for v in (r["value"], r["low"], r["high"])] + ([ref] if ref is not None else [])
    lo, hi = _range(vals, zero=False)
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad

    def X(v):
        return ml + (v - lo) / (hi - lo) * w

    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for tick in _nice_ticks(lo, hi, 8):
        if lo <= tick <= hi:
            out.append(f'<line x1="{X(tick):.1f}" x2="{X(tick):.1f}" y1="{mt}" y2="{height - mb}" class="grid"/>'
                       f'<text x="{X(tick):.1f}" y="{height - mb + 16}" class="ax" '
                       f'text-anchor="middle">{tick:g}</text>')
    if ref is not None and math.isfinite(ref):
        out.append(f'<line x1="{X(ref):.1f}" x2="{X(ref):.1f}" y1="{mt}" y2="{height - mb}" class="ref"/>'
                   f'<text x="{X(ref):.1f}" y="{mt - 8}" class="ax" text-anchor="middle">{_e(ref_label)}</text>')
    for i, r in enumerate(rows):
        y = mt + row_h * i + row_h / 2
        out.append(f'<text x="{ml - 10}" y="{y + 4:.1f}" class="lb" text-anchor="end">{_e(r["label"])}</text>')
        if math.isfinite(r["low"]) and math.isfinite(r["high"]):
            out.append(f'<line x1="{X(r["low"]):.1f}" x2="{X(r["high"]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="{r["color"]}" stroke-width="3"/>')
        if math.isfinite(r["value"]):
            out.append(f'<circle cx="{X(r["value"]):.1f}" cy="{y:.1f}" r="5" fill="{r["color"]}">'
                       f'<title>{_e(r["label"])}: {r["value"]:.4g} [{r["low"]:.4g}, {r["high"]:.4g}]</title></circle>')
    out.append(f'<text x="{ml + w}" y="{height - 8}" class="ax" text-anchor="end">{_e(x_label)}</text></svg>')
    return "".join(out)


def bars(rows: Sequence[dict], x_label: str, *, width: int = 1080, row_h: int = 24) -> str:
    """rows: {label, value, color}."""
    ml, mr, mt, mb = 320, 60, 10, 36
    height = mt + mb + row_h * max(1, len(rows))
    w = width - ml - mr
    top = max([r["value"] for r in rows] + [1])
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for i, r in enumerate(rows):
        y = mt + row_h * i
        bw = r["value"] / top * w
        out.append(f'<text x="{ml - 8}" y="{y + row_h / 2 + 4:.1f}" class="lb" '
                   f'text-anchor="end">{_e(r["label"])}</text>'
                   f'<rect x="{ml}" y="{y + 4}" width="{bw:.1f}" height="{row_h - 8}" fill="{r["color"]}"/>'
                   f'<text x="{ml + bw + 6:.1f}" y="{y + row_h / 2 + 4:.1f}" class="ax">{r["value"]}</text>')
    out.append(f'<text x="{ml + w}" y="{height - 8}" class="ax" text-anchor="end">{_e(x_label)}</text></svg>')
    return "".join(out)


def timeline(lanes: Sequence[tuple[str, Sequence[dict]]], t0: int, t1: int, *, width: int = 1080,
             lane_h: int = 34) -> str:
    """lanes: (arm, [{start, end, label, color}])."""
    ml, mr, mt, mb = 140, 20, 10, 30
    height = mt + mb + lane_h * max(1, len(lanes))
    w = width - ml - mr
    t1 = max(t1, t0 + 1)

    def X(t):
        return ml + (t - t0) / (t1 - t0) * w

    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for i in range(7):
        t = t0 + (t1 - t0) * i / 6
        label = datetime.fromtimestamp(t / 1000, UTC).strftime("%m-%d %H:%M")
        anchor = "start" if i == 0 else "end" if i == 6 else "middle"
        out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{mt}" y2="{height - mb}" class="grid"/>'
                   f'<text x="{X(t):.1f}" y="{height - mb + 16}" class="ax" text-anchor="{anchor}">{label}</text>')
    for i, (lane, segs) in enumerate(lanes):
        y = mt + lane_h * i
        out.append(f'<text x="{ml - 8}" y="{y + lane_h / 2 + 4:.1f}" class="lb" text-anchor="end">{_e(lane)}</text>')
        for s in segs:
            x0 = X(s["start"])
            x1 = max(X(s["end"]), x0 + 3)
            out.append(f'<rect x="{x0:.1f}" y="{y + 5}" width="{x1 - x0:.1f}" height="{lane_h - 10}" '
                       f'fill="{s["color"]}" fill-opacity="0.85"><title>{_e(s["label"])}</title></rect>')
            if x1 - x0 > 7 * len(s["label"]):
                out.append(f'<text x="{x0 + 4:.1f}" y="{y + lane_h / 2 + 4:.1f}" class="in">{_e(s["label"])}</text>')
    out.append("</svg>")
    return "".join(out)


# ---- HTML -------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1120px;
color:#222;padding:0 16px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:32px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.sub{color:#555;margin:0 0 12px} p.cap{color:#555;margin:4px 0 10px;font-size:13px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px} th,td{padding:4px 10px;border-bottom:1px solid #eee;
text-align:right} th{background:#f6f6f6} td.l,th.l{text-align:left}
.grid{stroke:#e6e6e6;stroke-width:1} .axl{stroke:#888} .ax{font-size:11px;fill:#555} .lb{font-size:12px;fill:#222}
.lg{font-size:12px;fill:#222} .in{font-size:11px;fill:#fff} .ref{stroke:#444;stroke-dasharray:4 3}
.note{background:#fff8e1;border-left:3px solid #f0b400;padding:6px 10px;margin:6px 0;font-size:13px}
.empty{color:#777;font-style:italic}
ul.kv{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:6px 18px}
"""


def _table(rows: Sequence[dict], cols: Sequence[tuple[str, str]], left: Sequence[str] = ()) -> str:
    if not rows:
        return '<p class="empty">no rows</p>'
    head = "".join(f'<th class="{"l" if k in left else ""}">{_e(t)}</th>' for k, t in cols)
    body = "".join("<tr>" + "".join(f'<td class="{"l" if k in left else ""}">{_e(_fmt(r.get(k, "")))}</td>'
                                    for k, _ in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(rep: Report) -> str:
    color = {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(rep.arms)}
    ts = [s["bucket_ms"] for s in rep.series] or [0]
    t0, t1 = min(ts), max(ts) + rep.bucket_ms
    mts = [m["first_ms"] for m in rep.models] + [m["last_ms"] for m in rep.models]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>NBA report: {_e(rep.placement)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Placement {_e(rep.placement)}</h1>",
             f'<p class="sub">{_e(rep.title_range)} · holdout arm: {_e(rep.holdout or "none")} · time bucket '
             f'{_duration(rep.bucket_ms)} · join windows closed as of {_e(rep.stats["now"])}</p>',
             '<ul class="kv">' + "".join(f"<li><b>{_e(k)}</b> {_e(v)}</li>" for k, v in rep.stats.items()
                                         if k != "now") + "</ul>"]
    parts += [f'<div class="note">{_e(n)}</div>' for n in rep.notes]

    parts.append('<section id="summary"><h2>Summary per arm</h2>')
    parts.append(_table(rep.summary, [("arm", "arm"), ("decisions", "decisions"), ("joined", "joined"),
                                      ("reward", "reward / decision"), ("low", "95% low"), ("high", "95% high"),
                                      ("lift", "lift vs holdout"), ("lift_low", "lift low"),
                                      ("lift_high", "lift high"), ("exploration", "exploration share")], ["arm"]))
    parts.append('<p class="cap">Reward per decision: the sum of its items\' joined rewards (default reward when '
                 'the join window closed without an event). Intervals: mean ± 1.96 standard errors.</p></section>')

    lines = [{"name": arm, "color": color[arm],
              "points": [(s["bucket_ms"] + rep.bucket_ms / 2, s["reward"], s["low"], s["high"])
                         for s in rep.series if s["arm"] == arm]} for arm in rep.arms]
    parts.append('<section id="reward-over-time"><h2>Reward per decision over time</h2>')
    parts.append(time_chart(lines, t0, t1, "reward / decision") if rep.series else '<p class="empty">no data</p>')
    parts.append('<p class="cap">One point per arm and time bucket; the band is its 95% interval (wide where a '
                 'bucket has few decisions).</p></section>')

    parts.append('<section id="lift"><h2>Lift over the holdout</h2>')
    if rep.lift:
        parts.append(forest([{"label": f"{x['arm']} − {x['holdout']}", "value": _num(x["lift"]),
                              "low": _num(x["low"]), "high": _num(x["high"]), "color": color[x["arm"]]}
                             for x in rep.lift], "difference in reward / decision", ref=0.0, ref_label="no lift"))
        parts.append(_table(rep.lift, [("arm", "arm"), ("holdout", "holdout"), ("lift", "lift"), ("low", "95% low"),
                                       ("high", "95% high"), ("relative", "relative")], ["arm", "holdout"]))
        parts.append('<p class="cap">Difference of mean reward per decision to the holdout arm, Welch 95% interval; '
                     'an interval right of the dashed line is a significant gain.</p>')
    else:
        parts.append('<p class="empty">no holdout arm with joined decisions in range</p>')
    parts.append("</section>")

    elines = [{"name": arm, "color": color[arm],
               "points": [(s["bucket_ms"] + rep.bucket_ms / 2, s["exploration"], math.nan, math.nan)
                          for s in rep.series if s["arm"] == arm]} for arm in rep.arms]
    parts.append('<section id="exploration"><h2>Exploration share</h2>')
    parts.append(time_chart(elines, t0, t1, "share off the top action", band=False) if rep.series
                 else '<p class="empty">no data</p>')
    parts.append('<p class="cap">Expected share of rank-1 choices that are not the policy\'s top action, '
                 '1 − max p, from the logged distribution: 1 − 1/n for the uniform holdout, 0 for a deterministic '
                 'policy, about ε for ε-greedy.</p></section>')

    parts.append('<section id="models"><h2>Model versions</h2>')
    lanes = []
    vcolor: dict[str, str] = {}
    for arm in rep.arms:
        segs = []
        for m in rep.models:
            if m["arm"] == arm:
                c = vcolor.setdefault(m["model_version"], PALETTE[len(vcolor) % len(PALETTE)])
                segs.append({"start": m["first_ms"], "end": m["last_ms"], "label": m["model_version"], "color": c})
        lanes.append((arm, segs))
    parts.append(timeline(lanes, min(mts or [0]), max(mts or [1])) if rep.models else '<p class="empty">no data</p>')
    parts.append(_table(rep.models, [("arm", "arm"), ("model_version", "model version"), ("first", "first seen"),
                                     ("last", "last seen"), ("decisions", "decisions")],
                        ["arm", "model_version", "first", "last"]))
    parts.append('<p class="cap">Each bar spans the first to the last decision an arm served with that model '
                 'version.</p></section>')

    parts.append('<section id="rejections"><h2>Pressure rejections by rule</h2>')
    pressure = [r for r in rep.rejections if r["stage"] in ("pressure", "commit")][:20]
    if pressure:
        parts.append(bars([{"label": f"{r['rule']} ({r['stage']})", "value": r["removed"],
                            "color": "#d62728" if r["stage"] == "commit" else "#ff7f0e"} for r in pressure],
                          "candidates removed"))
    else:
        parts.append('<p class="empty">no candidate was removed by pressure in range</p>')
    parts.append('<p class="cap">Candidates removed by the pressure stage (caps, budgets, minimum delay, quiet hours, '
                 'suppression) and refused at commit, per rule, over every decision in range. All stages:</p>')
    parts.append(_table(rep.rejections, [("stage", "stage"), ("rule", "rule"), ("removed", "removed")],
                        ["stage", "rule"]) + "</section>")

    parts.append('<section id="ope"><h2>Off-policy evaluation of candidates</h2>')
    if rep.ope:
        est_color = {"ips": "#1f77b4", "snips": "#2ca02c", "dr": "#9467bd", "on-policy": "#444"}
        parts.append('<svg viewBox="0 0 1080 22" width="1080" height="22" xmlns="http://www.w3.org/2000/svg">'
                     + _legend(list(est_color.items()), 270, 14) + "</svg>")
        parts.append(forest([{"label": f"{o['policy']} · {o['estimator']}", "value": _num(o["value"]),
                              "low": _num(o["low"]), "high": _num(o["high"]),
                              "color": est_color.get(o["estimator"], "#444")} for o in rep.ope],
                            "estimated reward per decision (rank 1)"))
        parts.append(_table(rep.ope, [("policy", "policy"), ("estimator", "estimator"), ("value", "value"),
                                      ("low", "95% low"), ("high", "95% high"), ("n", "rows"), ("ess", "ESS"),
                                      ("agreement", "match"), ("warnings", "warnings")],
                            ["policy", "estimator", "warnings"]))
        parts.append(f'<p class="cap">Candidates evaluated on {_e(rep.ope_logs)} at rank 1: IPS, self-normalised IPS '
                     'and doubly robust (2-fold cross-fitted ridge reward model), 95% percentile-bootstrap intervals '
                     '(1000 resamples, seed 0). "logged:&lt;arm&gt;" rows are each arm\'s observed mean on its own '
                     'logs, for comparison.</p>')
    else:
        parts.append('<p class="empty">no logs to evaluate on</p>')
    parts.append("</section>")
    parts.append(f'<p class="cap">Generated by nba report at {_e(iso(int(datetime.now(UTC).timestamp() * 1000)))}; '
                 "numbers in the CSV files beside this page.</p></body></html>")
    return "".join(parts)


def _duration(ms: int) -> str:
    s = ms // 1000
    for unit, n in (("d", 86_400), ("h", 3600), ("min", 60)):
        if s % n == 0:
            return f"{s // n} {unit}"
    return f"{s} s"


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) else math.nan


def write_csvs(out: Path, rep: Report) -> list[Path]:
    files = []
    for name, rows in (("summary", rep.summary), ("reward_over_time", rep.series), ("lift", rep.lift),
                       ("models", rep.models), ("rejections", rep.rejections), ("ope", rep.ope)):
        path = out / f"{name}.csv"
        cols = list(rows[0]) if rows else ["empty"]
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        files.append(path)
    return files


# ---- command ------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    return run_command(run, args)


async def run(args: argparse.Namespace, redis=None) -> int:
    return await with_redis(_run, args, redis)


async def _run(args: argparse.Namespace, redis) -> int:
    catalog, catalog_note = load_catalog_opt(args.catalog)
    args.arm = None
    q = query(args, catalog)
    result = await joined(args, q, redis)
    if not result.records:
        raise no_data(q, result)
    notes = [n for n in (catalog_note,) if n]
    if result.stats.excluded_note() != "nothing excluded":
        notes.append(f"{result.stats.decisions} decisions in range; {result.stats.excluded_note()}")
    arms = sorted({r.arm for r in result.records})
    ho = holdout_arm(catalog, q.placement, arms, args.holdout)
    on = [jd for jd in result.decisions if jd.record.arm == ho] if ho else list(result.decisions)
    ope_logs = f"the holdout arm {ho}'s logs" if ho else "every arm's logs (no holdout arm)"
    rows = rank1_rows(on, catalog)
    notes += [f"OPE: {n}" for n in rows.notes]
    ope_results: list[TargetResult] = []
    if rows.rows:
        targets = []
        for spec in default_specs(catalog, q.placement):
            try:
                targets.append(await resolve(spec, catalog=catalog, placement=q.placement, redis=redis))
            except ExperimentError as e:
                notes.append(f"OPE skipped {e}")
        ope_results = evaluate(rows.rows, targets, n_boot=args.bootstrap)
    all_rows = rank1_rows(result.decisions, catalog).rows
    per_arm: dict[str, list[float]] = defaultdict(list)
    for r in all_rows:
        per_arm[r.record.arm].append(r.reward)
    observed_by_arm = {a: observed(v, n_boot=args.bootstrap) for a, v in sorted(per_arm.items())}
    rep = build(result, catalog, q.placement, holdout=ho, bucket=args.bucket, ope_results=ope_results,
                ope_logs=ope_logs, notes=notes, title_range=describe_range(q), observed_by_arm=observed_by_arm)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExperimentError(f"--out {out}: cannot create the directory: {e.strerror or e}") from None
    page = out / "index.html"
    page.write_text(render_html(rep), encoding="utf-8")
    files = write_csvs(out, rep)
    print(f"report of {describe_range(q)}: {page}", file=sys.stderr)
    print("numbers: " + ", ".join(f.name for f in files), file=sys.stderr)
    return 0


__all__ = ["build", "cmd_report", "render_html"]

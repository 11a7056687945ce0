"""Charts of `nba bench` results: self-contained SVG files, written by hand.

    python -m decision.bench.plot RESULT.json [RESULT2.json ...] --out DIR
    nba bench ... --plots DIR

One file per chart, each drawn only when its phase is in the results:

    bench-latency.svg     echo and Decide p50/p99 against the offered rate (max searches, half rate)
    bench-candidates.svg  Decide p50/p99 and server CPU per request against the candidate count
    bench-profiles.svg    Decide p50/p99 and Redis bytes per profile against the profiles in Redis
    bench-soak.svg        the service's RSS over the soak, against its target; Valkey's RSS beside it
    bench-scaling.svg     Decide's maximum rate against service processes, with the ideal line

Given several results, each chart comes from the one that holds the most of its
phases (the first of equals): `small.json soak.json` takes the soak from the
second and everything else from the first. A chart never mixes two runs, so its
footer names one commit.

No plotting library: a bench runs on bare machines, and five line charts are
one function (`svg`) over a small description (`Chart`).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

WIDTH, HEIGHT = 700, 400
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Axis:
    label: str
    log: bool = False
    zero: bool = False  # the range reaches down (or up) to 0; linear axes only
    ticks: tuple[float, ...] = ()  # the measured values themselves, when they are few (default: 1-2-5 steps)


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]
    color: str
    dash: bool = False
    line: bool = True  # False: markers alone, for separate measurements that a line would wrongly join
    right: bool = False  # read against the right-hand axis


@dataclass(frozen=True, slots=True)
class Mark:
    """A labelled vertical line: a maximum, the end of a warm-up."""
    x: float
    label: str
    color: str


@dataclass(frozen=True, slots=True)
class Chart:
    file: str
    title: str
    x: Axis
    y: Axis
    series: tuple[Series, ...]
    footer: str
    y2: Axis | None = None
    marks: tuple[Mark, ...] = ()


# ---- the one drawing function ----------------------------------------------------

def svg(chart: Chart) -> str:
    """The chart as an SVG document of WIDTH x HEIGHT: title, legend, axes, ticks, series, footer."""
    legend, legend_h = _legend(chart.series, 16, 46, WIDTH - 16)
    left, right = 66, WIDTH - (66 if chart.y2 else 24)
    top, bottom = 46 + legend_h + 6, HEIGHT - 62
    inset = 8  # points on the range's ends stay clear of the axis lines

    def scale(axis: Axis, values: list[float], a: float, b: float):
        lo, hi, ticks = _range(axis, values)
        f = (lambda v: math.log10(v)) if axis.log else (lambda v: v)
        return (lambda v: a + (f(v) - f(lo)) / (f(hi) - f(lo)) * (b - a)), ticks

    def ys(right_axis: bool) -> list[float]:
        return [y for s in chart.series if s.right == right_axis for _, y in s.points]

    X, xticks = scale(chart.x, [p[0] for s in chart.series for p in s.points] + [m.x for m in chart.marks],
                      left + inset, right - inset)
    Y, yticks = scale(chart.y, ys(False), bottom - inset, top + inset)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}" font-size="11" fill="#222">',
           f'<title>{_e(chart.title)}</title>',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
           f'<text x="16" y="26" font-size="15" font-weight="bold">{_e(chart.title)}</text>']
    for t in yticks:
        out.append(f'<line x1="{left}" x2="{right}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{left - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{_num(t)}</text>')
    for t in xticks:
        out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#444"/>'
                   f'<text x="{X(t):.1f}" y="{bottom + 17}" text-anchor="middle">{_num(t)}</text>')
    mid = (top + bottom) / 2
    out.append(f'<path d="M{left},{top}V{bottom}H{right}" fill="none" stroke="#444"/>'
               f'<text x="{(left + right) / 2}" y="{bottom + 35}" text-anchor="middle">{_e(chart.x.label)}</text>'
               f'<text transform="translate(18 {mid}) rotate(-90)" text-anchor="middle">{_e(chart.y.label)}</text>')
    if chart.y2:
        Y2, y2ticks = scale(chart.y2, ys(True), bottom - inset, top + inset)
        out.append(f'<path d="M{right},{top}V{bottom}" stroke="#444"/>'
                   f'<text transform="translate({WIDTH - 16} {mid}) rotate(90)" text-anchor="middle">'
                   f'{_e(chart.y2.label)}</text>')
        out += [f'<line x1="{right}" x2="{right + 4}" y1="{Y2(t):.1f}" y2="{Y2(t):.1f}" stroke="#444"/>'
                f'<text x="{right + 7}" y="{Y2(t) + 4:.1f}">{_num(t)}</text>' for t in y2ticks]
    for s in chart.series:
        y_of = Y2 if s.right else Y
        pts = [(X(x), y_of(y), x, y) for x, y in s.points]
        if s.line and len(pts) > 1:
            out.append(f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b, _, _ in pts)}" fill="none" '
                       f'stroke="{s.color}" stroke-width="2"{_dash(s)}/>')
        out += [_marker(s, a, b, f"{s.name}: {_num(y, 4)} at {_num(x, 4)}") for a, b, x, y in pts]
    # after the series: a label over a line stays readable
    for i, m in enumerate(chart.marks):
        x, y = X(m.x), top + 12 + 13 * i
        end = x > right - 150
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="{m.color}" '
                   f'stroke-dasharray="2 3"/>'
                   f'<text x="{x + (-4 if end else 4):.1f}" y="{y}" fill="{m.color}" stroke="#fff" '
                   f'stroke-width="4" paint-order="stroke" text-anchor="{"end" if end else "start"}">'
                   f'{_e(m.label)}</text>')
    out += legend
    out.append(f'<text x="{WIDTH - 10}" y="{HEIGHT - 8}" font-size="10" fill="#777" text-anchor="end">'
               f'{_e(chart.footer)}</text></svg>')
    return "\n".join(out) + "\n"


def _legend(series: Sequence[Series], x0: float, y0: float, x_max: float) -> tuple[list[str], float]:
    """Legend entries in rows under the title; returns them and the height they take."""
    out, x, y = [], x0, y0
    for s in series:
        width = 30 + 6.4 * len(s.name) + 18
        if x + width > x_max and x > x0:
            x, y = x0, y + 17
        swatch = (f'<line x1="{x}" x2="{x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{s.color}" stroke-width="2"'
                  f'{_dash(s)}/>' if s.line else "")
        out.append(f'{swatch}{_marker(s, x + 12, y - 4)}<text x="{x + 30}" y="{y}">{_e(s.name)}</text>')
        x += width
    return out, y - y0 + 12


def _marker(s: Series, x: float, y: float, tip: str = "") -> str:
    """A dot on a line; a larger ring for a separate measurement. The tip shows on hover."""
    look = f'r="2.8" fill="{s.color}"' if s.line else f'r="4.5" fill="#fff" stroke="{s.color}" stroke-width="2"'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" {look}>' + (f"<title>{_e(tip)}</title>" if tip else "") + "</circle>"


def _dash(s: Series) -> str:
    return ' stroke-dasharray="6 4"' if s.dash else ""


def _range(axis: Axis, values: list[float]) -> tuple[float, float, list[float]]:
    """The axis's ends and ticks: 1-2-5 steps (ticks on whole decades only, on a log axis of more than 3)."""
    values = [v for v in values if v > 0] if axis.log else values + ([0.0] if axis.zero else [])
    if axis.ticks:
        return min(values + list(axis.ticks)), max(values + list(axis.ticks)), list(axis.ticks)
    lo, hi = (min(values), max(values)) if values else (1.0, 10.0)
    if axis.log:
        if hi == lo:
            lo, hi = lo / 2, hi * 2
        e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        nice = [round(m * 10.0 ** e, 12) for e in range(e0, e1 + 1) for m in (1, 2, 5)]
        lo, hi = max(t for t in nice if t <= lo * 1.000001), min(t for t in nice if t >= hi / 1.000001)
        ticks = [10.0 ** e for e in range(e0, e1 + 1)] if e1 - e0 > 3 else nice
        return lo, hi, [t for t in ticks if lo <= t <= hi]
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / 6
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return lo, hi, [round(lo + i * step, 10) for i in range(round((hi - lo) / step) + 1)]


def _num(v: float, digits: int = 3) -> str:
    """1.5, 20, 2.5k, 1M: short enough for a tick."""
    v = round(v, 10)
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.{digits}g}{unit}"
    return f"{v:.{digits}g}"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# ---- the five charts ----------------------------------------------------------

def _phase(result: dict, key: str) -> dict | None:
    """A phase's section, unless the phase did not run or broke."""
    section = result.get(key)
    return section if isinstance(section, dict) and "error" not in section else None


def _pick(results: Sequence[dict], *keys: str) -> dict | None:
    best = max(results, key=lambda r: sum(_phase(r, k) is not None for k in keys), default=None)
    return best if best is not None and any(_phase(best, k) for k in keys) else None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _points(rows: Iterable[dict], x_of, y_of) -> tuple[tuple[float, float], ...]:
    """(x, y) of the rows that have both, in x order; a step without answers has no latency."""
    pts = []
    for row in rows:
        try:
            x, y = x_of(row), y_of(row)
        except (KeyError, TypeError):
            continue
        if _finite(x) and _finite(y):
            pts.append((float(x), float(y)))
    return tuple(sorted(pts))


def _latency(rows: Sequence[dict], x_of, name: str, color: str) -> list[Series]:
    """p50 solid and p99 dashed, both in ms."""
    series = [Series(f"{name} {q}", _points(rows, x_of, lambda r, q=q: r["latency_ms"][q]), color, dash=q == "p99")
              for q in ("p50", "p99")]
    return [s for s in series if s.points]


def _footer(result: dict) -> str:
    m = result.get("machine") or {}
    commit = (m.get("git_commit") or "unknown")[:10] + (" (uncommitted changes)" if m.get("git_dirty") else "")
    started = (result.get("started_at") or "").replace("T", " ").replace("+00:00", " UTC")
    return (f"nba bench --profile {result.get('profile', '?')} · commit {commit} · {started} · "
            f"{m.get('cpus_usable', '?')} CPUs {m.get('cpu_model') or ''}").rstrip()


def latency_chart(results: Sequence[dict]) -> Chart | None:
    r = _pick(results, "floor_echo", "decide", "half_rate")
    if r is None:
        return None
    series, marks = [], []
    for key, name, color in (("floor_echo", "echo", BLUE), ("decide", "Decide", ORANGE)):
        phase = _phase(r, key)
        if phase is None:
            continue
        series += _latency(phase.get("steps") or [], lambda s: s["offered_rps"], name, color)
        inside = _points([s for s in phase.get("steps") or [] if s.get("pipeline_ms")], lambda s: s["offered_rps"],
                         lambda s: s["pipeline_ms"]["p50"])
        if inside:  # the service's own histogram: the part of a Decide spent in its pipeline
            series.append(Series(f"{name} p50 inside nba serve", inside, GREEN))
        if phase.get("max_rps"):
            marks.append(Mark(phase["max_rps"], f"{name} max {phase['max_rps']:,}/s", color))
    half = _phase(r, "half_rate")
    settings = r.get("settings") or {}
    step_s, half_s = settings.get("step_s", 0), settings.get("half_s", 0)
    if half and half.get("rate_rps"):
        rate = half["rate_rps"]
        for key, name, color in (("echo", "echo", BLUE), ("decide", "Decide", ORANGE)):
            latency = (half.get(key) or {}).get("latency_ms") or {}
            pts = tuple((rate, latency[q]) for q in ("p50", "p99") if _finite(latency.get(q)))
            if pts:
                series.append(Series(f"{name} at half rate, {_num(half_s)} s (p50, p99)", pts, color, line=False))
        marks.insert(0, Mark(rate, f"half rate {rate:,}/s", GREY))
    if not series:
        return None
    return Chart("bench-latency.svg", f"Latency against offered rate (each point a {_num(step_s)} s open-loop step)",
                 Axis("offered rate (requests/s, log scale)", log=True), Axis("latency (ms, log scale)", log=True),
                 tuple(series), _footer(r), marks=tuple(marks))


def candidates_chart(results: Sequence[dict]) -> Chart | None:
    r = _pick(results, "candidates")
    sizes = (r and _phase(r, "candidates") or {}).get("sizes") or []
    if not sizes:
        return None
    def count(s: dict) -> int:
        return s["candidates"]

    cpu = Series("server CPU per request (µs, right)", _points(sizes, count, lambda s: s["server_cpu_us_per_request"]),
                 GREEN, right=True)
    rate = r["candidates"].get("rate_rps")
    return Chart("bench-candidates.svg", f"Decide against candidate count, at {rate:,} requests/s",
                 Axis("candidates in the placement (log scale)", log=True, ticks=tuple(sorted({s["candidates"]
                                                                                               for s in sizes}))),
                 Axis("latency (ms)", zero=True), (*_latency(sizes, count, "Decide", ORANGE), cpu),
                 _footer(r), y2=Axis("server CPU per request (µs)", zero=True))


def profiles_chart(results: Sequence[dict]) -> Chart | None:
    r = _pick(results, "profiles_sweep")
    sizes = (r and _phase(r, "profiles_sweep") or {}).get("sizes") or []
    if not sizes:
        return None
    def people(s: dict) -> int:
        return s["profiles"]

    size = Series("Redis memory per profile (bytes, right)", _points(sizes, people, lambda s: s["bytes_per_profile"]),
                  GREEN, right=True)
    sweep = r["profiles_sweep"]
    return Chart("bench-profiles.svg",
                 f"Decide against profiles in Redis, at {sweep.get('rate_rps', 0):,} requests/s, "
                 f"{sweep.get('candidates', '?')} candidates",
                 Axis("profiles in Redis (log scale)", log=True, ticks=tuple(sorted({s["profiles"] for s in sizes}))),
                 Axis("latency (ms)", zero=True), (*_latency(sizes, people, "Decide", ORANGE), size),
                 _footer(r), y2=Axis("bytes per profile", zero=True))


def soak_chart(results: Sequence[dict]) -> Chart | None:
    r = _pick(results, "soak")
    soak = r and _phase(r, "soak") or {}
    samples = soak.get("samples") or []
    rss = _points(samples, lambda x: x["t_s"] / 60, lambda x: x["service_rss_bytes"] / MiB)
    if not rss:
        return None
    series = [Series("nba serve RSS (left)", rss, BLUE)]
    # The warm-up ends where soak.py starts its figures: after the idle wait, a short lead and the warm-up.
    warm_end = ((soak.get("step") or {}).get("quiesce_wait_s", 0.0) + 0.3 + soak.get("warmup_s", 0.0)) / 60
    # The start figure: where the climb levelled off (soak.py), or the end of the warm-up in older results.
    start_t = soak.get("rss_level_off_s")
    start_at = (start_t / 60) if start_t is not None else warm_end
    start_is = "where RSS levelled off" if start_t is not None else "after the warm-up"
    if soak.get("rss_start_bytes") and soak.get("growth_target"):
        limit = soak["rss_start_bytes"] * soak["growth_target"] / MiB
        series.append(Series(f"target: {soak['growth_target']:g} × RSS {start_is}",
                             ((start_at, limit), (rss[-1][0], limit)), RED, dash=True))
    # Valkey's RSS beside it, on its own axis: what the decisions store shows there; the target is the service's.
    valkey = _points(samples, lambda x: x["t_s"] / 60, lambda x: x["redis_rss_bytes"] / MiB)
    if valkey:
        series.append(Series("Valkey RSS (right)", valkey, GREEN, right=True))
    rate = soak.get("rate_rps") or 0
    return Chart("bench-soak.svg", f"Service memory over the soak, Decide at {rate:,} requests/s",
                 Axis("time since the soak started (minutes)", zero=True), Axis("nba serve resident set size (MiB)"),
                 tuple(series), _footer(r), y2=Axis("Valkey resident set size (MiB)", zero=True) if valkey else None,
                 marks=(Mark(warm_end, "warm-up ends", GREY),)
                 + ((Mark(start_at, "RSS levelled off", GREY),) if start_t is not None else ()))


def scaling_chart(results: Sequence[dict]) -> Chart | None:
    r = _pick(results, "scaling")
    steps = [s for s in (r and _phase(r, "scaling") or {}).get("steps") or [] if s.get("max_rps")]
    measured = _points(steps, lambda s: s["workers"], lambda s: s["max_rps"])
    if not measured:
        return None
    one = next((y for x, y in measured if x == 1), None)
    series = [Series("measured maximum", measured, ORANGE)]
    if one:
        series.append(Series("ideal: N × one process", tuple((x, x * one) for x, _ in measured), GREY, dash=True))
    # As the bench's report says: past this count the curve shows the machine more than the service.
    cpus = len((r.get("layout") or {}).get("cpus") or []) or (r.get("machine") or {}).get("cpus_usable") or 0
    crowded = [x for x, _ in measured if x > 1 and cpus and x + 2 > cpus]
    marks = (Mark(crowded[0], f"{crowded[0]:g}+ processes on {cpus} cores share them with Valkey and the generator",
                  GREY),) if crowded else ()
    return Chart("bench-scaling.svg",
                 f"Decide's sustained maximum against service processes ({r['scaling'].get('candidates', '?')} "
                 f"candidates)",
                 Axis("service processes (nba serve --workers N)", ticks=tuple(x for x, _ in measured)),
                 Axis("sustained maximum (requests/s)", zero=True), tuple(series), _footer(r), marks=marks)


CHARTS = (latency_chart, candidates_chart, profiles_chart, soak_chart, scaling_chart)


def write(results: Sequence[dict], out: Path) -> list[Path]:
    """Every chart the results hold, as out/bench-*.svg; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for build in CHARTS:
        chart = build(results)
        if chart is not None:
            path = out / chart.file
            path.write_text(svg(chart), encoding="utf-8")
            paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decision.bench.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, metavar="RESULT.json", help="JSON written by nba bench")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory of the SVG files")
    args = p.parse_args(argv)
    paths = write([json.loads(path.read_text()) for path in args.results], args.out)
    for path in paths:
        print(path)
    if not paths:
        print("no chart: the results hold none of the phases charted", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

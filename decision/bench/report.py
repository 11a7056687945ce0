"""The figures of a run: the targets of issue 7, and the table on stdout.

Everything here reads the result dict that run.py writes as JSON, so a saved
JSON file can be rendered again (`render(json.load(f))`) and two runs can be
compared without re-running them.
"""

from __future__ import annotations

import math

# Issue 7's targets: Decide against the floor measured in the same run.
P50_TARGET = 1.5  # Decide p50 <= 1.5 x floor p50 (echo + Redis read) at half of Decide's max rate
P99_TARGET = 2.0  # Decide p99 <= 2 x floor p99 at the same rate
THROUGHPUT_TARGET = 0.70  # Decide max >= 70% of the echo server's max
GENERATOR_BUSY = 0.85  # above this generator CPU share a step may measure the generator, not the server
OTHER_BUSY = 0.10  # cores used by processes outside the bench above which a run is not clean


def _get(d: dict | None, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _ratio(a, b) -> float | None:
    if a is None or b is None or b == 0 or (isinstance(a, float) and math.isnan(a)):
        return None
    return a / b


def targets(result: dict) -> list[dict]:
    """One row per figure: Decide's value, its floor, the ratio and, where
    issue 7 sets one, the target and whether it is met."""
    h = result.get("half_rate") or {}
    at = f"at {h['rate_rps']} rps" if h.get("rate_rps") else "at half of Decide's max (not measured)"
    half = " (half of Decide's max)" if h.get("rate_rps") else ""
    floor = "echo + Redis read"
    rows = []

    def row(key, name, figure, floor_value, floor_is, target=None, at_most=True, unit="ms"):
        ratio = _ratio(figure, floor_value)
        passed = None
        if target is not None and ratio is not None:
            passed = ratio <= target if at_most else ratio >= target
        shown = None if target is None else f"<= {target:g}x" if at_most else f">= {target:.0%}"
        rows.append({"id": key, "figure": name, "decide": figure, "floor": floor_value, "floor_is": floor_is,
                     "unit": unit, "ratio": ratio, "target": shown, "pass": passed})
        return rows[-1]

    def lat(who: str, p: str):
        return _get(h, who, "latency_ms", p)

    row("p50_vs_floor", f"p50 {at}{half}", lat("decide", "p50"), lat("floor_sum", "p50"), floor,
        P50_TARGET)
    row("p99_vs_floor", f"p99 {at}", lat("decide", "p99"), lat("floor_sum", "p99"), floor, P99_TARGET)
    t = row("throughput_vs_echo", "max sustainable throughput", _get(result, "decide", "max_rps"),
            _get(result, "floor_echo", "max_rps"), "echo", THROUGHPUT_TARGET, at_most=False, unit="rps")
    # A search that never failed gives a lower bound only.
    t["decide_at_least"] = bool(_get(result, "decide", "search_capped"))
    t["floor_at_least"] = bool(_get(result, "floor_echo", "search_capped"))
    # Without targets: against the echo server alone, the far tail, and CPU.
    row("p50_vs_echo", f"p50 {at} vs echo alone", lat("decide", "p50"), lat("echo", "p50"), "echo")
    row("p99_vs_echo", f"p99 {at} vs echo alone", lat("decide", "p99"), lat("echo", "p99"), "echo")
    row("p999_vs_floor", f"p99.9 {at}", lat("decide", "p99.9"), lat("floor_sum", "p99.9"), floor)
    row("cpu_per_request_vs_echo", f"server CPU per request {at}", _get(h, "decide", "server_cpu_us_per_request"),
        _get(h, "echo", "server_cpu_us_per_request"), "echo", unit="us")
    return rows


def notes(result: dict) -> list[str]:
    """What a reader must know before trusting the figures."""
    out = []
    for key, name in (("floor_echo", "echo"), ("decide", "Decide")):
        sec = result.get(key) or {}
        if sec.get("error"):
            lines = [x.strip() for x in sec["error"].splitlines() if x.strip()]
            out.append(f"{name}: " + " / ".join(lines if len(lines) <= 3 else lines[:1] + lines[-2:]))
            continue
        if sec.get("search_capped"):
            out.append(f"{name}: no step failed; the maximum is at least {sec.get('max_rps')} rps "
                       "(the search stopped going up)")
        top = next((s for s in sec.get("steps", []) if s["offered_rps"] == sec.get("max_rps")), None)
        gen = top.get("generator_cpu_util", 0) if top else 0
        if top and (gen > GENERATOR_BUSY or gen >= top.get("server_cpu_util", 1)):
            out.append(f"{name}: at the maximum ({top['offered_rps']:.0f} rps) the load generator was "
                       f"{gen:.0%} busy, the server {top.get('server_cpu_util', 0):.0%}: the generator may be what "
                       "limits it, and the true maximum higher")
        for s in sec.get("steps", []):
            if s.get("generator_cap_hits"):
                out.append(f"{name}: {s['generator_cap_hits']} requests refused by the generator's in-flight cap "
                           f"at {s['offered_rps']:.0f} rps")
    steps = [s for key in ("floor_echo", "decide") for s in (result.get(key) or {}).get("steps", [])]
    steps += [s for key, s in (result.get("half_rate") or {}).items() if isinstance(s, dict) and "requests" in s]
    other = max((s.get("other_processes_cpu", 0) for s in steps), default=0)
    if other > OTHER_BUSY:
        out.append(f"other processes on this machine used up to {other:.2f} cores during a step: the bench did "
                   "not have the machine to itself, and its figures are worse than the service's")
    profile_notes = _get(result, "settings", "notes")
    if profile_notes:
        out.append(f"profile {result.get('profile')}: {profile_notes}")
    return out


# --- text ----------------------------------------------------------------------


def _f(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _errors(s: dict) -> str:
    """Errors by status, and the degraded answers (OK, but not a decision)."""
    parts = [f"{k}:{v}" for k, v in s.get("errors", {}).items()]
    if s.get("degraded_answers"):
        parts.append(f"degraded:{s['degraded_answers']}")
    return ",".join(parts) or "0"


def step_line(name: str, s: dict) -> str:
    lat = s["latency_ms"]
    return (f"  {name:<7} offered {s['offered_rps']:>7.0f}/s  achieved {s['achieved_rps']:>7.0f}/s  "
            f"p50 {_f(lat['p50']):>6}  p99 {_f(lat['p99']):>6}  p99.9 {_f(lat['p99.9']):>6} ms  "
            f"errors {_errors(s)}{_fallbacks(s)}  cpu server {s.get('server_cpu_util', 0):.0%} "
            f"generator {s.get('generator_cpu_util', 0):.0%} others {s.get('other_processes_cpu', 0):.0%}")


def _fallbacks(s: dict) -> str:
    n = s.get("fallback_answers", 0) + s.get("empty_answers", 0)
    return f"  fallback {n / s['ok']:.0%}" if n and s.get("ok") else ""


def _share(s: dict, key: str) -> str:
    return f"{s.get(key, 0) / s['ok']:.0%}" if s.get("ok") else "-"


def _cpu(v) -> str:
    return "-" if v is None else f"{v:.0%}"


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: indent + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return [fmt(header), indent + "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def _steps_table(sec: dict) -> list[str]:
    rows = []
    for s in sec.get("steps", []):
        lat = s["latency_ms"]
        rows.append([f"{s['offered_rps']:.0f}", f"{s['achieved_rps']:.0f}", _f(lat["p50"]), _f(lat["p95"]),
                     _f(lat["p99"]), _f(lat["p99.9"]), _errors(s), _share(s, "fallback_answers"),
                     _cpu(s.get("server_cpu_util")), _cpu(s.get("redis_cpu_util")), _cpu(s.get("generator_cpu_util")),
                     _cpu(s.get("other_processes_cpu")), s.get("verdict", "")])
    return _table(["offered/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "errors", "fallback",
                   "server cpu", "redis cpu", "gen cpu", "others", "verdict"], rows)


def render(result: dict) -> str:
    m = result.get("machine", {})
    pk = m.get("packages", {})
    commit = (m.get("git_commit") or "?")[:12] + (" (uncommitted changes)" if m.get("git_dirty") else "")
    pop = result.get("population", {})
    lines = [
        f"nba bench --profile {result.get('profile')}   {result.get('started_at')}   commit {commit}",
        f"machine: {m.get('cpus_usable')} usable cpus ({m.get('cpu_model')}), python {m.get('python')}, "
        f"grpcio {pk.get('grpcio')}, protobuf {pk.get('protobuf')}, redis-py {pk.get('redis')}, "
        f"hiredis {pk.get('hiredis')}, uvloop {pk.get('uvloop')}, {pop.get('redis_server', '')}",
        f"cores: {_get(result, 'layout', 'note')}",
        f"population: {pop.get('profiles')} profiles, {_f(pop.get('bytes_per_profile'), 0)} bytes of Redis memory "
        f"per profile; placement {_get(result, 'settings', 'placement')}",
        "",
        "Floor A - echo server, open-loop steps (latency from the scheduled send time):",
    ]
    echo = result.get("floor_echo") or {}
    lines += _steps_table(echo)
    lines.append(f"  max sustainable: {echo.get('max_rps')} rps")
    lines += ["", "Decide - nba serve, open-loop steps:"]
    decide = result.get("decide") or {}
    if decide.get("error") and not decide.get("steps"):
        lines.append("  " + decide["error"].replace("\n", "\n  "))
    else:
        lines += _steps_table(decide)
        lines.append(f"  max sustainable: {decide.get('max_rps')} rps")
    h = result.get("half_rate")
    if h:
        lines += ["", f"At half of Decide's maximum, {h['rate_rps']} requests/s (latency in ms):"]
        rows = []
        for key, name in (("echo", "A: echo"), ("redis", "B: Redis read"), ("floor_sum", "A+B floor"),
                          ("decide", "Decide")):
            s = h.get(key) or {}
            lat = s.get("latency_ms", {})
            rows.append([name, _f(lat.get("p50")), _f(lat.get("p95")), _f(lat.get("p99")), _f(lat.get("p99.9")),
                         _f(s.get("achieved_rps"), 0) if "achieved_rps" in s else "",
                         _errors(s) if "errors" in s else "", _share(s, "fallback_answers") if "ok" in s else "",
                         _f(s.get("server_cpu_us_per_request"), 0) if "server_cpu_us_per_request" in s else ""])
        lines += _table(["", "p50", "p95", "p99", "p99.9", "achieved/s", "errors", "fallback", "cpu us/req"], rows)
    rows = []
    for t in result.get("targets", []):
        unit = t["unit"]
        ge = lambda key: ">= " if t.get(key) else ""
        rows.append([t["figure"], f"{ge('decide_at_least')}{_f(t['decide'])} {unit}",
                     f"{ge('floor_at_least')}{_f(t['floor'])} {unit} ({t['floor_is']})",
                     f"{t['ratio']:.2f}x" if t["ratio"] is not None else "-", t["target"] or "",
                     {True: "PASS", False: "FAIL", None: ""}[t["pass"]]])
    lines += ["", "Decide against its floor (targets: issue 7):"]
    lines += _table(["figure", "Decide", "floor", "ratio", "target", ""], rows)
    n = notes(result)
    if n:
        lines += ["", "notes:"] + [f"  - {x}" for x in n]
    return "\n".join(lines)

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
CANDIDATES_P99_TARGET = 1.5  # p99 with 200 candidates <= 1.5 x p99 with 10, at one rate
PROFILES_P99_TARGET = 1.0  # p99 does not grow from 1,000 to 1,000,000 profiles in Redis
REWARD_TARGET = 1.0  # Reward's max >= Decide's max
LEARNER_TARGET_PER_S = 20_000  # joined examples per second, one learner process
SOAK_RSS_TARGET = 1.10  # no memory growth: RSS at the end <= 1.1 x RSS after the warm-up
GENERATOR_BUSY = 0.85  # above this generator CPU share a step may measure the generator, not the server
OTHER_BUSY = 0.10  # cores used by processes outside the bench above which a run is not clean
MiB = 1 << 20


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
    """One row per figure: our value (key "decide", as in the first rows),
    its floor or reference, the ratio and, where issue 7 sets one, the
    target and whether it is met. Rows of phases that did not run are left
    out."""
    h = result.get("half_rate") or {}
    at = f"at {h['rate_rps']} rps" if h.get("rate_rps") else "at half of Decide's max (not measured)"
    half = " (half of Decide's max)" if h.get("rate_rps") else ""
    floor = "echo + Redis read"
    rows = []

    def row(key, name, figure, floor_value, floor_is, target=None, at_most=True, unit="ms", steps=()):
        ratio = _ratio(figure, floor_value)
        passed = None
        if target is not None and ratio is not None:
            passed = ratio <= target if at_most else ratio >= target
        shown = None if target is None else f"<= {target:g}x" if at_most else f">= {target:.0%}"
        rows.append({"id": key, "figure": name, "decide": figure, "floor": floor_value, "floor_is": floor_is,
                     "unit": unit, "ratio": ratio, "target": shown, "pass": passed,
                     # the most CPU the hypervisor took in a step this figure comes from (cores)
                     "steal_cpu": max((s.get("steal_cpu", 0) for s in steps if s), default=0.0)})
        return rows[-1]

    def lat(who: str, p: str):
        return _get(h, who, "latency_ms", p)

    if "decide" in result or "floor_echo" in result:
        _decide_rows(result, row, lat, at, half, floor, h)
    _reward_row(result, row)
    _soak_row(result, row)
    _candidates_rows(result, row)
    _profiles_rows(result, row)
    _scaling_rows(result, row)
    _learner_row(result, row)
    return rows


def _decide_rows(result: dict, row, lat, at: str, half: str, floor: str, h: dict) -> None:
    half_steps = [h.get(k) for k in ("decide", "echo", "redis") if isinstance(h.get(k), dict)]
    row("p50_vs_floor", f"p50 {at}{half}", lat("decide", "p50"), lat("floor_sum", "p50"), floor,
        P50_TARGET, steps=half_steps)
    row("p99_vs_floor", f"p99 {at}", lat("decide", "p99"), lat("floor_sum", "p99"), floor, P99_TARGET,
        steps=half_steps)
    t = row("throughput_vs_echo", "max sustainable throughput", _get(result, "decide", "max_rps"),
            _get(result, "floor_echo", "max_rps"), "echo", THROUGHPUT_TARGET, at_most=False, unit="rps",
            steps=[s for k in ("decide", "floor_echo") for s in _get(result, k, "steps", default=[])])
    # A search that never failed gives a lower bound only.
    t["decide_at_least"] = bool(_get(result, "decide", "search_capped"))
    t["floor_at_least"] = bool(_get(result, "floor_echo", "search_capped"))
    # Without targets: against the echo server alone, the far tail, and CPU.
    row("p50_vs_echo", f"p50 {at} vs echo alone", lat("decide", "p50"), lat("echo", "p50"), "echo")
    row("p99_vs_echo", f"p99 {at} vs echo alone", lat("decide", "p99"), lat("echo", "p99"), "echo")
    row("p999_vs_floor", f"p99.9 {at}", lat("decide", "p99.9"), lat("floor_sum", "p99.9"), floor)
    row("cpu_per_request_vs_echo", f"server CPU per request {at}", _get(h, "decide", "server_cpu_us_per_request"),
        _get(h, "echo", "server_cpu_us_per_request"), "echo", unit="us")


def _ran(result: dict, key: str) -> dict | None:
    sec = result.get(key)
    return sec if isinstance(sec, dict) else None


def _reward_row(result: dict, row) -> None:
    sec = _ran(result, "reward")
    if sec is None:
        return
    t = row("reward_vs_decide", "max sustainable Reward rate", sec.get("max_rps"), _get(result, "decide", "max_rps"),
            "Decide's max", REWARD_TARGET, at_most=False, unit="rps",
            steps=[*sec.get("steps", []), *_get(result, "decide", "steps", default=[])])
    t["decide_at_least"] = bool(sec.get("search_capped"))
    t["floor_at_least"] = bool(_get(result, "decide", "search_capped"))


def _soak_row(result: dict, row) -> None:
    sec = _ran(result, "soak")
    if sec is None:
        return
    mib = lambda v: v / MiB if v else None  # noqa: E731
    levelled = sec.get("levelled_off")
    start_is = ("where its climb levelled off" if levelled else "after the warm-up" if levelled is None
                else "after the warm-up; never levelled off")
    r = row("soak_rss", f"service RSS after {_minutes(sec.get('duration_s'))} at {_f(sec.get('rate_rps'), 0)} rps",
            mib(sec.get("rss_end_bytes")), mib(sec.get("rss_start_bytes")), start_is, SOAK_RSS_TARGET,
            unit="MiB", steps=[sec.get("step")])
    if levelled is False:  # a climb that never stops is a leak, whatever the ratio so far (soak.py)
        r["pass"] = False


def _sizes(sec: dict | None) -> list[dict]:
    return [s for s in (sec or {}).get("sizes", []) if "latency_ms" in s]


def _candidates_rows(result: dict, row) -> None:
    sec = _ran(result, "candidates")
    if sec is None:
        return
    sizes = _sizes(sec)
    lo, hi = (sizes[0], sizes[-1]) if len(sizes) >= 2 else (None, None)
    n = lambda s, k: s[k] if s else "?"  # noqa: E731
    p = lambda s, q: _get(s, "latency_ms", q)  # noqa: E731
    at = f"at {_f(sec.get('rate_rps'), 0)} rps"
    t = row("candidates_p99", f"p99 {at}, {n(hi, 'candidates')} vs {n(lo, 'candidates')} candidates", p(hi, "p99"),
            p(lo, "p99"), f"{n(lo, 'candidates')} candidates", CANDIDATES_P99_TARGET, steps=[lo, hi])
    t["ratio_range"] = p99_ratio_range(lo, hi)
    row("candidates_p50", f"p50 {at}, {n(hi, 'candidates')} vs {n(lo, 'candidates')} candidates", p(hi, "p50"),
        p(lo, "p50"), f"{n(lo, 'candidates')} candidates", steps=[lo, hi])


def _profiles_rows(result: dict, row) -> None:
    sec = _ran(result, "profiles_sweep")
    if sec is None:
        return
    sizes = _sizes(sec)
    lo, hi = (sizes[0], sizes[-1]) if len(sizes) >= 2 else (None, None)
    n = lambda s: f"{s['profiles']:,}" if s else "?"  # noqa: E731
    t = row("profiles_p99", f"p99 at {_f(sec.get('rate_rps'), 0)} rps, {n(hi)} vs {n(lo)} profiles",
            _get(hi, "latency_ms", "p99"), _get(lo, "latency_ms", "p99"), f"{n(lo)} profiles", PROFILES_P99_TARGET,
            steps=sizes)
    t["ratio_range"] = p99_ratio_range(lo, hi)
    row("profiles_memory", f"Redis memory per profile, {n(hi)} profiles", _get(hi, "bytes_per_profile"),
        _get(lo, "bytes_per_profile"), f"at {n(lo)}", unit="B")


def p99_ratio_range(lo: dict | None, hi: dict | None) -> list[float] | None:
    """The noise of a p99 ratio between two sizes of a sweep. Measured in
    rounds: the lowest and highest of the rounds' own ratios (the two
    sizes' steps of one round ran minutes apart at most). One step per size
    (results before the sweeps had rounds): the range over the halves of
    the two steps."""
    a, b = _get(lo, "p99_parts_ms"), _get(hi, "p99_parts_ms")
    if not a or not b or min(a) <= 0 or any(math.isnan(x) for x in a + b):
        return None
    if _rounds(lo) > 1 and _rounds(hi) == _rounds(lo) and len(a) == len(b):
        ratios = [y / x for x, y in zip(a, b)]
        return [min(ratios), max(ratios)]
    return [min(b) / max(a), max(b) / min(a)]


def _rounds(s: dict | None) -> int:
    return int((s or {}).get("rounds") or 1)


def _scaling_rows(result: dict, row) -> None:
    sec = _ran(result, "scaling")
    if sec is None:
        return
    steps = sec.get("steps", [])
    one = next((s for s in steps if s.get("workers") == 1), None)
    for s in steps:
        n = s.get("workers", 0)
        if n <= 1:
            continue
        t = row(f"scaling_{n}_workers", f"max Decide rate, {n} service processes", s.get("max_rps"),
                n * one["max_rps"] if one and one.get("max_rps") else None, f"{n} x 1 process", unit="rps")
        t["decide_at_least"] = bool(s.get("search_capped"))
        t["floor_at_least"] = bool(one and one.get("search_capped"))


def _learner_row(result: dict, row) -> None:
    sec = _ran(result, "learner")
    if sec is None:
        return
    runs = len(sec.get("runs") or ())
    row("learner_per_s", "learner: joined examples per second" + (f", median of {runs} runs" if runs > 1 else ""),
        sec.get("per_s"), LEARNER_TARGET_PER_S,
        "issue 7's target", 1.0, at_most=False, unit="/s")


def verdict(t: dict) -> str:
    """PASS or FAIL, marked when the hypervisor took CPU in a step the figure comes from."""
    out = {True: "PASS", False: "FAIL", None: ""}[t["pass"]]
    steal = t.get("steal_cpu") or 0
    if out and steal > OTHER_BUSY:
        out += f" (steal {steal:.2f} cores: the host's figure)"
    return out


def _minutes(seconds) -> str:
    if not seconds:
        return "?"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


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
    out += _phase_notes(result)
    other = max((s.get("other_processes_cpu", 0) for s in all_steps(result)), default=0)
    if other > OTHER_BUSY:
        out.append(f"other processes on this machine used up to {other:.2f} cores during a step: the bench did "
                   "not have the machine to itself, and its figures are worse than the service's")
    stolen = [s.get("steal_cpu", 0) for s in all_steps(result)]
    if max(stolen, default=0) > OTHER_BUSY:
        out.append(f"the hypervisor took up to {max(stolen):.2f} cores from this machine during a step (CPU steal; "
                   f"{sum(x > OTHER_BUSY for x in stolen)} of {len(stolen)} steps above {OTHER_BUSY:.2f}): those "
                   "steps measure the host as much as the service")
    profile_notes = _get(result, "settings", "notes")
    if profile_notes:
        out.append(f"profile {result.get('profile')}: {profile_notes}")
    return out


def all_steps(result: dict) -> list[dict]:
    """Every measured step of the run, whatever its phase."""
    steps = [s for key in ("floor_echo", "decide", "reward") for s in (result.get(key) or {}).get("steps", [])]
    steps += [s for key, s in (result.get("half_rate") or {}).items() if isinstance(s, dict) and "requests" in s]
    steps += [s for key in ("candidates", "profiles_sweep") for s in _sizes(result.get(key))]
    steps += [s for n in (result.get("scaling") or {}).get("steps", []) for s in n.get("steps", [])]
    if _get(result, "soak", "step"):
        steps.append(result["soak"]["step"])
    return steps


def _first_lines(text: str) -> str:
    lines = [x.strip() for x in str(text).splitlines() if x.strip()]
    return " / ".join(lines if len(lines) <= 3 else lines[:1] + lines[-2:])


def _phase_notes(result: dict) -> list[str]:
    out = []
    for phase, reason in (result.get("skipped") or {}).items():
        out.append(f"{phase}: not run ({reason})")
    for key, name in (("half_rate", "half rate"), ("reward", "reward"), ("soak", "soak"), ("candidates", "candidates"),
                      ("profiles_sweep", "profiles"), ("scaling", "scaling"), ("learner", "learner")):
        sec = _ran(result, key)
        if sec is None:
            continue
        if sec.get("error"):
            out.append(f"{name}: {_first_lines(sec['error'])}")
        parts = sec.get("sizes", []) if key in ("candidates", "profiles_sweep") else \
            sec.get("steps", []) if key == "scaling" else []
        for part in parts:
            if part.get("error"):
                out.append(f"{name}: {_first_lines(part['error'])}")
    fixed = result.get("fixed_rate")
    if fixed and any(k in result for k in ("soak", "candidates", "profiles_sweep")):
        out.append(f"the soak and the sweeps ran at {_f(fixed['rps'], 0)} requests/s: {fixed['from']}")
    for key, name in (("candidates", "candidates"), ("profiles_sweep", "profiles")):
        for s in _sizes(result.get(key)):
            if not s.get("sustained"):
                size = s.get("candidates") or s.get("profiles")
                out.append(f"{name}: with {size:,} the service did not keep up at {s['offered_rps']:.0f} rps "
                           f"({s.get('verdict')}): its latency is a queue's (--rate compares the sizes at a "
                           "rate they all sustain)")
    for key, name, size, target in (("candidates", "candidates", "candidates", CANDIDATES_P99_TARGET),
                                    ("profiles_sweep", "profiles", "profiles", PROFILES_P99_TARGET)):
        sizes = _sizes(_ran(result, key))
        if len(sizes) < 2:
            continue
        rng = p99_ratio_range(sizes[0], sizes[-1])
        if not rng:
            continue
        each = "round" if _rounds(sizes[0]) > 1 else "half of each step"
        parts = "; ".join(f"{s[size]:,}: {' / '.join(_f(x) for x in s.get('p99_parts_ms', []))} ms" for s in sizes)
        verdict = f"it includes the target ({target:g}x): the verdict is within the noise of a p99 this long" \
            if rng[0] <= target <= rng[1] else f"all of it above the target ({target:g}x)" \
            if rng[0] > target else f"all of it within the target ({target:g}x)"
        out.append(f"{name}: the p99 of each {each} ({parts}) puts the p99 ratio of {sizes[-1][size]:,} to "
                   f"{sizes[0][size]:,} anywhere from {rng[0]:.2f}x to {rng[1]:.2f}x; {verdict}")
    reward = _ran(result, "reward")
    if reward and reward.get("repeated_requests"):
        out.append(f"reward: {reward['repeated_requests']:,} requests repeated earlier event ids (answered as "
                   "duplicates, which is cheaper)")
    scale = _ran(result, "scaling")
    if scale and scale.get("steps"):
        out += _scaling_notes(result, scale)
    sk = _ran(result, "soak")
    if sk and sk.get("duration_s") and sk["duration_s"] < 600:
        out.append(f"soak: {_minutes(sk['duration_s'])} measured, not issue 7's 10 minutes (--profile soak)")
    return out


def _scaling_notes(result: dict, scale: dict) -> list[str]:
    out = []
    cpus = len(_get(result, "layout", "cpus") or []) or _get(result, "machine", "cpus_usable") or 0
    most = max((s.get("workers", 0) for s in scale["steps"]), default=0)
    if most > 1 and cpus and most + 2 > cpus:
        out.append(f"scaling: {most} service processes on {cpus} cores: they share cores with Valkey, the load "
                   f"generator and the bench (cpu placement per worker: "
                   f"{'; '.join(str(s.get('cpus')) for s in scale['steps'] if s.get('workers', 0) > 1)}), so "
                   "the curve shows this machine's limit more than the service's; run it where each worker, "
                   "Valkey and the generator have a core of their own")
    for s in scale["steps"]:
        conns = s.get("connections_per_worker") or []
        if len(conns) > 1 and min(conns) * 1.5 < max(conns):
            out.append(f"scaling: with {s['workers']} processes the kernel gave the generator's connections "
                       f"{'/'.join(map(str, conns))}: the busiest process caps the rate")
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
    inside = s.get("pipeline_ms")
    return (f"  {name:<7} offered {s['offered_rps']:>7.0f}/s  achieved {s['achieved_rps']:>7.0f}/s  "
            f"p50 {_f(lat['p50']):>6}  p99 {_f(lat['p99']):>6}  p99.9 {_f(lat['p99.9']):>6} ms  "
            + (f"(inside p50 {_f(inside.get('p50'))} p99 {_f(inside.get('p99'))})  " if inside else "")
            + f"errors {_errors(s)}{_fallbacks(s)}  cpu server {s.get('server_cpu_util', 0):.0%} "
            f"generator {s.get('generator_cpu_util', 0):.0%} others {s.get('other_processes_cpu', 0):.0%}")


def _fallbacks(s: dict) -> str:
    n = s.get("fallback_answers", 0) + s.get("empty_answers", 0)
    return f"  fallback {n / s['ok']:.0%}" if n and s.get("ok") else ""


def _share(s: dict, key: str) -> str:
    return f"{s.get(key, 0) / s['ok']:.0%}" if s.get("ok") else "-"


def _cpu(v) -> str:
    return "-" if v is None else f"{v:.0%}"


def _times(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: indent + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return [fmt(header), indent + "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def _steps_table(sec: dict, indent: str = "  ") -> list[str]:
    rows = []
    for s in sec.get("steps", []):
        lat = s["latency_ms"]
        rows.append([f"{s['offered_rps']:.0f}", f"{s['achieved_rps']:.0f}", _f(lat["p50"]), _f(lat["p95"]),
                     _f(lat["p99"]), _f(lat["p99.9"]), _errors(s), _share(s, "fallback_answers"),
                     _cpu(s.get("server_cpu_util")), _cpu(s.get("redis_cpu_util")), _cpu(s.get("generator_cpu_util")),
                     _cpu(s.get("other_processes_cpu")), s.get("verdict", "")])
    return _table(["offered/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "errors", "fallback",
                   "server cpu", "redis cpu", "gen cpu", "others", "verdict"], rows, indent)


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
    ]
    if "floor_echo" in result:
        lines += ["", "Floor A - echo server, open-loop steps (latency from the scheduled send time):"]
        echo = result.get("floor_echo") or {}
        lines += _steps_table(echo)
        lines.append(f"  max sustainable: {echo.get('max_rps')} rps")
    if "decide" in result:
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
        inside = _get(h, "decide", "pipeline_ms")
        if inside:
            rows.append(["Decide inside nba serve", _f(inside.get("p50")), "", _f(inside.get("p99")), "", "", "", "",
                         ""])
        lines += _table(["", "p50", "p95", "p99", "p99.9", "achieved/s", "errors", "fallback", "cpu us/req"], rows)
        if inside:
            lines.append("  (inside nba serve: its own Decide histogram, from the handler's start to its answer, without "
                         "gRPC's transport and queues; to within a bucket, 0.5-1 ms)")
        stages = _get(h, "decide", "stages_ms")
        if stages:
            lines.append("  inside, by stage (p50 / p99 ms, from the stage histograms: one decision in 8): " + ", ".join(
                f"{name} {_f(st.get('p50'))} / {_f(st.get('p99'))}" for name, st in stages.items()))
        rounds = h.get("rounds") or []
        if len(rounds) > 1:
            lines.append(f"  pooled over {len(rounds)} rounds (echo, Redis read, Decide, each in turn); each round "
                         "against its own floor:")
            lines += _table(
                ["round", "echo p50", "Redis p50", "floor p50", "Decide p50", "p50 ratio", "floor p99", "Decide p99",
                 "p99 ratio", "inside p99"],
                [[str(k), _f(r.get("echo_p50_ms")), _f(r.get("redis_p50_ms")), _f(r.get("floor_p50_ms")),
                  _f(r.get("decide_p50_ms")), _times(r.get("p50_ratio")), _f(r.get("floor_p99_ms")),
                  _f(r.get("decide_p99_ms")), _times(r.get("p99_ratio")), _f(r.get("pipeline_p99_ms"))]
                 for k, r in enumerate(rounds, start=1)],
                indent="    ")
    lines += _phase_sections(result)
    rows = []
    for t in result.get("targets", []):
        unit = t["unit"]
        ge = lambda key: ">= " if t.get(key) else ""
        rows.append([t["figure"], f"{ge('decide_at_least')}{_f(t['decide'])} {unit}",
                     f"{ge('floor_at_least')}{_f(t['floor'])} {unit} ({t['floor_is']})",
                     _times(t["ratio"]), t["target"] or "", verdict(t)])
    lines += ["", "Against the floor or reference (targets: issue 7):"]
    lines += _table(["figure", "measured", "floor / reference", "ratio", "target", ""], rows)
    took = result.get("phase_s")
    if took:
        lines += ["", "time per phase: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items())]
    n = notes(result)
    if n:
        lines += ["", "notes:"] + [f"  - {x}" for x in n]
    return "\n".join(lines)


def _lat_cells(s: dict) -> list[str]:
    lat = s.get("latency_ms", {})
    return [_f(lat.get("p50")), _f(lat.get("p95")), _f(lat.get("p99")), _f(lat.get("p99.9")),
            "/".join(_f(x) for x in s.get("p99_parts_ms", [])) or "-"]


def _rounds_note(sec: dict) -> str:
    n = _rounds(sec)
    return f"; {n} rounds, each a step of every size, pooled" if n > 1 else ""


def _parts_title(sec: dict) -> str:
    return "p99 per round" if _rounds(sec) > 1 else "p99 halves"


def _phase_sections(result: dict) -> list[str]:
    """The sections of issue 7's other phases, each as it ran."""
    lines: list[str] = []
    sec = _ran(result, "reward")
    if sec is not None:
        lines += ["", "Reward - the same nba serve, rewards for its logged decisions, open-loop steps:"]
        if sec.get("steps"):
            lines += _steps_table(sec)
        decide = _get(result, "decide", "max_rps") or "-"
        lines.append(f"  max sustainable: {sec.get('max_rps')} rps (Decide: {decide} rps); "
                     f"{sec.get('decisions', 0):,} decisions rewarded, {sec.get('click_share', 0):.0%} clicks")
    sec = _ran(result, "soak")
    if sec is not None and "step" in sec:
        st = sec["step"]
        lines += ["", f"Memory soak - Decide at {_f(sec['rate_rps'], 0)} rps for {_minutes(sec['duration_s'])} "
                      f"after {_minutes(sec['warmup_s'])} of warm-up, RSS every {sec['sample_every_s']:g} s:"]
        slope = sec.get("rss_slope_mib_per_min")
        warm = sec.get("rss_warmup_end_bytes", sec["rss_start_bytes"])
        lines.append(f"  nba serve RSS: {warm / MiB:.1f} MiB after the warm-up, "
                     f"{sec['rss_start_bytes'] / MiB:.1f} MiB at the start figure, "
                     f"{sec['rss_end_bytes'] / MiB:.1f} MiB at the end, {sec['rss_max_bytes'] / MiB:.1f} MiB at most"
                     + (f"; slope {slope:+.3f} MiB/min from the start figure" if slope is not None else ""))
        if sec.get("verdict"):
            second = sec.get("rss_slope_second_half_mib_per_min")
            lines.append(f"  {sec['verdict']}" + (f"; second half {second:+.3f} MiB/min" if second is not None else ""))
        lines.append(f"  Valkey RSS: {sec['redis_rss_start_bytes'] / MiB:.1f} -> "
                     f"{sec['redis_rss_end_bytes'] / MiB:.1f} MiB (its logs grow with every decision)")
        lat = st.get("latency_ms", {})
        lines.append(f"  latency: p50 {_f(lat.get('p50'))}  p99 {_f(lat.get('p99'))}  p99.9 {_f(lat.get('p99.9'))} ms; "
                     f"achieved {_f(st.get('achieved_rps'), 0)}/s, errors {_errors(st)}, "
                     f"fallback {_share(st, 'fallback_answers')}")
    sec = _ran(result, "candidates")
    if sec is not None and sec.get("sizes"):
        lines += ["", f"Candidates sweep - Decide at {_f(sec['rate_rps'], 0)} rps, one nba serve per generated "
                      f"catalog (placement {sec['placement']}{_rounds_note(sec)}; latency in ms):"]
        rows = [[str(s["candidates"]), _f(s.get("allowed_mean"), 1), _f(s.get("achieved_rps"), 0), *_lat_cells(s),
                 _f(_get(s, "pipeline_ms", "p99")), _errors(s), _share(s, "fallback_answers"),
                 _f(s.get("server_cpu_us_per_request"), 0), s.get("verdict", "")] for s in _sizes(sec)]
        lines += _table(["candidates", "allowed", "achieved/s", "p50", "p95", "p99", "p99.9", _parts_title(sec),
                         "inside p99", "errors", "fallback", "cpu us/req", "verdict"], rows)
    sec = _ran(result, "profiles_sweep")
    if sec is not None and sec.get("sizes"):
        how = ("a Redis and an nba serve per size" + _rounds_note(sec) if _rounds(sec) > 1
               else "people added to a second Redis between steps")
        lines += ["", f"Profiles sweep - Decide at {_f(sec['rate_rps'], 0)} rps ({sec['candidates']} candidates), "
                      f"{how} (latency in ms):"]
        rows = [[f"{s['profiles']:,}", _f(_get(s, "load", "load_s"), 1),
                 _f(_get(s, "load", "profiles_per_s"), 0), _f(s.get("bytes_per_profile"), 0),
                 _f(s.get("used_memory", 0) / MiB, 0), _f(s.get("achieved_rps"), 0), *_lat_cells(s),
                 _f(_get(s, "pipeline_ms", "p99")), _errors(s), _f(s.get("server_cpu_us_per_request"), 0),
                 s.get("verdict", "")] for s in _sizes(sec)]
        lines += _table(["profiles", "load s", "people/s", "bytes/person", "used MiB", "achieved/s", "p50", "p95",
                         "p99", "p99.9", _parts_title(sec), "inside p99", "errors", "cpu us/req", "verdict"], rows)
    sec = _ran(result, "scaling")
    if sec is not None and sec.get("steps"):
        lines += ["", f"Scaling - nba serve --workers N (SO_REUSEPORT), Decide's maximum (placement "
                      f"{sec.get('placement', '?')}, {sec.get('candidates', '?')} candidates):"]
        for s in sec["steps"]:
            if s.get("steps"):
                lines.append(f"  {s['workers']} process(es), cpus {s.get('cpus')}, connections per process "
                             f"{'/'.join(map(str, s.get('connections_per_worker') or [])) or '-'}:")
                lines += _steps_table(s, indent="    ")
        rows = [[str(s.get("workers")), f"{'>= ' if s.get('search_capped') else ''}{s.get('max_rps')}",
                 f"{s['efficiency']:.0%}" if s.get("efficiency") is not None else "-"] for s in sec["steps"]]
        lines += [""] + _table(["processes", "max rps", "efficiency rate(N) / (N x rate(1))"], rows)
    sec = _ran(result, "learner")
    if sec is not None:
        where = "the learner and its training process" if sec.get("train_process") else "one process"
        lines += ["", f"Learner - python {sec.get('command', '-m decision.learning.bench')} ({where}):"]
        if sec.get("per_s"):
            vw = f"; VW alone on the same examples: {sec['vw_only_per_s']:,.0f}/s" if sec.get("vw_only_per_s") else ""
            lines.append(f"  {sec['per_s']:,.0f} joined examples/s ({sec.get('joined', 0):,} in "
                         f"{_f(sec.get('elapsed_s'))} s){vw}")
            if len(sec.get("runs") or ()) > 1:
                lines.append(f"  the median of {len(sec['runs'])} runs: "
                             + ", ".join(f"{r['per_s']:,.0f}" for r in sec["runs"]) + " joined examples/s")
            one = sec.get("one_process")
            if one and one.get("per_s"):
                lines.append(f"  one process (--train-process off), median: {one['per_s']:,.0f} joined examples/s "
                             f"({', '.join(f'{x:,.0f}' for x in one['runs'])}): the training process gains "
                             f"{sec['per_s'] / one['per_s']:.2f}x")
        else:
            lines.append("  no figures")
    return lines

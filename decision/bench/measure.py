"""Steps of open-loop load against one server, and what the server spent.

A step is *sustained* when the answers that arrived in its window reach 95%
of the offered rate; at most 0.1% of requests fail or come back degraded
(the service served its fallback without deciding); and its p50 and p99 stay
within P50_GROWTH and P99_GROWTH times the lowest p50 and p99 of the
sustained steps before it (a queue that grows shows in the p50 first). The
maximum sustainable rate is the highest sustained step found by stepping the
rate up geometrically, then bisecting between the last sustained and the
first failed step. Before every step the bench waits until the machine is
idle again, so that one step's backlog (an overloaded service spools and
replays) is not measured in the next.
"""

from __future__ import annotations

import math
import re
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from decision.bench import procs, report
from decision.bench.loadgen import LoadGenerator, Step, StepSamples, concat, p99_parts, summarize

MIN_ACHIEVED = 0.95
MAX_ERROR_RATE = 0.001
P50_GROWTH = 5.0
P99_GROWTH = 25.0  # generous: a gen-2 GC pause of the service alone can make a p99 10x its best
IDLE_CPU = 0.15  # the machine is idle below this many cores busy, all processes together
WARMUP = "  (warm-up step, not reported)"


@dataclass(frozen=True)
class Search:
    start_rps: float
    growth: float  # next rate = rate x growth while steps are sustained
    max_steps: int  # upward steps at most
    refine: int  # bisection steps between the last sustained and the first failed rate


def warmup_step(p) -> tuple[float, float]:
    """Duration and warm-up of a step that only warms a server up."""
    return max(1.0, p.step_s / 2), min(p.warmup_s, 0.5)


def sustained(s: dict, best: dict[str, float] | None) -> tuple[bool, str]:
    """Whether a step's figures show a server that keeps up, and if not why.
    `best`: the lowest p50 and p99 of the sustained steps before it."""
    if s["requests"] == 0:
        return False, "no requests"
    if s["achieved_rps"] < MIN_ACHIEVED * s["offered_rps"]:
        return False, f"achieved < {MIN_ACHIEVED:.0%} of offered"
    failed = s["error_count"] + s.get("degraded_answers", 0)
    if failed > MAX_ERROR_RATE * s["requests"]:
        return False, f"{s['error_count']} errors, {s.get('degraded_answers', 0)} degraded"
    for key, growth in (("p50", P50_GROWTH), ("p99", P99_GROWTH)):
        v = s["latency_ms"][key]
        if best is not None and v > growth * best[key]:
            return False, f"{key} {v:.1f} ms > {growth:g}x {best[key]:.2f}"
    return True, "sustained"


# The service's own Decide latency (decision/metrics.py): from the request's
# arrival in the handler to its answer, without gRPC's transport and queues;
# and each stage's (sampled: one decision in STAGE_SAMPLE).
_SERVICE_BUCKET = re.compile(r'^nba_(decide|stage)_duration_seconds_bucket\{([^}]*)\} (\S+)$', re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def service_histograms(metrics_port: int) -> dict[str, dict[float, float]] | None:
    """The service's Decide duration histogram ("decide", summed over
    placements) and each stage's ("stage:<name>"): cumulative counts by
    upper bound in seconds; none of them before its first decision. None
    when /metrics cannot be read."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            return parse_service_histograms(r.read().decode())
    except OSError:
        return None


def parse_service_histograms(body: str) -> dict[str, dict[float, float]]:
    """service_histograms from a Prometheus text body."""
    out: dict[str, dict[float, float]] = {}
    for metric, labels, n in _SERVICE_BUCKET.findall(body):
        label = dict(_LABEL.findall(labels))
        le = label.get("le")
        if le is None:
            continue
        key = "decide" if metric == "decide" else f"stage:{label.get('stage', '?')}"
        bound = math.inf if le == "+Inf" else float(le)
        counts = out.setdefault(key, {})
        counts[bound] = counts.get(bound, 0.0) + float(n)
    return out


def service_figures(before: dict | None, after: dict | None) -> dict:
    """The step's Decides inside the service (`pipeline_ms`) and by stage
    (`stages_ms`, stage -> figures), from two readings of its histograms."""
    if before is None or after is None:
        return {}
    out: dict = {"pipeline_ms": pipeline_figures(before.get("decide", {}), after.get("decide"))}
    stages = {key.split(":", 1)[1]: pipeline_figures(before.get(key, {}), after[key])
              for key in after if key.startswith("stage:")}
    stages = {k: v for k, v in stages.items() if v}
    if stages:
        out["stages_ms"] = stages
    return out


def pipeline_figures(before: dict[float, float] | None, after: dict[float, float] | None) -> dict | None:
    """The decisions between two readings of the histogram: their count,
    p50 and p99 (ms), and the cumulative counts by bound (`buckets`, for
    pooling steps; the last bound "+Inf"). `before` empty: nothing counted
    yet. None without both readings or without a decision between them."""
    if before is None or not after:
        return None
    bounds = sorted(after)
    return pipeline_summary([[b, after[b] - before.get(b, 0.0)] for b in bounds])


def pipeline_summary(buckets: list[list]) -> dict | None:
    """Count and percentiles of cumulative bucket counts [[bound s, count]]:
    each percentile interpolated linearly inside its bucket, so good to about
    the bucket's width (0.5-1 ms around a Decide's p99)."""
    bounds = [math.inf if b in ("+Inf", math.inf) else float(b) for b, _ in buckets]
    cum = [float(c) for _, c in buckets]
    total = cum[-1] if cum else 0.0
    if total <= 0:
        return None
    out: dict = {"count": int(total)}
    for pct in (50, 99):
        want = total * pct / 100
        i = next(k for k, c in enumerate(cum) if c >= want)
        lo, below = (bounds[i - 1], cum[i - 1]) if i else (0.0, 0.0)
        if math.isinf(bounds[i]):  # past the last bound: at least that
            out[f"p{pct}"] = 1e3 * lo
            continue
        share = (want - below) / (cum[i] - below) if cum[i] > below else 1.0
        out[f"p{pct}"] = 1e3 * (lo + share * (bounds[i] - lo))
    out["buckets"] = [["+Inf" if math.isinf(b) else b, c] for b, c in zip(bounds, cum)]
    return out


class Measure:
    """Runs steps against one target and adds what the server spent.

    `server_pid`: the server under test, or all its processes (a
    supervisor and its workers); their CPU time is added up. `profile`: the
    run's Profile (decision/bench/run.py): durations, time-outs, cool-down.
    `metrics_port`: an `nba serve`'s Prometheus endpoint; each step then
    also reports the service's own Decide latency and its stages'
    (`pipeline_ms`, `stages_ms`, from its histograms), which tells a tail
    made in the pipeline from one made in gRPC, the kernel or the host."""

    def __init__(self, name: str, gen: LoadGenerator, server_pid: int | Sequence[int] | None,
                 redis_pid: int | None, profile, log=print, metrics_port: int = 0) -> None:
        pids = server_pid if isinstance(server_pid, (list, tuple)) else (server_pid,)
        self.server_pids = tuple(pid for pid in pids if pid is not None)
        self.server_pid = self.server_pids[0] if self.server_pids else None
        self.name, self.gen, self.redis_pid = name, gen, redis_pid
        self.profile, self.log = profile, log
        self.metrics_port = metrics_port
        self._told_busy = False

    def _server_cpu(self) -> float:
        return sum(procs.cpu_seconds(pid) for pid in self.server_pids)

    def step(self, rate: float, duration_s: float, warmup_s: float, label: str = "") -> tuple[dict, StepSamples]:
        p = self.profile
        step = Step(rate=float(rate), duration_s=duration_s, warmup_s=warmup_s, timeout_s=p.timeout_s)
        hist0 = service_histograms(self.metrics_port) if self.metrics_port else None
        waited, idle = self.quiesce()
        gens = [procs.cpu_seconds(pid) for pid in self.gen.pids]
        (busy0, steal0), me0 = procs.system_cpu(), time.process_time()
        srv0, red0, t0 = self._server_cpu(), procs.cpu_seconds(self.redis_pid), time.monotonic()
        samples = self.gen.run(step)
        wall = time.monotonic() - t0
        srv, red = self._server_cpu() - srv0, procs.cpu_seconds(self.redis_pid) - red0
        (busy1, steal1), me = procs.system_cpu(), time.process_time() - me0
        gen = sum(procs.cpu_seconds(pid) - g for pid, g in zip(self.gen.pids, gens))
        ours = me + gen + red + (srv if not set(self.server_pids) & set(self.gen.pids) else 0)
        s = summarize(samples)
        # Cores used by processes outside the bench during the step: the
        # machine was not ours alone when this is far above zero.
        s["other_processes_cpu"] = max(0.0, (busy1 - busy0) - ours) / wall
        s["steal_cpu"] = (steal1 - steal0) / wall
        sent = int((samples.sent > 0).sum())
        s["server_cpu_util"] = srv / wall
        s["server_cpu_us_per_request"] = 1e6 * srv / sent if sent else float("nan")
        s["redis_cpu_util"] = red / wall if self.redis_pid else None
        s["generator_cpu_util"] = s["generator_cpu_s"] / s["wall_s"] / max(1, s["generator_workers"])
        s["quiesce_wait_s"], s["idle_before"] = waited, idle
        if self.metrics_port:  # read after the step's figures: the scrape's CPU is not the step's
            s.update(service_figures(hist0, service_histograms(self.metrics_port)))
        self.log(report.step_line(self.name, s) + label)
        time.sleep(p.cooldown_s)
        return s, samples

    def quiesce(self) -> tuple[float, bool]:
        """Wait until the machine is idle - the server's backlog of the last
        step, Redis, and anything else running - for at most quiesce_max_s.
        Returns the time waited and whether it got idle."""
        t0 = time.monotonic()
        idle = False
        limit = self.profile.quiesce_max_s
        while time.monotonic() - t0 < limit:
            before = procs.system_cpu()[0]
            time.sleep(0.25)
            if (procs.system_cpu()[0] - before) / 0.25 < IDLE_CPU:
                idle = True
                break
        waited = time.monotonic() - t0
        if not idle:
            if not self._told_busy:
                self._told_busy = True
                self.log(f"  {self.name:<7} the machine did not go idle within {limit:g} s; measuring anyway "
                         "(said once)")
        elif waited > 1.0:
            self.log(f"  {self.name:<7} waited {waited:.1f} s for the machine to go idle")
        return waited, idle

    def find_max(self, search: Search) -> dict:
        p = self.profile
        steps: list[dict] = []
        lowest: dict[str, float] | None = None
        best, failed = None, None
        rate = search.start_rps

        def run(r: float) -> bool:
            nonlocal lowest
            s, _ = self.step(round(r), p.step_s, p.warmup_s)
            ok, why = sustained(s, lowest)
            if ok:
                lat = s["latency_ms"]
                lowest = {k: min(lat[k], (lowest or lat)[k]) for k in ("p50", "p99")}
            s["sustained"], s["verdict"] = ok, why
            steps.append(s)
            return ok

        for _ in range(search.max_steps):
            if run(rate):
                best = rate
                rate *= search.growth
            else:
                failed = rate
                break
        lo = best if best is not None else 0.0
        for _ in range(search.refine if failed is not None else 0):
            mid = (lo + failed) / 2
            if round(mid) in (round(lo), round(failed)):
                break
            if run(mid):
                lo = best = mid
            else:
                failed = mid
        return {
            "steps": sorted(steps, key=lambda s: s["offered_rps"]),
            "max_rps": round(best) if best is not None else None,
            "first_failed_rps": round(failed) if failed is not None else None,
            "search_capped": failed is None,  # never failed: the maximum is at least max_rps
        }


Taken = list[tuple[dict, StepSamples]]  # one target's steps: (summary, samples) each


def in_rounds(measures: Mapping[str, Measure], rate: float, rounds: int, duration_s: float, warmup_s: float,
              order: Callable[[int], Sequence[str]] | None = None,
              after: Callable[[str], None] | None = None) -> dict[str, Taken]:
    """Several targets at one rate, compared: a warm-up step each, then
    `rounds` rounds of one step each, in `order(round)` (default: as given).
    A machine whose speed drifts, or stalls for a moment, then weighs on
    every target alike instead of on whichever was measured at the time:
    on this project's shared VM two runs of one step differ by more than
    most of what the bench compares. `pool` makes each target's steps one.
    `after(name)` runs after each measured step (to read what it left)."""
    for m in measures.values():
        m.step(rate, *warmup_step(m.profile), WARMUP)
    taken: dict[str, Taken] = {name: [] for name in measures}
    for k in range(rounds):
        for name in (order(k) if order is not None else measures):
            label = f"  (round {k + 1} of {rounds})" if rounds > 1 else ""
            taken[name].append(measures[name].step(rate, duration_s, warmup_s, label))
            if after is not None:
                after(name)
    return taken


def rotated(names: Sequence[str]) -> Callable[[int], list[str]]:
    """An order for `in_rounds`: each round starts one target later, so no
    target is always measured first (after the quiet of the cool-down) or
    last."""
    names = list(names)
    return lambda k: names[k % len(names):] + names[:k % len(names)]


# Figures Measure.step adds to a step's summary, and how rounds combine them.
_MEAN_OF_ROUNDS = ("achieved_rps", "server_cpu_util", "server_cpu_us_per_request", "redis_cpu_util",
                   "generator_cpu_util", "steal_cpu")
_MAX_OF_ROUNDS = ("other_processes_cpu",)


def pool(taken: Taken) -> tuple[dict, StepSamples]:
    """Steps of one rate as one: percentiles over all their requests,
    throughput and CPU figures the mean of the steps, other processes' CPU
    the worst step's."""
    if len(taken) == 1:
        return taken[0]
    merged = concat([samples for _, samples in taken])
    s = summarize(merged)
    for key in _MEAN_OF_ROUNDS:
        values = [t[key] for t, _ in taken if t.get(key) is not None]
        if values:
            s[key] = float(np.mean(values))
    for key in _MAX_OF_ROUNDS:
        values = [t[key] for t, _ in taken if t.get(key) is not None]
        if values:
            s[key] = float(max(values))
    s["quiesce_wait_s"] = sum(t.get("quiesce_wait_s", 0.0) for t, _ in taken)
    s["idle_before"] = all(t.get("idle_before", True) for t, _ in taken)
    s["rounds"] = len(taken)
    inside = _pooled_histogram([t.get("pipeline_ms") for t, _ in taken])
    if inside:
        s["pipeline_ms"] = inside
    stages = {name: _pooled_histogram([(t.get("stages_ms") or {}).get(name) for t, _ in taken])
              for name in (taken[0][0].get("stages_ms") or {})}
    stages = {name: v for name, v in stages.items() if v}  # a stage every step saw
    if stages:
        s["stages_ms"] = stages
    return s, merged


def _pooled_histogram(parts: list[dict | None]) -> dict | None:
    """One histogram's figures over several steps: their buckets added up."""
    if not parts or not all(p and p.get("buckets") for p in parts):
        return None
    bounds = [b for b, _ in parts[0]["buckets"]]
    if any([b for b, _ in p["buckets"]] != bounds for p in parts):
        return None
    return pipeline_summary([[b, sum(p["buckets"][k][1] for p in parts)] for k, b in enumerate(bounds)])


def pooled_size(taken: Taken) -> dict:
    """One size of a sweep, measured in rounds: the pooled figures, whether
    the server kept up (judged on the pool), and each round's p99
    (`p99_parts_ms`: with one round, the p99 of each half of its window),
    the spread a p99 of this length has by itself."""
    s, samples = pool(taken)
    s["sustained"], s["verdict"] = sustained(s, None)
    s["p99_parts_ms"] = ([t["latency_ms"]["p99"] for t, _ in taken] if len(taken) > 1
                         else p99_parts(samples, 2))
    return s

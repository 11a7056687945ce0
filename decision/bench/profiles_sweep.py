"""The profiles sweep: Decide at one rate with more and more people in Redis.

Each size gets its own Redis (the same embedded server, its own data dir,
all pinned to the Redis core like the first) with that many people written
into it (1,000, 10,000, 100,000; 1,000,000 in `full`), and its own `nba
serve` on the 20-candidate catalog of decision/bench/candidates.py, pinned
to the server's core. Then the sizes are measured at one fixed rate in
rounds (measure.in_rounds: a step of each size per round, each round
starting one size later) and each size's steps are pooled: a moment when the
machine stalls falls on every size alike rather than on whichever was being
measured, which on this project's shared VM decided the verdict of a
one-step-per-size sweep. Each step's requests go to a random sample of that
Redis's people. The generated catalog's caps do not bind at these rates, so
the small populations, whose people are decided for several times, are not
served cheaper fallbacks than the large ones.

For each size: the time the load took, Redis's used_memory per person
(what it grew by while the people were written, divided by their number),
and the latency. The target of issue 7: p99 does not grow from the smallest
to the largest population (ratio <= 1.0), to be read with the noise of a
p99: each round's p99 is kept (`p99_parts_ms`), and the report gives the
ratio of each round.
"""

from __future__ import annotations

from decision.bench import candidates, population, procs, redisops
from decision.bench.loadgen import Target
from decision.bench.measure import Measure

CANDIDATES = 20


def run(bench, sizes: tuple[int, ...], rate: float) -> dict:
    p = bench.profile
    rounds = candidates.sweep_rounds(p)
    catalog = bench.tmp / f"catalog-{CANDIDATES}-candidates-profiles.yaml"
    catalog.write_text(candidates.catalog_text(CANDIDATES))
    count = candidates.requests_needed(rate, p, rounds)
    out: dict = {"rate_rps": rate, "placement": candidates.PLACEMENT, "candidates": CANDIDATES, "rounds": rounds,
                 "sizes": []}
    bench.log(f"profiles sweep: {', '.join(f'{n:,}' for n in sizes)} people at {rate:g} requests/s"
              + (f", {rounds} rounds" if rounds > 1 else ""))
    started: dict[str, tuple] = {}  # name -> (size, its Redis, what loading it took)
    sized: candidates.Sized = {}
    redises = []
    try:
        for n in sizes:
            data_dir = bench.tmp / f"profiles-data-{n}"
            redis = procs.embedded_redis(data_dir, bench.layout.redis)
            redises.append((redis, data_dir))
            bench.log(f"  writing {n:,} people to a Redis of their own ...")
            load = redisops.load(redis.url, 0, n, bench.seed)
            waited = redisops.settle(redis.url)
            bench.log(f"  {load['load_s']:.1f} s ({load['profiles_per_s']:,.0f} people/s), "
                      f"{load['bytes_per_profile']:,.0f} bytes of Redis memory per person"
                      + (f"; {waited:.1f} s more for its append-only file rewrite" if waited >= 0.5 else ""))
            try:
                serve = bench.start(procs.nba_serve(bench.layout.server, data_dir, catalog, bench.seed,
                                                    bench.tmp / f"serve-profiles-{n}.log"))
            except procs.ProcessFailed as e:
                out["error"] = str(e)
                return out
            gen = bench.generator(Target("grpc", f"127.0.0.1:{serve.port}",
                                         population.decide_requests(candidates.PLACEMENT, n, bench.seed, count),
                                         channels=bench.channels), bench.layout.generators)
            name = f"{_short(n)} ppl"
            started[name] = (n, redis, load)
            sized[name] = (serve, Measure(name, gen, serve.pid, redis.process.pid if redis.process else None, p,
                                          bench.log, serve.metrics_port))
        for name, s in candidates.measure_sizes(bench, sized, rate).items():
            n, redis, load = started[name]
            s.update(profiles=n, load=load, bytes_per_profile=load["bytes_per_profile"],
                     used_memory=redisops.used_memory(redis.url))
            out["sizes"].append(s)
    finally:
        candidates.retire_sizes(bench, sized)
        for redis, data_dir in redises:
            redis.stop()
            if not bench.keep_files:
                import shutil

                shutil.rmtree(data_dir, ignore_errors=True)  # up to gigabytes of append-only file
    return out


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else \
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)

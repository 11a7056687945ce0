"""The profiles sweep: Decide at one rate as the population in Redis grows.

A second Redis (the same embedded server, its own data dir, pinned like the
first) starts empty; the bench writes the first size's people into it,
starts `nba serve` on it with the 20-candidate catalog of
decision/bench/candidates.py, measures one step at a fixed rate, then writes
more people up to the next size and measures again, and so on (1,000,
10,000, 100,000 people; 1,000,000 in `full`). Each step's requests go to a
random sample of everybody loaded so far. The generated catalog's caps do
not bind at these rates, so the small populations, whose people are decided
for several times, are not served cheaper fallbacks than the large ones.

For each size: the time the load took, Redis's used_memory per person
(what it grew by while that size's people were written, divided by their
number), and the step's latency. The target of issue 7: p99 does not grow
from the smallest to the largest population (ratio <= 1.0), to be read with
the noise of a p99: each step's two halves give two p99s, and their spread
is reported with the ratio.
"""

from __future__ import annotations

from decision.bench import candidates, population, procs, redisops
from decision.bench.loadgen import Target
from decision.bench.measure import Measure

CANDIDATES = 20


def run(bench, sizes: tuple[int, ...], rate: float) -> dict:
    p = bench.profile
    data_dir = bench.tmp / "profiles-data"
    catalog = bench.tmp / f"catalog-{CANDIDATES}-candidates-profiles.yaml"
    catalog.write_text(candidates.catalog_text(CANDIDATES))
    count = candidates.requests_needed(rate, p)
    out: dict = {"rate_rps": rate, "placement": candidates.PLACEMENT, "candidates": CANDIDATES, "sizes": []}
    bench.log(f"profiles sweep: {', '.join(f'{n:,}' for n in sizes)} people at {rate:g} requests/s")
    redis = procs.embedded_redis(data_dir, bench.layout.redis)
    serve = None
    try:
        out["used_memory_empty"] = redisops.used_memory(redis.url)
        loaded = 0
        for n in sizes:
            bench.log(f"  writing people {loaded:,} to {n:,} ...")
            load = redisops.load(redis.url, loaded, n, bench.seed)
            loaded = n
            bench.log(f"  {load['load_s']:.1f} s ({load['profiles_per_s']:,.0f} people/s), "
                      f"{load['bytes_per_profile']:,.0f} bytes of Redis memory per person")
            if serve is None:
                try:
                    serve = bench.start(procs.nba_serve(bench.layout.server, data_dir, catalog, bench.seed,
                                                        bench.tmp / "serve-profiles.log"))
                except procs.ProcessFailed as e:
                    out["error"] = str(e)
                    return out
            gen = bench.generator(Target("grpc", f"127.0.0.1:{serve.port}",
                                         population.decide_requests(candidates.PLACEMENT, n, bench.seed, count),
                                         channels=bench.channels), bench.layout.generators)
            s = Measure(f"{_short(n)} ppl", gen, serve.pid, redis.process.pid if redis.process else None, p,
                        bench.log).at_rate(rate, p.half_s, p.half_warmup_s)
            bench.retire(None, gen)
            s.update(profiles=n, load=load, bytes_per_profile=load["bytes_per_profile"],
                     used_memory=redisops.used_memory(redis.url))
            if not serve.alive():
                s["error"] = f"nba serve exited:\n{serve.tail()}"
                out["sizes"].append(s)
                break
            out["sizes"].append(s)
    finally:
        if serve is not None:
            bench.retire(serve, None)
        redis.stop()
        if not bench.keep_files:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)  # up to gigabytes of append-only file
    return out


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else \
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)

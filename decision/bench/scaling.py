"""Multi-process scaling: Decide's maximum with 1, 2, ... service processes.

For each worker count N the bench starts `nba serve --workers N` (decision/
supervisor.py: N processes on one port, SO_REUSEPORT) joined to its Redis
and population, pins worker i to its own core (CpuLayout.worker_cpus: the
server's core first, the Redis core last), and searches Decide's maximum
sustainable rate as the Decide phase does (the search starts near N times
half of Decide's maximum when that is known). Efficiency is rate(N) / (N x
rate(1)). The service runs the 20-candidate catalog of candidates.py, not
the example one: by this phase the earlier phases have decided for the same
people many times, and the example catalog's caps (6 hero impressions per
person per hour) would turn the later searches into cheap fallbacks; the
generated catalog's caps do not bind, so every count decides alike.

A connection, and every request on it, stays with the worker the kernel
gave it to (by a hash of its addresses), and the generator sends the
same number of requests on each of its connections: each generator opens 16
connections per worker of the largest count (for every count, so that they
compare). An uneven split caps the rate at what the busiest worker can do
(as it would in production with few long-lived clients), which measures the
hash's luck rather than the service: the bench opens new connections, up to
5 times, until the busiest worker has at most 1.25x the connections of the
idlest, and reports the split it measured with.

On a machine with fewer cores than workers + Redis + generator, the workers
share cores with Valkey and the generator, and the curve says more about the
machine than about the service; the report says so.
"""

from __future__ import annotations

from decision.bench import candidates, population, procs
from decision.bench.loadgen import Target
from decision.bench.measure import WARMUP, Measure, Search, warmup_step

CANDIDATES = 20
CONNECTIONS_PER_WORKER = 16
BALANCED = 1.25  # most / fewest connections per worker
BALANCE_ATTEMPTS = 5


def default_counts(cpus: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the core count, and the core count itself."""
    counts, n = [], 1
    while n < cpus:
        counts.append(n)
        n *= 2
    return tuple(counts + [max(1, cpus)])


def run(bench, counts: tuple[int, ...], search: Search, decide_max: float | None) -> dict:
    p = bench.profile
    catalog = bench.tmp / f"catalog-{CANDIDATES}-candidates-scaling.yaml"
    catalog.write_text(candidates.catalog_text(CANDIDATES))
    requests = population.decide_requests(candidates.PLACEMENT, p.population, bench.seed)
    out: dict = {"counts": list(counts), "placement": candidates.PLACEMENT, "candidates": CANDIDATES, "steps": []}
    bench.log(f"scaling: Decide's maximum with {', '.join(map(str, counts))} service process(es)")
    for n in counts:
        cpus = bench.layout.worker_cpus(n)
        try:
            serve = bench.start(procs.nba_serve(cpus[0], bench.data_dir, catalog, bench.seed,
                                                bench.tmp / f"serve-{n}-workers.log", workers=n))
        except procs.ProcessFailed as e:
            out["steps"].append({"workers": n, "error": str(e)})
            continue
        workers = procs.children(serve.pid) if n > 1 else [serve.pid]
        for pid, cores in zip(workers, cpus):
            procs.pin_all_threads(pid, cores)
        target = Target("grpc", f"127.0.0.1:{serve.port}", requests,
                        channels=CONNECTIONS_PER_WORKER * max(counts))
        for attempt in range(1, BALANCE_ATTEMPTS + 1):
            gen = bench.generator(target, bench.layout.generators)
            connections = [procs.connections(pid, serve.port) for pid in workers]
            if max(connections) <= BALANCED * max(1, min(connections)) or attempt == BALANCE_ATTEMPTS:
                break
            bench.log(f"  connections per worker {'/'.join(map(str, connections))}: reconnecting")
            bench.retire(None, gen)
        bench.log(f"  connections per worker: {'/'.join(map(str, connections))}")
        m = Measure(f"{n} wkr", gen, [serve.pid] + [w for w in workers if w != serve.pid], bench.redis_pid, p,
                    bench.log)
        start = 0.6 * decide_max * n if decide_max else search.start_rps * n
        m.step(start / 2, *warmup_step(p), WARMUP)
        found = m.find_max(Search(start, search.growth, search.max_steps, search.refine))
        found.update(workers=n, worker_pids=workers, cpus=cpus, connections_per_worker=connections,
                     connection_attempts=attempt)
        error = bench.retire(serve, gen)
        if error:
            found["error"] = error
        out["steps"].append(found)
    one = next((s.get("max_rps") for s in out["steps"] if s.get("workers") == 1), None)
    for s in out["steps"]:
        s["efficiency"] = s["max_rps"] / (s["workers"] * one) if one and s.get("max_rps") else None
    return out

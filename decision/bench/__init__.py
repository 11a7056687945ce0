"""`nba bench`: Decide latency and throughput measured against their floor,
and issue 7's other targets.

One module per role:

    echo.py            Floor A: a bare gRPC echo server on the service's stack
    floors.py          Floor B: the bare Redis read of one profile
    population.py      synthetic profiles (written with ProfileWriter) and requests
    loadgen.py         the open-loop load generator (scheduled send times)
    measure.py         steps against one server: what it spent, sustained or not, the maximum
    procs.py           processes under test and which core each one runs on
    redisops.py        what the bench itself reads from and writes to Redis
    rewards.py         phase: Reward's maximum
    soak.py            phase: the service's RSS over a long run at half load
    candidates.py      phase: Decide with 10, 20, 200 candidates (and the generated catalogs)
    profiles_sweep.py  phase: Decide with 1,000 to 1,000,000 profiles in Redis
    scaling.py         phase: Decide's maximum with 1, 2, ... service processes
    learner.py         phase: the learner's own benchmark
    run.py             the profiles (smoke, small, full, soak) and the run itself
    report.py          the table on stdout and the JSON written to --out

docs/BENCHMARKS.md says what is measured and how.
"""

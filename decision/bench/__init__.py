"""`nba bench`: Decide latency and throughput measured against their floor.

One module per role:

    echo.py        Floor A: a bare gRPC echo server on the service's stack
    floors.py      Floor B: the bare Redis read of one profile
    population.py  synthetic profiles (written with ProfileWriter) and requests
    loadgen.py     the open-loop load generator (scheduled send times)
    procs.py       processes under test and which core each one runs on
    run.py         the profiles (smoke, small, full) and the run itself
    report.py      the table on stdout and the JSON written to --out

docs/BENCHMARKS.md says what is measured and how.
"""

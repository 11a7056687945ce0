"""Two checkouts' `nba serve` against one floor, at one rate, in rounds.

    python -m decision.bench.ab OLD_TREE [NEW_TREE] [--rate 328] [--rounds 6] [--profile small] [--out AB.json]

`nba bench --compare` sets two results side by side, but each was measured
in its own run, and on a noisy VM two runs of the same commit differ by more
than most changes do. This measures both services in one run instead: the
bench's set-up (decision/bench/run.py: its Valkey with the profile's
population and every global budget spent, the echo server and the Redis
read as the floor, one load generator), then both services started on the
same Valkey and pinned to the server's core, each from its own checkout
(OLD_TREE and NEW_TREE are directories holding the `decision` package, e.g.
`git worktree add /tmp/old <commit>`; NEW_TREE defaults to this checkout).
Each round measures echo, the Redis read, A (OLD_TREE) and B (NEW_TREE) one
after the other at the same rate; the order of A and B alternates between
rounds, so a machine that drifts weighs on both. It prints each round's
p50 and p99 of A and B against that round's floor and the figures pooled
over the rounds, and writes them as JSON with `--out`.

Only one service runs load at a time; the other is idle on the same core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

from decision.bench import procs
from decision.bench.measure import in_rounds, pool
from decision.bench.run import PROFILES, REPO_ROOT, Bench, floor_sum, round_figures


def tree(path: str) -> Path:
    p = Path(path).resolve()
    if not (p / "decision" / "cli.py").is_file():
        raise argparse.ArgumentTypeError(f"{path}: no decision/cli.py there (a checkout of this project?)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decision.bench.ab", description=__doc__.splitlines()[0])
    p.add_argument("old", type=tree, help="checkout of the service A (the one before)")
    p.add_argument("new", type=tree, nargs="?", default=REPO_ROOT, help="checkout of the service B (default: this one)")
    p.add_argument("--rate", type=int, default=328, help="Decide requests per second (default 328)")
    p.add_argument("--rounds", type=int, default=6, help="rounds of echo, Redis read, A, B (default 6)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="small",
                   help="population and step lengths of this bench profile (default small)")
    p.add_argument("--placement", default="home_hero")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.rounds <= 0:
        p.error("--rate and --rounds must be positive")
    result = run(args.old, args.new, args.rate, args.rounds, args.profile, args.placement, print)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
        print(f"written to {args.out}")
    return 0


def run(old: Path, new: Path, rate: int, rounds: int, profile: str, placement: str, log) -> dict:
    prof = PROFILES[profile]
    layout = procs.cpu_layout(None, True)
    trees = {"A": old, "B": new}
    result: dict = {"schema": "nba-bench-ab/1", "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                    "profile": profile, "rate_rps": rate, "trees": {k: str(v) for k, v in trees.items()},
                    "layout": layout.note, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="nba-ab-") as tmp_dir:
        tmp = Path(tmp_dir)
        bench = Bench(prof, layout, tmp, catalog=REPO_ROOT / "examples" / "catalog.yaml", placement=placement,
                      seed=1, channels=1, log=log)
        try:
            bench.load_population()
            echo = bench.start(procs.echo_server(layout.server, tmp / "echo.log"))
            measures = {"echo": bench.grpc_measure("echo", echo, uses_redis=False), "redis": bench.redis_floor()}
            for name, root in trees.items():
                child = procs.nba_serve(layout.server, bench.data_dir, bench.catalog, bench.seed, tmp / f"{name}.log")
                # Its code from its own checkout: no current directory first on sys.path, the tree instead.
                child.env = {**(child.env or {}), "PYTHONSAFEPATH": "1", "PYTHONPATH": str(root)}
                measures[name] = bench.grpc_measure(name, bench.start(child))
            taken = in_rounds(measures, rate, rounds, prof.half_s, prof.half_warmup_s,
                              order=lambda k: ("echo", "redis", *("AB" if k % 2 == 0 else "BA")))
            for k in range(rounds):
                r = {x: round_figures(taken["echo"][k][1], taken["redis"][k][1], taken[x][k][1], bench.seed)
                     for x in "AB"}
                for x in "AB":
                    r[x]["cpu_us_per_request"] = taken[x][k][0].get("server_cpu_us_per_request")
                    r[x]["steal_cpu"] = taken[x][k][0].get("steal_cpu")
                    r[x]["pipeline_p99_ms"] = (taken[x][k][0].get("pipeline_ms") or {}).get("p99")
                result["rounds"].append(r)
            pooled = {name: pool(steps) for name, steps in taken.items()}
            result["floor"] = floor_sum(pooled["echo"][1], pooled["redis"][1], bench.seed)
            for name in measures:
                result[name] = pooled[name][0]
        finally:
            bench.close()
    result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    log(report(result))
    return result


def report(result: dict) -> str:
    floor = result["floor"]["latency_ms"]
    lines = [f"A: {result['trees']['A']}", f"B: {result['trees']['B']}",
             f"at {result['rate_rps']} requests/s, {len(result['rounds'])} rounds (latency in ms, ratio to the "
             "round's floor: echo + Redis read)", "",
             "  round  floor p50  A p50   ratio  B p50   ratio  floor p99  A p99   ratio  B p99   ratio  "
             "A cpu us  B cpu us",
             "  -----  ---------  -----  -----  -----  -----  ---------  -----  -----  -----  -----  "
             "--------  --------"]
    for k, r in enumerate(result["rounds"], start=1):
        a, b = r["A"], r["B"]
        lines.append(f"  {k:5d}  {a['floor_p50_ms']:9.2f}  {a['decide_p50_ms']:5.2f}  {_x(a['p50_ratio'])}  "
                     f"{b['decide_p50_ms']:5.2f}  {_x(b['p50_ratio'])}  {a['floor_p99_ms']:9.2f}  "
                     f"{a['decide_p99_ms']:5.2f}  {_x(a['p99_ratio'])}  {b['decide_p99_ms']:5.2f}  "
                     f"{_x(b['p99_ratio'])}  {_us(a['cpu_us_per_request'])}  {_us(b['cpu_us_per_request'])}")
    lower = sum(r["B"]["decide_p50_ms"] < r["A"]["decide_p50_ms"] for r in result["rounds"])
    lines += ["", f"  pooled: floor p50 {floor['p50']:.2f}, p99 {floor['p99']:.2f}"]
    for x in "AB":
        lat = result[x]["latency_ms"]
        lines.append(f"  {x}: p50 {lat['p50']:.2f} ({lat['p50'] / floor['p50']:.2f}x)  p99 {lat['p99']:.2f} "
                     f"({lat['p99'] / floor['p99']:.2f}x)  p99.9 {lat['p99.9']:.2f}  "
                     f"cpu {_us(result[x].get('server_cpu_us_per_request')).strip()} us/request"
                     + (f"  inside nba serve: p50 {inside['p50']:.2f} p99 {inside['p99']:.2f}"
                        if (inside := result[x].get("pipeline_ms")) else ""))
    lines.append(f"  B's p50 below A's in {lower} of {len(result['rounds'])} rounds")
    steal = max((r[x].get("steal_cpu") or 0.0) for r in result["rounds"] for x in "AB")
    if steal > 0.10:
        lines.append(f"  note: up to {steal:.2f} cores of CPU steal in a step: the host's figures as much as the "
                     "services'")
    return "\n".join(lines)


def _x(ratio: float | None) -> str:
    return f"{ratio:4.2f}x" if ratio is not None else "    -"


def _us(v: float | None) -> str:
    return f"{v:8.0f}" if v is not None else "       -"


if __name__ == "__main__":
    sys.exit(main())

"""A flame graph of `nba serve` under open-loop Decide load (py-spy).

    python -m decision.bench.flame [--rate 300] [--seconds 20] [--out docs/flame-decide.svg]

The bench's own set-up (decision/bench/run.py): its Redis with a `small`
population and every global budget spent, `nba serve` on the example catalog
pinned to the server's core, one load generator at a fixed rate. py-spy
(`pip install py-spy`; not a dependency of the service) samples the service
for `--seconds` after a 3-second warm-up, at 500 Hz, and writes an SVG flame
graph (or py-spy's raw collapsed stacks with `--raw`). It also prints the
service's CPU time per request over the sampled window.

What py-spy cannot show: code without Python frames (grpc's Cython core,
uvloop, protobuf's C, syscalls) is charged to the innermost Python frame,
which for the event loop is `Runner.run`; docs/BENCHMARKS.md ("Where the time
goes") says how that part was measured instead.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from decision.bench import procs
from decision.bench.loadgen import Step, Target, summarize
from decision.bench.run import PROFILES, REPO_ROOT, Bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decision.bench.flame", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=300.0, help="Decide requests per second (default 300)")
    p.add_argument("--seconds", type=int, default=20, help="sampling time (default 20)")
    p.add_argument("--out", type=Path, default=Path("flame-decide.svg"))
    p.add_argument("--raw", action="store_true", help="write py-spy's collapsed stacks instead of an SVG")
    p.add_argument("--catalog", type=Path, default=REPO_ROOT / "examples" / "catalog.yaml")
    p.add_argument("--placement", default="home_hero")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        p.error("--rate and --seconds must be positive")
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("nba bench flame: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    layout = procs.cpu_layout(None, True)
    with tempfile.TemporaryDirectory(prefix="nba-flame-") as tmp:
        bench = Bench(PROFILES["small"], layout, Path(tmp), catalog=args.catalog, placement=args.placement,
                      seed=1, channels=1, log=print)
        try:
            bench.load_population()
            service = bench.start(procs.nba_serve(layout.server, bench.data_dir, args.catalog, 1,
                                                  Path(tmp) / "serve.log"))
            gen = bench.generator(Target("grpc", f"127.0.0.1:{service.port}", bench.requests, channels=1),
                                   layout.generators)
            gen.run(Step(args.rate, 3, 1))  # warm-up
            record = subprocess.Popen(
                [spy, "record", "-p", str(service.pid), "-d", str(args.seconds), "-r", "500", "--nonblocking",
                 "-o", str(args.out), *(["-f", "raw"] if args.raw else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            before = procs.cpu_seconds(service.pid)
            s = summarize(gen.run(Step(args.rate, args.seconds, 0)))
            after = procs.cpu_seconds(service.pid)
            _, err = record.communicate(timeout=60)
            if record.returncode != 0:
                print(f"nba bench flame: py-spy failed: {err.decode(errors='replace').strip()}", file=sys.stderr)
                return 1
        finally:
            bench.close()
    print(f"{s['achieved_rps']:.0f} Decide/s, p50 {s['latency_ms']['p50']:.2f} ms, p99 {s['latency_ms']['p99']:.2f} ms, "
          f"{(after - before) / max(1, s['ok']) * 1e6:.0f} us of service CPU per request; flame graph: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

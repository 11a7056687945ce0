"""Learning demo: watch a running service learn what two segments want.

    nba serve --catalog tests/data/learning.yaml --allow-as-of --data-dir /tmp/nba-demo
    python -m decision.learning.demo --data-dir /tmp/nba-demo

Against the service at --target: loads 400 people (even: segment a, odd:
segment b), then in rounds two simulated hours apart sends decisions for
random people (`as_of`: the simulated time), clicks with the population's
known preferences (a clicks offer_x 60% of the time, b offer_y 60%,
anything else 10%) through the Reward RPC, and runs `nba learn --once`
between rounds. Prints each arm's click rate per round: the uniform
holdout stays near 0.225, the VW champion climbs towards 0.6 as its
snapshots are hot-swapped in (model version in the last column).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "tests" / "data" / "learning.yaml"
CLICK = {("a", "offer_x"): 0.6, ("b", "offer_y"): 0.6}
PEOPLE = 400
ROUND_MS = 2 * 3_600_000


async def _load_people(args, start_ms: int) -> None:
    from decision.cli import _redis
    from decision.store.redis_store import ProfileDocument, ProfileWriter

    async with _redis(args) as redis:
        writer = ProfileWriter(redis)
        for i in range(PEOPLE):
            await writer.write(ProfileDocument(
                key=f"pid:demo{i:03d}", attributes=MappingProxyType({}),
                segments=MappingProxyType({"a" if i % 2 == 0 else "b": start_ms - 86_400_000}),
                consent=MappingProxyType({"marketing": "granted"}), links=(), events=()))


def _ts(ms: int):
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromMilliseconds(ms)
    return t


async def _round(stub, rng: np.random.Generator, n: int, start_ms: int) -> dict[str, list]:
    from decision.nba.v1 import decision_pb2 as pb

    by_arm: dict[str, list] = {}
    for i in range(n):
        person = int(rng.integers(PEOPLE))
        segment = "a" if person % 2 == 0 else "b"
        at = start_ms + i * 1000
        resp = await stub.Decide(pb.DecideRequest(
            placement="hero", identity=pb.Identity(type=pb.IDENTITY_TYPE_PROFILE, id=f"demo{person:03d}"),
            as_of=_ts(at)))
        if not resp.items:
            continue
        clicked = rng.random() < CLICK.get((segment, resp.items[0].offer_id), 0.1)
        by_arm.setdefault(resp.arm, []).append((clicked, resp.model_version))
        if clicked:
            await stub.Reward(pb.RewardRequest(decision_id=resp.decision_id, event_type="click",
                                               event_id=f"demo-{resp.decision_id}", occurred_at=_ts(at + 500)))
    return by_arm


async def _main(args) -> int:
    import grpc

    from decision.nba.v1 import decision_pb2_grpc as pb_grpc

    start = (time.time_ns() // 1_000_000 // ROUND_MS + 1) * ROUND_MS  # simulated time starts ahead of the clock
    await _load_people(args, start)
    rng = np.random.default_rng(args.seed)
    learn = [sys.executable, "-m", "decision.cli", "learn", "--once", "--catalog", str(args.catalog),
             "--lateness", "0"]
    learn += ["--redis-url", args.redis_url] if args.redis_url else ["--data-dir", args.data_dir]
    print(f"{'round':>5}  {'champion':>8}  {'holdout':>8}  champion model")
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        for r in range(args.rounds):
            by_arm = await _round(stub, rng, args.decisions, start + r * ROUND_MS)

            def rate(arm: str) -> str:
                rows = by_arm.get(arm, [])
                return f"{sum(c for c, _ in rows) / len(rows):.3f}" if rows else "-"

            versions = sorted({v for _, v in by_arm.get("champion", [])})
            print(f"{r + 1:>5}  {rate('champion'):>8}  {rate('holdout'):>8}  {', '.join(versions)}", flush=True)
            out = subprocess.run(learn, capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            await asyncio.sleep(args.swap_wait)  # replicas swap on the pub/sub notice (polling: within 1 s)
    return 0


def main(argv: list[str] | None = None) -> int:
    from decision.store.embedded import DEFAULT_DATA_DIR

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default=os.environ.get("NBA_TARGET", "127.0.0.1:50051"))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--catalog", default=str(CATALOG))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--decisions", type=int, default=300, help="decisions per round")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--swap-wait", type=float, default=0.5)
    return asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())

"""Time Forget of one person among N decision rows and N reward rows
(docs/SECURITY.md, "Measured"):

    python -m tests.bench_forget 100000

Runs its own embedded server in a temporary directory (memory: about
2.3 KB per decision row). The person has one decision in 10,000; the
others belong to 50,000 other people.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from decision.clock import ManualClock
from decision.forget import ForgetOrder, Forgetter
from decision.privacy import Pseudonymizer
from decision.store import keys
from decision.store.embedded import EmbeddedRedis
from decision.store.redis_store import connect


def _compact(d: dict) -> str:
    return json.dumps(d, separators=(",", ":"), sort_keys=True)


# A decision row of realistic size: 10 allowed actions with their features.
ACTIONS = [
    {"offer": f"offer_{i}", "content": f"content_{i}", "channel": "web", "p": 0.1, "score": 0.1,
     "features": {"offer": {"id": f"offer_{i}", "value": 10.0, "margin": 5.0, "tag_x": 1.0},
                  "content": {"id": f"c{i}"}, "channel": {"id": "web"}}}
    for i in range(10)
]


async def main(n: int) -> None:
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="nba-bench-forget-")), appendonly=False).start()
    redis = connect(server.url)
    pseudonyms = Pseudonymizer(b"bench")
    try:
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            pipe = redis.pipeline(transaction=False)
            for i in range(start, min(n, start + 1000)):
                pk = "pid:target" if i % 10_000 == 0 else f"pid:p{i % 50_000}"
                did = f"D{i:025d}"
                row = {"v": 1, "decision_id": did, "person": pseudonyms.person(pk), "actions": ACTIONS,
                       "context": {"user": {"age": 33}, "context": {"page": "home"}}, "placement": "home_hero",
                       "items": [{"rank": 1, "action": 3, "p": 0.5, "score": 0.2}], "request_id": ""}
                pipe.xadd(keys.DECISION_STREAM, {"r": _compact(row)})
                pipe.xadd(keys.REWARD_STREAM, {"r": _compact({"v": 1, "decision_id": did, "event_id": f"e{i}",
                                                              "event_type": "click", "reward": 1.0})})
            await pipe.execute()
        size = await redis.memory_usage(keys.DECISION_STREAM)
        print(f"loaded {n} rows per stream in {time.perf_counter() - t0:.1f} s; decision stream {size / 1e6:.0f} MB")
        forgetter = Forgetter(redis, pseudonyms, ManualClock(ms=1_795_017_600_000))
        t0 = time.perf_counter()
        result = await forgetter.forget(ForgetOrder("pid:target", "bench"), caller="bench")
        print(f"forget: {time.perf_counter() - t0:.2f} s, {result.decision_log_rows} decision rows, "
              f"{result.reward_log_rows} reward rows deleted")
    finally:
        await redis.aclose()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))

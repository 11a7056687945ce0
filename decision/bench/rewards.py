"""Reward throughput: the maximum sustainable rate of the Reward RPC.

Rewards for decisions the service made earlier in the run: the bench reads
the newest logged decisions of the placement from the decision stream (with
the service's log reader; a short Decide step makes some first when there
are too few), and sends one Reward per request, open loop, to the same
`nba serve` the Decide phase measured: 30% clicks (reward 1, which also
writes the person's positive-reward mark), 70% dismissals (reward 0), each
with its own event id, so each is counted, not answered as a duplicate. A
decision gets several events when the steps need more rewards than there are
decisions, as a decision does in production (an impression, then a click).
The maximum is searched as Decide's is; the target of issue 7: Reward at
least as fast as Decide (ratio >= 1.0).
"""

from __future__ import annotations

import math
import random

from decision.bench import redisops
from decision.bench.loadgen import REWARD_METHOD, Target
from decision.bench.measure import WARMUP, Measure, Search, warmup_step
from decision.nba.v1 import decision_pb2 as pb

CLICK_SHARE = 0.3
MIN_DECISIONS = 200
MAX_DECISIONS = 20_000  # read from the stream at most
MAX_PAYLOADS = 600_000  # past this the requests repeat, and repeats are answered as duplicates


def reward_requests(decision_ids: list[str], count: int, seed: int) -> tuple[bytes, ...]:
    rng = random.Random(seed)
    return tuple(pb.RewardRequest(decision_id=decision_ids[k % len(decision_ids)],
                                  event_type="click" if rng.random() < CLICK_SHARE else "dismiss",
                                  event_id=f"bench-reward-{k:07d}").SerializeToString()
                 for k in range(count))


def requests_needed(search: Search, profile) -> int:
    """An upper bound of the requests a search sends (every step up, then the bisection)."""
    rates = [search.start_rps * search.growth ** k for k in range(search.max_steps)]
    top = rates[-1] if rates else search.start_rps
    total = sum(rates) + search.refine * top + search.start_rps / 2
    return math.ceil(total * max(profile.step_s, warmup_step(profile)[0]))


def run(bench, search: Search, decide_rate: float) -> dict:
    """`decide_rate`: the rate of the Decide step that makes decisions when
    the stream has too few."""
    p = bench.profile
    service = bench.main_service()
    if service is None:
        return {"error": bench.service_error() or "nba serve did not start"}
    ids = _decision_ids(bench)
    if len(ids) < MIN_DECISIONS:
        duration = max(2.0, 2 * MIN_DECISIONS / decide_rate)
        bench.log(f"reward: {len(ids)} decisions logged; deciding for {duration:.0f} s at {decide_rate:g}/s first")
        bench.main_measure().step(decide_rate, duration, 0.0, "  (decisions to reward)")
        ids = _decision_ids(bench)
    if not ids:
        return {"error": "no logged decisions to reward"}
    count = min(MAX_PAYLOADS, requests_needed(search, p))
    bench.log(f"reward: {count:,} rewards for {len(ids):,} decisions of {bench.placement}")
    gen = bench.generator(Target("grpc", f"127.0.0.1:{service.port}", reward_requests(ids, count, bench.seed),
                                 method=REWARD_METHOD, channels=bench.channels), bench.layout.generators)
    m = Measure("reward", gen, service.pid, bench.redis_pid, p, bench.log)
    m.step(search.start_rps / 2, *warmup_step(p), WARMUP)
    found = m.find_max(search)
    bench.retire(None, gen)
    found.update(decisions=len(ids), requests=count, click_share=CLICK_SHARE,
                 repeated_requests=max(0, gen.payloads_used - count))
    return found


def _decision_ids(bench) -> list[str]:
    records = redisops.recent_decisions(bench.redis.url, bench.placement, MAX_DECISIONS)
    # One-item decisions: a Reward names the item only when there are several.
    return [r.decision_id for r in records if len(r.items) == 1]

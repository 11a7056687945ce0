"""Benchmark (not a test): the learner's joined examples per second.

    nba learn --bench [--bench-decisions 20000] [--bench-actions 20]
    python -m decision.learning.bench [--decisions N] [--actions K]

A private embedded server in a temporary directory gets N logged decisions
of one VW placement with K actions each, written as the service writes them:
records v2 referencing the catalog version's feature table, which is
published to the server first (decision/feature_tables.py). Features are
shaped like the service's: 8 user + 4 context features per decision; offer
(5), content (2) and channel (1) features per action from the bench catalog
through decision/features.py; the catalog's default interactions. About a
third of the decisions get a reward. Then one learner (`--once`) reads both
streams, decodes, joins, trains, snapshots and acknowledges everything; the
figure is joined decisions (= examples: one item each) per second of that
run, with the time per phase. `--train-process` as `nba learn`'s: with two
cores or more (auto) VW learns in a training process of its own
(decision/learning/trainproc.py), pinned to one core while the learner and
Redis share the other; `off` is the one-process learner on one core, Redis
on the other. It prints each process's CPU over the run. For comparison
it also times VW alone on the same examples, from pre-built text (parse ->
learn) and as the learner calls it (VWPolicy.learn_interned: shared text,
the parsed actions reused -> learn), measures the memory a pending decision
holds and the bytes a decision record takes in the stream (v2, and the same
record with its features inline as v1 wrote it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np

from bandits.bench_learn import shared_features
from decision.feature_tables import FeatureTables, TablePublisher
from decision.records import DecisionRecord, LoggedAction, LoggedItem, RewardRecord
from decision.store import keys

T0 = 1_767_225_600_000


def catalog_text(actions: int) -> str:
    offers = "\n".join(
        f"  - id: o{j}\n    value: {10 + j}\n    margin: 0.2\n    tags: [t{j % 4}]\n"
        f"    attributes: {{category: k{j % 5}}}\n"
        f"    contents: [{{id: c{j}, channel: web, template: tpl{j % 3}}}]"
        for j in range(actions))
    return f"""version: 1
channels: [{{id: web}}]
policies:
  - {{name: vw_bench, kind: vw}}
offers:
{offers}
placements:
  - id: bench
    channels: [web]
    policy: vw_bench
    reward: {{events: {{click: 1}}, window: 60s}}
"""


def logs(n: int, actions: int, catalog_version: str, seed: int = 0) -> tuple[list[str], list[str]]:
    """(decision JSON, reward JSON) as the service writes them: records v2
    whose actions reference `catalog_version`'s feature table."""
    rng = np.random.default_rng(seed)
    acts = tuple(LoggedAction(f"o{j}", f"c{j}", "web", None, 1.0 / actions, 0.0) for j in range(actions))
    decisions, rewards = [], []
    for i in range(n):
        ts = T0 + i * 100
        context = shared_features(rng, i)
        a = int(rng.integers(actions))
        did = f"bench{i:08d}"
        decisions.append(DecisionRecord(
            decision_id=did, ts_ms=ts, placement="bench", arm="default", policy="vw_bench", model_version="bench",
            catalog_version=catalog_version, person="p" * 32, anonymous=False, assignment="person", context=context,
            actions=acts, items=(LoggedItem(1, a, 1.0 / actions, 0.0),), fallback=False, join_window_s=60,
        ).to_json())
        if rng.random() < 0.3:
            rewards.append(RewardRecord(f"e{i}", did, ts + 1000, ts + 1000, "bench", "default", "vw_bench",
                                        f"o{a}", 1, "click", None, 1.0).to_json())
    # a last decision far ahead moves the event-time watermark past every window
    last = DecisionRecord.from_json(decisions[-1])
    decisions.append(replace(last, decision_id="tick", ts_ms=last.ts_ms + 86_400_000).to_json())
    return decisions, rewards


def _own_cores(server, learner) -> None:
    """With two cores or more, the learner gets them, not a share of them
    with the rest of the machine: the one-process learner (this process) one
    core and the Redis server the other; a learner with a training process
    one core for that process (the slower side: VW) and the other for this
    one and the Redis server (which answers a read per 1,000 entries here)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or server.process is None:
        return
    from decision.bench.procs import pin_all_threads

    if learner.process is not None:
        pin_all_threads(learner.process.process.pid, [cpus[-1]])
        pin_all_threads(server.process.pid, [cpus[0]])
    else:
        pin_all_threads(server.process.pid, [cpus[-1]])
    os.sched_setaffinity(0, [cpus[0]])


async def _bench(decisions: int, actions: int, train_process: str = "auto") -> dict:
    from decision.learning.learner import Learner, LearnerConfig, load_learner_catalog
    from decision.store.embedded import EmbeddedRedis
    from decision.store.redis_store import connect

    with tempfile.TemporaryDirectory(prefix="nba-learn-bench-") as tmp:
        catalog = Path(tmp) / "catalog.yaml"
        catalog.write_text(catalog_text(actions))
        server = await asyncio.to_thread(EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start)
        redis = connect(server.url, timeout_s=30)
        try:
            loaded = load_learner_catalog(catalog)
            await TablePublisher(redis).publish(loaded)  # as the service does at catalog load
            dec, rew = logs(decisions, actions, loaded.version)
            for stream, rows in ((keys.DECISION_STREAM, dec), (keys.REWARD_STREAM, rew)):
                for i in range(0, len(rows), 2000):
                    pipe = redis.pipeline(transaction=False)
                    for r in rows[i:i + 2000]:
                        pipe.xadd(stream, {"r": r})
                    await pipe.execute()
            learner = Learner(redis, LearnerConfig(catalog=catalog, lateness_s=0, snapshot_every=10_000,
                                                   snapshot_seconds=3600, batch=1000, train_process=train_process))
            _own_cores(server, learner)
            await learner.start()
            from decision.bench.procs import cpu_seconds

            train_on = learner.process is not None
            train_pid = learner.process.process.pid if train_on else None
            redis_pid = server.process.pid if server.process is not None else None
            cpu0, train_cpu0, redis_cpu0 = time.process_time(), cpu_seconds(train_pid), cpu_seconds(redis_pid)
            t0 = time.perf_counter()
            await learner.run(once=True)
            elapsed = time.perf_counter() - t0
            cpu = {"learner": time.process_time() - cpu0,
                   "training": cpu_seconds(train_pid) - train_cpu0 if train_on else None,
                   "redis": cpu_seconds(redis_pid) - redis_cpu0}
            counters, timings = learner.counters, learner.timings
            vw_only, vw_reused = _vw_only(learner, dec[:5000])
            pending_bytes = _pending_bytes(dec[:2000], learner.tables)
            record_bytes = _record_bytes(dec[:1000], learner.tables)
        finally:
            await redis.aclose()
            await asyncio.to_thread(server.stop)
    return {"decisions": decisions, "actions": actions, "elapsed_s": elapsed, "joined": counters["joined"],
            "examples": counters["examples"], "per_s": counters["joined"] / elapsed,
            "timings": dict(timings), "rewards_attached": counters["rewards_attached"],
            "train_process": train_on, "cpu_s": cpu,
            "checkpoints": counters["checkpoints"], "vw_only_per_s": vw_only, "vw_reused_per_s": vw_reused,
            "pending_bytes": pending_bytes,
            "record_bytes": record_bytes}


def _vw_only(learner, rows: list[str]) -> tuple[float, float]:
    """VW's examples/s on the run's model and these records' examples: from
    pre-built text (parse -> learn), and as the learner trains them (its
    parsed actions reused: learn_interned, shared text and all)."""
    from decision.learning.examples import decode_decision, item_examples

    from bandits.vw import VWPolicy

    m = next(iter(learner.trainer.models.values()))
    policy = VWPolicy.load(m.policy.save())  # here, even when the learner's model is in its training process
    examples = [item_examples(decode_decision(raw, learner.tables))[0] for raw in rows]
    texts = [policy.example(ex.context, ex.actions, ex.chosen, ex.probability, 0.0) for ex in examples]
    t0 = time.perf_counter()
    for text in texts:
        policy.learn_text(text)
    text_per_s = len(texts) / (time.perf_counter() - t0)
    learn = policy.learn_interned
    t0 = time.perf_counter()
    for ex in examples:
        learn(ex.context, ex.actions, ex.chosen, ex.probability, 0.0)
    return text_per_s, len(examples) / (time.perf_counter() - t0)


def _pending_bytes(rows: list[str], tables: FeatureTables) -> float:
    """Memory per pending decision (the tables and interned Actions are
    shared by all and loaded before the measurement)."""
    from decision.learning.examples import decode_decision
    from decision.learning.join import Joiner

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    joiner = Joiner()
    for i, raw in enumerate(rows):
        joiner.add_decision(decode_decision(raw, tables), f"{i}-0")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return size / len(rows)


def _record_bytes(rows: list[str], tables: FeatureTables) -> tuple[float, float]:
    """Mean bytes of a decision record: as logged (v2), and with its
    features inline (what v1 logged for the same decision)."""
    v2 = sum(len(raw.encode()) for raw in rows) / len(rows)
    v1 = sum(len(tables.resolve(DecisionRecord.from_json(raw)).to_json().encode()) for raw in rows) / len(rows)
    return v2, v1


def run_bench(decisions: int = 20_000, actions: int = 20, train_process: str = "auto") -> int:
    from decision.learning.learner import tune_gc

    tune_gc()  # as `nba learn` does
    result = asyncio.run(_bench(decisions, actions, train_process))
    t = result["timings"]
    where = ("on two cores: the learner and its training process" if result["train_process"]
             else "on one core: one process")
    print(f"learner: {result['joined']:,} joined decisions ({result['examples']:,} examples, {actions} actions each, "
          f"{result['rewards_attached']:,} rewards) in {result['elapsed_s']:.2f}s = "
          f"{result['per_s']:,.0f} joined examples/s {where}")
    total = sum(t.values()) or 1.0
    # with a training process, "train" is the learner's side (routing, queueing, waiting on a full pipe) and
    # "train_wait" the checkpoints' wait for the training process to catch up
    for phase in ("read", "decode_join", "train", "train_wait", "checkpoint"):
        if phase == "train_wait" and not result["train_process"]:
            continue
        print(f"  {phase:<12} {t.get(phase, 0.0):6.2f}s  {1e6 * t.get(phase, 0.0) / max(result['joined'], 1):6.1f} "
              f"us/example  {100 * t.get(phase, 0.0) / total:4.0f}%")
    cpu = result["cpu_s"]
    busy = f"learner {cpu['learner']:.2f}s ({cpu['learner'] / result['elapsed_s']:.0%} of the run)"
    if cpu["training"] is not None:
        busy += f", training process {cpu['training']:.2f}s ({cpu['training'] / result['elapsed_s']:.0%})"
    print(f"CPU: {busy}, Redis {cpu['redis']:.2f}s ({cpu['redis'] / result['elapsed_s']:.0%})")
    print(f"VW alone (pre-built text -> parse -> learn): {result['vw_only_per_s']:,.0f} examples/s")
    print(f"VW as the learner calls it (shared text, parsed actions reused -> learn): "
          f"{result['vw_reused_per_s']:,.0f} examples/s")
    print(f"memory per pending decision: {result['pending_bytes'] / 1024:.1f} KiB")
    v2, v1 = result["record_bytes"]
    print(f"decision record: {v2:,.0f} bytes (v2, features by reference); {v1:,.0f} bytes with the features inline "
          f"(v1): {v1 / v2:.1f}x smaller")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--decisions", type=int, default=20_000)
    p.add_argument("--actions", type=int, default=20)
    p.add_argument("--train-process", choices=("auto", "on", "off"), default="auto")
    args = p.parse_args(argv)
    return run_bench(args.decisions, args.actions, args.train_process)


if __name__ == "__main__":
    raise SystemExit(main())

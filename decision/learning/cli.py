"""`nba learn` and `nba models` (registered by decision/cli.py).

    nba learn [--once] [--snapshot-every N] [--snapshot-seconds T] [--clock event|real] ...
    nba learn --bench
    nba models list
    nba models show PLACEMENT ARM
    nba models rollback PLACEMENT ARM VERSION
    nba models graduate PLACEMENT ARM      apprentice arm -> its learned policy
    nba models demote PLACEMENT ARM        back to the baseline

Imports stay inside the commands: `nba --help` must not load VW.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path


def add_parsers(sub, redis_args: argparse.ArgumentParser) -> None:
    ln = sub.add_parser("learn", parents=[redis_args],
                        help="run the learner: join rewards, train, publish model snapshots (docs/LEARNING.md)")
    ln.add_argument("--catalog", help="catalog YAML (default: NBA_CATALOG or examples/catalog.yaml)")
    ln.add_argument("--snapshot-every", type=int, default=10_000, metavar="N", help="snapshot every N examples")
    ln.add_argument("--snapshot-seconds", type=float, default=30.0, metavar="T",
                    help="and at least every T seconds while examples arrive")
    ln.add_argument("--clock", choices=("event", "real"), default="event",
                    help="join windows close on event time (newest time in the logs; simulations) or wall time "
                         "(production: windows close even when traffic stops)")
    ln.add_argument("--lateness", type=float, default=5.0, metavar="S",
                    help="seconds the watermark trails the clock (reward write delays, replica clock skew)")
    ln.add_argument("--once", action="store_true", help="drain what the logs hold, snapshot, exit")
    ln.add_argument("--learn-from", choices=("own", "all_arms"),
                    help="override every placement's learn_from")
    ln.add_argument("--batch", type=int, default=1000, help="stream entries per read")
    ln.add_argument("--keep-versions", type=int, default=20, help="model versions kept per model")
    ln.add_argument("--seed", type=int, default=0, help="VW seed of new models")
    ln.add_argument("--reset", action="store_true",
                    help="drop the checkpoint and consumer groups: retrain new lineages from the streams' start")
    ln.add_argument("--train-process", choices=("auto", "on", "off"), default="auto",
                    help="VW learns in a process of its own, overlapping the reading and joining "
                         "(auto: with 2 cores or more)")
    ln.add_argument("--bench", action="store_true",
                    help="measure joined examples/s on synthetic logs in a private server, then exit")
    ln.add_argument("--bench-decisions", type=int, default=20_000)
    ln.add_argument("--bench-actions", type=int, default=20)
    ln.set_defaults(func=cmd_learn)

    md = sub.add_parser("models", help="model versions: list, show, rollback, graduate (docs/LEARNING.md)")
    msub = md.add_subparsers(dest="models_command")
    md.set_defaults(func=cmd_models, models_command="list")
    ml = msub.add_parser("list", parents=[redis_args], help="every model: served version, learning health")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_models)
    ms = msub.add_parser("show", parents=[redis_args], help="one model's versions, apprentice state, events")
    ms.add_argument("placement")
    ms.add_argument("arm")
    ms.add_argument("--json", action="store_true")
    ms.set_defaults(func=cmd_models)
    mr = msub.add_parser("rollback", parents=[redis_args], help="serve an older version (the learner continues "
                                                                  "from it)")
    mr.add_argument("placement")
    mr.add_argument("arm")
    mr.add_argument("version", type=int)
    mr.set_defaults(func=cmd_models)
    for name, text in (("graduate", "switch an apprentice arm to its learned policy"),
                       ("demote", "switch an apprentice arm back to its baseline")):
        mg = msub.add_parser(name, parents=[redis_args], help=text)
        mg.add_argument("placement")
        mg.add_argument("arm")
        mg.add_argument("--catalog", help="catalog YAML (default: NBA_CATALOG or examples/catalog.yaml)")
        mg.add_argument("--reason", default="by command")
        mg.set_defaults(func=cmd_models)


def _catalog_path(args: argparse.Namespace) -> Path:
    from decision.server import default_catalog_path

    return Path(args.catalog) if getattr(args, "catalog", None) else default_catalog_path()


# --- nba learn -------------------------------------------------------------------------

def cmd_learn(args: argparse.Namespace) -> int:
    from decision.cli import _redis, _run
    from decision.errors import CatalogError

    if args.bench:
        from decision.learning.bench import run_bench

        return run_bench(decisions=args.bench_decisions, actions=args.bench_actions,
                         train_process=args.train_process)

    from decision.learning.learner import Learner, LearnerBusy, LearnerConfig, load_learner_catalog, tune_gc

    path = _catalog_path(args)
    try:
        catalog = load_learner_catalog(path)
    except CatalogError as e:
        print("nba: the catalog has errors; not learning:", file=sys.stderr)
        for err in e.errors:
            print("  " + err, file=sys.stderr)
        return 2
    config = LearnerConfig(catalog=path, snapshot_every=args.snapshot_every, snapshot_seconds=args.snapshot_seconds,
                           clock=args.clock, lateness_s=args.lateness, batch=args.batch,
                           keep_versions=max(1, args.keep_versions), learn_from=args.learn_from, seed=args.seed,
                           reset=args.reset, train_process=args.train_process)

    tune_gc()

    async def run() -> int:
        async with _redis(args) as redis:
            learner = Learner(redis, config, catalog=catalog)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            started = time.monotonic()
            try:
                counters = await learner.run(once=args.once, stop=stop)
                status = learner.status()
            except LearnerBusy as e:
                print(f"nba: {e}", file=sys.stderr)
                return 1
            finally:
                learner.shutdown()
            elapsed = time.monotonic() - started
            print(f"learned {counters['examples']:,} example(s) from {counters['joined']:,} joined decision(s) "
                  f"in {elapsed:.1f}s; {status['pending']:,} decision(s) wait for their window "
                  f"(watermark {_when(status['watermark_ms'])})")
            for mid, m in status["models"].items():
                print(f"  {mid}: v{m['version']}  {m['examples']:,} examples  loss {_num(m['average_loss'])}")
            return 0

    return _run(run())


# --- nba models ------------------------------------------------------------------------

def cmd_models(args: argparse.Namespace) -> int:
    from decision.cli import _redis, _run

    command = args.models_command or "list"
    if not hasattr(args, "redis_url"):  # bare `nba models`
        args.redis_url, args.data_dir = None, str(_default_data_dir())
        args.json = False

    async def run() -> int:
        from decision.store.models import ModelStore

        async with _redis(args) as redis:
            store = ModelStore(redis)
            if command == "list":
                return await _list(redis, store, args)
            if command == "show":
                return await _show(redis, store, args)
            if command == "rollback":
                try:
                    await store.rollback(args.placement, args.arm, args.version)
                except LookupError as e:
                    print(f"nba: {e}", file=sys.stderr)
                    return 1
                print(f"{args.placement}:{args.arm}: serving v{args.version}; replicas swap within a second, "
                      f"the learner continues from v{args.version}")
                return 0
            return await _switch(store, args, command)

    return _run(run())


def _default_data_dir():
    from decision.store.embedded import DEFAULT_DATA_DIR

    return DEFAULT_DATA_DIR


async def _checkpoint(redis) -> dict:
    from decision.store.models import CHECKPOINT

    raw = await redis.get(CHECKPOINT)
    return json.loads(raw) if raw else {}


async def _list(redis, store, args) -> int:
    now = time.time_ns() // 1_000_000
    checkpoint = await _checkpoint(redis)
    rows = []
    for placement, arm in await store.models():
        st = await store.state(placement, arm)
        served = st.info.get(st.current) if st.current is not None else None
        latest = max(st.versions) if st.versions else None
        rows.append({
            "model": f"{placement}:{arm}", "served": st.current, "latest": latest, "versions": len(st.versions),
            "examples": served.examples if served else None,
            "loss": served.average_loss if served else None,
            "greedy": served.greedy_share if served else None,
            "reward": served.reward_rate if served else None,
            "age_s": (now - served.created_ms) / 1000 if served else None,
            "apprentice": _apprentice_state(st, checkpoint),
        })
    if args.json:
        print(json.dumps({"models": rows, "learner": _learner_summary(checkpoint)}, indent=2))
        return 0
    if not rows:
        print("no model published yet (run `nba learn`)")
    else:
        head = ("MODEL", "SERVED", "LATEST", "EXAMPLES", "LOSS", "GREEDY", "REWARD", "AGE", "APPRENTICE")
        table = [head] + [(
            r["model"], _v(r["served"]), _v(r["latest"]), _int(r["examples"]), _num(r["loss"]), _num(r["greedy"]),
            _num(r["reward"]), _age(r["age_s"]), r["apprentice"]) for r in rows]
        _print_table(table)
    summary = _learner_summary(checkpoint)
    if summary:
        print(f"\nlearner {summary['learner']}: last checkpoint {_age((now - summary['ts_ms']) / 1000)} ago, "
              f"watermark {_when(summary['watermark_ms'])}, {summary['pending']:,} decision(s) pending, "
              f"{summary['examples']:,} example(s) learned")
    return 0


def _apprentice_state(st, checkpoint) -> str:
    entry = checkpoint.get("models", {}).get(f"{st.placement}:{st.arm}", {})
    if st.apprentice:
        return st.apprentice
    return "baseline" if entry.get("apprentice") else "-"


def _learner_summary(checkpoint: dict) -> dict | None:
    if not checkpoint:
        return None
    return {"learner": checkpoint.get("learner"), "ts_ms": checkpoint.get("ts_ms", 0),
            "watermark_ms": checkpoint.get("watermark_ms", 0), "pending": checkpoint.get("pending", 0),
            "examples": checkpoint.get("counters", {}).get("examples", 0)}


async def _show(redis, store, args) -> int:
    st = await store.state(args.placement, args.arm)
    if not st.versions and st.current is None:
        print(f"nba: no model {args.placement}:{args.arm} has been published", file=sys.stderr)
        return 1
    checkpoint = await _checkpoint(redis)
    entry = checkpoint.get("models", {}).get(f"{args.placement}:{args.arm}", {})
    evidence = None
    if entry.get("judge") and entry.get("apprentice"):
        from decision.catalog import Apprentice
        from decision.learning.apprentice import Judge

        spec = Apprentice(entry["apprentice"]["baseline"], entry["apprentice"]["until"],
                          entry["apprentice"]["min_examples"])
        evidence = Judge(spec, entry["judge"]).evidence().as_dict()
    events = await store.events(20, args.placement, args.arm)
    if args.json:
        print(json.dumps({"placement": st.placement, "arm": st.arm, "current": st.current,
                          "versions": [json.loads(i.to_json()) for i in st.info.values()],
                          "apprentice": st.apprentice, "switch_evidence": st.evidence,
                          "current_evidence": evidence, "events": events}, indent=2, default=str))
        return 0
    print(f"{st.placement}:{st.arm}  serving {_v(st.current)}  ({len(st.versions)} version(s) kept)")
    head = ("", "VERSION", "CREATED", "EXAMPLES", "+NEW", "LOSS", "GREEDY", "REWARD", "PARENT", "BYTES", "MODEL")
    table = [head]
    for n, i in st.info.items():
        table.append(("*" if n == st.current else ("" if n in st.versions else "pruned"), f"v{n}",
                      _when(i.created_ms), _int(i.examples), _int(i.interval_examples), _num(i.average_loss),
                      _num(i.greedy_share), _num(i.reward_rate), _v(i.parent), _int(i.bytes), i.model_version))
    _print_table(table)
    if entry.get("apprentice") or st.apprentice:
        print(f"\napprentice: {st.apprentice or 'serving the baseline'}")
        if st.evidence:
            print(f"  switched by {st.evidence.get('by')} at {_when(st.evidence.get('ts_ms'))}: "
                  f"{st.evidence.get('reason', '')}")
        if evidence:
            print(f"  evidence now: learned {_num(evidence['learned'])} (LCB {_num(evidence['learned_lcb'])}, "
                  f"{evidence['eval_decisions']} decisions) vs baseline {_num(evidence['baseline'])} "
                  f"({evidence['baseline_decisions']} decisions), needs {evidence['min_examples']}")
    if events:
        print("\nevents (newest first):")
        for e in events:
            print(f"  {_when(e.get('ts_ms'))}  {e.get('event'):<10} {_v(e.get('version'))}  {e.get('detail', '')}")
    return 0


async def _switch(store, args, command: str) -> int:
    from decision.errors import CatalogError
    from decision.learning.learner import load_learner_catalog

    try:
        catalog = load_learner_catalog(_catalog_path(args))
    except CatalogError as e:
        print(f"nba: {e}", file=sys.stderr)
        return 2
    placement = catalog.placements.get(args.placement)
    arm = next((a for a in placement.arms if a.name == args.arm), None) if placement else None
    if arm is None:
        print(f"nba: the catalog has no arm {args.placement}:{args.arm}", file=sys.stderr)
        return 1
    if arm.apprentice is None:
        print(f"nba: {args.placement}:{args.arm} is not an apprentice arm (catalog `apprentice:`)", file=sys.stderr)
        return 1
    if command == "demote":
        await store.demote(args.placement, args.arm)
        print(f"{args.placement}:{args.arm}: serving the baseline {arm.apprentice.baseline!r} again")
        return 0
    current = await store.current(args.placement, args.arm)
    if current is None:
        print(f"nba: {args.placement}:{args.arm} has no published model yet: nothing to serve instead of "
              "the baseline", file=sys.stderr)
        return 1
    await store.graduate(args.placement, args.arm, {"by": "operator", "reason": args.reason, "version": current,
                                                    "baseline_policy": arm.apprentice.baseline})
    print(f"{args.placement}:{args.arm}: graduated, serving its learned policy v{current} instead of "
          f"{arm.apprentice.baseline!r}")
    return 0


# --- formatting ------------------------------------------------------------------------

def _print_table(rows) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def _v(n) -> str:
    return "-" if n is None else f"v{n}"


def _int(n) -> str:
    return "-" if n is None else f"{n:,}"


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _when(ms) -> str:
    if not ms:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")

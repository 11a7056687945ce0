"""`nba promote`: promote a challenger arm's policy to champion when the logs say so.

The rule (docs/EXPERIMENTS.md): on the same evidence logs (the placement's
uniform holdout arm by default: every action has a known, positive
probability there), estimate both policies off-policy with one estimator
(DR by default) and promote when all of these hold:

  1. enough evidence:  at least --min-rows joined decisions (default 500);
  2. support:          neither policy puts probability where the logging
                       policy had none (no "missing support" warning);
  3. stable weights:   the challenger's effective sample size is at least
                       MIN_ESS (100);
  4. it wins:          the challenger's LOWER 95% bound is above the
                       champion's POINT estimate.

Rule 4 is deliberately one-sided and conservative: a challenger that is only
"probably better" stays a challenger; collect more logs.

A promotion (not with --dry-run) is recorded, evidence and all, in the stream
`nba:promotions`, and the per-placement key `nba:promotion:<placement>`
names the arm whose policy is now the champion's, for an operator or a
deploy pipeline to read; the service does not apply it by itself. The
catalog file is not rewritten: an operator applies a
promotion by giving the champion arm the challenger's policy in the catalog
(docs/EXPERIMENTS.md shows the edit); the service reloads it without a restart.
Every run prints the evidence; exit 0 = promoted (or would be, dry run),
3 = the rule is not met, 1 = bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from decision.catalog import Catalog
from decision.experiments import ExperimentError
from decision.experiments.common import (
    describe_range, holdout_arm, iso, joined, load_catalog_opt, no_data, query, run_command, with_redis)
from decision.experiments.data import rank1_rows, require_rows
from decision.experiments.evaluate import evaluate
from decision.experiments.targets import Target, load_model_file, resolve

PROMOTION_STREAM = "nba:promotions"
MIN_ESS = 100.0
NOT_MET = 3


def override_key(placement: str) -> str:
    return f"nba:promotion:{placement}"


async def read_override(redis, placement: str) -> dict[str, Any] | None:
    """The latest promotion of a placement, or None (for tools: the service
    serves what its catalog says)."""
    raw = await redis.get(override_key(placement))
    return json.loads(raw) if raw else None


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def champion_arm(catalog: Catalog, placement: str, challenger: str, wanted: str | None) -> str:
    arms = catalog.placements[placement].arms
    names = [a.name for a in arms]
    if wanted:
        if wanted not in names:
            raise ExperimentError(f"--champion {wanted!r}: placement {placement!r} has no such arm "
                                  f"(arms: {', '.join(names)})")
        return wanted
    if "champion" in names and challenger != "champion":
        return "champion"
    others = [a for a in arms if a.name != challenger and catalog.policies[a.policy].kind != "uniform"]
    if not others:
        raise ExperimentError(f"placement {placement!r} has no champion arm besides {challenger!r}: name it with "
                              "--champion")
    return max(others, key=lambda a: a.share).name


async def _target(arm: str, model: str | None, flag: str, catalog: Catalog, placement: str, redis) -> Target:
    if model:
        return Target(f"arm:{arm}", load_model_file(model), f"arm {arm}: saved policy {model}")
    try:
        return await resolve(f"arm:{arm}", catalog=catalog, placement=placement, redis=redis)
    except ExperimentError as e:
        raise ExperimentError(f"{e} (or give the arm's saved policy with {flag} FILE)") from None


def cmd_promote(args: argparse.Namespace) -> int:
    return run_command(run, args)


async def run(args: argparse.Namespace, redis=None) -> int:
    return await with_redis(_run, args, redis)


async def _run(args: argparse.Namespace, redis) -> int:
    catalog, note = load_catalog_opt(args.catalog)
    if catalog is None or args.placement not in catalog.placements:
        raise ExperimentError(f"promotion needs the catalog that defines placement {args.placement!r}"
                              + (f" ({note})" if note else " (--catalog)"))
    placement = catalog.placements[args.placement]
    arm_names = [a.name for a in placement.arms]
    if args.challenger not in arm_names:
        raise ExperimentError(f"--challenger {args.challenger!r}: placement {args.placement!r} has no such arm "
                              f"(arms: {', '.join(arm_names)})")
    champion = champion_arm(catalog, args.placement, args.challenger, args.champion)
    if champion == args.challenger:
        raise ExperimentError(f"--challenger {args.challenger!r} is the champion already")
    if args.min_rows < 1:
        raise ExperimentError("--min-rows must be at least 1")

    args.arm = None
    q = query(args, catalog)
    result = await joined(args, q, redis)
    arms_logged = sorted({jd.record.arm for jd in result.decisions})
    on = holdout_arm(catalog, args.placement, arms_logged, args.logs_arm)
    evidence = [jd for jd in result.decisions if on is None or jd.record.arm == on]
    if not evidence:
        raise no_data(q, result)
    rows = rank1_rows(evidence, catalog)
    require_rows(rows, f"no evidence for {describe_range(q)}")
    champ = await _target(champion, args.champion_model, "--champion-model", catalog, args.placement, redis)
    chall = await _target(args.challenger, args.challenger_model, "--challenger-model", catalog, args.placement,
                          redis)
    res_champ, res_chall = evaluate(rows.rows, [champ, chall])
    e_champ, e_chall = res_champ.get(args.estimator), res_chall.get(args.estimator)
    if e_champ is None or e_chall is None:
        raise ExperimentError(f"estimator {args.estimator!r} unavailable")

    n = len(rows.rows)
    unsupported = [t.spec for t, e in ((champ, e_champ), (chall, e_chall))
                   if any(w.startswith("missing support") for w in e.warnings)]
    checks = [
        Check("enough evidence", n >= args.min_rows, f"{n} joined decisions (minimum {args.min_rows})"),
        Check("support", not unsupported,
              "both policies stay where the logging policy explored" if not unsupported
              else f"missing support for {', '.join(unsupported)}"),
        Check("stable weights", e_chall.ess >= MIN_ESS,
              f"challenger effective sample size {e_chall.ess:.0f} (minimum {MIN_ESS:.0f})"),
        Check("challenger wins", math.isfinite(e_chall.low) and e_chall.low > e_champ.value,
              f"challenger lower 95% bound {e_chall.low:.4f} vs champion estimate {e_champ.value:.4f}"),
    ]
    promote = all(c.ok for c in checks)
    now_ms = time.time_ns() // 1_000_000
    record = {
        "v": 1, "placement": args.placement, "at_ms": now_ms, "promoted": promote and not args.dry_run,
        "decision": "promote" if promote else "keep",
        "champion": {"arm": champion, "policy": _policy_of(catalog, args.placement, champion),
                     "target": champ.description, "estimate": e_champ.as_dict()},
        "challenger": {"arm": args.challenger, "policy": _policy_of(catalog, args.placement, args.challenger),
                       "target": chall.description, "estimate": e_chall.as_dict()},
        "evidence": {"logs_arm": on, "rows": n, "since": args.since, "until": args.until,
                     "join": asdict(result.stats), "notes": list(rows.notes)},
        "rule": {"estimator": args.estimator, "min_rows": args.min_rows, "min_ess": MIN_ESS, "level": 0.95,
                 "wins": "challenger lower bound > champion point estimate"},
        "checks": [asdict(c) for c in checks],
        "catalog_version": catalog.version,
    }
    if promote and not args.dry_run:
        text = json.dumps(record, separators=(",", ":"), sort_keys=True, default=str)
        pipe = redis.pipeline(transaction=True)
        pipe.xadd(PROMOTION_STREAM, {"r": text}, maxlen=10_000, approximate=True)
        pipe.set(override_key(args.placement), json.dumps({
            "placement": args.placement, "champion_arm": champion, "promoted_arm": args.challenger,
            "policy": record["challenger"]["policy"], "at_ms": now_ms}, separators=(",", ":")))
        entry_id, _ = await pipe.execute()
        record["stream_id"] = entry_id
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(render(record, args.dry_run))
    return 0 if promote else NOT_MET


def _policy_of(catalog: Catalog, placement: str, arm: str) -> str:
    return next(a.policy for a in catalog.placements[placement].arms if a.name == arm)


def render(r: dict, dry_run: bool) -> str:
    def est(side: str) -> str:
        e = r[side]["estimate"]
        return (f"{side:<10} arm {r[side]['arm']:<12} policy {r[side]['policy']:<16} {e['estimator']} "
                f"{e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]  ESS {e['ess']:.0f}")

    ev = r["evidence"]
    lines = [f"promotion evidence for placement {r['placement']!r} "
             f"(logs of arm {ev['logs_arm'] or 'every arm'}: {ev['rows']} joined decisions, rank 1)",
             "  " + est("champion"), "  " + est("challenger"), ""]
    lines += [f"  [{'x' if c['ok'] else ' '}] {c['name']}: {c['detail']}" for c in r["checks"]]
    lines.append("")
    if r["decision"] == "promote":
        if dry_run:
            lines.append(f"would PROMOTE arm {r['challenger']['arm']} (dry run: nothing recorded)")
        else:
            lines.append(f"PROMOTED arm {r['challenger']['arm']}'s policy {r['challenger']['policy']!r} at "
                         f"{iso(r['at_ms'])}: recorded in {PROMOTION_STREAM} ({r.get('stream_id')}) and "
                         f"{override_key(r['placement'])}; apply it to the catalog (docs/EXPERIMENTS.md)")
    else:
        lines.append(f"keep the champion: the rule is not met (exit {NOT_MET})")
    return "\n".join(lines)


__all__ = ["PROMOTION_STREAM", "cmd_promote", "override_key", "read_override"]

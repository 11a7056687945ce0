"""`nba ope`: estimate candidate policies' value on a placement's logs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

from decision.experiments import ExperimentError
from decision.experiments.common import describe_range, joined, load_catalog_opt, no_data, query, run_command
from decision.experiments.data import rank1_rows, require_rows
from decision.experiments.evaluate import TargetResult, evaluate, observed
from decision.experiments.targets import default_specs, resolve


def cmd_ope(args: argparse.Namespace) -> int:
    return run_command(run, args)


async def run(args: argparse.Namespace, redis=None) -> int:
    from decision.cli import _redis

    if args.bootstrap < 10:
        raise ExperimentError("--bootstrap must be at least 10")
    catalog, catalog_note = load_catalog_opt(args.catalog)
    q = query(args, catalog)
    if redis is None:
        async with _redis(args) as client:
            return await _run(args, q, catalog, catalog_note, client)
    return await _run(args, q, catalog, catalog_note, redis)


async def _run(args, q, catalog, catalog_note, redis) -> int:
    result = await joined(args, q, redis)
    if not result.decisions:
        raise no_data(q, result)
    rows = rank1_rows(result.decisions, catalog)
    require_rows(rows, f"nothing to evaluate for {describe_range(q)}")
    notes = [n for n in (catalog_note,) if n] + list(rows.notes)
    targets = []
    for spec in args.policy or default_specs(catalog, q.placement):
        try:
            targets.append(await resolve(spec, catalog=catalog, placement=q.placement, redis=redis))
        except ExperimentError as e:
            if args.policy:
                raise
            notes.append(f"skipped {e}")
    if not targets:
        raise ExperimentError("no candidate policy could be loaded: " + "; ".join(notes))
    results = evaluate(rows.rows, targets, dr=not args.no_dr, n_boot=args.bootstrap, seed=args.seed)
    by_arm: dict[str, list[float]] = {}
    for r in rows.rows:
        by_arm.setdefault(r.record.arm, []).append(r.reward)
    logged = {arm: observed(v, n_boot=args.bootstrap, seed=args.seed) for arm, v in sorted(by_arm.items())}
    if args.json:
        print(json.dumps({
            "placement": q.placement, "arm": q.arm, "rows": len(rows.rows), "join": asdict(result.stats),
            "notes": notes, "logged": {a: asdict(o) for a, o in logged.items()},
            "policies": [{"spec": t.spec, "description": t.description, "agreement": t.agreement,
                          "estimates": [e.as_dict() for e in t.estimates]} for t in results],
        }, indent=2))
        return 0
    print(render(q, len(rows.rows), result.stats, notes, logged, results, args.bootstrap, args.seed))
    return 0


def _f(x: float) -> str:
    return "nan" if x != x else f"{x:.4f}"


def render(q, n: int, stats, notes: Sequence[str], logged, results: Sequence[TargetResult], n_boot: int,
           seed: int) -> str:
    lines = [f"OPE on {describe_range(q)}: {n} decision(s) evaluated at rank 1 "
             f"(of {stats.decisions} in range; {stats.excluded_note()})"]
    for arm, o in logged.items():
        lines.append(f"  logged by arm {arm}: {o.n} rows, mean reward {_f(o.value)} [{_f(o.low)}, {_f(o.high)}]")
    lines.append(f"  intervals: 95% percentile bootstrap ({n_boot} resamples, seed {seed}); DR reward model: ridge "
                 "on hashed shared x action features, 2-fold cross-fitted")
    lines.append("")
    head = ("policy", "estimator", "value", "95% CI", "ESS", "match")
    table = [head]
    for t in results:
        for e in t.estimates:
            table.append((t.spec, e.estimator, _f(e.value), f"[{_f(e.low)}, {_f(e.high)}]", f"{e.ess:.1f}",
                          f"{t.agreement:.0%}"))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines.append("  (match: mean probability the policy gives the logged action; ESS: effective sample size)")
    warn = []
    for t in results:
        seen: list[str] = []
        for e in t.estimates:
            seen.extend(w for w in e.warnings if w not in seen)
        warn.extend(f"  {t.spec}: {w}" for w in seen)
    if warn:
        lines += ["", "warnings:"] + warn
    if notes:
        lines += ["", "notes:"] + [f"  {n}" for n in notes]
    return "\n".join(lines)

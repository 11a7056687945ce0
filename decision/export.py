"""`nba export`: joined decisions and rewards as VW dsjson, CSV or Parquet.

One output row (line) per logged item; decisions that the join excludes
(pending, fallback, refused at commit, v2 records whose feature table is
gone) are not exported (decision/join.py). The join hands over resolved
records, so every action's features are written out in full, whichever
record version logged them (decision/records.py).

dsjson (`vw --dsjson --cb_adf` / `--cb_explore_adf` train on it unchanged):
- `c` holds the shared namespaces and `_multi` one object per action, under
  the namespace letters of bandits/vw.py (user U, context X, offer O,
  content C, channel H; other namespaces under their own name);
- a string feature name=value is written as {"name=": "value"}: VW's JSON
  parser concatenates key and value, so it hashes exactly like the text
  format's `name=value`, and a model trained on the export equals one
  trained by the learner (tested); names and values are percent-escaped as
  in the text format; numbers stay numbers, true is 1, false is dropped;
- `_label_cost` is the reward scaled into VW's cost range by
  bandits/vw.reward_to_cost with the placement's declared reward range;
  `_label_probability` the logged probability; `_label_Action` (1-based) and
  `_labelIndex` (0-based) the chosen action among `_multi`;
- item of rank r > 1: `_multi` holds only the actions still available at that
  rank (bandits/sampling.remaining), and the probability is the logged
  conditional one, exactly the example the learner trains;
- `a` / `p`: at rank 1 every action (the chosen first) with its logged
  rank-1 probability; at lower ranks only the chosen one (the log keeps only
  the chosen item's conditional probability);
- `EventId` (decision id, `#rank` for rank > 1), `Timestamp`, `Version` and
  `_nba` (arm, policy, model version, reward, person pseudonym ...), which
  VW ignores.

CSV/Parquet, with the Open Bandit Pipeline's columns: `action` (index into
the sorted list of action labels in the export), `position` (0-based rank),
`reward`, `pscore`, context features flattened as `context.<namespace>.<name>`
and the chosen action's features as `action.<namespace>.<name>`, plus
timestamp, decision id, arm, policy, model version and the person pseudonym.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bandits.policy import Action
from bandits.sampling import remaining
from bandits.vw import NAMESPACES, escape, reward_to_cost
from decision.experiments import ExperimentError
from decision.experiments.common import describe_range, iso, joined, load_catalog_opt, no_data, query, run_command
from decision.experiments.data import actions_of
from decision.join import JoinedDecision, JoinQuery

FORMATS = ("dsjson", "csv", "parquet")
FIXED_COLUMNS = (
    "timestamp", "ts_ms", "decision_id", "placement", "arm", "policy", "model_version", "catalog_version",
    "person", "anonymous", "assignment", "simulated", "position", "rank", "action", "action_label", "offer",
    "content", "channel", "reward", "reward_events", "reward_defaulted", "pscore", "n_actions",
)  # fmt: skip


# ---- dsjson -------------------------------------------------------------------------

def _ns_json(feats: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, v in feats.items():
        key = escape(str(name), name=True)
        if isinstance(v, str):
            out[key + "="] = escape(v)
        elif isinstance(v, bool):
            if v:
                out[key] = 1
        elif isinstance(v, (int, float)):
            f = float(v)
            if math.isfinite(f):
                out[key] = int(f) if f.is_integer() and abs(f) < 1e15 else f
    return out


def features_json(features: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {NAMESPACES.get(ns) or escape(ns, name=True): _ns_json(f) for ns, f in features.items() if f}


def dsjson_lines(jd: JoinedDecision, actions: Sequence[Action], reward_range: tuple[float, float],
                 include_person: bool = True) -> Iterator[str]:
    r = jd.record
    shared = features_json(r.context)
    chosen_before: list[int] = []
    for item in jd.items:
        avail = list(range(len(actions))) if item.rank == 1 else remaining(actions, chosen_before)
        pos = avail.index(item.action)
        if item.rank == 1:
            order = [pos] + [i for i in range(len(avail)) if i != pos]
            a = [i + 1 for i in order]
            p = [r.actions[avail[i]].probability for i in order]
            p[0] = item.probability
        else:
            a, p = [pos + 1], [item.probability]
        c = dict(shared)
        c["_multi"] = [features_json(r.actions[i].features) for i in avail]
        meta = {"placement": r.placement, "arm": r.arm, "policy": r.policy, "model_version": r.model_version,
                "catalog_version": r.catalog_version, "rank": item.rank, "reward": item.reward,
                "reward_events": item.events, "action_label": actions[item.action].id}
        if include_person:
            meta["person"] = r.person
        yield json.dumps({
            "_label_cost": reward_to_cost(item.reward, reward_range),
            "_label_probability": item.probability,
            "_label_Action": pos + 1,
            "_labelIndex": pos,
            "a": a,
            "p": p,
            "c": c,
            "EventId": r.decision_id if item.rank == 1 else f"{r.decision_id}#{item.rank}",
            "Timestamp": iso(r.ts_ms),
            "Version": "1",
            "_nba": meta,
        }, separators=(",", ":"), ensure_ascii=False)
        chosen_before.append(item.action)


# ---- tabular (OBP columns) ----------------------------------------------------------------

def _flat(prefix: str, features: Mapping[str, Mapping[str, Any]], out: dict[str, Any]) -> None:
    for ns, feats in features.items():
        for name, v in feats.items():
            out[f"{prefix}.{ns}.{name}"] = float(v) if isinstance(v, bool) else v


def table_rows(decisions: Sequence[JoinedDecision], catalog, include_person: bool = True
               ) -> tuple[list[dict[str, Any]], list[str]]:
    labels: set[str] = set()
    built = []
    for jd in decisions:
        actions = actions_of(jd.record, catalog)
        labels.update(a.id for a in actions)
        built.append((jd, actions))
    index = {lab: i for i, lab in enumerate(sorted(labels))}
    rows: list[dict[str, Any]] = []
    extra: set[str] = set()
    for jd, actions in built:
        r = jd.record
        chosen_before: list[int] = []
        for item in jd.items:
            n_avail = len(actions) if item.rank == 1 else len(remaining(actions, chosen_before))
            la = r.actions[item.action]
            row: dict[str, Any] = {
                "timestamp": iso(r.ts_ms), "ts_ms": r.ts_ms, "decision_id": r.decision_id, "placement": r.placement,
                "arm": r.arm, "policy": r.policy, "model_version": r.model_version,
                "catalog_version": r.catalog_version, "person": r.person if include_person else "",
                "anonymous": int(r.anonymous), "assignment": r.assignment, "simulated": int(r.simulated),
                "position": item.rank - 1, "rank": item.rank, "action": index[actions[item.action].id],
                "action_label": actions[item.action].id, "offer": la.offer_id, "content": la.content_id,
                "channel": la.channel, "reward": item.reward, "reward_events": item.events,
                "reward_defaulted": int(item.defaulted), "pscore": item.probability, "n_actions": n_avail,
            }
            feats: dict[str, Any] = {}
            _flat("context", r.context, feats)
            _flat("action", la.features, feats)
            extra.update(feats)
            row.update(feats)
            rows.append(row)
            chosen_before.append(item.action)
    return rows, list(FIXED_COLUMNS) + sorted(extra)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="raise")
        w.writeheader()
        w.writerows(rows)


def write_parquet(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExperimentError("--format parquet needs pyarrow: pip install 'nba-decisioning[export]' "
                              "(--format csv works without it)") from None
    data = {}
    for col in columns:
        values = [row.get(col) for row in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds and kinds <= {int, float} and float in kinds:
            values = [None if v is None else float(v) for v in values]
        elif len(kinds) > 1:  # a feature that is a string in some rows, a number in others
            values = [None if v is None else str(v) for v in values]
        data[col] = values
    pq.write_table(pa.table(data), path)


# ---- command ----------------------------------------------------------------------

def cmd_export(args: argparse.Namespace) -> int:
    return run_command(run, args)


async def run(args: argparse.Namespace, redis=None) -> int:
    if args.format not in FORMATS:
        raise ExperimentError(f"--format {args.format!r}: expected one of {', '.join(FORMATS)}")
    catalog, catalog_note = load_catalog_opt(args.catalog)
    q = query(args, catalog)
    result = await joined(args, q, redis)
    if not result.decisions:
        raise no_data(q, result)
    out = Path(args.out)
    if not out.parent.exists():
        raise ExperimentError(f"--out {out}: directory {out.parent} does not exist")
    if args.include_person:
        print("nba export: note: the decision log holds only keyed pseudonyms of persons (never raw ids), so "
              "--include-person exports the same pseudonyms as the default", file=sys.stderr)
    n_rows = write(out, args.format, result.decisions, catalog, q)
    print(f"wrote {n_rows} row(s) from {len(result.decisions)} decision(s) ({describe_range(q)}) to {out} "
          f"[{args.format}]; {result.stats.excluded_note()}"
          + (f"; {result.stats.clipped} item reward(s) clipped to the reward range" if result.stats.clipped else "")
          + (f"; {catalog_note}" if catalog_note else ""), file=sys.stderr)
    return 0


def write(out: Path, fmt: str, decisions: Sequence[JoinedDecision], catalog, q: JoinQuery) -> int:
    if fmt == "dsjson":
        if q.reward_range is None:
            raise ExperimentError(f"dsjson needs placement {q.placement!r}'s reward range to scale rewards into VW "
                                  "costs, and the catalog does not define it (--catalog)")
        n = 0
        with out.open("w", encoding="utf-8") as f:
            for jd in decisions:
                for line in dsjson_lines(jd, actions_of(jd.record, catalog), q.reward_range):
                    f.write(line + "\n")
                    n += 1
        return n
    rows, columns = table_rows(decisions, catalog)
    if fmt == "csv":
        write_csv(out, rows, columns)
    else:
        write_parquet(out, rows, columns)
    return len(rows)


__all__ = ["FORMATS", "cmd_export", "dsjson_lines", "features_json", "table_rows", "write"]

"""Joined log rows -> the Context/Action objects the policies saw.

`actions_of` rebuilds exactly what decision/stages/policy.py handed the
policy: Action(id="offer/content@channel", features=the action's features,
value and priority of the offer from the catalog, group=offer id), in the
logged order, and Context(logged shared features). The records come from
decision/join.py already resolved (v2 records' features read from their
catalog version's feature table, decision/feature_tables.py). Value and
priority are not in the log record: they come from the catalog (a note says
when an offer is missing or the catalog version differs from the logged one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandits.policy import Action, Context
from decision.catalog import Catalog
from decision.feature_tables import make_action
from decision.join import JoinedDecision
from decision.records import DecisionRecord

from decision.experiments import ExperimentError

def actions_of(record: DecisionRecord, catalog: Catalog | None, missing: set[str] | None = None) -> tuple[Action, ...]:
    """The record's Actions (it must be resolved: decision/join.py returns resolved records)."""
    out = []
    for a in record.actions:
        if a.features is None:
            raise ExperimentError(f"decision {record.decision_id} is not resolved (records v2): read it through "
                                  "decision.join, which resolves features from the feature tables")
        if missing is not None and (catalog is None or a.offer_id not in catalog.offers):
            missing.add(a.offer_id)
        out.append(make_action(a, a.features, catalog))
    return tuple(out)


@dataclass(frozen=True, slots=True, eq=False)
class Row:
    """One rank-1 logged example."""

    record: DecisionRecord
    context: Context
    actions: tuple[Action, ...]
    logging: np.ndarray  # the logged rank-1 distribution over `actions`
    chosen: int
    pscore: float
    reward: float


@dataclass(frozen=True, slots=True)
class Rows:
    rows: tuple[Row, ...]
    no_probability: int  # rows dropped: logged probability outside (0, 1]
    notes: tuple[str, ...]


def rank1_rows(joined: Sequence[JoinedDecision], catalog: Catalog | None) -> Rows:
    """The rank-1 item of each joined decision, as an OPE row.

    Multi-slot decisions are evaluated at rank 1 only: rank 1 is drawn from
    the logged rank-1 distribution over every allowed action, which any
    target policy can be compared with; lower ranks depend on the slate
    above them (docs/EXPERIMENTS.md)."""
    rows: list[Row] = []
    bad = 0
    missing: set[str] = set()
    versions: dict[str, int] = {}
    for jd in joined:
        r = jd.record
        item = jd.first
        p = item.probability
        logging = np.fromiter((a.probability for a in r.actions), dtype=np.float64, count=len(r.actions))
        if not (0.0 < p <= 1.0) or not np.isfinite(logging).all() or logging.sum() <= 0:
            bad += 1
            continue
        versions[r.catalog_version] = versions.get(r.catalog_version, 0) + 1
        rows.append(Row(r, Context(r.context), actions_of(r, catalog, missing), logging, item.action, p,
                        item.reward))
    notes = []
    if missing:
        notes.append(f"offer(s) not in the catalog: {', '.join(sorted(missing))}: value from the logged features, "
                     "priority 1 assumed")
    if catalog is not None:
        other = sum(n for v, n in versions.items() if v != catalog.version)
        if other:
            notes.append(f"{other} decision(s) were logged under another catalog version than {catalog.path} "
                         f"({catalog.version}); offer values and priorities come from that file")
    if bad:
        notes.append(f"{bad} decision(s) without a usable logged probability (outside (0, 1]) were dropped")
    return Rows(tuple(rows), bad, tuple(notes))


def require_rows(rows: Rows, what: str) -> None:
    if rows.rows:
        return
    if rows.no_probability:
        raise ExperimentError(
            f"{what}: the logs carry no usable probabilities ({rows.no_probability} decision(s) logged with a "
            "probability outside (0, 1]); off-policy evaluation needs the probability of every logged choice")
    raise ExperimentError(f"{what}: no joined decisions to evaluate")

"""Evaluate target policies on logged rank-1 rows: IPS, SNIPS and DR.

The DR reward model is fitted once per set of rows (it does not depend on
the target), cross-fitted in two folds (bandits/ope/reward_model.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandits import ope
from bandits.ope import ci
from bandits.ope.reward_model import RewardModelConfig, crossfit
from bandits.ope.types import Estimate, Feedback
from decision.experiments.data import Row
from decision.experiments.targets import Target


@dataclass(frozen=True, slots=True)
class TargetResult:
    spec: str
    description: str
    estimates: tuple[Estimate, ...]
    # mean probability the target gives the logged action: 1/n for uniform,
    # the share of agreeing rows for a deterministic target
    agreement: float

    def get(self, estimator: str) -> Estimate | None:
        return next((e for e in self.estimates if e.estimator == estimator), None)


@dataclass(frozen=True, slots=True)
class Observed:
    """The logged (on-policy) mean reward of rows, with a bootstrap interval."""

    value: float
    low: float
    high: float
    n: int


def reward_predictions(rows: Sequence[Row], config: RewardModelConfig = RewardModelConfig()) -> list[np.ndarray]:
    return crossfit([r.context.features for r in rows], [[a.features for a in r.actions] for r in rows],
                    [r.chosen for r in rows], [r.reward for r in rows], config,
                    action_keys=[[(r.record.catalog_version, a.id) for a in r.actions] for r in rows])


def feedback(rows: Sequence[Row], target: Target, q: Sequence[np.ndarray] | None) -> tuple[Feedback, float]:
    n = len(rows)
    tp = np.empty(n)
    unsupported = np.empty(n)
    q_logged = np.empty(n) if q is not None else None
    q_target = np.empty(n) if q is not None else None
    for i, row in enumerate(rows):
        probs = target.policy.rank(row.context, row.actions).probabilities
        tp[i] = probs[row.chosen]
        unsupported[i] = float(probs[row.logging <= 0].sum())
        if q is not None:
            q_logged[i] = q[i][row.chosen]
            q_target[i] = float(probs @ q[i])
    fb = Feedback(np.fromiter((r.reward for r in rows), float, n), np.fromiter((r.pscore for r in rows), float, n),
                  tp, q_logged, q_target, unsupported)
    return fb, float(tp.mean()) if n else float("nan")


def evaluate(rows: Sequence[Row], targets: Sequence[Target], *, dr: bool = True, n_boot: int = ci.N_BOOT,
             seed: int = ci.SEED, model: RewardModelConfig = RewardModelConfig()) -> list[TargetResult]:
    q = reward_predictions(rows, model) if dr and rows else None
    out = []
    for t in targets:
        fb, agreement = feedback(rows, t, q)
        out.append(TargetResult(t.spec, t.description, tuple(ope.estimate_all(fb, n_boot=n_boot, seed=seed)),
                                agreement))
    return out


def observed(rewards: Sequence[float], *, n_boot: int = ci.N_BOOT, seed: int = ci.SEED) -> Observed:
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        nan = float("nan")
        return Observed(nan, nan, nan, 0)
    low, high = ci.bootstrap_ratio(r, n_boot=n_boot, seed=seed)
    return Observed(float(r.mean()), low, high, int(r.size))

"""Diagnostics shared by the estimators: effective sample size and warnings."""

from __future__ import annotations

import numpy as np

from bandits.ope.types import Feedback

TINY_PSCORE = 1e-3
MIN_ROWS = 100
LOW_ESS_SHARE = 0.1


def ess(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2: n when the target is
    the logging policy, small when a few rows carry all the weight."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float(np.dot(w, w))
    return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0


def warnings(fb: Feedback, *, min_rows: int = MIN_ROWS, tiny: float = TINY_PSCORE) -> tuple[str, ...]:
    out: list[str] = []
    n = fb.n
    if n < min_rows:
        out.append(f"too few rows: {n} (< {min_rows}); the estimate and its interval are not reliable")
    small = fb.pscore < tiny
    if small.any():
        out.append(f"tiny propensities: {int(small.sum())} of {n} rows were logged with probability < {tiny:g} "
                   f"(smallest {fb.pscore.min():.2g}); their weights (up to {fb.weights.max():.0f}) dominate")
    if fb.unsupported is not None:
        mass = float(fb.unsupported.sum())
        if mass > 1e-9:
            rows = int((fb.unsupported > 1e-9).sum())
            out.append(f"missing support: the target puts {mass / n:.1%} of its probability (in {rows} rows) on "
                       "actions the logging policy gave probability 0; their rewards are never seen, so IPS, "
                       "SNIPS and DR are biased")
    if n and not (fb.target > 0).any():
        out.append("the target never chooses a logged action: every importance weight is 0")
    e = ess(fb.weights)
    if n and 0 < e < LOW_ESS_SHARE * n:
        out.append(f"low effective sample size: {e:.0f} of {n} rows ({e / n:.0%}); the target is far from the "
                   "logging policy")
    return tuple(out)

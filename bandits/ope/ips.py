"""Inverse propensity scoring: V = mean(w * r), w = target / logging probability.

Unbiased when the logging policy gives every action the target may choose a
positive probability (and the logged probabilities are right); its variance
grows with the weights.
"""

from __future__ import annotations

from bandits.ope import ci, diagnostics
from bandits.ope.types import Estimate, Feedback

NAME = "ips"


def estimate(fb: Feedback, *, level: float = ci.LEVEL, n_boot: int = ci.N_BOOT, seed: int = ci.SEED) -> Estimate:
    v = fb.weights * fb.reward
    low, high = ci.bootstrap_ratio(v, level=level, n_boot=n_boot, seed=seed)
    return Estimate(NAME, float(v.mean()) if fb.n else float("nan"), low, high, fb.n, diagnostics.ess(fb.weights),
                    ci.mean_std_err(v), level, ci.METHOD, diagnostics.warnings(fb))

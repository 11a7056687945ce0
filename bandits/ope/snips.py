"""Self-normalized IPS: V = sum(w * r) / sum(w).

Divides by the realised sum of weights instead of n: slightly biased, much
lower variance than IPS when weights are large, and always inside the
range of the observed rewards. Undefined (NaN) when every weight is 0.
"""

from __future__ import annotations

import numpy as np

from bandits.ope import ci, diagnostics
from bandits.ope.types import Estimate, Feedback

NAME = "snips"


def estimate(fb: Feedback, *, level: float = ci.LEVEL, n_boot: int = ci.N_BOOT, seed: int = ci.SEED) -> Estimate:
    w, r = fb.weights, fb.reward
    total = float(w.sum())
    if total <= 0:
        nan = float("nan")
        return Estimate(NAME, nan, nan, nan, fb.n, 0.0, nan, level, ci.METHOD, diagnostics.warnings(fb))
    value = float(np.dot(w, r) / total)
    # delta method for a ratio of means
    std_err = float(np.sqrt(np.sum((w * (r - value)) ** 2)) / total)
    low, high = ci.bootstrap_ratio(w * r, w, level=level, n_boot=n_boot, seed=seed)
    return Estimate(NAME, value, low, high, fb.n, diagnostics.ess(w), std_err, level, ci.METHOD,
                    diagnostics.warnings(fb))

"""Doubly robust: V = mean(q_target + w * (r - q_logged)).

The direct method (the reward model's value of the target, q_target) plus an
IPS correction of the model's error on the logged action. Unbiased if either
the logged probabilities or the reward model are right; with a perfect
reward model the correction has mean 0 and DR is the direct method. The
reward model should be fitted on other rows than it predicts (cross-fitting,
bandits/ope/reward_model.py), or its overfitting leaks into the estimate.
"""

from __future__ import annotations

from bandits.ope import ci, diagnostics
from bandits.ope.types import Estimate, Feedback

NAME = "dr"


def estimate(fb: Feedback, *, level: float = ci.LEVEL, n_boot: int = ci.N_BOOT, seed: int = ci.SEED) -> Estimate:
    if fb.q_logged is None or fb.q_target is None:
        raise ValueError("DR needs reward-model values (Feedback.q_logged and q_target)")
    v = fb.q_target + fb.weights * (fb.reward - fb.q_logged)
    low, high = ci.bootstrap_ratio(v, level=level, n_boot=n_boot, seed=seed)
    return Estimate(NAME, float(v.mean()) if fb.n else float("nan"), low, high, fb.n, diagnostics.ess(fb.weights),
                    ci.mean_std_err(v), level, ci.METHOD, diagnostics.warnings(fb))

"""Off-policy evaluation: estimate a target policy's value from logs of another.

One estimator per module (ips, snips, dr), the confidence intervals they
share (ci), the diagnostics (diagnostics) and the reward model DR needs
(reward_model). Inputs are plain arrays in a frozen `Feedback`: this library
never reads logs; the service's glue (decision/experiments) builds them.
"""

from bandits.ope.types import Estimate, Feedback

ESTIMATORS = ("ips", "snips", "dr")


def estimate_all(feedback: Feedback, **kw) -> list[Estimate]:
    """IPS, SNIPS and, when the feedback carries reward-model values, DR."""
    from bandits.ope import dr, ips, snips

    out = [ips.estimate(feedback, **kw), snips.estimate(feedback, **kw)]
    if feedback.q_logged is not None:
        out.append(dr.estimate(feedback, **kw))
    return out


__all__ = ["ESTIMATORS", "Estimate", "Feedback", "estimate_all"]

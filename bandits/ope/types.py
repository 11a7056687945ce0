"""The types every estimator speaks: logged feedback in, an estimate out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _vector(name: str, x: Any, n: int | None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows, expected {n}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    a = a.copy()
    a.flags.writeable = False
    return a


@dataclass(frozen=True, slots=True, eq=False)
class Feedback:
    """One row per logged example, for one target policy.

    reward       observed reward of the logged action
    pscore       the logging policy's probability of the logged action, (0, 1]
    target       the target policy's probability of the logged action, [0, 1]
    q_logged     reward model's prediction for the logged action (DR)
    q_target     reward model's prediction averaged over the target policy's
                 distribution on the row's actions: the direct method (DR)
    unsupported  target probability on actions the logging policy gave
                 probability 0 in that row (diagnostics only)
    """

    reward: np.ndarray
    pscore: np.ndarray
    target: np.ndarray
    q_logged: np.ndarray | None = None
    q_target: np.ndarray | None = None
    unsupported: np.ndarray | None = None
    weights: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        reward = _vector("reward", self.reward, None)
        n = reward.shape[0]
        pscore = _vector("pscore", self.pscore, n)
        if ((pscore <= 0) | (pscore > 1)).any():
            bad = pscore[(pscore <= 0) | (pscore > 1)][0]
            raise ValueError(f"pscore must be in (0, 1]: found {bad!r} (logs without usable probabilities?)")
        target = _vector("target", self.target, n)
        if ((target < -1e-9) | (target > 1 + 1e-9)).any():
            raise ValueError("target probabilities must be in [0, 1]")
        object.__setattr__(self, "reward", reward)
        object.__setattr__(self, "pscore", pscore)
        object.__setattr__(self, "target", np.clip(target, 0.0, 1.0))
        if (self.q_logged is None) != (self.q_target is None):
            raise ValueError("q_logged and q_target go together (both or neither)")
        for name in ("q_logged", "q_target", "unsupported"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, _vector(name, v, n))
        w = self.target / pscore
        w.flags.writeable = False
        object.__setattr__(self, "weights", w)

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])


@dataclass(frozen=True, slots=True)
class Estimate:
    estimator: str  # "ips" | "snips" | "dr"
    value: float
    low: float  # confidence interval, at `level`
    high: float
    n: int
    ess: float  # effective sample size of the importance weights
    std_err: float  # normal-approximation standard error (for reference)
    level: float = 0.95
    ci_method: str = ""
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "value": self.value, "low": self.low, "high": self.high, "n": self.n,
                "ess": self.ess, "std_err": self.std_err, "level": self.level, "ci_method": self.ci_method,
                "warnings": list(self.warnings)}

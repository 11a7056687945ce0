"""Apprentice mode: when has the learned policy earned the switch?

An apprentice arm serves its baseline; the learner trains the arm's own
policy on the logs. Two estimates, over a sliding window of recent joined
decisions of the placement (docs/LEARNING.md, "Apprentice mode"):

- the baseline's value: the mean rank-1 reward of the apprentice arm's own
  decisions (on-policy: the baseline served them), with its standard error;
- the learned policy's value: SNIPS over the placement's decisions whose
  logging policy gave every action a positive probability (the uniform
  holdout, an exploring champion, an epsilon baseline), with weight
  w = pi(a | x) / p_logged(a | x), pi evaluated *before* the model trains on
  that decision (progressive validation: never scored on what it learned),
  and a delta-method standard error.

It graduates when LCB = SNIPS - z * se > the baseline's mean, both windows
holding at least `min_examples` decisions. z = 2.33 (one-sided 99%): the
check runs at every snapshot, and repeated looks inflate the error rate of
any fixed-level test; a stricter z keeps false switches rare, and a wrong
switch is recoverable (`nba models demote`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from decision.catalog import Apprentice

BLOCK = 250  # decisions per block of the sliding window
BLOCKS = 20  # window = up to BLOCK * BLOCKS decisions (plus the filling block)
Z = 2.33


@dataclass(slots=True)
class _Ips:
    n: int = 0
    sw: float = 0.0
    swr: float = 0.0
    sw2: float = 0.0
    sw2r: float = 0.0
    sw2r2: float = 0.0

    def add(self, w: float, r: float) -> None:
        self.n += 1
        self.sw += w
        self.swr += w * r
        self.sw2 += w * w
        self.sw2r += w * w * r
        self.sw2r2 += w * w * r * r

    def merge(self, o: _Ips) -> None:
        self.n += o.n
        self.sw += o.sw
        self.swr += o.swr
        self.sw2 += o.sw2
        self.sw2r += o.sw2r
        self.sw2r2 += o.sw2r2


@dataclass(slots=True)
class _Mean:
    n: int = 0
    s: float = 0.0
    s2: float = 0.0

    def add(self, r: float) -> None:
        self.n += 1
        self.s += r
        self.s2 += r * r

    def merge(self, o: _Mean) -> None:
        self.n += o.n
        self.s += o.s
        self.s2 += o.s2


@dataclass(frozen=True, slots=True)
class Evidence:
    learned: float | None  # SNIPS estimate of the learned policy's reward
    learned_se: float | None
    learned_lcb: float | None
    eval_decisions: int
    effective_n: float  # (sum w)^2 / sum w^2
    baseline: float | None  # on-policy mean reward of the baseline
    baseline_se: float | None
    baseline_decisions: int
    min_examples: int
    z: float = Z

    @property
    def ready(self) -> bool:
        return self.eval_decisions >= self.min_examples and self.baseline_decisions >= self.min_examples

    @property
    def beats(self) -> bool:
        return (self.ready and self.learned_lcb is not None and self.baseline is not None
                and self.learned_lcb > self.baseline)

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimator": "snips", "learned": self.learned, "learned_se": self.learned_se,
            "learned_lcb": self.learned_lcb, "eval_decisions": self.eval_decisions,
            "effective_n": self.effective_n, "baseline": self.baseline, "baseline_se": self.baseline_se,
            "baseline_decisions": self.baseline_decisions, "min_examples": self.min_examples, "z": self.z,
        }


class Judge:
    """Sliding-window evidence for one apprentice arm; its state is small
    (per-block sums) and goes into the learner's checkpoint."""

    def __init__(self, spec: Apprentice, state: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.ips: deque[_Ips] = deque(maxlen=BLOCKS)
        self.base: deque[_Mean] = deque(maxlen=BLOCKS)
        self._ips = _Ips()
        self._base = _Mean()
        if state:
            self.ips.extend(_Ips(*b) for b in state.get("ips", ()))
            self.base.extend(_Mean(*b) for b in state.get("base", ()))
            self._ips = _Ips(*state.get("ips_open", ())) if state.get("ips_open") else _Ips()
            self._base = _Mean(*state.get("base_open", ())) if state.get("base_open") else _Mean()

    def observe_learned(self, weight: float, reward: float) -> None:
        self._ips.add(weight, reward)
        if self._ips.n >= BLOCK:
            self.ips.append(self._ips)
            self._ips = _Ips()

    def observe_baseline(self, reward: float) -> None:
        self._base.add(reward)
        if self._base.n >= BLOCK:
            self.base.append(self._base)
            self._base = _Mean()

    def evidence(self) -> Evidence:
        ips = _Ips()
        for b in (*self.ips, self._ips):
            ips.merge(b)
        base = _Mean()
        for b in (*self.base, self._base):
            base.merge(b)
        learned = se = lcb = None
        eff = 0.0
        if ips.n and ips.sw > 0:
            v = ips.swr / ips.sw
            var = max(0.0, ips.sw2r2 - 2 * v * ips.sw2r + v * v * ips.sw2) / (ips.sw * ips.sw)
            learned, se = v, math.sqrt(var)
            lcb = v - Z * se
            eff = ips.sw * ips.sw / ips.sw2 if ips.sw2 else 0.0
        b_mean = b_se = None
        if base.n:
            b_mean = base.s / base.n
            b_var = max(0.0, base.s2 / base.n - b_mean * b_mean)
            b_se = math.sqrt(b_var / base.n)
        return Evidence(learned, se, lcb, ips.n, eff, b_mean, b_se, base.n, self.spec.min_examples)

    def state(self) -> dict[str, Any]:
        def ips(b: _Ips) -> list:
            return [b.n, b.sw, b.swr, b.sw2, b.sw2r, b.sw2r2]

        def mean(b: _Mean) -> list:
            return [b.n, b.s, b.s2]

        return {"ips": [ips(b) for b in self.ips], "base": [mean(b) for b in self.base],
                "ips_open": ips(self._ips), "base_open": mean(self._base)}

"""Fixed priority: the business rule a marketer would write by hand.

Score = value x priority; the top score wins, ties go to the earlier action.
With `epsilon` > 0 the policy explores epsilon-greedily (every action gets
epsilon/n, the top one 1 - epsilon + epsilon/n), which makes its logs usable
for off-policy evaluation; with epsilon = 0 (the default) the choice is
deterministic and its logs carry probability 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bandits.policy import Action, Context, FixedRule, Ranking, check_actions, ranking

KIND = "fixed_priority"
PARAMS = frozenset({"epsilon"})


class FixedPriorityPolicy(FixedRule):
    kind = KIND

    def __init__(self, name: str = KIND, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, params)
        self.epsilon = float(self.params.get("epsilon", 0.0))
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"params.epsilon: must be in [0, 1], got {self.epsilon!r}")
        self.version = "fixed_priority" if self.epsilon == 0 else f"fixed_priority:eps={self.epsilon:g}"

    def rank(self, context: Context, actions: Sequence[Action]) -> Ranking:
        n = check_actions(actions)
        scores = np.fromiter((a.value * a.priority for a in actions), dtype=np.float64, count=n)
        top = int(np.argmax(scores))  # first maximum: ties broken by order
        p = np.full(n, self.epsilon / n)
        p[top] += 1.0 - self.epsilon
        return ranking(p, scores)

    def __repr__(self) -> str:
        return f"FixedPriorityPolicy(name={self.name!r}, epsilon={self.epsilon!r})"

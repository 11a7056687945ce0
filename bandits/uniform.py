"""Uniform random: the control holdout and the cleanest logging policy for
off-policy evaluation (every action has probability exactly 1/n)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bandits.policy import Action, Context, FixedRule, Ranking, check_actions, ranking

KIND = "uniform"
PARAMS: frozenset[str] = frozenset()


class UniformPolicy(FixedRule):
    kind = KIND
    version = "uniform"

    def rank(self, context: Context, actions: Sequence[Action]) -> Ranking:
        n = check_actions(actions)
        return ranking(np.full(n, 1.0 / n), np.zeros(n))

    def __repr__(self) -> str:
        return f"UniformPolicy(name={self.name!r})"

"""Uniform random: the control holdout and the cleanest logging policy for
off-policy evaluation (every action has probability exactly 1/n)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bandits.policy import Action, Context, Ranking, check_actions, pack, ranking, unpack

KIND = "uniform"
PARAMS: frozenset[str] = frozenset()


class UniformPolicy:
    kind = KIND
    learns = False
    version = "uniform"

    def __init__(self, name: str = "uniform", params: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.params: Mapping[str, Any] = dict(params or {})

    def rank(self, context: Context, actions: Sequence[Action]) -> Ranking:
        n = check_actions(actions)
        return ranking(np.full(n, 1.0 / n), np.zeros(n))

    def learn(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
              reward: float) -> None:
        return None

    def save(self) -> bytes:
        return pack({"kind": KIND, "name": self.name, "params": dict(self.params)})

    @classmethod
    def load(cls, data: bytes) -> UniformPolicy:
        header, _ = unpack(data, KIND)
        return cls(header.get("name", KIND), header.get("params") or {})

    def __repr__(self) -> str:
        return f"UniformPolicy(name={self.name!r})"

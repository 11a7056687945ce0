"""The policies in force: one per (placement, arm), built from the catalog.

Learning policies (VW) get their model from the learner's snapshots (see the
learning-loop docs); swapping one replaces the object between requests, never
mutates it under a running decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bandits.policy import Policy
from bandits.registry import make_policy
from decision.catalog import Catalog


@dataclass
class PolicyBook:
    policies: dict[tuple[str, str], Policy] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog: Catalog, *, seed: int = 0, previous: "PolicyBook | None" = None) -> "PolicyBook":
        book = cls()
        for placement in catalog.placements.values():
            for arm in placement.arms:
                cfg = catalog.policies[arm.policy]
                key = (placement.id, arm.name)
                old = previous.policies.get(key) if previous else None
                if old is not None and old.name == cfg.name and old.kind == cfg.kind and getattr(old, "params", None) == cfg.params:
                    book.policies[key] = old  # keep a learned model across catalog reloads
                    continue
                book.policies[key] = make_policy(
                    cfg.kind, cfg.name, cfg.params, reward_range=placement.reward.range, seed=seed
                )
        return book

    def get(self, placement: str, arm: str) -> Policy:
        return self.policies[(placement, arm)]

    def swap(self, placement: str, arm: str, policy: Policy) -> None:
        self.policies[(placement, arm)] = policy

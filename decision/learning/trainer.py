"""The models the learner trains, and which logged decisions train which.

One model per (placement, arm) whose policy learns (`policy.learns`; for an
apprentice arm, the arm's own policy, not the baseline it serves).

Which decisions train a model (docs/LEARNING.md, "What trains what"):
- `learn_from: own` (the default): the arm's own decisions and those of the
  placement's uniform-random arms. Every example carries the probability it
  was logged with, so examples from a uniform holdout are as valid for
  IPS/DR/MTR as the arm's own, and they are the cleanest exploration data
  there is. The arms stay independent otherwise: a challenger is judged on
  what it learned from its own traffic, and a broken arm cannot poison
  another one.
- `learn_from: all_arms`: every arm's decisions of the placement (faster
  learning for the champion; arms are no longer independent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bandits.policy import Context, Policy, PolicyLoadError
from bandits.registry import load_policy, make_policy
from decision.catalog import Apprentice, Catalog, PolicyConfig
from decision.learning.apprentice import Judge
from decision.feature_tables import FeatureTables
from decision.learning.examples import (
    LoggedDecision,
    clip,
    full_support,
    greedy,
    item_examples,
    refused_at_commit,
)
from decision.learning.join import Joined
from decision.learning.trainproc import TrainProcess

log = logging.getLogger("nba.learner")


def canonical(value: Any) -> Any:
    """Params as plain JSON data (tuples -> lists, mapping proxies -> dicts),
    so that catalog params and params read back from a snapshot compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=lambda o: dict(o) if isinstance(o, Mapping) else list(o)))


def fingerprint(config: PolicyConfig, reward_range: tuple[float, float]) -> str:
    """What must match for a snapshot to continue (learner) or serve
    (replicas) under a catalog: kind, name, params, reward range."""
    doc = {"kind": config.kind, "name": config.name, "params": canonical(dict(config.params)),
           "reward_range": [float(x) for x in reward_range]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def policy_fingerprint(policy: Policy, reward_range: tuple[float, float]) -> str:
    """The same fingerprint, read from a loaded policy (`reward_range` for a
    policy that does not scale rewards and so does not record one)."""
    rr = getattr(policy, "reward_range", None) or reward_range
    return fingerprint(PolicyConfig(policy.name, policy.kind, dict(policy.params)), tuple(rr))


def load_compatible(data: bytes, config: PolicyConfig, reward_range: tuple[float, float]) -> Policy:
    """load_policy(data), refused (PolicyLoadError) unless it is the policy the
    catalog describes."""
    policy = load_policy(data)
    want = fingerprint(config, reward_range)
    got = policy_fingerprint(policy, reward_range)
    if got != want:
        raise PolicyLoadError(
            f"snapshot is of policy {policy.name!r} (kind {policy.kind}, params {canonical(dict(policy.params))}, "
            f"reward range {list(getattr(policy, 'reward_range', ()) or ())}); the catalog says {config.name!r} "
            f"(kind {config.kind}, params {canonical(dict(config.params))}, reward range {list(reward_range)})")
    return policy


@dataclass(slots=True)
class Interval:
    """Learning health since the last snapshot."""

    examples: int = 0
    reward_sum: float = 0.0
    own_decisions: int = 0  # decisions the model itself served (greedy share's denominator)
    greedy: int = 0
    top_p_sum: float = 0.0

    def summary(self) -> dict[str, float | None]:
        return {
            "reward_rate": self.reward_sum / self.examples if self.examples else None,
            "greedy_share": self.greedy / self.own_decisions if self.own_decisions else None,
            "mean_top_p": self.top_p_sum / self.own_decisions if self.own_decisions else None,
        }


@dataclass(slots=True)
class Model:
    placement: str
    arm: str
    config: PolicyConfig
    reward_range: tuple[float, float]
    policy: Policy
    fingerprint: str
    version: int = 0  # the published version this state descends from (0: fresh)
    next_version: int = 1
    examples: int = 0  # examples learned by this lineage
    apprentice: Apprentice | None = None
    judge: Judge | None = None
    graduated: bool = False
    interval: Interval = field(default_factory=Interval)
    served_seen: int | None = None  # the served pointer when last looked at

    @property
    def key(self) -> tuple[str, str]:
        return (self.placement, self.arm)

    @property
    def mid(self) -> str:
        return f"{self.placement}:{self.arm}"

    def health(self) -> dict[str, Any]:
        loss = getattr(self.policy, "average_loss", None)
        return {"examples": self.examples, "average_loss": loss, **self.interval.summary()}


class Trainer:
    def __init__(self, catalog: Catalog, *, seed: int = 0, learn_from: str | None = None,
                 tables: FeatureTables | None = None, process: TrainProcess | None = None) -> None:
        self.seed = seed
        self.process = process  # where the models live and learn (None: here)
        self.learn_from = learn_from
        self.catalog = catalog
        # the resolver whose interned Actions the learner's records hold
        self.tables = tables if tables is not None else FeatureTables(None, catalog)
        self.models: dict[tuple[str, str], Model] = {}
        self._by_placement: dict[str, list[Model]] = {}
        self._holdout_policies: frozenset[str] = frozenset()
        self._routes: dict[tuple[str, str, str], tuple[Model, ...]] = {}  # (placement, arm, policy) -> models
        self._judged: frozenset[str] = frozenset()  # placements with an apprentice model
        self._learns_cache: dict[str, bool] = {}
        self.set_catalog(catalog)

    # -- configuration -------------------------------------------------------

    def learning_arms(self, catalog: Catalog) -> dict[tuple[str, str], tuple[PolicyConfig, tuple[float, float],
                                                                          Apprentice | None]]:
        out = {}
        for placement in catalog.placements.values():
            for arm in placement.arms:
                cfg = catalog.policies[arm.policy]
                if self._learns(cfg, placement.reward.range):
                    out[(placement.id, arm.name)] = (cfg, placement.reward.range, arm.apprentice)
        return out

    def _learns(self, cfg: PolicyConfig, reward_range: tuple[float, float]) -> bool:
        fp = fingerprint(cfg, reward_range)
        known = self._learns_cache.get(fp)
        if known is None:
            known = self._learns_cache[fp] = bool(self._local_policy(cfg, reward_range).learns)
        return known

    def _local_policy(self, cfg: PolicyConfig, reward_range: tuple[float, float]) -> Policy:
        return make_policy(cfg.kind, cfg.name, cfg.params, reward_range=reward_range, seed=self.seed)

    def new_policy(self, cfg: PolicyConfig, reward_range: tuple[float, float]) -> Policy:
        """A fresh policy: in the training process when there is one (only
        policies that learn become models)."""
        if self.process is not None:
            return self.process.new(cfg.kind, cfg.name, cfg.params, reward_range, self.seed)
        return self._local_policy(cfg, reward_range)

    def set_catalog(self, catalog: Catalog) -> tuple[list[Model], list[Model]]:
        """Adopt a catalog. Returns (models that start fresh, models dropped).
        A model whose policy config and reward range are unchanged keeps its
        learned state; a changed one starts a new lineage."""
        wanted = self.learning_arms(catalog)
        fresh: list[Model] = []
        dropped = [m for k, m in self.models.items() if k not in wanted]
        models: dict[tuple[str, str], Model] = {}
        for key, (cfg, rr, apprentice) in wanted.items():
            fp = fingerprint(cfg, rr)
            old = self.models.get(key)
            if old is not None and old.fingerprint == fp:
                old.config = cfg
                old.apprentice = apprentice
                if apprentice is None:
                    old.judge = None
                elif old.judge is None:
                    old.judge = Judge(apprentice)
                else:
                    old.judge.spec = apprentice
                models[key] = old
                continue
            m = Model(key[0], key[1], cfg, rr, self.new_policy(cfg, rr), fp, apprentice=apprentice,
                      judge=Judge(apprentice) if apprentice else None)
            if old is not None:
                m.next_version = old.next_version
                dropped.append(old)
            fresh.append(m)
            models[key] = m
        self.models = models
        self._by_placement = {}
        for m in models.values():
            self._by_placement.setdefault(m.placement, []).append(m)
        self._holdout_policies = frozenset(n for n, c in catalog.policies.items() if c.kind == "uniform")
        self._routes = {}
        self._judged = frozenset(m.placement for m in models.values() if m.judge is not None)
        if catalog is not self.catalog:
            self.catalog = catalog
            self.tables.set_catalog(catalog)
        return fresh, dropped

    # -- routing ---------------------------------------------------------------

    def routes(self, record: LoggedDecision) -> tuple[Model, ...]:
        """The models that train on this decision (a function of its
        placement, arm and policy under the catalog: cached)."""
        key = (record.placement, record.arm, record.policy)
        routes = self._routes.get(key)
        if routes is None:
            models = self._by_placement.get(record.placement, ())
            if not models:
                routes = ()
            elif ((self.learn_from or self.catalog.placements[record.placement].learn_from) == "all_arms"
                  or record.policy in self._holdout_policies):
                routes = tuple(models)
            else:
                routes = tuple(m for m in models if m.arm == record.arm)
            self._routes[key] = routes
        return routes

    def judges(self, record: LoggedDecision) -> list[Model]:
        """Apprentice models that use this decision as evidence."""
        if record.placement not in self._judged:
            return []
        return [m for m in self._by_placement.get(record.placement, ())
                if m.judge is not None and not m.graduated and (m.arm == record.arm or full_support(record))]

    def wants(self, record: LoggedDecision) -> bool:
        if record.fallback or not record.items or not record.actions or refused_at_commit(record):
            return False
        return bool(self.routes(record) or self.judges(record))

    # -- learning --------------------------------------------------------------

    def rewards(self, joined: Joined) -> tuple[float, ...]:
        """Each item's reward (record.items order): the sum of its events
        clipped to the placement's reward range, or the record's default."""
        record = joined.record
        sums = joined.sums
        if len(sums) == 1 and sums[0] is None:  # the common case: one item, no event
            return (record.default_reward,)
        placement = self.catalog.placements.get(record.placement)
        bounds = placement.reward.range if placement is not None else (float("-inf"), float("inf"))
        default = record.default_reward
        return tuple([default if s is None else clip(s, bounds) for s in sums])

    def learn(self, joined: Joined, rewards: tuple[float, ...] | None = None) -> int:
        """Train every model this decision is for; returns the examples learned."""
        record = joined.record
        if record.placement not in self.catalog.placements:
            return 0
        if rewards is None:
            rewards = self.rewards(joined)
        # (actions, chosen, probability, reward) per example, in rank order
        items = record.items
        if len(items) == 1:  # the common case: one example over every action (item_examples, inlined)
            item = items[0]
            context = Context(record.context)
            examples = ((record.actions, item.action, item.probability, rewards[0]),)
            reward_sum = rewards[0]
        else:
            by_rank = {item.rank: rewards[n] for n, item in enumerate(items)}  # rewards are in items order
            slate = item_examples(record)
            context = slate[0].context
            examples = tuple((ex.actions, ex.chosen, ex.probability, by_rank[ex.rank]) for ex in slate)
            reward_sum = sum([ex[3] for ex in examples])

        if record.placement in self._judged:
            actions, chosen, probability, r1 = examples[0]
            for m in self.judges(record):
                # progressive: the evidence uses the model before it learns this decision
                if m.arm == record.arm:
                    m.judge.observe_baseline(r1)
                if full_support(record):
                    observe = _observe(m.judge, probability, r1)
                    later = getattr(m.policy, "judge", None)
                    if later is not None:  # in the training process, before it learns this decision
                        later(context, actions, chosen, observe)
                    else:
                        observe(float(m.policy.rank(context, actions).probabilities[chosen]))

        trained = 0
        n = len(examples)
        for m in self.routes(record):
            # VW reuses the parsed examples of the interned Actions (the same model as learn's)
            learn = getattr(m.policy, "learn_interned", None) or m.policy.learn
            for actions, chosen, probability, reward in examples:
                learn(context, actions, chosen, probability, reward)
            m.examples += n
            iv = m.interval
            iv.examples += n
            iv.reward_sum += reward_sum
            if record.arm == m.arm and record.policy == m.config.name:
                is_greedy, top = greedy(record)
                iv.own_decisions += 1
                iv.greedy += is_greedy
                iv.top_p_sum += top
            trained += n
        return trained

    def load_snapshot(self, m: Model, data: bytes) -> None:
        """Continue from saved bytes (PolicyLoadError when they do not fit)."""
        policy = load_compatible(data, m.config, m.reward_range)
        m.policy = self.process.load(data, policy) if self.process is not None else policy

    def reset(self, m: Model) -> None:
        m.policy = self.new_policy(m.config, m.reward_range)
        m.examples = 0
        m.version = 0


def _observe(judge: Judge, probability: float, reward: float) -> Callable[[float], None]:
    return lambda pi: judge.observe_learned(pi / probability, reward)

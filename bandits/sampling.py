"""Sampling: the only place a choice is drawn, always from an injected RNG.

A slate of k items is k sequential draws without replacement over distinct
groups (offers). At rank r the policy ranks only the actions still
available (every action sharing a group with an item already chosen is
removed), one action is drawn from that ranking, and the item carries the
probability it had *at that draw*, i.e. conditional on the items ranked
before it. The product of an item's probability and those before it is the
probability of the slate prefix. The learner replays this: each item is one
example over `remaining(actions, chosen_before)` (see docs/BANDITS.md).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from bandits.policy import Action, Context, Policy, Ranking


@dataclass(frozen=True, slots=True)
class SlateItem:
    index: int  # into the actions given to choose_slate
    probability: float  # conditional on the items ranked before it
    score: float
    rank: int  # 1-based


def sample(probabilities: np.ndarray | Sequence[float], rng: np.random.Generator) -> int:
    """Index drawn from `probabilities` by inverse CDF with one uniform draw.
    Zero-probability entries are never drawn."""
    return _draw(np.asarray(probabilities, dtype=np.float64).ravel().tolist(), rng)


def _draw(p: list[float], rng: np.random.Generator) -> int:
    # In plain Python: numpy's per-call overhead dominates on a few dozen
    # entries. The same numbers as np.cumsum (a running sum, in order) and
    # np.searchsorted(side="right") (bisect_right halves the same way).
    if not p:
        raise IndexError("cannot sample from an empty distribution")
    cdf = list(accumulate(p))
    total = cdf[-1]
    if not total > 0:
        raise ValueError("cannot sample from a distribution with no mass")
    i = bisect_right(cdf, rng.random() * total)
    # Guard against float rounding at the top end: fall back to the last
    # index with positive probability.
    if i >= len(cdf):
        i = max(j for j, x in enumerate(p) if x > 0)
    return i


def remaining(actions: Sequence[Action], chosen: Sequence[int]) -> list[int]:
    """Indices of the actions still available after the items `chosen`
    (in rank order): neither chosen nor sharing a non-empty group with one."""
    taken = set(chosen)
    groups = {actions[i].group for i in chosen if actions[i].group}
    return [i for i, a in enumerate(actions) if i not in taken and not (a.group and a.group in groups)]


def choose_slate(policy: Policy, context: Context, actions: Sequence[Action], k: int,
                 rng: np.random.Generator, *, first: Ranking | None = None) -> list[SlateItem]:
    """Up to k items from distinct groups, in rank order.

    `first` may pass the ranking of all `actions` the caller already has, so
    rank 1 does not rank twice. Fewer than k items come back when fewer
    than k groups are available.
    """
    items: list[SlateItem] = []
    available = list(range(len(actions)))
    for rank in range(1, k + 1):
        if not available:
            break
        if rank == 1 and first is not None:
            if len(first.probabilities) != len(actions):
                raise ValueError("`first` ranking does not match the actions")
            r = first
        else:
            r = policy.rank(context, actions if len(available) == len(actions) else [actions[i] for i in available])
        probabilities = r.probabilities.tolist()
        j = _draw(probabilities, rng)
        index = available[j]
        items.append(SlateItem(index, probabilities[j], r.scores.item(j), rank))
        g = actions[index].group
        available = [i for i in available if i != index and not (g and actions[i].group == g)]
    return items

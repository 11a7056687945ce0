"""Benchmark (not a test): does each exploration find the best action when
it learns from its own choices (on-policy), over several seeds?

    python -m bandits.bench_explore [--rounds 3000] [--seeds 10] [--good 0.5 --bad 0.3]

Three contexts (user segment A/B/C), five actions, each context with a
different best action paying 1 with probability `good` (the others `bad`).
Each round the policy ranks, the service's sampler draws, the policy learns
with the logged probability. At the end: in how many contexts the greedy
choice (top score) is the best action, per seed. Off-policy learning from
uniform logs is easy for every exploration (the contract tests); on-policy
is where explorations differ, and where a single seed proves nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np

from bandits.policy import Action, Context
from bandits.registry import make_policy
from bandits.sampling import sample

ACTIONS = [Action(f"a{i}", {"offer": {"id": f"a{i}"}}) for i in range(5)]
CONTEXTS = [Context({"user": {"segment": s}}) for s in "ABC"]
BEST = (1, 3, 4)


def run(params: Mapping[str, Any], seed: int, rounds: int, good: float, bad: float) -> int:
    """Number of contexts (of 3) whose greedy action is the best one after `rounds`."""
    policy = make_policy("vw", "sim", params, reward_range=(0.0, 1.0), seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        c = int(rng.integers(len(CONTEXTS)))
        r = policy.rank(CONTEXTS[c], ACTIONS)
        j = sample(r.probabilities, rng)
        reward = float(rng.random() < (good if j == BEST[c] else bad))
        policy.learn(CONTEXTS[c], ACTIONS, j, float(r.probabilities[j]), reward)
    return sum(int(np.argmax(policy.rank(ctx, ACTIONS).scores)) == BEST[c] for c, ctx in enumerate(CONTEXTS))


CONFIGS: list[dict[str, Any]] = [
    {"exploration": "epsilon"},
    {"exploration": "epsilon", "epsilon": 0.2},
    {"exploration": "softmax"},
    {"exploration": "bagging"},
    {"exploration": "squarecb"},
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--good", type=float, default=0.5)
    ap.add_argument("--bad", type=float, default=0.3)
    a = ap.parse_args(argv)
    print(f"{a.rounds} rounds, {a.seeds} seeds, best pays {a.good}, others {a.bad}")
    for params in CONFIGS:
        res = [run(params, s, a.rounds, a.good, a.bad) for s in range(a.seeds)]
        print(f"{params!s:<48} contexts right per seed {res}  all 3 right: {sum(r == 3 for r in res)}/{a.seeds}")


if __name__ == "__main__":
    main()

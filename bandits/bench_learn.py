"""Benchmark (not a test): learn throughput and rank latency of VWPolicy.

    python -m bandits.bench_learn [--examples 20000] [--actions 20] [--exploration epsilon]

One core, one workspace, features shaped like the service's (user, context
shared; offer, content, channel per action) with the default interactions.
Prints, per stage, the time per example and examples/second:
- learn, full path: Context/Action -> example text -> VW parse -> learn,
  with the Action objects reused (their VW lines are cached by identity)
  and with fresh feature dicts per example (nothing cached but names and
  categorical tokens)
- learn, VW only: pre-built text -> VW parse -> learn (what a text/dsjson
  replay costs VW itself)
- text building alone
- rank: pyvw `predict(str)` vs `parse` + `predict` (pyvw's Python wrapper)
  vs the native parse path VWPolicy.rank uses; p50/p99 of VWPolicy.rank.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bandits.policy import Action, Context
from bandits.vw import VWPolicy, example_text


def shared_features(rng: np.random.Generator, i: int) -> dict:
    """The i-th synthetic shared features, shaped like the service's: 8 user
    and 4 context features (the learner's benchmark draws the same ones)."""
    return {
        "user": {"segment": f"s{rng.integers(8)}", "country": f"c{rng.integers(20)}",
                 "tenure_y": float(rng.integers(0, 20)), "spend_90d": float(rng.gamma(2.0, 50.0)),
                 "seg_vip": 1.0, "ev7_view": float(rng.integers(0, 5)), "ev7_click": float(rng.integers(0, 2)),
                 "age_band": f"a{rng.integers(6)}"},
        "context": {"hour_of_week": str(rng.integers(168)),
                    "daypart": ("night", "morning", "afternoon", "evening")[i % 4],
                    "page": f"p{rng.integers(5)}", "device_class": ("mobile", "desktop")[i % 2]},
    }


def make_data(n: int, n_actions: int, seed: int = 0) -> tuple[list[Context], list[Action]]:
    rng = np.random.default_rng(seed)
    contexts = [Context(shared_features(rng, i)) for i in range(n)]
    actions = [
        Action(f"o{j}/c{j}/email", {
            "offer": {"id": f"o{j}", "value": float(10 + j), "margin": 0.2, f"tag_t{j % 4}": 1.0,
                      "category": f"k{j % 5}"},
            "content": {"id": f"c{j}", "template": f"tpl{j % 3}"},
            "channel": {"id": ("email", "web", "app")[j % 3]},
        }, value=float(10 + j), group=f"o{j}")
        for j in range(n_actions)
    ]
    return contexts, actions


def _report(label: str, seconds: float, n: int) -> float:
    rate = n / seconds
    print(f"{label:<52} {seconds / n * 1e6:8.1f} us/example {rate:10,.0f} /s")
    return rate


def run(examples: int, n_actions: int, exploration: str, repeats: int = 3) -> dict[str, float]:
    """Each stage runs `repeats` times (a fresh policy each time) and reports
    its best run: on a shared machine the best run is the one least disturbed."""
    contexts, actions = make_data(examples, n_actions)
    rng = np.random.default_rng(1)
    chosen = [int(x) for x in rng.integers(0, n_actions, size=examples)]
    rewards = [float(x) for x in (rng.random(examples) < 0.1)]
    p = 1.0 / n_actions
    m = min(examples, 5000)
    params = {"exploration": exploration}
    out: dict[str, float] = {}

    def fresh() -> VWPolicy:
        return VWPolicy("bench", params, reward_range=(0.0, 1.0), seed=1)

    def best(stage) -> float:
        return min(stage() for _ in range(repeats))

    def learn_full() -> float:
        policy = fresh()
        t = time.perf_counter()
        for c, a, r in zip(contexts, chosen, rewards):
            policy.learn(c, actions, a, p, r)
        return time.perf_counter() - t

    def learn_cold() -> float:
        # Every example brings its own copies of the action features, as when
        # a learner decodes each logged record without interning actions. The
        # copies are made outside the timed call and dropped after it.
        policy, spent = fresh(), 0.0
        for c, a, r in zip(contexts[:m], chosen, rewards):
            acts = [Action(x.id, {ns: dict(f) for ns, f in x.features.items()}, x.value, x.priority, x.group)
                    for x in actions]
            t = time.perf_counter()
            policy.learn(c, acts, a, p, r)
            spent += time.perf_counter() - t
        return spent

    texts = [fresh().example(c, actions, a, p, r) for c, a, r in zip(contexts, chosen, rewards)]

    def learn_vw() -> float:
        policy = fresh()
        t = time.perf_counter()
        for text in texts:
            policy.learn_text(text)
        return time.perf_counter() - t

    feats = [a.features for a in actions]

    def text_only() -> float:
        t = time.perf_counter()
        for c in contexts:
            example_text(c.features, feats, (0, -1.0, p))
        return time.perf_counter() - t

    trained = fresh()
    for c, a, r in zip(contexts[:m], chosen, rewards):
        trained.learn(c, actions, a, p, r)
    ws = trained._ws
    plain = [example_text(c.features, feats) for c in contexts[:m]]

    def predict_str() -> float:
        t = time.perf_counter()
        for text in plain:
            ws.predict(text)
        return time.perf_counter() - t

    def predict_pyvw_parsed() -> float:
        t = time.perf_counter()
        for text in plain:
            exs = ws.parse(text)
            ws.predict(exs)
            ws.finish_example(exs)
        return time.perf_counter() - t

    def predict_native() -> float:
        t = time.perf_counter()
        for text in plain:
            exs = ws._parse(text)
            ws.predict_multi(exs)
            exs[0].get_action_scores()
            ws._finish_example_multi_ex(exs)
        return time.perf_counter() - t

    learn_full()  # warm up: VW's weight pages, the text caches, the CPU clock
    out["learn_full"] = _report("learn, full path (features -> text -> VW)", best(learn_full), examples)
    out["learn_cold"] = _report("learn, full path, fresh action dicts per example", best(learn_cold), m)
    out["learn_vw"] = _report("learn, VW only (pre-built text -> parse -> learn)", best(learn_vw), examples)
    out["text"] = _report("example text building alone", best(text_only), examples)
    out["predict_str"] = _report("predict: pyvw predict(str)", best(predict_str), m)
    out["predict_pyvw_parsed"] = _report("predict: pyvw parse -> predict(examples) -> finish",
                                         best(predict_pyvw_parsed), m)
    out["predict_native"] = _report("predict: native parse -> predict_multi -> finish", best(predict_native), m)

    lat = np.empty(m)
    for i, c in enumerate(contexts[:m]):
        t0 = time.perf_counter()
        trained.rank(c, actions)
        lat[i] = time.perf_counter() - t0
    out["rank_p50_us"] = float(np.percentile(lat, 50) * 1e6)
    out["rank_p99_us"] = float(np.percentile(lat, 99) * 1e6)
    print(f"{'VWPolicy.rank latency (one run)':<52} p50 {out['rank_p50_us']:.1f} us  p99 {out['rank_p99_us']:.1f} us")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20_000)
    ap.add_argument("--actions", type=int, default=20)
    ap.add_argument("--exploration", default="squarecb", choices=("epsilon", "softmax", "bagging", "squarecb"))
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    print(f"{a.examples} examples, {a.actions} actions, exploration={a.exploration}, default interactions, "
          f"best of {a.repeats}")
    run(a.examples, a.actions, a.exploration, a.repeats)


if __name__ == "__main__":
    main()

"""`nba simulate`: a population with hidden true response rates drives the real
service through gRPC, rewards go back through the Reward RPC, the real
learner trains and publishes snapshots, and the service hot-swaps them.

What runs (all real, in one process, on a private embedded Redis unless
--redis-url is given): the service (decision/server.App) on a local port
with a ManualClock, so days pass in seconds; the learner
(decision/learning/learner.Learner, event clock) between rounds; the
service's model watcher picks each new snapshot up. Only the people are
simulated.

The population (like the seed cases of USE_CASES.md): standard subscribers
(premium up-sell), sports fans (the sports add-on), families (the family
plan), cart abandoners ("did you forget something?"), churn risks (the
retention offer) and anonymous visitors (the free trial). Each persona has
a hidden click rate per offer and a channel preference (app lovers click
more in the app); the truth also has
- fatigue: the rate of an offer falls by the factor `fatigue` for every
  exposure of it the person ignored in the last 7 days;
- late rewards: clicks arrive after an exponential delay (mean 10 min); a
  share `late_share` arrives after the join window and counts as the default.

Phases: `train` decisions in `rounds` rounds among `persons` people, the
learner run after each; then `eval` decisions with the model frozen, among
a fresh cohort of `eval_persons` people. The cohort is new on purpose: the
learned policy fatigues its own people on their favourite offer, which no
off-policy estimate from other arms' logs can see, so on the training
cohort its on-policy value falls below what OPE on the holdout's logs
predicts (a real limit of OPE, which the simulation shows: run with
--eval-persons small). Printed: per arm, the expected
reward per decision (true rate of what was shown), the oracle's (best
allowed action each time) and the uniform policy's (mean over the allowed
actions), and the cumulative regret against both. The check at the end:
the off-policy estimate (DR, and IPS/SNIPS) of the served learned model on
the uniform holdout's eval logs against the champion arm's on-policy
result over the same period: PASS when the on-policy mean lies inside the
DR estimate's 95% interval (exit 0), else exit 3.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import shutil
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

START_MS = 1_767_600_000_000  # 2026-01-05T08:00:00Z, a Monday morning
WEEK_MS = 7 * 86_400_000
PLACEMENT = "home"

CATALOG = """\
# nba simulate's catalog: the seed cases' offers on a home-page placement.
version: 1
channels:
  - id: web
  - id: app
policies:
  - name: learned
    kind: vw
    params:
      exploration: squarecb
      cb_type: mtr
      gamma: 10
      learning_rate: 0.5
      interactions: [UO, UH, UC, XO, XH]
  - name: uniform
    kind: uniform
  - name: fixed_priority
    kind: fixed_priority
pressure:
  - {scope: person, limit: 12, window: 1d, channels: [web, app]}
offers:
  - id: premium_upgrade
    name: Upgrade to Premium
    value: 60
    priority: 8
    eligibility: '"paying_user" in segments && !("premium" in segments)'
    caps: [{scope: offer, limit: 3, window: 1d}]
    contents: [{id: premium_web, channel: web}, {id: premium_app, channel: app}]
  - id: family_plan
    name: Family plan
    value: 80
    priority: 6
    eligibility: '"paying_user" in segments'
    caps: [{scope: offer, limit: 3, window: 1d}]
    contents: [{id: family_web, channel: web}, {id: family_app, channel: app}]
  - id: sports_addon
    name: Live sports add-on
    value: 72
    priority: 4
    eligibility: '"paying_user" in segments'
    caps: [{scope: offer, limit: 3, window: 1d}]
    contents: [{id: sports_web, channel: web}, {id: sports_app, channel: app}]
  - id: cart_reminder
    name: Did you forget something?
    value: 4.99
    priority: 9
    eligibility: '"cart_abandoner" in segments'
    caps: [{scope: offer, limit: 2, window: 1d}]
    contents: [{id: cart_web, channel: web}, {id: cart_app, channel: app}]
  - id: retention_discount
    name: Stay with us
    value: 45
    priority: 10
    eligibility: '"churn_risk" in segments'
    caps: [{scope: offer, limit: 2, window: 1d}]
    contents: [{id: retention_web, channel: web}, {id: retention_app, channel: app}]
  - id: welcome_trial
    name: 30 days free
    value: 10
    priority: 7
    eligibility: '!("paying_user" in segments)'
    contents: [{id: trial_web, channel: web}, {id: trial_app, channel: app}]
  - id: brand_message
    name: New this week
    value: 0
    priority: 0
    purpose: service
    contents: [{id: brand_web, channel: web}, {id: brand_app, channel: app}]
placements:
  - id: home
    channels: [web, app]
    max_items: 1
    learn_from: all_arms
    salt: simulate
    arms:
      - {name: champion, policy: learned, share: 60}
      - {name: holdout, policy: uniform, share: 25}
      - {name: baseline, policy: fixed_priority, share: 15}
    fallback: {offer: brand_message, content: brand_web}
    reward:
      events: {click: 1}
      window: 1h
      default: 0
      range: [0, 1]
"""


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    segments: tuple[str, ...]
    attributes: dict[str, Any]
    rates: dict[str, float]  # hidden click rate per offer (web, before fatigue)
    app_factor: float = 1.0  # rate multiplier in the app (web: 1)
    mobile: float = 0.5  # share of visits from a mobile device
    anonymous: bool = False


PERSONAS = (
    Persona("subscriber", 0.25, ("paying_user",), {"tier": "standard", "tenure_months": 14},
            {"premium_upgrade": 0.16, "family_plan": 0.03, "sports_addon": 0.04, "brand_message": 0.02}),
    Persona("sports_fan", 0.15, ("paying_user", "sports_fan", "mobile_app_user"), {"tier": "standard"},
            {"premium_upgrade": 0.05, "family_plan": 0.02, "sports_addon": 0.32, "brand_message": 0.02},
            app_factor=1.5, mobile=0.8),
    Persona("family", 0.15, ("paying_user", "family"), {"tier": "standard", "household_size": 4},
            {"premium_upgrade": 0.06, "family_plan": 0.28, "sports_addon": 0.03, "brand_message": 0.02}),
    Persona("cart_abandoner", 0.10, ("paying_user", "premium", "cart_abandoner"), {"tier": "premium"},
            {"family_plan": 0.02, "sports_addon": 0.03, "cart_reminder": 0.40, "brand_message": 0.02},
            app_factor=0.6),
    Persona("churn_risk", 0.15, ("paying_user", "premium", "churn_risk"), {"tier": "premium", "churn_score": 0.85},
            {"family_plan": 0.01, "sports_addon": 0.02, "retention_discount": 0.30, "brand_message": 0.01}),
    Persona("visitor", 0.20, (), {}, {"welcome_trial": 0.10, "brand_message": 0.03}, app_factor=1.6, mobile=0.6,
            anonymous=True),
)


@dataclass
class SimConfig:
    persons: int = 1000
    train: int = 6000  # decisions while the learner runs between rounds
    rounds: int = 6
    eval: int = 3000  # decisions with the model frozen: on-policy vs off-policy
    eval_persons: int = 0  # the evaluation cohort, new people (0: twice `eval`)
    step_s: float = 15.0  # simulated seconds between two decisions
    fatigue: float = 0.85
    late_share: float = 0.05
    seed: int = 0
    bootstrap: int = 1000


SIZES = {
    "small": SimConfig(persons=1200, train=2400, rounds=4, eval=1600),
    "medium": SimConfig(),
    "large": SimConfig(persons=5000, train=30_000, rounds=15, eval=15_000),
}


@dataclass
class Person:
    key: str
    persona: Persona
    ignored: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))


class Truth:
    def __init__(self, fatigue: float) -> None:
        self.fatigue = fatigue

    def rate(self, person: Person, offer: str, channel: str, now_ms: int) -> float:
        base = person.persona.rates.get(offer, 0.01)
        if channel == "app":
            base *= person.persona.app_factor
        seen = person.ignored.get(offer)
        if seen:
            while seen and seen[0] < now_ms - WEEK_MS:
                seen.popleft()
            base *= self.fatigue ** len(seen)
        return min(base, 1.0)


@dataclass
class ArmTally:
    decisions: int = 0
    fallbacks: int = 0
    clicks: int = 0
    expected: float = 0.0
    oracle: float = 0.0
    uniform: float = 0.0

    def add(self, chosen: float, oracle: float, uniform: float, fallback: bool) -> None:
        self.decisions += 1
        self.fallbacks += fallback
        self.expected += chosen
        self.oracle += oracle
        self.uniform += uniform


@dataclass
class SimResult:
    phases: dict[str, dict[str, ArmTally]]
    curve: list[dict]  # cumulative, per arm, at each round end
    check: dict[str, Any]
    passed: bool
    learner: dict[str, int]


def population(n: int, rng: np.random.Generator, prefix: str = "sim") -> list[Person]:
    shares = np.array([p.share for p in PERSONAS])
    picks = rng.choice(len(PERSONAS), size=n, p=shares / shares.sum())
    out = []
    for i, k in enumerate(picks):
        persona = PERSONAS[int(k)]
        key = f"cookie:{prefix}-{i}" if persona.anonymous else f"pid:{prefix}-{i}"
        out.append(Person(key, persona))
    return out


def profile_doc(person: Person, now_ms: int):
    from decision.profiles_file import parse_line

    consent = {"marketing": "granted", "service": "granted", "personalization": "granted",
               "channel:web": "granted", "channel:app": "granted"}
    obj = {"id": person.key, "attributes": dict(person.persona.attributes), "segments": list(person.persona.segments),
           "consent": consent}
    return parse_line(obj, now_ms, person.key)


def _settings(**kw):
    from decision.server import Settings

    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in kw.items() if k in known})


async def simulate(cfg: SimConfig, *, redis_url: str | None = None, out: Path | None = None,
                   echo: Callable[[str], None] = print) -> SimResult:
    from decision.clock import ManualClock
    from decision.store.embedded import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="nba-simulate-"))
    embedded = None
    try:
        if redis_url is None:
            embedded = await asyncio.to_thread(EmbeddedRedis(tmp / "redis", appendonly=False).start)
            redis_url = embedded.url
        catalog_path = tmp / "catalog.yaml"
        catalog_path.write_text(CATALOG)
        clock = ManualClock(ms=START_MS)
        return await _simulate(cfg, redis_url, catalog_path, clock, out, echo)
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        shutil.rmtree(tmp, ignore_errors=True)


async def _simulate(cfg: SimConfig, redis_url: str, catalog_path: Path, clock, out: Path | None,
                    echo: Callable[[str], None]) -> SimResult:
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    from decision.learning.learner import Learner, LearnerConfig
    from decision.nba.v1 import decision_pb2 as pb
    from decision.nba.v1 import decision_pb2_grpc as pb_grpc
    from decision.server import App, load
    from decision.store.redis_store import ProfileWriter

    rng = np.random.default_rng(cfg.seed)
    truth = Truth(cfg.fatigue)
    people = population(cfg.persons, rng)
    # the evaluation cohort: people without history, so that neither arm's
    # people carry fatigue the other arm's logs cannot show (module docstring)
    cohort = population(cfg.eval_persons or 2 * cfg.eval, rng, "eval")
    catalog = load(catalog_path)
    window_ms = catalog.placements[PLACEMENT].reward.window_s * 1000

    app = await App(_settings(host="127.0.0.1", port=0, catalog=catalog_path, redis_url=redis_url, seed=cfg.seed,
                              reload_poll_s=3600.0, health_poll_s=5.0, redis_budget_s=2.0, drain_s=0.0),
                    clock=clock).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    stub = pb_grpc.DecisionServiceStub(channel)
    try:
        if await app.redis.xlen("nba:log:decisions"):
            raise SystemExit("nba simulate: the Redis given already holds decision logs; use an empty one")
        writer = ProfileWriter(app.redis)
        for p in people + cohort:
            await writer.write(profile_doc(p, clock.now_ms()))

        clicks: list[tuple[int, int, str, str]] = []  # (occurred_ms, seq, decision id, offer)
        seq = 0
        phases: dict[str, dict[str, ArmTally]] = {"train": defaultdict(ArmTally), "eval": defaultdict(ArmTally)}
        curve: list[dict] = []
        learner_counts: dict[str, int] = defaultdict(int)

        async def deliver(until_ms: int) -> None:
            while clicks and clicks[0][0] <= until_ms:
                at, n, did, offer = heapq.heappop(clicks)
                ts = Timestamp()
                ts.FromMilliseconds(at)
                await stub.Reward(pb.RewardRequest(decision_id=did, offer_id=offer, event_type="click",
                                                   event_id=f"click-{n}", occurred_at=ts))

        async def decide(phase: str) -> None:
            nonlocal seq
            now = clock.now_ms()
            await deliver(now)
            pool = people if phase == "train" else cohort
            person = pool[int(rng.integers(len(pool)))]
            device = "mobile" if rng.random() < person.persona.mobile else "desktop"
            kind, _, ident = person.key.partition(":")
            req = pb.DecideRequest(
                placement=PLACEMENT, explain=True,
                identity=pb.Identity(type=pb.IDENTITY_TYPE_COOKIE if kind == "cookie" else pb.IDENTITY_TYPE_PROFILE,
                                     id=ident),
                context={"page": pb.Value(string_value="home"), "device": pb.Value(string_value=device)})
            resp = await stub.Decide(req)
            allowed = [(e.offer_id, e.channel) for e in resp.explanations
                       if e.outcome in (pb.OUTCOME_CHOSEN, pb.OUTCOME_NOT_CHOSEN)]
            item = resp.items[0] if resp.items else None
            chosen = truth.rate(person, item.offer_id, item.channel, now) if item else 0.0
            rates = [truth.rate(person, o, c, now) for o, c in allowed] or [chosen]
            phases[phase][resp.arm].add(chosen, max(rates), float(np.mean(rates)), resp.fallback)
            if item is None:
                clock.advance(seconds=cfg.step_s)
                return
            if rng.random() < chosen:
                phases[phase][resp.arm].clicks += 1
                late = rng.random() < cfg.late_share
                delay = window_ms + rng.uniform(60_000, 2 * 3_600_000) if late else rng.exponential(600_000)
                seq += 1
                heapq.heappush(clicks, (now + int(delay), seq, resp.decision_id, item.offer_id))
            else:
                person.ignored[item.offer_id].append(now)
            clock.advance(seconds=cfg.step_s)

        def snapshot_curve(decisions: int) -> None:
            for arm, t in phases["train"].items():
                e = phases["eval"].get(arm, ArmTally())
                curve.append({"decisions": decisions, "time_ms": clock.now_ms(), "arm": arm,
                              "expected": t.expected + e.expected, "oracle": t.oracle + e.oracle,
                              "uniform": t.uniform + e.uniform, "n": t.decisions + e.decisions})

        per_round = max(1, cfg.train // max(1, cfg.rounds))
        done = 0
        echo(f"nba simulate: {cfg.persons} people, {cfg.train} training decisions in {cfg.rounds} rounds, "
             f"{cfg.eval} evaluation decisions, {cfg.step_s:g} s apart (simulated), seed {cfg.seed}")
        every = max(1, (per_round * cfg.rounds + cfg.eval) // 60)  # about 60 points per curve
        for r in range(cfg.rounds):
            for _ in range(per_round):
                await decide("train")
                done += 1
                if done % every == 0:
                    snapshot_curve(done)
            await _learn(app, catalog_path, Learner, LearnerConfig, cfg.seed)
            await app.models.sync()
            served = app.holder.book.get(PLACEMENT, "champion").version
            learned = await _examples(app)
            learner_counts["examples"] = learned
            t = phases["train"]
            echo(f"  round {r + 1}: {done} decisions; the learner has trained {learned} examples; champion serves "
                 f"{served}; expected reward/decision so far: "
                 + ", ".join(f"{a} {t[a].expected / max(1, t[a].decisions):.3f}" for a in sorted(t)))

        eval_start = clock.now_ms()
        for _ in range(cfg.eval):
            await decide("eval")
            done += 1
            if done % every == 0:
                snapshot_curve(done)
        eval_end = clock.now_ms()
        snapshot_curve(done)
        clock.advance(seconds=(window_ms + 3 * 3_600_000) / 1000)
        await deliver(clock.now_ms())

        check = await _ope_check(app, catalog, eval_start, eval_end, clock.now_ms(), cfg.bootstrap)
    finally:
        await channel.close()
        await app.stop()
    passed = bool(check.get("passed"))
    result = SimResult({k: dict(v) for k, v in phases.items()}, curve, check, passed, dict(learner_counts))
    echo(render(result))
    if out is not None:
        write_outputs(out, result)
        echo(f"  plots and numbers in {out}/")
    return result


async def _examples(app) -> int:
    from decision.store.models import ModelStore

    infos = await ModelStore(app.redis).infos(PLACEMENT, "champion")
    return max((i.examples for i in infos.values()), default=0)


async def _learn(app, catalog_path: Path, Learner, LearnerConfig, seed: int) -> dict[str, int]:
    """One learner run over what the logs hold (a fresh process each round
    in effect: it resumes from its checkpoint)."""
    learner = Learner(app.redis, LearnerConfig(catalog=catalog_path, clock="event", lateness_s=0.0,
                                               snapshot_every=1_000_000, snapshot_seconds=1e9, seed=seed))
    try:
        counts = await learner.run(once=True)
    finally:
        learner.shutdown()
    return dict(counts)


async def _ope_check(app, catalog, since: int, until: int, now: int, n_boot: int) -> dict[str, Any]:
    from decision.experiments.data import rank1_rows
    from decision.experiments.evaluate import evaluate, observed
    from decision.experiments.targets import Target, find_snapshot, load_model_bytes
    from decision.join import JoinQuery, read_joined

    placement = catalog.placements[PLACEMENT]
    q = JoinQuery(PLACEMENT, since, until, None, now, placement.reward.range)
    result = await read_joined(app.redis, q)
    champion = [jd for jd in result.decisions if jd.record.arm == "champion"]
    holdout = [jd for jd in result.decisions if jd.record.arm == "holdout"]
    on = observed([jd.first.reward for jd in champion], n_boot=n_boot)
    found = await find_snapshot(app.redis, PLACEMENT, "champion", None)
    if found is None or not holdout:
        return {"passed": False, "reason": "no snapshot served or no holdout logs", "on_policy": on.__dict__}
    target = Target("arm:champion", load_model_bytes(found[0], found[1]), f"champion, {found[1]}")
    rows = rank1_rows(holdout, catalog)
    (res,) = evaluate(rows.rows, [target], n_boot=n_boot)
    dr = res.get("dr")
    estimates = {e.estimator: e.as_dict() for e in res.estimates}
    inside = dr is not None and dr.low <= on.value <= dr.high
    return {"passed": inside, "snapshot": found[1], "on_policy": {"value": on.value, "low": on.low, "high": on.high,
                                                                    "n": on.n},
            "ope": estimates, "holdout_rows": len(rows.rows), "join": result.stats.excluded_note(),
            "late_rewards": result.stats.late_rewards}


def render(r: SimResult) -> str:
    lines = ["", "expected reward per decision (true click rate of what was shown) and cumulative regret:",
             f"  {'phase':<6} {'arm':<10} {'decisions':>9} {'clicks':>7} {'reward':>8} {'oracle':>8} {'uniform':>8} "
             f"{'regret vs oracle':>17} {'regret vs uniform':>18}"]
    for phase, arms in r.phases.items():
        for arm in sorted(arms):
            t = arms[arm]
            n = max(1, t.decisions)
            lines.append(f"  {phase:<6} {arm:<10} {t.decisions:>9} {t.clicks:>7} {t.expected / n:>8.4f} "
                         f"{t.oracle / n:>8.4f} {t.uniform / n:>8.4f} {t.oracle - t.expected:>17.1f} "
                         f"{t.uniform - t.expected:>18.1f}")
    c = r.check
    lines.append("")
    if "ope" in c:
        on = c["on_policy"]
        lines.append(f"off-policy check ({c['snapshot']}, evaluation phase):")
        lines.append(f"  on-policy, champion arm:   {on['value']:.4f} [{on['low']:.4f}, {on['high']:.4f}]  "
                     f"({on['n']} decisions)")
        for name in ("ips", "snips", "dr"):
            e = c["ope"].get(name)
            if e:
                lines.append(f"  OPE {name:<5} on holdout logs: {e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]  "
                             f"({c['holdout_rows']} rows, ESS {e['ess']:.0f})")
        lines.append(f"  {'PASS' if r.passed else 'FAIL'}: the on-policy mean is "
                     f"{'inside' if r.passed else 'outside'} the DR estimate's 95% interval")
    else:
        lines.append(f"off-policy check not possible: {c.get('reason')}")
    return "\n".join(lines)


def write_outputs(out: Path, r: SimResult) -> None:
    import csv

    from decision.report import CSS, time_chart

    out.mkdir(parents=True, exist_ok=True)
    with (out / "simulate.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["decisions", "time_ms", "arm", "n", "expected", "oracle", "uniform"])
        w.writeheader()
        w.writerows(r.curve)
    arms = sorted({c["arm"] for c in r.curve})
    colors = dict(zip(arms, ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")))
    t0 = min((c["time_ms"] for c in r.curve), default=0)
    t1 = max((c["time_ms"] for c in r.curve), default=1)

    def chart(key: str, label: str) -> str:
        lines = [{"name": a, "color": colors[a], "points": [
            (c["time_ms"], key_value(c, key), math.nan, math.nan) for c in r.curve if c["arm"] == a]} for a in arms]
        return time_chart(lines, t0, t1, label, band=False)

    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>nba simulate</title>"
            f"<style>{CSS}</style></head><body><h1>nba simulate</h1>"
            "<p>Per arm (arms serve 60% / 25% / 15% of the people: compare slopes, not heights). "
            "Expected reward is the "
            "true click rate of what was shown; the oracle shows the best allowed action each time, the uniform "
            "policy any allowed action at random.</p>"
            "<h2>Cumulative expected reward</h2>" + chart("expected", "cumulative expected reward")
            + "<h2>Cumulative regret against the oracle</h2>" + chart("regret_oracle", "oracle − chosen")
            + "<h2>Cumulative regret against the uniform policy</h2>" + chart("regret_uniform", "uniform − chosen")
            + "<pre>" + render(r).replace("&", "&amp;").replace("<", "&lt;") + "</pre></body></html>")
    (out / "index.html").write_text(page, encoding="utf-8")


def key_value(c: dict, key: str) -> float:
    if key == "regret_oracle":
        return c["oracle"] - c["expected"]
    if key == "regret_uniform":
        return c["uniform"] - c["expected"]
    return c[key]


def cmd_simulate(args: argparse.Namespace) -> int:
    cfg = SimConfig(**{f.name: getattr(SIZES[args.size], f.name) for f in fields(SimConfig)})
    for name in ("persons", "train", "rounds", "eval", "eval_persons", "seed", "fatigue", "late_share"):
        v = getattr(args, name, None)
        if v is not None:
            setattr(cfg, name, v)
    if cfg.rounds < 1 or cfg.train < cfg.rounds or cfg.eval < 1 or cfg.persons < 1:
        print("nba simulate: need persons >= 1, rounds >= 1, train >= rounds and eval >= 1", file=sys.stderr)
        return 1
    try:
        from decision.learning.learner import Learner  # noqa: F401
    except ImportError:
        print("nba simulate: the learner (decision/learning) is not installed", file=sys.stderr)
        return 1
    started = time.perf_counter()
    result = asyncio.run(simulate(cfg, redis_url=args.redis_url, out=Path(args.out) if args.out else None))
    print(f"  ({time.perf_counter() - started:.0f} s)")
    return 0 if result.passed else 3

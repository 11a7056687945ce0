"""VWPolicy.learn_interned (the learner's hot path: each action's VW example
parsed once and reused) trains exactly the model VWPolicy.learn trains from
the example text: the saved bytes - VW's weights, its run statistics and
progressive loss, our header - are compared byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

import bandits.vw as vw
from bandits.policy import Action, Context
from bandits.vw import VWPolicy

CONFIGS = [
    {},  # squarecb + mtr, the default
    {"exploration": "epsilon", "epsilon": 0.1, "cb_type": "ips"},
    {"exploration": "epsilon", "cb_type": "dr"},
    {"exploration": "softmax", "lambda": 5.0, "cb_type": "mtr"},
    {"exploration": "bagging", "bags": 3, "cb_type": "ips"},
]


def catalog(n: int) -> list[Action]:
    return [Action(f"o{j}/c{j}@web", {"offer": {"id": f"o{j}", "value": float(j), "tag": f"t{j % 3}"},
                                      "content": {"id": f"c{j}"}, "channel": {"id": "web"}},
                   value=float(j), group=f"o{j}")
            for j in range(n)]


def stream(n: int, seed: int = 0):
    """(context, actions, chosen, probability, reward): interned sets (the same
    tuple objects again and again, as decision/feature_tables.py hands them
    out), and fresh subsets of them (later slate ranks, lists); contexts with
    recurring categories and unique floats, rewards in [0, 2]."""
    rng = np.random.default_rng(seed)
    acts = catalog(12)
    sets = [tuple(acts), tuple(acts[:5]), tuple(acts[3:9]), (acts[7],)]
    for _ in range(n):
        actions = sets[int(rng.integers(len(sets)))]
        kind = rng.random()
        if kind < 0.15:
            actions = tuple(a for a in actions if rng.random() < 0.7) or actions[:1]  # a fresh tuple
        elif kind < 0.25:
            actions = list(actions)
        context = Context({"user": {"segment": f"s{rng.integers(4)}", "spend": float(rng.gamma(2.0, 30.0)),
                                    "vip": bool(rng.random() < 0.2)},
                           "context": {"page": f"p{rng.integers(3)}"}})
        chosen = int(rng.integers(len(actions)))
        yield context, actions, chosen, float(rng.choice([1.0, 0.5, 0.25, 0.05])), float(rng.choice([0, 0, 1, 2]))


def trained(params: dict, examples, *, interned: bool, rank_every: int = 0) -> VWPolicy:
    policy = VWPolicy("vw_test", params, reward_range=(0.0, 2.0), seed=7)
    learn = policy.learn_interned if interned else policy.learn
    for i, (context, actions, chosen, probability, reward) in enumerate(examples):
        if rank_every and i % rank_every == 0:
            policy.rank(context, actions)  # predictions in between leave the parsed actions alone
        learn(context, actions, chosen, probability, reward)
    return policy


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: p.get("exploration", "squarecb") + "-" +
                         p.get("cb_type", "mtr"))
def test_the_same_model_byte_for_byte(params):
    examples = list(stream(1500))
    text = trained(params, examples, interned=False, rank_every=7)
    reused = trained(params, examples, interned=True, rank_every=7)
    assert reused.examples_learned == text.examples_learned == 1500
    assert reused.sum_loss == text.sum_loss != 0.0  # VW's progressive loss: its finish step ran
    assert reused.save() == text.save()
    assert reused._parsed  # the parsed actions were reused, not rebuilt per example


@pytest.mark.parametrize("params", CONFIGS + [{"exploration": "bagging", "cb_type": "mtr"}],
                         ids=lambda p: p.get("exploration", "squarecb") + "-" + p.get("cb_type", "mtr"))
def test_no_predict_learns_the_same_model(params, monkeypatch):
    """Workspaces skip cb_adf's prediction before each learn (--no_predict):
    the model, the progressive loss and the predictions after are the same,
    byte for byte, as a workspace that predicts; the flag is not saved."""
    examples = list(stream(1500, seed=3))

    def learned(policy: VWPolicy, part) -> VWPolicy:
        for context, actions, chosen, probability, reward in part:
            policy.learn_interned(context, actions, chosen, probability, reward)
        return policy

    fast = trained(params, examples[:1000], interned=True, rank_every=7)
    saved = fast.save()
    assert b"no_predict" not in saved
    fast = learned(VWPolicy.load(saved), examples[1000:])  # a loaded model's workspace has it too
    monkeypatch.setattr(vw, "_WORKSPACE_ONLY", ())
    full = trained(params, examples[:1000], interned=True, rank_every=7)
    assert full.save() == saved
    full = learned(VWPolicy.load(saved), examples[1000:])
    assert fast.sum_loss == full.sum_loss != 0.0
    context, actions = examples[0][0], examples[0][1]
    assert fast.rank(context, actions).probabilities.tolist() == full.rank(context, actions).probabilities.tolist()
    assert fast.save() == full.save()


MTR = [{}, {"exploration": "epsilon", "cb_type": "mtr"}, {"exploration": "softmax", "lambda": 5.0, "cb_type": "mtr"},
       {"exploration": "bagging", "bags": 3, "cb_type": "mtr"}]


@pytest.mark.parametrize("interned", [True, False], ids=["interned", "text"])
@pytest.mark.parametrize("params", MTR, ids=lambda p: p.get("exploration", "squarecb"))
def test_blank_actions_learn_the_same_weights(params, interned, monkeypatch):
    """Under cb_type mtr an example whose progressive loss is not measured
    learns with its other actions blank: the same predictions, bit for bit,
    as a policy learning every action, while learning and after a save and
    load. The loss measured on one example in LOSS_EVERY is the one that
    policy measures on those examples; the others count none."""
    every = vw.LOSS_EVERY
    assert every > 1
    examples = list(stream(1200, seed=4))
    probes = [(c, a) for c, a, *_ in stream(40, seed=5)]

    def run(loss_every: int):
        monkeypatch.setattr(vw, "LOSS_EVERY", loss_every)
        policy = VWPolicy("vw_test", params, reward_range=(0.0, 2.0), seed=7)
        learn = policy.learn_interned if interned else policy.learn
        losses, ranks = [], []
        for i, example in enumerate(examples):
            if i % 97 == 0:
                ranks.append(policy.rank(*probes[i % len(probes)]))
            before = policy.sum_loss
            learn(*example)
            losses.append(policy.sum_loss - before)
        loaded = VWPolicy.load(policy.save())
        ranks += [loaded.rank(*probe) for probe in probes]
        return policy, losses, [(r.probabilities.tolist(), r.scores.tolist()) for r in ranks]

    full, full_losses, full_ranks = run(1)
    blank, blank_losses, blank_ranks = run(every)
    assert blank_ranks == full_ranks
    assert full.loss_examples == full.examples_learned == blank.examples_learned == 1200
    sample = [vw.loss_measured(i) for i in range(1200)]
    assert blank.loss_examples == sum(sample) == pytest.approx(1200 / every, abs=2)
    measured = [loss for i, loss in enumerate(full_losses) if sample[i]]
    assert any(measured)
    assert blank.sum_loss == pytest.approx(sum(measured), rel=1e-9, abs=1e-12)
    assert blank.average_loss == pytest.approx(sum(measured) / len(measured), rel=1e-9, abs=1e-12)
    assert not any(loss for i, loss in enumerate(blank_losses) if not sample[i])
    assert len(blank._blanks) == 12  # the largest set's size, reused


def test_blanks_only_for_the_explorations_tested_above():
    assert vw._BLANK_EXPLORATIONS == {p.get("exploration", "squarecb") for p in MTR}


def test_the_loss_sample_has_no_period():
    # a slate's k items are learned in a row, rank 1 first: every k-th
    # example would measure one rank only
    every = vw.LOSS_EVERY
    for k in (2, 3, 4, 5, 8, 10):
        picked = [n for n in range(4000) if vw.loss_measured(n)]
        assert len(picked) == pytest.approx(4000 / every, abs=2)
        counts = [sum(1 for n in picked if n % k == r) for r in range(k)]
        assert min(counts) >= 0.8 * len(picked) / k, (k, counts)
    assert [n for n in range(40) if vw.loss_measured(n)][:3] == [0, 2, 5]  # deterministic


@pytest.mark.parametrize("params", [c for c in CONFIGS if c.get("cb_type", "mtr") != "mtr"],
                         ids=lambda p: p["cb_type"])
def test_other_cb_types_learn_from_every_action(params):
    # dr, ips: every action's features enter the update, so none is blank
    policy = trained(params, list(stream(300, seed=6)), interned=True)
    assert policy.loss_examples == policy.examples_learned == 300
    assert not policy._blanks


def test_a_model_saved_before_loss_sampling_counts_every_example():
    policy = trained({}, list(stream(200, seed=1)), interned=True)
    header, model = vw.unpack(policy.save(), vw.KIND)
    header["state"]["sum_loss"] = -12.5
    del header["state"]["loss_examples"]  # as saved before LOSS_EVERY
    old = VWPolicy.load(vw.pack(header, model))
    assert old.loss_examples == old.examples_learned == 200
    assert old.average_loss == -12.5 / 200
    again = VWPolicy.load(old.save())
    assert (again.loss_examples, again.sum_loss) == (200, -12.5)


def test_the_same_model_after_a_save_and_load():
    # a loaded model is a new workspace: its parsed actions are its own
    examples = list(stream(900, seed=1))
    text = VWPolicy.load(trained({}, examples[:400], interned=False).save())
    reused = VWPolicy.load(trained({}, examples[:400], interned=True).save())
    for context, actions, chosen, probability, reward in examples[400:]:
        text.learn(context, actions, chosen, probability, reward)
        reused.learn_interned(context, actions, chosen, probability, reward)
    assert reused.save() == text.save()


def test_bounded_caches_and_repeated_actions(monkeypatch):
    monkeypatch.setattr(vw, "_PARSED_LIMIT", 5)  # cleared again and again below
    monkeypatch.setattr(vw, "_PARSED_SETS_LIMIT", 2)
    examples = list(stream(600, seed=2))
    a = catalog(3)
    twice = (a[0], a[1], a[0])  # one VW example cannot stand twice in a sequence: the text path
    examples += [(Context({"user": {"segment": "s1"}}), twice, 2, 0.5, 1.0)] * 3
    reused = trained({}, examples, interned=True)
    assert reused.save() == trained({}, examples, interned=False).save()
    assert len(reused._parsed) <= 5 and len(reused._parsed_sets) <= 2


def test_refuses_what_learn_refuses():
    policy = VWPolicy("vw_test")
    acts = tuple(catalog(2))
    with pytest.raises(ValueError):
        policy.learn_interned(Context({}), acts, 2, 0.5, 1.0)
    with pytest.raises(ValueError):
        policy.learn_interned(Context({}), acts, 0, 0.0, 1.0)
    with pytest.raises(ValueError):
        policy.learn_interned(Context({}), (), 0, 0.5, 1.0)
    assert policy.examples_learned == 0


# --- shared_text: features_text's text through the learner's own cache ---------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bandits.vw import features_text, shared_text  # noqa: E402

_names = st.sampled_from(["segment", "spend", "vip", "a=b", "x y", "50%", "név", "c:1", "t\tab", "|p"])
_values = st.one_of(
    st.sampled_from(["gold", "New York|NY:1", "", "50%", "a=b", " "]), st.text(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1e-29, max_value=1e-29),
    st.floats(min_value=1e14, max_value=1e17), st.integers(-10**6, 10**6), st.booleans(),
    st.sampled_from([np.float32(1.5), np.int64(3), np.bool_(True), np.float64(2.0)]))
_features = st.dictionaries(st.sampled_from(["user", "context", "offer", "extra", "x|y"]),
                            st.dictionaries(_names, _values, max_size=6), max_size=4)


@settings(max_examples=400, deadline=None)
@given(st.lists(_features, min_size=1, max_size=5))
def test_shared_text_is_features_text(features):
    # several in a row: the second sight of a value comes from the cache
    for f in features + features:
        assert shared_text(f) == features_text(f)


def test_shared_text_refuses_what_features_text_refuses():
    for bad in ({"user": {"x": [1]}}, {"user": {"x": {"a": 1}}}, {"user": {"x": object()}}):
        with pytest.raises(TypeError) as want:
            features_text(bad)
        with pytest.raises(TypeError) as got:
            shared_text(bad)
        assert str(got.value) == str(want.value)


def test_shared_text_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(vw, "_TOKENS_LIMIT", 10)
    for i in range(50):
        f = {"user": {"spend": float(i) + 0.5, "segment": f"s{i}"}}
        assert shared_text(f) == features_text(f)
    assert vw._values_count <= 10


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: p.get("exploration", "default"))
def test_rank_on_reused_action_examples_equals_rank_on_the_whole_text(params):
    """The service's rank() parses only the shared line and reuses each
    action's example: the same probabilities and scores, bit for bit, as
    parsing the whole example text, while the model learns in between."""
    from bandits.policy import ranking

    served, reference = VWPolicy("p", params, seed=7), VWPolicy("p", params, seed=7)
    for context, actions, chosen, probability, reward in stream(300, seed=2):
        got = served.rank(context, actions)
        ws = reference._ws
        exs = ws._parse(vw.actions_example_text(context.features, actions))
        ws.predict_multi(exs)
        pmf = exs[0].get_action_scores()
        scores = [0.0 - e.get_partial_prediction() for e in exs[1:]] if reference._scores_are_costs else pmf
        ws._finish_example_multi_ex(exs)
        want = ranking(np.asarray(pmf, dtype=np.float64), np.asarray(scores, dtype=np.float64))
        assert got.probabilities.tolist() == want.probabilities.tolist()
        assert got.scores.tolist() == want.scores.tolist()
        served.learn(context, actions, chosen, probability, reward)
        reference.learn(context, actions, chosen, probability, reward)

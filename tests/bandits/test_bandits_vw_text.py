"""Golden tests of the one place that writes VW text, and of reward -> cost."""

from __future__ import annotations

import math

import pytest
import vowpalwabbit

from bandits.policy import Action
from bandits.vw import (
    DEFAULT_INTERACTIONS,
    VWConfig,
    actions_example_text,
    escape,
    example_text,
    features_text,
    reward_to_cost,
)

SHARED = {
    "user": {"segment": "gold", "age": 42, "spend": 12.5, "vip": True, "churned": False, "city": "New York|NY:1"},
    "context": {"page": "home", "hour": 13.0},
}
ACTIONS = [
    {"offer": {"id": "o1", "discount": 0.1}, "content": {"id": "c 1", "tone": "50%"}, "channel": {"id": "email"}},
    {"offer": {"id": "o2", "odd=name": "a=b", "score": float("nan"), "big": float("inf")}, "channel": {"id": "sms"},
     "extra": {"x": 1}},
]

GOLDEN_PREDICT = (
    "shared |U segment=gold age:42 spend:12.5 vip:1 churned:0 city=New%20York%7CNY%3A1 |X page=home hour:13\n"
    "|O id=o1 discount:0.1 |C id=c%201 tone=50%25 |H id=email\n"
    "|O id=o2 odd%3Dname=a=b |H id=sms |extra x:1"
)
GOLDEN_LEARN = (
    "shared |U segment=gold age:42 spend:12.5 vip:1 churned:0 city=New%20York%7CNY%3A1 |X page=home hour:13\n"
    "|O id=o1 discount:0.1 |C id=c%201 tone=50%25 |H id=email\n"
    "0:-0.75:0.25 |O id=o2 odd%3Dname=a=b |H id=sms |extra x:1"
)


def test_golden_predict_text():
    assert example_text(SHARED, ACTIONS) == GOLDEN_PREDICT


def test_golden_learn_text():
    assert example_text(SHARED, ACTIONS, (1, -0.75, 0.25)) == GOLDEN_LEARN


def test_golden_text_is_stable_across_calls_and_equal_values():
    # The text caches never change the text: equal values (1, 1.0, True) write the same.
    assert example_text(SHARED, ACTIONS) == GOLDEN_PREDICT
    assert {features_text({"offer": {"a": v}}) for v in (1, 1.0, True)} == {"|O a:1"}
    copy = [{ns: dict(f) for ns, f in a.items()} for a in ACTIONS]
    assert example_text(SHARED, copy) == GOLDEN_PREDICT


def test_the_action_block_cache_writes_the_golden_text():
    # A tuple of Actions is cached by identity (the learner's interned sets); a list is not.
    as_tuple = tuple(Action(f"a{i}", f) for i, f in enumerate(ACTIONS))
    for actions in (as_tuple, list(as_tuple), as_tuple):
        assert actions_example_text(SHARED, actions) == GOLDEN_PREDICT
        assert actions_example_text(SHARED, actions, (1, -0.75, 0.25)) == GOLDEN_LEARN
        for chosen in range(len(actions)):
            assert actions_example_text(SHARED, actions, (chosen, -0.5, 0.5)) == example_text(
                SHARED, [a.features for a in actions], (chosen, -0.5, 0.5))


def test_empty_shared_and_empty_actions():
    assert example_text({}, [{}, {"offer": {}}]) == "shared |\n|\n|"
    assert example_text({"user": {}}, [{"offer": {"id": "a"}}], (0, 0.0, 1.0)) == "shared |\n0:0:1 |O id=a"


def test_escaping_is_lossless_and_vw_safe():
    nasty = "a b\tc|d:e%f\ng"
    assert escape(nasty) == "a%20b%09c%7Cd%3Ae%25f%0Ag"
    assert escape("k=v", name=True) == "k%3Dv" and escape("k=v") == "k=v"
    assert escape("50%20") != escape("50 ")  # "%" itself is escaped: no two inputs collide
    line = features_text({"offer": {nasty: nasty}})
    assert line.count(" ") == 1 and line.count("|") == 1 and ":" not in line


def test_numbers_and_types():
    assert features_text({"offer": {"x": 1e-7, "y": -2.5, "z": 10**12, "w": -0.0}}) == "|O x:1e-07 y:-2.5 z:1000000000000 w:0"
    # beyond float32's reach VW would read garbage: flushed to 0, clipped to +-1e15
    assert features_text({"offer": {"t": 1e-200, "h": 10**20, "n": -1e39}}) == "|O t:0 h:1000000000000000 n:-1000000000000000"
    with pytest.raises(TypeError, match="offer.bad"):
        features_text({"offer": {"bad": [1, 2]}})


def test_vw_parses_the_text_as_intended():
    """The golden text reaches VW with the features we meant (audit of the namespaces)."""
    ws = vowpalwabbit.Workspace(arg_list=["--cb_explore_adf", "--quiet"])
    exs = ws.parse(GOLDEN_LEARN)
    try:
        shared, a1, a2 = exs
        assert shared.num_features_in("U") == 5  # churned:0 is written; VW drops 0-valued features
        assert shared.num_features_in("X") == 2
        assert a1.num_features_in("O") == 2 and a1.num_features_in("C") == 2 and a1.num_features_in("H") == 1
        assert a2.num_features_in("O") == 2  # nan and inf dropped
        assert a2.get_cbandits_cost(0) == pytest.approx(-0.75) and a2.get_cbandits_probability(0) == pytest.approx(0.25)
    finally:
        ws.finish_example(exs)
        ws.finish()


def test_reward_range_maps_lo_to_cost_0_and_hi_to_cost_minus_1():
    assert reward_to_cost(0.0, (0.0, 1.0)) == 0.0
    assert reward_to_cost(1.0, (0.0, 1.0)) == -1.0
    assert reward_to_cost(1.0, (1.0, 50.0)) == 0.0
    assert reward_to_cost(50.0, (1.0, 50.0)) == -1.0
    assert reward_to_cost(25.5, (1.0, 50.0)) == pytest.approx(-0.5)
    assert reward_to_cost(-5.0, (-10.0, 10.0)) == pytest.approx(-0.25)
    # outside the declared range: clipped, never outside [-1, 0]
    assert reward_to_cost(-3.0, (0.0, 1.0)) == 0.0
    assert reward_to_cost(80.0, (1.0, 50.0)) == -1.0
    assert math.copysign(1.0, reward_to_cost(0.0, (0.0, 1.0))) == 1.0  # no "-0" in the text


def test_policy_scales_rewards_into_its_examples():
    from bandits.policy import Action, Context
    from bandits.vw import VWPolicy

    p = VWPolicy("p", {}, reward_range=(1.0, 50.0))
    acts = [Action("a", {"offer": {"id": "a"}}), Action("b", {"offer": {"id": "b"}})]
    assert p.example(Context({}), acts, 1, 0.5, 50.0) == "shared |\n|O id=a\n0:-1:0.5 |O id=b"
    assert p.example(Context({}), acts, 0, 0.5, 1.0) == "shared |\n0:0:0.5 |O id=a\n|O id=b"
    with pytest.raises(ValueError, match="reward_range"):
        VWPolicy("p", {}, reward_range=(5.0, 5.0))


def test_default_args():
    assert DEFAULT_INTERACTIONS == ("UO", "UC", "UH", "XO", "XC", "XH")
    assert " ".join(VWConfig().args(seed=7)) == (
        "--cb_explore_adf --cb_type mtr --squarecb --gamma_scale 10 --gamma_exponent 0.5"
        " --interactions UO --interactions UC --interactions UH --interactions XO --interactions XC --interactions XH"
        " -l 0.5 --power_t 0.5 --l2 0 -b 18 --random_seed 7 --quiet"
    )
    assert VWConfig.from_params({"exploration": "squarecb", "gamma": 20}).args(0)[:9] == [
        "--cb_explore_adf", "--cb_type", "mtr", "--squarecb", "--gamma_scale", "20", "--gamma_exponent", "0.5",
        "--interactions"]
    assert VWConfig.from_params({"exploration": "softmax", "lambda": 5}).args(0)[3:6] == ["--softmax", "--lambda", "5"]
    bagging = VWConfig.from_params({"exploration": "bagging", "bags": 4})
    assert bagging.args(0)[3:7] == ["--bag", "4", "--epsilon", "0.05"]

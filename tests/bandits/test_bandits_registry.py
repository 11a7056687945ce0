"""Config is data, validated once: every message names the param key."""

from __future__ import annotations

import pytest

from bandits.fixed import FixedPriorityPolicy
from bandits.registry import KINDS, load_policy, make_policy, validate_params
from bandits.uniform import UniformPolicy
from bandits.vw import VWPolicy


def test_kinds():
    assert KINDS == ("uniform", "fixed_priority", "vw")
    assert isinstance(make_policy("uniform", "u", {}, reward_range=(0, 1), seed=0), UniformPolicy)
    fixed = make_policy("fixed_priority", "f", {"epsilon": 0.1}, reward_range=(0, 1), seed=0)
    assert isinstance(fixed, FixedPriorityPolicy)
    assert isinstance(make_policy("vw", "v", None, reward_range=(0, 1), seed=0), VWPolicy)


def test_valid_params_have_no_errors():
    assert validate_params("uniform", {}) == []
    assert validate_params("fixed_priority", {"epsilon": 0}) == []
    assert validate_params("vw", {}) == []
    assert validate_params("vw", {"exploration": "epsilon", "epsilon": 0.1, "cb_type": "dr", "learning_rate": 0.1,
                                  "power_t": 0.0, "l2": 1e-6, "interactions": ["UO", "XOC"], "bits": 20}) == []
    assert validate_params("vw", {"exploration": "softmax", "lambda": 3}) == []
    assert validate_params("vw", {"exploration": "bagging", "bags": 8, "epsilon": 0.0}) == []
    assert validate_params("vw", {"exploration": "squarecb", "gamma": 50, "gamma_exponent": 0.3}) == []


def test_unknown_exploration_and_negative_epsilon_name_the_param():
    errs = validate_params("vw", {"exploration": "greedyy"})
    assert errs == ["params.exploration: unknown exploration 'greedyy' (known: epsilon, softmax, bagging, squarecb)"]
    errs = validate_params("vw", {"exploration": "epsilon", "epsilon": -0.1})
    assert errs == ["params.epsilon: must be in [0, 1], got -0.1"]
    assert validate_params("fixed_priority", {"epsilon": -0.1}) == [
        "params.epsilon: must be a number in [0, 1], got -0.1"]


def test_other_errors():
    errs = validate_params("vw", {"explore": "epsilon", "cb_type": "ips", "exploration": "squarecb", "bags": 3,
                                  "learning_rate": 0, "bits": 40.5, "interactions": "UO"})
    assert ("params.explore: unknown option (known: exploration, epsilon, lambda, bags, gamma, gamma_exponent, "
            "cb_type, learning_rate, power_t, l2, interactions, bits)") in errs
    assert "params.cb_type: squarecb requires cb_type 'mtr' in VW 9.x, got 'ips'" in errs
    assert "params.bags: not used by exploration 'squarecb'" in errs
    assert "params.learning_rate: must be in (0, 1000], got 0" in errs
    assert "params.bits: must be an integer, got 40.5" in errs
    assert any(e.startswith("params.interactions: must be a list") for e in errs)
    assert validate_params("vw", {"cb_type": "dm"}) == ["params.cb_type: unknown cb_type 'dm' (known: ips, dr, mtr)"]
    assert validate_params("vw", {"interactions": ["U"]})[0].startswith("params.interactions[0]:")
    assert validate_params("vw", {"exploration": "epsilon", "epsilon": True}) == [
        "params.epsilon: must be a number, got True"]
    # squarecb is the default exploration
    assert validate_params("vw", {"epsilon": 0.1}) == ["params.epsilon: not used by exploration 'squarecb'"]
    assert validate_params("uniform", {"epsilon": 0.1}) == ["params.epsilon: unknown option for uniform (known: none)"]
    assert validate_params("bandit", {}) == ["kind: unknown policy kind 'bandit' (known: uniform, fixed_priority, vw)"]
    assert validate_params("vw", {"exploration": "epsilon", "epsilon": -1}, prefix="policies.champion.params") == [
        "policies.champion.params.epsilon: must be in [0, 1], got -1"]


def test_make_policy_refuses_invalid_params():
    with pytest.raises(ValueError, match=r"policy 'p': params.exploration: unknown exploration"):
        make_policy("vw", "p", {"exploration": "greedyy"}, reward_range=(0, 1), seed=0)
    with pytest.raises(ValueError, match="kind: unknown policy kind"):
        make_policy("nope", "p", {}, reward_range=(0, 1), seed=0)


def test_load_policy_dispatches_on_the_saved_kind():
    for kind, params in [("uniform", {}), ("fixed_priority", {"epsilon": 0.2}), ("vw", {"exploration": "softmax"})]:
        p = make_policy(kind, f"n-{kind}", params, reward_range=(0, 5), seed=3)
        q = load_policy(p.save())
        assert (type(q), q.name, dict(q.params)) == (type(p), p.name, params)
    q = load_policy(make_policy("vw", "v", {}, reward_range=(2, 9), seed=4).save())
    assert q.reward_range == (2.0, 9.0) and q.seed == 4

"""Arm assignment: stable, proportional, and moving only the units that must
move (see docs/BANDITS.md for the guarantee and its limit)."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.experiment import assign_arm, request_arm

UNITS = [f"person-{i}" for i in range(20_000)]


def assign_all(arms, salt="exp-1"):
    return [assign_arm(u, salt, arms) for u in UNITS]


def fractions(assigned, names):
    return {n: sum(a == n for a in assigned) / len(assigned) for n in names}


def test_stable_proportional_and_order_independent():
    arms = [("champion", 0.7), ("challenger", 0.2), ("control", 0.1)]
    a = assign_all(arms)
    assert a == assign_all(arms)
    assert a == assign_all(list(reversed(arms)))  # order does not matter
    assert a != assign_all(arms, salt="exp-2")  # the salt reshuffles
    for name, share in arms:
        assert abs(fractions(a, [name])[name] - share) < 0.01
    assert assign_all([("only", 1.0)]) == ["only"] * len(UNITS)
    assert set(assign_all([("a", 0.5), ("b", 0.0), ("c", 0.5)])) == {"a", "c"}


def test_two_arms_shift_10_percent_moves_exactly_those_units_from_a_to_b():
    before = assign_all([("A", 0.5), ("B", 0.5)])
    after = assign_all([("A", 0.4), ("B", 0.6)])
    moves = [(x, y) for x, y in zip(before, after) if x != y]
    assert {m for m in moves} == {("A", "B")}
    assert abs(len(moves) / len(UNITS) - 0.10) < 0.01


def test_changing_one_arms_share_moves_units_only_into_or_out_of_it():
    base = [("champion", 0.6), ("challenger", 0.2), ("control", 0.2)]
    raised = [("champion", 0.6), ("challenger", 0.4), ("control", 0.2)]  # shares are relative weights
    before, after = assign_all(base), assign_all(raised)
    moves = [(x, y) for x, y in zip(before, after) if x != y]
    assert {y for _, y in moves} == {"challenger"}
    expected = 0.4 / 1.2 - 0.2 / 1.0  # the change of the challenger's fraction: the minimum possible
    assert abs(len(moves) / len(UNITS) - expected) < 0.01
    # lowering it back moves the same units back, and only them
    assert assign_all(base) == before
    # adding an arm (share 0 -> s) only takes units into the new arm
    added = assign_all([*base, ("new", 0.25)])
    assert {y for x, y in zip(before, added) if x != y} == {"new"}
    # removing one only moves its units
    removed = assign_all(base[:2])
    assert {x for x, y in zip(before, removed) if x != y} == {"control"}


def p_jaccard(w, v):
    """J_P of two share vectors (Moulton & Jiang 2018): the best possible
    probability of keeping a unit in place for stateless sampling."""
    w, v = np.asarray(w, float) / sum(w), np.asarray(v, float) / sum(v)
    return sum(1.0 / np.maximum(w / w[i], v / v[i]).sum() for i in range(len(w)) if w[i] > 0 and v[i] > 0)


def test_three_arm_transfer_moves_the_stateless_optimum():
    """A -> B while C keeps its share: B keeps all its units, A gains none,
    and the moved fraction is 1 - J_P (11.8% here for a 10% transfer)."""
    w, v = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    before = assign_all(list(zip("ABC", w)))
    after = assign_all(list(zip("ABC", v)))
    moves = [(x, y) for x, y in zip(before, after) if x != y]
    assert not any(x == "B" for x, _ in moves)  # the growing arm keeps its units
    assert not any(y == "A" for _, y in moves)  # the shrinking arm gains none
    expected = 1 - p_jaccard(w, v)
    assert expected == pytest.approx(0.1182, abs=1e-3)
    assert abs(len(moves) / len(UNITS) - expected) < 0.01


def test_request_arm_is_seeded_and_proportional():
    arms = [("a", 3.0), ("b", 1.0), ("z", 0.0)]
    r1 = [request_arm(np.random.default_rng(5), arms) for _ in range(3)]
    assert r1 == [request_arm(np.random.default_rng(5), arms) for _ in range(3)]
    rng = np.random.default_rng(0)
    draws = [request_arm(rng, arms) for _ in range(20_000)]
    assert abs(draws.count("a") / 20_000 - 0.75) < 0.015 and "z" not in draws


def test_bad_arms_are_refused():
    for arms in ([], [("a", -1.0)], [("a", 0.0)], [("a", 1.0), ("a", 1.0)], [("a", float("nan"))]):
        with pytest.raises(ValueError):
            assign_arm("u", "s", arms)
        with pytest.raises(ValueError):
            request_arm(np.random.default_rng(0), arms)

"""The request path's plain-Python versions of numpy code give exactly what
the numpy code gave: `ranking`'s checks and renormalisation (numpy's own
pairwise sum), `sample`'s inverse CDF, and arm lists checked once. The
references below are the former numpy implementations, kept verbatim."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.experiment import _checked, assign_arm, request_arm
from bandits.policy import Action, Context, _numpy_sum, ranking
from bandits.sampling import choose_slate, sample
from bandits.uniform import UniformPolicy


def reference_ranking(probabilities, scores):
    p = np.asarray(probabilities, dtype=np.float64)
    total = p.sum()
    if p.ndim != 1 or p.size == 0 or not np.isfinite(total) or total <= 0 or (p < 0).any():
        raise ValueError(f"not a probability vector: {p!r}")
    if abs(total - 1.0) > 1e-12:
        p = p / total
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != p.shape:
        raise ValueError(f"scores shape {s.shape} != probabilities shape {p.shape}")
    return p, s


def reference_sample(probabilities, rng):
    cdf = np.cumsum(probabilities, dtype=np.float64)
    total = cdf[-1]
    if not total > 0:
        raise ValueError("cannot sample from a distribution with no mass")
    i = int(np.searchsorted(cdf, rng.random() * total, side="right"))
    if i >= len(cdf):
        i = int(np.flatnonzero(np.asarray(probabilities) > 0)[-1])
    return i


def vectors(seed: int, count: int):
    """Probability-like vectors of 1..300 entries: exact, float32-rounded (VW's
    PMF), unnormalised, with zeros, spanning magnitudes, and broken ones."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = int(rng.integers(1, 300 if k % 5 == 0 else 30))
        kind = k % 8
        if kind == 0:
            v = rng.dirichlet(np.ones(n))
        elif kind == 1:
            v = rng.dirichlet(np.ones(n)).astype(np.float32).astype(np.float64)
        elif kind == 2:
            v = np.full(n, 1.0 / n)
        elif kind == 3:
            v = rng.random(n) * 10.0 ** rng.integers(-20, 20, n)
        elif kind == 4:
            v = rng.dirichlet(np.ones(n)) * (rng.random(n) < 0.5)
        elif kind == 5:
            v = rng.standard_normal(n)  # negatives: refused
        elif kind == 6:
            v = rng.dirichlet(np.ones(n))
            v[int(rng.integers(n))] = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308)[int(rng.integers(6))]
        else:
            v = np.zeros(n)
        yield v, rng.standard_normal(n)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's, on the overflowing sums
def test_numpy_sum_is_numpys_sum_bit_for_bit():
    rng = np.random.default_rng(0)
    for n in [*range(1, 300), 1000, 4097]:
        for scale in (1.0, 1e-30, 1e30):
            v = rng.standard_normal(n) * scale * 10.0 ** rng.integers(-8, 8, n)
            assert repr(_numpy_sum(v.tolist())) == repr(float(np.add.reduce(v))) == repr(float(v.sum()))
    for v in ([-0.0], [-0.0, -0.0], [0.0, -0.0], [-0.0] * 9, [1e308, 1e308], [np.inf, -np.inf], [np.nan, 1.0]):
        assert repr(_numpy_sum(v)) == repr(float(np.array(v).sum()))


def test_ranking_equals_the_numpy_checks_on_random_vectors():
    for v, s in vectors(1, 4000):
        try:
            want = reference_ranking(v, s)
        except ValueError as e:
            with pytest.raises(ValueError) as got:
                ranking(v.copy(), s)
            assert str(got.value) == str(e)
            continue
        r = ranking(v.copy(), s)
        assert same_bits(r.probabilities, want[0]) and same_bits(r.scores, want[1])
        assert not r.probabilities.flags.writeable and not r.scores.flags.writeable


@pytest.mark.parametrize("bad", [[], [[0.5, 0.5]], 1.0, [0.5, 0.5, -0.0, -1e-300], [np.nan], [np.inf, 0.0]])
def test_ranking_refuses_what_it_refused(bad):
    with pytest.raises(ValueError) as want:
        reference_ranking(bad, np.zeros(np.shape(bad)))
    with pytest.raises(ValueError) as got:
        ranking(bad, np.zeros(np.shape(bad)))
    assert str(got.value) == str(want.value)


def test_ranking_scores_shape_is_still_checked():
    with pytest.raises(ValueError, match="scores shape"):
        ranking([0.5, 0.5], [1.0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's, casting 1e308 to float32
def test_sample_draws_what_numpy_drew_with_the_same_rng_draws():
    for seed, (v, _) in enumerate(vectors(2, 3000)):
        for given in (v, v.tolist(), v.astype(np.float32)):
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            try:
                want = reference_sample(given, a)
            except (ValueError, IndexError) as e:
                with pytest.raises(type(e)):
                    sample(given, b)
            else:
                assert sample(given, b) == want
            assert a.bit_generator.state == b.bit_generator.state


def test_sample_at_the_top_end_falls_back_as_before():
    class Top:  # the largest double below 1: rounding can put the draw past the cdf
        def random(self):
            return np.nextafter(1.0, 0.0)

    rng = np.random.default_rng(3)
    for _ in range(2000):
        n = int(rng.integers(1, 40))
        v = rng.dirichlet(np.ones(n)).astype(np.float32).astype(np.float64) * (rng.random(n) < 0.7)
        if v.sum() > 0:
            assert sample(v, Top()) == reference_sample(v, Top())
    with pytest.raises(IndexError):
        sample([], np.random.default_rng(0))


def test_slates_are_what_they_were():
    """choose_slate's items carry the drawn action's probability and score as
    Python floats, equal to float() of the array entries it drew from."""
    rng = np.random.default_rng(4)
    policy = UniformPolicy()
    for k in range(300):
        n = int(rng.integers(1, 12))
        actions = [Action(f"a{i}", {"offer": {"id": f"o{i}"}}, group=f"g{int(rng.integers(4))}") for i in range(n)]
        first = ranking(rng.dirichlet(np.ones(n)), rng.standard_normal(n))
        a, b = np.random.default_rng(k), np.random.default_rng(k)
        items = choose_slate(policy, Context({}), actions, 3, a, first=first)
        j = reference_sample(first.probabilities, b)
        assert items[0].index == j
        assert type(items[0].probability) is float and items[0].probability == float(first.probabilities[j])
        assert type(items[0].score) is float and items[0].score == float(first.scores[j])


def test_arm_lists_are_checked_once_per_tuple_and_always_otherwise():
    arms = (("a", 0.5), ("b", 0.5))
    assign_arm("u", "s", arms)
    assert _checked.get(id(arms)) is arms
    assert assign_arm("u", "s", arms) == assign_arm("u", "s", [("a", 0.5), ("b", 0.5)])
    # lists (mutable) and tuples of lists are checked on every call
    listed = [["a", 0.5], ["b", 0.5]]
    assign_arm("u", "s", listed)
    listed[1][1] = float("nan")
    with pytest.raises(ValueError):
        assign_arm("u", "s", listed)
    inner = ["b", 0.5]
    mixed = (("a", 0.5), inner)
    request_arm(np.random.default_rng(0), mixed)
    assert id(mixed) not in _checked
    inner[1] = -1.0
    with pytest.raises(ValueError):
        request_arm(np.random.default_rng(0), mixed)
    for bad in ((), (("a", 0.5), ("a", 0.5)), (("a", float("inf")),), (("a", 0.0),)):
        with pytest.raises(ValueError):
            assign_arm("u", "s", bad)
        assert id(bad) not in _checked

from __future__ import annotations

import numpy as np
import pytest

from bandits.sampling import sample


def test_sample_follows_the_distribution_and_never_draws_zero_mass():
    p = np.array([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    rng = np.random.default_rng(0)
    draws = np.bincount([sample(p, rng) for _ in range(20_000)], minlength=len(p)) / 20_000
    assert draws[[0, 2, 5]].sum() == 0
    assert np.allclose(draws, p, atol=0.015)


def test_sample_is_seeded():
    p = [0.25] * 4
    a = [sample(p, np.random.default_rng(3)) for _ in range(5)]
    assert a == [sample(p, np.random.default_rng(3)) for _ in range(5)]


def test_sample_edge_cases():
    assert sample([1.0], np.random.default_rng(0)) == 0
    assert sample([0.0, 1.0], np.random.default_rng(0)) == 1

    class Top:  # the largest double below 1
        def random(self):
            return np.nextafter(1.0, 0.0)

    assert sample([0.3, 0.7, 0.0], Top()) == 1
    with pytest.raises(ValueError):
        sample([0.0, 0.0], np.random.default_rng(0))

"""The memory soak's figures (decision/bench/soak.py) on synthetic RSS series:
where the climb levels off, what the start figure is, and when a soak fails.

Samples as the soak takes them: one every 10 s for 11 minutes, the warm-up
ending at 60.6 s (idle wait, lead and the 1-minute warm-up)."""

from __future__ import annotations

import numpy as np
import pytest

from decision.bench import soak

MiB = soak.MiB
EVERY_S = 10.0
WARM_END_S = 60.6
T = np.arange(0.0, 661.0, EVERY_S)


def _samples(rss_mib, t=T) -> list[dict]:
    return [{"t_s": float(x), "service_rss_bytes": int(y * MiB), "redis_rss_bytes": int((600 + x) * MiB)}
            for x, y in zip(t, rss_mib)]


def _climb_then_flat(t, knee_s=240.0, start_mib=126.0, top_mib=137.5):
    """Caches filling: a straight climb to `top_mib` at `knee_s`, flat after."""
    return np.where(t < knee_s, start_mib + (top_mib - start_mib) * t / knee_s, top_mib)


def test_climb_then_flat_starts_where_it_levelled_off() -> None:
    a = soak.analyse(_samples(_climb_then_flat(T)), WARM_END_S)
    assert a["levelled_off"] is True
    # The first flat window starts at the knee (or the sample before it, whose one step up does not tilt
    # 13 samples): the start figure is the plateau, not the warm-up's end.
    assert 230.0 <= a["rss_level_off_s"] <= 240.0 and a["rss_start_s"] == a["rss_level_off_s"]
    assert a["rss_start_bytes"] == a["rss_level_off_bytes"] >= 137 * MiB
    assert a["rss_warmup_end_s"] == 70.0 and a["rss_warmup_end_bytes"] < 131 * MiB
    assert a["rss_growth"] == pytest.approx(1.0, abs=0.005) and a["passed"] is True
    assert a["rss_slope_mib_per_min"] == pytest.approx(0.0, abs=0.01)
    assert a["rss_slope_second_half_mib_per_min"] == pytest.approx(0.0, abs=1e-9)
    # What the 1-minute warm-up reported before: a slope made of the climb.
    assert a["rss_slope_after_warmup_mib_per_min"] > 0.3
    assert "levelled off 3.8 min into the soak" in a["verdict"]


def test_a_curved_climb_levels_off_once_it_rises_less_than_the_threshold() -> None:
    rss = 137.5 - 11.5 * np.exp(-T / 60)  # fast at first, slower and slower
    a = soak.analyse(_samples(rss), WARM_END_S)
    assert a["levelled_off"] is True
    # The window's slope falls under 0.1%/min of ~136 MiB some time after 3 min.
    assert 180 <= a["rss_level_off_s"] <= 330
    assert a["level_off_max_slope_mib_per_min"] == pytest.approx(0.001 * a["rss_warmup_end_bytes"] / MiB)
    assert a["rss_start_bytes"] > a["rss_warmup_end_bytes"]
    assert a["passed"] is True


def test_a_steady_leak_never_levels_off_and_fails_even_within_the_ratio() -> None:
    rss = 130 + 0.5 * T / 60  # +0.5 MiB/min: 5.5 MiB in 11 min, under 10% of 130 MiB
    a = soak.analyse(_samples(rss), WARM_END_S)
    assert a["levelled_off"] is False and a["rss_level_off_s"] is None and a["rss_level_off_bytes"] is None
    # The start falls back to the end of the warm-up: all the growth is counted.
    assert a["rss_start_s"] == a["rss_warmup_end_s"] == 70.0
    assert a["rss_start_bytes"] == a["rss_warmup_end_bytes"]
    assert a["rss_growth"] < soak.GROWTH_TARGET
    assert a["passed"] is False
    assert a["rss_slope_second_half_mib_per_min"] == pytest.approx(0.5, rel=1e-3)
    assert "never levelled off" in a["verdict"]


def test_a_climb_that_levels_off_and_a_leak_after_it_show_in_the_second_half() -> None:
    rss = np.where(T < 420, _climb_then_flat(T), 137.5 + 0.8 * (T - 420) / 60)
    a = soak.analyse(_samples(rss), WARM_END_S)
    assert a["levelled_off"] is True and 230.0 <= a["rss_level_off_s"] <= 240.0
    assert a["rss_end_bytes"] > a["rss_start_bytes"]
    assert a["rss_slope_second_half_mib_per_min"] > 0.5


def test_flat_from_the_start_levels_off_at_the_end_of_the_warm_up() -> None:
    a = soak.analyse(_samples(np.full(len(T), 131.0)), WARM_END_S)
    assert a["levelled_off"] is True
    assert a["rss_level_off_s"] == a["rss_start_s"] == a["rss_warmup_end_s"] == 70.0
    assert a["rss_growth"] == pytest.approx(1.0) and a["passed"] is True


def test_a_flat_series_that_shrinks_is_level_too() -> None:
    a = soak.analyse(_samples(140 - 0.5 * T / 60), WARM_END_S)
    assert a["levelled_off"] is True and a["rss_level_off_s"] == 70.0 and a["passed"] is True


@pytest.mark.parametrize("seed", range(20))
def test_noise_does_not_move_the_level_off_much(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Jittered sampling times and RSS noise of 0.2 MiB around a climb, with the odd 1 MiB spike.
    t = T + rng.uniform(0, 0.05, len(T))
    rss = _climb_then_flat(t) + rng.normal(0, 0.2, len(t)) + np.where(rng.random(len(t)) < 0.05, 1.0, 0.0)
    a = soak.analyse(_samples(rss, t), WARM_END_S)
    assert a["levelled_off"] is True
    assert 200 <= a["rss_level_off_s"] <= 300, a["verdict"]
    assert a["rss_growth"] < soak.GROWTH_TARGET and a["passed"] is True


@pytest.mark.parametrize("seed", range(20))
def test_noise_does_not_hide_a_leak(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rss = 130 + 0.5 * T / 60 + rng.normal(0, 0.2, len(T))
    a = soak.analyse(_samples(rss), WARM_END_S)
    assert a["levelled_off"] is False and a["passed"] is False


def test_noise_alone_is_level() -> None:
    rng = np.random.default_rng(7)
    a = soak.analyse(_samples(131 + rng.normal(0, 0.2, len(T))), WARM_END_S)
    assert a["levelled_off"] is True and a["rss_level_off_s"] <= 120


def test_a_run_shorter_than_one_window_cannot_tell() -> None:
    """The smoke profile: 3 s of samples every 0.5 s, a 1 s warm-up."""
    t = np.arange(0.0, 3.01, 0.5)
    a = soak.analyse(_samples(130 + t, t), 1.3)
    assert a["levelled_off"] is None and a["passed"] is None
    assert a["rss_start_s"] == a["rss_warmup_end_s"] == 1.5
    assert a["rss_start_bytes"] > 0 and a["rss_end_bytes"] > a["rss_start_bytes"]
    assert "too short to tell" in a["verdict"]


def test_a_climb_still_going_at_the_last_full_window_never_levelled_off() -> None:
    # Levels off at 9.5 min: the last window that fits (from 9 min) still climbs.
    a = soak.analyse(_samples(_climb_then_flat(T, knee_s=570.0)), WARM_END_S)
    assert a["levelled_off"] is False and a["passed"] is False


def test_samples_of_a_gone_service_are_not_sizes() -> None:
    rss = np.where(T < 600, 131.0, 0.0)  # the service died at 10 min: rss_bytes reads 0
    a = soak.analyse(_samples(rss), WARM_END_S)
    assert a["rss_end_bytes"] == int(131 * MiB) and a["levelled_off"] is True


def test_level_off_windows() -> None:
    t = np.arange(0.0, 300.0, 10.0)
    flat_after_100 = np.where(t < 100, t * MiB, 100 * MiB)
    assert soak.level_off(t, flat_after_100, start_s=0, window_s=60, max_slope_mib_per_min=0.01) == (10, True)
    assert soak.level_off(t, flat_after_100, start_s=150, window_s=60, max_slope_mib_per_min=0.01) == (15, True)
    assert soak.level_off(t, t * MiB, start_s=0, window_s=60, max_slope_mib_per_min=0.01) == (None, False)
    assert soak.level_off(t, t * MiB, start_s=0, window_s=600, max_slope_mib_per_min=0.01) == (None, None)
    assert soak.level_off(t[:1], t[:1], start_s=0, window_s=60, max_slope_mib_per_min=0.01) == (None, None)
    assert soak.slope_mib_per_min([0, 60], [0, MiB]) == pytest.approx(1.0)
    assert soak.slope_mib_per_min([5], [MiB]) is None

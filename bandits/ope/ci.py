"""Confidence intervals: the percentile bootstrap, with a fixed seed.

Why the bootstrap: IPS-type estimates are means (or a ratio of means, SNIPS)
of heavy-tailed per-row terms; the percentile bootstrap needs no variance
formula per estimator, handles the ratio directly and is skewed where the
data are. It is asymptotic like the normal approximation (rows are
resampled as independent: decisions of one person are treated as
independent too). The seed is fixed (0 by default), so the same logs give
the same interval every run. Each estimate also reports the normal
approximation's standard error for reference.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 1000
SEED = 0
LEVEL = 0.95
METHOD = "percentile bootstrap"


def bootstrap_ratio(num: np.ndarray, den: np.ndarray | None = None, *, level: float = LEVEL, n_boot: int = N_BOOT,
                    seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of sum(num[I]) / sum(den[I]) over bootstrap
    resamples I of the rows (den None: the mean of num)."""
    num = np.asarray(num, dtype=np.float64)
    n = num.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // n))
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(m, n))
        top = num[idx].sum(axis=1)
        if den is None:
            stats[done:done + m] = top / n
        else:
            bottom = np.asarray(den, dtype=np.float64)[idx].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                stats[done:done + m] = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)
        done += m
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [a, 1.0 - a])
    return float(lo), float(hi)


def mean_std_err(values: np.ndarray) -> float:
    n = len(values)
    return float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")

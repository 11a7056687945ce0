"""The reward model DR needs: ridge regression on hashed (shared x action) features.

Features: an intercept, every shared feature, every action feature and every
shared x action product (the same crossing the VW policies use), hashed
into `dim` buckets with CRC-32 (stable across processes, unlike `hash`).
Strings are indicators of name=value; numbers enter as sign(x)*log1p(|x|)
so that a revenue of 95 and an age of 40 do not swamp indicators; bools as
1/0. The ridge solution (X'X + l2 I) w = X'y is found by conjugate gradients
on the sparse rows (numpy only), so memory is O(non-zeros), not O(dim^2).

Cross-fitting: rows are split into `folds` parts by a seeded permutation; the
model that predicts a row was fitted on the other parts only, so the DR
correction is not fooled by a model that memorised that row's reward.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandits.policy import Features

_MIX = np.uint64(0x9E3779B97F4A7C15)
_ACTION_SALT = np.uint64(0x5851F42D4C957F2D)


@dataclass(frozen=True, slots=True)
class RewardModelConfig:
    dim: int = 1 << 14
    l2: float = 1.0
    folds: int = 2
    seed: int = 0
    max_iter: int = 200
    tol: float = 1e-8


def _hash(text: str) -> int:
    return zlib.crc32(text.encode())


def _side(features: Features) -> tuple[np.ndarray, np.ndarray]:
    hs: list[int] = []
    xs: list[float] = []
    for ns, feats in features.items():
        for name, v in feats.items():
            if isinstance(v, str):
                hs.append(_hash(f"{ns}\x1f{name}={v}"))
                xs.append(1.0)
            elif isinstance(v, (bool, np.bool_)):
                if v:
                    hs.append(_hash(f"{ns}\x1f{name}"))
                    xs.append(1.0)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                f = float(v)
                if math.isfinite(f) and f != 0.0:
                    hs.append(_hash(f"{ns}\x1f{name}"))
                    xs.append(math.copysign(math.log1p(abs(f)), f))
    return np.asarray(hs, dtype=np.uint64), np.asarray(xs, dtype=np.float64)


class _Rows:
    """Sparse design rows in CSR form."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.idx: list[np.ndarray] = []
        self.val: list[np.ndarray] = []

    def add(self, ctx: tuple[np.ndarray, np.ndarray], act: tuple[np.ndarray, np.ndarray]) -> None:
        ch, cx = ctx
        ah, ax = act
        d = np.uint64(self.dim)
        cross_h = ((ch[:, None] * _MIX) ^ ah[None, :]) % d
        self.idx.append(np.concatenate((np.zeros(1, np.uint64), ch % d, (ah ^ _ACTION_SALT) % d,
                                        cross_h.ravel())).astype(np.int64))
        self.val.append(np.concatenate(([1.0], cx, ax, (cx[:, None] * ax[None, :]).ravel())))

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = np.fromiter((len(i) for i in self.idx), dtype=np.int64, count=len(self.idx))
        return np.concatenate(self.idx), np.concatenate(self.val), counts


def _matvec(idx: np.ndarray, val: np.ndarray, counts: np.ndarray, w: np.ndarray) -> np.ndarray:
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.add.reduceat(val * w[idx], starts) if len(counts) else np.zeros(0)


def _rmatvec(idx: np.ndarray, val: np.ndarray, counts: np.ndarray, u: np.ndarray, dim: int) -> np.ndarray:
    return np.bincount(idx, weights=val * np.repeat(u, counts), minlength=dim)


def _ridge(idx: np.ndarray, val: np.ndarray, counts: np.ndarray, y: np.ndarray, cfg: RewardModelConfig) -> np.ndarray:
    """argmin |Xw - y|^2 + l2 |w|^2 by conjugate gradients on X'X + l2 I."""
    dim = cfg.dim
    w = np.zeros(dim)
    b = _rmatvec(idx, val, counts, y, dim)
    r = b.copy()
    p = r.copy()
    rs = float(r @ r)
    stop = cfg.tol * max(float(b @ b), 1e-300)
    for _ in range(cfg.max_iter):
        if rs <= stop:
            break
        ap = _rmatvec(idx, val, counts, _matvec(idx, val, counts, p), dim) + cfg.l2 * p
        alpha = rs / float(p @ ap)
        w += alpha * p
        r -= alpha * ap
        rs_new = float(r @ r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    return w


def crossfit(contexts: Sequence[Features], action_sets: Sequence[Sequence[Features]], chosen: Sequence[int],
             rewards: Sequence[float], config: RewardModelConfig = RewardModelConfig(), *,
             action_keys: Sequence[Sequence[Hashable]] | None = None) -> list[np.ndarray]:
    """Predicted reward of every action of every row, each row predicted by
    a model fitted on the other folds (one fold: in-sample).

    `action_keys` (optional, parallel to `action_sets`) name actions whose
    features are equal, so each is hashed once.
    """
    n = len(contexts)
    if not (len(action_sets) == len(chosen) == len(rewards) == n):
        raise ValueError("contexts, action_sets, chosen and rewards must have the same length")
    if n == 0:
        return []
    cache: dict[Hashable, tuple[np.ndarray, np.ndarray]] = {}

    def act(i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        if action_keys is None:
            return _side(action_sets[i][j])
        key = action_keys[i][j]
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = _side(action_sets[i][j])
        return hit

    ctx = [_side(c) for c in contexts]
    y = np.asarray(rewards, dtype=np.float64)
    folds = max(1, min(int(config.folds), n))
    fold = np.random.default_rng(config.seed).permutation(n) % folds

    weights = []
    for k in range(folds):
        train = np.flatnonzero(fold != k) if folds > 1 else np.arange(n)
        rows = _Rows(config.dim)
        for i in train:
            rows.add(ctx[i], act(i, int(chosen[i])))
        weights.append(_ridge(*rows.csr(), y[train], config))

    out: list[np.ndarray] = []
    for i in range(n):
        rows = _Rows(config.dim)
        for j in range(len(action_sets[i])):
            rows.add(ctx[i], act(i, j))
        out.append(_matvec(*rows.csr(), weights[int(fold[i])]))
    return out


def describe(config: RewardModelConfig) -> Mapping[str, Any]:
    return {"model": "ridge on hashed shared x action features", "dim": config.dim, "l2": config.l2,
            "folds": config.folds, "seed": config.seed}

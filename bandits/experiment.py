"""Experiment arms: which policy a unit (person) is served by.

`assign_arm` is weighted rendezvous hashing (highest random weight), in its
exponential-race form: every arm i draws u_i = H(salt, unit, arm name) in
(0, 1) and the unit goes to the arm with the smallest -ln(u_i) / share_i
(equivalently the largest -share_i / ln(u_i)). -ln(u_i) is an Exp(1) draw,
so arm i wins with probability share_i / sum(shares).

What moves when shares change (proofs and measurements in docs/BANDITS.md):
- Shares are relative weights (they need not sum to 1) and the arm order in
  the list does not matter.
- Changing ONE arm's share, leaving the other arms' written shares alone,
  moves only the units that must move: raising it moves units only into
  it, lowering it moves units only out of it, and the fraction moved is
  exactly the change of that arm's fraction. Adding an arm (share 0 -> s)
  and removing one (s -> 0) are such changes. With two arms every change is
  one (shares are relative), so shifting 10% from A to B moves exactly the
  10% of units that go from A to B.
- Moving share between two arms while a third keeps its fraction cannot be
  done minimally by ANY stateless assignment (docs/BANDITS.md gives the
  three-line proof); here the growing arm keeps all its units, the
  shrinking arm gains none, and a few units are exchanged with the third
  arms (1 - J_P of the two share vectors, the optimum for stateless
  sampling).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

_TWO_53 = float(1 << 53)


# Arm lists already checked, by identity: the service passes one tuple per
# placement on every request (decision/stages/policy.py), and checking costs
# a few us there. Only a tuple of tuples is kept: it cannot change after
# its check. Each entry keeps its tuple alive, so the id stays its own.
_CHECKED_LIMIT = 1_024
_checked: dict[int, tuple[tuple[str, float], ...]] = {}


def _check(arms: Sequence[tuple[str, float]]) -> None:
    if type(arms) is tuple and _checked.get(id(arms)) is arms:
        return
    _check_shares(arms)
    if type(arms) is tuple and all(type(a) is tuple for a in arms):
        if len(_checked) >= _CHECKED_LIMIT:
            _checked.clear()
        _checked[id(arms)] = arms


def _check_shares(arms: Sequence[tuple[str, float]]) -> None:
    if not arms:
        raise ValueError("no arms to assign")
    names = [a[0] for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique: {names}")
    shares = [a[1] for a in arms]
    if any(not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0) for s in shares) or not sum(shares) > 0:
        raise ValueError(f"arm shares must be finite, >= 0 and not all 0: {shares}")


def unit_uniform(salt: str, unit_key: str, arm: str) -> float:
    """H(salt, unit, arm): a uniform draw in (0, 1), stable across processes
    and versions (BLAKE2b, length-prefixed fields so no two inputs collide)."""
    s, u, a = salt.encode(), unit_key.encode(), arm.encode()
    h = hashlib.blake2b(b"%d:%s%d:%s%d:%s" % (len(s), s, len(u), u, len(a), a), digest_size=8).digest()
    return ((int.from_bytes(h, "big") >> 11) + 0.5) / _TWO_53


def assign_arm(unit_key: str, salt: str, arms: Sequence[tuple[str, float]]) -> str:
    """The arm of a stable unit (a person's pseudonymous key); `salt` is the
    experiment's (change it to reshuffle everyone)."""
    _check(arms)
    best, best_t = arms[0][0], math.inf
    for name, share in arms:
        if share <= 0:
            continue
        t = -math.log(unit_uniform(salt, unit_key, name)) / share
        if t < best_t:
            best, best_t = name, t
    return best


def request_arm(rng: np.random.Generator, arms: Sequence[tuple[str, float]]) -> str:
    """A per-request arm for visitors without a stable id, drawn from the
    injected RNG with probability share / sum(shares)."""
    _check(arms)
    total = float(sum(s for _, s in arms))
    x = rng.random() * total
    acc = 0.0
    for name, share in arms:
        acc += share
        if x < acc and share > 0:
            return name
    return next(name for name, share in reversed(arms) if share > 0)

"""The protocol every policy shares, and the types it speaks.

A policy ranks a set of actions for a context with a probability for each
and, if it learns, learns from one logged example at a time. It never
samples: sampling takes an injected RNG (bandits/sampling.py), so a seed
makes every decision reproducible and any policy can be evaluated offline
from the probabilities it logged.

Saved policies share one envelope (`pack`/`unpack`): a magic line, a JSON
header (kind, name, params, reward range, seed, payload checksum) and the
kind's payload (VW model bytes for "vw"). The header makes a saved model
self-describing: `bandits.registry.load_policy(data)` needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

# namespace -> feature name -> value. Strings are categorical, numbers
# numeric, bools 1/0. Never a raw personal identifier.
FeatureValue = str | float | int | bool
Features = Mapping[str, Mapping[str, FeatureValue]]


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    features: Features
    value: float = 0.0
    priority: float = 1.0
    # The offer id: a slate holds at most one action per group. "" means the
    # action is a group of its own.
    group: str = ""


@dataclass(frozen=True, slots=True)
class Context:
    features: Features


@dataclass(frozen=True, slots=True, eq=False)
class Ranking:
    """Probabilities over the given actions (float64, sum 1) and scores
    (higher is better; only their order within one ranking is meaningful)."""

    probabilities: np.ndarray
    scores: np.ndarray


class PolicyLoadError(ValueError):
    """Saved policy bytes that are corrupt, truncated or of another kind/format."""


@runtime_checkable
class Policy(Protocol):
    name: str
    kind: str
    learns: bool
    params: Mapping[str, Any]

    @property
    def version(self) -> str:
        """Model version logged with every decision: "uniform", "vw:<hash>" ..."""
        ...

    def rank(self, context: Context, actions: Sequence[Action]) -> Ranking: ...

    def learn(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
              reward: float) -> None:
        """One logged example: `chosen` indexes `actions`, `probability` is the
        probability the logging policy gave it (conditional on the slate items
        ranked before it), `reward` is raw (in the placement's reward range)."""
        ...

    def save(self) -> bytes: ...

    @classmethod
    def load(cls, data: bytes) -> Policy: ...


class FixedRule:
    """Base of the policies that do not learn (uniform, fixed priority): no
    model, so learning is a no-op and the saved bytes are the envelope of the
    name and params alone. Subclasses set `kind` and `rank`."""

    kind: str
    learns = False

    def __init__(self, name: str | None = None, params: Mapping[str, Any] | None = None) -> None:
        self.name = name or self.kind
        self.params: Mapping[str, Any] = dict(params or {})

    def learn(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
              reward: float) -> None:
        return None

    def save(self) -> bytes:
        return pack({"kind": self.kind, "name": self.name, "params": dict(self.params)})

    @classmethod
    def load(cls, data: bytes):
        header, _ = unpack(data, cls.kind)
        return cls(header.get("name", cls.kind), header.get("params") or {})


def ranking(probabilities: np.ndarray, scores: np.ndarray) -> Ranking:
    """A Ranking with read-only float64 arrays. Inputs must already be a
    distribution; only a drift beyond 1e-12 (VW's float32 PMF) is renormalised,
    so exact inputs such as 1/n stay exact."""
    p = np.asarray(probabilities, dtype=np.float64)
    # Checked and renormalised in plain Python, with numpy's own sum (same
    # bits): on the request path numpy's reductions and arithmetic cost
    # ~5 us each on a few dozen actions.
    values = p.tolist() if p.ndim == 1 else []
    total = _numpy_sum(values) if values else 0.0
    if not math.isfinite(total) or total <= 0 or min(values) < 0:
        raise ValueError(f"not a probability vector: {p!r}")
    if abs(total - 1.0) > 1e-12:
        p = np.array([x / total for x in values], dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != p.shape:
        raise ValueError(f"scores shape {s.shape} != probabilities shape {p.shape}")
    p.setflags(write=False)
    s.setflags(write=False)
    return Ranking(p, s)


def _numpy_sum(values: list[float]) -> float:
    """np.add.reduce of a 1-D float64 array, bit for bit: 0.0 plus numpy's
    pairwise sum (numpy/_core/src/umath/loops_utils.h.src); tested against
    numpy itself."""
    return 0.0 + _pairwise_sum(values, 0, len(values))


def _pairwise_sum(a: list[float], lo: int, hi: int) -> float:
    n = hi - lo
    if n < 8:
        total = -0.0
        for i in range(lo, hi):
            total += a[i]
        return total
    if n <= 128:  # eight running sums over blocks of eight, then the rest in order
        r = a[lo:lo + 8]
        end = hi - n % 8
        for i in range(lo + 8, end, 8):
            for j in range(8):
                r[j] += a[i + j]
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for i in range(end, hi):
            total += a[i]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, lo, lo + half) + _pairwise_sum(a, lo + half, hi)


def check_actions(actions: Sequence[Action]) -> int:
    n = len(actions)
    if n == 0:
        raise ValueError("cannot rank an empty set of actions")
    return n


def check_example(actions: Sequence[Action], chosen: int, probability: float) -> None:
    if not 0 <= chosen < len(actions):
        raise ValueError(f"chosen index {chosen} out of range for {len(actions)} actions")
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"logged probability must be in (0, 1], got {probability!r}")


# ---- the saved-policy envelope ------------------------------------------------

MAGIC = b"NBA-POLICY/1\n"


def pack(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    head = dict(header)
    head["format"] = 1
    head["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    head["payload_len"] = len(payload)
    line = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + line + b"\n" + payload


def unpack(data: bytes, kind: str | None = None) -> tuple[dict[str, Any], bytes]:
    """Header and payload of saved policy bytes, checked; `kind` if given must match."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PolicyLoadError(f"saved policy must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise PolicyLoadError("not a saved policy (bad magic; expected an NBA-POLICY/1 envelope)")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise PolicyLoadError("saved policy truncated inside its header")
    try:
        header = json.loads(data[len(MAGIC):end])
    except ValueError as e:
        raise PolicyLoadError(f"saved policy header is not valid JSON: {e}") from None
    if not isinstance(header, dict) or header.get("format") != 1:
        found = header.get("format") if isinstance(header, dict) else header
        raise PolicyLoadError(f"unsupported saved policy format {found!r}")
    payload = data[end + 1:]
    if len(payload) != header.get("payload_len"):
        raise PolicyLoadError(f"saved policy payload is {len(payload)} bytes, header says {header.get('payload_len')}")
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise PolicyLoadError("saved policy payload checksum mismatch (corrupt bytes)")
    if kind is not None and header.get("kind") != kind:
        raise PolicyLoadError(f"saved policy is of kind {header.get('kind')!r}, expected {kind!r}")
    return header, payload

"""Policy kinds by name: the catalog's `kind` + `params` -> a Policy, and saved
bytes -> the Policy they describe. Params are validated once, here, with
messages that name the key (`params.exploration: ...`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bandits import fixed, uniform
from bandits.policy import Policy, PolicyLoadError, unpack

KINDS = ("uniform", "fixed_priority", "vw")


def validate_params(kind: str, params: Mapping[str, Any] | None, prefix: str = "params") -> list[str]:
    """Every problem with `params` for `kind`; empty when they are valid."""
    if kind not in KINDS:
        return [f"kind: unknown policy kind {kind!r} (known: {', '.join(KINDS)})"]
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        return [f"{prefix}: must be a mapping, got {type(params).__name__}"]
    if kind == "vw":
        from bandits.vw import VWConfig  # VW only loads when a vw policy is used

        return VWConfig.errors(params, prefix)
    known = uniform.PARAMS if kind == "uniform" else fixed.PARAMS
    errs = [f"{prefix}.{k}: unknown option for {kind} (known: {', '.join(sorted(known)) or 'none'})"
            for k in params if k not in known]
    if "epsilon" in params and "epsilon" in known:
        e = params["epsilon"]
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or not 0 <= e <= 1:
            errs.append(f"{prefix}.epsilon: must be a number in [0, 1], got {e!r}")
    return errs


def make_policy(kind: str, name: str, params: Mapping[str, Any] | None, *,
                reward_range: Sequence[float] = (0.0, 1.0), seed: int = 0) -> Policy:
    errs = validate_params(kind, params)
    if errs:
        raise ValueError(f"policy {name!r}: " + "; ".join(errs))
    if kind == "uniform":
        return uniform.UniformPolicy(name, params)
    if kind == "fixed_priority":
        return fixed.FixedPriorityPolicy(name, params)
    from bandits.vw import VWPolicy

    return VWPolicy(name, params, reward_range=reward_range, seed=seed)


def load_policy(data: bytes) -> Policy:
    """The policy saved in `data`, whatever its kind (PolicyLoadError if not loadable)."""
    header, _ = unpack(data)
    kind = header.get("kind")
    if kind == "uniform":
        return uniform.UniformPolicy.load(data)
    if kind == "fixed_priority":
        return fixed.FixedPriorityPolicy.load(data)
    if kind == "vw":
        from bandits.vw import VWPolicy

        return VWPolicy.load(data)
    raise PolicyLoadError(f"saved policy of unknown kind {kind!r} (known: {', '.join(KINDS)})")

"""Candidate (target) policies by name, for off-policy evaluation.

    uniform              1/n over the logged action set
    fixed_priority       value x priority, top wins (the catalog's offers)
    arm:<name>           the policy the catalog gives arm <name> of the placement
                         (a VW arm needs its model: its latest snapshot)
    model:<file>         a saved policy file (bandits envelope, any kind)
    snapshot:<version>   a model snapshot of the learner: <arm>@<n>, <arm> (its
                         served version), <n>, or a logged model version
                         string (vw:<hash>)

A target is evaluated on the logged action sets: its rank-1 distribution
over exactly the actions each decision logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bandits.policy import Policy, PolicyLoadError
from bandits.registry import load_policy, make_policy
from decision.catalog import Catalog

from decision.experiments import ExperimentError

SPECS = "uniform | fixed_priority | arm:<name> | model:<file> | snapshot:<version>"


@dataclass(frozen=True, slots=True)
class Target:
    spec: str
    policy: Policy
    description: str



def load_model_file(path: str) -> Policy:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ExperimentError(f"model file {path}: cannot read it: {e.strerror or e}") from None
    return load_model_bytes(data, f"model file {path}")


def load_model_bytes(data: bytes, what: str) -> Policy:
    try:
        return load_policy(data)
    except PolicyLoadError as e:
        hint = ""
        if not data.startswith(b"NBA-POLICY/"):
            hint = (" (expected a saved policy as written by the service/learner: an NBA-POLICY/1 envelope around "
                    "the VW model; a bare VW model file lacks the arguments it was trained with)")
        raise ExperimentError(f"{what} is not a policy this service can load: {e}{hint}") from None


def _model_store(redis: Any):
    try:
        from decision.store.models import ModelStore
    except ImportError:  # a build without the learner's model store
        return None
    return ModelStore(redis) if redis is not None else None


async def find_snapshot(redis: Any, placement: str, arm: str | None, spec: str | None) -> tuple[bytes, str] | None:
    """Snapshot bytes from the learner's model store (decision/store/models.py)
    and a description. `arm` alone: that arm's served version. `spec`:
    "<arm>@<n>", "<arm>" (served), "<n>" (the one arm of the placement with
    that version) or a logged model version string such as "vw:1a2b3c4d5e6f"."""
    store = _model_store(redis)
    if store is None:
        raise ExperimentError("model snapshots need the learner's model store (nba learn), which is not installed "
                              "here; evaluate a saved model file with model:<file>")
    arms = [a for p, a in await store.models() if p == placement]
    if spec is None:
        candidates = [(arm, await store.current(placement, arm))]
    else:
        name, at, num = spec.partition("@")
        if at:
            candidates = [(name, int(num))] if num.isdigit() else []
        elif spec in arms:
            candidates = [(spec, await store.current(placement, spec))]
        elif spec.isdigit():
            candidates = [(a, int(spec)) for a in arms if int(spec) in await store.versions(placement, a)]
            if len(candidates) > 1:
                raise ExperimentError(f"snapshot:{spec} is ambiguous: arms {', '.join(a for a, _ in candidates)} "
                                      f"all have version {spec}; say snapshot:<arm>@{spec}")
        else:
            candidates = [(a, v) for a in arms for v, info in (await store.infos(placement, a)).items()
                          if info.model_version == spec]
    for a, v in candidates:
        if v is not None:
            data = await store.load_bytes(placement, a, v)
            if data is not None:
                return data, f"snapshot {a}@{v}"
    return None


async def resolve(spec: str, *, catalog: Catalog | None, placement: str, redis: Any = None) -> Target:
    kind, _, arg = spec.partition(":")
    if spec in ("uniform", "fixed_priority"):
        return Target(spec, make_policy(spec, spec, {}), f"{spec} over the logged actions")
    if kind == "model" and arg:
        return Target(spec, load_model_file(arg), f"saved policy {arg}")
    if kind == "arm" and arg:
        if catalog is None or placement not in catalog.placements:
            raise ExperimentError(f"{spec}: needs the catalog that defines placement {placement!r} (--catalog)")
        arms = {a.name: a for a in catalog.placements[placement].arms}
        if arg not in arms:
            raise ExperimentError(f"{spec}: placement {placement!r} has no arm {arg!r} "
                                  f"(arms: {', '.join(arms) or 'none'})")
        cfg = catalog.policies[arms[arg].policy]
        if cfg.kind != "vw":
            return Target(spec, make_policy(cfg.kind, cfg.name, cfg.params), f"arm {arg}: policy {cfg.name} "
                          f"({cfg.kind})")
        found = await find_snapshot(redis, placement, arg, None)
        if found is None:
            raise ExperimentError(
                f"{spec}: arm {arg!r} runs the VW policy {cfg.name!r}, and no model snapshot of it was found; "
                "evaluate a saved model with model:<file> or a learner snapshot with snapshot:<version>")
        return Target(spec, load_model_bytes(found[0], f"the {found[1]} of arm {arg}"),
                      f"arm {arg}: policy {cfg.name} (vw, {found[1]}, served)")
    if kind == "snapshot" and arg:
        found = await find_snapshot(redis, placement, None, arg)
        if found is None:
            raise ExperimentError(f"{spec}: no model snapshot {arg!r} for placement {placement!r} (give "
                                  "<arm>@<n>, <arm>, <n> or a logged model version such as vw:1a2b3c4d5e6f)")
        return Target(spec, load_model_bytes(found[0], found[1]), found[1])
    raise ExperimentError(f"unknown policy {spec!r} (use {SPECS})")


def default_specs(catalog: Catalog | None, placement: str) -> list[str]:
    """uniform, fixed_priority and every arm of the placement."""
    specs = ["uniform", "fixed_priority"]
    if catalog is not None and placement in catalog.placements:
        specs += [f"arm:{a.name}" for a in catalog.placements[placement].arms]
    return specs

"""What the experimenter commands share: times, the catalog, the join, errors."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from decision.catalog import Catalog, CatalogError, load_catalog
from decision.experiments import ExperimentError
from decision.join import JoinQuery, JoinResult, read_joined


def parse_time(text: str | None, flag: str) -> int | None:
    """ISO date or date-time (UTC unless it says otherwise) -> epoch ms."""
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ExperimentError(f"{flag} {text!r}: expected an ISO date or date-time such as 2026-03-01 or "
                              "2026-03-01T12:00:00Z") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def catalog_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    from decision.server import default_catalog_path

    return default_catalog_path()


def load_catalog_opt(arg: str | None) -> tuple[Catalog | None, str | None]:
    """The catalog, or None and why (an explicitly named catalog must load)."""
    path = catalog_path(arg)
    try:
        return load_catalog(path), None
    except CatalogError as e:
        if arg:
            raise ExperimentError(f"catalog {path} does not load: " + "; ".join(e.errors[:3])) from None
        return None, f"catalog {path} not loaded ({e.errors[0] if e.errors else 'error'})"


def query(args: argparse.Namespace, catalog: Catalog | None, *, arm: str | None = None) -> JoinQuery:
    since = parse_time(getattr(args, "since", None), "--since")
    until = parse_time(getattr(args, "until", None), "--until")
    if since is not None and until is not None and since >= until:
        raise ExperimentError(f"--since {args.since} is not before --until {args.until}")
    placement = catalog.placements.get(args.placement) if catalog is not None else None
    return JoinQuery(args.placement, since, until, arm if arm is not None else getattr(args, "arm", None),
                     parse_time(getattr(args, "as_of", None), "--as-of"),
                     placement.reward.range if placement is not None else None)


async def joined(args: argparse.Namespace, q: JoinQuery, redis=None) -> JoinResult:
    if redis is not None:
        return await read_joined(redis, q)
    from decision.cli import _redis

    async with _redis(args) as client:
        return await read_joined(client, q)


def describe_range(q: JoinQuery) -> str:
    parts = [f"placement {q.placement!r}"]
    if q.arm:
        parts.append(f"arm {q.arm!r}")
    if q.since_ms is not None:
        parts.append(f"since {iso(q.since_ms)}")
    if q.until_ms is not None:
        parts.append(f"until {iso(q.until_ms)}")
    return ", ".join(parts)


def no_data(q: JoinQuery, result: JoinResult, placements: list[str] | None = None) -> ExperimentError:
    s = result.stats
    msg = f"no joined decisions for {describe_range(q)}"
    if s.decisions:
        msg += f" ({s.decisions} decision(s) in range; {s.excluded_note()})"
    else:
        msg += " (no decision in that range"
        if placements is not None:
            msg += f"; placements in the log: {', '.join(placements) or 'none'}"
        msg += ")"
    return ExperimentError(msg)


async def with_redis(fn: Callable[[argparse.Namespace, Any], Coroutine[Any, Any, int]], args: argparse.Namespace,
                     redis=None) -> int:
    """Run `fn(args, redis)` with the given client, or with the one the
    command's --redis-url/--data-dir name (opened and closed here)."""
    if redis is not None:
        return await fn(args, redis)
    from decision.cli import _redis

    async with _redis(args) as client:
        return await fn(args, client)


def run_command(fn: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace) -> int:
    """Run an async command; ExperimentError -> `nba: message`, exit 1."""
    try:
        return asyncio.run(fn(args))
    except ExperimentError as e:
        print(f"nba {args.command}: {e}", file=sys.stderr)
        return 1


def holdout_arm(catalog: Catalog | None, placement: str, arms: Sequence[str], wanted: str | None) -> str | None:
    """The arm whose logs evaluate the others: `wanted`, else the placement's
    arm with a uniform policy, else an arm named "holdout"."""
    if wanted:
        if wanted not in arms:
            raise ExperimentError(f"arm {wanted!r}: no decision of that arm in range "
                                  f"(arms: {', '.join(arms) or 'none'})")
        return wanted
    if catalog is not None and placement in catalog.placements:
        for a in catalog.placements[placement].arms:
            if catalog.policies[a.policy].kind == "uniform" and a.name in arms:
                return a.name
    return "holdout" if "holdout" in arms else None

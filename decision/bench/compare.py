"""Two `nba bench` results side by side: what moved between two commits.

    nba bench --compare OLD.json NEW.json
    python -m decision.bench.compare OLD.json NEW.json

One row per figure of the target table (matched by id): each run's figure
and ratio to its own floor, the change of the ratio, and each run's
verdict (marked when the hypervisor stole CPU in a step it comes from).
Absolute figures only compare on one host; the header says when the two
runs' CPUs differ, and the ratios, measured against a floor in the same
run, are what to read then.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from decision.bench import report

HIGHER_IS_BETTER = ("rps", "/s")


class CompareError(ValueError):
    """A file that is not a bench result."""


def load(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except OSError as e:
        raise CompareError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise CompareError(f"{path}: not JSON ({e})") from None
    if not isinstance(result, dict) or "machine" not in result:
        raise CompareError(f"{path}: not a result of nba bench (no 'machine' section)")
    return result


def _targets(result: dict) -> list[dict]:
    """Today's reading of the run's steps (the steal marks, say), not the one
    stored when it ran; a result of an older layout as it was written."""
    try:
        return report.targets(result)
    except (KeyError, TypeError, ValueError, AttributeError):
        return list(result.get("targets") or [])


def _better(t: dict) -> int:
    """+1 when a higher ratio is better, -1 when lower is."""
    if t.get("target"):
        return 1 if t["target"].startswith(">=") else -1
    return 1 if t.get("unit") in HIGHER_IS_BETTER else -1


def _change(before: dict | None, after: dict | None) -> str:
    if not before or not after or not before.get("ratio") or after.get("ratio") is None:
        return ""
    change = after["ratio"] / before["ratio"]
    if abs(change - 1) < 0.005:
        return "same"
    better = (change > 1) == (_better(after) > 0)
    return f"{change:.2f}x ({'better' if better else 'worse'})"


def _measured(t: dict | None) -> str:
    if not t or t.get("decide") is None:
        return "-"
    return f"{'>= ' if t.get('decide_at_least') else ''}{report._f(t['decide'])} {t['unit']}"


def _run(label: str, path: Path, r: dict) -> str:
    m = r.get("machine") or {}
    dirty = " (uncommitted changes)" if m.get("git_dirty") else ""
    return (f"{label}: {path}  commit {str(m.get('git_commit') or '?')[:12]}{dirty}, profile {r.get('profile')}, "
            f"{r.get('started_at', '?')}, {m.get('cpu_model', '?')}")


def compare(old: dict, new: dict, old_path: Path = Path("OLD"), new_path: Path = Path("NEW")) -> str:
    lines = [_run("before", old_path, old), _run("after ", new_path, new)]
    cpus = [(r.get("machine") or {}).get("cpu_model") for r in (old, new)]
    if cpus[0] != cpus[1]:
        lines.append("  the two runs had different CPUs: compare the ratios (each against its own run's floor), "
                     "not the absolute figures")
    before = {t["id"]: t for t in _targets(old)}
    after = {t["id"]: t for t in _targets(new)}
    order = [*after, *(k for k in before if k not in after)]
    rows = []
    differ = []
    for key in order:
        b, a = before.get(key), after.get(key)
        t = a or b
        name = t["figure"]
        if a and b and a["figure"] != b["figure"]:  # another rate, size or count: the conditions differ
            differ.append(f"  * before: {b['figure']}")
            name += " *"
        rows.append([name, _measured(b), _measured(a), report._times(b and b.get("ratio")),
                     report._times(a and a.get("ratio")), _change(b, a), t.get("target") or "",
                     report.verdict(b) if b else "-", report.verdict(a) if a else "-"])
    lines.append("")
    lines += report._table(["figure", "before", "after", "ratio before", "ratio after", "change", "target",
                            "verdict before", "verdict after"], rows)
    if differ:
        lines += ["", "* measured under other conditions in the run before:", *differ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decision.bench.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs=2, type=Path, metavar="RESULT.json", help="JSON written by nba bench: before, after")
    args = p.parse_args(argv)
    return run(*args.results)


def run(old_path: Path, new_path: Path) -> int:
    try:
        old, new = load(old_path), load(new_path)
    except CompareError as e:
        print(f"nba bench --compare: {e}", file=sys.stderr)
        return 2
    print(compare(old, new, old_path, new_path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

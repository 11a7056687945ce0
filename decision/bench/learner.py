"""Learner throughput: the learner's own benchmark, run as it is.

`python -m decision.learning.bench --decisions N --actions 20` (docs/
LEARNING.md) writes N logged decisions of 20 actions each, about a third
rewarded, to a private Redis, then times one learner reading, joining and
training on all of them, as `nba learn` runs: with two cores, VW learns in
a training process of its own (decision/learning/trainproc.py). The bench
runs it while nothing else of the bench runs, reads its figures from its
output and reports joined examples per second against issue 7's target of
20,000/s; VW alone on the same examples is the reference of what the
learner's Python costs on top, and the one-process learner (`--train-process
off`, alternating with it) what the training process gains. `small` and
`full` run each three times and report the median run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

TARGET_PER_S = 20_000
ACTIONS = 20

_LEARNER = re.compile(r"([\d,]+) joined decisions.*? in ([\d.]+)\s*s = ([\d,.]+) joined examples/s")
_VW = re.compile(r"VW alone[^:]*:\s*([\d,.]+) examples/s")


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse(output: str) -> dict:
    """The figures of decision.learning.bench's report; {} when it says none."""
    m = _LEARNER.search(output)
    if not m:
        return {}
    out = {"joined": int(_number(m.group(1))), "elapsed_s": _number(m.group(2)), "per_s": _number(m.group(3))}
    vw = _VW.search(output)
    out["vw_only_per_s"] = _number(vw.group(1)) if vw else None
    return out


def _once(args: list[str], cpus: list[int] | None, timeout_s: float) -> dict:
    """One run of the learner's benchmark: its figures, or "error"."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=env,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout_s:g} s"}
    out = {"wall_s": time.monotonic() - t0, "output": proc.stdout}
    figures = parse(proc.stdout) if proc.returncode == 0 else {}
    if not figures:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        out["error"] = f"exit code {proc.returncode}, no figures in its output: " + " / ".join(tail)
        return out
    out.update(figures)
    return out


def combine(runs: list[dict]) -> dict:
    """The figures of several runs as one: the run of median throughput
    (its output and times included), every run's figures kept in "runs".
    A machine shared with other work moves one run's figure by 10-15%."""
    ranked = sorted(runs, key=lambda r: r["per_s"])
    out = dict(ranked[(len(ranked) - 1) // 2])
    vw = sorted(r["vw_only_per_s"] for r in runs if r.get("vw_only_per_s"))
    out["vw_only_per_s"] = vw[(len(vw) - 1) // 2] if vw else None
    out["runs"] = [{k: v for k, v in r.items() if k != "output"} for r in runs]
    return out


def run(decisions: int, cpus: list[int] | None, timeout_s: float, log=print, runs: int = 1) -> dict:
    """`runs` runs of the learner's benchmark as `nba learn` runs by default
    (with two cores or more, VW in a training process of its own); the
    figure is their median (`combine`). With two cores, as many runs of the
    one-process learner (`--train-process off`), alternating with them, are
    the reference ("one_process"). An error in any run is the result."""
    args = [sys.executable, "-m", "decision.learning.bench", "--decisions", str(decisions), "--actions", str(ACTIONS)]
    from decision.learning.trainproc import wanted

    two = wanted("auto", cpus)  # the runs' affinity is `cpus`
    modes = ("auto", "off") if two else ("auto",)
    log(f"learner: {' '.join(args[1:])}" + (f" ({runs} runs" if runs > 1 else " (")
        + (", alternating with --train-process off)" if two else ")"))
    head = {"decisions": decisions, "actions": ACTIONS, "command": " ".join(args[1:]),
            "train_process": two}
    done: dict[str, list[dict]] = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode in modes:
            one = _once([*args, "--train-process", mode], cpus, timeout_s)
            if "error" in one:
                return {**head, **one}
            log(f"  {'one process: ' if mode == 'off' else ''}{one['per_s']:,.0f} joined examples/s"
                + (f" (VW alone: {one['vw_only_per_s']:,.0f}/s)" if one["vw_only_per_s"] else ""))
            done[mode].append(one)
    out = {**head, **combine(done["auto"])}
    if two:
        ref = combine(done["off"])
        out["one_process"] = {"per_s": ref["per_s"], "runs": [r["per_s"] for r in ref["runs"]]}
    return out

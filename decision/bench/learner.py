"""Learner throughput: the learner's own benchmark, run as it is.

`python -m decision.learning.bench --decisions N --actions 20` (docs/
LEARNING.md) writes N logged decisions of 20 actions each, about a third
rewarded, to a private Redis, then times one learner reading, joining and
training on all of them on one core. The bench runs it while nothing else
of the bench runs, reads its figures from its output and reports joined
examples per second against issue 7's target of 20,000/s; VW alone on the
same examples is the reference of what the learner's Python costs on top.
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


def run(decisions: int, cpus: list[int] | None, timeout_s: float, log=print) -> dict:
    args = [sys.executable, "-m", "decision.learning.bench", "--decisions", str(decisions), "--actions", str(ACTIONS)]
    log(f"learner: {' '.join(args[1:])}")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=env,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    except subprocess.TimeoutExpired:
        return {"decisions": decisions, "actions": ACTIONS, "error": f"did not finish within {timeout_s:g} s"}
    out = {"decisions": decisions, "actions": ACTIONS, "command": " ".join(args[1:]),
           "wall_s": time.monotonic() - t0, "output": proc.stdout}
    figures = parse(proc.stdout) if proc.returncode == 0 else {}
    if not figures:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        out["error"] = f"exit code {proc.returncode}, no figures in its output: " + " / ".join(tail)
        return out
    out.update(figures)
    log(f"  {out['per_s']:,.0f} joined examples/s (VW alone: "
        f"{out['vw_only_per_s']:,.0f}/s)" if out["vw_only_per_s"] else f"  {out['per_s']:,.0f} joined examples/s")
    return out

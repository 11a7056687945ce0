"""Memory soak: the service's RSS over a long run at half load.

One open-loop step of Decide at half of its maximum rate (or `--rate`), 10
minutes in `--profile soak`, against the `nba serve` the Decide phase
measured, while a thread reads the service's resident set size (and
Valkey's) from /proc every 10 s. The first minute is the warm-up (caches,
VW's first examples, the allocator finding its size): RSS at its end is the
start figure. Reported: RSS at start, at the end and its maximum, and the
slope of a least-squares line through the samples after the warm-up. The
target of issue 7, "no memory growth": end RSS at most 1.1x the start RSS.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from decision.bench import procs

MiB = 1 << 20
GROWTH_TARGET = 1.10


class _Sampler(threading.Thread):
    def __init__(self, pids: dict[str, int | None], every_s: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pids, self.every_s = pids, every_s
        self.samples: list[dict] = []
        self.t0 = time.monotonic()
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append({"t_s": time.monotonic() - self.t0} |
                                {f"{name}_rss_bytes": procs.rss_bytes(pid) for name, pid in self.pids.items()})
            if self._done.wait(self.every_s):
                return

    def stop(self) -> list[dict]:
        self._done.set()
        self.join()
        return self.samples


def run(bench, rate: float, duration_s: float, warmup_s: float, every_s: float) -> dict:
    service = bench.main_service()
    if service is None:
        return {"error": bench.service_error() or "nba serve did not start"}
    length = f"{duration_s / 60:g} min" if duration_s >= 60 else f"{duration_s:g} s"
    bench.log(f"soak: {length} of Decide at {rate:g} requests/s, RSS every {every_s:g} s")
    sampler = _Sampler({"service": service.pid, "redis": bench.redis_pid}, every_s)
    sampler.start()
    try:
        s, _ = bench.main_measure().step(rate, duration_s + warmup_s, warmup_s)
    finally:
        samples = sampler.stop()
    # The step started after the machine went idle and a short lead: its warm-up ends that much later.
    warm_end = s.get("quiesce_wait_s", 0.0) + 0.3 + warmup_s
    after = [x for x in samples if x["t_s"] >= warm_end] or samples[-1:]
    t = np.array([x["t_s"] for x in after])
    rss = np.array([x["service_rss_bytes"] for x in after], dtype=float)
    slope = float(np.polyfit(t, rss, 1)[0]) * 60 / MiB if len(after) >= 2 else None
    out = {
        "rate_rps": rate, "duration_s": duration_s, "warmup_s": warmup_s, "sample_every_s": every_s,
        "step": s,
        "samples": samples,
        "rss_start_bytes": int(rss[0]), "rss_end_bytes": int(rss[-1]), "rss_max_bytes": int(rss.max()),
        "rss_slope_mib_per_min": slope,
        "redis_rss_start_bytes": after[0]["redis_rss_bytes"], "redis_rss_end_bytes": after[-1]["redis_rss_bytes"],
        "growth_target": GROWTH_TARGET,
    }
    bench.log(f"  service RSS {rss[0] / MiB:.1f} MiB after the warm-up, {rss[-1] / MiB:.1f} MiB at the end "
              f"(max {rss.max() / MiB:.1f})" + (f", {slope:+.2f} MiB/min" if slope is not None else ""))
    if not service.alive():
        out["error"] = bench.service_error()
    return out

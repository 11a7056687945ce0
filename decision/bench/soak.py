"""Memory soak: the service's RSS over a long run at half load.

One open-loop step of Decide at half of its maximum rate (or `--rate`), 10
minutes in `--profile soak`, against the `nba serve` the Decide phase
measured, while a thread reads the service's resident set size (and
Valkey's) from /proc every 10 s. The first minute is the warm-up (caches,
VW's first examples, the allocator finding its size).

A service's RSS climbs for a while under a new load (caches filling) and
then stays flat; the climb can outlast a fixed warm-up (measured: 3-4
minutes), and growth measured from the warm-up's end then counts the climb
as if it were a leak. So the start figure is taken where the climb has
levelled off, found in the samples: the first sample at or after the end of
the warm-up from which a least-squares line through the next
LEVEL_WINDOW_S seconds of samples rises by less than LEVEL_SLOPE_SHARE of
the RSS per minute (0.1%/min: at that rate a 10-minute run grows 1%, a tenth
of the target's allowance). A leak does not level off, and a climb that
lasts the whole run is reported as such: `levelled_off` is False, the start
figure falls back to RSS at the end of the warm-up and the soak fails
(`passed` False) whatever its end/start ratio. A run too short to hold one
window (the smoke profile) cannot tell: `levelled_off` is None.

Reported: RSS at the end of the warm-up and when the climb levelled off
(and when), the start figure (`rss_start_bytes`: the level-off one), at the
end and its maximum since the start; least-squares slopes from the start
figure on (`rss_slope_mib_per_min`), from the end of the warm-up on (the
figure of earlier runs), and over the second half of the measured run
(after the warm-up), where a real leak shows whatever the climb did. The
target of issue 7, "no memory growth": end RSS at most 1.1x the start RSS,
after a climb that levelled off.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from decision.bench import procs

MiB = 1 << 20
GROWTH_TARGET = 1.10
LEVEL_WINDOW_S = 120.0  # the sliding window that must be flat: 13 samples at one every 10 s
LEVEL_SLOPE_SHARE = 0.001  # "flat": rising by less than 0.1% of the RSS per minute over the window
LEVEL_MIN_SAMPLES = 5  # fewer samples in a window tell nothing


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


def slope_mib_per_min(t_s, rss_bytes) -> float | None:
    """The slope of a least-squares line through (t, RSS), in MiB per minute;
    None with fewer than two distinct times."""
    t = np.asarray(t_s, dtype=float)
    rss = np.asarray(rss_bytes, dtype=float)
    if len(t) < 2 or np.ptp(t) <= 0:
        return None
    return float(np.polyfit(t, rss, 1)[0]) * 60 / MiB


def level_off(t_s, rss_bytes, *, start_s: float, window_s: float, max_slope_mib_per_min: float,
              min_samples: int = LEVEL_MIN_SAMPLES) -> tuple[int | None, bool | None]:
    """Where the climb levelled off: (index of the first sample at or after
    `start_s` from which the samples of the next `window_s` seconds have a
    least-squares slope of at most `max_slope_mib_per_min`, True). (None,
    False) when windows fit in the samples but none is that flat (the RSS
    never stopped climbing); (None, None) when not one window fits (too
    short a run to tell)."""
    t = np.asarray(t_s, dtype=float)
    rss = np.asarray(rss_bytes, dtype=float)
    if len(t) < 2:
        return None, None
    # Sampling jitter: a window "spans" window_s within half a sampling interval.
    tol = float(np.median(np.diff(t))) / 2
    fitted = False
    for i in np.flatnonzero(t >= start_s):
        inside = (t >= t[i]) & (t <= t[i] + window_s + tol)
        j = int(np.flatnonzero(inside)[-1])
        if t[j] - t[i] < window_s - tol or inside.sum() < min_samples:
            break  # this window and every later one run past the last sample
        fitted = True
        slope = slope_mib_per_min(t[inside], rss[inside])
        if slope is not None and slope <= max_slope_mib_per_min:
            return int(i), True
    return None, (False if fitted else None)


def analyse(samples: list[dict], warm_end_s: float, *, window_s: float = LEVEL_WINDOW_S,
            slope_share: float = LEVEL_SLOPE_SHARE, growth_target: float = GROWTH_TARGET) -> dict:
    """The figures of a soak from its RSS samples (dicts with t_s,
    service_rss_bytes and redis_rss_bytes), the warm-up ending at
    `warm_end_s` on the samples' clock."""
    # A sample of 0 is a service that was gone (or unreadable): not a size.
    after = [x for x in samples if x["t_s"] >= warm_end_s and x["service_rss_bytes"]] or samples[-1:]
    t = np.array([x["t_s"] for x in after], dtype=float)
    rss = np.array([x["service_rss_bytes"] for x in after], dtype=float)
    warm_rss = float(rss[0])
    threshold = slope_share * warm_rss / MiB  # MiB per minute
    found, levelled = level_off(t, rss, start_s=t[0], window_s=window_s, max_slope_mib_per_min=threshold)
    i = found if found is not None else 0  # never levelled off, or cannot tell: from the end of the warm-up
    half_from = (t[0] + t[-1]) / 2
    second = t >= half_from
    start, end = float(rss[i]), float(rss[-1])
    growth = end / start if start else None
    passed = None if levelled is None or growth is None else bool(levelled and growth <= growth_target)
    if levelled:
        verdict = f"RSS levelled off {t[i] / 60:.1f} min into the soak ({(t[i] - t[0]) / 60:.1f} min after the warm-up)"
    elif levelled is False:
        verdict = (f"RSS never levelled off: no {window_s / 60:g}-minute window after the warm-up rose by less "
                   f"than {threshold:.3f} MiB/min; a failed soak, growth measured from the end of the warm-up")
    else:
        verdict = (f"too short to tell whether RSS levelled off (needs {window_s / 60:g} minutes of samples after "
                   "the warm-up); growth measured from the end of the warm-up")
    return {
        "rss_start_bytes": int(start), "rss_start_s": float(t[i]),
        "rss_end_bytes": int(end), "rss_max_bytes": int(rss[i:].max()),
        "rss_growth": growth, "passed": passed, "verdict": verdict,
        "levelled_off": levelled, "rss_level_off_s": float(t[found]) if found is not None else None,
        "rss_level_off_bytes": int(rss[found]) if found is not None else None,
        "level_off_window_s": window_s, "level_off_max_slope_mib_per_min": threshold,
        "rss_warmup_end_s": float(t[0]), "rss_warmup_end_bytes": int(warm_rss),
        "rss_slope_mib_per_min": slope_mib_per_min(t[i:], rss[i:]),
        "rss_slope_after_warmup_mib_per_min": slope_mib_per_min(t, rss),
        "rss_slope_second_half_mib_per_min": slope_mib_per_min(t[second], rss[second]),
        "second_half_from_s": float(half_from),
        "redis_rss_start_bytes": after[i]["redis_rss_bytes"], "redis_rss_end_bytes": after[-1]["redis_rss_bytes"],
        "growth_target": growth_target,
    }


def run(bench, rate: float, duration_s: float, warmup_s: float, every_s: float,
        level_window_s: float = LEVEL_WINDOW_S) -> dict:
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
    out = {"rate_rps": rate, "duration_s": duration_s, "warmup_s": warmup_s, "sample_every_s": every_s,
           "step": s, "samples": samples} | analyse(samples, warm_end, window_s=level_window_s)
    slope, half = out["rss_slope_mib_per_min"], out["rss_slope_second_half_mib_per_min"]
    bench.log(f"  service RSS {out['rss_warmup_end_bytes'] / MiB:.1f} MiB after the warm-up; {out['verdict']}"
              + (f" at {out['rss_level_off_bytes'] / MiB:.1f} MiB" if out["levelled_off"] else ""))
    bench.log(f"  {out['rss_start_bytes'] / MiB:.1f} MiB at the start, {out['rss_end_bytes'] / MiB:.1f} MiB at the "
              f"end (max {out['rss_max_bytes'] / MiB:.1f})"
              + (f", x{out['rss_growth']:.3f}" if out["rss_growth"] is not None else "")
              + (f", {slope:+.2f} MiB/min from the start" if slope is not None else "")
              + (f", {half:+.2f} MiB/min over the second half" if half is not None else "")
              + {True: ": PASS", False: ": FAIL", None: ""}[out["passed"]])
    if not service.alive():
        out["error"] = bench.service_error()
    return out

"""The open-loop load generator.

Open loop: requests leave at the times of a schedule computed before the step
starts (a fixed arrival rate, evenly spaced), whether or not earlier requests
have been answered. Each latency is measured from the request's *scheduled*
send time, so when the server (or the generator itself) falls behind, the
waiting shows up in the figures instead of silently lowering the offered load
(coordinated omission). The generator also records when each request really
left, so its own lag is reported next to the latencies it measured.

Requests in flight are not capped by the protocol: every due request is sent.
A very high per-worker cap (`max_in_flight`) exists only so that a dead
server cannot exhaust memory; each request it refuses is counted
(GENERATOR_CAP) and counts as an error.

One or more worker processes, each pinned to its own core(s), share the
schedule: worker w of W sends requests w, w+W, w+2W, ... of one global
evenly spaced schedule. Each runs uvloop and one grpc.aio channel (or one
Redis client) and sends pre-serialised requests, so the generator spends its
CPU on scheduling and the transport, not on protobuf.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing as mp
import os
import time
from array import array
from dataclasses import dataclass, field, replace
from typing import Awaitable, Callable

import numpy as np

DECIDE_METHOD = "/nba.v1.DecisionService/Decide"
REWARD_METHOD = "/nba.v1.DecisionService/Reward"

OK = 0
# Non-gRPC outcomes get negative codes; gRPC status codes keep their numbers.
GENERATOR_CAP = -1
NO_REPLY = -2  # still unanswered when the step's drain deadline passed
STATUS_NAMES = {GENERATOR_CAP: "GENERATOR_CAP", NO_REPLY: "NO_REPLY"}
# What an OK Decide answered (see Target.inspect_decide). DEGRADED: the
# service could not reach its state store in time and served the fallback
# without deciding (arm "degraded"); for a Reward, it kept the event in its
# spool instead of counting it (`deferred`). DUPLICATE: a Reward whose event
# id had been counted before.
FALLBACK, EMPTY, DEGRADED, DUPLICATE = 1, 2, 3, 4

@dataclass(frozen=True, slots=True)
class Target:
    """What the workers call. Picklable: it travels to the worker processes."""

    kind: str  # "grpc" | "redis"
    address: str  # host:port for grpc, a redis URL for redis
    payloads: tuple[bytes, ...]  # serialised requests (grpc) or person keys (redis), used in turn, cyclically
    method: str = DECIDE_METHOD
    channels: int = 1  # grpc channels (HTTP/2 connections) per worker
    # Parse each reply (a DecideResponse, or a RewardAck for REWARD_METHOD)
    # and note fallbacks: a degraded service can answer OK, fast, with its
    # fallback offer, or defer a reward to its spool.
    inspect_decide: bool = True


@dataclass(frozen=True, slots=True)
class Step:
    rate: float  # offered requests per second, all workers together
    duration_s: float  # warm-up included
    warmup_s: float
    timeout_s: float = 5.0
    max_in_flight: int = 50_000  # per worker; see the module docstring


@dataclass
class StepSamples:
    """Every request of one step, all workers merged, times in ns from the step start."""

    step: Step
    scheduled: np.ndarray
    sent: np.ndarray  # 0 when never sent
    done: np.ndarray  # 0 when never answered
    status: np.ndarray
    kind: np.ndarray  # 0, FALLBACK, EMPTY or DEGRADED for OK replies
    status_names: dict[int, str]
    generator_cpu_s: float
    workers: int
    wall_s: float = 0.0
    error_examples: dict[str, str] = field(default_factory=dict)


# --- the worker side ---------------------------------------------------------


class _Caller:
    """Turns an index into one call; returns a status code."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._parse = self._reward = None
        if target.kind == "grpc" and target.inspect_decide:
            from decision.nba.v1 import decision_pb2 as pb

            if target.method == REWARD_METHOD:
                self._reward = pb.RewardAck.FromString
            else:
                self._parse = pb.DecideResponse.FromString
        self.names: dict[int, str] = dict(STATUS_NAMES)
        self.examples: dict[str, str] = {}  # status name -> the first error message seen
        self._exc_codes: dict[str, int] = {}

    async def open(self) -> None:
        t = self.target
        if t.kind == "grpc":
            import grpc

            self._grpc = grpc
            self._channels = [grpc.aio.insecure_channel(t.address, options=[("grpc.use_local_subchannel_pool", 1)])
                              for _ in range(t.channels)]
            for ch in self._channels:
                await asyncio.wait_for(ch.channel_ready(), 10)
            # No (de)serialisers: requests go out as the bytes given, replies stay bytes.
            self._calls = [ch.unary_unary(t.method) for ch in self._channels]
        elif t.kind == "redis":
            from decision.bench.floors import ProfileRead

            self._read = ProfileRead(t.address)
        else:
            raise ValueError(f"unknown target kind {t.kind!r}")

    async def close(self) -> None:
        if self.target.kind == "grpc":
            for ch in self._channels:
                await ch.close()
        else:
            await self._read.close()

    def code_of(self, exc: BaseException) -> int:
        if self.target.kind == "grpc" and isinstance(exc, self._grpc.aio.AioRpcError):
            code = exc.code()
            self.names[code.value[0]] = code.name
            self.examples.setdefault(code.name, exc.details() or "")
            return code.value[0]
        name = type(exc).__name__
        if name not in self._exc_codes:
            self._exc_codes[name] = -10 - len(self._exc_codes)
            self.names[self._exc_codes[name]] = name
            self.examples.setdefault(name, str(exc)[:200])
        return self._exc_codes[name]

    def inspect(self, reply) -> int:
        """0 for a decision, else DEGRADED, FALLBACK or EMPTY; for a
        reward, 0 when counted, else DEGRADED (deferred) or DUPLICATE."""
        if self._reward is not None:
            ack = self._reward(reply)
            return DEGRADED if ack.deferred else DUPLICATE if ack.duplicate else 0
        if self._parse is None:
            return 0
        resp = self._parse(reply)
        if resp.arm == "degraded":
            return DEGRADED
        return FALLBACK if resp.fallback else EMPTY if not resp.items else 0

    def call(self, i: int, timeout_s: float) -> Awaitable:
        payloads = self.target.payloads
        if self.target.kind == "grpc":
            calls = self._calls
            return calls[i % len(calls)](payloads[i % len(payloads)], timeout=timeout_s)
        return self._read.read(payloads[i % len(payloads)].decode())


class _Timer:
    """Calls `callback` at an absolute time.monotonic_ns() instant.

    The event loop's own timers have millisecond resolution (libuv), which
    would add up to a millisecond of generator lag to every request - about
    the size of what is measured. A Linux timerfd wakes the loop within
    microseconds instead, without spinning: the generator's core stays free
    for the grpc threads and, on a small machine, the processes it shares
    that core with. Elsewhere the loop's timer is used, and its lag shows in
    the reported send lag.
    """

    CLOCK_MONOTONIC, TFD_NONBLOCK, TFD_CLOEXEC, TFD_TIMER_ABSTIME = 1, 0o4000, 0o2000000, 1

    class _Spec(ctypes.Structure):
        _fields_ = [("interval_s", ctypes.c_long), ("interval_ns", ctypes.c_long),
                    ("value_s", ctypes.c_long), ("value_ns", ctypes.c_long)]

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop, self.callback = loop, callback
        self._handle = None
        self.fd = -1
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            self.fd = self._libc.timerfd_create(self.CLOCK_MONOTONIC, self.TFD_NONBLOCK | self.TFD_CLOEXEC)
        except (OSError, AttributeError):
            self.fd = -1
        if self.fd >= 0:
            loop.add_reader(self.fd, self._expired)
        self.precise = self.fd >= 0

    def arm(self, at_ns: int) -> None:
        if self.fd < 0:
            delay = (at_ns - time.monotonic_ns()) / 1e9
            self._handle = self.loop.call_later(max(0.0, delay), self.callback)
            return
        spec = self._Spec(0, 0, at_ns // 1_000_000_000, at_ns % 1_000_000_000)
        if self._libc.timerfd_settime(self.fd, self.TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")

    def _expired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        self.callback()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        elif self._handle is not None:
            self._handle.cancel()


async def open_loop(call: Callable[[int], Awaitable], code_of: Callable[[BaseException], int],
                    schedule: list[int], max_in_flight: int, drain_s: float,
                    inspect: Callable[[object], int] = lambda reply: 0) -> tuple[array, array, array, array]:
    """Send request k at monotonic time schedule[k] (ns); return sent, done,
    status and what inspect() said of each reply."""
    n = len(schedule)
    sent = array("q", bytes(8 * n))
    done = array("q", bytes(8 * n))
    status = array("h", bytes(2 * n))
    kind = array("b", bytes(n))
    clock = time.monotonic_ns
    pending: dict[asyncio.Task, int] = {}
    loop = asyncio.get_running_loop()
    all_sent = loop.create_future()
    next_k = 0

    async def one(k: int) -> None:
        sent[k] = clock()
        try:
            reply = await call(k)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # every failure is counted by its kind, none stops the step
            status[k] = code_of(e)
            done[k] = clock()
            return
        done[k] = clock()
        kind[k] = inspect(reply)

    def send_due() -> None:
        nonlocal next_k
        k, now = next_k, clock()
        while k < n and schedule[k] <= now:
            if len(pending) >= max_in_flight:
                status[k] = GENERATOR_CAP
            else:
                task = loop.create_task(one(k))
                pending[task] = k
                task.add_done_callback(pending.pop)
            k += 1
        next_k = k
        if k < n:
            timer.arm(schedule[k])
        elif not all_sent.done():
            all_sent.set_result(None)

    timer = _Timer(loop, send_due)
    try:
        if n:
            timer.arm(schedule[0])
            await all_sent
    finally:
        timer.close()
    if pending:
        _, late = await asyncio.wait(list(pending), timeout=drain_s)
        unanswered = [pending[t] for t in late]
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        for k in unanswered:
            status[k], done[k] = NO_REPLY, 0
    return sent, done, status, kind


@dataclass
class _Part:
    """One worker's share of a step, times in ns from the step start."""

    scheduled: np.ndarray
    sent: np.ndarray
    done: np.ndarray
    status: np.ndarray
    kind: np.ndarray
    names: dict[int, str]
    examples: dict[str, str]
    cpu_s: float


async def _worker_loop(conn, target: Target) -> None:
    caller = _Caller(target)
    await caller.open()
    # The generator's own garbage collections would stall sends (and show as
    # latency): leave the start-up objects out of them and collect rarely.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    conn.send(("ready", os.getpid()))
    try:
        while True:
            msg = await asyncio.to_thread(conn.recv)
            if msg is None:
                return
            step, start_ns, index, workers, first = msg
            count = int(round(step.rate * step.duration_s))
            period_ns = 1e9 / step.rate
            schedule = [start_ns + int((index + workers * j) * period_ns)
                        for j in range((count - index + workers - 1) // workers)]
            timeout = step.timeout_s
            cpu0 = time.process_time()
            sent, done, status, kind = await open_loop(
                lambda k: caller.call(first + index + workers * k, timeout), caller.code_of, schedule,
                step.max_in_flight, drain_s=timeout + 1.0, inspect=caller.inspect)
            cpu = time.process_time() - cpu0
            sent_a, done_a = np.frombuffer(sent, np.int64), np.frombuffer(done, np.int64)
            conn.send(_Part(
                scheduled=np.asarray(schedule, dtype=np.int64) - start_ns,
                sent=np.where(sent_a > 0, sent_a - start_ns, 0),
                done=np.where(done_a > 0, done_a - start_ns, 0),
                status=np.frombuffer(status, np.int16).copy(),
                kind=np.frombuffer(kind, np.int8).copy(),
                names=dict(caller.names), examples=dict(caller.examples), cpu_s=cpu))
    finally:
        await caller.close()


def _worker_main(conn, target: Target, cpus: list[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)  # before grpc starts its threads, so they inherit it
    try:
        import uvloop

        uvloop.run(_worker_loop(conn, target))
    except ImportError:
        asyncio.run(_worker_loop(conn, target))


# --- the parent side ----------------------------------------------------------


class LoadGenerator:
    """Worker processes that run steps of open-loop load against one target."""

    def __init__(self, target: Target, cpu_sets: list[list[int] | None]) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no grpc state inherited across fork
        self.target = target
        self.cpu_sets = cpu_sets
        self._next_payload = 0
        self._conns = []
        self._procs = []
        for cpus in cpu_sets:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, target, cpus), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.pids = []
        for conn, proc in zip(self._conns, self._procs):
            if not conn.poll(60):
                self.close()
                raise RuntimeError(f"load generator worker {proc.pid} did not start (target {target.address})")
            _, pid = conn.recv()
            self.pids.append(pid)

    @property
    def payloads_used(self) -> int:
        """Requests sent so far, all steps; past len(target.payloads) they repeat."""
        return self._next_payload

    def run(self, step: Step, lead_s: float = 0.3) -> StepSamples:
        workers = len(self._conns)
        start_ns = time.monotonic_ns() + int(lead_s * 1e9)
        # Each step goes on through the payloads where the last one stopped.
        first, self._next_payload = self._next_payload, self._next_payload + int(round(step.rate * step.duration_s))
        for index, conn in enumerate(self._conns):
            conn.send((step, start_ns, index, workers, first))
        parts: list[_Part] = []
        for conn in self._conns:
            if not conn.poll(step.duration_s + step.timeout_s + 60):
                raise RuntimeError("a load generator worker stopped answering")
            parts.append(conn.recv())
        wall = (time.monotonic_ns() - start_ns) / 1e9
        names: dict[int, str] = {}
        examples: dict[str, str] = {}
        for p in parts:
            names.update(p.names)
            examples.update(p.examples)
        order = np.argsort(np.concatenate([p.scheduled for p in parts]), kind="stable")

        def merged(attr: str) -> np.ndarray:
            return np.concatenate([getattr(p, attr) for p in parts])[order]

        return StepSamples(step, merged("scheduled"), merged("sent"), merged("done"), merged("status"),
                           merged("kind"), status_names=names, generator_cpu_s=sum(p.cpu_s for p in parts),
                           workers=workers, wall_s=wall, error_examples=examples)

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        self._conns, self._procs = [], []

    def __enter__(self) -> "LoadGenerator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- figures of one step -------------------------------------------------------

PERCENTILES = (50, 95, 99, 99.9)


def summarize(s: StepSamples) -> dict:
    """Achieved throughput, latency percentiles from the scheduled time, errors.

    Only requests scheduled after the warm-up count. Throughput is the number
    of successful answers that arrived inside the measured window, divided by
    its length: a server that falls behind answers fewer than were offered.
    """
    step = s.step
    w0, w1 = int(step.warmup_s * 1e9), int(step.duration_s * 1e9)
    measured = s.scheduled >= w0
    ok = measured & (s.status == OK)
    answered_in_window = (s.status == OK) & (s.done >= w0) & (s.done <= w1)
    window_s = (w1 - w0) / 1e9
    lat_ms = (s.done[ok] - s.scheduled[ok]) / 1e6
    service_ms = (s.done[ok] - s.sent[ok]) / 1e6
    sent = measured & (s.sent > 0)
    lag_ms = (s.sent[sent] - s.scheduled[sent]) / 1e6
    errors: dict[str, int] = {}
    for code, count in zip(*np.unique(s.status[measured & (s.status != OK)], return_counts=True)):
        errors[s.status_names.get(int(code), str(int(code)))] = int(count)
    n = int(measured.sum())

    def pct(a: np.ndarray) -> dict[str, float]:
        if a.size == 0:
            return {f"p{p:g}": float("nan") for p in PERCENTILES}
        return {f"p{p:g}": float(v) for p, v in zip(PERCENTILES, np.percentile(a, PERCENTILES))}

    return {
        "offered_rps": step.rate,
        "duration_s": step.duration_s,
        "warmup_s": step.warmup_s,
        "requests": n,
        "ok": int(ok.sum()),
        "achieved_rps": float(answered_in_window.sum() / window_s),
        "latency_ms": pct(lat_ms) | {"mean": float(lat_ms.mean()) if lat_ms.size else float("nan"),
                                     "max": float(lat_ms.max()) if lat_ms.size else float("nan")},
        "service_time_ms": pct(service_ms),
        "send_lag_ms": pct(lag_ms),
        "errors": errors,
        "error_examples": {k: v for k, v in s.error_examples.items() if k in errors},
        "error_count": int(n - ok.sum()),
        "degraded_answers": int((s.kind[ok] == DEGRADED).sum()),
        "fallback_answers": int((s.kind[ok] == FALLBACK).sum()),
        "empty_answers": int((s.kind[ok] == EMPTY).sum()),
        "duplicate_answers": int((s.kind[ok] == DUPLICATE).sum()),
        "generator_cap_hits": int((s.status == GENERATOR_CAP).sum()),
        "generator_workers": s.workers,
        "generator_cpu_s": s.generator_cpu_s,
        "wall_s": s.wall_s,
    }


def concat(steps: list[StepSamples]) -> StepSamples:
    """The measured windows of several steps of one rate as one step: each
    step's warm-up is dropped and its times shifted to follow the previous
    window, so `summarize` gives percentiles over all of them. Throughput
    over the joined window is the steps' mean (answers arriving after their
    own window fall into the next one: close enough at a sustained rate)."""
    if not steps:
        raise ValueError("no steps to join")
    first = steps[0].step
    if any(s.step.rate != first.rate for s in steps):
        raise ValueError("steps of different rates cannot be joined")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("scheduled", "sent", "done", "status", "kind")}
    offset = 0
    for s in steps:
        w0, w1 = int(s.step.warmup_s * 1e9), int(s.step.duration_s * 1e9)
        keep = s.scheduled >= w0
        shift = offset - w0
        parts["scheduled"].append(s.scheduled[keep] + shift)
        for name in ("sent", "done"):  # 0 (never sent, never answered) stays 0
            a = getattr(s, name)[keep]
            parts[name].append(np.where(a > 0, a + shift, 0))
        parts["status"].append(s.status[keep])
        parts["kind"].append(s.kind[keep])
        offset += w1 - w0
    names: dict[int, str] = {}
    examples: dict[str, str] = {}
    for s in steps:
        names |= s.status_names
        examples |= s.error_examples
    return StepSamples(
        step=replace(first, duration_s=offset / 1e9, warmup_s=0.0),
        **{k: np.concatenate(v) for k, v in parts.items()},
        status_names=names,
        generator_cpu_s=sum(s.generator_cpu_s for s in steps),
        workers=steps[0].workers,
        wall_s=sum(s.wall_s for s in steps),
        error_examples=examples,
    )


def p99_parts(s: StepSamples, parts: int = 2) -> list[float]:
    """The p99 of each of `parts` equal slices of the measured window (by
    scheduled time): how far a p99 of this length moves on its own."""
    w0, w1 = int(s.step.warmup_s * 1e9), int(s.step.duration_s * 1e9)
    out = []
    for k in range(parts):
        lo, hi = w0 + (w1 - w0) * k // parts, w0 + (w1 - w0) * (k + 1) // parts
        keep = (s.scheduled >= lo) & (s.scheduled < hi) & (s.status == OK)
        lat = (s.done[keep] - s.scheduled[keep]) / 1e6
        out.append(float(np.percentile(lat, 99)) if lat.size else float("nan"))
    return out

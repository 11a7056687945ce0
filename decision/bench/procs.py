"""The processes under test, and which core each one runs on.

On a machine with few cores the layout *is* part of the result: a Python load
generator costs about as much CPU per request as a Python echo server, so
where it runs decides what is measured. The layout is chosen once, pinned
with sched_setaffinity (Linux), and written into the report in words.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from decision.store.embedded import EmbeddedRedis

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuLayout:
    server: list[int] | None  # the process under test (echo or nba serve); Floor B's client too
    redis: list[int] | None  # the Redis-compatible server
    generators: list[list[int] | None]  # one entry per load generator process
    note: str  # what shares which core, in words, for the report
    pinned: bool = True
    cpus: list[int] | None = None  # every core this run may use

    def as_dict(self) -> dict:
        return {"server": self.server, "redis": self.redis, "generators": self.generators,
                "pinned": self.pinned, "note": self.note, "cpus": self.cpus}

    def worker_cpus(self, workers: int) -> list[list[int] | None]:
        """A core for each of `workers` service processes: the server's core
        first, then cores nobody else uses, then the generators' cores, the
        Redis core last (on 2 cores: cpu 0, then the core shared with Redis
        and the generator)."""
        if not self.pinned or not self.cpus:
            return [None] * workers
        taken = [c for g in self.generators for c in (g or [])]
        order = list(self.server or [])
        order += [c for c in self.cpus if c not in order and c not in taken and c not in (self.redis or [])]
        order += [c for c in dict.fromkeys(taken) if c not in order and c not in (self.redis or [])]
        order += [c for c in (self.redis or []) if c not in order]
        return [[order[i % len(order)]] for i in range(workers)]


def cpu_layout(clients: int | None = None, pin: bool = True) -> CpuLayout:
    """Core 0 for the process under test, the next for Redis, the rest for
    the generator; on two cores the generator shares Redis's core."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
        pin = False
    n = len(cpus)
    if not pin or n == 1:
        workers = clients or 1
        why = "pinning disabled" if not pin else "a single core: every process shares it"
        return CpuLayout(None, None, [None] * workers,
                         f"not pinned ({why}); the OS scheduler places all processes", pinned=False, cpus=cpus)
    server, redis = [cpus[0]], [cpus[1]]
    spare = cpus[2:]
    if not spare:
        workers = clients or 1
        return CpuLayout(server, redis, [redis] * workers,
                         f"2 cores: cpu {cpus[0]} runs the server under test alone (echo, nba serve, or the "
                         f"Redis floor's client); cpu {cpus[1]} is shared by the Redis server and "
                         f"{workers} load generator process(es), and the bench's own parent process", cpus=cpus)
    workers = clients or len(spare)
    gens = [[spare[i % len(spare)]] for i in range(workers)]
    return CpuLayout(server, redis, gens,
                     f"{n} cores: cpu {cpus[0]} runs the server under test alone; cpu {cpus[1]} runs the Redis "
                     f"server; cpus {', '.join(map(str, spare))} run {workers} load generator process(es) "
                     f"and the bench's parent process", cpus=cpus)


def _pin(cpus: list[int] | None):
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def pin_all_threads(pid: int, cpus: list[int] | None) -> None:
    """Move every thread of a running process (affinity is per thread)."""
    if not cpus:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass


def cpu_seconds(pid: int | None) -> float:
    """CPU time of a process so far, all its threads: the scheduler's
    nanosecond counters where the kernel keeps them, else clock ticks."""
    if pid is None:
        return 0.0
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, all cores.

    Other processes on the machine compete with the bench for the same
    cores; busy time minus the bench's own processes is what they took."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def rss_bytes(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ProcessFailed(RuntimeError):
    pass


@dataclass
class Child:
    """A server subprocess that announces its port on stdout."""

    name: str
    args: list[str]
    cpus: list[int] | None
    ready: re.Pattern
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = None
    port: int = 0
    metrics_port: int = 0  # its Prometheus endpoint, when it has one the bench can read
    _log: object = field(default=None, repr=False)

    def start(self, timeout: float = 60.0) -> "Child":
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=self._log, preexec_fn=_pin(self.cpus), env=self.env)
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        seen = b""
        while time.monotonic() < deadline:
            chunk = self.process.stdout.read()
            if chunk:
                seen += chunk
                m = self.ready.search(seen.decode(errors="replace"))
                if m:
                    self.port = int(m.group(1))
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise ProcessFailed(f"{self.name} did not start (exit code {self.process.returncode}); "
                            f"last output:\n{self.tail()}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


def echo_server(cpus: list[int] | None, log_path: Path) -> Child:
    return Child("echo server", [sys.executable, "-m", "decision.bench.echo", "--port", "0"], cpus,
                 re.compile(r"^port (\d+)$", re.M), log_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nba_serve(cpus: list[int] | None, data_dir: Path, catalog: Path, seed: int, log_path: Path,
              workers: int = 1) -> Child:
    """`nba serve` on a free port, sharing the data dir's embedded server.

    Its metrics endpoint stays on, as it is by default, on a free port: the
    instruments it feeds are part of what a Decide costs. With `workers` > 1,
    `nba serve --workers N`: it is ready when it says all N serve."""
    metrics_port = free_port()
    args = [sys.executable, "-m", "decision.cli", "serve", "--port", "0", "--data-dir", str(data_dir),
            "--catalog", str(catalog), "--seed", str(seed), "--metrics-port", str(metrics_port)]
    ready = r"serving on [^\s:]+:(\d+)"
    if workers > 1:
        args += ["--workers", str(workers)]
        ready += r" with \d+ workers"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return Child("nba serve", args, cpus, re.compile(ready), log_path, env=env,
                 metrics_port=metrics_port if workers == 1 else 0)  # workers: one endpoint each


def connections(pid: int, port: int) -> int:
    """Established TCP connections on local `port` held by process `pid` (Linux)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                count += 1
    return count


def children(pid: int | None) -> list[int]:
    """The child processes of `pid` (Linux), by pid."""
    if pid is None:
        return []
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        pass
    return sorted(set(out))


def embedded_redis(data_dir: Path, cpus: list[int] | None) -> EmbeddedRedis:
    """The server `nba serve` would start in this data dir, started by the
    bench instead, so that it can be pinned to its own core and loaded before
    the service starts; `nba serve` finds it answering and joins it."""
    server = EmbeddedRedis(data_dir).start()
    if server.process is not None:
        pin_all_threads(server.process.pid, cpus)
    return server

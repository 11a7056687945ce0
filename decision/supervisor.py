"""`nba serve --workers N`: N service processes on one port.

CPython runs one core's worth of Python per process, so a host uses more
cores with more processes. Each worker is a whole `nba serve` (its own event
loop, gRPC server, Redis connections, policies and model watcher); they all
listen on the same port with SO_REUSEPORT (decision/server.py sets it) and
the kernel spreads new connections between them. A connection, and every
request on it, stays with one worker (HTTP/2): a client with one channel
keeps one worker busy, many clients spread.

The supervisor, this process, does no serving:

- it starts the data dir's embedded Redis (or joins the one running) before
  the workers, so that they all join it and none of them owns it, and stops
  it after the last one (with REDIS_URL every worker uses that server);
- with `--port 0` it picks the port, and holds it (bound, not listening)
  until every worker listens on it;
- it starts worker 0 and waits until it serves (it initialises what the
  workers share in Redis: the pseudonym key, the catalog's feature table),
  then the others together; it prints `nba: serving on HOST:PORT with N
  workers` when all serve;
- worker i serves metrics on the metrics port + i, and keeps its own spool
  (worker 0 the data dir's `spool/`, worker i `spool-worker-<i>/`): a spool
  file belongs to one process; what worker i spooled is replayed the next
  time a worker i runs;
- it forwards SIGTERM and SIGINT (stop) and SIGHUP (re-read the catalog) to
  every worker; it exits 0 when they all stopped cleanly after a signal, and
  non-zero when one fails to start or exits on its own (it then stops the
  others: a half-sized service would go unnoticed behind the port).

Workers die with the supervisor, however it dies (die_with_parent, called by
each worker as it starts):

- PR_SET_PDEATHSIG (Linux): the kernel sends the worker SIGTERM when the
  supervisor's thread that started it exits: a thread, not the process, so
  every worker is started from the main thread (run()), which in CPython
  lasts as long as the process (a worker may get the signal twice as the
  threads of a killed supervisor exit: a second SIGTERM changes nothing);
- a supervisor that died before the worker's prctl took effect is seen as
  the worker's parent no longer being the supervisor's pid (NBA_SUPERVISOR_PID;
  after a death the parent is init or a subreaper, not always pid 1);
- a watchdog thread in the worker checks its parent every 0.5 s (the only
  check where prctl is missing) and, STOP_TIMEOUT_S after the supervisor
  died, ends the worker at once if its graceful stop still holds it (the
  limit the supervisor itself enforces with SIGKILL): nobody else would.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("nba.supervisor")

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0  # a worker drains (1 s) and waits for its calls (10 s grace) before it exits
SUPERVISOR_PID_ENV = "NBA_SUPERVISOR_PID"  # set for the workers: the pid they die with
PARENT_POLL_S = 0.5


def _reserve_port(host: str) -> tuple[socket.socket, int]:
    """A free port, held by a bound socket with SO_REUSEPORT so that the
    workers can bind it too while nobody else can."""
    family, kind, proto, _, addr = socket.getaddrinfo(host.strip("[]"), 0, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock, sock.getsockname()[1]


class _Worker:
    def __init__(self, index: int, argv: list[str]) -> None:
        self.index = index
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        env=os.environ | {SUPERVISOR_PID_ENV: str(os.getpid())})
        self.ready = threading.Event()
        threading.Thread(target=self._relay, name=f"worker-{index}-stdout", daemon=True).start()

    def _relay(self) -> None:
        """Copy the worker's stdout, marked with its index; note when it serves."""
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            print(f"[worker {self.index}] {line}", flush=True)
            if "serving on" in line:
                self.ready.set()

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)


def _wait_ready(workers: list[_Worker], timeout: float) -> _Worker | None:
    """None when all serve; else the first that exited (or is still not ready)."""
    deadline = time.monotonic() + timeout
    for w in workers:
        while not w.ready.wait(0.1):
            if w.exit_code() is not None or time.monotonic() > deadline:
                return w
    return None


def run(argv: list[str], *, workers: int, host: str, port: int, metrics_port: int, data_dir: Path,
        redis_url: str | None) -> int:
    """Run `nba <argv>` (a `serve` command line) as `workers` processes;
    returns the exit code of `nba serve --workers N`."""
    from decision.store.embedded import EmbeddedRedis

    embedded = None
    if not redis_url:
        embedded = EmbeddedRedis(data_dir).start()  # joins a running one (then it is not ours to stop)
    held = None
    if port == 0:
        held, port = _reserve_port(host)
    base = [sys.executable, "-m", "decision.cli", *argv, "--workers", "1", "--port", str(port)]

    def start(i: int) -> _Worker:
        return _Worker(i, base + ["--worker", str(i), "--metrics-port", str(metrics_port + i if metrics_port else 0)])

    stopping = threading.Event()
    running: list[_Worker] = []

    def forward(sig: int, _frame=None) -> None:
        if sig != signal.SIGHUP:
            stopping.set()
        for w in running:
            w.signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        running.append(start(0))
        failed = _wait_ready(running, START_TIMEOUT_S)
        if failed is None and not stopping.is_set():
            running += [start(i) for i in range(1, workers)]
            failed = _wait_ready(running, START_TIMEOUT_S)
        if held is not None:
            held.close()
            held = None
        if failed is not None and not stopping.is_set():
            code = failed.exit_code()
            print(f"nba: worker {failed.index} " + (f"exited with code {code}" if code is not None else
                  f"did not serve within {START_TIMEOUT_S:g} s") + " while starting; stopping", file=sys.stderr)
            _stop(running)
            return code or 1
        if not stopping.is_set():
            print(f"nba: serving on {host}:{port} with {workers} workers "
                  f"(pids {' '.join(str(w.pid) for w in running)})", flush=True)
        return _supervise(running, stopping)
    finally:
        if held is not None:
            held.close()
        _stop(running)
        if embedded is not None:
            embedded.stop()


def _supervise(running: list[_Worker], stopping: threading.Event) -> int:
    """Until a signal, or a worker exits on its own; then all stop."""
    while not stopping.is_set():
        dead = next((w for w in running if w.exit_code() is not None), None)
        if dead is not None:
            print(f"nba: worker {dead.index} (pid {dead.pid}) exited with code {dead.exit_code()}; "
                  "stopping the others", file=sys.stderr)
            _stop(running)
            return 1
        stopping.wait(0.2)
    _stop(running)
    codes = [w.exit_code() for w in running]
    return 0 if all(c == 0 for c in codes) else 1


def _stop(running: list[_Worker]) -> None:
    """SIGTERM (graceful: each worker drains) and wait; SIGKILL past the limit."""
    for w in running:
        w.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for w in running:
        try:
            w.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d (pid %d) did not stop within %g s; killing it", w.index, w.pid, STOP_TIMEOUT_S)
            w.process.kill()
            w.process.wait()


def die_with_parent() -> None:
    """In a worker: stop when the supervisor dies, however it dies (SIGTERM:
    the graceful stop), and exit at once if that stop still runs
    STOP_TIMEOUT_S later. See the module's docstring."""
    supervisor = int(os.environ.get(SUPERVISOR_PID_ENV) or 0)
    armed = False
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) == 0
    except (OSError, AttributeError):  # not Linux: the watchdog alone
        pass
    parent = os.getppid()
    if (parent != supervisor) if supervisor else (parent == 1):
        # The supervisor died before prctl took effect (or before this process ran at all).
        log.warning("supervisor (pid %s) gone before this worker started; stopping", supervisor or "?")
        os.kill(os.getpid(), signal.SIGTERM)
        return
    threading.Thread(target=_watch_parent, args=(supervisor or parent, armed), name="supervisor-watchdog",
                     daemon=True).start()


def _watch_parent(parent: int, armed: bool) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    if not armed:  # no death signal is coming from the kernel
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_TIMEOUT_S)
    # Still here: the graceful stop hangs, and no supervisor will SIGKILL this process.
    print(f"nba: worker pid {os.getpid()}: still stopping {STOP_TIMEOUT_S:g} s after its supervisor (pid {parent}) "
          "died; exiting now", file=sys.stderr, flush=True)
    os._exit(1)

"""`nba serve --workers N`: N processes on one port, supervised.

Real processes, a real embedded server, real gRPC: both workers answer on
the one port; SIGTERM stops them all with exit code 0; a worker that dies on
its own takes the service down with a non-zero exit code."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from decision.bench.procs import children, connections
from decision.nba.v1 import decision_pb2 as pb
from decision.nba.v1 import decision_pb2_grpc as pb_grpc
from decision.supervisor import STOP_TIMEOUT_S
from tests.helpers import alive

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"nba: serving on [^\s:]+:(\d+) with 2 workers \(pids (\d+) (\d+)\)")


def _start(tmp_path: Path) -> tuple[subprocess.Popen, int, list[int]]:
    """`nba serve --workers 2`; its stderr, and its workers' (inherited), in tmp_path/stderr.log."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "NBA_PSEUDONYM_KEY")}
    with open(tmp_path / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "decision.cli", "serve", "--workers", "2", "--port", "0",
                                 "--metrics-port", "0", "--data-dir", str(tmp_path / "data")],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    deadline = time.monotonic() + 120
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = READY.search(line)
        if m:
            return proc, int(m.group(1)), [int(m.group(2)), int(m.group(3))]
    proc.kill()
    pytest.fail("nba serve --workers 2 did not start: " + "".join(seen) + _stderr_tail(tmp_path))


def _wait_gone(pids: list[int], tmp_path: Path, timeout: float = STOP_TIMEOUT_S) -> None:
    """Until every pid is gone; else fail with what each was doing."""
    t0 = time.monotonic()
    gone: dict[int, float] = {}
    while len(gone) < len(pids) and time.monotonic() - t0 < timeout:
        gone |= {p: time.monotonic() - t0 for p in pids if p not in gone and not alive(p)}
        time.sleep(0.1)
    left = [p for p in pids if p not in gone]
    if left:
        report = [f"workers {left} of {pids} still alive after {time.monotonic() - t0:.1f} s "
                  f"(gone: {', '.join(f'{p} after {s:.1f} s' for p, s in gone.items()) or 'none'})"]
        report += [_describe(p) for p in left]
        for p in left:  # no stray process after the test
            _kill(p)
        pytest.fail("\n".join(report) + _stderr_tail(tmp_path))


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe(pid: int) -> str:
    """What /proc (and py-spy, when installed) says a process is doing."""
    proc = Path(f"/proc/{pid}")
    lines = [f"--- pid {pid}"]
    try:
        lines.append("cmdline: " + (proc / "cmdline").read_text().replace("\0", " ").strip())
        lines += [x for x in (proc / "status").read_text().splitlines()
                  if x.split(":")[0] in ("State", "PPid", "Threads", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")]
        for tid in sorted(os.listdir(proc / "task"), key=int):
            stat = (proc / "task" / tid / "stat").read_text()
            name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
            wchan = (proc / "task" / tid / "wchan").read_text()
            lines.append(f"thread {tid} {name!r}: {state} in {wchan or '-'}")
    except OSError as e:
        lines.append(f"/proc: {e}")
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy:
        try:
            lines.append(subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                                        timeout=20).stdout)
        except (OSError, subprocess.SubprocessError) as e:
            lines.append(f"py-spy: {e}")
    return "\n".join(lines)


def _stderr_tail(tmp_path: Path, chars: int = 6000) -> str:
    try:
        text = (tmp_path / "stderr.log").read_text(errors="replace")
    except OSError:
        return ""
    return f"\n--- stderr of nba serve and its workers (last {chars} characters):\n" + text[-chars:]


def test_two_workers_answer_on_one_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    proc, port, pids = _start(tmp_path)
    try:
        # One connection sticks to one worker: the kernel spreads connections,
        # so with 16 of them (each its own: no shared subchannel pool) both
        # workers get some, but for a chance of 2 x 0.5^16.
        channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(16)]
        try:
            for ch in channels:
                resp = pb_grpc.DecisionServiceStub(ch).Decide(pb.DecideRequest(
                    placement="home_hero", identity=pb.Identity(type=pb.IDENTITY_TYPE_COOKIE, id="anon-1"),
                    dry_run=True), timeout=10)
                assert resp.items
            per_worker = [connections(pid, port) for pid in pids]
        finally:
            for ch in channels:
                ch.close()
        assert sum(per_worker) == 16 and min(per_worker) > 0, per_worker
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, _stderr_tail(tmp_path)
        _wait_gone(pids, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_dead_worker_stops_the_service_with_an_error(tmp_path: Path) -> None:
    proc, _, pids = _start(tmp_path)
    try:
        os.kill(pids[1], signal.SIGKILL)
        assert proc.wait(60) != 0, _stderr_tail(tmp_path)
        _wait_gone(pids, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_workers_must_be_positive() -> None:
    proc = subprocess.run([sys.executable, "-m", "decision.cli", "serve", "--workers", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["nba: --workers: at least 1 (got 0)"]


def test_workers_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """The workers get SIGTERM from the kernel (PR_SET_PDEATHSIG) and stop
    gracefully, as after a SIGTERM of the supervisor. Worker 1 gets it a few
    ms after it started serving: its background tasks are mid-way through
    their first Redis calls (a cancel lost there in Python 3.11's wait_for
    once kept a worker alive for good)."""
    proc, _, pids = _start(tmp_path)
    redis = [pid for pid in children(proc.pid) if pid not in pids]  # the embedded server it started
    try:
        proc.kill()  # no chance to stop anything
        proc.wait(10)
        # A worker's own watchdog ends it STOP_TIMEOUT_S after the supervisor died, graceful or not: wait past that.
        _wait_gone(pids, tmp_path, timeout=STOP_TIMEOUT_S + 15)
        log = _stderr_tail(tmp_path)
        assert "died; exiting now" not in log, "a worker's graceful stop hung; its watchdog ended it" + log
    finally:
        for pid in redis:  # like a killed `nba serve`, a killed supervisor leaves its Redis running
            _kill(pid, signal.SIGTERM)


# A stand-in worker: die_with_parent() as `nba serve --worker i` calls it, then a graceful stop that never ends.
_WORKER = """
import signal, sys, time
import decision.supervisor as s
s.STOP_TIMEOUT_S = float(sys.argv[1])
time.sleep(float(sys.argv[2]))  # still starting (imports, Redis) when the supervisor may die
s.die_with_parent()
signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM", flush=True))  # the stop starts, and hangs
print("armed", flush=True)
while True:
    time.sleep(1)
"""
# A stand-in supervisor: starts it as supervisor.py does (its pid in the environment) and waits.
_SUPERVISOR = """
import os, subprocess, sys, time
from decision.supervisor import SUPERVISOR_PID_ENV
p = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]],
                     env=os.environ | {SUPERVISOR_PID_ENV: str(os.getpid())})
print(p.pid, flush=True)
time.sleep(3600)
"""


def _supervised(tmp_path: Path, stop_timeout_s: float, start_delay_s: float) -> tuple[subprocess.Popen, int]:
    with open(tmp_path / "stderr.log", "wb") as stderr:
        sup = subprocess.Popen([sys.executable, "-c", _SUPERVISOR, _WORKER, str(stop_timeout_s), str(start_delay_s)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert sup.stdout is not None
    return sup, int(sup.stdout.readline())


def test_a_worker_whose_stop_hangs_exits_anyway_after_its_supervisor_died(tmp_path: Path) -> None:
    sup, worker = _supervised(tmp_path, stop_timeout_s=1, start_delay_s=0)
    try:
        assert sup.stdout is not None and sup.stdout.readline() == "armed\n"
        sup.kill()
        sup.wait(10)
        _wait_gone([worker], tmp_path)
        assert sup.stdout.readline() == "SIGTERM\n"  # the kernel's death signal started the stop
        assert "died; exiting now" in _stderr_tail(tmp_path)  # the watchdog ended it
    finally:
        sup.kill()
        _kill(worker)


def test_a_worker_still_starting_when_its_supervisor_died_stops(tmp_path: Path) -> None:
    sup, worker = _supervised(tmp_path, stop_timeout_s=60, start_delay_s=2)
    try:
        sup.kill()  # before the worker's prctl: no death signal will come
        sup.wait(10)
        _wait_gone([worker], tmp_path)
        assert sup.stdout is not None and sup.stdout.read() == ""  # it never armed
    finally:
        _kill(worker)

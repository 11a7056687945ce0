"""`nba serve --workers N`: N processes on one port, supervised.

Real processes, a real embedded server, real gRPC: both workers answer on
the one port; SIGTERM stops them all with exit code 0; a worker that dies on
its own takes the service down with a non-zero exit code."""

from __future__ import annotations

import os
import re
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

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"nba: serving on [^\s:]+:(\d+) with 2 workers \(pids (\d+) (\d+)\)")


def _start(tmp_path: Path) -> tuple[subprocess.Popen, int, list[int]]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "NBA_PSEUDONYM_KEY")}
    proc = subprocess.Popen([sys.executable, "-m", "decision.cli", "serve", "--workers", "2", "--port", "0",
                             "--metrics-port", "0", "--data-dir", str(tmp_path / "data")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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
    pytest.fail("nba serve --workers 2 did not start: " + "".join(seen))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), pids


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
        assert proc.wait(60) == 0
        _wait_gone(pids)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_dead_worker_stops_the_service_with_an_error(tmp_path: Path) -> None:
    proc, _, pids = _start(tmp_path)
    try:
        os.kill(pids[1], signal.SIGKILL)
        assert proc.wait(60) != 0
        _wait_gone(pids)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_workers_must_be_positive() -> None:
    proc = subprocess.run([sys.executable, "-m", "decision.cli", "serve", "--workers", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["nba: --workers: at least 1 (got 0)"]


def test_workers_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    proc, _, pids = _start(tmp_path)
    redis = [pid for pid in children(proc.pid) if pid not in pids]  # the embedded server it started
    try:
        proc.kill()  # no chance to stop anything: the workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
        proc.wait(10)
        _wait_gone(pids)
    finally:
        for pid in redis:  # like a killed `nba serve`, a killed supervisor leaves its Redis running
            os.kill(pid, signal.SIGTERM)

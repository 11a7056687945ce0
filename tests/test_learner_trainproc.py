"""VW training in a process of its own (decision/learning/trainproc.py).

The split is a speed-up only: a learner whose models live in the training
process ends with the same models, byte for byte, and the same apprentice
evidence as one that trains in its own process. A failure there stops the
learner before its next checkpoint commits, so nothing is lost; Ctrl-C stops
`nba learn` cleanly with its training process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bandits.policy import Context, PolicyLoadError, unpack
from bandits.registry import make_policy
from decision.learning import trainproc
from decision.learning.learner import Learner, load_learner_catalog
from decision.learning.trainproc import TrainProcess, TrainProcessError
from decision.store import keys
from decision.store.models import CHECKPOINT, LEARNER_LOCK
from tests.test_learner import (
    APPRENTICE,
    AT_ONCE,
    CATALOG,
    MIN,
    PIPELINED,
    ROOT,
    T0,
    Joins,
    apprentice_logs,
    config,
    decision,
    log,
)
from tests.helpers import alive
from tests.test_learner_hot_path import logs


def _models(learner: Learner) -> dict:
    """Each model's VW model file, examples and apprentice evidence."""
    return {m.mid: (unpack(m.policy.save(), "vw")[1], m.examples, m.judge.state() if m.judge else None)
            for m in learner.trainer.models.values()}


async def _run(redis, records, **kw) -> tuple[Learner, Joins]:
    await redis.flushdb()
    await log(redis, *records)
    joins = Joins()
    learner = Learner(redis, config(**kw), on_joined=joins)
    await learner.run(once=True)
    return learner, joins


@pytest.mark.parametrize("poll", [AT_ONCE, PIPELINED])
@pytest.mark.parametrize("catalog", ["learning", "apprentice"])
async def test_the_training_process_learns_what_one_process_learns(redis, tmp_path, catalog, poll):
    if catalog == "apprentice":  # the judges' probabilities come back from the training process
        path = tmp_path / "apprentice.yaml"
        path.write_text(APPRENTICE)
        records = apprentice_logs(1500)
    else:  # slates, rewards, records v1 and v2, small batches and several checkpoints
        path = CATALOG
        records = [*logs(400, load_learner_catalog(CATALOG).version), decision("tick", T0 + 600 * MIN + 7_200_000)]
    here, here_joins = await _run(redis, records, catalog=path, snapshot_every=150, batch=64, train_process="off")
    there, there_joins = await _run(redis, records, catalog=path, snapshot_every=150, batch=64, train_process="on",
                                    pointer_poll_s=poll)  # checkpoints taken at once, or pipelined with VW
    assert here.process is None and there.process is not None
    assert there_joins.order == here_joins.order and there_joins.rewards == here_joins.rewards
    assert there.counters == here.counters and there.counters["checkpoints"] >= 3
    assert _models(there) == _models(here)
    if catalog == "apprentice":
        judge = there.trainer.models[("hero", "champion")].judge
        assert judge.evidence().eval_decisions > 300
    await there.close()
    assert not there.process.process.is_alive()


async def test_a_training_process_that_dies_stops_the_learner_before_its_checkpoint(redis):
    records = [*logs(300, load_learner_catalog(CATALOG).version), decision("tick", T0 + 400 * MIN + 7_200_000)]
    await log(redis, *records)
    learner = Learner(redis, config(train_process="on"))
    await learner.start()
    learner.process.process.kill()
    with pytest.raises(TrainProcessError, match="exited"):
        await learner.run(once=True)
    assert await redis.get(CHECKPOINT) is None  # nothing committed, nothing acknowledged
    assert (await redis.xpending(keys.DECISION_STREAM, "learner"))["pending"] > 0

    joins = Joins()  # a restarted learner trains every decision, once
    again = Learner(redis, config(train_process="on"), on_joined=joins)
    await again.run(once=True)
    assert again.counters["joined"] == len(joins.order) > 250
    assert again.trainer.models[("hero", "champion")].examples > 0


def test_a_policy_there_is_the_policy_here():
    """Learning, ranking and saving agree with a local VWPolicy, also when
    the action maps are cleared and when one Action stands twice in a set."""
    params = {"exploration": "squarecb", "interactions": ["UO"]}
    local = make_policy("vw", "p", params, reward_range=(0, 1), seed=3)
    host = TrainProcess()
    try:
        remote = host.new("vw", "p", params, (0, 1), 3)
        from bandits.policy import Action

        acts = [Action(f"a{i}", {"offer": {"id": f"a{i}", "v": float(i)}}) for i in range(6)]
        sets = [tuple(acts[:4]), tuple(acts[2:]), tuple(acts[1:5]), (acts[0], acts[1], acts[0])]
        old = trainproc._SETS, trainproc._ACTIONS
        trainproc._SETS, trainproc._ACTIONS = 2, 7  # both maps fill up and are cleared on both sides
        try:
            for n in range(300):
                ctx = Context({"user": {"seg": "abc"[n % 3], "amount": n / 7}})
                actions = sets[n % len(sets)]
                chosen = n % len(actions)
                for p in (local, remote):
                    p.learn_interned(ctx, actions, chosen, 0.5, float(n % 2))
        finally:
            trainproc._SETS, trainproc._ACTIONS = old
        ctx = Context({"user": {"seg": "b"}})
        assert remote.rank(ctx, sets[1]).probabilities.tolist() == local.rank(ctx, sets[1]).probabilities.tolist()
        assert remote.examples_learned == local.examples_learned == 300
        assert remote.sum_loss == local.sum_loss
        assert unpack(remote.save(), "vw")[1] == unpack(local.save(), "vw")[1]
        assert remote.version == local.version

        with pytest.raises(PolicyLoadError):  # a load's refusal keeps its type
            host.load(b"not a policy", local)
        # a policy it does not have: raised at the next answer
        host.send("learn", 12345, {"user": {"x": 1.0}}, 1, 0, 0.5, 1.0, True)
        with pytest.raises(TrainProcessError, match="learn: KeyError"):
            host.sync()
        host.sync()  # reported once; the process goes on
    finally:
        host.close()
    assert not host.process.is_alive()
    with pytest.raises(TrainProcessError, match="closed"):
        host.sync()


def test_ctrl_c_stops_nba_learn_and_its_training_process(redis_url, redis_server):
    """SIGINT to the whole process group (a terminal's Ctrl-C): the training
    process ignores it, the learner takes its last checkpoint and exits 0,
    and the training process exits with it."""
    import redis as sync_redis

    r = sync_redis.Redis.from_url(redis_url)
    r.flushdb()
    r.xadd(keys.DECISION_STREAM, {"r": decision("d1", T0).to_json()})
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = subprocess.Popen([sys.executable, "-m", "decision.cli", "learn", "--catalog", str(CATALOG),
                             "--lateness", "0", "--train-process", "on"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while r.get(LEARNER_LOCK) is None or len(_group(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        children = _group(proc.pid) - {proc.pid}
        r.xadd(keys.DECISION_STREAM, {"r": decision("tick", T0 + 7_200_000).to_json()})  # closes d1's window
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "learned 1 example(s) from 1 joined decision(s)" in out
    assert r.get(CHECKPOINT) is not None and r.get(LEARNER_LOCK) is None
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in children)


def _group(pgid: int) -> set[int]:
    """The processes of a process group (its training process, fork server, resource tracker)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    out.add(int(entry))
            except ProcessLookupError:
                continue
    return out


async def test_a_training_process_that_cannot_start_is_done_without_under_auto(redis, monkeypatch, caplog):
    def cannot(self):
        raise OSError("no writable temporary directory")

    monkeypatch.setattr(TrainProcess, "__init__", cannot)
    monkeypatch.setattr(trainproc, "wanted", lambda setting: setting != "off")  # auto, as on two cores or more
    with pytest.raises(OSError):  # asked for: refused
        Learner(redis, config(train_process="on"))
    learner = Learner(redis, config(train_process="auto"))
    assert learner.process is None and "no training process (OSError" in caplog.text
    await log(redis, decision("d1", T0), decision("tick", T0 + 7_200_000))
    await learner.run(once=True)
    assert learner.trainer.models[("hero", "champion")].examples == 1

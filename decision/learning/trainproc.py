"""VW training in a process of its own, for `nba learn` on two cores or more.

pylibvw holds the GIL while it parses and learns, so in one process the
learner's Python (read, decode, join, rewards) and VW's learn (the example's
text, parse, learn, finish) take turns on one core; VW's part was about 60%
of an example. Here they overlap, each on a core:

    learner process                       training process
    read, decode, join, rewards     -->   the VWPolicy objects (one per model):
    (context features, action set         learn_interned, as the learner's
     reference, chosen, p, reward)         process would call it

The split is exact: the training process calls the same VWPolicy methods
with the same arguments in the same order, so every model is the same, byte
for byte, as one trained in the learner's process (tested). Each Action is
sent once and kept there as one object, so VW's parsed examples of the
actions are reused as they are in one process. Nothing about checkpoints
changes: a snapshot asks the training process for the model's bytes after
everything sent before it, and the learner commits only what it got back.

Commands are queued and sent in batches of 256. The training process
answers only the calls that need an answer (new, load, save, rank, get,
sync), after everything queued before them. A full pipe makes the learner
wait: the training process is the slower side.

An apprentice judge's probability (the model's, before it learns the
decision) is computed there in order and handed back at the next answer.

A failure in the training process is raised in the learner at the next
answer (TrainProcessError), before a checkpoint commits: the learner exits
as on a Redis error and resumes from its last checkpoint. The training
process ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process
group, and the learner still has a checkpoint to take). It exits when its
pipe closes, that is when the learner exits, however it exits.

Only `vw` policies learn (bandits/registry.py), so only they live there.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import socket
import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bandits.policy import Action, Context, PolicyLoadError, Ranking, ranking

_BATCH = 256  # queued commands per message
_SETS = 4_096  # action sets, and
_ACTIONS = 65_536  # actions known to both processes
_PRELOAD = ["bandits.vw", "decision.learning.trainproc"]
_PIPE_BYTES = 1 << 20  # what the learner may write ahead of the training process (Linux doubles it)


class TrainProcessError(RuntimeError):
    """The training process failed, or exited."""


def wanted(setting: str, cpus: Sequence[int] | None = None) -> bool:
    """`--train-process auto|on|off`: auto is on with two cores or more (of
    `cpus`, by default the ones this process may run on)."""
    if setting == "auto":
        return len(cpus if cpus else os.sched_getaffinity(0)) >= 2
    return setting == "on"


def _widen(conn: Any, size: int = _PIPE_BYTES) -> None:
    """Let `conn`'s socket hold `size` bytes unread (the kernel's cap
    permitting). The default (~200 KiB) holds about one round of 1,000
    examples (~175 bytes each); this lets the learner write a round and more
    ahead, so that a slow stretch on either side need not stall the other.
    Measured alone it made no difference beyond this host's noise
    (docs/BENCHMARKS.md, "Later the same day")."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))  # the same socket; closing the copy leaves it open
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:  # pragma: no cover - a kernel that refuses: the default still works
        pass
    finally:
        sock.close()


def _plain(features: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Features as plain dicts (a feature table's mappings may be read-only proxies, which do not pickle)."""
    return {ns: dict(f) for ns, f in features.items()}


def _sendable(features: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    """`features` itself when it is plain dicts (a decoded record's context), else a plain copy."""
    if type(features) is dict and all(type(f) is dict for f in features.values()):
        return features
    return _plain(features)


class TrainProcess:
    """The learner's side: starts the training process, queues its commands,
    and makes the RemoteVW policies the trainer holds."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)  # VW and numpy are imported once, in the fork server
        self._conn, child = ctx.Pipe(duplex=True)
        _widen(self._conn)
        self.process = ctx.Process(target=_serve, args=(child,), name="nba-learn-train", daemon=True)
        self.process.start()
        child.close()
        self._queue: list[tuple] = []
        self._keys = 0
        self._actions: dict[int, tuple[int, Action]] = {}  # id -> (reference, the Action)
        self._sets: dict[tuple[int, ...], tuple[int, tuple[Action, ...]]] = {}  # ids -> (reference, the actions)
        self._last_set: tuple[int, Any] = (0, None)
        self._drops: list[int] = []  # policies gone here, to drop there (after what was queued before)
        self._judged: list[Callable[[float], None]] = []  # callbacks of the judge probabilities asked for, in order
        self._closed = False
        try:
            self.sync()  # it runs, or this raises
        except TrainProcessError:
            self.close()
            raise

    # -- the policies ------------------------------------------------------------

    def new(self, kind: str, name: str, params: Mapping[str, Any], reward_range: Sequence[float],
            seed: int) -> RemoteVW:
        key = self._key()
        self.call("new", key, kind, name, dict(params), tuple(reward_range), seed)
        return RemoteVW(self, key, kind, name, params, tuple(reward_range))

    def load(self, data: bytes, like: Any) -> RemoteVW:
        """The policy saved in `data` (already loaded and checked here as `like`), in the training process."""
        key = self._key()
        self.call("load", key, data)
        return RemoteVW(self, key, like.kind, like.name, like.params, tuple(like.reward_range))

    def _key(self) -> int:
        self._keys += 1
        return self._keys

    def action_set(self, actions: Sequence[Action]) -> int:
        """The reference of a set of actions in the training process. Each
        Action is sent once and kept there as one object, so VW's parsed
        example of it is reused there as it would be here; a set is sent once,
        as its actions' references. Both maps are bounded (cleared on both
        sides when full)."""
        last = self._last_set
        if last[1] is actions:  # the learner's records hold interned tuples (decision/feature_tables.py)
            return last[0]
        ids = tuple(map(id, actions))
        hit = self._sets.get(ids)
        if hit is None:
            full = len(self._actions) + len(ids) > _ACTIONS
            if full or len(self._sets) >= _SETS:
                self._sets.clear()
                if full:
                    self._actions.clear()
                self.send("clear", full)
            refs = []
            for a in actions:
                known = self._actions.get(id(a))  # kept alive here: an id stays its Action's
                if known is None:
                    known = self._actions[id(a)] = (len(self._actions) + 1, a)
                    self.send("action", known[0], Action(a.id, _plain(a.features), a.value, a.priority, a.group))
                refs.append(known[0])
            hit = self._sets[ids] = (len(self._sets) + 1, tuple(actions))  # keeps the actions alive
            self.send("set", hit[0], tuple(refs))
        self._last_set = hit
        return hit[0]

    # -- the pipe ------------------------------------------------------------------

    def send(self, *command: Any) -> None:
        """Queue a command that needs no answer."""
        if self._closed:
            return
        self._queue.append(command)
        if len(self._queue) >= _BATCH:
            self.flush()

    def judge(self, key: int, context: Context, ref: int, chosen: int, then: Callable[[float], None]) -> None:
        """The probability the model gives `chosen` now (before it learns what
        is queued after this), handed to `then` at the next answer."""
        self._judged.append(then)
        self.send("judge", key, _sendable(context.features), ref, chosen)

    def call(self, *command: Any) -> Any:
        """Send everything queued and this command; wait for its answer."""
        self._queue.append(command)
        self.flush()
        try:
            judged, error, value = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as e:
            raise self._gone(e) from None
        callbacks, self._judged = self._judged[:len(judged)], self._judged[len(judged):]
        for then, pi in zip(callbacks, judged):
            then(pi)
        if error is not None:
            kind, message, detail = error
            if kind == "PolicyLoadError":
                raise PolicyLoadError(message)
            raise TrainProcessError(f"the training process failed: {detail}")
        return value

    def sync(self) -> None:
        """Wait until everything queued is learned; raise what failed."""
        self.call("sync")

    def dropped(self, key: int) -> None:
        """A RemoteVW was collected: its policy goes with the next batch
        (a list, not a command: collection can happen in the middle of a send)."""
        self._drops.append(key)

    def flush(self) -> None:
        """Send what is queued now, without waiting for anything."""
        if not self._queue:
            return
        if self._closed:
            raise TrainProcessError("the training process was closed")
        batch, self._queue = self._queue, []
        if self._drops:
            drops, self._drops = self._drops, []
            batch.extend(("drop", key) for key in drops)
        try:
            self._conn.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as e:
            raise self._gone(e) from None

    def _gone(self, e: BaseException) -> TrainProcessError:
        self.process.join(1.0)
        return TrainProcessError(f"the training process exited (exit code {self.process.exitcode}): "
                                 f"{type(e).__name__}: {e}")

    def close(self) -> None:
        """Stop the training process (what is still queued is dropped)."""
        if self._closed:
            return
        self._closed = True
        self._queue = []
        self._conn.close()  # it exits on the end of its pipe
        self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)


class RemoteVW:
    """A VWPolicy in the training process, as the trainer uses it: learn and
    learn_interned are queued; rank, save and the loss counters wait for
    everything queued before them."""

    learns = True

    def __init__(self, host: TrainProcess, key: int, kind: str, name: str, params: Mapping[str, Any],
                 reward_range: tuple[float, float]) -> None:
        self.host, self.key = host, key
        self.kind, self.name, self.params, self.reward_range = kind, name, dict(params), reward_range
        weakref.finalize(self, host.dropped, key).atexit = False

    def learn(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
              reward: float) -> None:
        self._learn(context, actions, chosen, probability, reward, False)

    def learn_interned(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
                       reward: float) -> None:
        self._learn(context, actions, chosen, probability, reward, True)

    def _learn(self, context: Context, actions: Sequence[Action], chosen: int, probability: float, reward: float,
               interned: bool) -> None:
        if not (0 <= chosen < len(actions) and 0.0 < probability <= 1.0):
            from bandits.vw import check_actions, check_example

            check_actions(actions)  # raises here, as VWPolicy would
            check_example(actions, chosen, probability)
        self.host.send("learn", self.key, _sendable(context.features), self.host.action_set(actions), chosen,
                       float(probability), float(reward), interned)

    def judge(self, context: Context, actions: Sequence[Action], chosen: int, then: Callable[[float], None]) -> None:
        """then(the probability this model gives `chosen` before it learns
        what is queued after this call), at the next answer."""
        self.host.judge(self.key, context, self.host.action_set(actions), chosen, then)

    def rank(self, context: Context, actions: Sequence[Action]) -> Ranking:
        probabilities, scores = self.host.call("rank", self.key, _sendable(context.features),
                                               self.host.action_set(actions))
        return ranking(probabilities, scores)

    def save(self) -> bytes:
        return self.host.call("save", self.key)

    @property
    def version(self) -> str:
        return self.host.call("get", self.key, "version")

    @property
    def average_loss(self) -> float | None:
        return self.host.call("get", self.key, "average_loss")

    @property
    def sum_loss(self) -> float:
        return self.host.call("get", self.key, "sum_loss")

    @property
    def examples_learned(self) -> int:
        return self.host.call("get", self.key, "examples_learned")


# -- the training process --------------------------------------------------------

_READABLE = ("version", "average_loss", "sum_loss", "examples_learned")
ANSWERED = frozenset({"new", "load", "save", "get", "rank", "sync"})  # the commands TrainProcess.call sends


def _serve(conn) -> None:
    """Run the commands of the learner's batches until its pipe closes."""
    from bandits.policy import Context as Ctx
    from bandits.registry import load_policy, make_policy

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    policies: dict[int, Any] = {}
    actions: dict[int, Action] = {}
    sets: dict[int, tuple[Action, ...]] = {}
    judged: list[float] = []
    error: tuple[str, str, str] | None = None
    while True:
        try:
            batch = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        for command in batch:
            op = command[0]
            try:
                if op == "learn":  # the hot path: one example, as the learner's process would learn it
                    _, key, features, ref, chosen, probability, reward, interned = command
                    policy = policies[key]
                    (policy.learn_interned if interned else policy.learn)(
                        Ctx(features), sets[ref], chosen, probability, reward)
                    continue
                value = None
                if op == "action":
                    actions[command[1]] = command[2]
                elif op == "set":
                    sets[command[1]] = tuple([actions[r] for r in command[2]])
                elif op == "clear":
                    sets.clear()
                    if command[1]:
                        actions.clear()
                elif op == "judge":
                    _, key, features, ref, chosen = command
                    judged.append(float(policies[key].rank(Ctx(features), sets[ref]).probabilities[chosen]))
                elif op == "drop":
                    policies.pop(command[1], None)
                elif op == "new":
                    _, key, kind, name, params, reward_range, seed = command
                    policies[key] = make_policy(kind, name, params, reward_range=reward_range, seed=seed)
                elif op == "load":
                    policies[command[1]] = load_policy(command[2])
                elif op == "save":
                    value = policies[command[1]].save()
                elif op == "get":
                    value = getattr(policies[command[1]], command[2]) if command[2] in _READABLE else None
                elif op == "rank":
                    _, key, features, ref = command
                    r = policies[key].rank(Ctx(features), sets[ref])
                    value = (r.probabilities, r.scores)
                elif op != "sync":
                    raise ValueError(f"unknown command {op!r}")
                if op in ANSWERED:
                    conn.send_bytes(pickle.dumps((judged, error, value), protocol=pickle.HIGHEST_PROTOCOL))
                    judged, error = [], None
            except Exception as e:  # noqa: BLE001 - reported at the next answer, which the learner raises
                if op == "judge":
                    judged.append(float("nan"))  # keeps the answers in step with their callbacks
                if error is None:
                    error = (type(e).__name__, str(e), f"{op}: {type(e).__name__}: {e}\n"
                                                       f"{traceback.format_exc(limit=4)}")
                if op in ANSWERED:
                    conn.send_bytes(pickle.dumps((judged, error, None), protocol=pickle.HIGHEST_PROTOCOL))
                    judged, error = [], None

"""A local append-only spool for what must not be lost while Redis is away.

Decision log rows and reward events accepted while the state store is
unreachable are appended here (one JSON line each, fsynced before the caller
gets an answer) and replayed, in order, once the store answers again. So are
the exposures of decisions answered before their commit was written (under
the person's lease, decision/store/pressure_store.commit_served) whose commit
failed: the script is sent again as it was.

Replay is idempotent, so a crash in the middle of it neither loses nor
doubles anything: a decision is skipped when its decision key already exists
(it was written with its log row), and a reward goes through the normal
reward path, which counts each event id once; an exposure is a sorted-set
member named by its decision, added once however often it is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Awaitable, Callable

from decision.domain import RewardEvent
from decision.records import DecisionRecord

log = logging.getLogger("nba.spool")

DecisionReplay = Callable[[DecisionRecord, str, list[tuple[str, int]]], Awaitable[bool]]
RewardReplay = Callable[[RewardEvent], Awaitable[None]]
# (person pseudonym, the person script's keys, its arguments)
ExposureReplay = Callable[[str, list[str], list], Awaitable[None]]


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "spool.jsonl"
        self.replaying = directory / "spool.replaying.jsonl"
        self._lock = asyncio.Lock()  # appends vs. the file swap
        self._replay_lock = asyncio.Lock()  # one replay at a time
        self.appended = 0
        self.replayed = 0
        # Decisions waiting in the spool: a reward for one of them waits too.
        self.decision_ids: set[str] = set(self._spooled_decision_ids())

    def _spooled_decision_ids(self):
        for path in (self.replaying, self.path):
            try:
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        if '"kind":"decision"' in line:
                            yield DecisionRecord.from_json(json.loads(line)["record"]).decision_id
            except FileNotFoundError:
                continue

    def _append(self, entry: dict) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.appended += 1

    async def add_decision(self, record: DecisionRecord, person_key: str, served: list[tuple[str, int]]) -> None:
        entry = {"kind": "decision", "record": record.to_json(), "pk": person_key, "served": served}
        async with self._lock:
            await asyncio.to_thread(self._append, entry)
            self.decision_ids.add(record.decision_id)

    async def add_reward(self, event: RewardEvent) -> None:
        async with self._lock:
            await asyncio.to_thread(self._append, {"kind": "reward", "event": asdict(event)})

    async def add_exposure(self, person: str, script_keys: list[str], args: list) -> None:
        """The exposures of a decision already served, whose commit failed;
        `person` is the pseudonym (a Forget in between drops them)."""
        async with self._lock:
            await asyncio.to_thread(self._append, {"kind": "exposure", "person": person, "keys": script_keys,
                                                   "args": args})

    def pending(self) -> int:
        return sum(_count_lines(p) for p in (self.replaying, self.path))

    async def replay(self, decision: DecisionReplay, reward: RewardReplay, exposure: ExposureReplay) -> int:
        """Apply every spooled entry; returns how many. Stops at the first
        failure (the store went away again) and keeps the rest for later."""
        async with self._replay_lock:
            return await self._replay(decision, reward, exposure)

    async def _replay(self, decision: DecisionReplay, reward: RewardReplay, exposure: ExposureReplay) -> int:
        async with self._lock:
            if not self.replaying.exists():
                if not self.path.exists():
                    return 0
                os.replace(self.path, self.replaying)  # new entries go to a fresh file meanwhile
        lines = self.replaying.read_text().splitlines()
        done = 0
        try:
            for line in lines:
                if not line.strip():
                    done += 1
                    continue
                entry = json.loads(line)
                if entry["kind"] == "decision":
                    record = DecisionRecord.from_json(entry["record"])
                    await decision(record, entry["pk"], [tuple(x) for x in entry["served"]])
                    self.decision_ids.discard(record.decision_id)
                elif entry["kind"] == "exposure":
                    await exposure(entry["person"], entry["keys"], entry["args"])
                else:
                    await reward(RewardEvent(**entry["event"]))
                done += 1
        finally:
            rest = lines[done:]
            if rest:
                self.replaying.write_text("\n".join(rest) + "\n")
            else:
                self.replaying.unlink(missing_ok=True)
            self.replayed += done
            if done:
                log.info("replayed %d spooled entr%s, %d left", done, "y" if done == 1 else "ies", len(rest))
        return done


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0

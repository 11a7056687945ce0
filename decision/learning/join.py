"""The join: logged decisions wait for their rewards until the join window
closes. Pure bookkeeping, no I/O (the learner feeds it stream entries).

Rules (docs/LEARNING.md, "Join semantics"):
- A decision's window closes at `ts_ms + join_window_s` (both from the record,
  so the join never depends on today's catalog) in *event time*.
- A reward counts for an item when it names the item's offer and it
  happened (`RewardRecord.occurred_ms`) at or before the close: the rule of
  the offline join (decision/join.py), so export, off-policy evaluation and
  the learner agree. Several events of one item add up (the learner clips
  the sum to the placement's reward range); the same event id counts once;
  an item without events gets the record's default reward.
- The window closes when the learner's watermark passes the close time; a
  reward read after that is late (counted, not learned), even if it
  happened inside the window.
- A reward read before its decision waits in a buffer. It is dropped as an
  orphan once a complete read of the decision stream that *started after the
  reward was read* has not produced its decision (the service logs a
  decision before it returns its id, so no reward can precede its decision
  in the logs): `decisions_drained()` marks such reads.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from decision.learning.examples import LoggedDecision, LoggedReward, reward_items
from decision.records import RewardRecord

# Outcomes of add_decision / add_reward. What the learner does with the
# stream entry: PENDING/ATTACHED/BUFFERED - acknowledge once trained and
# checkpointed; anything else - acknowledge now.
PENDING = "pending"
DUPLICATE = "duplicate"  # decision or event id seen before
TRAINED = "trained"  # decision already trained (a redelivery after a restart)
ATTACHED = "attached"
BUFFERED = "buffered"
LATE = "late"  # accepted after the window closed, or its decision was already trained
IGNORED = "ignored"  # reward of a decision the learner does not learn from (fallback, no learning arm)


@dataclass(slots=True)
class Pending:
    record: LoggedDecision
    entry_id: str  # decision stream entry
    close_ms: int
    # Made by the first reward (most decisions never get one):
    # item index -> event id -> reward, and the reward stream entries.
    events: dict[int, dict[str, float]] | None = None
    reward_entries: list[str] | None = None


class Joined(NamedTuple):
    """One per trained decision: a NamedTuple for the reason LoggedDecision is one."""

    record: LoggedDecision
    entry_id: str
    # per item (record.items order): sum of its rewards, None when no event arrived
    sums: tuple[float | None, ...]
    reward_entries: tuple[str, ...]
    close_ms: int


_NO_EVENTS = tuple((None,) * n for n in range(8))


@dataclass(slots=True)
class _Buffered:
    reward: LoggedReward | RewardRecord
    entry_id: str
    epoch: int


class Joiner:
    def __init__(self, recent_limit: int = 500_000) -> None:
        self.pending: dict[str, Pending] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._buffer: dict[str, list[_Buffered]] = {}
        self._buffered = 0
        # decision id -> TRAINED | IGNORED, for decisions no longer pending
        # (classifies late rewards, refuses redelivered decisions); bounded.
        self.recent: OrderedDict[str, str] = OrderedDict()
        self.recent_limit = recent_limit
        self.epoch = 0  # complete reads of the decision stream so far

    # -- input -------------------------------------------------------------

    def remember(self, decision_id: str, status: str) -> None:
        self.recent[decision_id] = status
        if len(self.recent) > self.recent_limit:
            self.recent.popitem(last=False)

    def add_decision(self, record: LoggedDecision, entry_id: str) -> str:
        did = record.decision_id
        if did in self.pending:
            return DUPLICATE
        status = self.recent.get(did)
        if status is not None:
            return TRAINED if status == TRAINED else DUPLICATE
        close = record.ts_ms + record.join_window_s * 1000
        self.pending[did] = Pending(record, entry_id, close)
        heapq.heappush(self._heap, (close, next(self._seq), did))
        return PENDING

    def ignore_decision(self, record: LoggedDecision) -> list[tuple[str, str]]:
        """A decision nobody learns from: remember it so that its rewards are
        recognised; returns its buffered rewards' (entry id, outcome)."""
        self.remember(record.decision_id, IGNORED)
        return [(b.entry_id, IGNORED) for b in self._take_buffered(record.decision_id)]

    def add_reward(self, reward: LoggedReward | RewardRecord, entry_id: str) -> str:
        p = self.pending.get(reward.decision_id)
        if p is None:
            status = self.recent.get(reward.decision_id)
            if status == TRAINED:
                return LATE
            if status == IGNORED:
                return IGNORED
            buffered = self._buffer.setdefault(reward.decision_id, [])
            if any(b.reward.event_id == reward.event_id for b in buffered):
                return DUPLICATE
            buffered.append(_Buffered(reward, entry_id, self.epoch))
            self._buffered += 1
            return BUFFERED
        return self._attach(p, reward, entry_id)

    def _attach(self, p: Pending, reward: LoggedReward | RewardRecord, entry_id: str) -> str:
        item = reward_items(p.record).get(reward.offer_id)
        if item is None:
            return IGNORED  # not an item of this decision (the service refuses these; a forged row)
        if reward.occurred_ms > p.close_ms:
            return LATE
        if p.events is None:
            p.events, p.reward_entries = {}, []
        events = p.events.setdefault(item, {})
        if reward.event_id in events:
            return DUPLICATE
        events[reward.event_id] = reward.reward
        p.reward_entries.append(entry_id)
        return ATTACHED

    def attach_buffered(self, decision_id: str) -> list[tuple[str, str]]:
        """Attach the rewards that waited for this (now pending) decision;
        returns (entry id, outcome) of each."""
        if decision_id not in self._buffer:  # the common case: the decision came first
            return []
        p = self.pending[decision_id]
        return [(b.entry_id, self._attach(p, b.reward, b.entry_id)) for b in self._take_buffered(decision_id)]

    def _take_buffered(self, decision_id: str) -> list[_Buffered]:
        taken = self._buffer.pop(decision_id, [])
        self._buffered -= len(taken)
        return taken

    def decisions_drained(self) -> list[str]:
        """The decision stream was read to its end. Returns the entry ids of
        buffered rewards now known to be orphans (read before a complete
        read that did not bring their decision)."""
        self.epoch += 1
        orphans: list[str] = []
        for did in [d for d, bs in self._buffer.items() if all(b.epoch < self.epoch for b in bs)]:
            orphans.extend(b.entry_id for b in self._take_buffered(did))
        return orphans

    # -- output ------------------------------------------------------------

    def close(self, watermark_ms: int) -> list[Joined]:
        """Every pending decision whose window closed before the watermark,
        in close-time order (ties: read order)."""
        out: list[Joined] = []
        heap, pending, recent, limit = self._heap, self.pending, self.recent, self.recent_limit
        pop = heapq.heappop
        while heap and heap[0][0] < watermark_ms:
            close, _, did = pop(heap)
            p = pending.pop(did, None)
            if p is None:
                continue
            n_items = len(p.record.items)
            if p.events is None:
                out.append(Joined(p.record, p.entry_id, _NO_EVENTS[n_items] if n_items < 8 else (None,) * n_items,
                                  (), close))
            else:
                sums = tuple((sum(p.events[n].values()) if n in p.events else None) for n in range(n_items))
                out.append(Joined(p.record, p.entry_id, sums, tuple(p.reward_entries), close))
            recent[did] = TRAINED  # remember(), inlined: once per decision
            if len(recent) > limit:
                recent.popitem(last=False)
        return out

    @property
    def buffered(self) -> int:
        return self._buffered

    def next_close_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

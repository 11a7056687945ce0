"""Decision log rows written after the answer, in batches.

A Decide answers once its pressure reservation is in; its log row (the
record and the decision key that Reward looks up) is queued here and written
by one background task. Everything queued while a batch was on the wire goes
in the next batch: one MULTI/EXEC round trip for many decisions under load,
none on the answer's path.

Nothing is lost on the way:

- A batch Redis refuses, or does not acknowledge within its budget, goes to
  the spool (decision/spool.py), row by row, to be replayed when Redis is
  back. A batch that did land after all is skipped by the replay: the decision
  key exists (MULTI/EXEC writes keys and rows together).
- A Reward for a decision still queued here waits for its row (`landed`):
  it finds the decision key, or, when the batch went to the spool, it is
  spooled behind it.
- Stopping the service drains the queue (`drain`) after the last request
  and before Redis is closed.

What it costs: a record is built (and its JSON encoded) in the background
task, not in the request; a crash of the process (not a stop) between the
answer and the write loses the rows of at most one batch, the same exposure
as a crash between a write and its answer before.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Callable, NamedTuple

from opentelemetry.trace import SpanContext

from decision import errors, metrics
from decision.catalog import Catalog
from decision.feature_tables import TablePublisher
from decision.logs import Logs
from decision.records import DecisionRecord
from decision.spool import Spool
from decision.store.guard import store_call
from decision.tracing import span

log = logging.getLogger("nba.logwriter")

# A batch gets this long to be acknowledged before it goes to the spool: far
# longer than a request's budget, since nobody waits for it but a Reward of
# one of its decisions.
WRITE_BUDGET_S = 1.0
# Decisions per MULTI/EXEC at most (a few hundred KB on the wire).
MAX_BATCH = 256


class Pending(NamedTuple):
    decision_id: str
    catalog: Catalog
    build: Callable[[], DecisionRecord]  # the record, made in the background
    person_key: str
    served: list[tuple[str, int]]
    request_span: SpanContext | None = None  # the Decide's span, linked from the write's span


class DecisionLogWriter:
    def __init__(self, logs: Logs, tables: TablePublisher, spool: Spool | None,
                 budget_s: float = WRITE_BUDGET_S, max_batch: int = MAX_BATCH) -> None:
        self.logs = logs
        self.tables = tables
        self.spool = spool
        self.budget_s = budget_s
        self.max_batch = max_batch
        self._queue: list[Pending] = []
        # decision id -> its batch's event, set when the batch is in Redis or the spool
        self._waiting: dict[str, asyncio.Event] = {}
        self._next = asyncio.Event()  # the event of the batch being queued
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.written = 0
        self.spooled = 0
        self.lost = 0

    def submit(self, item: Pending) -> None:
        """Queue a decision's row; the answer goes out without waiting for it."""
        self._queue.append(item)
        self._waiting[item.decision_id] = self._next
        if self._task is None:
            self._task = self._start()

    def _start(self) -> asyncio.Task:
        # A context of its own: the writes of a batch belong to no one
        # request's trace or log context (their spans link to the requests').
        return asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())

    def pending(self) -> int:
        """Rows not yet in Redis or the spool."""
        return len(self._waiting)

    def holds(self, decision_id: str) -> bool:
        """True while the decision's row is neither in Redis nor in the spool."""
        return decision_id in self._waiting

    async def landed(self, decision_id: str) -> None:
        """Return once the decision's row is in Redis or the spool (at once
        when it is not queued here)."""
        event = self._waiting.get(decision_id)
        if event is not None:
            await event.wait()

    async def drain(self) -> None:
        """Wait until every queued row is in Redis or the spool."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, rest = self._queue[:self.max_batch], self._queue[self.max_batch:]
                self._queue = rest
                done, self._next = self._next, asyncio.Event()
                for item in rest:  # over the batch limit: they wait for the next one
                    self._waiting[item.decision_id] = self._next
                self.batches += 1
                try:
                    await self._write(batch)
                finally:
                    for item in batch:
                        del self._waiting[item.decision_id]
                    done.set()
        finally:
            self._task = None
            if self._queue:  # queued while the last batch was being finished
                self._task = self._start()

    async def _write(self, batch: list[Pending]) -> None:
        rows = []
        for item in batch:
            try:
                rows.append((item.build(), item.person_key, item.served))
            except Exception:  # a bug building one record must not lose the others
                log.exception("decision %s: its log record could not be built", item.decision_id)
                self.lost += 1
                metrics.LOG_ROWS_LOST.add(1)
        if not rows:
            return
        links = [item.request_span for item in batch if item.request_span is not None]
        with span("nba.decision_log.write", {"nba.rows": len(rows)}, links):
            try:
                async with store_call("log_decision", self.budget_s):
                    for catalog in {id(item.catalog): item.catalog for item in batch}.values():
                        if self.tables.due(catalog.version):
                            await self.tables.publish(catalog)
                    await self.logs.write_decisions(rows)
                self.written += len(rows)
            except errors.StoreUnavailable as e:
                await self._spool(rows, e)
            except Exception:  # e.g. a reply error: the rows are kept all the same
                log.exception("decision log batch of %d failed; spooling it", len(rows))
                await self._spool(rows, None)

    async def _spool(self, rows: list, error: Exception | None) -> None:
        if self.spool is None:
            log.error("decision log: %d rows lost, no spool configured (%s)", len(rows), error)
            self.lost += len(rows)
            metrics.LOG_ROWS_LOST.add(len(rows))
            return
        for record, person_key, served in rows:
            try:
                await self.spool.add_decision(record, person_key, served)
            except Exception:  # noqa: BLE001 - disk full, permissions: say so, keep going
                log.exception("decision %s: neither Redis nor the spool took its log row", record.decision_id)
                self.lost += 1
                metrics.LOG_ROWS_LOST.add(1)
                continue
            self.spooled += 1
            metrics.SPOOLED.add(1, {"kind": "decision"})

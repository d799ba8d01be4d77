"""The outbox relay: gives committed events their positions and announces them.

Why positions, and why like this
--------------------------------
Event ids come from a sequence, and on PostgreSQL sequence values are handed out at insert
time, not at commit: transaction A may take id 10, transaction B id 11, and B commit first. A
reader that has seen 11 and then asks for "ids after 11" never sees 10. So readers never page by
id. Instead, after commit, the relay gives every event still without a position the next
positions, in id order, in one short transaction that holds a lock only one relay can hold
(PostgreSQL: `pg_advisory_xact_lock`; SQLite: writers are serialised by the database anyway).
The relay reads `max(position)` after taking the lock, and the lock is held until its commit, so:

* positions are dense (1, 2, 3 …) and every batch commits after the one before it, hence
* once a reader sees position p, no event with a position below p can appear later;
  "positioned events after p, in position order" is complete and gap-free at any moment.

Readers (the `leadEvents` query, subscriptions, the fan-out) only ever see positioned events.
On SQLite, where writers are serialised anyway, the committing transaction positions its own
events (persistence/database.py) and hands them, with the new head, to this process's fan-out
and relay: they are visible at commit, and the relay only announces them. On PostgreSQL an
event becomes visible one relay run after its commit: the unit of work wakes the relay at once
after a commit that wrote events. On both, a periodic run catches up with events committed by
other processes, or left unpositioned by a crash. An event's position is its commit order as the
relay observed it, which is the order in which any reader can learn about it.

After positioning, the relay publishes the new head position on the broker; every process also
reads the head itself on each run and hands it to its local fan-out, so a broker outage delays
delivery by at most one interval and never loses anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from domain.errors import ServiceUnavailable
from domain.events import LeadEvent
from domain.ports import EventBroker
from persistence.database import Database

log = logging.getLogger("leadflow.events")

POSITION_LOCK = "lead_events:position"
HANDED_OVER = 1000  # at most this many positioned events are handed to `on_events` at once


class Relay:
    def __init__(
        self,
        db: Database,
        broker: EventBroker,
        on_head: Callable[[int], Awaitable[None]] | None = None,
        *,
        interval: float = 1.0,
        batch: int = 5000,
        on_events: Callable[[list[LeadEvent]], None] | None = None,
    ) -> None:
        self.db = db
        self.broker = broker
        self.on_head = on_head
        # Given the events this relay positioned (with their leads, read in the same
        # transaction), so this process's fan-out need not read them back.
        self.on_events = on_events
        self.interval = interval
        self.batch = batch
        self._wake = asyncio.Event()
        self._unannounced: int | None = None
        self._seen = 0  # the highest head this relay has read or been told
        self._committed_head = 0  # the highest head a commit of this process positioned
        self._broker_down = False
        self._db_down = False

    def wake(self) -> None:
        """Ask for a run now (called after a commit that wrote events)."""
        self._wake.set()

    def committed(self, head: int) -> None:
        """A commit positioned its own events up to `head` (SQLite): announce it at once."""
        self._committed_head = max(self._committed_head, head)
        self._wake.set()

    async def position(self) -> int:
        """Position every unpositioned event, one batch per transaction; how many."""
        total = 0
        while True:
            events: list[LeadEvent] = []
            async with self.db.uow() as uow:
                await uow.lock(POSITION_LOCK)
                before = await uow.events.max_position() if self.on_events else 0
                done = await uow.events.assign_positions(self.batch)
                if self.on_events is not None and 0 < done <= HANDED_OVER:
                    events = await uow.events.after(before, done, until=before + done)
                    leads = await uow.leads.get_many(sorted({e.lead_id for e in events}))
                    events = [replace(e, lead=leads.get(e.lead_id)) for e in events]
                await uow.commit()
            if events and self.on_events is not None:
                self.on_events(events)
            total += done
            if done < self.batch:
                return total

    async def run_once(self, *, check_first: bool = True) -> int:
        """Position what is pending, announce the new head; returns the head position."""
        positioned = 0
        if self._committed_head > self._seen:  # told by a commit: nothing to read or write
            head = self._committed_head
        else:
            pending = True
            if check_first:
                async with self.db.read() as r:
                    pending = await r.events.has_unpositioned()
            positioned = await self.position() if pending else 0
            async with self.db.read() as r:
                head = await r.events.max_position()
        if positioned or head > self._seen:  # on SQLite, commits position their own events
            self._unannounced = head
        self._seen = max(self._seen, head)
        if self.on_head is not None:  # this process's fan-out first: telling it costs nothing
            await self.on_head(head)
        if self._unannounced is not None:
            try:
                await self.broker.publish(self._unannounced)
                self._unannounced = None
                if self._broker_down:
                    log.info("event broker is back")
                self._broker_down = False
            except Exception as e:  # broker down: the table stays the source of truth
                if not self._broker_down:
                    log.warning("event broker unavailable (%s); subscribers poll the table", e)
                self._broker_down = True
        return head

    async def run(self) -> None:
        """Run on every wake-up and at least every `interval` seconds, until cancelled."""
        while True:
            woken = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the wake-up completes, and the server would never shut down.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
                woken = True
            self._wake.clear()
            try:
                # On SQLite a commit positions its own events: a wake-up needs no write.
                await self.run_once(check_first=not woken or self.db.is_sqlite)
                if self._db_down:
                    log.info("event relay: the database is back")
                self._db_down = False
            except asyncio.CancelledError:
                raise
            except ServiceUnavailable as e:
                # Events committed before the outage are positioned once it is back; say so
                # once, not every interval.
                if not self._db_down:
                    log.warning("event relay paused: %s", e)
                self._db_down = True
                await asyncio.sleep(min(self.interval, 1.0))
            except Exception:
                log.exception("event relay run failed; retrying")
                await asyncio.sleep(self.interval)

"""One process's fan-out of lead events to its GraphQL subscriptions.

The process holds one broker subscription; every notice ("events are positioned up to p")
reaches `FanOut.notify`. One reader task then reads the new events from the table once and
pushes them into each subscriber's bounded buffer, so a thousand subscriptions cost one read
per batch, not a thousand. Pushing never waits: a subscriber whose buffer is full has it
dropped and re-reads from the table by its cursor when it next runs, so a slow subscriber never
holds up the others and never loses an event.

Subscribers never depend on notices for completeness: with `after` they read the backlog from
the table, and positions are dense, so a hole between a subscriber's cursor and the next
buffered event (a dropped buffer, a lost notice) sends it back to the table. Every read opens
and closes its own connection; nothing holds a database session between reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Collection
from dataclasses import replace

from domain.events import LeadEvent
from domain.ports import ReadAccess

log = logging.getLogger("leadflow.events")


class Subscriber:
    """A bounded buffer of events pushed by the fan-out, and a flag for "buffer dropped"."""

    __slots__ = ("_ready", "events", "limit", "overflowed")

    def __init__(self, limit: int) -> None:
        self.events: deque[LeadEvent] = deque()
        self.limit = limit
        self.overflowed = False
        self._ready = asyncio.Event()

    def push(self, batch: list[LeadEvent]) -> None:
        if not self.overflowed:
            if len(self.events) + len(batch) > self.limit:
                self.events.clear()  # too slow: it re-reads from the table instead
                self.overflowed = True
            else:
                self.events.extend(batch)
        self._ready.set()

    def take(self) -> tuple[list[LeadEvent], bool]:
        """The buffered events, and whether some were dropped since the last take."""
        batch, lost = list(self.events), self.overflowed
        self.events.clear()
        self.overflowed = False
        self._ready.clear()
        return batch, lost

    async def wait(self) -> None:
        await self._ready.wait()


class FanOut:
    def __init__(
        self, reads: ReadAccess, *, batch: int = 500, buffer: int = 1000, page: int = 100
    ) -> None:
        self.reads = reads
        self.batch = batch
        self.buffer = buffer
        self.page = page
        self.head = 0  # every event up to here has been pushed to the subscribers of that time
        self._target = 0
        self._subscribers: set[Subscriber] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.reads.read() as r:
            self.head = self._target = await r.events.max_position()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def notify(self, position: int) -> None:
        """Events are positioned up to `position` (from the broker or the relay's poll)."""
        if position > self.head:
            self._target = max(self._target, position)
            self._wake.set()

    def offer(self, events: list[LeadEvent]) -> None:
        """Events this process just committed, with their leads: pushed without a read when
        they follow on from the head (otherwise the notice that follows reads them)."""
        if not events or events[0].position != self.head + 1:
            return
        self.head = events[-1].position
        self._target = max(self._target, self.head)
        for subscriber in list(self._subscribers):
            subscriber.push(events)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(self.buffer)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fan-out read failed; retrying")
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _catch_up(self) -> None:
        while self.head < self._target:
            if not self._subscribers:
                self.head = self._target  # nobody to tell; new subscribers start from here
                return
            async with self.reads.read() as r:
                batch = await r.events.after(self.head, self.batch, until=self._target)
                if not batch:
                    return  # not visible to this connection yet: the next notice retries
                # One read of the batch's leads for every subscriber, instead of one each.
                leads = await r.leads.get_many(sorted({e.lead_id for e in batch}))
            batch = [replace(e, lead=leads.get(e.lead_id)) for e in batch if e.position > self.head]
            if not batch:
                continue  # offered meanwhile
            self.head = batch[-1].position
            for subscriber in list(self._subscribers):
                subscriber.push(batch)

    async def _read(
        self, cursor: int, types: Collection[str] | None
    ) -> tuple[list[LeadEvent], int, bool]:
        """Events after `cursor` from the table: (events, new cursor, whether more remain)."""
        async with self.reads.read() as r:
            # Positions commit in order, so everything up to `top` is visible to the next read.
            top = await r.events.max_position()
            rows = await r.events.after(
                cursor, self.page, list(types) if types is not None else None, until=top
            )
        if len(rows) == self.page:
            return rows, rows[-1].position, True
        return rows, max(cursor, top), False

    async def follow(
        self, after: int | None, types: Collection[str] | None = None
    ) -> AsyncIterator[LeadEvent]:
        """Events after position `after` (or from now), in order, then live; until closed."""
        follower = Follower(self, after, types)
        try:
            while True:
                for event in await follower.next_batch():
                    yield event
        finally:
            follower.close()


class Follower:
    """Events after a cursor, in order, without gap or duplicate, in batches.

    The buffer is registered before the backlog is read, so nothing committed in between is
    missed; events seen twice (in the backlog and in the buffer) are skipped by position.
    `cursor` is the position up to which every event was handed out or skipped (other types).
    """

    __slots__ = ("_from_table", "_subscriber", "cursor", "fanout", "types")

    def __init__(
        self, fanout: FanOut, after: int | None, types: Collection[str] | None = None
    ) -> None:
        self.fanout = fanout
        self.types = types
        self._subscriber = fanout.subscribe()
        self.cursor = fanout.head if after is None else after
        self._from_table = after is not None

    def close(self) -> None:
        self.fanout.unsubscribe(self._subscriber)

    async def next_batch(self) -> list[LeadEvent]:
        """The next events (at least one) after the cursor; waits for them if needed."""
        types = self.types
        while True:
            if self._from_table:
                rows, self.cursor, self._from_table = await self.fanout._read(self.cursor, types)
                if rows:
                    return rows
                continue
            batch, lost = self._subscriber.take()
            if lost:
                self._from_table = True
                continue
            out: list[LeadEvent] = []
            for event in batch:
                if event.position <= self.cursor:
                    continue  # delivered from the table already
                if event.position != self.cursor + 1:
                    self._from_table = True  # a hole: the table has what is missing
                    break
                self.cursor = event.position
                if types is None or event.type in types:
                    out.append(event)
            if out:
                return out
            if not self._from_table:
                await self._subscriber.wait()

"""The per-process fan-out: order, no gap, no duplicate, slow subscribers, with a fake table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from api.fanout import FanOut
from domain.events import LeadEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeTable:
    """The positioned part of the event table, and how often it was read."""

    def __init__(self) -> None:
        self.rows: list[LeadEvent] = []
        self.reads = 0
        self.lead_reads = 0

    def add(self, n: int = 1, type_: str = "CREATED") -> list[LeadEvent]:
        new = []
        for _ in range(n):
            p = (self.rows[-1].position if self.rows else 0) + len(new) + 1
            new.append(LeadEvent(p, p, 100 + p, type_, NOW, {}))
        self.rows.extend(new)
        return new

    async def after(
        self,
        position: int,
        limit: int,
        types: Sequence[str] | None = None,
        lead_id: int | None = None,
        until: int | None = None,
    ) -> list[LeadEvent]:
        self.reads += 1
        rows = [
            e
            for e in self.rows
            if e.position > position
            and (until is None or e.position <= until)
            and (types is None or e.type in types)
        ]
        return rows[:limit]

    async def max_position(self) -> int:
        return self.rows[-1].position if self.rows else 0


class FakeReads:
    def __init__(self, table: FakeTable) -> None:
        self.table = table

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Any]:
        table = self.table

        class Leads:
            async def get_many(self, ids: Sequence[int]) -> dict[int, Any]:
                table.lead_reads += 1
                return {i: f"lead {i}" for i in ids}

        class Repos:
            events = self.table
            leads = Leads()

        yield Repos()

    def read(self) -> Any:
        return self._read()


async def take(stream: AsyncIterator[LeadEvent], n: int) -> list[int]:
    out: list[int] = []
    async with asyncio.timeout(2):
        while len(out) < n:
            out.append((await anext(stream)).position)
    return out


async def publish(fanout: FanOut, table: FakeTable, n: int, type_: str = "CREATED") -> None:
    table.add(n, type_)
    await fanout.notify(table.rows[-1].position)


async def started(table: FakeTable, **kw: Any) -> FanOut:
    fanout = FanOut(FakeReads(table), **kw)  # type: ignore[arg-type]
    await fanout.start()
    return fanout


async def test_live_subscriber_gets_new_events_only_in_order() -> None:
    table = FakeTable()
    table.add(5)
    fanout = await started(table)
    stream = fanout.follow(None)
    first = asyncio.ensure_future(take(stream, 4))
    await asyncio.sleep(0)
    await publish(fanout, table, 2)
    await publish(fanout, table, 2)
    assert await first == [6, 7, 8, 9]
    await stream.aclose()
    assert fanout.subscribers == 0
    await fanout.stop()


async def test_one_table_read_per_batch_whatever_the_number_of_subscribers() -> None:
    table = FakeTable()
    fanout = await started(table)
    streams = [fanout.follow(None) for _ in range(50)]
    waiting = [asyncio.ensure_future(take(s, 3)) for s in streams]
    await asyncio.sleep(0)
    reads = table.reads
    await publish(fanout, table, 3)
    assert [await w for w in waiting] == [[1, 2, 3]] * 50
    assert table.reads - reads == 1
    assert table.lead_reads == 1  # the events' leads too: once, for all 50
    await fanout.stop()


async def test_replay_after_cursor_then_live_without_gap_or_duplicate() -> None:
    table = FakeTable()
    table.add(250)  # more than one page of backlog
    fanout = await started(table, page=100)
    stream = fanout.follow(10)
    got = await take(stream, 100)  # first page read; events keep coming meanwhile
    await publish(fanout, table, 30)
    got += await take(stream, 140 + 30)
    await publish(fanout, table, 5)
    got += await take(stream, 5)
    assert got == list(range(11, 286))
    await fanout.stop()


async def test_types_filter_skips_other_events_but_keeps_order() -> None:
    table = FakeTable()
    table.add(3, "CREATED")
    table.add(2, "SALES_READY")
    fanout = await started(table)
    stream = fanout.follow(0, {"SALES_READY"})
    assert await take(stream, 2) == [4, 5]
    await publish(fanout, table, 4, "CREATED")
    await publish(fanout, table, 1, "SALES_READY")
    assert await take(stream, 1) == [10]
    await fanout.stop()


async def test_slow_subscriber_overflows_and_rereads_from_the_table() -> None:
    table = FakeTable()
    fanout = await started(table, buffer=10, batch=5)
    slow = fanout.follow(None)
    fast = fanout.follow(None)
    slow_first = asyncio.ensure_future(take(slow, 1))
    fast_all = asyncio.ensure_future(take(fast, 60))
    await asyncio.sleep(0)
    for _ in range(12):  # the slow one takes one event, then stops reading for a while
        await publish(fanout, table, 5)
        await asyncio.sleep(0.01)
    assert await fast_all == list(range(1, 61))  # never held up by the slow one
    assert await slow_first == [1]
    assert await take(slow, 59) == list(range(2, 61))  # nothing lost, nothing twice
    await fanout.stop()


async def test_a_hole_in_the_buffer_sends_the_subscriber_to_the_table() -> None:
    table = FakeTable()
    fanout = await started(table)
    stream = fanout.follow(None)
    pending = asyncio.ensure_future(take(stream, 3))
    await asyncio.sleep(0)
    table.add(4)
    del table.rows[1]  # position 2 is gone (its lead was deleted): a hole that stays
    await fanout.notify(4)
    assert await pending == [1, 3, 4]
    await publish(fanout, table, 1)
    assert await take(stream, 1) == [5]
    await fanout.stop()


async def test_without_subscribers_nothing_is_read() -> None:
    table = FakeTable()
    fanout = await started(table)
    reads = table.reads
    await publish(fanout, table, 10)
    await asyncio.sleep(0.01)
    assert table.reads == reads
    stream = fanout.follow(None)
    pending = asyncio.ensure_future(take(stream, 1))
    await asyncio.sleep(0)
    await publish(fanout, table, 1)
    assert await pending == [11]
    await fanout.stop()


async def test_offered_events_are_pushed_without_a_read_when_they_follow_on() -> None:
    table = FakeTable()
    fanout = await started(table)
    stream = fanout.follow(None)
    pending = asyncio.ensure_future(take(stream, 3))
    await asyncio.sleep(0)
    reads = table.reads
    fanout.offer(table.add(2))  # committed by this process: handed over with the commit
    await fanout.notify(2)  # the relay's notice that follows finds nothing left to read
    table.add(1)
    fanout.offer(table.add(1))  # position 4 does not follow on from 2: ignored, read instead
    await fanout.notify(4)
    assert await pending == [1, 2, 3]
    assert await take(stream, 1) == [4]
    assert table.reads - reads == 1  # only for 3 and 4
    await fanout.stop()

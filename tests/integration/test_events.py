"""Lead event positions, the relay and the brokers on real SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text, update

from api.fanout import FanOut
from domain import scoring_services as ss
from domain.events import LeadEvent
from domain.model import Contact, Feature, Lead, utcnow
from persistence import scoring_repo
from persistence import tables as t
from persistence.brokers import MemoryBroker, RedisBroker
from persistence.database import Database
from persistence.relay import Relay
from tests.conftest import REDIS_URL, _missing


async def _lead(db: Database) -> int:
    async with db.uow() as uow:
        lead = await uow.leads.add(Lead(topic="t"))
        await uow.commit()
    return lead.id


async def _events(db: Database) -> list[tuple[int, int | None]]:
    async with db.read() as r:
        c = t.lead_events.c
        rows = (await r.conn.execute(select(c.id, c.position).order_by(c.id))).all()
    return [(row.id, row.position) for row in rows]


async def _take(stream: AsyncIterator[LeadEvent], n: int) -> list[LeadEvent]:
    out: list[LeadEvent] = []
    async with asyncio.timeout(5):
        while len(out) < n:
            out.append(await anext(stream))
    return out


async def test_relay_positions_committed_events_densely_in_id_order(db: Database) -> None:
    lead = await _lead(db)
    woken: list[int] = []
    db.events_committed.append(lambda: woken.append(1))
    async with db.uow() as uow:
        await uow.events.add_many([(lead, "CREATED", {}), (lead, "SCORE_CHANGED", {})], utcnow())
        await uow.events.add(lead, "SALES_READY", {}, utcnow())
        await uow.commit()
    assert woken == [1]  # the unit of work wakes the relay after a commit with events
    async with db.uow() as uow:  # a commit without events does not
        await uow.leads.add(Lead(topic="u"))
        await uow.commit()
    assert woken == [1]
    if db.is_sqlite:  # one writer at a time: the commit positioned its own events
        assert [p for _, p in await _events(db)] == [1, 2, 3]
        async with db.write_engine.begin() as conn:  # as if left unpositioned by a crash
            await conn.execute(update(t.lead_events).values(position=None))
    assert [p for _, p in await _events(db)] == [None, None, None]
    heads: list[int] = []

    async def on_head(head: int) -> None:
        heads.append(head)

    relay = Relay(db, MemoryBroker(), on_head, batch=2)  # two batches
    assert await relay.run_once() == 3
    assert [p for _, p in await _events(db)] == [1, 2, 3]
    async with db.uow() as uow:
        await uow.events.add(lead, "CREATED", {}, utcnow())
        await uow.commit()
    assert await relay.run_once() == 4
    assert heads == [3, 4]
    async with db.read() as r:
        assert not await r.events.has_unpositioned()
        assert [e.position for e in await r.events.after(1, 10)] == [2, 3, 4]
        assert [e.type for e in await r.events.after(0, 10, ["SALES_READY"], lead)] == [
            "SALES_READY"
        ]


async def test_concurrent_relays_never_hand_out_a_position_twice(db: Database) -> None:
    lead = await _lead(db)
    relay = Relay(db, MemoryBroker(), batch=3)
    for _ in range(4):
        async with db.uow() as uow:
            await uow.events.add_many([(lead, "CREATED", {})] * 5, utcnow())
            await uow.commit()
        await asyncio.gather(relay.position(), relay.position(), relay.position())
    events = await _events(db)
    assert [p for _, p in events] == list(range(1, 21))


async def test_commits_out_of_id_order_reach_a_subscriber_once_in_commit_order(
    database_url: str,
) -> None:
    """PostgreSQL hands out ids at insert: B (id 11) may commit before A (id 10)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: ids are already in commit order")
    db = Database(database_url)
    try:
        lead = await _lead(db)
        fanout = FanOut(db)
        await fanout.start()
        relay = Relay(db, MemoryBroker(), fanout.notify)
        stream = fanout.follow(0)
        first = asyncio.ensure_future(_take(stream, 1))
        async with db.uow() as a:
            first_id = await a.events.add(lead, "CREATED", {"tx": "A"}, utcnow())
            async with db.uow() as b:
                second_id = await b.events.add(lead, "CREATED", {"tx": "B"}, utcnow())
                await b.commit()
            assert first_id < second_id
            await relay.run_once()
            got = await first
            assert [e.payload["tx"] for e in got] == ["B"]
            await a.commit()
        await relay.run_once()
        more = await _take(stream, 1)
        assert [e.payload["tx"] for e in more] == ["A"]
        assert [e.position for e in got + more] == [1, 2]
        # A reader paging by id after the first event it saw (id 11) would have missed id 10.
        assert [i for i, _ in await _events(db) if i > second_id] == []
        await stream.aclose()
        await fanout.stop()
    finally:
        await db.dispose()


async def test_memory_broker_delivers_to_every_listener() -> None:
    broker = MemoryBroker()
    got: list[tuple[str, int]] = []

    async def listener(name: str) -> None:
        async def on(p: int) -> None:
            got.append((name, p))

        await broker.listen(on)

    tasks = [asyncio.create_task(listener(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    await broker.publish(7)
    assert sorted(got) == [("a", 7), ("b", 7)]
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await broker.close()


def _redis_url() -> str:
    if not REDIS_URL:
        _missing("Redis", "LEADFLOW_TEST_REDIS_URL")
    assert REDIS_URL is not None
    return REDIS_URL


async def test_redis_broker_carries_notices_between_brokers() -> None:
    channel = f"leadflow-test:{uuid.uuid4().hex}"
    listener_side = RedisBroker(_redis_url(), channel)
    publisher_side = RedisBroker(_redis_url(), channel)
    got: asyncio.Queue[int] = asyncio.Queue()

    async def on(p: int) -> None:
        await got.put(p)

    task = asyncio.create_task(listener_side.listen(on))
    try:
        async with asyncio.timeout(5):
            while True:  # the subscription is set up in the background: publish until heard
                await publisher_side.publish(42)
                with contextlib.suppress(TimeoutError):
                    assert await asyncio.wait_for(got.get(), 0.2) == 42
                    break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await listener_side.close()
        await publisher_side.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_relay_keeps_working_while_the_broker_is_down(db: Database) -> None:
    """Nothing listens on the port: publishing fails, yet events are positioned and the
    local fan-out is told the new head."""
    lead = await _lead(db)
    broker = RedisBroker(f"redis://127.0.0.1:{_free_port()}/0")
    heads: list[int] = []

    async def on_head(head: int) -> None:
        heads.append(head)

    relay = Relay(db, broker, on_head)
    async with db.uow() as uow:
        await uow.events.add(lead, "CREATED", {}, utcnow())
        await uow.commit()
    assert await relay.run_once() == 1
    assert heads == [1]
    assert relay._unannounced == 1  # announced again on the next run
    await broker.close()


async def test_relay_hands_the_events_it_positioned_to_its_process(db: Database) -> None:
    lead = await _lead(db)
    async with db.uow() as uow:
        await uow.events.add_many([(lead, "CREATED", {}), (lead, "SCORE_CHANGED", {})], utcnow())
        await uow.commit()
    if db.is_sqlite:  # the commit positioned them: as if left unpositioned by a crash
        async with db.write_engine.begin() as conn:
            await conn.execute(update(t.lead_events).values(position=None))
    handed: list[LeadEvent] = []
    relay = Relay(db, MemoryBroker(), on_events=handed.extend)
    assert await relay.run_once() == 2
    assert [(e.position, e.type) for e in handed] == [(1, "CREATED"), (2, "SCORE_CHANGED")]
    assert [e.lead.id if e.lead else None for e in handed] == [lead, lead]  # read with them


async def test_a_sqlite_commit_hands_its_positioned_events_to_the_hooks(db: Database) -> None:
    """On PostgreSQL commits leave positioning to the relay (the test above)."""
    lead = await _lead(db)
    handed: list[tuple[int, list[LeadEvent]]] = []
    db.head_committed.append(lambda head, events: handed.append((head, events)))
    async with db.uow() as uow:
        await uow.events.add(lead, "CREATED", {}, utcnow())
        await uow.events.add(lead, "SALES_READY", {}, utcnow())
        await uow.commit()
    if not db.is_sqlite:
        assert handed == []
        assert [p for _, p in await _events(db)] == [None, None]
        return
    ((head, events),) = handed
    assert head == 2
    assert [(e.position, e.type) for e in events] == [(1, "CREATED"), (2, "SALES_READY")]
    assert all(e.lead is not None and e.lead.id == lead for e in events)


FIT = {
    "name": "fit",
    "salesReadyThreshold": 5,
    "rules": [
        {
            "name": "has an e-mail",
            "points": 10,
            "condition": {
                "attribute": {"entity": "CONTACT", "field": "email", "operator": "IS_SET"}
            },
        }
    ],
}


async def test_a_publish_writes_its_events_in_order_with_those_around_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set-based event inserts position their events at once in a SQLite unit of work: events
    written before them in the same transaction (unpositioned) and after them still end up
    densely positioned in id order, and the commit hands every one of them to the hooks."""
    monkeypatch.setattr(scoring_repo, "CHECKPOINT_LATER_SCORES", 1)  # that path too
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        leads = []
        for n in range(3):
            contact, _ = await uow.contacts.add(Contact(email=f"p{n}@x.io"))
            leads.append((await uow.leads.add(Lead(topic="t", contact_id=contact.id))).id)
        model = await ss.create_scoring_model(uow, FIT)
        await uow.commit()
    handed: list[tuple[int, list[LeadEvent]]] = []
    db.head_committed.append(lambda head, events: handed.append((head, events)))
    before = len(await _events(db))
    async with db.uow() as uow:
        await uow.events.add(leads[0], "NOTE", {}, utcnow())  # unpositioned until the commit
        await ss.publish_scoring_model(uow, model.id, utcnow())
        await uow.events.add(leads[1], "NOTE", {}, utcnow())
        await uow.commit()
    rows = (await _events(db))[before:]
    async with db.read() as r:
        c = t.lead_events.c
        types = [
            row.type
            for row in await r.conn.execute(select(c.type).where(c.id > before).order_by(c.id))
        ]
    # The note, each lead's score change, its sales-ready mark, its two stage moves, the note.
    assert types == [
        "NOTE",
        *["SCORE_CHANGED"] * 3,
        *["SALES_READY"] * 3,
        *["STAGE_CHANGED"] * 6,
        "NOTE",
    ]
    if not db.is_sqlite:  # the relay positions them after the commit
        assert all(p is None for _, p in rows)
        assert handed == []
        return
    assert [p for _, p in rows] == list(range(before + 1, before + 1 + len(rows)))
    ((head, events),) = handed
    assert head == before + len(rows)
    assert [e.position for e in events] == [p for _, p in rows]
    # The commit left the WAL checkpoint to the background and turned the automatic one back on.
    await db.checkpointed()
    async with db.write_engine.connect() as conn:  # the pool's one write connection
        assert await conn.scalar(text("PRAGMA wal_autocheckpoint")) == 1000

"""Work-list and timeline pages read their rows by position: the same records as a plain read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from operator import itemgetter

import pytest

from domain.model import Lead
from domain.sales import Activity, ActivityKind, Direction, User
from persistence.brokers import MemoryBroker
from persistence.database import Database
from persistence.relay import Relay


async def test_page_activities_equal_the_plain_read(db: Database) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with db.uow() as uow:
        owner = await uow.users.add(User(name="S", email="s@x.io"))
        lead = await uow.leads.add(Lead(topic="t", owner_id=owner.id))
        made = []
        for i, kind in enumerate(ActivityKind):
            for direction in (None, *Direction):
                made.append(
                    await uow.activities.add(
                        Activity(
                            kind=kind,
                            subject=f"{kind.value} {i} é",
                            occurred_at=now - timedelta(minutes=len(made) + 1, microseconds=7),
                            body=None if direction is None else "b",
                            lead_id=lead.id,
                            owner_id=owner.id,
                            direction=direction,
                            completed=direction is Direction.INCOMING,
                        )
                    )
                )
        await uow.commit()
    async with db.read() as r:
        plain = await r.activities.get_many([a.id for a in made])
        entries, more = await r.activities.timeline(lead.id, 100, None)
        items, _ = await r.sequences.work_list(owner.id, now, 100, None)
    assert not more and len(plain) == len(made) == len(ActivityKind) * 3
    timeline = [e.activity for e in entries if e.activity is not None]
    assert sorted(a.id for a in timeline) == sorted(plain)
    for activity in timeline:
        assert activity == plain[activity.id]
        assert activity.kind is plain[activity.id].kind
        assert activity.direction is plain[activity.id].direction
    tasks = [i.activity for i in items if i.activity is not None]
    open_tasks = [a for a in made if a.kind is ActivityKind.TASK and not a.completed]
    assert sorted(a.id for a in tasks) == sorted(a.id for a in open_tasks)
    for activity in tasks:
        assert activity == plain[activity.id]


async def test_work_list_leads_equal_the_plain_read(db: Database) -> None:
    """The work list decodes each distinct lead of its page once; its items of one lead share
    that lead, equal to what a plain read returns (JSON attributes, flags, timestamps)."""
    now = datetime.now(UTC).replace(microsecond=0)
    async with db.uow() as uow:
        owner = await uow.users.add(User(name="S", email="s@x.io"))
        busy = await uow.leads.add(
            Lead(
                topic="busy",
                owner_id=owner.id,
                attributes={"n": 1, "tags": ["a", "é"], "nested": {"x": None}},
                sales_ready=True,
                teleprospect_accepted=True,
            )
        )
        quiet = await uow.leads.add(Lead(topic="quiet", owner_id=owner.id))
        for i, lead in enumerate((busy, busy, quiet, busy)):
            await uow.activities.add(
                Activity(
                    kind=ActivityKind.TASK,
                    subject=f"task {i}",
                    occurred_at=now - timedelta(minutes=10 - i),
                    lead_id=lead.id,
                    owner_id=owner.id,
                    completed=False,
                )
            )
        await uow.commit()
    async with db.read() as r:
        plain = await r.leads.get_many([busy.id, quiet.id])
        items, more = await r.sequences.work_list(owner.id, now, 100, None)
    assert not more and [i.lead_id for i in items] == [busy.id, busy.id, quiet.id, busy.id]
    for item in items:
        assert item.lead is not None and item.lead == plain[item.lead_id]
        assert item.lead.state is plain[item.lead_id].state
        assert item.lead.created_at.tzinfo is UTC
    assert items[0].lead is items[1].lead is items[3].lead


async def test_lead_and_timeline_equal_the_separate_reads(db: Database) -> None:
    """`lead(id:) { timeline }` reads the lead and its page in one statement (the lead's row
    sorts first on PostgreSQL, last on SQLite): the same lead and page as the separate reads,
    on every page, and nothing for a lead that does not exist."""
    now = datetime.now(UTC).replace(microsecond=0)
    async with db.uow() as uow:
        lead = await uow.leads.add(
            Lead(topic="t", attributes={"tags": ["é"], "n": 2}, sales_ready=True)
        )
        other = await uow.leads.add(Lead(topic="other"))
        for i in range(7):
            for target in (lead, other):
                await uow.activities.add(
                    Activity(
                        kind=ActivityKind.NOTE,
                        subject=f"note {i}",
                        occurred_at=now - timedelta(minutes=i % 3),  # equal times too
                        lead_id=target.id,
                    )
                )
        await uow.commit()
    async with db.read() as r:
        plain = (await r.leads.get_many([lead.id]))[lead.id]
        after = None
        pages = 0
        while True:
            separate = await r.activities.timeline(lead.id, 3, after)
            found, together = await r.activities.lead_and_timeline(lead.id, 3, after)
            assert found == plain and found is not None and found.state is plain.state
            assert found.created_at.tzinfo is UTC
            assert together == separate
            pages += 1
            entries, more = separate
            if not more:
                break
            last = entries[-1]
            after = (last.at, last.source, last.id)
        assert pages == 3  # 7 notes, 3 a page
        assert await r.activities.lead_and_timeline(other.id + 1000, 3, None) == (None, None)
        found, page = await r.activities.lead_and_timeline(other.id, 50, None)
        assert found is not None and found.id == other.id
        assert page is not None and len(page[0]) == 7


async def test_packed_page_rows_equal_the_plain_rows(db: Database) -> None:
    """On SQLite a page's rows come packed in one JSON array (persistence.packing): every
    value decodes to what the plain rows hold (text with quotes, backslashes, newlines and
    non-ASCII, NULLs, flags, timestamps, JSON payloads and attributes, large ids), for
    timeline and work-list pages alike, by position and by name."""
    from persistence.packing import rows as packed_rows
    from persistence.sales_repo import (
        _timeline_statement,
        _work_statement,
        timeline_columns,
    )

    now = datetime.now(UTC)
    tricky = 'a "quoted" \\ back\nslash\ttab é 🚀 \u2028'
    async with db.uow() as uow:
        owner = await uow.users.add(User(name=tricky, email="s@x.io"))
        lead = await uow.leads.add(
            Lead(
                topic=tricky,
                owner_id=owner.id,
                attributes={"s": tricky, "n": 2**53 + 1, "f": 0.1, "l": [None, True]},
                sales_ready=True,
            )
        )
        for i, direction in enumerate((None, *Direction)):
            await uow.activities.add(
                Activity(
                    kind=ActivityKind.TASK,
                    subject=f"{tricky} {i}",
                    occurred_at=now - timedelta(minutes=i, microseconds=i),
                    body=None if direction is None else tricky * 50,
                    lead_id=lead.id,
                    owner_id=owner.id,
                    direction=direction,
                    completed=i % 2 == 1,
                )
            )
        await uow.events.add(lead.id, "STAGE_CHANGED", {"to": tricky, "n": 2**40, "x": None}, now)
        await uow.commit()
    await Relay(db, MemoryBroker()).run_once()  # positions the event (SQLite: the commit did)
    statements = [
        (_timeline_statement("lead", None, True, None), {"lead_id": lead.id}),
        (
            _timeline_statement("lead", None, False, None, *timeline_columns({"id"}, {"id"})),
            {"lead_id": lead.id},
        ),
        (_work_statement(None), {"owner_id": owner.id, "now": now}),
    ]
    async with db.read() as r:
        for stmt, params in statements:
            params = {**params, "page_limit": 100}
            plain = [list(row) for row in (await r.conn.execute(stmt, params)).all()]
            packed = [list(row) for row in await packed_rows(r.conn, stmt, params)]
            assert len(plain) >= 2
            if "lead_id" in params:  # the timeline's: activities and the event (and the lead)
                assert {"a", "e"} <= {row[0] for row in plain}
            key = itemgetter(0, 1)
            assert sorted(packed, key=key) == sorted(plain, key=key)
            got = await packed_rows(r.conn, stmt, params)
            assert {(x.src, x.id, x.at) for x in got} == {(x[0], x[1], x[2]) for x in plain}


def test_packed_rows_answer_their_columns_by_name_before_list_methods() -> None:
    from persistence.packing import _row_class

    row = _row_class(("count", "id", "index"))([3, 7, "i"])
    assert (row.count, row.id, row.index, row[1], list(row)) == (3, 7, "i", 7, [3, 7, "i"])
    with pytest.raises(AttributeError):
        _ = row.missing


async def test_statements_with_reals_are_not_packed(db: Database) -> None:
    """SQLite's JSON writes a real with 15 significant digits: a statement with a Float column
    is read as plain rows, so 0.1 + 0.2 comes back as the very float stored."""
    from sqlalchemy import Float, literal, select

    from persistence.packing import rows as packed_rows

    value = 0.1 + 0.2
    stmt = select(literal(value, Float).label("x"), literal(7).label("n"))
    async with db.read() as r:
        got = await packed_rows(r.conn, stmt)
    assert got[0][0] == value and got[0].x == value and got[0].n == 7

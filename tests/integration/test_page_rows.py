"""Work-list and timeline pages read their rows by position: the same records as a plain read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.model import Lead
from domain.sales import Activity, ActivityKind, Direction, User
from persistence.database import Database


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

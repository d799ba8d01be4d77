"""Assignment rules on real databases: round-robin fairness and least-loaded over many leads."""

from __future__ import annotations

from collections import Counter

from domain.assignment import assign_ready
from domain.model import Lead, utcnow
from domain.sales import AssignmentRule, AssignmentStrategy, Team, User
from persistence.database import Database


async def _team(db: Database, members: int) -> tuple[int, list[int]]:
    async with db.uow() as uow:
        team = await uow.teams.add(Team(name="t"))
        users = [
            await uow.users.add(User(name=f"u{i}", email=f"u{i}@t.io", team_id=team.id))
            for i in range(members)
        ]
        await uow.commit()
    return team.id, [u.id for u in users]


async def test_round_robin_is_fair_over_1000_leads(db: Database) -> None:
    team, users = await _team(db, 3)
    async with db.uow() as uow:
        await uow.assignment_rules.add(AssignmentRule(name="rr", team_id=team))
        await uow.leads.add_many([Lead(topic=f"l{i}", sales_ready=True) for i in range(1000)])
        await uow.commit()
    # Two batches, as two publishes would: the cursor carries over between them.
    async with db.uow() as uow:
        ids = [lead.id for lead in await uow.leads.ready_to_assign(None)]
        await assign_ready(uow, ids[:500], utcnow())
        await uow.commit()
    async with db.uow() as uow:
        await assign_ready(uow, None, utcnow())
        await uow.commit()
    async with db.read() as r:
        owners = Counter(lead.owner_id for lead in (await r.leads.get_many(ids)).values())
        assert await r.leads.ready_to_assign(None) == []
    assert sorted(owners.values()) == [333, 333, 334]
    assert set(owners) == set(users)


async def test_least_loaded_fills_the_emptiest_first(db: Database) -> None:
    team, users = await _team(db, 2)
    async with db.uow() as uow:
        await uow.assignment_rules.add(
            AssignmentRule(name="ll", team_id=team, strategy=AssignmentStrategy.LEAST_LOADED)
        )
        # The first user already works 5 open leads.
        await uow.leads.add_many([Lead(topic="busy", owner_id=users[0]) for _ in range(5)])
        await uow.leads.add_many([Lead(topic=f"new {i}", sales_ready=True) for i in range(7)])
        await uow.commit()
    async with db.uow() as uow:
        await assign_ready(uow, None, utcnow())
        await uow.commit()
    async with db.read() as r:
        leads = (await r.leads.get_many(list(range(1, 13)))).values()
    owners = Counter(lead.owner_id for lead in leads if lead.topic != "busy")
    assert owners == {users[1]: 6, users[0]: 1}  # 0+6 vs 5+1: as even as it gets

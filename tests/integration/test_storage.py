"""Storage on real SQLite and PostgreSQL: migrations, uniqueness, locks, keyset pagination."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from domain.model import Account, Contact, Lead
from domain.pagination import PageRequest
from domain.ports import LeadFilter, LeadOrder
from domain.scoring import (
    CurrentScore,
    Interaction,
    InteractionType,
    ScoreResult,
    ScoringModel,
)
from persistence.database import Database
from persistence.tables import metadata


async def test_migrations_match_the_tables(db: Database) -> None:
    def diff(sync_conn: object) -> list[object]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(ctx, metadata))

    async with db.read_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_sqlite_runs_in_wal_mode(db: Database) -> None:
    if not db.is_sqlite:
        return
    async with db.read_engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000


async def test_contact_add_returns_the_existing_one_on_email_conflict(db: Database) -> None:
    async with db.uow() as uow:
        first, created = await uow.contacts.add(Contact(email="u@x.io", first_name="A"))
        assert created
        again, created = await uow.contacts.add(Contact(email="u@x.io", first_name="B"))
        assert not created
        assert again.id == first.id and again.first_name == "A"
        await uow.commit()


async def test_uncommitted_work_is_rolled_back(db: Database) -> None:
    async with db.uow() as uow:
        await uow.leads.add(Lead(topic="never"))
    async with db.read() as r:
        assert await r.leads.count(LeadFilter()) == 0


async def test_lock_serialises_transactions_on_one_key(db: Database) -> None:
    order: list[str] = []

    async def worker(name: str) -> None:
        async with db.uow() as uow:
            await uow.lock("same-key")
            order.append(f"{name}-in")
            await asyncio.sleep(0.05)
            order.append(f"{name}-out")
            await uow.commit()

    await asyncio.gather(worker("a"), worker("b"))
    # No interleaving: each transaction leaves before the other enters.
    assert order in (["a-in", "a-out", "b-in", "b-out"], ["b-in", "b-out", "a-in", "a-out"])


async def test_keyset_pagination_breaks_ties_by_id(db: Database) -> None:
    same = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.uow() as uow:
        await uow.leads.add_many(
            [Lead(topic=f"L{i}", created_at=same, updated_at=same) for i in range(10)]
        )
        await uow.commit()
    seen: list[str] = []
    after = None
    async with db.read() as r:
        while True:
            page = await r.leads.list(LeadFilter(), LeadOrder(), PageRequest(3, after))
            seen += [lead.topic for lead in page.items]
            if not page.has_next:
                break
            after = page.keys[-1]
    assert seen == [f"L{i}" for i in reversed(range(10))]
    assert all(lead.created_at == same for lead in page.items)


async def test_expiry_query_can_use_the_partial_expiry_index(db: Database) -> None:
    """ix_lead_scores_expiry leaves NULL expiries out (migration 0003); the expiry job's
    `next_expiry_us <= now` implies NOT NULL, so the index still serves it."""
    async with db.read_engine.connect() as conn:
        if db.is_sqlite:
            # INDEXED BY fails ("no query solution") when the index cannot be used.
            plan = await conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT lead_id FROM lead_scores "
                    "INDEXED BY ix_lead_scores_expiry WHERE next_expiry_us <= 5 "
                    "ORDER BY next_expiry_us"
                )
            )
            assert "ix_lead_scores_expiry" in " ".join(str(r) for r in plan.all())
            sql = "SELECT sql FROM sqlite_master WHERE name = 'ix_lead_scores_expiry'"
        else:
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
            plan = await conn.execute(
                text(
                    "EXPLAIN SELECT lead_id FROM lead_scores WHERE next_expiry_us <= 5 "
                    "ORDER BY next_expiry_us"
                )
            )
            assert "ix_lead_scores_expiry" in " ".join(str(r) for r in plan.all())
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_lead_scores_expiry'"
        definition = str((await conn.execute(text(sql))).scalar())
        assert "next_expiry_us IS NOT NULL" in definition


async def test_interactions_stored_in_one_go_get_their_own_ids(db: Database) -> None:
    """add_many's ids (on SQLite: the consecutive rowids up to the last one) are the rows'."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.uow() as uow:
        a, _ = await uow.contacts.add(Contact(first_name="A", email="a@example.com"))
        b, _ = await uow.contacts.add(Contact(first_name="B", email="b@example.com"))
        # Rows before, in the same transaction and a committed one: ids keep counting from them.
        await uow.interactions.add_many(
            [Interaction(contact_id=a.id, type=InteractionType.EMAIL_SENT, occurred_at=when)]
        )
        await uow.commit()
    for round_ in range(2):
        items = [
            Interaction(
                contact_id=(a.id, b.id)[n % 2],
                type=InteractionType.CUSTOM,
                name=f"r{round_}-{n}",
                occurred_at=when,
                properties={"n": n},
            )
            for n in range(7)
        ]
        async with db.uow() as uow:
            stored = await uow.interactions.add_many(items)
            await uow.commit()
        assert [s.name for s in stored] == [i.name for i in items]
        assert len({s.id for s in stored}) == len(items)
        async with db.read() as r:
            rows = await r.interactions.get_many([s.id for s in stored])
        for s in stored:
            row = rows[s.id]
            assert (row.name, row.contact_id, row.properties) == (
                s.name,
                s.contact_id,
                s.properties,
            )


async def test_current_scores_are_those_of_the_leads_and_models_asked_for(db: Database) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 1, 8, 12, 30, 0, 123456, tzinfo=UTC)
    async with db.uow() as uow:
        models = [
            await uow.scoring_models.add(ScoringModel(name=f"m{i}", rules=[])) for i in range(3)
        ]
        leads = [await uow.leads.add(Lead(topic=f"L{i}")) for i in range(4)]
        await uow.scores.put_many(
            [
                (lead.id, model, ScoreResult(float(10 * i + j), (), later if i == j else None))
                for i, lead in enumerate(leads)
                for j, model in enumerate(models)
            ],
            now,
        )
        await uow.commit()
    async with db.read() as r:
        got = await r.scores.current([leads[0].id, leads[2].id], [models[0].id, models[2].id])
    assert got == {
        (leads[0].id, models[0].id): CurrentScore(0.0, 0, later),
        (leads[0].id, models[2].id): CurrentScore(2.0, 0, None),
        (leads[2].id, models[0].id): CurrentScore(20.0, 0, None),
        (leads[2].id, models[2].id): CurrentScore(22.0, 0, later),
    }


def test_json_columns_take_what_the_json_module_took() -> None:
    """orjson writes and reads JSON columns; what only the json module handles still goes.
    Integers beyond 64 bits come back as floats, as the API's own request parsing gives them."""
    from persistence.database import json_dumps, json_loads

    value = {"big": 10**30, 1: "non-string key", "when": [1.5, None, True]}
    expected = {"big": 1e30, "1": "non-string key", "when": [1.5, None, True]}
    assert json_loads(json_dumps(value)) == expected
    assert json_loads(json_dumps({"a": "é"})) == {"a": "é"}
    assert str(json_loads("NaN")) == "nan"


async def test_interactions_for_subjects_within_a_scope(db: Database) -> None:
    """Scoring reads only the types and times its evaluations can count (scope_of)."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    kinds = InteractionType
    async with db.uow() as uow:
        account = await uow.accounts.add(Account(name="Acme"))
        a, _ = await uow.contacts.add(Contact(email="a@acme.io", account_id=account.id))
        b, _ = await uow.contacts.add(Contact(email="b@acme.io", account_id=account.id))
        rows = [
            (a, kinds.EMAIL_OPENED, timedelta(days=40)),  # before its type's window
            (a, kinds.EMAIL_OPENED, timedelta(days=29)),
            (b, kinds.EMAIL_OPENED, timedelta(days=1)),
            (a, kinds.EVENT_ATTENDED, timedelta(days=400)),  # no window: all of them
            (b, kinds.PAGE_VISITED, timedelta(days=1)),  # a type nothing counts
        ]
        stored = await uow.interactions.add_many(
            [Interaction(contact_id=c.id, type=k, occurred_at=now - ago) for c, k, ago in rows]
        )
        await uow.commit()
    scope = {kinds.EMAIL_OPENED: now - timedelta(days=30), kinds.EVENT_ATTENDED: None}
    async with db.read() as r:
        by_contact, by_account = await r.interactions.for_subjects(
            [a.id, b.id], [account.id], scope
        )
        everything, _ = await r.interactions.for_subjects([a.id], [], None)
        nothing, _ = await r.interactions.for_subjects([a.id], [], {})
    ids = [i.id for i in stored]
    assert sorted(i.id for i in by_contact[a.id]) == [ids[1], ids[3]]
    assert [i.id for i in by_contact[b.id]] == [ids[2]]
    assert sorted(i.id for i in by_account[account.id]) == [ids[1], ids[2], ids[3]]
    assert sorted(i.id for i in everything[a.id]) == [ids[0], ids[1], ids[3]]
    assert nothing == {a.id: []}


def test_the_scope_of_models_is_what_their_conditions_can_count() -> None:
    from domain.scoring import build_model, scope_of

    now = datetime(2026, 3, 1, tzinfo=UTC)

    def ic(kind: str, days: int | None = None) -> dict[str, object]:
        body: dict[str, object] = {"type": kind}
        if days:
            body["withinDays"] = days
        return {"interaction": body}

    first = build_model(
        {
            "name": "a",
            "rules": [
                {"name": "r1", "points": 1, "condition": ic("EMAIL_OPENED", 30)},
                {"name": "r2", "points": 1, "condition": {"not": ic("EMAIL_OPENED", 60)}},
                {"name": "r3", "points": 1, "condition": {"any": [ic("PHONE_CALL", 7)]}},
            ],
        }
    )
    second = build_model(
        {
            "name": "b",
            "rules": [
                {"name": "r1", "points": 1, "condition": ic("PHONE_CALL")},
                {"name": "r2", "points": 1, "condition": ic("EMAIL_SENT", 3)},
            ],
        }
    )
    day = timedelta(days=1)
    assert scope_of([first], now) == {
        InteractionType.EMAIL_OPENED: now - 60 * day,
        InteractionType.PHONE_CALL: now - 7 * day,
    }
    assert scope_of([first, second], now) == {
        InteractionType.EMAIL_OPENED: now - 60 * day,
        InteractionType.PHONE_CALL: None,
        InteractionType.EMAIL_SENT: now - 3 * day,
    }
    assert scope_of([], now) == {}

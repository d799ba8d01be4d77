"""Re-scoring on real databases: time-window expiry (job and use case), events, sales-ready."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from api.jobs import expire_scores_once, expiry_loop
from domain import scoring_services as ss
from domain.model import Contact, Feature, Lead, utcnow
from domain.scoring import InteractionType
from persistence import scoring_repo
from persistence import tables as t
from persistence.database import Database

WINDOWED = {
    "name": "engagement",
    "salesReadyThreshold": 10,
    "rules": [
        {
            "name": "recent visit",
            "points": 10,
            "condition": {"interaction": {"type": "PAGE_VISITED", "withinDays": 1}},
        },
    ],
}


async def _setup(db: Database, *, ago: timedelta) -> tuple[int, int]:
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        contact, _ = await uow.contacts.add(Contact(email="w@x.io"))
        lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
        model = await ss.create_scoring_model(uow, WINDOWED)
        await ss.publish_scoring_model(uow, model.id, utcnow())
        await ss.record_interactions(
            uow,
            [
                ss.InteractionInput(
                    InteractionType.PAGE_VISITED, contact_id=contact.id, occurred_at=utcnow() - ago
                )
            ],
        )
        await uow.commit()
    return lead.id, model.id


async def _score(db: Database, lead_id: int, model_id: int) -> float | None:
    async with db.read() as r:
        stored = await r.scores.get(lead_id, model_id)
    return None if stored is None else stored.score


async def test_score_drops_when_the_window_passes(db: Database) -> None:
    lead_id, model_id = await _setup(db, ago=timedelta(hours=23))
    assert await _score(db, lead_id, model_id) == 10
    async with db.read() as r:
        stored = await r.scores.get(lead_id, model_id)
    assert stored is not None and stored.next_expiry is not None
    # Nothing is due yet.
    assert await expire_scores_once(db, db.uow) == 0
    # Two hours later the visit is more than a day old: the score drops with no new interaction.
    async with db.uow() as uow:
        assert await ss.rescore_expired(uow, utcnow() + timedelta(hours=2)) == 1
        await uow.commit()
    assert await _score(db, lead_id, model_id) == 0
    async with db.read() as r:
        events = [
            row.type
            for row in (
                await r.conn.execute(select(t.lead_events).order_by(t.lead_events.c.id))
            ).all()
        ]
        lead = await r.leads.get(lead_id)
    assert events == ["SCORE_CHANGED", "SALES_READY", "SCORE_CHANGED"]
    assert lead is not None and lead.sales_ready  # sales-ready, once reached, stays


async def test_the_background_job_expires_scores_by_itself(db: Database) -> None:
    # The visit leaves its one-day window about half a second from now.
    lead_id, model_id = await _setup(db, ago=timedelta(days=1) - timedelta(milliseconds=500))
    assert await _score(db, lead_id, model_id) == 10
    task = asyncio.create_task(expiry_loop(db, db.uow, 0.1))
    try:
        for _ in range(50):
            await asyncio.sleep(0.1)
            if await _score(db, lead_id, model_id) == 0:
                break
    finally:
        task.cancel()
    assert await _score(db, lead_id, model_id) == 0


async def test_stopped_models_keep_their_scores(db: Database) -> None:
    lead_id, model_id = await _setup(db, ago=timedelta(hours=1))
    async with db.uow() as uow:
        await ss.stop_scoring_model(uow, model_id)
        await uow.commit()
    async with db.uow() as uow:
        # Far in the future: the window has passed, but a STOPPED model's scores are frozen.
        assert await ss.rescore_expired(uow, utcnow() + timedelta(days=30)) == 0
        await uow.commit()
    assert await _score(db, lead_id, model_id) == 10


async def test_fifty_concurrent_interactions_give_the_exact_score(db: Database) -> None:
    model_input = {
        "name": "count",
        "rules": [
            {
                "name": "each open",
                "points": 1,
                "perOccurrence": True,
                "condition": {"interaction": {"type": "EMAIL_OPENED"}},
            }
        ],
    }
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        contact, _ = await uow.contacts.add(Contact(email="c@x.io"))
        lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
        model = await ss.create_scoring_model(uow, model_input)
        await ss.publish_scoring_model(uow, model.id, utcnow())
        await uow.commit()

    async def one() -> None:
        async with db.uow() as uow:
            await ss.record_interactions(
                uow, [ss.InteractionInput(InteractionType.EMAIL_OPENED, contact_id=contact.id)]
            )
            await uow.commit()

    await asyncio.gather(*(one() for _ in range(50)))
    assert await _score(db, lead.id, model.id) == 50


async def test_a_large_batch_is_rescored_set_based_with_the_same_results(db: Database) -> None:
    model_input = {
        "name": "batch",
        "salesReadyThreshold": 3,
        "rules": [
            {
                "name": "opens",
                "points": 1.5,
                "perOccurrence": True,
                "condition": {"interaction": {"type": "EMAIL_OPENED", "withinDays": 7}},
            },
            {
                "name": "cto",
                "points": 4,
                "condition": {
                    "attribute": {
                        "entity": "CONTACT",
                        "field": "jobTitle",
                        "operator": "EQ",
                        "value": "cto",
                    }
                },
            },
        ],
    }
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        contacts = [
            (
                await uow.contacts.add(
                    Contact(email=f"b{i}@x.io", job_title="CTO" if i % 2 else None)
                )
            )[0]
            for i in range(ss.SET_BASED_FROM + 5)
        ]
        leads = [await uow.leads.add(Lead(topic="t", contact_id=c.id)) for c in contacts]
        model = await ss.create_scoring_model(uow, model_input)
        await ss.publish_scoring_model(uow, model.id, utcnow())
        await uow.commit()
    items = [
        ss.InteractionInput(InteractionType.EMAIL_OPENED, contact_email=f"B{i}@x.io ")
        for i in range(len(contacts))
        for _ in range(2)
    ]
    async with db.uow() as uow:
        result = await ss.record_interactions(uow, items)
        await uow.commit()
    assert result.errors == [] and len(result.interactions) == 2 * len(contacts)
    async with db.read() as r:
        stored = await r.scores.for_leads([lead.id for lead in leads])
        marked = await r.leads.get_many([lead.id for lead in leads])
    for i, lead in enumerate(leads):
        (score,) = stored[lead.id]
        assert score.score == 3.0 + (4 if i % 2 else 0)
        assert score.entries[0][:2] == [3.0, 2]
        assert marked[lead.id].sales_ready


async def test_large_rescoring_on_sqlite_restores_the_page_cache_size(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large set-based re-scoring enlarges SQLite's page cache for its writes only."""
    if not db.is_sqlite:
        return
    monkeypatch.setattr(scoring_repo, "LARGE_RESCORE", 1)  # this one lead counts as large
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        contact, _ = await uow.contacts.add(Contact(email="c@x.io"))
        lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
        model = await ss.create_scoring_model(uow, WINDOWED)
        before = (await uow.conn.exec_driver_sql("PRAGMA cache_size")).scalar()
        await ss.publish_scoring_model(uow, model.id, utcnow())
        after = (await uow.conn.exec_driver_sql("PRAGMA cache_size")).scalar()
        await uow.commit()
    assert after == before
    assert await _score(db, lead.id, model.id) == 0

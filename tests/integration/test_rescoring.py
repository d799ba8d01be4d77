"""Re-scoring on real databases: time-window expiry (job and use case), events, sales-ready."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from api.jobs import expire_scores_once, expiry_loop
from domain import scoring_services as ss
from domain.model import Account, Contact, Feature, Lead, utcnow
from domain.scoring import (
    Contribution,
    InteractionType,
    ScoringModel,
    StoredScore,
    Subject,
    decode_breakdown,
    evaluate,
)
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
    # The first score starts automated marketing qualification; sales-ready moves on to sales
    # acceptance, in the same transaction.
    assert events == [
        "SCORE_CHANGED",
        "SALES_READY",
        "STAGE_CHANGED",
        "STAGE_CHANGED",
        "SCORE_CHANGED",
    ]
    assert lead is not None and lead.stage.value == "SALES_ACCEPTANCE"
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


async def test_a_large_batch_is_rescored_set_based_with_the_same_results(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ss, "SET_BASED_FROM", 50)  # the same path as 1,000 leads, faster
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


OPENS = {
    "name": "opens",
    "rules": [
        {
            "name": "each open",
            "points": 1,
            "perOccurrence": True,
            "condition": {"interaction": {"type": "EMAIL_OPENED"}},
        }
    ],
}


async def _open(db: Database, contact_id: int) -> None:
    async with db.uow() as uow:
        items = [ss.InteractionInput(InteractionType.EMAIL_OPENED, contact_id=contact_id)]
        await ss.record_interactions(uow, items)
        await uow.commit()


async def test_cached_live_models_follow_publish_and_stop_from_another_process(
    db: Database, database_url: str
) -> None:
    # `other` has engines of its own, like another server process: db's cache of LIVE models
    # must notice what it commits.
    other = Database(database_url)
    try:
        async with other.uow() as uow:
            await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
            contact, _ = await uow.contacts.add(Contact(email="m@x.io"))
            lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
            model = await ss.create_scoring_model(uow, OPENS)
            await ss.publish_scoring_model(uow, model.id, utcnow())
            await uow.commit()
        async with db.uow() as uow:
            (live,) = await uow.scoring_models.live()
            assert (live.id, live.version) == (model.id, 1)
            live.rules.clear()  # a caller's copy: the cached model stays whole
            live.name = "changed"
        async with db.uow() as uow:
            (live,) = await uow.scoring_models.live()
            assert live.name == "opens" and len(live.scoring_rules) == 1
        await _open(db, contact.id)
        assert await _score(db, lead.id, model.id) == 1

        async with other.uow() as uow:
            await ss.stop_scoring_model(uow, model.id)
            await uow.commit()
        async with db.uow() as uow:
            assert await uow.scoring_models.live() == []
        await _open(db, contact.id)
        assert await _score(db, lead.id, model.id) == 1  # stopped: frozen

        doubled = {**OPENS, "rules": [{**OPENS["rules"][0], "points": 2}]}  # type: ignore[dict-item]
        async with other.uow() as uow:
            await ss.update_scoring_model(uow, model.id, doubled)
            await ss.publish_scoring_model(uow, model.id, utcnow())
            await uow.commit()
        async with db.uow() as uow:
            (live,) = await uow.scoring_models.live()
            assert live.version == 2 and live.scoring_rules[0].points == 2
        await _open(db, contact.id)
        assert await _score(db, lead.id, model.id) == 6  # 3 opens, 2 points each

        async with other.uow() as uow:
            await ss.stop_scoring_model(uow, model.id)
            await ss.delete_scoring_model(uow, model.id)
            await uow.commit()
        async with db.uow() as uow:
            assert await uow.scoring_models.live() == []
    finally:
        await other.dispose()


async def test_a_model_published_in_the_same_unit_of_work_scores_at_once(db: Database) -> None:
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        contact, _ = await uow.contacts.add(Contact(email="s@x.io"))
        lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
        assert await uow.scoring_models.live() == []  # cached: nothing LIVE
        model = await ss.create_scoring_model(uow, OPENS)
        await ss.publish_scoring_model(uow, model.id, utcnow())
        items = [ss.InteractionInput(InteractionType.EMAIL_OPENED, contact_id=contact.id)]
        await ss.record_interactions(uow, items)
        await uow.commit()
    assert await _score(db, lead.id, model.id) == 1


async def test_a_batch_rescores_each_lead_once_like_the_evaluator(db: Database) -> None:
    model_input = {
        "name": "mixed",
        "salesReadyThreshold": 6,
        "rules": [
            {
                "name": "each open",
                "points": 2,
                "perOccurrence": True,
                "condition": {"interaction": {"type": "EMAIL_OPENED", "withinDays": 30}},
            },
            {
                "name": "gold",
                "points": 1,
                "condition": {
                    "attribute": {
                        "entity": "ACCOUNT",
                        "field": "attributes.tier",
                        "operator": "EQ",
                        "value": "gold",
                    }
                },
            },
        ],
    }
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        account = await uow.accounts.add(Account(name="Acme", attributes={"tier": "gold"}))
        a, _ = await uow.contacts.add(Contact(email="a@acme.io", account_id=account.id))
        b, _ = await uow.contacts.add(Contact(email="b@acme.io", account_id=account.id))
        loner, _ = await uow.contacts.add(Contact(email="l@x.io"))
        lead_a = await uow.leads.add(Lead(topic="t", contact_id=a.id))
        lead_b = await uow.leads.add(Lead(topic="t", contact_id=b.id))
        # No contact: scored on the interactions of all the account's contacts.
        pooled = await uow.leads.add(Lead(topic="t", account_id=account.id))
        lead_l = await uow.leads.add(Lead(topic="t", contact_id=loner.id))
        unscored = await uow.leads.add(Lead(topic="t"))
        model = await ss.create_scoring_model(uow, model_input)
        await ss.publish_scoring_model(uow, model.id, utcnow())
        await uow.commit()
    opened = InteractionType.EMAIL_OPENED
    items = [
        ss.InteractionInput(opened, contact_id=a.id),
        ss.InteractionInput(opened, contact_email="A@acme.io"),
        ss.InteractionInput(opened, contact_id=b.id),
        ss.InteractionInput(opened, contact_id=loner.id),
        ss.InteractionInput(opened, contact_id=loner.id, occurred_at=utcnow() - timedelta(days=40)),
        ss.InteractionInput(opened, contact_id=10_000),  # unknown: reported, skipped
    ]
    async with db.uow() as uow:
        result = await ss.record_interactions(uow, items)
        await uow.commit()
    assert len(result.interactions) == 5 and len(result.errors) == 1
    expected = {lead_a.id: 5.0, lead_b.id: 3.0, pooled.id: 7.0, lead_l.id: 2.0}
    async with db.read() as r:
        for lead_id, score in expected.items():
            stored = await r.scores.get(lead_id, model.id)
            assert stored is not None and stored.score == score
            assert sum(c.points for c in _contributions(model, stored)) == score
            lead = await r.leads.get(lead_id)
            assert lead is not None
            contact = await r.contacts.get(lead.contact_id) if lead.contact_id else None
            account_row = await r.accounts.get(account.id) if lead_id != lead_l.id else None
            subject = Subject(
                lead,
                contact,
                account_row,
                await r.interactions.for_subject(lead.contact_id, lead.account_id),
            )
            (live,) = await r.scoring_models.live()
            assert evaluate(live, subject, stored.updated_at).score == score
        assert await r.scores.get(unscored.id, model.id) is None
        events = (
            await r.conn.execute(
                select(t.lead_events.c.lead_id, t.lead_events.c.type, t.lead_events.c.payload)
                .where(t.lead_events.c.lead_id.in_(list(expected)))
                .order_by(t.lead_events.c.id)
            )
        ).all()
        marked = await r.leads.get_many(list(expected))
    # Publishing scored the account's leads 1 (gold); the batch re-scored each lead once.
    changed = [(e.lead_id, e.payload["score"]) for e in events if e.type == "SCORE_CHANGED"]
    assert sorted(changed) == sorted(
        [(lead_a.id, 1.0), (lead_b.id, 1.0), (pooled.id, 1.0), *expected.items()]
    )
    ready = sorted(e.lead_id for e in events if e.type == "SALES_READY")
    assert ready == sorted([pooled.id])
    assert [i for i in expected if marked[i].sales_ready] == [pooled.id]


def _contributions(model: ScoringModel, stored: StoredScore) -> list[Contribution]:
    return decode_breakdown(model, stored.entries)


async def test_live_models_if_enabled_reads_the_switch_in_the_same_query(db: Database) -> None:
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        model = await ss.create_scoring_model(uow, OPENS)
        assert await uow.scoring_models.live(if_enabled=Feature.LEAD_MANAGEMENT) == []  # DRAFT
        await ss.publish_scoring_model(uow, model.id, utcnow())
        (live,) = await uow.scoring_models.live(if_enabled=Feature.LEAD_MANAGEMENT)
        assert live.id == model.id
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, False)
        assert await uow.scoring_models.live(if_enabled=Feature.LEAD_MANAGEMENT) == []
        assert [m.id for m in await uow.scoring_models.live()] == [model.id]
        await uow.commit()


async def test_an_interaction_waiting_on_a_contact_change_scores_the_changed_contact(
    db: Database,
) -> None:
    model_input = {
        "name": "cto opens",
        "rules": [
            {**OPENS["rules"][0]},  # type: ignore[dict-item]
            {
                "name": "cto",
                "points": 10,
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
        contact, _ = await uow.contacts.add(Contact(email="w@x.io"))
        lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
        model = await ss.create_scoring_model(uow, model_input)
        await ss.publish_scoring_model(uow, model.id, utcnow())
        await uow.commit()
    # A contact change holds the lead (PostgreSQL: its row lock; SQLite: the write lock) while
    # an interaction of that contact comes in; the interaction must score the changed contact.
    async with db.uow() as change:
        changed = await change.contacts.get_for_update(contact.id)
        assert changed is not None
        changed.job_title = "CTO"
        await change.contacts.save(changed)
        await ss.rescore_leads(change, [lead.id])
        recording = asyncio.create_task(_open(db, contact.id))
        await asyncio.sleep(0.3)  # the interaction is now waiting for the lead
        assert not recording.done()
        await change.commit()
    await recording
    assert await _score(db, lead.id, model.id) == 11


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


VISITS = {
    "name": "visits",
    "rules": [
        {
            "name": "pricing today",
            "points": 10,
            "condition": {
                "interaction": {
                    "type": "PAGE_VISITED",
                    "withinDays": 1,
                    "properties": [{"key": "url", "operator": "EQ", "value": "/pricing"}],
                }
            },
        },
    ],
}
OPENS_AND_TIER = {
    "name": "opens",
    "rules": [
        {
            "name": "each open",
            "points": 2,
            "perOccurrence": True,
            "condition": {"interaction": {"type": "EMAIL_OPENED"}},
        },
        {
            "name": "gold",
            "points": 1,
            "condition": {
                "attribute": {
                    "entity": "ACCOUNT",
                    "field": "attributes.tier",
                    "operator": "EQ",
                    "value": "gold",
                }
            },
        },
    ],
}


async def test_a_model_no_new_interaction_can_change_keeps_its_stored_score(db: Database) -> None:
    """Interactions re-evaluate only the models they can change (type, name and property tests
    of some interaction condition), unless a stored score no longer holds (expired)."""
    t0 = utcnow()
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        account = await uow.accounts.add(Account(name="Acme", attributes={"tier": "gold"}))
        contact, _ = await uow.contacts.add(Contact(email="k@acme.io", account_id=account.id))
        lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
        pooled = await uow.leads.add(Lead(topic="t", account_id=account.id))
        visits = await ss.create_scoring_model(uow, VISITS)
        opens = await ss.create_scoring_model(uow, OPENS_AND_TIER)
        for model in (visits, opens):
            await ss.publish_scoring_model(uow, model.id, t0)
        await uow.commit()

    async def record(kind: InteractionType, now: datetime, url: str | None = None) -> None:
        item = ss.InteractionInput(
            kind, contact_id=contact.id, properties={"url": url} if url else None
        )
        async with db.uow() as uow:
            await ss.record_interactions(uow, [item], now)
            await uow.commit()

    async def stored(lead_id: int, model_id: int) -> StoredScore:
        async with db.read() as r:
            found = await r.scores.get(lead_id, model_id)
        assert found is not None
        return found

    t1 = t0 + timedelta(minutes=1)
    await record(InteractionType.PAGE_VISITED, t1, "/pricing")
    for lead_id in (lead.id, pooled.id):
        assert (await stored(lead_id, visits.id)).score == 10
        assert (await stored(lead_id, visits.id)).updated_at == t1
        # Publishing scored it (gold); a page visit cannot change it: not written again.
        assert (await stored(lead_id, opens.id)).score == 1
        assert (await stored(lead_id, opens.id)).updated_at == t0

    # Another page, not /pricing: no model can change, nothing is evaluated or written.
    t2 = t0 + timedelta(minutes=2)
    await record(InteractionType.PAGE_VISITED, t2, "/blog")
    assert (await stored(lead.id, visits.id)).updated_at == t1
    assert (await stored(lead.id, opens.id)).updated_at == t0

    # An open changes the second model, for the contact's lead and the account's.
    t3 = t0 + timedelta(minutes=3)
    await record(InteractionType.EMAIL_OPENED, t3)
    for lead_id in (lead.id, pooled.id):
        assert (await stored(lead_id, opens.id)).score == 3
        assert (await stored(lead_id, opens.id)).updated_at == t3
        assert (await stored(lead_id, visits.id)).updated_at == t1

    # Two days on, the pricing visit has left its window: an open cannot change the first
    # model, but its stored score no longer holds, so it is evaluated (and drops) right away.
    t4 = t0 + timedelta(days=2)
    await record(InteractionType.EMAIL_OPENED, t4)
    for lead_id in (lead.id, pooled.id):
        score = await stored(lead_id, visits.id)
        assert (score.score, score.updated_at, score.next_expiry) == (0, t4, None)
        assert (await stored(lead_id, opens.id)).score == 5
    async with db.read() as r:
        changes = (
            await r.conn.execute(
                select(t.lead_events.c.payload)
                .where(t.lead_events.c.lead_id == lead.id, t.lead_events.c.type == "SCORE_CHANGED")
                .order_by(t.lead_events.c.id)
            )
        ).scalars()
        seen = [(p["scoringModelId"], p["previousScore"], p["score"]) for p in changes]
    assert seen == [
        (opens.id, None, 1.0),
        (visits.id, 0.0, 10.0),
        (opens.id, 1.0, 3.0),
        (visits.id, 10.0, 0.0),
        (opens.id, 3.0, 5.0),
    ]


@pytest.mark.parametrize("set_based", [False, True], ids=["python", "set-based"])
async def test_a_lead_is_marked_sales_ready_when_it_crosses_the_threshold(
    db: Database, monkeypatch: pytest.MonkeyPatch, set_based: bool
) -> None:
    """Not each time a score above it is stored: a mark taken off by hand stays off until the
    lead drops below the threshold and crosses it again."""
    if set_based:
        monkeypatch.setattr(ss, "SET_BASED_FROM", 1)
    opens = {
        "name": "opens",
        "salesReadyThreshold": 2,
        "rules": [
            {
                "name": "each recent open",
                "points": 1,
                "perOccurrence": True,
                "condition": {"interaction": {"type": "EMAIL_OPENED", "withinDays": 1}},
            }
        ],
    }
    t0 = utcnow()
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        contact, _ = await uow.contacts.add(Contact(email="cross@x.io"))
        lead = await uow.leads.add(Lead(topic="t", contact_id=contact.id))
        model = await ss.create_scoring_model(uow, opens)
        await ss.publish_scoring_model(uow, model.id, t0)
        await uow.commit()

    async def opened(now: datetime, n: int = 1) -> None:
        item = ss.InteractionInput(InteractionType.EMAIL_OPENED, contact_id=contact.id)
        async with db.uow() as uow:
            await ss.record_interactions(uow, [item] * n, now)
            await uow.commit()

    async def ready() -> bool:
        async with db.read() as r:
            found = await r.leads.get(lead.id)
        assert found is not None
        return found.sales_ready

    async def untick() -> None:
        async with db.uow() as uow:
            found = await uow.leads.get_for_update(lead.id)
            assert found is not None
            found.sales_ready = False
            await uow.leads.save(found)
            await uow.commit()

    await opened(t0 + timedelta(minutes=1), 2)
    assert await ready()  # crossed: 0 -> 2
    await untick()
    await opened(t0 + timedelta(minutes=2))  # 3: still above, crossed nothing
    assert not await ready()
    # Two days on every open has left its window (the expiry re-score drops the score to 0),
    # then two new opens cross the threshold again.
    async with db.uow() as uow:
        await ss.rescore_expired(uow, t0 + timedelta(days=2))
        await uow.commit()
    await opened(t0 + timedelta(days=2, minutes=1), 2)
    assert await ready()
    async with db.read() as r:
        marks = (
            await r.conn.execute(
                select(func.count())
                .select_from(t.lead_events)
                .where(t.lead_events.c.lead_id == lead.id, t.lead_events.c.type == "SALES_READY")
            )
        ).scalar()
    assert marks == 2

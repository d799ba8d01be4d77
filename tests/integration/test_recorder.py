"""InteractionRecorder: concurrent calls share transactions, each keeps its own result."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from domain import scoring_services as ss
from domain.errors import Invalid, NotFound
from domain.model import Contact, Feature, Lead, utcnow
from domain.ports import UnitOfWork
from domain.scoring import InteractionType
from persistence import tables as t
from persistence.database import Database

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


class Counting:
    """A unit-of-work factory that counts transactions and can fail the first `fail` commits."""

    def __init__(self, db: Database, fail: int = 0) -> None:
        self.db = db
        self.fail = fail
        self.started = 0

    def __call__(self) -> UnitOfWork:
        self.started += 1
        uow = self.db.uow()
        if self.fail > 0:
            self.fail -= 1

            async def broken() -> None:
                raise RuntimeError("commit failed")

            uow.commit = broken  # type: ignore[method-assign]
        return uow


async def _setup(db: Database, n: int) -> tuple[list[int], list[int], int]:
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        contacts = [(await uow.contacts.add(Contact(email=f"r{i}@x.io")))[0].id for i in range(n)]
        leads = [(await uow.leads.add(Lead(topic="t", contact_id=c))).id for c in contacts]
        model = await ss.create_scoring_model(uow, OPENS)
        await ss.publish_scoring_model(uow, model.id, utcnow())
        await uow.commit()
    return contacts, leads, model.id


def _open(contact_id: int, **kw: Any) -> ss.InteractionInput:
    return ss.InteractionInput(InteractionType.EMAIL_OPENED, contact_id=contact_id, **kw)


async def _scores(db: Database, leads: list[int], model_id: int) -> list[float | None]:
    async with db.read() as r:
        found = [await r.scores.get(lead, model_id) for lead in leads]
    return [s.score if s else None for s in found]


async def test_concurrent_calls_share_a_transaction_and_keep_their_own_results(
    db: Database,
) -> None:
    contacts, leads, model_id = await _setup(db, 3)
    factory = Counting(db)
    recorder = ss.InteractionRecorder(factory)
    calls = [
        recorder.record([_open(contacts[0])], batch=False),
        recorder.record([_open(contacts[1]), _open(10_000), _open(contacts[1])], batch=True),
        recorder.record([_open(contacts[0])], batch=False),
        recorder.record([_open(10_000)], batch=False),
        recorder.record([_open(contacts[2])], batch=False),
    ]
    results = await asyncio.gather(*calls)
    assert factory.started < len(calls)  # grouped
    assert [[i.contact_id for i in r.interactions] for r in results] == [
        [contacts[0]],
        [contacts[1], contacts[1]],
        [contacts[0]],
        [],
        [contacts[2]],
    ]
    assert all(i.id for r in results for i in r.interactions)
    assert [[(type(e), e.field) for e in r.errors] for r in results] == [
        [],
        [(NotFound, ["inputs", "1", "contactId"])],
        [],
        [(NotFound, ["input", "contactId"])],
        [],
    ]
    assert await _scores(db, leads, model_id) == [2, 2, 1]


async def test_a_failed_shared_transaction_is_retried_call_by_call(db: Database) -> None:
    contacts, leads, model_id = await _setup(db, 2)
    factory = Counting(db, fail=1)
    recorder = ss.InteractionRecorder(factory)
    results = await asyncio.gather(
        recorder.record([_open(contacts[0])], batch=False),
        recorder.record([_open(contacts[1])], batch=False),
        recorder.record([_open(contacts[1])], batch=False),
    )
    assert factory.started == 4  # the shared one that failed, then one per call
    assert [len(r.interactions) for r in results] == [1, 1, 1]
    assert await _scores(db, leads, model_id) == [1, 2]
    async with db.read() as r:
        assert await r.conn.scalar(select(func.count()).select_from(t.interactions)) == 3


async def test_a_call_that_fails_alone_gets_the_error_and_the_recorder_goes_on(
    db: Database,
) -> None:
    contacts, leads, model_id = await _setup(db, 1)
    factory = Counting(db, fail=1)
    recorder = ss.InteractionRecorder(factory)
    with pytest.raises(RuntimeError, match="commit failed"):
        await recorder.record([_open(contacts[0])], batch=False)
    with pytest.raises(Invalid):
        await recorder.record([_open(contacts[0])] * (ss.MAX_BATCH + 1), batch=True)
    result = await recorder.record([_open(contacts[0])], batch=False)
    assert len(result.interactions) == 1
    assert await _scores(db, leads, model_id) == [1]


async def test_concurrent_retries_with_one_idempotency_key_record_once(db: Database) -> None:
    contacts, leads, model_id = await _setup(db, 1)
    recorder = ss.InteractionRecorder(db.uow, max_items=3)  # several transactions
    results = await asyncio.gather(
        *(
            recorder.record([_open(contacts[0], idempotency_key="k-1")], batch=False)
            for _ in range(10)
        )
    )
    assert len({r.interactions[0].id for r in results}) == 1
    assert await _scores(db, leads, model_id) == [1]


async def test_fifty_concurrent_calls_give_the_exact_score(db: Database) -> None:
    contacts, leads, model_id = await _setup(db, 1)
    recorder = ss.InteractionRecorder(db.uow)
    await asyncio.gather(*(recorder.record([_open(contacts[0])], batch=False) for _ in range(50)))
    assert await _scores(db, leads, model_id) == [50]


async def test_on_postgresql_a_call_does_not_wait_for_another_contacts_locked_lead(
    db: Database,
) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: every transaction waits for the one before")
    contacts, leads, model_id = await _setup(db, 2)
    recorder = ss.InteractionRecorder(db.uow, parallel=2)
    async with db.uow() as holder:
        assert await holder.leads.get_for_update(leads[0]) is not None
        first = asyncio.create_task(recorder.record([_open(contacts[0])], batch=False))
        await asyncio.sleep(0.2)  # its transaction started and waits for the lead
        second = await asyncio.wait_for(
            recorder.record([_open(contacts[1])], batch=False), timeout=10
        )
        assert len(second.interactions) == 1 and not first.done()
        await holder.commit()
    assert len((await first).interactions) == 1
    assert await _scores(db, leads, model_id) == [1, 1]

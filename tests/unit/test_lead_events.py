"""CREATED events are recorded with the lead, by every use case that creates one."""

from __future__ import annotations

import pytest

from domain.errors import Invalid
from domain.events import decode_event_cursor, encode_event_cursor
from domain.importing import ImportEntity, import_chunk, read_csv
from domain.services import FormSubmission, create_lead, submit_form
from tests.unit.fakes import FakeUnitOfWork

SNAPSHOT = {"statusReason": "NEW", "salesReady": False, "stage": "INQUIRY"}


async def test_create_lead_records_created_with_the_lead_state() -> None:
    uow = FakeUnitOfWork()
    lead = await create_lead(uow, {"topic": "Demo"})
    assert uow.db.events == [(lead.id, "CREATED", SNAPSHOT)]


async def test_invalid_create_lead_records_nothing() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(Exception):  # noqa: B017 - whatever validation error: nothing recorded
        await create_lead(uow, {"topic": ""})
    assert uow.db.events == []


async def test_submit_form_records_created_only_for_a_new_lead() -> None:
    uow = FakeUnitOfWork()
    cmd = FormSubmission(form_id="webinar", fields={"email": "ada@x.io", "firstName": "Ada"})
    first = await submit_form(uow, cmd)
    assert first.lead is not None and first.lead_created
    assert uow.db.events == [(first.lead.id, "CREATED", SNAPSHOT)]
    again = await submit_form(uow, cmd)
    assert not again.lead_created
    assert len(uow.db.events) == 1


async def test_import_records_created_per_new_lead() -> None:
    uow = FakeUnitOfWork()
    text = "topic,email\nA,a@x.io\nB,b@x.io\n"
    _, rows = read_csv(text, ImportEntity.LEAD, None)
    result = await import_chunk(uow, ImportEntity.LEAD, list(rows))
    assert result.created == 2
    ids = sorted(uow.db.leads)
    assert sorted(e[0] for e in uow.db.events) == ids
    assert {e[1] for e in uow.db.events} == {"CREATED"}


@pytest.mark.parametrize("position", [0, 1, 12, 2**63 - 1])
def test_event_cursor_round_trip(position: int) -> None:
    assert decode_event_cursor(encode_event_cursor(position)) == position


@pytest.mark.parametrize(
    "cursor", ["", "bm9wZQ", "ZXY6", "ZXY6LTE", "WzEsMl0", "!!", "ZXY6OTIyMzM3MjAzNjg1NDc3NTgwOA"]
)
def test_foreign_cursors_are_invalid(cursor: str) -> None:
    with pytest.raises(Invalid):
        decode_event_cursor(cursor)

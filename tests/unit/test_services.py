"""domain.services: use cases run against the in-memory unit of work."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from domain.errors import (
    Conflict,
    DomainError,
    Duplicate,
    Invalid,
    NotFound,
    ValidationErrors,
)
from domain.model import (
    Account,
    Feature,
    LeadSource,
    LeadState,
    MatchEntity,
    MatchingStrategy,
)
from domain.services import (
    FormSubmission,
    create_account,
    create_contact,
    create_lead,
    create_strategy,
    delete_strategy,
    find_or_create_account,
    set_feature,
    submit_form,
    update_account,
    update_contact,
    update_lead,
    update_strategy,
)
from tests.unit.fakes import FakeDatabase, FakeUnitOfWork, as_port

C, L = MatchEntity.CONTACT, MatchEntity.LEAD


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def submission(form_id: str = "spring-webinar", **fields: Any) -> FormSubmission:
    return FormSubmission(form_id=form_id, fields=fields)


def default_id(uow: FakeUnitOfWork, entity: MatchEntity) -> int:
    [s] = [s for s in uow.db.strategies.values() if s.entity is entity and s.is_default]
    return s.id


# ---------------------------------------------------------------- the fake itself


async def test_the_fake_conforms_to_the_port_and_rolls_back(uow: FakeUnitOfWork) -> None:
    port = as_port(uow)
    async with port:
        await create_account(port, {"name": "Gone"})
    assert uow.db.accounts == {}
    async with port:
        await create_account(port, {"name": "Kept"})
        await port.commit()
    assert [a.name for a in uow.db.accounts.values()] == ["Kept"]


# ---------------------------------------------------------------- submit_form


async def test_first_submission_creates_contact_and_lead(uow: FakeUnitOfWork) -> None:
    r = await submit_form(
        uow, submission(email=" Ada@Example.com ", firstName="Ada", newsletter="yes")
    )
    assert (r.contact_created, r.lead_created) == (True, True)
    assert r.contact.email == "ada@example.com"
    assert r.contact.first_name == "Ada"
    assert r.contact.attributes == {"newsletter": "yes"}
    assert r.lead is not None
    assert r.lead.contact_id == r.contact.id
    assert r.lead.marketing_context == "spring-webinar"
    assert r.lead.source is LeadSource.LANDING_PAGE
    assert r.lead.topic == "Submission of spring-webinar"
    assert (r.lead.email, r.lead.first_name) == ("ada@example.com", "Ada")
    assert r.lead.attributes == {"newsletter": "yes"}
    stored = uow.db.contacts[r.contact.id]
    assert stored.email == "ada@example.com"
    assert uow.db.leads[r.lead.id].contact_id == stored.id
    assert "contact-email:ada@example.com" in uow.locks


async def test_resubmission_matches_both_and_fills_only_empty_fields(uow: FakeUnitOfWork) -> None:
    first = await submit_form(uow, submission(email="ada@example.com", firstName="Ada", tier=""))
    again = await submit_form(
        uow,
        submission(
            email="  ADA@Example.COM\t",
            firstName="Adaline",
            lastName="Lovelace",
            jobTitle="CTO",
            tier="gold",
            extra=1,
        ),
    )
    assert (again.contact_created, again.lead_created) == (False, False)
    assert again.contact.id == first.contact.id
    assert again.lead is not None and first.lead is not None
    assert again.lead.id == first.lead.id
    assert len(uow.db.contacts) == 1 and len(uow.db.leads) == 1
    contact = uow.db.contacts[first.contact.id]
    assert contact.first_name == "Ada"  # kept
    assert (contact.last_name, contact.job_title) == ("Lovelace", "CTO")  # filled
    assert contact.attributes == {"tier": "gold", "extra": 1}
    lead = uow.db.leads[first.lead.id]
    assert (lead.first_name, lead.last_name, lead.job_title) == ("Ada", "Lovelace", "CTO")
    assert lead.attributes == {"tier": "gold", "extra": 1}


async def test_an_identical_resubmission_changes_nothing(uow: FakeUnitOfWork) -> None:
    first = await submit_form(uow, submission(email="ada@x.io", firstName="Ada"))
    assert first.lead is not None
    before = (uow.db.contacts[first.contact.id], uow.db.leads[first.lead.id])
    again = await submit_form(uow, submission(email="ada@x.io", firstName="Ada"))
    assert (again.contact_created, again.lead_created) == (False, False)
    assert (uow.db.contacts[first.contact.id], uow.db.leads[first.lead.id]) == before


async def test_another_form_gives_the_same_contact_a_second_lead(uow: FakeUnitOfWork) -> None:
    a = await submit_form(uow, submission("pricing-page", email="x@y.io"))
    b = await submit_form(
        uow,
        FormSubmission(
            "ebook", {"email": "X@y.io"}, source=LeadSource.LEAD_GEN_FORM, topic=" E-book "
        ),
    )
    assert (b.contact_created, b.lead_created) == (False, True)
    assert b.contact.id == a.contact.id
    assert a.lead is not None and b.lead is not None
    assert b.lead.id != a.lead.id
    assert (b.lead.marketing_context, b.lead.topic) == ("ebook", "E-book")
    assert b.lead.source is LeadSource.LEAD_GEN_FORM
    assert {lead.contact_id for lead in uow.db.leads.values()} == {a.contact.id}


async def test_a_closed_lead_is_not_matched(uow: FakeUnitOfWork) -> None:
    first = await submit_form(uow, submission(email="x@y.io"))
    assert first.lead is not None
    uow.db.leads[first.lead.id].state = LeadState.QUALIFIED
    again = await submit_form(uow, submission(email="x@y.io"))
    assert (again.contact_created, again.lead_created) == (False, True)


async def test_without_create_lead_only_the_contact_is_handled(uow: FakeUnitOfWork) -> None:
    r = await submit_form(uow, FormSubmission("f", {"email": "x@y.io"}, create_lead=False))
    assert r.contact_created and r.lead is None and not r.lead_created
    assert uow.db.leads == {}


async def test_company_name_creates_and_links_an_account(uow: FakeUnitOfWork) -> None:
    r = await submit_form(uow, submission(email="ada@x.io", companyName="Northwind"))
    [account] = uow.db.accounts.values()
    assert account.name == "Northwind"
    assert r.contact.account_id == account.id
    assert uow.db.contacts[r.contact.id].account_id == account.id
    assert r.lead is not None
    assert r.lead.account_id == account.id
    assert r.lead.company_name == "Northwind"


async def test_company_name_matches_an_account_case_insensitively(uow: FakeUnitOfWork) -> None:
    existing = await uow.accounts.add(Account("Northwind"))
    a = await submit_form(uow, submission(email="a@x.io", company="NORTHWIND"))
    b = await submit_form(uow, submission(email="b@x.io", **{"Account Name": " northwind "}))
    assert len(uow.db.accounts) == 1
    assert a.contact.account_id == b.contact.account_id == existing.id
    assert "account-name:northwind" in uow.locks


async def test_a_matched_contact_keeps_its_account(uow: FakeUnitOfWork) -> None:
    first = await submit_form(uow, submission(email="a@x.io", companyName="Northwind"))
    again = await submit_form(uow, submission("other", email="a@x.io", companyName="Contoso"))
    assert again.contact.account_id == first.contact.account_id
    assert [a.name for a in uow.db.accounts.values()] == ["Northwind"]
    assert again.lead is not None
    assert again.lead.account_id == first.contact.account_id


async def test_a_matched_lead_gets_the_contacts_account(uow: FakeUnitOfWork) -> None:
    first = await submit_form(uow, submission(email="a@x.io"))
    again = await submit_form(uow, submission(email="a@x.io", companyName="Northwind"))
    assert first.lead is not None and again.lead is not None
    assert again.lead.id == first.lead.id and not again.lead_created
    [account] = uow.db.accounts.values()
    stored = uow.db.leads[first.lead.id]
    assert stored.account_id == account.id
    assert stored.company_name == "Northwind"


async def test_form_specific_strategies_are_used_for_that_form(uow: FakeUnitOfWork) -> None:
    await create_strategy(
        uow, MatchingStrategy("fair contacts", C, ["phone", "lastName"], ["trade-fair"])
    )
    await create_strategy(uow, MatchingStrategy("fair leads", L, ["phone"], ["trade-fair"]))
    known = await submit_form(
        uow, submission("trade-fair", email="ada@x.io", phone="+1 555", lastName="Rossi")
    )
    # Same phone and last name (other case), other email: the fair's strategies match.
    fair = await submit_form(
        uow, submission("trade-fair", email="other@x.io", phone="+1 555", lastName="ROSSI")
    )
    assert (fair.contact_created, fair.lead_created) == (False, False)
    assert fair.contact.id == known.contact.id
    assert uow.db.contacts[known.contact.id].email == "ada@x.io"  # not overwritten
    # Another form uses the defaults (email): a new contact.
    other = await submit_form(
        uow, submission("spring", email="other@x.io", phone="+1 555", lastName="Rossi")
    )
    assert other.contact_created and other.contact.id != known.contact.id


async def test_the_email_stays_unique_when_a_form_strategy_matches_another_contact(
    uow: FakeUnitOfWork,
) -> None:
    # The fair matches contacts by phone + last name. The matched contact has no email, and the
    # submitted email belongs to another contact: fill_empty copies it onto the matched contact,
    # which the unique index on contacts.email refuses (an internal error, not a userError).
    await create_strategy(uow, MatchingStrategy("fair", C, ["phone", "lastName"], ["fair"]))
    await create_contact(uow, {"phone": "555", "lastName": "Rossi"})
    await create_contact(uow, {"email": "ada@x.io"})
    with contextlib.suppress(DomainError):  # refusing it with a userError would be fine too
        await submit_form(uow, submission("fair", email="ada@x.io", phone="555", lastName="Rossi"))
    emails = [c.email for c in uow.db.contacts.values() if c.email]
    assert sorted(emails) == ["ada@x.io"]


async def test_custom_fields_and_standard_aliases(uow: FakeUnitOfWork) -> None:
    r = await submit_form(
        uow,
        FormSubmission(
            "f", {"E-mail": "a@x.io", "first_name": "Ann", "Job Title": "CTO", "vip": True, "n": 3}
        ),
    )
    assert (r.contact.email, r.contact.first_name, r.contact.job_title) == ("a@x.io", "Ann", "CTO")
    assert r.contact.attributes == {"vip": True, "n": 3}


async def test_a_submission_without_email_always_creates(uow: FakeUnitOfWork) -> None:
    a = await submit_form(uow, submission(firstName="Ann"))
    b = await submit_form(uow, submission(firstName="Ann"))
    assert a.contact_created and b.contact_created
    assert a.lead_created and b.lead_created
    assert len(uow.db.contacts) == 2 and len(uow.db.leads) == 2


async def test_a_bad_email_is_invalid_with_its_path(uow: FakeUnitOfWork) -> None:
    with pytest.raises(Invalid) as info:
        await submit_form(uow, submission(email="not-an-email"))
    assert info.value.field == ["input", "fields", "email"]
    assert uow.db.contacts == {} and uow.db.leads == {}


async def test_the_path_names_the_submitted_key(uow: FakeUnitOfWork) -> None:
    with pytest.raises(Invalid) as info:
        await submit_form(uow, submission(**{"E-mail": "nope"}))
    assert info.value.field == ["input", "fields", "E-mail"]


@pytest.mark.parametrize("source", [LeadSource.MANUAL, LeadSource.IMPORT, LeadSource.OTHER])
async def test_a_source_that_is_not_a_form_is_invalid(
    uow: FakeUnitOfWork, source: LeadSource
) -> None:
    with pytest.raises(Invalid) as info:
        await submit_form(uow, FormSubmission("f", {"email": "a@x.io"}, source=source))
    assert info.value.field == ["input", "source"]
    assert "EVENT_REGISTRATION, LANDING_PAGE, LEAD_GEN_FORM" in info.value.message
    assert uow.db.contacts == {}


@pytest.mark.parametrize("form_id", ["", "   ", "x" * 201])
async def test_form_id_must_be_1_to_200_characters(uow: FakeUnitOfWork, form_id: str) -> None:
    with pytest.raises(Invalid) as info:
        await submit_form(uow, submission(form_id, email="a@x.io"))
    assert info.value.field == ["input", "formId"]


async def test_form_ids_are_trimmed(uow: FakeUnitOfWork) -> None:
    r = await submit_form(uow, submission("  fair  ", email="a@x.io"))
    assert r.lead is not None and r.lead.marketing_context == "fair"


async def test_several_bad_fields_are_reported_together(uow: FakeUnitOfWork) -> None:
    with pytest.raises(ValidationErrors) as info:
        await submit_form(
            uow,
            FormSubmission(
                " ",
                {"email": "nope", "firstName": True, "phone": ["555"], "x" * 101: 1, "deep": {}},
                source=LeadSource.MANUAL,
            ),
        )
    fields = [e.field for e in info.value.errors]
    assert fields == [
        ["input", "formId"],
        ["input", "source"],
        ["input", "fields", "email"],
        ["input", "fields", "firstName"],
        ["input", "fields", "phone"],
        ["input", "fields", "x" * 101],
        ["input", "fields", "deep"],
    ]
    assert all(isinstance(e, Invalid) for e in info.value.errors)
    assert uow.db.contacts == {} and uow.locks == []


async def test_a_too_long_topic_is_invalid(uow: FakeUnitOfWork) -> None:
    with pytest.raises(Invalid) as info:
        await submit_form(uow, FormSubmission("f", {"email": "a@x.io"}, topic="t" * 1001))
    assert info.value.field == ["input", "topic"]


async def test_fields_must_be_an_object(uow: FakeUnitOfWork) -> None:
    with pytest.raises(Invalid) as info:
        await submit_form(uow, FormSubmission("f", ["email"]))  # type: ignore[arg-type]
    assert info.value.field == ["input", "fields"]


async def test_locks_are_taken_before_matching(uow: FakeUnitOfWork) -> None:
    await submit_form(uow, submission(email="a@x.io", companyName="Northwind"))
    assert uow.locks[0].startswith("CONTACT:") or uow.locks[0].startswith("contact-email:")
    assert "contact-email:a@x.io" in uow.locks
    assert any(k.startswith("LEAD:") for k in uow.locks)


# ---------------------------------------------------------------- accounts


async def test_create_and_update_account(uow: FakeUnitOfWork) -> None:
    account = await create_account(
        uow, {"name": " Contoso ", "employeeCount": "1200", "attributes": {"tier": 1}}
    )
    assert (account.name, account.employee_count, account.attributes) == (
        "Contoso",
        1200,
        {"tier": 1},
    )
    updated = await update_account(uow, account.id, {"industry": "Pharma", "employeeCount": None})
    assert (updated.industry, updated.employee_count, updated.name) == ("Pharma", None, "Contoso")
    assert uow.db.accounts[account.id].industry == "Pharma"


async def test_account_name_is_required(uow: FakeUnitOfWork) -> None:
    with pytest.raises(Invalid) as info:
        await create_account(uow, {"name": "  "})
    assert info.value.field == ["input", "name"]
    account = await create_account(uow, {"name": "A"})
    with pytest.raises(Invalid):
        await update_account(uow, account.id, {"name": None})
    with pytest.raises(NotFound):
        await update_account(uow, 999, {"name": "B"})


async def test_account_errors_are_collected(uow: FakeUnitOfWork) -> None:
    with pytest.raises(ValidationErrors) as info:
        await create_account(uow, {"employeeCount": -1, "attributes": [1]})
    assert [e.field for e in info.value.errors] == [
        ["input", "employeeCount"],
        ["input", "attributes"],
        ["input", "name"],
    ]


async def test_find_or_create_account(uow: FakeUnitOfWork) -> None:
    a = await find_or_create_account(uow, "Northwind")
    b = await find_or_create_account(uow, "NORTHWIND")
    assert a.id == b.id and len(uow.db.accounts) == 1


# ---------------------------------------------------------------- contacts


async def test_create_contact(uow: FakeUnitOfWork) -> None:
    account = await create_account(uow, {"name": "Contoso"})
    contact = await create_contact(
        uow, {"email": "Lena@Contoso.example", "firstName": "Lena", "accountId": account.id}
    )
    assert (contact.email, contact.account_id) == ("lena@contoso.example", account.id)
    assert uow.db.contacts[contact.id].email == "lena@contoso.example"


async def test_create_contact_with_a_taken_email_is_a_duplicate(uow: FakeUnitOfWork) -> None:
    await create_contact(uow, {"email": "lena@contoso.example"})
    with pytest.raises(Duplicate) as info:
        await create_contact(uow, {"email": " LENA@contoso.example "})
    assert info.value.field == ["input", "email"]
    assert info.value.code == "DUPLICATE"
    assert len(uow.db.contacts) == 1


async def test_contacts_without_email_are_never_duplicates(uow: FakeUnitOfWork) -> None:
    await create_contact(uow, {"firstName": "A"})
    await create_contact(uow, {"firstName": "A"})
    assert len(uow.db.contacts) == 2


async def test_create_contact_with_an_unknown_account(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound) as info:
        await create_contact(uow, {"email": "a@x.io", "accountId": 404})
    assert info.value.field == ["input", "accountId"]


async def test_update_contact(uow: FakeUnitOfWork) -> None:
    a = await create_contact(uow, {"email": "a@x.io", "firstName": "Ann"})
    b = await create_contact(uow, {"email": "b@x.io"})
    with pytest.raises(Duplicate):
        await update_contact(uow, b.id, {"email": "A@x.io"})
    same = await update_contact(uow, a.id, {"email": "A@X.IO", "lastName": "Berg"})
    assert (same.email, same.first_name, same.last_name) == ("a@x.io", "Ann", "Berg")
    cleared = await update_contact(uow, a.id, {"firstName": None})
    assert cleared.first_name is None
    with pytest.raises(NotFound):
        await update_contact(uow, 999, {})


# ---------------------------------------------------------------- leads


async def test_create_lead_with_a_contact_takes_the_contacts_account(uow: FakeUnitOfWork) -> None:
    account = await create_account(uow, {"name": "Contoso"})
    contact = await create_contact(uow, {"email": "a@x.io", "accountId": account.id})
    lead = await create_lead(uow, {"topic": "Fleet robots", "contactId": contact.id})
    assert (lead.contact_id, lead.account_id) == (contact.id, account.id)
    assert lead.source is LeadSource.MANUAL
    assert uow.db.leads[lead.id].account_id == account.id


async def test_an_explicit_account_wins_over_the_contacts(uow: FakeUnitOfWork) -> None:
    mine = await create_account(uow, {"name": "Mine"})
    theirs = await create_account(uow, {"name": "Theirs"})
    contact = await create_contact(uow, {"email": "a@x.io", "accountId": theirs.id})
    lead = await create_lead(uow, {"topic": "t", "contactId": contact.id, "accountId": mine.id})
    assert lead.account_id == mine.id
    unlinked = await create_lead(uow, {"topic": "t", "contactId": contact.id, "accountId": None})
    assert unlinked.account_id is None


async def test_create_lead_checks_its_links_and_topic(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound) as info:
        await create_lead(uow, {"topic": "t", "contactId": 404})
    assert info.value.field == ["input", "contactId"]
    with pytest.raises(NotFound) as info:
        await create_lead(uow, {"topic": "t", "accountId": 404})
    assert info.value.field == ["input", "accountId"]
    with pytest.raises(Invalid) as bad:
        await create_lead(uow, {"topic": " "})
    assert bad.value.field == ["input", "topic"]
    assert uow.db.leads == {}


async def test_update_lead(uow: FakeUnitOfWork) -> None:
    lead = await create_lead(uow, {"topic": "t", "source": LeadSource.EVENT_REGISTRATION})
    assert lead.source is LeadSource.EVENT_REGISTRATION
    account = await create_account(uow, {"name": "Contoso"})
    contact = await create_contact(uow, {"email": "a@x.io", "accountId": account.id})
    updated = await update_lead(uow, lead.id, {"jobTitle": "CTO", "contactId": contact.id})
    assert (updated.job_title, updated.contact_id, updated.account_id) == (
        "CTO",
        contact.id,
        account.id,
    )
    assert updated.source is LeadSource.EVENT_REGISTRATION  # kept without a new source
    with pytest.raises(Invalid):
        await update_lead(uow, lead.id, {"topic": ""})
    with pytest.raises(NotFound):
        await update_lead(uow, 999, {"topic": "x"})


# ---------------------------------------------------------------- matching strategies


async def test_create_strategy_checks_it(uow: FakeUnitOfWork) -> None:
    created = await create_strategy(uow, MatchingStrategy(" phone ", C, ["phone"], ["b", " a"]))
    assert (created.name, created.form_ids) == ("phone", ["a", "b"])
    assert uow.db.strategies[created.id].form_ids == ["a", "b"]
    with pytest.raises(Invalid):
        await create_strategy(uow, MatchingStrategy("bad", C, ["shoeSize"]))


async def test_the_last_default_cannot_stop_being_a_default(uow: FakeUnitOfWork) -> None:
    id_ = default_id(uow, C)
    with pytest.raises(Conflict) as info:
        await update_strategy(uow, id_, MatchingStrategy("x", C, ["email"], [], False))
    assert info.value.field == ["input", "isDefault"]
    with pytest.raises(Conflict):  # moving it to the other entity removes it as well
        await update_strategy(uow, id_, MatchingStrategy("x", L, ["email"], [], True))
    assert uow.db.strategies[id_].is_default


async def test_the_last_default_cannot_be_deleted(uow: FakeUnitOfWork) -> None:
    for entity in (C, L):
        id_ = default_id(uow, entity)
        with pytest.raises(Conflict) as info:
            await delete_strategy(uow, id_)
        assert info.value.field == ["id"]
        assert id_ in uow.db.strategies


async def test_a_default_can_go_once_there_is_another(uow: FakeUnitOfWork) -> None:
    first = default_id(uow, C)
    other = await create_strategy(uow, MatchingStrategy("phone", C, ["phone"], [], True))
    updated = await update_strategy(uow, first, MatchingStrategy("email", C, ["email"], [], False))
    assert updated.id == first and not uow.db.strategies[first].is_default
    with pytest.raises(Conflict):
        await delete_strategy(uow, other.id)  # now the last default
    assert await delete_strategy(uow, first) == first
    assert first not in uow.db.strategies


async def test_non_default_strategies_can_be_changed_and_deleted(uow: FakeUnitOfWork) -> None:
    s = await create_strategy(uow, MatchingStrategy("fair", C, ["phone"], ["fair"]))
    changed = await update_strategy(uow, s.id, MatchingStrategy("fair", L, ["phone"], ["expo"]))
    assert uow.db.strategies[s.id].entity is L and changed.form_ids == ["expo"]
    assert await delete_strategy(uow, s.id) == s.id
    assert "matching-strategies" in uow.locks


async def test_unknown_strategies_are_not_found(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound):
        await update_strategy(uow, 999, MatchingStrategy("x", C, ["email"]))
    with pytest.raises(NotFound):
        await delete_strategy(uow, 999)


async def test_update_strategy_checks_the_new_definition(uow: FakeUnitOfWork) -> None:
    id_ = default_id(uow, C)
    with pytest.raises(Invalid):
        await update_strategy(uow, id_, MatchingStrategy("x", C, [], [], True))
    assert uow.db.strategies[id_].fields == ["email"]


# ---------------------------------------------------------------- settings


async def test_set_feature(uow: FakeUnitOfWork) -> None:
    assert not await uow.settings.feature_enabled(Feature.LEAD_MANAGEMENT)
    await set_feature(uow, Feature.LEAD_MANAGEMENT, True)
    assert await uow.settings.feature_enabled(Feature.LEAD_MANAGEMENT)


def test_fake_database_is_seeded_with_the_defaults() -> None:
    db = FakeDatabase.seeded()
    assert sorted((s.entity.value, s.is_default) for s in db.strategies.values()) == [
        ("CONTACT", True),
        ("LEAD", True),
    ]
    assert (db.accounts, db.contacts, db.leads) == ({}, {}, {})

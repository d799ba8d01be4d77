"""domain.importing: column plans, CSV reading, and importing chunks into the fake store."""

from __future__ import annotations

from typing import Any

import pytest

import domain.importing as importing
from domain.errors import Invalid
from domain.fields import ACCOUNT_FIELDS, CONTACT_FIELDS, LEAD_FIELDS
from domain.importing import (
    ImportEntity,
    ImportResult,
    Row,
    chunks,
    column_plan,
    import_chunk,
    read_csv,
)
from domain.model import Account, Contact, Lead, LeadSource, LeadState
from domain.services import canonical_field
from tests.unit.fakes import FakeUnitOfWork

CONTACT, LEAD, ACCOUNT = ImportEntity.CONTACT, ImportEntity.LEAD, ImportEntity.ACCOUNT


# ---------------------------------------------------------------- canonical_field


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("firstName", "firstName"),
        ("First Name", "firstName"),
        ("first_name", "firstName"),
        ("FIRST-NAME", "firstName"),
        (" first name ", "firstName"),
        ("email", "email"),
        ("E-mail", "email"),
        ("E_Mail", "email"),
        ("Job Title", "jobTitle"),
        ("title", "jobTitle"),
        ("Company", "companyName"),
        ("company name", "companyName"),
        ("Account Name", "companyName"),
        ("marketing_context", "marketingContext"),
        ("Country", "country"),
        ("Email Address", None),
        ("Tier", None),
        ("", None),
    ],
)
def test_canonical_field(key: str, expected: str | None) -> None:
    assert canonical_field(key) == expected


# ---------------------------------------------------------------- column_plan


def test_columns_named_like_fields_map_themselves() -> None:
    header = ["E-mail", "First Name", "last_name", "Company", "Tier", "attributes.vip"]
    assert column_plan(CONTACT, header, None) == {
        0: "email",
        1: "firstName",
        2: "lastName",
        3: "companyName",
        5: "attributes.vip",
    }


def test_lead_columns() -> None:
    header = ["Topic", "Email", "Company", "Country", "marketing context"]
    # country is a contact field, not a lead field
    assert column_plan(LEAD, header, None) == {
        0: "topic",
        1: "email",
        2: "companyName",
        4: "marketingContext",
    }


def test_account_columns() -> None:
    header = ["Account Name", "employee_count", "Annual Revenue", "Industry", "Email"]
    assert column_plan(ACCOUNT, header, None) == {
        0: "name",
        1: "employeeCount",
        2: "annualRevenue",
        3: "industry",
    }
    assert column_plan(ACCOUNT, ["Company"], None) == {0: "name"}
    assert column_plan(ACCOUNT, ["company_name"], None) == {0: "name"}


def test_contact_column_plans_only_reach_contact_fields() -> None:
    header = ["topic", "marketingContext", "email"]
    assert column_plan(CONTACT, header, None) == {2: "email"}


def test_an_explicit_mapping_wins_over_the_column_name() -> None:
    header = ["Email", "Mail", "Tier"]
    mapping = {"Email": "attributes.raw_email", "Mail": "email", "Tier": "attributes.tier"}
    assert column_plan(CONTACT, header, mapping) == {
        0: "attributes.raw_email",
        1: "email",
        2: "attributes.tier",
    }


def test_mapping_targets_are_read_like_column_names() -> None:
    assert column_plan(
        CONTACT, ["Mail", "Vorname"], {"Mail": "E-mail", "Vorname": "first name"}
    ) == {
        0: "email",
        1: "firstName",
    }
    assert column_plan(ACCOUNT, ["Firma"], {"Firma": "companyName"}) == {0: "name"}


@pytest.mark.parametrize("target", [None, ""])
def test_an_empty_mapping_target_skips_the_column(target: Any) -> None:
    header = ["Email", "First Name"]
    assert column_plan(CONTACT, header, {"Email": target}) == {1: "firstName"}


def test_an_unknown_mapping_target_names_the_allowed_fields() -> None:
    with pytest.raises(Invalid) as info:
        column_plan(CONTACT, ["Email", "Tier"], {"Tier": "tier"})
    error = info.value
    assert error.field == ["input", "mapping", "Tier"]
    assert "'tier' is not a CONTACT field" in error.message
    for name in [*CONTACT_FIELDS, "companyName", "attributes.<key>"]:
        assert name in error.message


@pytest.mark.parametrize(
    ("entity", "target", "fields"),
    [
        (LEAD, "country", LEAD_FIELDS),
        (ACCOUNT, "email", ACCOUNT_FIELDS),
        (CONTACT, "attributes.", CONTACT_FIELDS),
        (CONTACT, 5, CONTACT_FIELDS),
    ],
)
def test_mapping_targets_must_be_fields_of_the_entity(
    entity: ImportEntity, target: Any, fields: dict[str, Any]
) -> None:
    with pytest.raises(Invalid) as info:
        column_plan(entity, ["col"], {"col": target})
    assert info.value.field == ["input", "mapping", "col"]
    assert f"not a {entity.value} field" in info.value.message
    assert all(name in info.value.message for name in fields)


def test_a_mapping_naming_a_missing_column_is_invalid() -> None:
    with pytest.raises(Invalid) as info:
        column_plan(CONTACT, ["Email"], {"Mail": "email"})
    assert info.value.field == ["input", "mapping", "Mail"]
    assert "no column 'Mail'" in info.value.message


def test_a_file_without_mapped_columns_is_invalid() -> None:
    with pytest.raises(Invalid) as info:
        column_plan(CONTACT, ["Tier", "Notes"], None)
    assert info.value.field == ["input", "mapping"]
    with pytest.raises(Invalid):
        column_plan(CONTACT, ["Email"], {"Email": None})


def test_two_columns_for_one_field_are_invalid() -> None:
    with pytest.raises(Invalid, match="same field") as info:
        column_plan(CONTACT, ["Email", "E-mail"], None)
    assert info.value.field == ["input", "mapping"]
    with pytest.raises(Invalid, match="same field"):
        column_plan(CONTACT, ["A", "B"], {"A": "email", "B": "E-mail"})


def test_the_mapping_must_be_an_object() -> None:
    with pytest.raises(Invalid, match="JSON object") as info:
        column_plan(CONTACT, ["Email"], ["Email"])  # type: ignore[arg-type]
    assert info.value.field == ["input", "mapping"]


# ---------------------------------------------------------------- read_csv


def test_read_csv_numbers_data_rows_from_one() -> None:
    plan, rows = read_csv("Email,First Name\na@x.io,Ann\nb@x.io,Bo\n", CONTACT, None)
    assert plan == {0: "email", 1: "firstName"}
    assert list(rows) == [
        Row(1, {"email": "a@x.io", "firstName": "Ann"}),
        Row(2, {"email": "b@x.io", "firstName": "Bo"}),
    ]


def test_read_csv_strips_a_byte_order_mark_and_header_spaces() -> None:
    plan, rows = read_csv(
        "\ufeff Email , Tier\r\na@x.io,gold\r\n", CONTACT, {"Tier": "attributes.tier"}
    )
    assert plan == {0: "email", 1: "attributes.tier"}
    assert list(rows) == [Row(1, {"email": "a@x.io", "attributes.tier": "gold"})]


@pytest.mark.parametrize("text", ["", "\ufeff"])
def test_an_empty_csv_is_invalid(text: str) -> None:
    with pytest.raises(Invalid, match="empty") as info:
        read_csv(text, CONTACT, None)
    assert info.value.field == ["input", "csv"]


def test_a_header_only_csv_has_no_rows() -> None:
    plan, rows = read_csv("email\n", CONTACT, None)
    assert plan == {0: "email"}
    assert list(rows) == []


def test_short_long_blank_and_quoted_rows() -> None:
    text = 'email,first name\na@x.io\n\n"b@x.io","Bo\nline two",extra\nc@x.io,Cy'
    _, rows = read_csv(text, CONTACT, None)
    assert list(rows) == [
        Row(1, {"email": "a@x.io"}),  # short: the missing cell is absent
        Row(2, {}),  # blank line
        Row(3, {"email": "b@x.io", "firstName": "Bo\nline two"}),  # one record, two lines
        Row(4, {"email": "c@x.io", "firstName": "Cy"}),  # no trailing newline
    ]


def test_an_unreadable_line_is_reported_and_reading_goes_on() -> None:
    text = "email,first name\na@x.io,Ann\n" + "x" * 200_000 + ",y\nc@x.io,Cy\n"
    _, rows = read_csv(text, CONTACT, None)
    got = list(rows)
    assert [r.number for r in got] == [1, 2, 3]
    assert "__error__" in got[1].values and "unreadable line" in got[1].values["__error__"]
    assert got[2] == Row(3, {"email": "c@x.io", "firstName": "Cy"})


def test_a_csv_over_the_size_limit_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "MAX_CSV_BYTES", 10)
    with pytest.raises(Invalid, match="larger than") as info:
        read_csv("email\na@x.io\n", CONTACT, None)
    assert info.value.field == ["input", "csv"]


def test_read_csv_checks_the_plan_before_reading_rows() -> None:
    with pytest.raises(Invalid) as info:
        read_csv("Notes\nhello\n", CONTACT, None)
    assert info.value.field == ["input", "mapping"]


def test_chunks() -> None:
    rows = [Row(i, {}) for i in range(1, 6)]
    assert [[r.number for r in c] for c in chunks(iter(rows), 2)] == [[1, 2], [3, 4], [5]]
    assert list(chunks(iter([]), 2)) == []


# ---------------------------------------------------------------- import_chunk (fake store)


def rows_of(text: str, entity: ImportEntity, mapping: dict[str, Any] | None = None) -> list[Row]:
    _, rows = read_csv(text, entity, mapping)
    return list(rows)


async def test_importing_contacts_creates_matches_and_fills() -> None:
    uow = FakeUnitOfWork()
    existing, _ = await uow.contacts.add(Contact(email="ann@x.io", first_name="Ann"))
    text = (
        "email,first name,last name,company,tier\n"
        "ANN@x.io,Annie,Smith,Northwind,gold\n"  # matches: fills last name, links account
        "bo@x.io,Bo,,northwind,\n"  # new, same account (case-insensitive)
        "bo@x.io,,Berg,,\n"  # same new contact again: filled, not duplicated
        "not-an-email,X,,,\n"  # bad row
        ",,,,\n"  # nothing: skipped
    )
    result = await import_chunk(uow, CONTACT, rows_of(text, CONTACT, {"tier": "attributes.tier"}))
    assert (result.created, result.updated, result.skipped, result.failed) == (1, 2, 1, 1)
    assert result.errors == [(4, "'not-an-email' is not a valid email address")]
    contacts = {c.email: c for c in uow.db.contacts.values()}
    assert set(contacts) == {"ann@x.io", "bo@x.io"}
    ann, bo = contacts["ann@x.io"], contacts["bo@x.io"]
    assert ann.id == existing.id
    assert (ann.first_name, ann.last_name, ann.attributes) == ("Ann", "Smith", {"tier": "gold"})
    assert (bo.first_name, bo.last_name) == ("Bo", "Berg")
    [account] = uow.db.accounts.values()
    assert account.name.lower() == "northwind"
    assert ann.account_id == bo.account_id == account.id


async def test_imported_attributes_have_the_limits_of_the_api() -> None:
    """Attribute names of 1 to 100 characters and at most 64 KiB of attributes per record, as
    createContact checks them: a row that breaks them fails and changes nothing."""
    from domain.fields import MAX_ATTRIBUTES_BYTES

    with pytest.raises(Invalid):
        read_csv("email,n\n", CONTACT, {"n": "attributes." + "k" * 101})
    uow = FakeUnitOfWork()
    half = "x" * (MAX_ATTRIBUTES_BYTES // 2 + 10)
    text = f"email,notes,more\nbig@x.io,{'y' * (MAX_ATTRIBUTES_BYTES + 1)},\nok@x.io,{half},\nok@x.io,,{half}\n"
    mapping = {"notes": "attributes.notes", "more": "attributes.more"}
    result = await import_chunk(uow, CONTACT, rows_of(text, CONTACT, mapping))
    assert (result.created, result.updated, result.failed) == (1, 0, 2)
    assert [row for row, _ in result.errors] == [1, 3]
    assert all("larger than" in message for _, message in result.errors)
    [contact] = uow.db.contacts.values()
    assert contact.email == "ok@x.io" and contact.attributes == {"notes": half}


async def test_a_new_account_is_named_as_its_first_row_spells_it() -> None:
    # _accounts_by_name builds the missing names from a set, so when rows spell a new company
    # differently the account gets whichever spelling the (hash-seeded) set yields last.
    spellings = ["Northwind"] + [
        "".join(c.upper() if (i >> k) & 1 else c for k, c in enumerate("northwind"))
        for i in range(1, 40)
    ]
    text = "email,company\n" + "".join(f"u{i}@x.io,{s}\n" for i, s in enumerate(spellings))
    uow = FakeUnitOfWork()
    result = await import_chunk(uow, CONTACT, rows_of(text, CONTACT))
    assert result.created == len(spellings)
    [account] = uow.db.accounts.values()
    assert account.name == "Northwind"


async def test_importing_leads_links_contacts_and_matches_open_leads() -> None:
    uow = FakeUnitOfWork()
    contact, _ = await uow.contacts.add(Contact(email="ann@x.io", account_id=None))
    open_lead = await uow.leads.add(Lead("Robots", email="ann@x.io", marketing_context="fair"))
    await uow.leads.add(
        Lead("Old", email="ann@x.io", marketing_context="expo", state=LeadState.DISQUALIFIED)
    )
    text = (
        "topic,email,marketing context,job title\n"
        "Robots!,ann@x.io,fair,CTO\n"  # matches the open lead
        "Again,ann@x.io,expo,\n"  # the matching lead is closed: a new lead
        ",bo@x.io,fair,\n"  # no topic
    )
    result = await import_chunk(uow, LEAD, rows_of(text, LEAD))
    assert (result.created, result.updated, result.failed) == (1, 1, 1)
    assert result.errors == [(3, "topic is required")]
    stored = uow.db.leads[open_lead.id]
    assert (stored.topic, stored.job_title, stored.contact_id) == ("Robots", "CTO", contact.id)
    [new] = [lead for lead in uow.db.leads.values() if lead.topic == "Again"]
    assert new.source is LeadSource.IMPORT
    assert new.contact_id == contact.id


async def test_importing_accounts_matches_names_case_insensitively() -> None:
    uow = FakeUnitOfWork()
    await uow.accounts.add(Account("Northwind", industry=None))
    text = (
        "name,industry,employee count\n"
        "NORTHWIND,Retail,\n"
        "Contoso,Pharma,1200\n"
        "contoso,,5\n"
        ",Nothing,\n"
        "Bad,,-5\n"
    )
    result = await import_chunk(uow, ACCOUNT, rows_of(text, ACCOUNT))
    assert (result.created, result.updated, result.skipped, result.failed) == (1, 1, 1, 2)
    assert [n for n, _ in result.errors] == [4, 5]
    by_name = {a.name: a for a in uow.db.accounts.values()}
    assert set(by_name) == {"Northwind", "Contoso"}
    assert by_name["Northwind"].industry == "Retail"
    assert by_name["Contoso"].employee_count == 1200


def test_import_results_add_up() -> None:
    total = ImportResult(1, 2, 3, 4, [(1, "a")])
    total.add(ImportResult(1, 1, 1, 1, [(9, "b")]))
    assert total == ImportResult(2, 3, 4, 5, [(1, "a"), (9, "b")])

"""Form capture with matching strategies, and strategy management."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Api

SUBMIT = """mutation($i: FormSubmissionInput!) { submitForm(input: $i) {
  contactCreated leadCreated
  contact { id email firstName lastName jobTitle attributes account { id name } }
  lead { id topic email marketingContext source firstName companyName contact { id } account { id } }
  userErrors { code field message } } }"""


async def submit(api: Api, form_id: str = "spring-webinar", **fields: Any) -> dict[str, Any]:
    extra = fields.pop("_input", {})
    data = await api(SUBMIT, {"i": {"formId": form_id, "fields": fields, **extra}})
    return data["submitForm"]


async def test_first_submission_creates_contact_lead_and_account(api: Api) -> None:
    r = await submit(
        api, email=" Ada@Example.com", firstName="Ada", companyName="Northwind", newsletter="yes"
    )
    assert r["userErrors"] == []
    assert (r["contactCreated"], r["leadCreated"]) == (True, True)
    contact, lead = r["contact"], r["lead"]
    assert contact["email"] == "ada@example.com"
    assert contact["attributes"] == {"newsletter": "yes"}
    assert contact["account"]["name"] == "Northwind"
    assert lead["marketingContext"] == "spring-webinar"
    assert lead["source"] == "LANDING_PAGE"
    assert lead["contact"]["id"] == contact["id"]
    assert lead["account"]["id"] == contact["account"]["id"]
    assert lead["companyName"] == "Northwind"


async def test_resubmission_matches_and_fills_only_empty_fields(api: Api) -> None:
    first = await submit(api, email="ada@example.com", firstName="Ada")
    again = await submit(
        api, email="ADA@example.com ", firstName="Adaline", lastName="Rossi", jobTitle="CTO"
    )
    assert (again["contactCreated"], again["leadCreated"]) == (False, False)
    assert again["contact"]["id"] == first["contact"]["id"]
    assert again["lead"]["id"] == first["lead"]["id"]
    assert again["contact"]["firstName"] == "Ada"  # not overwritten
    assert again["contact"]["lastName"] == "Rossi"  # filled
    assert again["contact"]["jobTitle"] == "CTO"


async def test_another_form_gives_the_same_contact_a_second_lead(api: Api) -> None:
    a = await submit(api, "pricing-page", email="x@y.io")
    b = await submit(
        api, "ebook", email="x@y.io", _input={"source": "LEAD_GEN_FORM", "topic": "E-book"}
    )
    assert b["contactCreated"] is False and b["leadCreated"] is True
    assert b["lead"]["id"] != a["lead"]["id"]
    assert b["lead"]["topic"] == "E-book"
    assert b["lead"]["source"] == "LEAD_GEN_FORM"
    data = await api(
        "query($id: ID!) { contact(id: $id) { leads { totalCount } } }", {"id": a["contact"]["id"]}
    )
    assert data["contact"]["leads"]["totalCount"] == 2


async def test_create_lead_false_only_captures_the_contact(api: Api) -> None:
    r = await submit(api, email="only@contact.io", _input={"createLead": False})
    assert r["contactCreated"] is True
    assert r["lead"] is None and r["leadCreated"] is False


async def test_company_matches_existing_account_case_insensitively(api: Api) -> None:
    await api('mutation { createAccount(input: {name: "Fabrikam Robotics"}) { account { id } } }')
    r = await submit(api, email="c@f.io", companyName="fabrikam robotics")
    assert r["contact"]["account"]["name"] == "Fabrikam Robotics"
    assert (await api("{ accounts { totalCount } }"))["accounts"]["totalCount"] == 1


@pytest.mark.parametrize(
    ("inp", "field"),
    [
        ({"formId": "f", "fields": {"email": "nope"}}, ["input", "fields", "email"]),
        ({"formId": " ", "fields": {"email": "a@b.io"}}, ["input", "formId"]),
        ({"formId": "f", "fields": {"email": "a@b.io"}, "source": "MANUAL"}, ["input", "source"]),
        ({"formId": "f", "fields": ["a"]}, ["input", "fields"]),
        ({"formId": "f", "fields": {"x": {"nested": 1}}}, ["input", "fields", "x"]),
    ],
)
async def test_bad_submissions_change_nothing(
    api: Api, inp: dict[str, Any], field: list[str]
) -> None:
    data = await api(SUBMIT, {"i": inp})
    errors = data["submitForm"]["userErrors"]
    assert errors and errors[0]["code"] == "INVALID"
    assert errors[0]["field"] == field
    counts = await api("{ contacts { totalCount } leads { totalCount } }")
    assert counts == {"contacts": {"totalCount": 0}, "leads": {"totalCount": 0}}


async def test_several_bad_fields_are_all_reported(api: Api) -> None:
    data = await api(
        SUBMIT,
        {"i": {"formId": "f", "fields": {"email": "bad", "firstName": ["x"]}, "source": "IMPORT"}},
    )
    fields = sorted(tuple(e["field"]) for e in data["submitForm"]["userErrors"])
    assert fields == [
        ("input", "fields", "email"),
        ("input", "fields", "firstName"),
        ("input", "source"),
    ]


async def test_twenty_simultaneous_submissions_make_one_contact_and_one_lead(api: Api) -> None:
    results = await asyncio.gather(
        *(submit(api, email="race@x.io", firstName=f"N{i}") for i in range(20))
    )
    assert all(r["userErrors"] == [] for r in results)
    assert len({r["contact"]["id"] for r in results}) == 1
    assert len({r["lead"]["id"] for r in results}) == 1
    assert sum(r["contactCreated"] for r in results) == 1
    assert sum(r["leadCreated"] for r in results) == 1
    counts = await api("{ contacts { totalCount } leads { totalCount } }")
    assert counts == {"contacts": {"totalCount": 1}, "leads": {"totalCount": 1}}


STRATEGY = "id name entity fields formIds isDefault"


async def create_strategy(api: Api, **inp: Any) -> dict[str, Any]:
    data = await api(
        f"mutation($i: MatchingStrategyInput!) {{ createMatchingStrategy(input: $i) {{ matchingStrategy {{ {STRATEGY} }} userErrors {{ code field message }} }} }}",
        {"i": inp},
    )
    return data["createMatchingStrategy"]


async def test_defaults_are_seeded(api: Api) -> None:
    data = await api(f"{{ matchingStrategies {{ {STRATEGY} }} }}")
    defaults = {
        (s["entity"], tuple(s["fields"])) for s in data["matchingStrategies"] if s["isDefault"]
    }
    assert defaults == {("CONTACT", ("email",)), ("LEAD", ("email", "marketingContext"))}
    leads_only = await api(f"{{ matchingStrategies(entity: LEAD) {{ {STRATEGY} }} }}")
    assert {s["entity"] for s in leads_only["matchingStrategies"]} == {"LEAD"}


async def test_form_specific_strategy_is_used_for_its_form(api: Api) -> None:
    created = await create_strategy(
        api,
        name="Phone for fair",
        entity="CONTACT",
        fields=["phone", "lastName"],
        formIds=["fair", " fair "],
    )
    assert created["userErrors"] == []
    assert created["matchingStrategy"]["formIds"] == ["fair"]
    # Same phone + last name, different email: the fair's strategy matches the existing contact.
    a = await submit(
        api,
        "fair",
        email="p1@x.io",
        phone="+370 600",
        lastName="Jonaitis",
        _input={"source": "EVENT_REGISTRATION"},
    )
    b = await submit(
        api,
        "fair",
        email="p2@x.io",
        phone="+370 600",
        lastName="JONAITIS",
        _input={"source": "EVENT_REGISTRATION"},
    )
    assert b["contactCreated"] is False
    assert b["contact"]["id"] == a["contact"]["id"]
    # Other forms keep using the default (email): a new contact.
    c = await submit(api, "web", email="p3@x.io", phone="+370 600", lastName="Jonaitis")
    assert c["contactCreated"] is True


async def test_strategy_validation(api: Api) -> None:
    bad = await create_strategy(api, name="x", entity="LEAD", fields=["shoeSize"])
    assert bad["userErrors"][0]["code"] == "INVALID"
    assert "shoeSize" in bad["userErrors"][0]["message"]
    assert "marketingContext" in bad["userErrors"][0]["message"]
    empty = await create_strategy(api, name="x", entity="LEAD", fields=[])
    assert empty["userErrors"][0]["field"] == ["input", "fields"]


async def test_last_default_cannot_be_deleted_or_demoted(api: Api) -> None:
    data = await api(f"{{ matchingStrategies(entity: CONTACT) {{ {STRATEGY} }} }}")
    default_id = data["matchingStrategies"][0]["id"]
    deleted = await api(
        "mutation($id: ID!) { deleteMatchingStrategy(id: $id) { deletedId userErrors { code } } }",
        {"id": default_id},
    )
    assert deleted["deleteMatchingStrategy"] == {
        "deletedId": None,
        "userErrors": [{"code": "CONFLICT"}],
    }
    demoted = await api(
        'mutation($id: ID!) { updateMatchingStrategy(id: $id, input: {name: "n", entity: CONTACT, fields: ["email"], isDefault: false}) { userErrors { code } } }',
        {"id": default_id},
    )
    assert demoted["updateMatchingStrategy"]["userErrors"] == [{"code": "CONFLICT"}]
    # With a second default, the first may go.
    second = await create_strategy(
        api, name="By phone", entity="CONTACT", fields=["phone"], isDefault=True
    )
    deleted = await api(
        "mutation($id: ID!) { deleteMatchingStrategy(id: $id) { deletedId userErrors { code } } }",
        {"id": default_id},
    )
    assert deleted["deleteMatchingStrategy"]["deletedId"] == default_id
    node = await api(
        "query($id: ID!) { node(id: $id) { ... on MatchingStrategy { name } } }",
        {"id": second["matchingStrategy"]["id"]},
    )
    assert node["node"]["name"] == "By phone"
    missing = await api(
        "mutation($id: ID!) { deleteMatchingStrategy(id: $id) { userErrors { code } } }",
        {"id": default_id},
    )
    assert missing["deleteMatchingStrategy"]["userErrors"] == [{"code": "NOT_FOUND"}]


async def test_update_strategy(api: Api) -> None:
    s = (await create_strategy(api, name="a", entity="LEAD", fields=["email"]))["matchingStrategy"]
    data = await api(
        f'mutation($id: ID!) {{ updateMatchingStrategy(id: $id, input: {{name: "b", entity: LEAD, fields: ["email", "topic"], formIds: ["f"]}}) {{ matchingStrategy {{ {STRATEGY} }} userErrors {{ code }} }} }}',
        {"id": s["id"]},
    )
    updated = data["updateMatchingStrategy"]["matchingStrategy"]
    assert (updated["name"], updated["fields"], updated["formIds"]) == (
        "b",
        ["email", "topic"],
        ["f"],
    )


async def test_strategy_match_never_steals_another_contacts_email(api: Api) -> None:
    await create_strategy(
        api, name="Phone", entity="CONTACT", fields=["phone"], formIds=["call-back"]
    )
    no_email = await submit(api, "call-back", phone="+39 1", _input={"createLead": False})
    await submit(api, "web", email="taken@x.io")
    r = await submit(api, "call-back", phone="+39 1", email="taken@x.io")
    assert r["userErrors"] == []
    assert r["contact"]["id"] == no_email["contact"]["id"]
    assert r["contact"]["email"] is None  # taken@x.io stays with its owner
    assert (await api("{ contacts { totalCount } }"))["contacts"]["totalCount"] == 2

"""importRecords: CSV with mapping, matching, per-row errors."""

from __future__ import annotations

from typing import Any

from domain.roles import Role
from tests.conftest import Api

IMPORT = """mutation($i: ImportInput!) { importRecords(input: $i) {
  created updated skipped failed errors { row message } userErrors { code field message } } }"""


async def run_import(
    api: Api, entity: str, csv: str, mapping: dict[str, Any] | None = None
) -> dict[str, Any]:
    data = await api(
        IMPORT, {"i": {"entity": entity, "csv": csv, "mapping": mapping}}, role=Role.MARKETER
    )
    return data["importRecords"]


async def test_contacts_import_with_matching_and_row_errors(api: Api) -> None:
    await api(
        'mutation { createContact(input: {email: "old@x.io", firstName: "Old"}) { contact { id } } }'
    )
    csv = (
        "E-mail,First Name,Surname,Company,Tier\n"
        "new@x.io,New,Person,Contoso,gold\n"
        "OLD@x.io,Changed,Known,,silver\n"
        "broken-email,Bad,Row,Contoso,\n"
        ",,,,\n"
        "new@x.io,Dup,Again,Contoso,\n"
    )
    mapping = {"Surname": "lastName", "Tier": "attributes.tier"}
    r = await run_import(api, "CONTACT", csv, mapping)
    assert r["userErrors"] == []
    # The repeated new@x.io row matches the contact created by row 1 and has nothing new.
    assert (r["created"], r["updated"], r["skipped"], r["failed"]) == (1, 1, 2, 1)
    assert r["errors"][0]["row"] == 3
    assert "broken-email" in r["errors"][0]["message"]
    data = await api(
        '{ contacts(search: "x.io") { totalCount edges { node { email firstName lastName attributes account { name } } } } }'
    )
    by_email = {e["node"]["email"]: e["node"] for e in data["contacts"]["edges"]}
    assert data["contacts"]["totalCount"] == 2
    assert by_email["old@x.io"]["firstName"] == "Old"  # existing values are kept
    assert by_email["old@x.io"]["lastName"] == "Known"  # empty ones are filled
    assert by_email["new@x.io"]["attributes"] == {"tier": "gold"}
    assert by_email["new@x.io"]["account"]["name"] == "Contoso"
    # The failed row wrote nothing: no contact, and Contoso exists once.
    assert (await api("{ accounts { totalCount } }"))["accounts"]["totalCount"] == 1


async def test_leads_import_links_contacts_and_requires_topic(api: Api) -> None:
    await api('mutation { createContact(input: {email: "l@x.io"}) { contact { id } } }')
    csv = "topic,email,marketing context\nFleet,l@x.io,fair\n,nobody@x.io,fair\nFleet,l@x.io,fair\n"
    r = await run_import(api, "LEAD", csv)
    assert (r["created"], r["updated"], r["skipped"], r["failed"]) == (1, 0, 1, 1)
    assert r["errors"] == [{"row": 2, "message": "topic is required"}]
    data = await api("{ leads { edges { node { source marketingContext contact { email } } } } }")
    assert data["leads"]["edges"] == [
        {"node": {"source": "IMPORT", "marketingContext": "fair", "contact": {"email": "l@x.io"}}}
    ]


async def test_accounts_import_matches_by_name(api: Api) -> None:
    r = await run_import(
        api,
        "ACCOUNT",
        "Account Name,industry,employees\nContoso,Pharma,100\ncontoso,,\nFabrikam,,abc\n",
        {"employees": "employeeCount"},
    )
    assert (r["created"], r["skipped"], r["failed"]) == (1, 1, 1)
    assert "employeeCount" in r["errors"][0]["message"]


async def test_bad_mapping_is_a_user_error_and_imports_nothing(api: Api) -> None:
    r = await run_import(api, "CONTACT", "email\na@b.io\n", {"email": "shoeSize"})
    assert r["userErrors"][0]["code"] == "INVALID"
    assert r["userErrors"][0]["field"] == ["input", "mapping", "email"]
    r = await run_import(api, "CONTACT", "email\na@b.io\n", {"missing": "email"})
    assert "no column 'missing'" in r["userErrors"][0]["message"]
    r = await run_import(api, "CONTACT", "")
    assert r["userErrors"][0]["field"] == ["input", "csv"]
    assert (await api("{ contacts { totalCount } }"))["contacts"]["totalCount"] == 0


async def test_imported_leads_are_scored_by_live_models(api: Api) -> None:
    await api(
        "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { userErrors { code } } }"
    )
    await api(
        'mutation { createContact(input: {email: "s@x.io", jobTitle: "CTO"}) { contact { id } } }'
    )
    model = await api(
        'mutation { createScoringModel(input: {name: "fit", rules: [{name: "cto", points: 7, condition: {attribute: {entity: CONTACT, field: "jobTitle", operator: EQ, value: "cto"}}}]}) { scoringModel { id } userErrors { message } } }'
    )
    model_id = model["createScoringModel"]["scoringModel"]["id"]
    await api(
        "mutation($id: ID!) { publishScoringModel(id: $id) { userErrors { code } } }",
        {"id": model_id},
    )
    r = await run_import(api, "LEAD", "topic,email\nFleet,s@x.io\nOther,nobody@x.io\n")
    assert r["created"] == 2
    data = await api(
        "query($m: ID!) { leads(orderBy: {field: SCORE, scoringModelId: $m}) { edges { node { email scorable score(scoringModelId: $m) { score breakdown { points rule { name } } } } } } }",
        {"m": model_id},
    )
    by_email = {e["node"]["email"]: e["node"] for e in data["leads"]["edges"]}
    assert by_email["s@x.io"]["score"]["score"] == 7
    assert by_email["s@x.io"]["score"]["breakdown"] == [{"points": 7, "rule": {"name": "cto"}}]
    assert by_email["nobody@x.io"]["scorable"] is False
    assert by_email["nobody@x.io"]["score"] is None


async def test_records_an_import_updates_are_scored_again(api: Api) -> None:
    """Like updateContact / updateAccount / updateLead: what an import changes re-scores."""
    await api(
        "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { userErrors { code } } }"
    )
    model = await api(
        'mutation { createScoringModel(input: {name: "fit", rules: ['
        '{name: "chief", points: 20, condition: {attribute: {entity: CONTACT, field: "jobTitle", operator: CONTAINS, value: "chief"}}},'
        '{name: "big", points: 5, condition: {attribute: {entity: ACCOUNT, field: "employeeCount", operator: GT, value: 100}}},'
        '{name: "budget", points: 3, condition: {attribute: {entity: LEAD, field: "attributes.budget", operator: IS_SET}}}'
        "]}) { scoringModel { id } userErrors { message } } }"
    )
    model_id = model["createScoringModel"]["scoringModel"]["id"]
    await api(
        "mutation($id: ID!) { publishScoringModel(id: $id) { userErrors { code } } }",
        {"id": model_id},
    )
    await api('mutation { createAccount(input: {name: "Acme"}) { account { id } } }')
    contact = await api('mutation { createContact(input: {email: "c@x.io"}) { contact { id } } }')
    contact_id = contact["createContact"]["contact"]["id"]
    lead = await api(
        'mutation($c: ID!) { createLead(input: {topic: "T", contactId: $c}) { lead { id } } }',
        {"c": contact_id},
    )
    lead_id = lead["createLead"]["lead"]["id"]
    # A lead with an email but no contact yet: not scored until an import links it.
    loose = await api(
        'mutation { createLead(input: {topic: "L", email: "later@x.io", marketingContext: "f-9"}) { lead { id scorable } } }'
    )
    loose_id = loose["createLead"]["lead"]["id"]

    async def score(lead: str) -> float | None:
        data = await api(
            "query($l: ID!, $m: ID!) { lead(id: $l) { score(scoringModelId: $m) { score } } }",
            {"l": lead, "m": model_id},
        )
        found = data["lead"]["score"]
        return None if found is None else found["score"]

    assert await score(lead_id) == 0
    r = await run_import(
        api, "CONTACT", "email,jobTitle,company\nc@x.io,Chief Technology Officer,Acme\n"
    )
    assert (r["updated"], r["failed"]) == (1, 0), r
    assert await score(lead_id) == 20
    r = await run_import(api, "ACCOUNT", "name,employeeCount\nAcme,500\n")
    assert (r["updated"], r["failed"]) == (1, 0), r
    assert await score(lead_id) == 25
    await api('mutation { createContact(input: {email: "later@x.io"}) { contact { id } } }')
    assert await score(loose_id) is None
    r = await run_import(api, "LEAD", "email,marketingContext,topic\nlater@x.io,f-9,L\n")
    assert (r["updated"], r["failed"]) == (1, 0), r
    assert await score(loose_id) == 0
    r = await run_import(
        api,
        "LEAD",
        "email,marketingContext,topic,Budget\nlater@x.io,f-9,L,9000\n",
        {"Budget": "attributes.budget"},
    )
    assert (r["updated"], r["failed"]) == (1, 0), r
    assert await score(loose_id) == 3

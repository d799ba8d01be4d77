"""Accounts, contacts and leads through GraphQL: create, update, get, node, lists."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from api.ids import from_global_id, to_global_id
from tests.conftest import Api, serving

LEAD_FIELDS = "id topic fullName email companyName state statusReason stage source salesReady scorable marketingContext attributes contact { id email } account { id name }"


async def create_account(api: Api, **values: Any) -> dict[str, Any]:
    data = await api(
        "mutation($i: AccountInput!) { createAccount(input: $i) { account { id name industry employeeCount attributes } userErrors { code field message } } }",
        {"i": {"name": "Acme", **values}},
    )
    assert data["createAccount"]["userErrors"] == []
    return data["createAccount"]["account"]


async def create_contact(api: Api, **values: Any) -> dict[str, Any]:
    data = await api(
        "mutation($i: ContactInput!) { createContact(input: $i) { contact { id email fullName account { id } } userErrors { code field message } } }",
        {"i": values},
    )
    assert data["createContact"]["userErrors"] == [], data
    return data["createContact"]["contact"]


async def create_lead(api: Api, **values: Any) -> dict[str, Any]:
    data = await api(
        f"mutation($i: LeadInput!) {{ createLead(input: $i) {{ lead {{ {LEAD_FIELDS} }} userErrors {{ code field message }} }} }}",
        {"i": {"topic": "Interest", **values}},
    )
    assert data["createLead"]["userErrors"] == [], data
    return data["createLead"]["lead"]


async def test_account_create_update_get_and_node(api: Api) -> None:
    account = await create_account(
        api, industry="Retail", employeeCount=40, attributes={"tier": "gold"}
    )
    assert account["attributes"] == {"tier": "gold"}
    data = await api(
        'mutation($id: ID!) { updateAccount(id: $id, input: {name: "Acme Corp", employeeCount: 50}) { account { name industry employeeCount } userErrors { code } } }',
        {"id": account["id"]},
    )
    # Fields left out of the input stay as they were.
    assert data["updateAccount"]["account"] == {
        "name": "Acme Corp",
        "industry": "Retail",
        "employeeCount": 50,
    }
    got = await api(
        "query($id: ID!) { account(id: $id) { name } node(id: $id) { id ... on Account { name } } }",
        {"id": account["id"]},
    )
    assert got["account"]["name"] == "Acme Corp"
    assert got["node"] == {"id": account["id"], "name": "Acme Corp"}
    # An id of a type that has no entities is a clear error, never some other entity.
    r = await api.post(
        "query($id: ID!) { node(id: $id) { __typename } }",
        {"id": to_global_id("Banana", from_global_id(account["id"])[1])},
    )
    assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_contact_links_account_and_rejects_duplicate_email(api: Api) -> None:
    account = await create_account(api)
    contact = await create_contact(
        api, email="  Ana@Example.COM ", firstName="Ana", accountId=account["id"]
    )
    assert contact["email"] == "ana@example.com"
    assert contact["fullName"] == "Ana"
    assert contact["account"]["id"] == account["id"]
    data = await api(
        'mutation { createContact(input: {email: "ANA@example.com"}) { contact { id } userErrors { code field message } } }'
    )
    assert data["createContact"]["contact"] is None
    assert data["createContact"]["userErrors"][0]["code"] == "DUPLICATE"
    assert data["createContact"]["userErrors"][0]["field"] == ["input", "email"]
    count = await api('{ contacts(search: "ana@") { totalCount } }')
    assert count["contacts"]["totalCount"] == 1


async def test_update_contact_email_to_a_taken_one_is_duplicate(api: Api) -> None:
    await create_contact(api, email="one@x.io")
    two = await create_contact(api, email="two@x.io")
    data = await api(
        'mutation($id: ID!) { updateContact(id: $id, input: {email: "one@x.io"}) { contact { id } userErrors { code } } }',
        {"id": two["id"]},
    )
    assert data["updateContact"]["userErrors"][0]["code"] == "DUPLICATE"
    got = await api("query($id: ID!) { contact(id: $id) { email } }", {"id": two["id"]})
    assert got["contact"]["email"] == "two@x.io"


async def test_lead_defaults_and_links(api: Api) -> None:
    account = await create_account(api)
    contact = await create_contact(api, email="lead@x.io", accountId=account["id"])
    lead = await create_lead(
        api, contactId=contact["id"], email="lead@x.io", attributes={"budget": 10}
    )
    assert lead["state"] == "OPEN"
    assert lead["statusReason"] == "NEW"
    assert lead["stage"] == "INQUIRY"
    assert lead["source"] == "MANUAL"
    assert lead["salesReady"] is False
    assert lead["scorable"] is True
    # A lead linked to a contact takes the contact's account.
    assert lead["account"]["id"] == account["id"]
    orphan = await create_lead(api)
    assert orphan["scorable"] is False
    assert orphan["contact"] is None


async def test_update_lead_changes_only_given_fields(api: Api) -> None:
    lead = await create_lead(api, companyName="Old Co", email="u@x.io", source="IMPORT")
    data = await api(
        f'mutation($id: ID!) {{ updateLead(id: $id, input: {{topic: "New topic", companyName: null}}) {{ lead {{ {LEAD_FIELDS} }} userErrors {{ code }} }} }}',
        {"id": lead["id"]},
    )
    updated = data["updateLead"]["lead"]
    assert updated["topic"] == "New topic"
    assert updated["companyName"] is None
    assert updated["email"] == "u@x.io"
    assert updated["source"] == "IMPORT"  # not reset to the input's default
    data = await api(
        "mutation($id: ID!, $i: LeadInput!) { updateLead(id: $id, input: $i) { lead { source } } }",
        {"id": lead["id"], "i": {"topic": "t", "source": "JOURNEY"}},
    )
    assert data["updateLead"]["lead"]["source"] == "JOURNEY"
    data = await api(
        "mutation($id: ID!, $i: LeadInput!) { updateLead(id: $id, input: $i) { lead { source } } }",
        {"id": lead["id"], "i": {"topic": "t"}},
    )
    assert data["updateLead"]["lead"]["source"] == "JOURNEY"


async def test_a_lead_moved_to_another_contact_takes_its_account_along(api: Api) -> None:
    contoso = await create_account(api, name="Contoso")
    northwind = await create_account(api, name="Northwind")
    fabrikam = await create_account(api, name="Fabrikam")
    ada = await create_contact(api, email="ada@contoso.io", accountId=contoso["id"])
    bob = await create_contact(api, email="bob@northwind.io", accountId=northwind["id"])
    lead = await create_lead(api, contactId=ada["id"])
    assert lead["account"]["name"] == "Contoso"  # brought by Ada
    move = f"mutation($id: ID!, $i: LeadInput!) {{ updateLead(id: $id, input: $i) {{ lead {{ {LEAD_FIELDS} }} userErrors {{ code }} }} }}"
    moved = await api(move, {"id": lead["id"], "i": {"topic": "t", "contactId": bob["id"]}})
    assert moved["updateLead"]["lead"]["account"]["name"] == "Northwind"
    # An account set on its own stays when the contact changes.
    own = await create_lead(api, contactId=ada["id"], accountId=fabrikam["id"])
    kept = await api(move, {"id": own["id"], "i": {"topic": "t", "contactId": bob["id"]}})
    assert kept["updateLead"]["lead"]["account"]["name"] == "Fabrikam"


@pytest.mark.parametrize(
    ("mutation", "code", "field"),
    [
        ('createLead(input: {topic: "  "})', "INVALID", ["input", "topic"]),
        ('createLead(input: {topic: "t", email: "not-an-email"})', "INVALID", ["input", "email"]),
        (
            'createLead(input: {topic: "t", contactId: "Q29udGFjdDo5OTk5"})',
            "NOT_FOUND",
            ["input", "contactId"],
        ),
        (
            'createLead(input: {topic: "t", contactId: "garbage"})',
            "INVALID",
            ["input", "contactId"],
        ),
        (
            'createLead(input: {topic: "t", accountId: "TGVhZDox"})',
            "INVALID",
            ["input", "accountId"],
        ),
        ('updateLead(id: "TGVhZDo5OTk5", input: {topic: "t"})', "NOT_FOUND", ["id"]),
        ('createLead(input: {topic: "t", attributes: [1, 2]})', "INVALID", ["input", "attributes"]),
    ],
)
async def test_lead_input_errors_are_user_errors(
    api: Api, mutation: str, code: str, field: list[str]
) -> None:
    data = await api(
        f"mutation {{ {mutation.split('(')[0]}: {mutation} {{ lead {{ id }} userErrors {{ code field message }} }} }}"
    )
    payload = next(iter(data.values()))
    assert payload["lead"] is None
    assert payload["userErrors"][0]["code"] == code
    assert payload["userErrors"][0]["field"] == field
    assert (await api("{ leads { totalCount } }"))["leads"]["totalCount"] == 0


async def test_account_errors(api: Api) -> None:
    data = await api(
        'mutation { createAccount(input: {name: " ", employeeCount: -3}) { account { id } userErrors { code field } } }'
    )
    fields = sorted(e["field"] for e in data["createAccount"]["userErrors"])
    assert fields == [["input", "employeeCount"], ["input", "name"]]
    # Too long is one error, not also "must not be empty".
    long = "a" * 5000
    for mutation, key in (
        (f'createAccount(input: {{name: "{long}"}}) {{ account {{ id }}', "createAccount"),
        (f'createLead(input: {{topic: "{long}"}}) {{ lead {{ id }}', "createLead"),
    ):
        data = await api(f"mutation {{ {mutation} userErrors {{ code field message }} }} }}")
        errors = data[key]["userErrors"]
        assert len(errors) == 1 and "longer than" in errors[0]["message"], errors


async def test_bad_ids_in_queries_are_clear_errors(api: Api) -> None:
    errors = await api.errors('{ lead(id: "nonsense") { id } }')
    assert "not a valid ID" in errors[0]["message"]
    errors = await api.errors('{ lead(id: "QWNjb3VudDox") { id } }')  # Account:1
    assert "expected an ID of a Lead" in errors[0]["message"]
    assert (await api('{ lead(id: "TGVhZDo0MjQy") { id } }'))["lead"] is None


async def test_wrong_types_and_unknown_fields_are_clear(api: Api) -> None:
    errors = await api.errors('{ leads(first: "ten") { totalCount } }')
    assert "Int" in errors[0]["message"]
    errors = await api.errors("{ leads { nope } }")
    assert "nope" in errors[0]["message"]


async def test_page_size_is_capped(database_url: str) -> None:
    async with serving(database_url, max_page_size=2) as api:
        for i in range(3):
            await create_lead(api, topic=f"T{i}")
        # A larger `first` gets a page of MAX_PAGE_SIZE (2 here), not an error.
        page = "{ leads(first: 100000) { edges { node { id } } pageInfo { hasNextPage } } }"
        capped = await api(page)
        assert len(capped["leads"]["edges"]) == 2
        assert capped["leads"]["pageInfo"]["hasNextPage"] is True
        events = await api("{ leadEvents(first: 100000) { edges { cursor } } }")
        assert len(events["leadEvents"]["edges"]) <= 2
        errors = await api.errors("{ leads(first: -1) { totalCount } }")
        assert "first must be 0 or more" in errors[0]["message"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
        errors = await api.errors('{ leads(after: "zzz") { totalCount } }')
        assert "not a valid cursor" in errors[0]["message"]


async def test_hostile_searches_and_cursors_are_bad_input(api: Api) -> None:
    """Never an unexpected error: a search longer than any stored text, a cursor whose sort
    value has the wrong type for the list (JSON [1, 2] where a time sorts)."""
    await create_lead(api, topic="T")
    long = "x%" * 60_000
    for query in (
        "query($s: String) { leads(filter: {search: $s}) { totalCount } }",
        "query($s: String) { accounts(search: $s) { totalCount } }",
        "query($s: String) { contacts(search: $s) { totalCount } }",
    ):
        errors = await api.errors(query, {"s": long})
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors
        assert "at most 1000 characters" in errors[0]["message"]
    hand_made = (
        b"[1,2]",  # a number where a time sorts
        b'[{"t":"2020-01-01T00:00:00+00:00"},100000000000000000000]',  # beyond 64 bits
        b'[{"t":"0001-01-01T00:00:00+05:00"},5]',  # before year 1 in UTC
        b'[{"t":"2020-01-01T00:00:00"},5]',  # no timezone: no instant
    )
    for raw in hand_made:
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        errors = await api.errors(
            "query($a: String) { leads(after: $a) { totalCount } }", {"a": cursor}
        )
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", (raw, errors)
    for extreme in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        errors = await api.errors(
            "query($t: DateTime) { leads(filter: {createdAfter: $t}) { totalCount } }",
            {"t": extreme},
        )
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors


async def test_json_nested_too_deep_to_send_back_is_refused(api: Api) -> None:
    """Attributes that could be stored but never sent back again (the JSON encoder's depth)."""
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(300):
        deep = {"a": deep}
    data = await api(
        "mutation($i: ContactInput!) { createContact(input: $i) { contact { id } userErrors { code field message } } }",
        {"i": {"email": "deep@x.io", "attributes": deep}},
    )
    payload = data["createContact"]
    assert payload["contact"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID", ["input", "attributes"])
    ]
    listed = await api("{ contacts { totalCount edges { node { attributes } } } }")
    assert listed["contacts"]["totalCount"] == 0


async def test_keyset_pagination_walks_every_lead_once(api: Api) -> None:
    for i in range(7):
        await create_lead(api, topic=f"T{i}")
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        data = await api(
            "query($after: String) { leads(first: 3, after: $after) { totalCount edges { cursor node { topic } } pageInfo { hasNextPage endCursor } } }",
            {"after": after},
        )
        conn = data["leads"]
        assert conn["totalCount"] == 7
        seen += [e["node"]["topic"] for e in conn["edges"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        after = conn["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == [f"T{i}" for i in reversed(range(7))]  # newest first by default
    asc = await api(
        "{ leads(first: 2, orderBy: {field: CREATED_AT, direction: ASC}) { edges { node { topic } } } }"
    )
    assert [e["node"]["topic"] for e in asc["leads"]["edges"]] == ["T0", "T1"]


async def test_lead_filters_and_search(api: Api) -> None:
    contact = await create_contact(api, email="f@x.io")
    await create_lead(api, topic="Robots", companyName="Fabrikam", contactId=contact["id"])
    await create_lead(api, topic="Toys", firstName="Jonas", lastName="Petraitis", source="IMPORT")
    await create_lead(api, topic="Cars", email="SEARCH@me.io")

    async def topics(filter_: dict[str, Any]) -> list[str]:
        data = await api(
            "query($f: LeadFilter) { leads(filter: $f) { edges { node { topic } } } }",
            {"f": filter_},
        )
        return sorted(e["node"]["topic"] for e in data["leads"]["edges"])

    assert await topics({"search": "fabri"}) == ["Robots"]
    assert await topics({"search": "jonas pet"}) == ["Toys"]
    assert await topics({"search": "search@"}) == ["Cars"]
    assert await topics({"search": "100%"}) == []
    assert await topics({"source": ["IMPORT"]}) == ["Toys"]
    assert await topics({"contactId": contact["id"]}) == ["Robots"]
    assert await topics({"state": ["OPEN"], "salesReady": False}) == ["Cars", "Robots", "Toys"]
    assert await topics({"stage": ["SALES_ACCEPTANCE"]}) == []
    assert await topics(
        {"createdAfter": "2000-01-01T00:00:00Z", "createdBefore": "2999-01-01T00:00:00+02:00"}
    ) == ["Cars", "Robots", "Toys"]
    assert await topics({"createdAfter": "2999-01-01T00:00:00Z"}) == []


async def test_filter_statements_are_reused_with_new_values(api: Api) -> None:
    """Each filter shape's SQL is built once; later requests of that shape bind their own values."""
    account = await create_account(api, name="Reuse")
    await create_lead(api, topic="A", source="IMPORT", accountId=account["id"])
    await create_lead(api, topic="B", source="MANUAL")
    await create_lead(api, topic="C", source="LANDING_PAGE", email="c@reuse.io")

    async def listed(filter_: dict[str, Any]) -> tuple[list[str], int]:
        data = await api(
            "query($f: LeadFilter) { leads(filter: $f) { totalCount edges { node { topic } } } }",
            {"f": filter_},
        )
        conn = data["leads"]
        return sorted(e["node"]["topic"] for e in conn["edges"]), conn["totalCount"]

    assert await listed({"source": ["IMPORT"]}) == (["A"], 1)
    assert await listed({"source": ["MANUAL"]}) == (["B"], 1)
    assert await listed({"source": ["MANUAL", "LANDING_PAGE"]}) == (["B", "C"], 2)
    assert await listed({"source": ["MANUAL", "LANDING_PAGE"], "search": "reuse"}) == (["C"], 1)
    assert await listed({"source": ["IMPORT", "MANUAL"], "search": "nothing"}) == ([], 0)
    assert await listed({"accountId": account["id"]}) == (["A"], 1)
    assert await listed({"stage": ["INQUIRY"], "statusReason": ["NEW"]}) == (["A", "B", "C"], 3)
    assert await listed({"statusReason": ["QUALIFIED", "LOST"]}) == ([], 0)


async def test_updated_at_order_pages_by_its_own_key(api: Api) -> None:
    leads = [await create_lead(api, topic=f"U{i}") for i in range(4)]
    # Touch the oldest last: it becomes the most recently updated.
    await api(
        'mutation($id: ID!) { updateLead(id: $id, input: {topic: "U0"}) { userErrors { code } } }',
        {"id": leads[0]["id"]},
    )
    query = "query($after: String) { leads(first: 2, after: $after, orderBy: {field: UPDATED_AT}) { edges { node { topic } } pageInfo { endCursor } } }"
    first = await api(query, {"after": None})
    second = await api(query, {"after": first["leads"]["pageInfo"]["endCursor"]})
    topics = [e["node"]["topic"] for page in (first, second) for e in page["leads"]["edges"]]
    assert topics == ["U0", "U3", "U2", "U1"]


async def test_nested_connections(api: Api) -> None:
    account = await create_account(api, name="Nested")
    contact = await create_contact(api, email="n@x.io", accountId=account["id"])
    await create_lead(api, contactId=contact["id"])
    data = await api(
        "query($id: ID!) { account(id: $id) { contacts { totalCount edges { node { email leads { totalCount } } } } leads { totalCount } } }",
        {"id": account["id"]},
    )
    acc = data["account"]
    assert acc["contacts"]["totalCount"] == 1
    assert acc["contacts"]["edges"][0]["node"]["leads"]["totalCount"] == 1
    assert acc["leads"]["totalCount"] == 1
    listed = await api(
        'query($a: ID) { contacts(accountId: $a) { totalCount } accounts(search: "nest") { totalCount } }',
        {"a": account["id"]},
    )
    assert listed == {"contacts": {"totalCount": 1}, "accounts": {"totalCount": 1}}


async def test_concurrent_updates_of_one_lead_lose_nothing(api: Api) -> None:
    lead = await create_lead(api)
    fields = ["firstName", "lastName", "companyName", "jobTitle", "phone"]

    async def set_field(name: str) -> None:
        await api(
            "mutation($id: ID!, $i: LeadInput!) { updateLead(id: $id, input: $i) { userErrors { code } } }",
            {"id": lead["id"], "i": {"topic": "Interest", name: f"v-{name}"}},
        )

    await asyncio.gather(*(set_field(f) for f in fields))
    got = await api(
        "query($id: ID!) { lead(id: $id) { firstName lastName companyName jobTitle phone } }",
        {"id": lead["id"]},
    )
    assert got["lead"] == {f: f"v-{f}" for f in fields}

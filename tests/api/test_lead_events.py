"""The leadEvents query: events in commit order, keyset pages, filters, errors."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from domain.roles import Role
from tests.api.test_records import create_contact, create_lead
from tests.api.test_scoring import VISITS, live_model, record, switch
from tests.conftest import Api

EVENT = (
    "cursor id type occurredAt lead { id } statusReason previousStatusReason salesReady "
    "previousSalesReady stage scoringModel { id } score previousScore"
)
EVENTS = (
    "query($types: [LeadEventType!], $leadId: ID, $first: Int, $after: String) {"
    " leadEvents(types: $types, leadId: $leadId, first: $first, after: $after) {"
    f" edges {{ cursor node {{ {EVENT} }} }} pageInfo {{ hasNextPage endCursor }} totalCount }} }}"
)


async def events(api: Api, role: Role = Role.ADMIN, **variables: Any) -> dict[str, Any]:
    data = await api(EVENTS, variables, role=role)
    result: dict[str, Any] = data["leadEvents"]
    return result


async def wait_for(api: Api, count: int) -> list[dict[str, Any]]:
    """The first page once `count` events are positioned (the relay runs after commit)."""
    async with asyncio.timeout(5):
        while True:
            page = await events(api, first=500)
            if len(page["edges"]) >= count:
                return [e["node"] for e in page["edges"]]
            await asyncio.sleep(0.02)


async def test_events_in_commit_order_with_the_lead_state_they_describe(api: Api) -> None:
    await switch(api)
    model = await live_model(api, [VISITS], salesReadyThreshold=10)
    contact = await create_contact(api, email="ev@x.io")
    scored = await create_lead(api, contactId=contact["id"])
    plain = await create_lead(api)
    await record(api, contactId=contact["id"], type="PAGE_VISITED")
    nodes = await wait_for(api, 6)
    # The process follows the score: first points → automated marketing qualification, then
    # sales-ready → sales acceptance (STAGE_CHANGED twice, in the same transaction).
    assert [(n["type"], n["lead"]["id"]) for n in nodes] == [
        ("CREATED", scored["id"]),
        ("CREATED", plain["id"]),
        ("SCORE_CHANGED", scored["id"]),
        ("SALES_READY", scored["id"]),
        ("STAGE_CHANGED", scored["id"]),
        ("STAGE_CHANGED", scored["id"]),
    ]
    assert [n["stage"] for n in nodes[4:]] == [
        "AUTOMATED_MARKETING_QUALIFICATION",
        "SALES_ACCEPTANCE",
    ]
    created, _, changed, ready = nodes[:4]
    assert created["statusReason"] == "NEW" and created["stage"] == "INQUIRY"
    assert datetime.fromisoformat(created["occurredAt"]).tzinfo is not None
    assert created["salesReady"] is False and created["previousSalesReady"] is None
    assert created["scoringModel"] is None and created["score"] is None
    assert changed["scoringModel"] == {"id": model["id"]}
    assert (changed["score"], changed["previousScore"]) == (10.0, 0.0)  # scored 0 at creation
    assert (ready["salesReady"], ready["previousSalesReady"]) == (True, False)
    # Each event shows the lead as it was then, not as it is now (sales acceptance).
    assert (changed["stage"], changed["salesReady"]) == ("INQUIRY", False)
    assert (ready["stage"], ready["salesReady"]) == ("INQUIRY", True)
    cursors = [n["cursor"] for n in nodes]
    assert len(set(cursors)) == 6
    assert len({n["id"] for n in nodes}) == 6
    found = await api(
        "query($id: ID!) { node(id: $id) { id ... on LeadEvent { type score } } }",
        {"id": changed["id"]},
    )
    assert found["node"] == {"id": changed["id"], "type": "SCORE_CHANGED", "score": 10.0}


async def test_set_based_events_hold_the_lead_state_of_their_time(api: Api) -> None:
    """A publish writes its events set-based; each still shows the lead as it was then."""
    await switch(api)
    contact = await create_contact(api, email="set@x.io")
    lead = await create_lead(api, contactId=contact["id"])
    await record(api, contactId=contact["id"], type="PAGE_VISITED")
    await live_model(api, [VISITS], salesReadyThreshold=10)  # scores the lead set-based
    nodes = [n for n in await wait_for(api, 5) if n["lead"]["id"] == lead["id"]]
    assert [(n["type"], n["stage"], n["salesReady"]) for n in nodes] == [
        ("CREATED", "INQUIRY", False),
        ("SCORE_CHANGED", "INQUIRY", False),
        ("SALES_READY", "INQUIRY", True),
        ("STAGE_CHANGED", "AUTOMATED_MARKETING_QUALIFICATION", True),
        ("STAGE_CHANGED", "SALES_ACCEPTANCE", True),
    ]
    assert nodes[2]["previousSalesReady"] is False
    assert {n["statusReason"] for n in nodes} == {"NEW"}


async def test_pages_filters_and_errors(api: Api) -> None:
    await switch(api)
    await live_model(api, [VISITS], salesReadyThreshold=10)
    contact = await create_contact(api, email="pages@x.io")
    scored = await create_lead(api, contactId=contact["id"])
    plain = await create_lead(api)
    await record(api, contactId=contact["id"], type="PAGE_VISITED")
    everything = await wait_for(api, 6)

    seen: list[str] = []
    after = None
    while True:
        page = await events(api, role=Role.VIEWER, first=1, after=after)
        assert page["totalCount"] == 6
        seen += [e["node"]["id"] for e in page["edges"]]
        assert [e["cursor"] for e in page["edges"]] == [page["pageInfo"]["endCursor"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert seen == [n["id"] for n in everything]
    assert (await events(api, after=after))["edges"] == []

    typed = await events(api, types=["SALES_READY", "SCORE_CHANGED"])
    assert [e["node"]["type"] for e in typed["edges"]] == ["SCORE_CHANGED", "SALES_READY"]
    assert typed["totalCount"] == 2
    one_lead = await events(api, leadId=plain["id"])
    assert [e["node"]["type"] for e in one_lead["edges"]] == ["CREATED"]
    assert one_lead["totalCount"] == 1
    both = await events(api, leadId=scored["id"], types=["CREATED"], after=everything[0]["cursor"])
    assert both["edges"] == []

    for variables in ({"after": "bm9wZQ"}, {"first": -1}, {"leadId": contact["id"]}):
        errors = await api.errors(EVENTS, variables)
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors

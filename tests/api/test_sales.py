"""The sales process over GraphQL: stages, checkboxes, qualify, disqualify, reactivate, roles."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from api.ids import from_global_id
from domain.roles import Role
from persistence import tables as t
from persistence.database import Database
from tests.conftest import Api

ERRORS = "userErrors { code field message }"
LEAD = "id state statusReason stage salesReady teleprospectingReady teleprospectAccepted salesAccepted contact { id email account { id name } } account { id name }"
STAGE = f"mutation($id: ID!, $s: LeadStage!) {{ setLeadStage(id: $id, stage: $s) {{ lead {{ {LEAD} }} {ERRORS} }} }}"
PROCESS = f"mutation($id: ID!, $i: LeadProcessInput!) {{ updateLeadProcess(id: $id, input: $i) {{ lead {{ {LEAD} }} {ERRORS} }} }}"
QUALIFY = f"mutation($id: ID!, $i: QualifyLeadInput) {{ qualifyLead(id: $id, input: $i) {{ lead {{ {LEAD} }} opportunity {{ id name stage status estimatedValue closeDate lead {{ id }} contact {{ id }} account {{ id }} }} contact {{ id email }} account {{ id name }} {ERRORS} }} }}"
DISQUALIFY = f"mutation($id: ID!, $r: LeadStatusReason!) {{ disqualifyLead(id: $id, reason: $r) {{ lead {{ {LEAD} }} {ERRORS} }} }}"
REACTIVATE = f"mutation($id: ID!) {{ reactivateLead(id: $id) {{ lead {{ {LEAD} }} {ERRORS} }} }}"


async def new_lead(api: Api, **values: Any) -> dict[str, Any]:
    data = await api(
        f"mutation($i: LeadInput!) {{ createLead(input: $i) {{ lead {{ {LEAD} }} {ERRORS} }} }}",
        {"i": {"topic": "Fleet robots", **values}},
    )
    assert data["createLead"]["userErrors"] == []
    return data["createLead"]["lead"]


async def op(api: Api, query: str, role: Role = Role.SELLER, **variables: Any) -> dict[str, Any]:
    data = await api(query, variables, role=role)
    return next(iter(data.values()))


async def events(db: Database, lead_gid: str) -> list[tuple[str, dict[str, Any]]]:
    lead_id = from_global_id(lead_gid)[1]
    async with db.read() as r:
        rows = (
            await r.conn.execute(
                select(t.lead_events.c.type, t.lead_events.c.payload)
                .where(t.lead_events.c.lead_id == lead_id)
                .order_by(t.lead_events.c.id)
            )
        ).all()
    return [(row.type, row.payload) for row in rows if row.type != "CREATED"]


async def test_stages_by_hand_record_events(api: Api, db: Database) -> None:
    lead = await new_lead(api)
    assert lead["stage"] == "INQUIRY"
    moved = await op(api, STAGE, id=lead["id"], s="SALES_ACCEPTANCE")
    assert moved["lead"]["stage"] == "SALES_ACCEPTANCE"
    back = await op(api, STAGE, id=lead["id"], s="TELEPROSPECTING_ACCEPTANCE")
    assert back["lead"]["stage"] == "TELEPROSPECTING_ACCEPTANCE"
    same = await op(api, STAGE, id=lead["id"], s="TELEPROSPECTING_ACCEPTANCE")
    assert same["userErrors"] == []
    changes = await events(db, lead["id"])
    assert [(k, p["stage"], p["previousStage"]) for k, p in changes] == [
        ("STAGE_CHANGED", "SALES_ACCEPTANCE", "INQUIRY"),
        ("STAGE_CHANGED", "TELEPROSPECTING_ACCEPTANCE", "SALES_ACCEPTANCE"),
    ]


async def test_checkboxes_move_the_stage_forward(api: Api) -> None:
    lead = await new_lead(api)
    step = await op(api, PROCESS, id=lead["id"], i={"teleprospectingReady": True})
    assert (step["lead"]["stage"], step["lead"]["teleprospectingReady"]) == (
        "TELEPROSPECTING_ACCEPTANCE",
        True,
    )
    step = await op(api, PROCESS, id=lead["id"], i={"teleprospectAccepted": True})
    assert step["lead"]["stage"] == "TELEPROSPECTING_QUALIFICATION"
    # Unticking never moves a lead back.
    step = await op(api, PROCESS, id=lead["id"], i={"teleprospectAccepted": False})
    assert step["lead"]["stage"] == "TELEPROSPECTING_QUALIFICATION"
    step = await op(api, PROCESS, id=lead["id"], i={"salesReady": True, "salesAccepted": True})
    assert step["lead"]["stage"] == "SALES_ACCEPTANCE"
    assert (step["lead"]["salesReady"], step["lead"]["salesAccepted"]) == (True, True)
    # Sales-ready from the start skips the teleprospecting stages.
    other = await new_lead(api, topic="fast")
    step = await op(api, PROCESS, id=other["id"], i={"salesReady": True})
    assert step["lead"]["stage"] == "SALES_ACCEPTANCE"


async def test_checkbox_changes_are_stored_even_without_a_move(api: Api) -> None:
    """Ticking sales-accepted, or unticking a box, moves no stage: the lead is stored all the
    same (read back, not only in the mutation's answer)."""
    lead = await new_lead(api)
    await op(api, PROCESS, id=lead["id"], i={"salesReady": True})
    step = await op(api, PROCESS, id=lead["id"], i={"salesAccepted": True})
    assert step["userErrors"] == []
    step = await op(api, PROCESS, id=lead["id"], i={"salesReady": False})
    assert step["userErrors"] == []
    step = await op(api, PROCESS, id=lead["id"], i={"teleprospectingReady": True})
    assert step["userErrors"] == []
    data = await api(f"query($id: ID!) {{ lead(id: $id) {{ {LEAD} }} }}", {"id": lead["id"]})
    stored = data["lead"]
    assert (
        stored["salesAccepted"],
        stored["salesReady"],
        stored["teleprospectingReady"],
        stored["stage"],
    ) == (True, False, True, "SALES_ACCEPTANCE")


async def test_a_stage_set_by_hand_stays_until_something_changes(api: Api, db: Database) -> None:
    """Re-scoring that changes no points and no sales-ready mark, per interaction or by a
    publish, leaves a stage set by hand alone; a lead that becomes sales-ready moves on."""
    from tests.api.test_scoring import (
        contact_and_lead,
        interaction,
        live_model,
        record,
        rule,
        switch,
    )

    await switch(api)
    await live_model(api, [rule("forms", 10, interaction("FORM_SUBMITTED"))])
    contact, lead = await contact_and_lead(api, "hand@p.io")
    await op(api, PROCESS, id=lead, i={"salesReady": True})
    moved = await op(api, STAGE, id=lead, s="TELEPROSPECTING_QUALIFICATION")
    assert moved["lead"]["stage"] == "TELEPROSPECTING_QUALIFICATION"

    async def stage(gid: str) -> str:
        data = await api("query($id: ID!) { lead(id: $id) { stage } }", {"id": gid})
        return str(data["lead"]["stage"])

    before = len(await events(db, lead))
    visited = await record(api, contactId=contact, type="PAGE_VISITED")  # no rule: 0 points
    assert visited["userErrors"] == []
    await live_model(api, [rule("other", 5, interaction("EMAIL_OPENED"))])  # 0 points too
    assert await stage(lead) == "TELEPROSPECTING_QUALIFICATION"
    assert all(kind != "STAGE_CHANGED" for kind, _ in (await events(db, lead))[before:])

    # Points that change do move a lead still in inquiry (its first points), and a lead that
    # becomes sales-ready goes on to sales acceptance.
    other_contact, other = await contact_and_lead(api, "first@p.io")
    await op(api, STAGE, id=other, s="INQUIRY")
    assert (await record(api, contactId=other_contact, type="FORM_SUBMITTED"))["userErrors"] == []
    assert await stage(other) == "AUTOMATED_MARKETING_QUALIFICATION"
    ready_contact, ready = await contact_and_lead(api, "ready@p.io")
    await live_model(api, [rule("hot", 50, interaction("EVENT_ATTENDED"))], salesReadyThreshold=40)
    assert (await record(api, contactId=ready_contact, type="EVENT_ATTENDED"))["userErrors"] == []
    assert await stage(ready) == "SALES_ACCEPTANCE"


async def test_qualify_makes_one_opportunity_contact_and_account(api: Api, db: Database) -> None:
    lead = await new_lead(
        api, email="ada@northwind.io", firstName="Ada", companyName="Northwind", jobTitle="CTO"
    )
    done = await op(
        api,
        QUALIFY,
        id=lead["id"],
        i={
            "opportunityName": "Robots for Northwind",
            "estimatedValue": 120000,
            "estimatedCloseDate": "2027-03-31",
        },
    )
    assert done["userErrors"] == []
    assert (done["lead"]["state"], done["lead"]["statusReason"]) == ("QUALIFIED", "QUALIFIED")
    opportunity = done["opportunity"]
    assert (opportunity["name"], opportunity["stage"], opportunity["status"]) == (
        "Robots for Northwind",
        "DEVELOP",
        "OPEN",
    )
    assert (opportunity["estimatedValue"], opportunity["closeDate"]) == (120000.0, "2027-03-31")
    assert done["contact"]["email"] == "ada@northwind.io"
    assert done["account"]["name"] == "Northwind"
    assert opportunity["contact"]["id"] == done["contact"]["id"]
    assert opportunity["account"]["id"] == done["account"]["id"]
    assert done["lead"]["contact"]["account"]["id"] == done["account"]["id"]
    again = await op(api, QUALIFY, id=lead["id"])
    assert again["userErrors"][0]["code"] == "CONFLICT"
    # A second lead of the same person and company reuses both: no duplicates.
    second = await new_lead(
        api, topic="Spare parts", email="ada@northwind.io", companyName="NORTHWIND"
    )
    done2 = await op(api, QUALIFY, id=second["id"])
    assert done2["opportunity"]["name"] == "Spare parts"
    assert done2["contact"]["id"] == done["contact"]["id"]
    assert done2["account"]["id"] == done["account"]["id"]
    async with db.read() as r:
        contacts = await r.conn.scalar(select(func.count()).select_from(t.contacts))
        accounts = await r.conn.scalar(select(func.count()).select_from(t.accounts))
        opportunities = await r.conn.scalar(select(func.count()).select_from(t.opportunities))
    assert (contacts, accounts, opportunities) == (1, 1, 2)
    kinds = [k for k, _ in await events(db, lead["id"])]
    assert kinds == ["QUALIFIED"]
    listed = await api(
        "query($l: ID!) { opportunities(leadId: $l) { totalCount edges { node { name } } } }",
        {"l": lead["id"]},
        role=Role.VIEWER,
    )
    assert listed["opportunities"]["totalCount"] == 1
    got = await api(
        "query($id: ID!) { node(id: $id) { ... on Opportunity { name } } opportunity(id: $id) { status } }",
        {"id": opportunity["id"]},
    )
    assert got == {"node": {"name": "Robots for Northwind"}, "opportunity": {"status": "OPEN"}}


async def test_qualify_input_errors_change_nothing(api: Api) -> None:
    lead = await new_lead(api)
    bad = await op(api, QUALIFY, id=lead["id"], i={"estimatedValue": -5})
    assert bad["userErrors"][0]["field"] == ["input", "estimatedValue"]
    state = await api("query($id: ID!) { lead(id: $id) { state } }", {"id": lead["id"]})
    assert state["lead"]["state"] == "OPEN"


async def test_disqualify_and_reactivate(api: Api, db: Database) -> None:
    lead = await new_lead(api)
    bad = await op(api, DISQUALIFY, id=lead["id"], r="QUALIFIED")
    assert bad["userErrors"][0]["code"] == "INVALID"
    done = await op(api, DISQUALIFY, id=lead["id"], r="NO_LONGER_INTERESTED")
    assert (done["lead"]["state"], done["lead"]["statusReason"]) == (
        "DISQUALIFIED",
        "NO_LONGER_INTERESTED",
    )
    assert (await op(api, DISQUALIFY, id=lead["id"], r="LOST"))["userErrors"][0][
        "code"
    ] == "CONFLICT"
    assert (await op(api, PROCESS, id=lead["id"], i={"salesReady": True}))["userErrors"][0][
        "code"
    ] == "CONFLICT"
    back = await op(api, REACTIVATE, id=lead["id"])
    assert (back["lead"]["state"], back["lead"]["statusReason"]) == ("OPEN", "NEW")
    assert (await op(api, REACTIVATE, id=lead["id"]))["userErrors"][0]["code"] == "CONFLICT"
    assert [k for k, _ in await events(db, lead["id"])] == ["DISQUALIFIED", "REACTIVATED"]
    # A qualified lead whose opportunity is open can be neither disqualified nor reopened.
    qualified = await new_lead(api, topic="q", email="q@x.io")
    await op(api, QUALIFY, id=qualified["id"])
    assert (await op(api, DISQUALIFY, id=qualified["id"], r="LOST"))["userErrors"][0][
        "code"
    ] == "CONFLICT"
    assert (await op(api, REACTIVATE, id=qualified["id"]))["userErrors"][0]["code"] == "CONFLICT"


async def test_roles(api: Api) -> None:
    lead = await new_lead(api)
    for role in (Role.VIEWER, Role.MARKETER, Role.INTEGRATION):
        r = await api.post(QUALIFY, {"id": lead["id"]}, role=role)
        assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", role
    assert (await op(api, QUALIFY, role=Role.SELLER, id=lead["id"]))["userErrors"] == []


async def test_opportunities_are_worked_and_closed(api: Api) -> None:
    lead = await new_lead(api, email="opp@northwind.io", companyName="Northwind")
    done = await op(api, QUALIFY, id=lead["id"], i={"estimatedValue": 1000})
    opportunity = done["opportunity"]["id"]
    update = f"mutation($id: ID!, $i: OpportunityUpdateInput!) {{ updateOpportunity(id: $id, input: $i) {{ opportunity {{ name stage status estimatedValue closeDate }} {ERRORS} }} }}"
    moved = await op(api, update, id=opportunity, i={"stage": "PROPOSE", "closeDate": "2027-01-31"})
    assert moved["opportunity"] == {
        "name": "Fleet robots",
        "stage": "PROPOSE",
        "status": "OPEN",
        "estimatedValue": 1000.0,
        "closeDate": "2027-01-31",
    }
    bad = await op(api, update, id=opportunity, i={"estimatedValue": -5, "name": "Renamed"})
    assert (bad["userErrors"][0]["code"], bad["userErrors"][0]["field"]) == (
        "INVALID",
        ["input", "estimatedValue"],
    )
    # An open opportunity keeps its lead from being disqualified or reactivated.
    blocked = await op(api, DISQUALIFY, id=lead["id"], r="LOST")
    assert blocked["userErrors"][0]["code"] == "CONFLICT"
    closed = await op(api, update, id=opportunity, i={"status": "LOST", "estimatedValue": None})
    assert closed["opportunity"]["stage"] == "CLOSE"
    assert (closed["opportunity"]["status"], closed["opportunity"]["estimatedValue"]) == (
        "LOST",
        None,
    )
    frozen = await op(api, update, id=opportunity, i={"name": "Too late"})
    assert frozen["userErrors"][0]["code"] == "CONFLICT"
    # Reopened while its lead is still qualified: back in the sales stages.
    reopened = await op(api, update, id=opportunity, i={"status": "OPEN"})
    assert (reopened["opportunity"]["status"], reopened["opportunity"]["stage"]) == (
        "OPEN",
        "DEVELOP",
    )
    open_close = await op(api, update, id=opportunity, i={"stage": "CLOSE"})
    assert open_close["userErrors"][0]["field"] == ["input", "stage"]
    won = await op(api, update, id=opportunity, i={"status": "WON"})
    assert won["opportunity"]["status"] == "WON"
    reactivated = await op(api, REACTIVATE, id=lead["id"])
    assert reactivated["lead"]["state"] == "OPEN"
    # An open lead has no open opportunity: reopening would break its own rules.
    refused = await op(api, update, id=opportunity, i={"status": "OPEN"})
    assert refused["userErrors"][0]["code"] == "CONFLICT"
    assert "its lead is OPEN" in refused["userErrors"][0]["message"]
    again = await op(api, QUALIFY, id=lead["id"])
    assert again["userErrors"] == [] and again["opportunity"]["id"] != opportunity
    second = await op(api, update, id=opportunity, i={"status": "OPEN"})
    assert "another open opportunity" in second["userErrors"][0]["message"]
    listed = await api(
        "query($l: ID!) { opportunities(leadId: $l, status: OPEN) { totalCount } }",
        {"l": lead["id"]},
    )
    assert listed["opportunities"]["totalCount"] == 1
    gone = await op(api, update, id="T3Bwb3J0dW5pdHk6OTk5OQ==", i={"name": "x"})
    assert gone["userErrors"][0]["code"] == "NOT_FOUND"
    r = await api.post(update, {"id": opportunity, "i": {"name": "x"}}, role=Role.VIEWER)
    assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_publishing_a_model_moves_the_process_set_based(api: Api) -> None:
    from tests.api.test_scoring import VISITS, contact_and_lead, live_model, record_many, switch

    await switch(api)
    hot_contact, hot = await contact_and_lead(api, "hot@p.io")
    warm_contact, warm = await contact_and_lead(api, "warm@p.io")
    _, cold = await contact_and_lead(api, "cold@p.io")
    visits = [{"contactId": hot_contact, "type": "PAGE_VISITED"}] * 3
    visits += [{"contactId": warm_contact, "type": "PAGE_VISITED"}]
    assert (await record_many(api, visits))["userErrors"] == []
    await live_model(api, [VISITS], salesReadyThreshold=30)  # scores every lead at once

    async def stage(lead: str) -> str:
        data = await api("query($id: ID!) { lead(id: $id) { stage } }", {"id": lead})
        return str(data["lead"]["stage"])

    assert await stage(hot) == "SALES_ACCEPTANCE"
    assert await stage(warm) == "AUTOMATED_MARKETING_QUALIFICATION"
    assert await stage(cold) == "INQUIRY"  # no points yet


async def test_users_teams_and_assignment(api: Api, db: Database) -> None:
    team = await api(
        f'mutation {{ createTeam(input: {{name: "Inside sales"}}) {{ team {{ id name }} {ERRORS} }} }}'
    )
    team_id = team["createTeam"]["team"]["id"]
    make_user = f"mutation($i: UserInput!) {{ createUser(input: $i) {{ user {{ id name email kind team {{ name }} }} {ERRORS} }} }}"
    made = await api(
        make_user, {"i": {"name": "Sam", "email": " Sam@Sales.io ", "teamId": team_id}}
    )
    sam = made["createUser"]["user"]
    assert (sam["email"], sam["kind"], sam["team"]) == (
        "sam@sales.io",
        "SELLER",
        {"name": "Inside sales"},
    )
    dup = await api(make_user, {"i": {"name": "Sam 2", "email": "sam@sales.io"}})
    assert dup["createUser"]["userErrors"][0]["code"] == "DUPLICATE"
    bad = await api(make_user, {"i": {"name": "X", "email": "not-an-email"}})
    assert bad["createUser"]["userErrors"][0]["field"] == ["input", "email"]
    r = await api.post(make_user, {"i": {"name": "Y", "email": "y@s.io"}}, role=Role.SELLER)
    assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    lead = await new_lead(api, topic="Assigned")
    other = await new_lead(api, topic="Not mine")
    assign = f"mutation($id: ID!, $u: ID) {{ assignLead(id: $id, userId: $u) {{ lead {{ id owner {{ name }} }} {ERRORS} }} }}"
    done = await api(assign, {"id": lead["id"], "u": sam["id"]}, role=Role.SELLER)
    assert done["assignLead"]["lead"]["owner"] == {"name": "Sam"}
    again = await api(assign, {"id": lead["id"], "u": sam["id"]})
    assert again["assignLead"]["userErrors"] == []  # no change, no event
    missing = await api(assign, {"id": other["id"], "u": "VXNlcjo5OTk5"})
    assert missing["assignLead"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert [(k, p["ownerId"]) for k, p in await events(db, lead["id"])] == [
        ("ASSIGNED", from_global_id(sam["id"])[1])
    ]
    # The sellers' view: my sales-ready leads.
    await op(api, PROCESS, id=lead["id"], i={"salesReady": True})
    mine = await api(
        "query($o: ID!) { leads(filter: {ownerId: $o, salesReady: true}) { totalCount edges { node { topic } } } }",
        {"o": sam["id"]},
        role=Role.SELLER,
    )
    assert mine["leads"]["totalCount"] == 1
    assert mine["leads"]["edges"][0]["node"]["topic"] == "Assigned"
    people = await api(
        "{ users { totalCount } teams { edges { node { name } } } }", role=Role.VIEWER
    )
    assert people["users"]["totalCount"] == 1
    # Without a user, the assignment rules choose; none exist yet.
    no_rule = await api(assign, {"id": other["id"], "u": None})
    assert no_rule["assignLead"]["userErrors"][0]["code"] == "CONFLICT"


RULE = f"mutation($i: AssignmentRuleInput!) {{ createAssignmentRule(input: $i) {{ assignmentRule {{ id name strategy priority condition team {{ name }} }} {ERRORS} }} }}"


async def _team_of(api: Api, name: str, people: list[str]) -> tuple[str, list[str]]:
    team = await api(
        "mutation($n: String!) { createTeam(input: {name: $n}) { team { id } } }", {"n": name}
    )
    team_id = team["createTeam"]["team"]["id"]
    ids = []
    for person in people:
        made = await api(
            "mutation($i: UserInput!) { createUser(input: $i) { user { id } } }",
            {"i": {"name": person, "email": f"{person}@{name}.io", "teamId": team_id}},
        )
        ids.append(made["createUser"]["user"]["id"])
    return team_id, ids


async def test_rules_assign_leads_that_become_sales_ready(api: Api) -> None:
    enterprise, (ann,) = await _team_of(api, "enterprise", ["ann"])
    smb, (bob, cy) = await _team_of(api, "smb", ["bob", "cy"])
    cto = {"attribute": {"entity": "LEAD", "field": "jobTitle", "operator": "EQ", "value": "CTO"}}
    first = await api(RULE, {"i": {"name": "CTOs", "teamId": enterprise, "condition": cto}})
    assert first["createAssignmentRule"]["userErrors"] == []
    rest = await api(RULE, {"i": {"name": "Everyone else", "teamId": smb, "priority": 10}})
    assert rest["createAssignmentRule"]["assignmentRule"]["condition"] is None
    rule_id = rest["createAssignmentRule"]["assignmentRule"]["id"]
    found = await api(
        "query($id: ID!) { node(id: $id) { id ... on AssignmentRule { name } } }", {"id": rule_id}
    )
    assert found["node"] == {"id": rule_id, "name": "Everyone else"}
    bad = await api(RULE, {"i": {"name": "Bad", "teamId": smb, "condition": {"nope": 1}}})
    assert bad["createAssignmentRule"]["userErrors"][0]["code"] == "INVALID"
    owners = []
    for title in ("CTO", "Buyer", "Buyer", "Buyer"):
        lead = await new_lead(api, jobTitle=title)
        ready = await op(api, PROCESS, id=lead["id"], i={"salesReady": True})
        owners.append(ready["lead"]["id"])
    query = "query($id: ID!) { lead(id: $id) { owner { id } } }"
    got = [(await api(query, {"id": lead}))["lead"]["owner"]["id"] for lead in owners]
    assert got == [ann, bob, cy, bob]  # CTO → enterprise; the others in turn
    listed = await api("{ assignmentRules { name } }", role=Role.VIEWER)
    assert [r["name"] for r in listed["assignmentRules"]] == ["CTOs", "Everyone else"]
    # assignLead without a user asks the rules, also for a lead not sales-ready yet.
    waiting = await new_lead(api, jobTitle="CTO")
    asked = await api(
        "mutation($id: ID!) { assignLead(id: $id) { lead { owner { id } } userErrors { code } } }",
        {"id": waiting["id"]},
    )
    assert asked["assignLead"]["lead"]["owner"]["id"] == ann


async def test_stakeholders_and_competitors(api: Api) -> None:
    lead = await new_lead(api, topic="Committee")
    contact = await api(
        'mutation { createContact(input: {email: "cfo@x.io", firstName: "Cleo"}) { contact { id } } }'
    )
    contact_id = contact["createContact"]["contact"]["id"]
    add = f"mutation($l: ID!, $i: StakeholderInput!) {{ addStakeholder(leadId: $l, input: $i) {{ stakeholder {{ role contact {{ id }} }} {ERRORS} }} }}"
    first = await api(
        add,
        {"l": lead["id"], "i": {"contactId": contact_id, "role": "influencer"}},
        role=Role.SELLER,
    )
    assert first["addStakeholder"]["stakeholder"] == {
        "role": "influencer",
        "contact": {"id": contact_id},
    }
    await api(add, {"l": lead["id"], "i": {"contactId": contact_id, "role": "decision maker"}})
    empty = await api(add, {"l": lead["id"], "i": {"contactId": contact_id, "role": " "}})
    assert empty["addStakeholder"]["userErrors"][0]["field"] == ["input", "role"]
    missing = await api(add, {"l": lead["id"], "i": {"contactId": "Q29udGFjdDo5OTk5", "role": "x"}})
    assert missing["addStakeholder"]["userErrors"][0]["code"] == "NOT_FOUND"
    comp = await api(
        f'mutation($l: ID!) {{ addCompetitor(leadId: $l, input: {{name: "Globex", notes: "cheaper"}}) {{ competitor {{ id name notes }} {ERRORS} }} }}',
        {"l": lead["id"]},
    )
    competitor = comp["addCompetitor"]["competitor"]
    assert (competitor["name"], competitor["notes"]) == ("Globex", "cheaper")
    assert from_global_id(competitor["id"])[0] == "Competitor"  # a Relay global id
    found = await api(
        "query($id: ID!) { node(id: $id) { id ... on Competitor { name } } }",
        {"id": competitor["id"]},
    )
    assert found["node"] == {"id": competitor["id"], "name": "Globex"}
    plain = await api(
        f'mutation($l: ID!) {{ removeCompetitor(leadId: $l, competitorId: "1") {{ deletedId {ERRORS} }} }}',
        {"l": lead["id"]},
    )
    assert plain["removeCompetitor"]["userErrors"][0]["field"] == ["competitorId"]
    view = "query($id: ID!) { lead(id: $id) { stakeholders { role contact { id } } competitors { name } } }"
    got = await api(view, {"id": lead["id"]}, role=Role.VIEWER)
    assert got["lead"] == {
        "stakeholders": [{"role": "decision maker", "contact": {"id": contact_id}}],
        "competitors": [{"name": "Globex"}],
    }
    removed = await api(
        f"mutation($l: ID!, $c: ID!) {{ removeStakeholder(leadId: $l, contactId: $c) {{ deletedId {ERRORS} }} }}",
        {"l": lead["id"], "c": contact_id},
    )
    assert removed["removeStakeholder"]["deletedId"] == contact_id
    gone = await api(
        f"mutation($l: ID!, $c: ID!) {{ removeCompetitor(leadId: $l, competitorId: $c) {{ deletedId {ERRORS} }} }}",
        {"l": lead["id"], "c": competitor["id"]},
    )
    assert gone["removeCompetitor"]["deletedId"] == competitor["id"]
    again = await api(
        f"mutation($l: ID!, $c: ID!) {{ removeCompetitor(leadId: $l, competitorId: $c) {{ deletedId {ERRORS} }} }}",
        {"l": lead["id"], "c": competitor["id"]},
    )
    assert again["removeCompetitor"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert (await api(view, {"id": lead["id"]}))["lead"] == {"stakeholders": [], "competitors": []}
    r = await api.post(
        add, {"l": lead["id"], "i": {"contactId": contact_id, "role": "x"}}, role=Role.VIEWER
    )
    assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


LOG = f"mutation($i: ActivityInput!) {{ logActivity(input: $i) {{ activity {{ id kind subject occurredAt lead {{ id }} }} {ERRORS} }} }}"
TIMELINE = "query($id: ID!, $after: String) { lead(id: $id) { timeline(first: 3, after: $after) { edges { cursor node { at activity { subject kind } event { type } } } pageInfo { hasNextPage endCursor } } } }"


async def test_timeline_mixes_activities_and_events_newest_first(api: Api) -> None:
    import asyncio

    lead = await new_lead(api, topic="Timeline")
    times = ["2026-01-01T10:00:00Z", "2026-01-03T10:00:00Z", "2026-01-02T10:00:00Z"]
    for i, at in enumerate(times):
        logged = await api(
            LOG,
            {
                "i": {
                    "kind": ["PHONE_CALL", "NOTE", "TASK"][i],
                    "subject": f"a{i}",
                    "leadId": lead["id"],
                    "occurredAt": at,
                }
            },
            role=Role.SELLER,
        )
        assert logged["logActivity"]["userErrors"] == []
    await op(api, STAGE, id=lead["id"], s="SALES_ACCEPTANCE")  # an event, now
    seen: list[str] = []
    after = None
    for _ in range(250):  # events show once the relay has positioned them
        page = await api(TIMELINE, {"id": lead["id"], "after": None})
        first_node = page["lead"]["timeline"]["edges"][0]["node"]
        # Wait for the stage change itself: CREATED alone may be positioned first.
        if first_node["event"] and first_node["event"]["type"] == "STAGE_CHANGED":
            break
        await asyncio.sleep(0.02)
    while True:
        page = await api(TIMELINE, {"id": lead["id"], "after": after}, role=Role.VIEWER)
        conn = page["lead"]["timeline"]
        for edge in conn["edges"]:
            node = edge["node"]
            seen.append(node["event"]["type"] if node["event"] else node["activity"]["subject"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    # Newest first: the stage change (now), the lead's creation (now, earlier), then the
    # activities by their own times.
    assert seen == ["STAGE_CHANGED", "CREATED", "a1", "a2", "a0"]
    counted = await api(
        "query($id: ID!) { lead(id: $id) { timeline(first: 2) { totalCount } } }",
        {"id": lead["id"]},
    )
    assert counted["lead"]["timeline"]["totalCount"] == 5
    bad = await api.post(TIMELINE, {"id": lead["id"], "after": "nope"})
    assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    orphan = await api(LOG, {"i": {"kind": "NOTE", "subject": "about nothing"}})
    assert orphan["logActivity"]["userErrors"][0]["code"] == "INVALID"


async def test_a_received_email_becomes_a_lead(api: Api) -> None:
    contact = await api(
        'mutation { createContact(input: {email: "in@x.io", firstName: "Ines"}) { contact { id } } }'
    )
    contact_id = contact["createContact"]["contact"]["id"]
    email = await api(
        LOG,
        {
            "i": {
                "kind": "EMAIL",
                "direction": "INCOMING",
                "subject": "Quote for 40 robots?",
                "contactId": contact_id,
            }
        },
    )
    activity = email["logActivity"]["activity"]
    convert = f"mutation($id: ID!) {{ convertActivityToLead(id: $id) {{ lead {{ id topic email contact {{ id }} }} {ERRORS} }} }}"
    made = await api(convert, {"id": activity["id"]}, role=Role.SELLER)
    lead = made["convertActivityToLead"]["lead"]
    assert (lead["topic"], lead["email"], lead["contact"]["id"]) == (
        "Quote for 40 robots?",
        "in@x.io",
        contact_id,
    )
    source = await api(
        "query($id: ID!) { lead(id: $id) { source timeline { edges { node { activity { subject } } } } } }",
        {"id": lead["id"]},
    )
    assert source["lead"]["source"] == "ACTIVITY"
    assert {"activity": {"subject": "Quote for 40 robots?"}} in [
        e["node"] for e in source["lead"]["timeline"]["edges"]
    ]
    again = await api(convert, {"id": activity["id"]})
    assert again["convertActivityToLead"]["userErrors"][0]["code"] == "CONFLICT"
    note = await api(LOG, {"i": {"kind": "NOTE", "subject": "n", "contactId": contact_id}})
    refused = await api(convert, {"id": note["logActivity"]["activity"]["id"]})
    assert refused["convertActivityToLead"]["userErrors"][0]["code"] == "CONFLICT"


async def test_reminders_list_upcoming_appointments_and_tasks(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    _, (sam,) = await _team_of(api, "reminders", ["sam"])
    lead = await new_lead(api, topic="Busy week")
    now = datetime.now(UTC)

    async def log(kind: str, subject: str, hours: float, **extra: Any) -> None:
        at = (now + timedelta(hours=hours)).isoformat()
        body = {
            "kind": kind,
            "subject": subject,
            "leadId": lead["id"],
            "ownerId": sam,
            "occurredAt": at,
            **extra,
        }
        assert (await api(LOG, {"i": body}))["logActivity"]["userErrors"] == []

    await log("APPOINTMENT", "demo", 2)
    await log("TASK", "send quote", 5)
    await log("TASK", "done already", 1, completed=True)
    await log("NOTE", "not a reminder", 1)
    await log("TASK", "next week", 24 * 7)
    await log("APPOINTMENT", "yesterday", -24)
    query = "query($o: ID!, $h: Int!) { reminders(ownerId: $o, withinHours: $h) { subject kind } }"
    soon = await api(query, {"o": sam, "h": 24}, role=Role.SELLER)
    assert [r["subject"] for r in soon["reminders"]] == ["demo", "send quote"]
    week = await api(query, {"o": sam, "h": 24 * 8})
    assert [r["subject"] for r in week["reminders"]] == ["demo", "send quote", "next week"]
    bad = await api.post(query, {"o": sam, "h": 0})
    assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_lead_with_its_timeline_reads_ahead_with_the_same_answers(api: Api) -> None:
    """`lead(id:) { timeline }` reads the page with the lead (one read); the answers and errors
    are those of the timeline's own resolver, which a fragment (no read-ahead) still uses."""
    lead = await new_lead(api, topic="Ahead")
    for i in range(4):
        at = f"2026-02-0{i + 1}T10:00:00Z"
        logged = await api(
            LOG, {"i": {"kind": "NOTE", "subject": f"n{i}", "leadId": lead["id"], "occurredAt": at}}
        )
        assert logged["logActivity"]["userErrors"] == []
    page = "edges { cursor node { at activity { subject } } } pageInfo { hasNextPage endCursor }"
    plain = f"query($id: ID!, $n: Int, $a: String) {{ lead(id: $id) {{ topic timeline(first: $n, after: $a) {{ {page} }} }} }}"
    spread = f"query($id: ID!, $n: Int, $a: String) {{ lead(id: $id) {{ topic ... on Lead {{ timeline(first: $n, after: $a) {{ {page} }} }} }} }}"
    literal = f"query($id: ID!) {{ lead(id: $id) {{ timeline(first: 2, after: null) {{ {page} }} topic }} }}"
    both = f"query($id: ID!) {{ lead(id: $id) {{ x: timeline(first: 1) {{ {page} }} y: timeline {{ {page} }} }} }}"

    async def answer(query: str, **variables: Any) -> Any:
        return (await api.post(query, {"id": lead["id"], **variables})).json()

    for _ in range(250):  # the CREATED event shows once the relay has positioned it
        newest = (await answer(plain, n=1))["data"]["lead"]["timeline"]["edges"][0]["node"]
        if newest["activity"] is None:
            break
        await asyncio.sleep(0.02)
    first = await answer(plain, n=2, a=None)
    assert first == await answer(spread, n=2, a=None)
    assert first["data"]["lead"]["timeline"] == (await answer(literal))["data"]["lead"]["timeline"]
    after = first["data"]["lead"]["timeline"]["pageInfo"]["endCursor"]
    second = await answer(plain, n=2, a=after)
    assert second == await answer(spread, n=2, a=after)
    assert [
        e["node"]["activity"]["subject"] for e in second["data"]["lead"]["timeline"]["edges"]
    ] == ["n2", "n1"]
    assert (await answer(plain))["data"]["lead"]["timeline"]["edges"]  # no arguments: 50
    two = (await answer(both))["data"]["lead"]
    assert len(two["x"]["edges"]) == 1 and two["y"]["edges"][0] == two["x"]["edges"][0]
    huge = await answer(plain, n=10_000)  # capped, as every list is, not refused
    assert huge == await answer(spread, n=10_000) and "errors" not in huge
    for bad in ({"n": -1}, {"a": "nope"}):
        wrong, right = await answer(plain, **bad), await answer(spread, **bad)
        for e in wrong["errors"] + right["errors"]:
            e.pop("locations")  # the queries differ in their layout
        assert wrong == right and wrong["data"] == {"lead": None}
        assert wrong["errors"][0]["path"] == ["lead", "timeline"]
        assert wrong["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    missing = await api.post(plain, {"id": "TGVhZDo5OTk5OTk=", "n": 2})  # Lead:999999
    assert missing.json() == {"data": {"lead": None}}


async def test_a_closed_lead_is_not_worked_and_errors_name_the_argument(api: Api) -> None:
    lead = await new_lead(api, topic="Closed")
    assert (await op(api, DISQUALIFY, id=lead["id"], r="LOST"))["userErrors"] == []
    moved = await op(api, STAGE, id=lead["id"], s="SALES_ACCEPTANCE")
    assert moved["userErrors"][0]["code"] == "CONFLICT"
    assert "only an OPEN lead" in moved["userErrors"][0]["message"]
    by_rules = await op(
        api,
        f"mutation($id: ID!) {{ assignLead(id: $id) {{ lead {{ id }} {ERRORS} }} }}",
        id=lead["id"],
    )
    assert by_rules["userErrors"][0]["code"] == "CONFLICT"
    assert "give a userId" in by_rules["userErrors"][0]["message"]
    state = await api("query($id: ID!) { lead(id: $id) { stage } }", {"id": lead["id"]})
    assert state["lead"]["stage"] == "INQUIRY"
    # An unknown lead named by a leadId argument: the error names that argument.
    ghost = "TGVhZDo5OTk5OQ=="
    added = await op(
        api,
        f'mutation($l: ID!) {{ addCompetitor(leadId: $l, input: {{name: "Rival"}}) {{ {ERRORS} }} }}',
        l=ghost,
    )
    assert (added["userErrors"][0]["code"], added["userErrors"][0]["field"]) == (
        "NOT_FOUND",
        ["leadId"],
    )
    # An unknown owner is an error, not an empty work list.
    for query in (
        "query($o: ID!) { workList(ownerId: $o) { totalCount } }",
        "query($o: ID!) { reminders(ownerId: $o) { id } }",
    ):
        errors = await api.errors(query, {"o": "VXNlcjo5OTk5OQ=="})
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors


async def test_unticking_sales_ready_is_a_qualification_change(api: Api, db: Database) -> None:
    """Taking the sales-ready mark off by hand records a SALES_READY event with salesReady
    false and previousSalesReady true (ticking it: the reverse), so leadQualificationChanged
    and webhooks see it; unticking a box that was not ticked records nothing."""
    lead = await new_lead(api)
    await op(api, PROCESS, id=lead["id"], i={"salesReady": False})  # not ticked: no change
    await op(api, PROCESS, id=lead["id"], i={"salesReady": True})
    await op(api, PROCESS, id=lead["id"], i={"salesReady": False})
    marks = [p for kind, p in await events(db, lead["id"]) if kind == "SALES_READY"]
    assert [(p["salesReady"], p["previousSalesReady"]) for p in marks] == [
        (True, False),
        (False, True),
    ]
    query = (
        "query($id: ID!) { lead(id: $id) { timeline { edges { node { event {"
        " type salesReady previousSalesReady } } } } } }"
    )
    for _ in range(250):  # events show once the relay has positioned them
        edges = (await api(query, {"id": lead["id"]}))["lead"]["timeline"]["edges"]
        shown = [
            e["node"]["event"]
            for e in edges
            if (e["node"]["event"] or {}).get("type") == "SALES_READY"
        ]
        if len(shown) == 2:
            break
        await asyncio.sleep(0.02)
    assert shown == [
        {"type": "SALES_READY", "salesReady": False, "previousSalesReady": True},
        {"type": "SALES_READY", "salesReady": True, "previousSalesReady": False},
    ]

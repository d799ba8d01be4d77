"""Qualification models over GraphQL: lifecycle, publish backfill, ALL/ANY, preview, roles."""

from __future__ import annotations

import asyncio
from typing import Any

from domain.roles import Role
from tests.api.test_scoring import (
    DELETE as DELETE_SCORING,
)
from tests.api.test_scoring import (
    ERRORS,
    PUBLISH,
    STOP,
    VISITS,
    attribute,
    contact_and_lead,
    gid,
    live_model,
    model_op,
    record_many,
    rule,
    switch,
)
from tests.api.test_scoring import (
    create_model as create_scoring_model,
)
from tests.conftest import Api

QMODEL = "id name status version match publishedAt stoppedAt criteria { minScore scoringModel { id name } } actions { markMarketingQualified markSalesReady }"
Q_CREATE = f"mutation($i: QualificationModelInput!) {{ createQualificationModel(input: $i) {{ qualificationModel {{ {QMODEL} }} {ERRORS} }} }}"
Q_UPDATE = f"mutation($id: ID!, $i: QualificationModelInput!) {{ updateQualificationModel(id: $id, input: $i) {{ qualificationModel {{ {QMODEL} }} {ERRORS} }} }}"
Q_PUBLISH = f"mutation($id: ID!) {{ publishQualificationModel(id: $id) {{ qualificationModel {{ {QMODEL} }} {ERRORS} }} }}"
Q_STOP = f"mutation($id: ID!) {{ stopQualificationModel(id: $id) {{ qualificationModel {{ {QMODEL} }} {ERRORS} }} }}"
Q_DELETE = f"mutation($id: ID!) {{ deleteQualificationModel(id: $id) {{ deletedId {ERRORS} }} }}"
Q_PREVIEW = f"mutation($i: QualificationModelInput!) {{ previewQualificationModel(input: $i) {{ preview {{ evaluatedLeads wouldQualify sample(first: 5) {{ id statusReason }} }} {ERRORS} }} }}"
LEAD = "query($id: ID!) { lead(id: $id) { statusReason salesReady state } }"


def definition(
    criteria: list[tuple[str, float]],
    *,
    match: str = "ALL",
    mq: bool = True,
    sr: bool = False,
    name: str = "MQL",
) -> dict[str, Any]:
    return {
        "name": name,
        "match": match,
        "criteria": [{"scoringModelId": m, "minScore": s} for m, s in criteria],
        "actions": {"markMarketingQualified": mq, "markSalesReady": sr},
    }


async def q_create(api: Api, body: dict[str, Any], role: Role = Role.ADMIN) -> dict[str, Any]:
    data = await api(Q_CREATE, {"i": body}, role=role)
    return data["createQualificationModel"]


async def q_op(api: Api, query: str, model_id: str) -> dict[str, Any]:
    data = await api(query, {"id": model_id})
    return next(iter(data.values()))


async def lead_state(api: Api, lead_id: str) -> dict[str, Any]:
    data = await api(LEAD, {"id": lead_id})
    return data["lead"]


async def visits(api: Api, contact_id: str, n: int) -> None:
    result = await record_many(
        api, [{"contactId": contact_id, "type": "PAGE_VISITED"} for _ in range(n)]
    )
    assert result["userErrors"] == [], result


async def scored_world(api: Api) -> dict[str, Any]:
    """Two LIVE scoring models and three leads with different scores.

    engagement = 10 per visit; fit = 30 for a CTO.
    ada: 50 engagement, 30 fit; bob: 50 engagement, 0 fit; cy: 10 engagement, 30 fit.
    """
    await switch(api)
    engagement = await live_model(api, [VISITS])
    fit = await live_model(
        api, [rule("cto", 30, attribute("CONTACT", "jobTitle", "EQ", "CTO"))], name="Fit"
    )
    people = {}
    for name, title, n in (("ada", "CTO", 5), ("bob", "Buyer", 5), ("cy", "CTO", 1)):
        contact, lead = await contact_and_lead(api, f"{name}@q.io", jobTitle=title)
        await visits(api, contact, n)
        people[name] = lead
    return {"engagement": engagement["id"], "fit": fit["id"], **people}


async def test_feature_switch_guards_qualification(api: Api) -> None:
    await switch(api, False)
    created = await q_create(api, definition([(gid("ScoringModel", 1), 10)]))
    assert created["userErrors"][0]["code"] == "FEATURE_DISABLED"


async def test_lifecycle_and_validation(api: Api) -> None:
    await switch(api)
    draft = (await create_scoring_model(api, [VISITS]))["scoringModel"]
    body = definition([(draft["id"], 50)])
    created = await q_create(api, body)
    assert created["userErrors"] == []
    model = created["qualificationModel"]
    assert (model["status"], model["version"], model["match"]) == ("DRAFT", 0, "ALL")
    assert model["criteria"] == [
        {"minScore": 50.0, "scoringModel": {"id": draft["id"], "name": "Engagement"}}
    ]
    # Publishing needs every scoring model of the criteria LIVE.
    refused = await q_op(api, Q_PUBLISH, model["id"])
    assert refused["userErrors"][0]["code"] == "CONFLICT"
    assert "'Engagement' is DRAFT" in refused["userErrors"][0]["message"]
    assert (await model_op(api, PUBLISH, draft["id"]))["userErrors"] == []
    live = await q_op(api, Q_PUBLISH, model["id"])
    assert live["userErrors"] == []
    assert (live["qualificationModel"]["status"], live["qualificationModel"]["version"]) == (
        "LIVE",
        1,
    )
    # LIVE: no edit, no delete, no second publish; its scoring model can't stop or go.
    edit = await api(Q_UPDATE, {"id": model["id"], "i": body})
    assert edit["updateQualificationModel"]["userErrors"][0]["code"] == "CONFLICT"
    assert (await q_op(api, Q_DELETE, model["id"]))["userErrors"][0]["code"] == "CONFLICT"
    assert (await q_op(api, Q_PUBLISH, model["id"]))["userErrors"][0]["code"] == "CONFLICT"
    stop_scoring = await model_op(api, STOP, draft["id"])
    assert stop_scoring["userErrors"][0]["code"] == "CONFLICT"
    assert "'MQL'" in stop_scoring["userErrors"][0]["message"]
    # Stop, edit, publish again: a new version.
    assert (await q_op(api, Q_STOP, model["id"]))["qualificationModel"]["status"] == "STOPPED"
    edited = await api(
        Q_UPDATE, {"id": model["id"], "i": definition([(draft["id"], 70)], match="ANY")}
    )
    assert edited["updateQualificationModel"]["qualificationModel"]["match"] == "ANY"
    again = await q_op(api, Q_PUBLISH, model["id"])
    assert again["qualificationModel"]["version"] == 2
    # A scoring model still named by a (stopped) qualification model cannot be deleted.
    assert (await q_op(api, Q_STOP, model["id"]))["userErrors"] == []
    assert (await model_op(api, STOP, draft["id"]))["userErrors"] == []
    deleting = await model_op(api, DELETE_SCORING, draft["id"])
    assert deleting["userErrors"][0]["code"] == "CONFLICT"
    assert (await q_op(api, Q_DELETE, model["id"]))["deletedId"] == model["id"]
    assert (await model_op(api, DELETE_SCORING, draft["id"]))["userErrors"] == []
    listed = await api("{ qualificationModels { totalCount } }")
    assert listed["qualificationModels"]["totalCount"] == 0


async def test_invalid_definitions_are_user_errors(api: Api) -> None:
    await switch(api)
    model = (await create_scoring_model(api, [VISITS]))["scoringModel"]
    cases = [
        (definition([]), ["input", "criteria"], "INVALID"),
        (definition([("nope", 1)]), ["input", "criteria", "0", "scoringModelId"], "INVALID"),
        (
            definition([(gid("ScoringModel", 9999), 1)]),
            ["input", "criteria", "0", "scoringModelId"],
            "NOT_FOUND",
        ),
        (definition([(model["id"], 1), (model["id"], 2)]), ["input", "criteria", "1"], "INVALID"),
        (definition([(model["id"], 1)], mq=False, sr=False), ["input", "actions"], "INVALID"),
        (definition([(model["id"], 1)], name=" "), ["input", "name"], "INVALID"),
    ]
    for body, field, code in cases:
        created = await q_create(api, body)
        assert created["qualificationModel"] is None
        assert [(e["code"], e["field"]) for e in created["userErrors"]] == [(code, field)], body
    assert (await api("{ qualificationModels { totalCount } }"))["qualificationModels"][
        "totalCount"
    ] == 0


async def test_publish_backfills_all_versus_any(api: Api) -> None:
    w = await scored_world(api)
    both = definition([(w["engagement"], 50), (w["fit"], 30)], name="both")
    either = definition([(w["engagement"], 50), (w["fit"], 30)], match="ANY", sr=True)
    created = await q_create(api, both)
    assert (await q_op(api, Q_PUBLISH, created["qualificationModel"]["id"]))["userErrors"] == []
    states = {n: await lead_state(api, w[n]) for n in ("ada", "bob", "cy")}
    assert {n: s["statusReason"] for n, s in states.items()} == {
        "ada": "MARKETING_QUALIFIED",
        "bob": "NEW",
        "cy": "NEW",
    }
    assert not any(s["salesReady"] for s in states.values())
    created = await q_create(api, either)
    assert (await q_op(api, Q_PUBLISH, created["qualificationModel"]["id"]))["userErrors"] == []
    states = {n: await lead_state(api, w[n]) for n in ("ada", "bob", "cy")}
    assert all(s["statusReason"] == "MARKETING_QUALIFIED" for s in states.values())
    assert all(s["salesReady"] for s in states.values())


async def test_preview_counts_and_samples_without_changing_anything(api: Api) -> None:
    w = await scored_world(api)
    body = definition([(w["engagement"], 50)])
    data = await api(Q_PREVIEW, {"i": body})
    preview = data["previewQualificationModel"]
    assert preview["userErrors"] == []
    assert preview["preview"]["evaluatedLeads"] == 3
    assert preview["preview"]["wouldQualify"] == 2
    sampled = {lead["id"] for lead in preview["preview"]["sample"]}
    assert sampled == {w["ada"], w["bob"]}
    assert all(lead["statusReason"] == "NEW" for lead in preview["preview"]["sample"])
    for name in ("ada", "bob", "cy"):
        assert (await lead_state(api, w[name]))["statusReason"] == "NEW"
    assert (await api("{ qualificationModels { totalCount } }"))["qualificationModels"][
        "totalCount"
    ] == 0
    # Once the leads are marked, a preview of the same criteria has nothing left to do.
    created = await q_create(api, body)
    await q_op(api, Q_PUBLISH, created["qualificationModel"]["id"])
    again = (await api(Q_PREVIEW, {"i": body}))["previewQualificationModel"]["preview"]
    assert again["wouldQualify"] == 0
    bad = (await api(Q_PREVIEW, {"i": definition([])}))["previewQualificationModel"]
    assert bad["preview"] is None and bad["userErrors"][0]["code"] == "INVALID"


async def test_roles(api: Api) -> None:
    await switch(api)
    model = (await create_scoring_model(api, [VISITS]))["scoringModel"]
    body = definition([(model["id"], 10)])
    for role in (Role.VIEWER, Role.SELLER, Role.INTEGRATION):
        response = await api.post(Q_CREATE, {"i": body}, role=role)
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", role
    created = await q_create(api, body, role=Role.MARKETER)
    assert created["userErrors"] == []
    got = await api(
        "query($id: ID!) { node(id: $id) { ... on QualificationModel { name } } }",
        {"id": created["qualificationModel"]["id"]},
        role=Role.VIEWER,
    )
    assert got["node"] == {"name": "MQL"}


async def test_each_score_change_qualifies_in_the_same_transaction(api: Api) -> None:
    w = await scored_world(api)
    body = definition([(w["engagement"], 50), (w["fit"], 30)], sr=True)
    created = await q_create(api, body)
    await q_op(api, Q_PUBLISH, created["qualificationModel"]["id"])
    assert (await lead_state(api, w["cy"]))["statusReason"] == "NEW"
    cy = await api("query($id: ID!) { lead(id: $id) { contact { id } } }", {"id": w["cy"]})
    # One lead re-scored by the Python evaluator: 10 → 50 engagement qualifies it at once.
    await visits(api, cy["lead"]["contact"]["id"], 4)
    assert await lead_state(api, w["cy"]) == {
        "statusReason": "MARKETING_QUALIFIED",
        "salesReady": True,
        "state": "OPEN",
    }
    # Many leads at once (the set-based path): 20 CTOs with no visits yet, 5 visits each.
    contacts, leads = [], []
    for i in range(20):
        contact, lead = await contact_and_lead(api, f"cto{i}@q.io", jobTitle="CTO")
        contacts.append(contact)
        leads.append(lead)
    for lead in leads:
        assert (await lead_state(api, lead))["statusReason"] == "NEW"
    batch = [{"contactId": c, "type": "PAGE_VISITED"} for c in contacts for _ in range(5)]
    assert (await record_many(api, batch))["userErrors"] == []
    for lead in leads:
        assert await lead_state(api, lead) == {
            "statusReason": "MARKETING_QUALIFIED",
            "salesReady": True,
            "state": "OPEN",
        }


async def test_stopped_models_qualify_nothing_new(api: Api) -> None:
    w = await scored_world(api)
    created = await q_create(api, definition([(w["engagement"], 60)]))
    model_id = created["qualificationModel"]["id"]
    await q_op(api, Q_PUBLISH, model_id)
    await q_op(api, Q_STOP, model_id)
    cy = await api("query($id: ID!) { lead(id: $id) { contact { id } } }", {"id": w["cy"]})
    await visits(api, cy["lead"]["contact"]["id"], 8)
    assert (await lead_state(api, w["cy"]))["statusReason"] == "NEW"


async def test_qualification_events_name_their_model(api: Api) -> None:
    w = await scored_world(api)
    created = await q_create(api, definition([(w["engagement"], 50)], sr=True))
    model_id = created["qualificationModel"]["id"]
    await q_op(api, Q_PUBLISH, model_id)
    query = "query($l: ID!) { leadEvents(leadId: $l, types: [MARKETING_QUALIFIED, SALES_READY]) { edges { node { type statusReason previousStatusReason salesReady qualificationModel { id name } } } } }"
    for _ in range(250):  # events are listed once the relay has positioned them
        edges = (await api(query, {"l": w["ada"]}))["leadEvents"]["edges"]
        if len(edges) == 2:
            break
        await asyncio.sleep(0.02)
    nodes = [e["node"] for e in edges]
    assert [n["type"] for n in nodes] == ["MARKETING_QUALIFIED", "SALES_READY"]
    assert all(n["qualificationModel"] == {"id": model_id, "name": "MQL"} for n in nodes)
    assert (nodes[0]["statusReason"], nodes[0]["previousStatusReason"]) == (
        "MARKETING_QUALIFIED",
        "NEW",
    )
    assert nodes[1]["salesReady"] is True


async def test_a_mark_taken_off_by_hand_comes_back_only_when_criteria_newly_hold(
    api: Api,
) -> None:
    """A qualification model marks a lead when its criteria newly hold; a lead reactivated
    starts over, so what holds then marks it (also a threshold crossed while it was closed)."""
    world = await scored_world(api)
    made = await q_create(api, definition([(world["engagement"], 20)], mq=False, sr=True))
    assert (await q_op(api, Q_PUBLISH, made["qualificationModel"]["id"]))["userErrors"] == []
    ada = world["ada"]
    assert (await lead_state(api, ada))["salesReady"] is True
    untick = "mutation($id: ID!) { updateLeadProcess(id: $id, input: {salesReady: false}) { userErrors { code } } }"
    assert (await api(untick, {"id": ada}))["updateLeadProcess"]["userErrors"] == []
    # An edit and a visit: the criteria held before and still do; the mark stays off.
    edit = 'mutation($id: ID!) { updateLead(id: $id, input: {topic: "t", phone: "123"}) { userErrors { code } } }'
    assert (await api(edit, {"id": ada}))["updateLead"]["userErrors"] == []
    contact = await api("query($id: ID!) { lead(id: $id) { contact { id } } }", {"id": ada})
    await visits(api, contact["lead"]["contact"]["id"], 1)
    assert (await lead_state(api, ada))["salesReady"] is False
    # Closed, then open again: the criteria hold, so the lead is marked once more.
    lost = "mutation($id: ID!) { disqualifyLead(id: $id, reason: LOST) { userErrors { code } } }"
    assert (await api(lost, {"id": ada}))["disqualifyLead"]["userErrors"] == []
    back = (
        "mutation($id: ID!) { reactivateLead(id: $id) { lead { salesReady } userErrors { code } } }"
    )
    again = (await api(back, {"id": ada}))["reactivateLead"]
    assert again["userErrors"] == [] and again["lead"]["salesReady"] is True

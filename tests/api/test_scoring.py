"""Scoring over GraphQL: models through their lifecycle, interactions, scores and explanations."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.roles import Role
from tests.conftest import Api

ERRORS = "userErrors { code field message }"
MODEL = "id name status version publishedAt stoppedAt salesReadyThreshold rules { id name points perOccurrence maxPoints condition } grades { name minScore }"
SCORE = "score salesReady updatedAt grade scoringModel { id } breakdown { rule { id name points } points occurrences expiresAt }"
INTERACTION = "id type name occurredAt properties contact { id email }"

CREATE = f"mutation($i: ScoringModelInput!) {{ createScoringModel(input: $i) {{ scoringModel {{ {MODEL} }} {ERRORS} }} }}"
UPDATE = f"mutation($id: ID!, $i: ScoringModelInput!) {{ updateScoringModel(id: $id, input: $i) {{ scoringModel {{ {MODEL} }} {ERRORS} }} }}"
PUBLISH = f"mutation($id: ID!) {{ publishScoringModel(id: $id) {{ scoringModel {{ {MODEL} }} {ERRORS} }} }}"
STOP = (
    f"mutation($id: ID!) {{ stopScoringModel(id: $id) {{ scoringModel {{ {MODEL} }} {ERRORS} }} }}"
)
DELETE = f"mutation($id: ID!) {{ deleteScoringModel(id: $id) {{ deletedId {ERRORS} }} }}"
RECORD = f"mutation($i: RecordInteractionInput!) {{ recordInteraction(input: $i) {{ interactions {{ {INTERACTION} }} {ERRORS} }} }}"
RECORD_MANY = f"mutation($i: [RecordInteractionInput!]!) {{ recordInteractions(inputs: $i) {{ interactions {{ {INTERACTION} }} {ERRORS} }} }}"
LEAD_SCORE = f"query($lead: ID!, $model: ID!) {{ lead(id: $lead) {{ salesReady scorable score(scoringModelId: $model) {{ {SCORE} }} scores {{ score scoringModel {{ id }} }} }} }}"
MODEL_COUNT = "{ scoringModels { totalCount } }"


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


# ---------------------------------------------------------------- rule builders


def interaction(type_: str, **extra: Any) -> dict[str, Any]:
    return {"interaction": {"type": type_, **extra}}


def attribute(entity: str, field: str, operator: str, value: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"entity": entity, "field": field, "operator": operator}
    if value is not None:
        body["value"] = value
    return {"attribute": body}


def rule(name: str, points: float, condition: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "points": points, "condition": condition, **extra}


VISITS = rule("visits", 10, interaction("PAGE_VISITED"), perOccurrence=True)


# ---------------------------------------------------------------- API helpers


async def switch(api: Api, enabled: bool = True) -> None:
    data = await api(
        "mutation($on: Boolean!) { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: $on) { settings { leadManagementEnabled } } }",
        {"on": enabled},
    )
    assert data["setFeatureSwitch"]["settings"]["leadManagementEnabled"] is enabled


async def create_model(
    api: Api, rules: list[dict[str, Any]], *, role: Role = Role.ADMIN, **extra: Any
) -> dict[str, Any]:
    data = await api(CREATE, {"i": {"name": "Engagement", "rules": rules, **extra}}, role=role)
    return data["createScoringModel"]


async def model_op(api: Api, query: str, model_id: str, role: Role = Role.ADMIN) -> dict[str, Any]:
    data = await api(query, {"id": model_id}, role=role)
    return next(iter(data.values()))


async def live_model(api: Api, rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    created = await create_model(api, rules, **extra)
    assert created["userErrors"] == [], created
    published = await model_op(api, PUBLISH, created["scoringModel"]["id"])
    assert published["userErrors"] == [], published
    model: dict[str, Any] = published["scoringModel"]
    assert model["status"] == "LIVE"
    return model


async def record(api: Api, *, role: Role = Role.ADMIN, **inp: Any) -> dict[str, Any]:
    data = await api(RECORD, {"i": inp}, role=role)
    return data["recordInteraction"]


async def record_many(api: Api, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    data = await api(RECORD_MANY, {"i": inputs})
    return data["recordInteractions"]


async def create_account(api: Api, name: str = "Northwind", **values: Any) -> dict[str, Any]:
    data = await api(
        f"mutation($i: AccountInput!) {{ createAccount(input: $i) {{ account {{ id }} {ERRORS} }} }}",
        {"i": {"name": name, **values}},
    )
    assert data["createAccount"]["userErrors"] == [], data
    return data["createAccount"]["account"]


async def create_contact(api: Api, email: str, **values: Any) -> dict[str, Any]:
    data = await api(
        f"mutation($i: ContactInput!) {{ createContact(input: $i) {{ contact {{ id email }} {ERRORS} }} }}",
        {"i": {"email": email, **values}},
    )
    assert data["createContact"]["userErrors"] == [], data
    return data["createContact"]["contact"]


async def create_lead(api: Api, **values: Any) -> dict[str, Any]:
    data = await api(
        f"mutation($i: LeadInput!) {{ createLead(input: $i) {{ lead {{ id scorable salesReady }} {ERRORS} }} }}",
        {"i": {"topic": "Interest", **values}},
    )
    assert data["createLead"]["userErrors"] == [], data
    return data["createLead"]["lead"]


async def contact_and_lead(api: Api, email: str, **contact: Any) -> tuple[str, str]:
    c = await create_contact(api, email, **contact)
    lead = await create_lead(api, contactId=c["id"])
    return c["id"], lead["id"]


async def lead_score(api: Api, lead_id: str, model_id: str) -> dict[str, Any] | None:
    """The lead's score for a model; checks that the score is the sum of its breakdown."""
    data = await api(LEAD_SCORE, {"lead": lead_id, "model": model_id})
    score: dict[str, Any] | None = data["lead"]["score"]
    if score is not None:
        assert score["score"] == sum(c["points"] for c in score["breakdown"]), score
        assert score["scoringModel"]["id"] == model_id
    return score


async def points(api: Api, lead_id: str, model_id: str) -> float | None:
    score = await lead_score(api, lead_id, model_id)
    return None if score is None else score["score"]


def by_rule(score: dict[str, Any]) -> dict[str, tuple[float, int]]:
    return {c["rule"]["name"]: (c["points"], c["occurrences"]) for c in score["breakdown"]}


async def interaction_count(api: Api, contact_id: str) -> int:
    data = await api(
        "query($id: ID!) { contact(id: $id) { interactions { totalCount } } }", {"id": contact_id}
    )
    count: int = data["contact"]["interactions"]["totalCount"]
    return count


def iso(moment: datetime) -> str:
    return moment.isoformat()


# ---------------------------------------------------------------- the feature switch


async def test_model_mutations_need_lead_management(api: Api) -> None:
    created = await create_model(api, [VISITS])
    assert created["scoringModel"] is None
    [error] = created["userErrors"]
    assert error["code"] == "FEATURE_DISABLED"
    assert "setFeatureSwitch" in error["message"]
    # A model made while the switch was on cannot change while it is off.
    await switch(api, True)
    model = (await create_model(api, [VISITS]))["scoringModel"]
    await switch(api, False)
    for target in (model["id"], gid("ScoringModel", 999)):
        for query in (PUBLISH, STOP, DELETE):
            payload = await model_op(api, query, target)
            assert [e["code"] for e in payload["userErrors"]] == ["FEATURE_DISABLED"], query
        updated = await api(UPDATE, {"id": target, "i": {"name": "x", "rules": [VISITS]}})
        assert updated["updateScoringModel"]["scoringModel"] is None
        assert [e["code"] for e in updated["updateScoringModel"]["userErrors"]] == [
            "FEATURE_DISABLED"
        ]
    data = await api(
        f"query($id: ID!) {{ scoringModel(id: $id) {{ {MODEL} }} }}", {"id": model["id"]}
    )
    assert data["scoringModel"]["status"] == "DRAFT"
    assert data["scoringModel"]["name"] == "Engagement"
    assert (await api(MODEL_COUNT))["scoringModels"]["totalCount"] == 1


async def test_interactions_are_recorded_but_not_scored_while_switched_off(api: Api) -> None:
    contact_id, lead_id = await contact_and_lead(api, "off@x.io")
    # Never switched on: recording works, nothing is scored.
    r = await record(api, type="PAGE_VISITED", contactId=contact_id)
    assert r["userErrors"] == [] and len(r["interactions"]) == 1
    data = await api(LEAD_SCORE, {"lead": lead_id, "model": gid("ScoringModel", 1)})
    assert data["lead"]["scores"] == [] and data["lead"]["score"] is None
    # A LIVE model scores while the switch is on, then freezes when it is turned off.
    await switch(api, True)
    model = await live_model(api, [VISITS])
    assert await points(api, lead_id, model["id"]) == 10
    await record(api, type="PAGE_VISITED", contactId=contact_id)
    assert await points(api, lead_id, model["id"]) == 20
    await switch(api, False)
    r = await record(api, type="PAGE_VISITED", contactId=contact_id)
    assert r["userErrors"] == [] and r["interactions"][0]["type"] == "PAGE_VISITED"
    assert await interaction_count(api, contact_id) == 3
    assert await points(api, lead_id, model["id"]) == 20
    # Leads made while it was off are scored too once it is back on, and what was recorded
    # meanwhile counts from then on.
    other_contact, other_lead = await contact_and_lead(api, "later@x.io")
    await record(api, type="PAGE_VISITED", contactId=other_contact)
    assert await points(api, other_lead, model["id"]) is None
    await switch(api, True)
    assert await points(api, lead_id, model["id"]) == 30
    assert await points(api, other_lead, model["id"]) == 10


# ---------------------------------------------------------------- model validation

PATH = ["input", "rules", "0", "condition"]
BAD_MODELS: list[tuple[str, list[dict[str, Any]], list[str], str]] = [
    (
        "a field the process sets from the scores",
        [rule("r", 1, attribute("LEAD", "stage", "EQ", "INQUIRY"))],
        [*PATH, "attribute", "field"],
        "a scoring rule cannot depend on it",
    ),
    (
        "a boolean value",
        [rule("r", 1, attribute("LEAD", "attributes.vip", "EQ", True))],
        [*PATH, "attribute", "value"],
        "true and false are not compared",
    ),
    (
        "the status reason qualification sets",
        [rule("r", 1, {"not": attribute("LEAD", "statusReason", "EQ", "NEW")})],
        [*PATH, "not", "attribute", "field"],
        "a scoring rule cannot depend on it",
    ),
    (
        "unknown field",
        [rule("r", 1, attribute("CONTACT", "shoeSize", "EQ", "42"))],
        [*PATH, "attribute", "field"],
        "'shoeSize' is not a CONTACT field",
    ),
    (
        "GT on text",
        [rule("r", 1, attribute("CONTACT", "jobTitle", "GT", 5))],
        [*PATH, "attribute", "operator"],
        "GT applies to number fields only",
    ),
    (
        "CONTAINS on a number",
        [rule("r", 1, attribute("ACCOUNT", "employeeCount", "CONTAINS", "5"))],
        [*PATH, "attribute", "operator"],
        "CONTAINS applies to text fields only",
    ),
    (
        "text for a number field",
        [rule("r", 1, attribute("ACCOUNT", "employeeCount", "EQ", "many"))],
        [*PATH, "attribute", "value"],
        "expected a number",
    ),
    (
        "number for a text field",
        [rule("r", 1, attribute("LEAD", "jobTitle", "EQ", 7))],
        [*PATH, "attribute", "value"],
        "expected a string",
    ),
    (
        "empty IN list",
        [rule("r", 1, attribute("LEAD", "jobTitle", "IN", []))],
        [*PATH, "attribute", "value"],
        "IN needs a list",
    ),
    (
        "BETWEEN upside down",
        [rule("r", 1, attribute("ACCOUNT", "employeeCount", "BETWEEN", [10, 1]))],
        [*PATH, "attribute", "value"],
        "low ≤ high",
    ),
    (
        "EQ without a value",
        [rule("r", 1, attribute("CONTACT", "jobTitle", "EQ"))],
        [*PATH, "attribute", "value"],
        "EQ needs a value",
    ),
    (
        "perOccurrence on an attribute",
        [rule("r", 1, attribute("CONTACT", "jobTitle", "IS_SET"), perOccurrence=True)],
        ["input", "rules", "0", "perOccurrence"],
        "perOccurrence",
    ),
    (
        "perOccurrence on a group",
        [rule("r", 1, {"all": [interaction("PAGE_VISITED")]}, perOccurrence=True)],
        ["input", "rules", "0", "perOccurrence"],
        "perOccurrence",
    ),
    (
        "duplicate rule names",
        [VISITS, rule("VISITS", 2, interaction("EMAIL_OPENED"))],
        ["input", "rules", "1", "name"],
        "unique",
    ),
    (
        "nested unknown field",
        [
            VISITS,
            rule(
                "r",
                1,
                {"all": [interaction("EMAIL_OPENED"), attribute("CONTACT", "fax", "IS_SET")]},
            ),
        ],
        ["input", "rules", "1", "condition", "all", "1", "attribute", "field"],
        "'fax' is not a CONTACT field",
    ),
    (
        "unknown field under not",
        [rule("r", 1, {"not": attribute("LEAD", "shoeSize", "IS_SET")})],
        [*PATH, "not", "attribute", "field"],
        "'shoeSize' is not a LEAD field",
    ),
    (
        "withinDays 0",
        [rule("r", 1, interaction("PAGE_VISITED", withinDays=0))],
        [*PATH, "interaction", "withinDays"],
        "withinDays",
    ),
    (
        "minCount 0",
        [rule("r", 1, interaction("PAGE_VISITED", minCount=0))],
        [*PATH, "interaction", "minCount"],
        "minCount",
    ),
    (
        "number operator on a text property",
        [
            rule(
                "r",
                1,
                interaction(
                    "PAGE_VISITED", properties=[{"key": "path", "operator": "GT", "value": "x"}]
                ),
            )
        ],
        [*PATH, "interaction", "properties", "0", "value"],
        "expected a number",
    ),
    (
        "negative maxPoints",
        [rule("r", 5, interaction("PAGE_VISITED"), maxPoints=-1)],
        ["input", "rules", "0", "maxPoints"],
        "maxPoints",
    ),
    (
        "blank rule name",
        [rule("  ", 5, interaction("PAGE_VISITED"))],
        ["input", "rules", "0", "name"],
        "name",
    ),
]


async def test_invalid_models_are_refused_with_the_field_path_and_nothing_is_stored(
    api: Api,
) -> None:
    await switch(api)
    for case, rules, field, message in BAD_MODELS:
        payload = await create_model(api, rules)
        assert payload["scoringModel"] is None, case
        assert len(payload["userErrors"]) == 1, (case, payload["userErrors"])
        [error] = payload["userErrors"]
        assert error["code"] == "INVALID", case
        assert error["field"] == field, (case, error)
        assert message in error["message"], (case, error)
    assert (await api(MODEL_COUNT))["scoringModels"]["totalCount"] == 0


async def test_unknown_field_message_names_the_allowed_fields(api: Api) -> None:
    await switch(api)
    for entity, expected in (
        ("CONTACT", ["email", "firstName", "jobTitle", "lastName", "phone", "country"]),
        ("ACCOUNT", ["annualRevenue", "employeeCount", "industry", "name", "website"]),
        ("LEAD", ["companyName", "marketingContext", "source", "state", "topic"]),
    ):
        payload = await create_model(api, [rule("r", 1, attribute(entity, "shoe", "IS_SET"))])
        message = payload["userErrors"][0]["message"]
        for name in [*expected, "attributes.<key>"]:
            assert name in message, (entity, name, message)


async def test_every_problem_is_reported_at_once(api: Api) -> None:
    await switch(api)
    payload = await create_model(
        api,
        [
            rule("a", 1, attribute("CONTACT", "jobTitle", "GT", 1)),
            rule("b", 1, attribute("ACCOUNT", "nope", "IS_SET")),
        ],
        grades=[{"name": "A", "minScore": 10}, {"name": "a", "minScore": 20}],
    )
    fields = sorted(tuple(e["field"]) for e in payload["userErrors"])
    assert fields == [
        ("input", "grades"),
        (*PATH, "attribute", "operator"),
        ("input", "rules", "1", "condition", "attribute", "field"),
    ]
    assert (await api(MODEL_COUNT))["scoringModels"]["totalCount"] == 0


async def test_an_update_is_validated_like_a_create(api: Api) -> None:
    await switch(api)
    model = (await create_model(api, [VISITS]))["scoringModel"]
    bad = [rule("r", 1, attribute("CONTACT", "jobTitle", "LT", 3))]
    data = await api(UPDATE, {"id": model["id"], "i": {"name": "Changed", "rules": bad}})
    payload = data["updateScoringModel"]
    assert payload["scoringModel"] is None
    assert payload["userErrors"][0]["field"] == [*PATH, "attribute", "operator"]
    got = await api(
        f"query($id: ID!) {{ scoringModel(id: $id) {{ {MODEL} }} }}", {"id": model["id"]}
    )
    assert got["scoringModel"]["name"] == "Engagement"
    assert [r["name"] for r in got["scoringModel"]["rules"]] == ["visits"]


# ---------------------------------------------------------------- lifecycle


async def test_model_lifecycle(api: Api) -> None:
    await switch(api)
    contact_id, lead_id = await contact_and_lead(api, "life@x.io")
    await record(api, type="PAGE_VISITED", contactId=contact_id)

    draft = await create_model(api, [VISITS], description="visits count", salesReadyThreshold=50)
    assert draft["userErrors"] == []
    model = draft["scoringModel"]
    assert (model["status"], model["version"], model["publishedAt"]) == ("DRAFT", 0, None)
    assert model["rules"][0]["condition"] == {
        "interaction": {"type": "PAGE_VISITED", "minCount": 1}
    }
    assert model["rules"][0]["perOccurrence"] is True
    mid = model["id"]
    assert await points(api, lead_id, mid) is None  # a draft scores nothing

    published = await model_op(api, PUBLISH, mid)
    assert published["userErrors"] == []
    live = published["scoringModel"]
    assert (live["status"], live["version"]) == ("LIVE", 1)
    assert live["publishedAt"] is not None and live["stoppedAt"] is None
    assert await points(api, lead_id, mid) == 10
    listed = await api("{ scoringModels(status: LIVE) { totalCount edges { node { id } } } }")
    assert [e["node"]["id"] for e in listed["scoringModels"]["edges"]] == [mid]

    again = await model_op(api, PUBLISH, mid)
    assert [e["code"] for e in again["userErrors"]] == ["CONFLICT"]
    changed = {"name": "Engagement v2", "rules": [{**VISITS, "points": 3}]}
    while_live = (await api(UPDATE, {"id": mid, "i": changed}))["updateScoringModel"]
    assert while_live["scoringModel"] is None
    assert while_live["userErrors"][0]["code"] == "CONFLICT"
    assert while_live["userErrors"][0]["field"] == ["id"]
    deleting = await model_op(api, DELETE, mid)
    assert deleting["deletedId"] is None
    assert [e["code"] for e in deleting["userErrors"]] == ["CONFLICT"]

    stopped = (await model_op(api, STOP, mid))["scoringModel"]
    assert stopped["status"] == "STOPPED" and stopped["stoppedAt"] is not None
    frozen = await lead_score(api, lead_id, mid)
    assert frozen is not None and frozen["score"] == 10
    await record(api, type="PAGE_VISITED", contactId=contact_id)
    after = await lead_score(api, lead_id, mid)
    assert after == frozen  # same score, same breakdown, same updatedAt
    assert [e["code"] for e in (await model_op(api, STOP, mid))["userErrors"]] == ["CONFLICT"]

    edited = (await api(UPDATE, {"id": mid, "i": changed}))["updateScoringModel"]
    assert edited["userErrors"] == []
    assert edited["scoringModel"]["status"] == "STOPPED"
    assert edited["scoringModel"]["name"] == "Engagement v2"
    assert edited["scoringModel"]["rules"][0]["points"] == 3
    # The stored score is still explained by the rules of the version that made it.
    kept = await lead_score(api, lead_id, mid)
    assert kept is not None and kept["score"] == 10
    assert kept["breakdown"][0]["rule"]["points"] == 10

    republished = (await model_op(api, PUBLISH, mid))["scoringModel"]
    assert (republished["status"], republished["version"]) == ("LIVE", 2)
    assert republished["stoppedAt"] is None
    # Re-scored with the new rules, counting the interaction recorded while stopped.
    rescored = await lead_score(api, lead_id, mid)
    assert rescored is not None
    assert rescored["score"] == 6
    assert by_rule(rescored) == {"visits": (6, 2)}

    assert (await model_op(api, STOP, mid))["userErrors"] == []
    deleted = await model_op(api, DELETE, mid)
    assert deleted == {"deletedId": mid, "userErrors": []}
    gone = await api("query($id: ID!) { scoringModel(id: $id) { id } }", {"id": mid})
    assert gone["scoringModel"] is None
    data = await api(LEAD_SCORE, {"lead": lead_id, "model": mid})
    assert data["lead"]["scores"] == [] and data["lead"]["score"] is None


async def test_lifecycle_conflicts_and_bad_ids(api: Api) -> None:
    await switch(api)
    draft = (await create_model(api, [VISITS]))["scoringModel"]
    stop_draft = await model_op(api, STOP, draft["id"])
    assert stop_draft["scoringModel"] is None
    assert stop_draft["userErrors"][0]["code"] == "CONFLICT"
    assert "DRAFT" in stop_draft["userErrors"][0]["message"]
    empty = (await create_model(api, [], name="Empty"))["scoringModel"]
    no_rules = await model_op(api, PUBLISH, empty["id"])
    assert [(e["code"], e["field"]) for e in no_rules["userErrors"]] == [("INVALID", ["id"])]

    unknown = gid("ScoringModel", 999_999)
    for query in (PUBLISH, STOP, DELETE):
        payload = await model_op(api, query, unknown)
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("NOT_FOUND", ["id"])]
    upd = await api(UPDATE, {"id": unknown, "i": {"name": "x", "rules": [VISITS]}})
    assert [e["code"] for e in upd["updateScoringModel"]["userErrors"]] == ["NOT_FOUND"]

    for bad in ("not-an-id", gid("Contact", 1)):
        for query in (PUBLISH, STOP, DELETE):
            payload = await model_op(api, query, bad)
            assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
                ("INVALID", ["id"])
            ], (bad, query)
        upd = await api(UPDATE, {"id": bad, "i": {"name": "x", "rules": [VISITS]}})
        assert [e["code"] for e in upd["updateScoringModel"]["userErrors"]] == ["INVALID"]
    errors = await api.errors('{ scoringModel(id: "nope") { id } }')
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Nothing changed.
    data = await api(
        f"query($id: ID!) {{ scoringModel(id: $id) {{ {MODEL} }} }}", {"id": draft["id"]}
    )
    assert data["scoringModel"]["status"] == "DRAFT"


# ---------------------------------------------------------------- publishing


async def test_publishing_scores_every_scorable_lead_including_account_based_ones(api: Api) -> None:
    await switch(api)
    account = await create_account(api)
    c1 = await create_contact(api, "one@northwind.io", accountId=account["id"])
    c2 = await create_contact(api, "two@northwind.io", accountId=account["id"])
    c3 = await create_contact(api, "solo@x.io")
    c4 = await create_contact(api, "quiet@x.io")
    by_contact = await create_lead(api, contactId=c1["id"])
    by_account = await create_lead(api, accountId=account["id"])
    solo = await create_lead(api, contactId=c3["id"])
    quiet = await create_lead(api, contactId=c4["id"])
    orphan = await create_lead(api, topic="Nobody's")
    assert by_account["scorable"] is True
    assert orphan["scorable"] is False
    visits = [c1["id"]] * 2 + [c2["id"]] * 3 + [c3["id"]]
    done = await record_many(api, [{"type": "PAGE_VISITED", "contactId": c} for c in visits])
    assert done["userErrors"] == [] and len(done["interactions"]) == 6

    model = await live_model(api, [VISITS])
    mid = model["id"]
    assert await points(api, by_contact["id"], mid) == 20  # its own contact only
    assert await points(api, by_account["id"], mid) == 50  # every contact of the account
    assert await points(api, solo["id"], mid) == 10
    quiet_score = await lead_score(api, quiet["id"], mid)
    assert quiet_score is not None
    assert (quiet_score["score"], quiet_score["breakdown"]) == (0, [])
    data = await api(LEAD_SCORE, {"lead": orphan["id"], "model": mid})
    assert data["lead"] == {"salesReady": False, "scorable": False, "score": None, "scores": []}
    scored = await api(
        "query($m: ID!) { leads(filter: {minScore: {scoringModelId: $m, min: 0}}) { totalCount } }",
        {"m": mid},
    )
    assert scored["leads"]["totalCount"] == 4

    # A new interaction of any account contact re-scores the account-based lead at once.
    await record(api, type="PAGE_VISITED", contactId=c2["id"])
    account_score = await lead_score(api, by_account["id"], mid)
    assert account_score is not None
    assert by_rule(account_score) == {"visits": (60, 6)}
    assert await points(api, by_contact["id"], mid) == 20


# ---------------------------------------------------------------- recording interactions


async def test_record_by_contact_id_and_by_normalised_email(api: Api) -> None:
    contact = await create_contact(api, "ada@example.com")
    by_id = await record(
        api,
        type="EMAIL_OPENED",
        contactId=contact["id"],
        name=" Newsletter 12 ",
        properties={"campaign": "spring"},
        occurredAt="2026-01-02T03:04:05+00:00",
    )
    assert by_id["userErrors"] == []
    [i] = by_id["interactions"]
    assert i["type"] == "EMAIL_OPENED" and i["name"] == "Newsletter 12"
    assert i["properties"] == {"campaign": "spring"}
    assert datetime.fromisoformat(i["occurredAt"]) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert i["contact"] == contact
    by_email = await record(api, type="PAGE_VISITED", contactEmail="  ADA@Example.COM ")
    assert by_email["userErrors"] == []
    assert by_email["interactions"][0]["contact"]["id"] == contact["id"]
    node = await api(
        "query($id: ID!) { node(id: $id) { id ... on Interaction { type } } }",
        {"id": by_email["interactions"][0]["id"]},
    )
    assert node["node"]["type"] == "PAGE_VISITED"
    listed = await api(
        "query($id: ID!) { contact(id: $id) { interactions { totalCount edges { node { type } } } } }",
        {"id": contact["id"]},
    )
    assert listed["contact"]["interactions"]["totalCount"] == 2
    types = {e["node"]["type"] for e in listed["contact"]["interactions"]["edges"]}
    assert types == {"EMAIL_OPENED", "PAGE_VISITED"}


async def test_bad_single_interactions_are_refused(api: Api) -> None:
    contact = await create_contact(api, "ada@example.com")
    cid = contact["id"]
    future = iso(datetime.now(UTC) + timedelta(days=3))
    cases: list[tuple[dict[str, Any], str, list[str]]] = [
        ({"contactEmail": "Nobody@Example.com"}, "NOT_FOUND", ["input", "contactEmail"]),
        ({"contactId": gid("Contact", 999)}, "NOT_FOUND", ["input", "contactId"]),
        ({"contactId": "garbage"}, "INVALID", ["input", "contactId"]),
        ({"contactId": gid("Lead", 1)}, "INVALID", ["input", "contactId"]),
        ({}, "INVALID", ["input"]),
        ({"contactId": cid, "contactEmail": "ada@example.com"}, "INVALID", ["input"]),
        ({"contactId": cid, "type": "CUSTOM"}, "INVALID", ["input", "name"]),
        ({"contactId": cid, "type": "CUSTOM", "name": "   "}, "INVALID", ["input", "name"]),
        ({"contactId": cid, "properties": [1, 2]}, "INVALID", ["input", "properties"]),
        ({"contactId": cid, "occurredAt": future}, "INVALID", ["input", "occurredAt"]),
        ({"contactId": cid, "idempotencyKey": " "}, "INVALID", ["input", "idempotencyKey"]),
    ]
    for inp, code, field in cases:
        payload = await record(api, **{"type": "PAGE_VISITED", **inp})
        assert payload["interactions"] == [], inp
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)], inp
    unknown = await record(api, type="PAGE_VISITED", contactEmail=" Nobody@Example.com ")
    assert "nobody@example.com" in unknown["userErrors"][0]["message"]
    # A time without a timezone names no instant: a clear input error, never a crash.
    for naive in ("2026-01-01T10:00:00", "2026-01-01"):
        inp = {"type": "PAGE_VISITED", "contactId": cid, "occurredAt": naive}
        r = await api.post(RECORD, {"i": inp})
        assert "has no timezone" in r.json()["errors"][0]["message"], r.json()
        r = await api.post(RECORD_MANY, {"i": [{**inp, "occurredAt": iso(datetime.now(UTC))}, inp]})
        assert "has no timezone" in r.json()["errors"][0]["message"], r.json()
    inline = f'mutation {{ recordInteraction(input: {{type: PAGE_VISITED, contactId: "{cid}", occurredAt: "2026-01-01T10:00:00"}}) {{ {ERRORS} }} }}'
    r = await api.post(inline, {})
    assert "has no timezone" in r.json()["errors"][0]["message"], r.json()
    # Times that exist only outside years 1 to 9999 in UTC, where they are stored.
    for extreme in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        inp = {"type": "PAGE_VISITED", "contactId": cid, "occurredAt": extreme}
        r = await api.post(RECORD, {"i": inp})
        assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", r.json()
        assert "out of range" in r.json()["errors"][0]["message"], r.json()
    # Properties nested deeper than anything could send back.
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(300):
        deep = {"a": deep}
    payload = await record(api, type="PAGE_VISITED", contactId=cid, properties=deep)
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID", ["input", "properties"])
    ]
    assert "levels deep" in payload["userErrors"][0]["message"]
    assert await interaction_count(api, cid) == 0


async def test_batch_records_the_good_items_and_reports_the_others(api: Api) -> None:
    ada = await create_contact(api, "ada@example.com")
    bob = await create_contact(api, "bob@example.com")
    payload = await record_many(
        api,
        [
            {"type": "PAGE_VISITED", "contactId": ada["id"]},
            {"type": "PAGE_VISITED", "contactEmail": "nobody@example.com"},
            {"type": "EMAIL_OPENED", "contactEmail": "BOB@example.com"},
            {"type": "CUSTOM", "contactId": bob["id"]},
            {"type": "PAGE_VISITED"},
            {"type": "CUSTOM", "name": "Webinar quiz", "contactEmail": "ada@example.com"},
        ],
    )
    assert [(i["type"], i["contact"]["id"]) for i in payload["interactions"]] == [
        ("PAGE_VISITED", ada["id"]),
        ("EMAIL_OPENED", bob["id"]),
        ("CUSTOM", ada["id"]),
    ]
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("NOT_FOUND", ["inputs", "1", "contactEmail"]),
        ("INVALID", ["inputs", "3", "name"]),
        ("INVALID", ["inputs", "4"]),
    ]
    assert await interaction_count(api, ada["id"]) == 2
    assert await interaction_count(api, bob["id"]) == 1


async def test_batch_reports_malformed_ids_per_item_and_too_many_items_records_nothing(
    api: Api,
) -> None:
    ada = await create_contact(api, "ada@example.com")
    mixed = await record_many(
        api,
        [
            {"type": "PAGE_VISITED", "contactId": ada["id"]},
            {"type": "PAGE_VISITED", "contactId": "not-an-id"},
            {"type": "PAGE_VISITED", "contactId": gid("Lead", 1)},
            {"type": "EMAIL_OPENED", "contactId": gid("Contact", 999)},
            {"type": "EMAIL_OPENED", "contactId": ada["id"]},
        ],
    )
    # Like any other bad item: reported with its index, the others recorded.
    assert [i["type"] for i in mixed["interactions"]] == ["PAGE_VISITED", "EMAIL_OPENED"]
    assert [(e["code"], e["field"]) for e in mixed["userErrors"]] == [
        ("INVALID", ["inputs", "1", "contactId"]),
        ("INVALID", ["inputs", "2", "contactId"]),
        ("NOT_FOUND", ["inputs", "3", "contactId"]),
    ]
    assert await interaction_count(api, ada["id"]) == 2
    only_bad = await record_many(api, [{"type": "PAGE_VISITED", "contactId": "x"}])
    assert only_bad["interactions"] == []
    assert [e["field"] for e in only_bad["userErrors"]] == [["inputs", "0", "contactId"]]
    too_many = await record_many(
        api, [{"type": "PAGE_VISITED", "contactId": ada["id"]} for _ in range(1001)]
    )
    assert too_many["interactions"] == []
    assert [(e["code"], e["field"]) for e in too_many["userErrors"]] == [("INVALID", ["inputs"])]
    assert "1000" in too_many["userErrors"][0]["message"]
    assert await interaction_count(api, ada["id"]) == 2


async def test_an_idempotency_key_records_once(api: Api) -> None:
    await switch(api)
    contact_id, lead_id = await contact_and_lead(api, "idem@x.io")
    model = await live_model(api, [VISITS])
    first = await record(api, type="PAGE_VISITED", contactId=contact_id, idempotencyKey="k-1")
    again = await record(api, type="PAGE_VISITED", contactId=contact_id, idempotencyKey="k-1")
    assert again["userErrors"] == []
    assert again["interactions"][0]["id"] == first["interactions"][0]["id"]
    both = await record_many(
        api,
        [
            {"type": "PAGE_VISITED", "contactId": contact_id, "idempotencyKey": "k-2"},
            {"type": "PAGE_VISITED", "contactId": contact_id, "idempotencyKey": "k-2"},
        ],
    )
    assert len({i["id"] for i in both["interactions"]}) == 1
    assert await interaction_count(api, contact_id) == 2
    assert await points(api, lead_id, model["id"]) == 20

    results = await asyncio.gather(
        *(
            record(api, type="PAGE_VISITED", contactId=contact_id, idempotencyKey="k-race")
            for _ in range(10)
        )
    )
    assert all(r["userErrors"] == [] for r in results)
    assert len({r["interactions"][0]["id"] for r in results}) == 1
    assert await interaction_count(api, contact_id) == 3
    score = await lead_score(api, lead_id, model["id"])
    assert score is not None
    assert by_rule(score) == {"visits": (30, 3)}
    # The same key for another interaction is a conflict, not the first one's answer.
    other, _ = await contact_and_lead(api, "other@x.io")
    mixed = await record_many(
        api,
        [
            {"type": "EMAIL_OPENED", "contactId": other, "idempotencyKey": "k-1"},
            {"type": "PAGE_VISITED", "contactId": contact_id, "idempotencyKey": "k-1"},
        ],
    )
    assert [i["id"] for i in mixed["interactions"]] == [first["interactions"][0]["id"]]
    assert [(e["code"], e["field"]) for e in mixed["userErrors"]] == [
        ("CONFLICT", ["inputs", "0", "idempotencyKey"])
    ]
    assert await interaction_count(api, other) == 0


# ---------------------------------------------------------------- scores and explanations


async def test_scores_are_explained_rule_by_rule(api: Api) -> None:
    await switch(api)
    account = await create_account(
        api, industry="FinTech", employeeCount=250, attributes={"tier": "Gold"}
    )
    ada = await create_contact(
        api, "ada@x.io", jobTitle="cto", attributes={"score": 75}, accountId=account["id"]
    )
    lead = await create_lead(
        api, contactId=ada["id"], companyName="Northwind Corp", attributes={"budget": 5000}
    )
    bob_id, bob_lead = await contact_and_lead(api, "bob@x.io")
    now = datetime.now(UTC).replace(microsecond=0)
    recent, old = now - timedelta(days=10), now - timedelta(days=40)
    ada_id = ada["id"]
    done = await record_many(
        api,
        [
            {"type": "PAGE_VISITED", "contactId": ada_id, "properties": {"path": p}}
            for p in ("/Pricing/enterprise", "/blog", "/docs")
        ]
        + [
            {"type": "CUSTOM", "name": "Unsubscribe", "contactId": ada_id},
            {"type": "CUSTOM", "name": "bounce", "contactId": ada_id},
            {"type": "CUSTOM", "name": "BOUNCE", "contactId": ada_id},
            {"type": "EMAIL_OPENED", "contactId": ada_id},
            {"type": "EMAIL_CLICKED", "contactId": ada_id, "occurredAt": iso(old)},
            {"type": "EMAIL_CLICKED", "contactId": ada_id, "occurredAt": iso(recent)},
            {"type": "CUSTOM", "name": "unsubscribe", "contactId": bob_id},
        ],
    )
    assert done["userErrors"] == []
    pricing = {"key": "path", "operator": "STARTS_WITH", "value": "/pricing"}
    # Three LIVE models at once: behaviour, person and company.
    behaviour_rules = [
        rule("visits", 5, interaction("PAGE_VISITED"), perOccurrence=True, maxPoints=12),
        rule("pricing page", 6, interaction("PAGE_VISITED", properties=[pricing])),
        rule("unsubscribed", -20, interaction("CUSTOM", name="unsubscribe")),
        rule("bounces", -4, interaction("CUSTOM", name="Bounce"), perOccurrence=True, maxPoints=6),
        rule("engaged", 7, interaction("EMAIL_OPENED", minCount=2)),
        rule("recent click", 9, interaction("EMAIL_CLICKED", withinDays=30)),
        rule("recent clicks", 2, interaction("EMAIL_CLICKED", withinDays=30), perOccurrence=True),
    ]
    person_rules = [
        rule("cto", 10, attribute("CONTACT", "jobTitle", "EQ", "CTO")),
        rule("warm contact", 2, attribute("CONTACT", "attributes.score", "GT", 50)),
        rule("budget", 5, attribute("LEAD", "attributes.budget", "BETWEEN", [1000, 10000])),
        rule("corp", 1, attribute("LEAD", "companyName", "ENDS_WITH", "corp")),
        rule("imported", 100, attribute("LEAD", "source", "EQ", "IMPORT")),
        rule("no phone", 1, attribute("CONTACT", "phone", "IS_NOT_SET")),
    ]
    company_rules = [
        rule("big company", 4, attribute("ACCOUNT", "employeeCount", "GTE", 100)),
        rule("gold tier", 3, attribute("ACCOUNT", "attributes.tier", "IN", ["gold", "platinum"])),
        rule("tech", 1, attribute("ACCOUNT", "industry", "CONTAINS", "TECH")),
        rule("not retail", 1, {"not": attribute("ACCOUNT", "industry", "EQ", "retail")}),
    ]
    grades = [
        {"name": "C", "minScore": 0},
        {"name": "A", "minScore": 10},
        {"name": "B", "minScore": 5},
    ]
    behaviour = await live_model(api, behaviour_rules, salesReadyThreshold=10, grades=grades)
    assert [g["name"] for g in behaviour["grades"]] == ["C", "B", "A"]
    person = await live_model(api, person_rules, name="Person")
    company = await live_model(api, company_rules, name="Company")
    click_expiry = recent + timedelta(days=30)

    async def check(
        model: dict[str, Any], rules: list[dict[str, Any]], want: dict[str, tuple[float, int]]
    ) -> dict[str, Any]:
        score = await lead_score(api, lead["id"], model["id"])
        assert score is not None
        assert by_rule(score) == want
        # The breakdown keeps the model's rule order.
        order = [r["name"] for r in rules if r["name"] in want]
        assert [c["rule"]["name"] for c in score["breakdown"]] == order
        for c in score["breakdown"]:
            if c["rule"]["name"].startswith("recent click"):
                assert datetime.fromisoformat(c["expiresAt"]) == click_expiry, c
            else:
                assert c["expiresAt"] is None, c
        assert score["score"] == sum(p for p, _ in want.values())
        return score

    behaviour_want = {
        "visits": (12, 3),
        "pricing page": (6, 1),
        "unsubscribed": (-20, 1),
        "bounces": (-6, 2),
        "recent click": (9, 1),
        "recent clicks": (2, 1),
    }
    person_want = {"cto": (10, 1), "warm contact": (2, 1), "budget": (5, 1), "corp": (1, 1)}
    person_want["no phone"] = (1, 1)
    company_want = {"big company": (4, 1), "gold tier": (3, 1), "tech": (1, 1)}
    company_want["not retail"] = (1, 1)

    async def check_all(engaged: dict[str, tuple[float, int]]) -> dict[str, Any]:
        assert (await check(person, person_rules, person_want))["score"] == 19
        assert (await check(company, company_rules, company_want))["score"] == 9
        return await check(behaviour, behaviour_rules, {**behaviour_want, **engaged})

    # Scored set-based when published (SQL).
    first = await check_all({})
    assert (first["score"], first["grade"], first["salesReady"]) == (3, "C", False)
    data = await api(LEAD_SCORE, {"lead": lead["id"], "model": behaviour["id"]})
    assert data["lead"]["salesReady"] is False
    bob = await lead_score(api, bob_lead, behaviour["id"])
    assert bob is not None
    assert by_rule(bob) == {"unsubscribed": (-20, 1)}
    assert (bob["score"], bob["grade"], bob["salesReady"]) == (-20, None, False)
    assert by_rule(await lead_score(api, bob_lead, person["id"]) or {}) == {"no phone": (1, 1)}
    assert by_rule(await lead_score(api, bob_lead, company["id"]) or {}) == {"not retail": (1, 1)}

    # A second open reaches minCount and the threshold; re-scored per lead (Python), the
    # other models give what SQL gave.
    await record(api, type="EMAIL_OPENED", contactId=ada_id)
    second = await check_all({"engaged": (7, 1)})
    assert (second["score"], second["grade"], second["salesReady"]) == (10, "A", True)
    data = await api(LEAD_SCORE, {"lead": lead["id"], "model": behaviour["id"]})
    assert data["lead"]["salesReady"] is True
    assert data["lead"]["scores"] == [
        {"score": 10, "scoringModel": {"id": behaviour["id"]}},
        {"score": 19, "scoringModel": {"id": person["id"]}},
        {"score": 9, "scoringModel": {"id": company["id"]}},
    ]
    ready = await api("{ leads(filter: {salesReady: true}) { edges { node { id } } } }")
    assert [e["node"]["id"] for e in ready["leads"]["edges"]] == [lead["id"]]


async def test_a_model_with_many_rules_publishes_quickly(api: Api) -> None:
    """Publishing compiles the model to SQL, which must grow linearly with the rules.

    Eight rules is a small model (up to 100 are allowed); publishing it takes milliseconds
    when the SQL grows linearly, and seconds when it grows exponentially.
    """
    await switch(api)
    contact_id, lead_id = await contact_and_lead(api, "many@x.io", jobTitle="CTO")
    await record(api, type="PAGE_VISITED", contactId=contact_id)
    rules = [
        rule(f"visit {n}", n, interaction("PAGE_VISITED", withinDays=n + 1)) for n in range(1, 5)
    ] + [rule(f"title {n}", 1, attribute("CONTACT", "jobTitle", "EQ", "cto")) for n in range(4)]
    created = await create_model(api, rules)
    assert created["userErrors"] == []
    started = time.perf_counter()
    published = await model_op(api, PUBLISH, created["scoringModel"]["id"])
    elapsed = time.perf_counter() - started
    assert published["userErrors"] == []
    assert elapsed < 1.0, f"publishing an 8-rule model took {elapsed:.1f} s"
    score = await lead_score(api, lead_id, created["scoringModel"]["id"])
    assert score is not None
    assert score["score"] == 1 + 2 + 3 + 4 + 4
    assert len(score["breakdown"]) == 8


async def test_old_interactions_fall_outside_the_window(api: Api) -> None:
    await switch(api)
    contact_id, lead_id = await contact_and_lead(api, "window@x.io")
    now = datetime.now(UTC).replace(microsecond=0)
    model = await live_model(
        api, [rule("recent", 5, interaction("PAGE_VISITED", withinDays=30), perOccurrence=True)]
    )
    await record(
        api, type="PAGE_VISITED", contactId=contact_id, occurredAt=iso(now - timedelta(days=40))
    )
    assert await points(api, lead_id, model["id"]) == 0
    at = now - timedelta(days=29)
    await record(api, type="PAGE_VISITED", contactId=contact_id, occurredAt=iso(at))
    score = await lead_score(api, lead_id, model["id"])
    assert score is not None
    assert by_rule(score) == {"recent": (5, 1)}
    assert datetime.fromisoformat(score["breakdown"][0]["expiresAt"]) == at + timedelta(days=30)


async def test_points_of_an_any_rule_expire_when_its_last_reason_does(api: Api) -> None:
    """`any` of two windowed conditions: the points last until the later one leaves its window,
    on the per-interaction path and after a (set-based) publish alike."""
    await switch(api)
    contact_id, lead_id = await contact_and_lead(api, "any@x.io")
    now = datetime.now(UTC).replace(microsecond=0)
    visit, opened = now - timedelta(days=6), now - timedelta(days=1)
    await record(api, type="PAGE_VISITED", contactId=contact_id, occurredAt=iso(visit))
    either = {
        "any": [
            interaction("PAGE_VISITED", withinDays=7),
            interaction("EMAIL_OPENED", withinDays=7),
        ]
    }
    model = await live_model(api, [rule("engaged", 10, either)])

    async def expires() -> datetime:
        score = await lead_score(api, lead_id, model["id"])
        assert score is not None and by_rule(score) == {"engaged": (10, 1)}
        return datetime.fromisoformat(score["breakdown"][0]["expiresAt"])

    assert await expires() == visit + timedelta(days=7)  # its only reason so far
    await record(api, type="EMAIL_OPENED", contactId=contact_id, occurredAt=iso(opened))
    assert await expires() == opened + timedelta(days=7)  # not when the visit leaves
    await model_op(api, STOP, model["id"])
    await model_op(api, PUBLISH, model["id"])  # set-based: the same answer
    assert await expires() == opened + timedelta(days=7)


# ---------------------------------------------------------------- capture and record changes


async def test_form_submissions_are_interactions_credited_to_scoring(api: Api) -> None:
    await switch(api)
    model = await live_model(
        api,
        [
            rule("webinar", 15, interaction("FORM_SUBMITTED", name="Spring-Webinar")),
            rule("forms", 1, interaction("FORM_SUBMITTED"), perOccurrence=True),
            rule("event", 25, interaction("EVENT_REGISTERED")),
        ],
    )
    mid = model["id"]
    submit = (
        "mutation($i: FormSubmissionInput!) { submitForm(input: $i) { leadCreated"
        f" contact {{ id }} lead {{ id }} {ERRORS} }} }}"
    )
    fields = {"email": "form@x.io", "firstName": "Fay"}
    first = (await api(submit, {"i": {"formId": "spring-webinar", "fields": fields}}))["submitForm"]
    assert first["userErrors"] == [] and first["leadCreated"] is True
    webinar_lead, contact_id = first["lead"]["id"], first["contact"]["id"]
    assert by_rule(await lead_score(api, webinar_lead, mid) or {}) == {
        "webinar": (15, 1),
        "forms": (1, 1),
    }
    again = (await api(submit, {"i": {"formId": "spring-webinar", "fields": fields}}))["submitForm"]
    assert again["leadCreated"] is False and again["lead"]["id"] == webinar_lead
    assert await points(api, webinar_lead, mid) == 17
    event = (
        await api(
            submit,
            {"i": {"formId": "summit", "fields": fields, "source": "EVENT_REGISTRATION"}},
        )
    )["submitForm"]
    assert event["leadCreated"] is True
    # Both leads of the contact count all of the contact's interactions.
    for lead_id in (webinar_lead, event["lead"]["id"]):
        score = await lead_score(api, lead_id, mid)
        assert score is not None
        assert by_rule(score) == {"webinar": (15, 1), "forms": (2, 2), "event": (25, 1)}
    listed = await api(
        "query($id: ID!) { contact(id: $id) { interactions { totalCount edges { node { type name properties } } } } }",
        {"id": contact_id},
    )
    nodes = sorted(
        (e["node"]["type"], e["node"]["name"], e["node"]["properties"]["source"])
        for e in listed["contact"]["interactions"]["edges"]
    )
    assert nodes == [
        ("EVENT_REGISTERED", "summit", "EVENT_REGISTRATION"),
        ("FORM_SUBMITTED", "spring-webinar", "LANDING_PAGE"),
        ("FORM_SUBMITTED", "spring-webinar", "LANDING_PAGE"),
    ]


async def test_record_changes_rescore_the_leads_that_depend_on_them(api: Api) -> None:
    await switch(api)
    account = await create_account(api, "Acme")
    contact = await create_contact(api, "cto@acme.io", accountId=account["id"])
    lead = await create_lead(api, contactId=contact["id"])
    account_lead = await create_lead(api, accountId=account["id"])
    model = await live_model(
        api,
        [
            rule("cto", 10, attribute("CONTACT", "jobTitle", "EQ", "CTO")),
            rule("gold", 5, attribute("ACCOUNT", "attributes.tier", "EQ", "gold")),
            rule("big", 3, attribute("ACCOUNT", "employeeCount", "GT", 100)),
            rule("budget", 7, attribute("LEAD", "attributes.budget", "GTE", 1000)),
        ],
    )
    mid = model["id"]

    async def scores() -> tuple[float | None, float | None]:
        return await points(api, lead["id"], mid), await points(api, account_lead["id"], mid)

    assert await scores() == (0, 0)
    upd_contact = "mutation($id: ID!, $t: String) { updateContact(id: $id, input: {jobTitle: $t}) { userErrors { code } } }"
    await api(upd_contact, {"id": contact["id"], "t": "cto"})
    assert await scores() == (10, 0)
    await api(
        'mutation($id: ID!) { updateAccount(id: $id, input: {name: "Acme", employeeCount: 500, attributes: {tier: "GOLD"}}) { userErrors { code } } }',
        {"id": account["id"]},
    )
    assert await scores() == (18, 8)
    await api(
        'mutation($id: ID!) { updateLead(id: $id, input: {topic: "Interest", attributes: {budget: 1500}}) { userErrors { code } } }',
        {"id": lead["id"]},
    )
    assert await scores() == (25, 8)
    await api(upd_contact, {"id": contact["id"], "t": "CEO"})
    assert await scores() == (15, 8)
    # A lead created while the model is LIVE is scored at once.
    newcomer = await create_lead(api, contactId=contact["id"])
    assert await points(api, newcomer["id"], mid) == 8
    # A lead that loses its contact and account is no longer scored, and keeps no score.
    upd_lead = 'mutation($id: ID!) { updateLead(id: $id, input: {topic: "Interest", contactId: null, accountId: null}) { lead { scorable scores { score } } userErrors { code } } }'
    orphan = (await api(upd_lead, {"id": newcomer["id"]}))["updateLead"]
    assert orphan == {"lead": {"scorable": False, "scores": []}, "userErrors": []}
    assert await points(api, newcomer["id"], mid) is None


async def test_a_contact_that_changes_account_moves_its_interactions(api: Api) -> None:
    """An account-based lead counts the interactions of the account's contacts of now: when a
    contact moves to another account, both accounts' leads are re-scored."""
    await switch(api)
    model = await live_model(api, [VISITS])
    acme, beta = await create_account(api, "Acme"), await create_account(api, "Beta")
    contact = await create_contact(api, "mover@acme.io", accountId=acme["id"])
    acme_lead = await create_lead(api, accountId=acme["id"])
    beta_lead = await create_lead(api, accountId=beta["id"])
    await record(api, type="PAGE_VISITED", contactId=contact["id"])
    assert await points(api, acme_lead["id"], model["id"]) == 10
    assert await points(api, beta_lead["id"], model["id"]) == 0
    moved = await api(
        "mutation($id: ID!, $a: ID) { updateContact(id: $id, input: {accountId: $a}) { userErrors { code } } }",
        {"id": contact["id"], "a": beta["id"]},
    )
    assert moved["updateContact"]["userErrors"] == []
    assert await points(api, acme_lead["id"], model["id"]) == 0
    assert await points(api, beta_lead["id"], model["id"]) == 10


# ---------------------------------------------------------------- lists by score

LEADS_BY_SCORE = "query($m: ID!, $dir: OrderDirection!, $after: String, $f: LeadFilter) { leads(filter: $f, orderBy: {field: SCORE, scoringModelId: $m, direction: $dir}, first: 3, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id score(scoringModelId: $m) { score } } } } }"


async def test_leads_filtered_and_ordered_by_score_across_pages(api: Api) -> None:
    await switch(api)
    counts = [3, 0, 5, 1, 3, 6, 2]
    leads: list[tuple[str, float]] = []
    inputs: list[dict[str, Any]] = []
    for n, count in enumerate(counts):
        contact_id, lead_id = await contact_and_lead(api, f"s{n}@x.io")
        leads.append((lead_id, 10.0 * count))
        inputs += [{"type": "PAGE_VISITED", "contactId": contact_id}] * count
    leads.append(((await create_lead(api, topic="Unscorable"))["id"], 0.0))
    assert (await record_many(api, inputs))["userErrors"] == []
    mid = (await live_model(api, [VISITS]))["id"]

    async def walk(direction: str, f: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        seen: list[tuple[str, float]] = []
        after = None
        while True:
            data = await api(LEADS_BY_SCORE, {"m": mid, "dir": direction, "after": after, "f": f})
            conn = data["leads"]
            assert len(conn["edges"]) <= 3
            for e in conn["edges"]:
                s = e["node"]["score"]
                seen.append((e["node"]["id"], s["score"] if s else 0.0))
            if not conn["pageInfo"]["hasNextPage"]:
                return seen
            after = conn["pageInfo"]["endCursor"]

    # Ties go by id (creation order), in the same direction as the score.
    index = {lead_id: n for n, (lead_id, _) in enumerate(leads)}
    desc = sorted(leads, key=lambda x: (-x[1], -index[x[0]]))
    assert await walk("DESC") == desc
    assert await walk("ASC") == desc[::-1]
    at_least_30 = {"minScore": {"scoringModelId": mid, "min": 30}}
    assert await walk("DESC", at_least_30) == [x for x in desc if x[1] >= 30]
    data = await api(LEADS_BY_SCORE, {"m": mid, "dir": "ASC", "f": at_least_30})
    assert data["leads"]["totalCount"] == 4
    above = await api(
        "query($m: ID!) { leads(filter: {minScore: {scoringModelId: $m, min: 30.5}}) { totalCount } }",
        {"m": mid},
    )
    assert above["leads"]["totalCount"] == 2


async def test_score_ordering_needs_a_model(api: Api) -> None:
    errors = await api.errors("{ leads(orderBy: {field: SCORE}) { totalCount } }")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "scoringModelId" in errors[0]["message"]
    errors = await api.errors(
        '{ leads(filter: {minScore: {scoringModelId: "nope", min: 1}}) { totalCount } }'
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


# ---------------------------------------------------------------- roles


async def test_roles(api: Api) -> None:
    await switch(api)
    contact_id, lead_id = await contact_and_lead(api, "roles@x.io")
    for role in (Role.VIEWER, Role.INTEGRATION, Role.SELLER):
        errors = await api.errors(CREATE, {"i": {"name": "x", "rules": [VISITS]}}, role=role)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN", role
    for role in (Role.VIEWER, Role.SELLER):
        errors = await api.errors(
            RECORD, {"i": {"type": "PAGE_VISITED", "contactId": contact_id}}, role=role
        )
        assert errors[0]["extensions"]["code"] == "FORBIDDEN", role
    assert (await api(MODEL_COUNT))["scoringModels"]["totalCount"] == 0
    assert await interaction_count(api, contact_id) == 0

    created = await create_model(api, [VISITS], role=Role.MARKETER)
    assert created["userErrors"] == []
    mid = created["scoringModel"]["id"]
    errors = await api.errors(PUBLISH, {"id": mid}, role=Role.INTEGRATION)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert (await model_op(api, PUBLISH, mid, role=Role.MARKETER))["userErrors"] == []
    integration = await record(
        api, type="PAGE_VISITED", contactId=contact_id, role=Role.INTEGRATION
    )
    marketer = await record(api, type="PAGE_VISITED", contactId=contact_id, role=Role.MARKETER)
    assert integration["userErrors"] == [] and marketer["userErrors"] == []
    # Everyone may read scores.
    data = await api(LEAD_SCORE, {"lead": lead_id, "model": mid}, role=Role.VIEWER)
    assert data["lead"]["score"]["score"] == 20


# ---------------------------------------------------------------- concurrency


async def test_fifty_simultaneous_interactions_are_all_counted(api: Api) -> None:
    await switch(api)
    contact_id, lead_id = await contact_and_lead(api, "busy@x.io")
    model = await live_model(
        api, [rule("every visit", 1, interaction("PAGE_VISITED"), perOccurrence=True)]
    )
    results = await asyncio.gather(
        *(record(api, type="PAGE_VISITED", contactId=contact_id) for _ in range(50))
    )
    assert all(r["userErrors"] == [] for r in results)
    assert len({r["interactions"][0]["id"] for r in results}) == 50
    score = await lead_score(api, lead_id, model["id"])
    assert score is not None
    assert score["score"] == 50
    assert by_rule(score) == {"every visit": (50, 50)}
    assert await interaction_count(api, contact_id) == 50


async def test_create_lead_answers_with_the_lead_its_scoring_made(api: Api) -> None:
    """Scoring a new lead may make it sales-ready and move it: createLead's answer shows that."""
    await switch(api)
    await live_model(
        api, [rule("cto", 10, attribute("LEAD", "jobTitle", "EQ", "CTO"))], salesReadyThreshold=10
    )
    contact = await create_contact(api, "new@x.io")
    made = await api(
        f'mutation($c: ID!) {{ createLead(input: {{topic: "Hot", jobTitle: "CTO", contactId: $c}}) {{ lead {{ salesReady stage scores {{ score }} }} {ERRORS} }} }}',
        {"c": contact["id"]},
    )
    assert made["createLead"]["lead"] == {
        "salesReady": True,
        "stage": "SALES_ACCEPTANCE",
        "scores": [{"score": 10.0}],
    }


async def test_a_lead_closed_qualified_or_reactivated_is_scored_again(api: Api) -> None:
    """A rule may read the lead's state; qualify, disqualify and reactivate change it (and
    qualifying may give the lead the contact it is scored on)."""
    await switch(api)
    model = await live_model(
        api,
        [
            rule("open", 5, attribute("LEAD", "state", "EQ", "OPEN")),
            rule("has a title", 1, attribute("CONTACT", "jobTitle", "IS_SET")),
        ],
    )
    _, lead_id = await contact_and_lead(api, "state@x.io", jobTitle="CTO")
    assert await points(api, lead_id, model["id"]) == 6
    reason = "mutation($id: ID!) { disqualifyLead(id: $id, reason: LOST) { lead { state } userErrors { code } } }"
    assert (await api(reason, {"id": lead_id}))["disqualifyLead"]["userErrors"] == []
    assert await points(api, lead_id, model["id"]) == 1
    again = "mutation($id: ID!) { reactivateLead(id: $id) { lead { state } userErrors { code } } }"
    assert (await api(again, {"id": lead_id}))["reactivateLead"]["userErrors"] == []
    assert await points(api, lead_id, model["id"]) == 6
    # No contact yet: not scored; qualifying makes its contact from its data, and scores it.
    loose = await create_lead(api, email="loose@x.io", firstName="Lo", jobTitle="CEO")
    assert loose["scorable"] is False
    assert await points(api, loose["id"], model["id"]) is None
    qualify = "mutation($id: ID!) { qualifyLead(id: $id) { lead { state scorable } userErrors { code } } }"
    done = (await api(qualify, {"id": loose["id"]}))["qualifyLead"]
    assert done["userErrors"] == [] and done["lead"] == {"state": "QUALIFIED", "scorable": True}
    assert await points(api, loose["id"], model["id"]) == 1


async def test_a_threshold_crossed_while_closed_marks_the_lead_when_reactivated(api: Api) -> None:
    await switch(api)
    model = await live_model(api, [VISITS], salesReadyThreshold=20)
    contact_id, lead_id = await contact_and_lead(api, "closed@x.io")
    lost = "mutation($id: ID!) { disqualifyLead(id: $id, reason: LOST) { userErrors { code } } }"
    assert (await api(lost, {"id": lead_id}))["disqualifyLead"]["userErrors"] == []
    await record_many(api, [{"type": "PAGE_VISITED", "contactId": contact_id}] * 3)
    assert await points(api, lead_id, model["id"]) == 30  # scored, but a closed lead is not marked
    state = "query($id: ID!) { lead(id: $id) { salesReady } }"
    assert (await api(state, {"id": lead_id}))["lead"]["salesReady"] is False
    back = "mutation($id: ID!) { reactivateLead(id: $id) { lead { salesReady stage } userErrors { code } } }"
    again = (await api(back, {"id": lead_id}))["reactivateLead"]
    assert again["userErrors"] == []
    assert again["lead"] == {"salesReady": True, "stage": "SALES_ACCEPTANCE"}

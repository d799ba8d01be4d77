"""Sales sequences, the work list, custom processes and the opportunity timeline over GraphQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from api.ids import from_global_id
from domain.roles import Role
from persistence import tables as t
from persistence.database import Database
from tests.api.test_sales import ERRORS, STAGE, events, new_lead, op
from tests.conftest import Api

RUN = "id status dueAt startedAt completedAt currentStep { position kind title notes waitDays } sequence { name }"
CREATE_SEQ = f"mutation($i: SequenceInput!) {{ createSequence(input: $i) {{ sequence {{ id name steps {{ position kind title notes waitDays }} }} {ERRORS} }} }}"
ATTACH = f"mutation($l: ID!, $s: ID!) {{ attachSequence(leadId: $l, sequenceId: $s) {{ sequenceRun {{ {RUN} }} {ERRORS} }} }}"
COMPLETE = f"mutation($l: ID!, $n: Int!, $notes: String) {{ completeSequenceStep(leadId: $l, step: $n, notes: $notes) {{ sequenceRun {{ {RUN} }} {ERRORS} }} }}"
WORK = """query($o: ID!, $first: Int, $after: String) { workList(ownerId: $o, first: $first, after: $after) {
  edges { cursor node { dueAt lead { id topic } sequenceRun { id currentStep { position title } }
          activity { id subject kind } } }
  pageInfo { hasNextPage endCursor } } }"""
LOG = f"mutation($i: ActivityInput!) {{ logActivity(input: $i) {{ activity {{ id }} {ERRORS} }} }}"
ASSIGN = (
    f"mutation($id: ID!, $u: ID) {{ assignLead(id: $id, userId: $u) {{ lead {{ id }} {ERRORS} }} }}"
)
CREATE_PROCESS = f"mutation($i: ProcessInput!) {{ createProcess(input: $i) {{ process {{ id name stages {{ name requiredFields }} }} {ERRORS} }} }}"
ASSIGN_PROCESS = f"mutation($id: ID!, $p: ID) {{ assignLeadProcess(id: $id, processId: $p) {{ lead {{ id stage processStage process {{ name }} }} {ERRORS} }} }}"
PROCESS_STAGE = f"mutation($id: ID!, $s: LeadStage, $p: String) {{ setLeadStage(id: $id, stage: $s, processStage: $p) {{ lead {{ id stage processStage }} {ERRORS} }} }}"

STEPS = [
    {"kind": "CALL", "title": "Intro call", "notes": "Ask about budget"},
    {"kind": "WAIT", "waitDays": 3},
    {"kind": "EMAIL", "title": "Follow-up"},
    {"kind": "WAIT", "waitDays": 1},
    {"kind": "WAIT", "waitDays": 2},
    {"kind": "TASK", "title": "Send proposal"},
]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def seller(api: Api, name: str) -> str:
    made = await api(
        f"mutation($i: UserInput!) {{ createUser(input: $i) {{ user {{ id }} {ERRORS} }} }}",
        {"i": {"name": name, "email": f"{name.lower()}@sales.io"}},
    )
    return str(made["createUser"]["user"]["id"])


async def sequence(api: Api, name: str = "Outreach", steps: list[Any] | None = None) -> str:
    made = await op(api, CREATE_SEQ, i={"name": name, "steps": steps or STEPS})
    assert made["userErrors"] == []
    return str(made["sequence"]["id"])


async def owned_lead(api: Api, owner: str, topic: str) -> dict[str, Any]:
    lead = await new_lead(api, topic=topic)
    assert (await op(api, ASSIGN, id=lead["id"], u=owner))["userErrors"] == []
    return lead


async def set_due(db: Database, lead_gid: str, due: datetime) -> None:
    lead_id = from_global_id(lead_gid)[1]
    async with db.write_engine.begin() as conn:
        await conn.execute(
            update(t.sequence_runs)
            .where(t.sequence_runs.c.lead_id == lead_id, t.sequence_runs.c.status == "ACTIVE")
            .values(due_at=due)
        )


async def work(api: Api, owner: str, **kw: Any) -> dict[str, Any]:
    data = await api(WORK, {"o": owner, **kw}, role=Role.VIEWER)
    return data["workList"]  # type: ignore[no-any-return]


async def test_a_sequence_advances_step_by_step_and_waits(api: Api, db: Database) -> None:
    sam = await seller(api, "Sam")
    made = await op(api, CREATE_SEQ, i={"name": "Outreach", "steps": STEPS})
    assert [
        (s["position"], s["kind"], s["title"], s["waitDays"]) for s in made["sequence"]["steps"]
    ] == [
        (1, "CALL", "Intro call", 0),
        (2, "WAIT", "Wait 3 days", 3),
        (3, "EMAIL", "Follow-up", 0),
        (4, "WAIT", "Wait 1 day", 1),
        (5, "WAIT", "Wait 2 days", 2),
        (6, "TASK", "Send proposal", 0),
    ]
    seq = made["sequence"]["id"]
    lead = await owned_lead(api, sam, "Sequenced")

    started = await op(api, ATTACH, l=lead["id"], s=seq)
    run = started["sequenceRun"]
    assert run["status"] == "ACTIVE" and run["sequence"] == {"name": "Outreach"}
    assert run["currentStep"]["position"] == 1 and run["currentStep"]["kind"] == "CALL"
    assert abs(at(run["dueAt"]) - datetime.now(UTC)) < timedelta(minutes=1)
    again = await op(api, ATTACH, l=lead["id"], s=seq)
    assert again["userErrors"][0]["code"] == "CONFLICT" and again["sequenceRun"] is None

    # Only the current step can be completed.
    for wrong in (0, 2, 3, 7):
        bad = await op(api, COMPLETE, l=lead["id"], n=wrong)
        assert bad["userErrors"][0]["code"] == "CONFLICT", wrong
    assert (await work(api, sam))["edges"][0]["node"]["sequenceRun"]["currentStep"] == {
        "position": 1,
        "title": "Intro call",
    }

    # The CALL is done: the WAIT of 3 days makes the EMAIL due 3 days from now.
    done = await op(api, COMPLETE, l=lead["id"], n=1, notes="Budget confirmed")
    run = done["sequenceRun"]
    assert run["currentStep"]["position"] == 3 and run["currentStep"]["kind"] == "EMAIL"
    wait = at(run["dueAt"]) - datetime.now(UTC)
    assert timedelta(days=3) - timedelta(minutes=1) < wait <= timedelta(days=3)
    assert (await work(api, sam))["edges"] == []  # not due yet
    await set_due(db, lead["id"], datetime.now(UTC) - timedelta(hours=1))
    assert (await work(api, sam))["edges"][0]["node"]["sequenceRun"]["currentStep"]["position"] == 3

    # Two WAITs in a row add up.
    run = (await op(api, COMPLETE, l=lead["id"], n=3))["sequenceRun"]
    assert run["currentStep"]["position"] == 6
    wait = at(run["dueAt"]) - datetime.now(UTC)
    assert timedelta(days=3) - timedelta(minutes=1) < wait <= timedelta(days=3)

    # The last step finishes the run; there is nothing left to complete.
    run = (await op(api, COMPLETE, l=lead["id"], n=6))["sequenceRun"]
    assert (run["status"], run["currentStep"], run["dueAt"]) == ("COMPLETED", None, None)
    assert run["completedAt"] is not None
    over = await op(api, COMPLETE, l=lead["id"], n=7)
    assert over["userErrors"][0]["code"] == "CONFLICT"
    lead_now = await api(
        f'query {{ node(id: "{lead["id"]}") {{ ... on Lead {{ sequence {{ id }} }} }} }}'
    )
    assert lead_now["node"]["sequence"] is None

    # Each done step is a completed activity on the lead's timeline, owned by the lead's owner.
    timeline = await api(
        "query($id: ID!) { node(id: $id) { ... on Lead { timeline(first: 50) { edges { node { activity { kind subject body completed direction } } } } } } }",
        {"id": lead["id"]},
    )
    activities = [
        e["node"]["activity"]
        for e in timeline["node"]["timeline"]["edges"]
        if e["node"]["activity"] is not None
    ]
    assert sorted((a["kind"], a["subject"], a["body"], a["completed"]) for a in activities) == [
        ("EMAIL", "Follow-up", None, True),
        ("PHONE_CALL", "Intro call", "Budget confirmed", True),
        ("TASK", "Send proposal", None, True),
    ]
    async with db.read() as r:
        owners = (
            (
                await r.conn.execute(
                    select(t.activities.c.owner_id).where(
                        t.activities.c.lead_id == from_global_id(lead["id"])[1]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert set(owners) == {from_global_id(sam)[1]}

    # Finished: the lead can get a sequence again.
    assert (await op(api, ATTACH, l=lead["id"], s=seq))["userErrors"] == []


async def test_a_sequence_may_start_with_a_wait(api: Api) -> None:
    seq = await sequence(
        api, "Slow", [{"kind": "WAIT", "waitDays": 2}, {"kind": "TASK", "title": "Check"}]
    )
    lead = await new_lead(api)
    run = (await op(api, ATTACH, l=lead["id"], s=seq))["sequenceRun"]
    assert run["currentStep"]["position"] == 2
    wait = at(run["dueAt"]) - datetime.now(UTC)
    assert timedelta(days=2) - timedelta(minutes=1) < wait <= timedelta(days=2)


async def test_sequence_input_errors_store_nothing(api: Api, db: Database) -> None:
    bad: list[tuple[Any, list[str]]] = [
        ({"name": "", "steps": STEPS}, ["input", "name"]),
        ({"name": "N", "steps": []}, ["input", "steps"]),
        ({"name": "N", "steps": [{"kind": "WAIT"}, *STEPS]}, ["input", "steps", "0", "waitDays"]),
        (
            {"name": "N", "steps": [{"kind": "WAIT", "waitDays": 0}, *STEPS]},
            ["input", "steps", "0", "waitDays"],
        ),
        (
            {"name": "N", "steps": [{"kind": "CALL", "title": "c", "waitDays": 2}]},
            ["input", "steps", "0", "waitDays"],
        ),
        ({"name": "N", "steps": [{"kind": "CALL"}]}, ["input", "steps", "0", "title"]),
        ({"name": "N", "steps": [*STEPS, {"kind": "WAIT", "waitDays": 1}]}, ["input", "steps"]),
    ]
    for value, field in bad:
        out = await op(api, CREATE_SEQ, i=value)
        assert out["sequence"] is None
        assert [(e["code"], e["field"]) for e in out["userErrors"]] == [("INVALID", field)], value
    async with db.read() as r:
        assert await r.conn.scalar(select(func.count()).select_from(t.sequences)) == 0
    lead = await new_lead(api)
    missing = await op(api, ATTACH, l=lead["id"], s="U2VxdWVuY2U6OTk5OQ==")
    assert missing["userErrors"][0]["code"] == "NOT_FOUND"
    wrong_kind = await op(api, ATTACH, l=lead["id"], s=lead["id"])
    assert wrong_kind["userErrors"][0]["field"] == ["sequenceId"]


async def test_sequences_are_listed_in_pages(api: Api) -> None:
    for name in ("One", "Two", "Three"):
        await sequence(api, name)
    query = "query($a: String) { sequences(first: 2, after: $a) { totalCount edges { node { name } } pageInfo { hasNextPage endCursor } } }"
    first = (await api(query, {"a": None}, role=Role.VIEWER))["sequences"]
    assert first["totalCount"] == 3 and first["pageInfo"]["hasNextPage"]
    rest = (await api(query, {"a": first["pageInfo"]["endCursor"]}, role=Role.VIEWER))["sequences"]
    names = [e["node"]["name"] for e in first["edges"] + rest["edges"]]
    assert names == ["Three", "Two", "One"] and not rest["pageInfo"]["hasNextPage"]


async def test_the_work_list_holds_due_steps_and_open_tasks_oldest_first(
    api: Api, db: Database
) -> None:
    sam, kim = await seller(api, "Sam"), await seller(api, "Kim")
    seq = await sequence(api)
    now = datetime.now(UTC)
    leads = [await owned_lead(api, sam, f"Lead {i}") for i in range(3)]
    for lead in leads:
        assert (await op(api, ATTACH, l=lead["id"], s=seq))["userErrors"] == []
    await set_due(db, leads[0]["id"], now - timedelta(hours=2))
    await set_due(db, leads[1]["id"], now - timedelta(days=2))
    await set_due(db, leads[2]["id"], now + timedelta(hours=1))  # not due yet

    def task(subject: str, when: datetime, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "TASK",
            "subject": subject,
            "leadId": leads[0]["id"],
            "ownerId": sam,
            "occurredAt": when.isoformat(),
            **extra,
        }

    for value in (
        task("Overdue task", now - timedelta(days=1)),
        task("Done task", now - timedelta(hours=3), completed=True),
        task("Later task", now + timedelta(days=1)),
        {**task("Meeting", now - timedelta(hours=1)), "kind": "APPOINTMENT"},
        {**task("Kim's task", now - timedelta(hours=5)), "ownerId": kim},
    ):
        assert (await op(api, LOG, i=value))["userErrors"] == []
    # Someone else's lead, and a closed lead of Sam's, are not Sam's work.
    other = await owned_lead(api, kim, "Kim's lead")
    assert (await op(api, ATTACH, l=other["id"], s=seq))["userErrors"] == []
    closed = await owned_lead(api, sam, "Closed")
    assert (await op(api, ATTACH, l=closed["id"], s=seq))["userErrors"] == []
    gone = await api(
        f"mutation($id: ID!) {{ disqualifyLead(id: $id, reason: LOST) {{ {ERRORS} }} }}",
        {"id": closed["id"]},
    )
    assert gone["disqualifyLead"]["userErrors"] == []

    def describe(edge: dict[str, Any]) -> str:
        node = edge["node"]
        if node["activity"]:
            return str(node["activity"]["subject"])
        return f"{node['lead']['topic']} step {node['sequenceRun']['currentStep']['position']}"

    whole = await work(api, sam)
    assert [describe(e) for e in whole["edges"]] == [
        "Lead 1 step 1",
        "Overdue task",
        "Lead 0 step 1",
    ]
    assert not whole["pageInfo"]["hasNextPage"]
    for owner, expected in ((sam, 3), (kim, 2)):  # Kim: her task and her lead's step
        counted = await api(
            "query($o: ID!) { workList(ownerId: $o, first: 1) { totalCount } }", {"o": owner}
        )
        assert counted["workList"]["totalCount"] == expected, owner
    due = [at(e["node"]["dueAt"]) for e in whole["edges"]]
    assert due == sorted(due)
    assert whole["edges"][1]["node"]["lead"]["topic"] == "Lead 0"

    seen: list[str] = []
    after = None
    while True:
        page = await work(api, sam, first=1, after=after)
        seen += [describe(e) for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [describe(e) for e in whole["edges"]]
    assert [describe(e) for e in (await work(api, kim))["edges"]] == [
        "Kim's task",
        "Kim's lead step 1",
    ]
    for bad in ({"after": "nope"}, {"first": -1}):
        r = await api.post(WORK, {"o": sam, **bad})
        assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    r = await api.post(WORK, {"o": leads[0]["id"]})
    assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_custom_process_stages_require_their_fields(api: Api, db: Database) -> None:
    unknown = await op(
        api,
        CREATE_PROCESS,
        role=Role.ADMIN,
        i={"name": "P", "stages": [{"name": "A", "requiredFields": ["shoeSize"]}]},
    )
    assert unknown["userErrors"][0]["field"] == ["input", "stages", "0", "requiredFields"]
    assert "shoeSize" in unknown["userErrors"][0]["message"]
    twice = await op(
        api,
        CREATE_PROCESS,
        role=Role.ADMIN,
        i={"name": "P", "stages": [{"name": "A"}, {"name": "A"}]},
    )
    assert twice["userErrors"][0]["code"] == "INVALID"
    made = await op(
        api,
        CREATE_PROCESS,
        role=Role.ADMIN,
        i={
            "name": "Enterprise",
            "stages": [
                {"name": "Discover"},
                {
                    "name": "Propose",
                    "requiredFields": ["email", "companyName", "attributes.budget"],
                },
                {"name": "Negotiate", "requiredFields": ["contactId"]},
            ],
        },
    )
    assert made["userErrors"] == []
    process = made["process"]
    assert process["stages"][1] == {
        "name": "Propose",
        "requiredFields": ["email", "companyName", "attributes.budget"],
    }
    listed = await api("{ processes { totalCount edges { node { name } } } }", role=Role.VIEWER)
    assert listed["processes"]["totalCount"] == 1

    lead = await new_lead(api, topic="Big deal", email="buyer@big.io")
    default = await op(api, PROCESS_STAGE, id=lead["id"], p="Propose")
    assert default["userErrors"][0]["field"] == ["processStage"]  # on the default process
    on = await op(api, ASSIGN_PROCESS, role=Role.ADMIN, id=lead["id"], p=process["id"])
    assert on["lead"]["processStage"] == "Discover"
    assert on["lead"]["process"] == {"name": "Enterprise"} and on["lead"]["stage"] == "INQUIRY"

    blocked = await op(api, PROCESS_STAGE, id=lead["id"], p="Propose")
    error = blocked["userErrors"][0]
    assert (error["code"], error["field"]) == ("INVALID", ["processStage"])
    assert "companyName" in error["message"] and "attributes.budget" in error["message"]
    assert "email" not in error["message"].replace("companyName", "")
    node = await api(f'query {{ node(id: "{lead["id"]}") {{ ... on Lead {{ processStage }} }} }}')
    assert node["node"]["processStage"] == "Discover"  # nothing changed

    updated = await api(
        'mutation($id: ID!) { updateLead(id: $id, input: {topic: "Big deal", companyName: "Big", attributes: {budget: 5}}) { userErrors { code } } }',
        {"id": lead["id"]},
    )
    assert updated["updateLead"]["userErrors"] == []
    moved = await op(api, PROCESS_STAGE, id=lead["id"], p="Propose")
    assert moved["userErrors"] == [] and moved["lead"]["processStage"] == "Propose"
    assert (await op(api, PROCESS_STAGE, id=lead["id"], p="Negotiate"))["userErrors"][0][
        "message"
    ].count("contactId") == 1
    unknown_stage = await op(api, PROCESS_STAGE, id=lead["id"], p="Celebrate")
    assert "Discover, Propose, Negotiate" in unknown_stage["userErrors"][0]["message"]
    both = await op(api, PROCESS_STAGE, id=lead["id"], s="INQUIRY", p="Discover")
    assert both["userErrors"][0]["code"] == "INVALID"
    back = await op(api, PROCESS_STAGE, id=lead["id"], p="Discover")  # backwards by hand
    assert back["lead"]["processStage"] == "Discover"
    # The default process's stage still works beside it.
    assert (await op(api, STAGE, id=lead["id"], s="SALES_ACCEPTANCE"))["userErrors"] == []

    changes = [
        (p.get("processStage"), p.get("previousProcessStage"))
        for kind, p in await events(db, lead["id"])
        if kind == "STAGE_CHANGED" and "processStage" in p
    ]
    assert changes == [("Discover", None), ("Propose", "Discover"), ("Discover", "Propose")]

    off = await op(api, ASSIGN_PROCESS, role=Role.ADMIN, id=lead["id"], p=None)
    assert (off["lead"]["process"], off["lead"]["processStage"]) == (None, None)
    strict = await op(
        api,
        CREATE_PROCESS,
        role=Role.ADMIN,
        i={"name": "Strict", "stages": [{"name": "S", "requiredFields": ["phone"]}]},
    )
    refused = await op(
        api, ASSIGN_PROCESS, role=Role.ADMIN, id=lead["id"], p=strict["process"]["id"]
    )
    assert (
        refused["userErrors"][0]["field"] == ["processId"]
        and "phone" in refused["userErrors"][0]["message"]
    )


async def test_roles_for_sequences_work_lists_and_processes(api: Api) -> None:
    sam = await seller(api, "Sam")
    lead = await owned_lead(api, sam, "Roles")
    steps = [{"kind": "CALL", "title": "Call"}]
    for role in (Role.VIEWER, Role.MARKETER, Role.INTEGRATION):
        r = await api.post(CREATE_SEQ, {"i": {"name": "S", "steps": steps}}, role=role)
        assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", role
    seq = (await op(api, CREATE_SEQ, role=Role.SELLER, i={"name": "S", "steps": steps}))[
        "sequence"
    ]["id"]
    r = await api.post(ATTACH, {"l": lead["id"], "s": seq}, role=Role.VIEWER)
    assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await op(api, ATTACH, role=Role.SELLER, l=lead["id"], s=seq))["userErrors"] == []
    r = await api.post(COMPLETE, {"l": lead["id"], "n": 1}, role=Role.VIEWER)
    assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert len((await work(api, sam))["edges"]) == 1  # VIEWER reads
    assert (await op(api, COMPLETE, role=Role.SELLER, l=lead["id"], n=1))["userErrors"] == []
    stages = {"name": "P", "stages": [{"name": "A"}]}
    for role in (Role.SELLER, Role.VIEWER, Role.MARKETER):
        r = await api.post(CREATE_PROCESS, {"i": stages}, role=role)
        assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", role
    process = (await op(api, CREATE_PROCESS, role=Role.ADMIN, i=stages))["process"]["id"]
    r = await api.post(ASSIGN_PROCESS, {"id": lead["id"], "p": process}, role=Role.SELLER)
    assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await api("{ sequences { totalCount } }", role=Role.VIEWER))["sequences"][
        "totalCount"
    ] == 1
    node = await api(
        f'query {{ node(id: "{seq}") {{ ... on Sequence {{ name }} }} }}', role=Role.VIEWER
    )
    assert node["node"] == {"name": "S"}


async def test_the_opportunity_timeline_carries_the_lead_history(api: Api) -> None:
    lead = await new_lead(api, topic="Carry over", email="c@o.io")
    before = await op(
        api,
        LOG,
        i={
            "kind": "PHONE_CALL",
            "subject": "Before",
            "leadId": lead["id"],
            "occurredAt": "2026-01-01T10:00:00Z",
        },
    )
    assert before["userErrors"] == []
    qualified = await api(
        f"mutation($id: ID!) {{ qualifyLead(id: $id) {{ opportunity {{ id }} {ERRORS} }} }}",
        {"id": lead["id"]},
        role=Role.SELLER,
    )
    opportunity = qualified["qualifyLead"]["opportunity"]["id"]
    after = await op(
        api,
        LOG,
        i={
            "kind": "NOTE",
            "subject": "After",
            "opportunityId": opportunity,
            "occurredAt": "2026-01-02T10:00:00Z",
        },
    )
    assert after["userErrors"] == []
    query = "query($id: ID!, $a: String) { opportunity(id: $id) { timeline(first: 1, after: $a) { edges { node { activity { subject } event { type } } } pageInfo { hasNextPage endCursor } } } }"
    seen: list[str] = []
    for _ in range(250):  # events show once the relay has positioned them
        seen, cursor = [], None
        while True:
            page = (await api(query, {"id": opportunity, "a": cursor}, role=Role.VIEWER))[
                "opportunity"
            ]["timeline"]
            for e in page["edges"]:
                node = e["node"]
                seen.append(node["event"]["type"] if node["event"] else node["activity"]["subject"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            cursor = page["pageInfo"]["endCursor"]
        if "QUALIFIED" in seen:
            break
        await asyncio.sleep(0.02)
    assert seen == ["QUALIFIED", "CREATED", "After", "Before"]
    counted = await api(
        "query($id: ID!) { opportunity(id: $id) { timeline(first: 1) { totalCount } } }",
        {"id": opportunity},
    )
    assert counted["opportunity"]["timeline"]["totalCount"] == 4

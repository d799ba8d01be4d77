"""Pages that read only the lead attributes a query selects (api/projection.py): `workList`
items' leads and `lead(id:)` with its timeline answer exactly what the whole lead answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import parse

from api.projection import ACTIVITY_READS, EVENT_READS, LEAD_READS, lead_reads, timeline_reads
from domain.model import Lead
from persistence.repositories import partial_lead
from persistence.sales_repo import lead_columns, timeline_columns
from tests.api.test_sales import LOG, new_lead, op
from tests.api.test_sequences import ASSIGN, seller
from tests.conftest import Api

# What a test selects under each field of LEAD_READS that is an object.
SUBSELECTIONS = {
    "owner": "{ id name }",
    "contact": "{ id email }",
    "account": "{ id name }",
    "timeline": "{ totalCount edges { node { at } } }",
    "scores": "{ score }",
}


def every_lead_field() -> str:
    fields = []
    for name in LEAD_READS:
        if name == "score":
            continue  # takes a model id; read like `scores`
        fields.append(f"{name} {SUBSELECTIONS.get(name, '')}")
    return " ".join(fields)


class _Info:
    """The part of Strawberry's Info that lead_reads reads."""

    def __init__(self, document: str) -> None:
        doc = parse(document)
        self.fragments = {
            d.name.value: d for d in doc.definitions if d.kind == "fragment_definition"
        }
        operation = next(d for d in doc.definitions if d.kind == "operation_definition")
        self.field_nodes = [operation.selection_set.selections[0]]

    @property
    def _raw_info(self) -> _Info:
        return self


def test_lead_reads_follows_fields_and_fragments() -> None:
    plain = _Info("{ workList { edges { node { lead { topic fullName } dueAt } } } }")
    assert lead_reads(plain, ("edges", "node", "lead")) == {
        "id",
        "topic",
        "first_name",
        "last_name",
        "email",
    }
    spread = _Info(
        "query { workList { edges { ... E } } } fragment E on WorkItemEdge { node {"
        " ... on WorkItem { lead { stage } } lead { owner { id } } } }"
    )
    assert lead_reads(spread, ("edges", "node", "lead")) == {"id", "stage", "owner_id"}
    # No lead selected: its id only; a field not in LEAD_READS: the whole lead.
    assert lead_reads(_Info("{ workList { edges { cursor } } }"), ("edges", "node", "lead")) == {
        "id"
    }
    whole = _Info("{ workList { edges { node { lead { topic attributes } } } } }")
    assert lead_reads(whole, ("edges", "node", "lead")) is None
    assert lead_reads(_Info("{ lead(id: 1) { timeline { totalCount } } }")) == {"id"}


def test_what_pages_read_of_leads_comes_in_a_few_shapes() -> None:
    """Whatever combination of fields a query selects, a page reads its leads in one of a few
    column sets (statements are built and kept per set), each holding what was asked for."""
    names = sorted({n for reads in LEAD_READS.values() for n in reads})
    shapes = set()
    pairs = [{a, b} for a in names for b in names]
    for reads in [{"id"}, set(names), *pairs]:
        reads.add("id")
        shape = lead_columns(reads)
        assert shape is None or reads <= set(shape)
        shapes.add(shape)
    assert len(shapes) == 3  # the id alone, a summary, the whole lead
    assert lead_columns({"id", "topic"}) == (lead_columns({"id", "email", "stage"}))
    assert lead_columns(None) is None


def test_a_partial_lead_refuses_what_it_was_not_read_for() -> None:
    lead = partial_lead(("id", "topic", "stage", "attributes"), (7, "Robots", "INQUIRY", None))
    assert (lead.id, lead.topic, lead.stage.value, lead.attributes) == (7, "Robots", "INQUIRY", {})
    assert isinstance(lead, Lead)
    with pytest.raises(AttributeError):
        _ = lead.email  # never a default standing in for the stored value


async def test_every_projected_lead_field_answers_as_the_whole_lead(api: Api) -> None:
    """Each field LEAD_READS knows, read through workList (projected) and through lead(id:)
    (the whole lead), gives the same answer; so do the timeline's lead and a lead read twice
    in one query, once with its timeline and once whole."""
    schema_fields = {
        f["name"]
        for f in (await api('{ __type(name: "Lead") { fields { name } } }'))["__type"]["fields"]
    }
    assert set(LEAD_READS) - {"__typename"} <= schema_fields

    sam = await seller(api, "Sam")
    lead = await new_lead(
        api,
        topic="Projected",
        firstName="Ada",
        lastName="Lovelace",
        email="ada@engines.io",
        companyName="Engines",
        jobTitle="CTO",
        phone="+44 1",
        attributes={"budget": 5},
    )
    assert (await op(api, ASSIGN, id=lead["id"], u=sam))["userErrors"] == []
    task = {
        "kind": "TASK",
        "subject": "Call Ada",
        "leadId": lead["id"],
        "ownerId": sam,
        "occurredAt": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    }
    assert (await op(api, LOG, i=task))["userErrors"] == []

    fields = every_lead_field()
    listed = await api(
        f"query($o: ID!) {{ workList(ownerId: $o) {{ edges {{ node {{ lead {{ {fields} }} }} }} }} }}",
        {"o": sam},
    )
    whole = await api(f"query($id: ID!) {{ lead(id: $id) {{ {fields} }} }}", {"id": lead["id"]})
    assert listed["workList"]["edges"][0]["node"]["lead"] == whole["lead"]
    assert whole["lead"]["fullName"] == "Ada Lovelace" and whole["lead"]["owner"]["name"] == "Sam"

    # One field each, so a wrong mapping cannot hide behind another field reading its column.
    for name in LEAD_READS:
        if name == "score":
            continue
        one = f"{name} {SUBSELECTIONS.get(name, '')}"
        listed = await api(
            f"query($o: ID!) {{ workList(ownerId: $o) {{ edges {{ node {{ lead {{ {one} }} }} }} }} }}",
            {"o": sam},
        )
        alone = await api(f"query($id: ID!) {{ lead(id: $id) {{ {one} }} }}", {"id": lead["id"]})
        assert listed["workList"]["edges"][0]["node"]["lead"] == alone["lead"], name

    # The timeline's lead is read for the timeline alone: the lead loaded below it (the
    # activity's lead), or beside it, is the whole lead, not that partial one.
    below = await api(
        "query($id: ID!) { lead(id: $id) { timeline { edges { node { activity {"
        " subject lead { email jobTitle } } } } } } }",
        {"id": lead["id"]},
    )
    activities = [e["node"]["activity"] for e in below["lead"]["timeline"]["edges"]]
    assert {"subject": "Call Ada", "lead": {"email": "ada@engines.io", "jobTitle": "CTO"}} in (
        activities
    )
    beside = await api(
        "query($id: ID!) { a: lead(id: $id) { timeline { totalCount } }"
        " b: lead(id: $id) { email attributes } }",
        {"id": lead["id"]},
    )
    assert beside["b"] == {"email": "ada@engines.io", "attributes": {"budget": 5}}
    ahead = await api(
        f"query($id: ID!) {{ lead(id: $id) {{ {fields} }} }}".replace(
            "timeline {", "timeline(first: 5) {"
        ),
        {"id": lead["id"]},
    )
    assert ahead["lead"]["topic"] == "Projected" and ahead["lead"]["timeline"]["totalCount"] >= 1
    missing = await api('query { lead(id: "TGVhZDo5OTk5OTk=") { timeline { totalCount } } }')
    assert missing == {"lead": None}


def test_timeline_reads_follow_activities_and_events() -> None:
    info = _Info(
        "query { lead(id: 1) { timeline { edges { cursor node { at activity { subject kind }"
        " ... on TimelineItem { event { type } } } } } } }"
    )
    assert timeline_reads(info, ("timeline",)) == ({"id", "subject", "kind"}, {"id", "type"})
    # Nothing selected of them: their ids; a field the tables do not know: all of it.
    bare = _Info("{ lead(id: 1) { timeline { edges { node { at } } } } }")
    assert timeline_reads(bare, ("timeline",)) == ({"id"}, {"id"})
    whole = _Info(
        "{ lead(id: 1) { timeline { edges { node { activity { body } event { statusReason } } } } } }"
    )
    assert timeline_reads(whole, ("timeline",)) == ({"id", "body"}, None)
    assert timeline_columns({"id", "body"}, None) == (None, None)
    summary = timeline_columns({"id", "kind", "subject", "completed", "direction"}, {"id", "type"})
    assert all(shape is not None for shape in summary)


async def test_every_projected_timeline_field_answers_as_the_whole_record(api: Api) -> None:
    """Each field of ACTIVITY_READS and EVENT_READS read alone (a timeline page reading only
    the columns it needs) answers as in a page reading the whole activity or event; so do
    two reads of one lead's timeline with different selections in one query, and the
    timeline of an opportunity."""
    for type_name, table in (("Activity", ACTIVITY_READS), ("LeadEvent", EVENT_READS)):
        fields = await api(f'{{ __type(name: "{type_name}") {{ fields {{ name }} }} }}')
        assert set(table) - {"__typename"} <= {f["name"] for f in fields["__type"]["fields"]}

    sam = await seller(api, "Sam")
    lead = await new_lead(api, topic="Timeline", email="t@l.io")
    assert (await op(api, ASSIGN, id=lead["id"], u=sam))["userErrors"] == []
    now = datetime.now(UTC)
    for i, (kind, direction) in enumerate(
        [("EMAIL", "INCOMING"), ("PHONE_CALL", "OUTGOING"), ("TASK", None), ("NOTE", None)]
    ):
        activity = {
            "kind": kind,
            "subject": f'"Quoted" \\ back, new\nline é {i}',
            "body": "x" * 3000 if i == 0 else None,
            "leadId": lead["id"],
            "ownerId": sam,
            "occurredAt": (now - timedelta(minutes=i)).isoformat(),
        }
        if direction:
            activity["direction"] = direction
        assert (await op(api, LOG, i=activity))["userErrors"] == []
    moved = await api(
        "mutation($id: ID!) { setLeadStage(id: $id, stage: SALES_ACCEPTANCE) { userErrors { code } } }",
        {"id": lead["id"]},
    )
    assert moved["setLeadStage"]["userErrors"] == []

    def page(activity: str, event: str) -> str:
        return (
            "query($id: ID!) { lead(id: $id) { timeline { edges { cursor node { at"
            f" activity {{ {activity} }} event {{ {event} }} }} }} }} }} }}"
        )

    activity_all = (
        "id kind subject body direction completed occurredAt createdAt lead { id } contact { id }"
    )
    event_all = "id type occurredAt statusReason stage"
    for _ in range(250):  # events show once the relay has positioned them (in order)
        whole = await api(page(activity_all, event_all), {"id": lead["id"]})
        edges = whole["lead"]["timeline"]["edges"]
        if (edges[0]["node"]["event"] or {}).get("type") == "STAGE_CHANGED":
            break
        await asyncio.sleep(0.02)
    assert sum(e["node"]["activity"] is not None for e in edges) == 4
    assert any(e["node"]["event"] is not None for e in edges)
    assert any((e["node"]["activity"] or {}).get("body") == "x" * 3000 for e in edges)

    def alone(field: str, node: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if node is None else {field: node[field]}

    for name in ACTIVITY_READS:
        if name == "__typename":
            continue
        one = f"{name} {{ id }}" if name in ("lead", "contact") else name
        got = await api(page(one, "id"), {"id": lead["id"]})
        assert [alone(name, e["node"]["activity"]) for e in got["lead"]["timeline"]["edges"]] == [
            alone(name, e["node"]["activity"]) for e in edges
        ], name
    for name in EVENT_READS:
        if name == "__typename":
            continue
        got = await api(page("id", name), {"id": lead["id"]})
        assert [alone(name, e["node"]["event"]) for e in got["lead"]["timeline"]["edges"]] == [
            alone(name, e["node"]["event"]) for e in edges
        ], name

    # One lead, two selections of its timeline: each page holds what its own selection reads.
    both = await api(
        "query($id: ID!) { a: lead(id: $id) { timeline { edges { node { activity { subject } } } } }"
        " b: lead(id: $id) { timeline { edges { node { activity { body createdAt } } } } } }",
        {"id": lead["id"]},
    )
    subjects = [e["node"]["activity"] for e in both["a"]["timeline"]["edges"]]
    bodies = [e["node"]["activity"] for e in both["b"]["timeline"]["edges"]]
    assert subjects == [alone("subject", e["node"]["activity"]) for e in edges]
    assert bodies == [
        None
        if e["node"]["activity"] is None
        else {k: e["node"]["activity"][k] for k in ("body", "createdAt")}
        for e in edges
    ]

    # An opportunity's timeline carries the lead's history, read the same way.
    qualified = await api(
        "mutation($id: ID!) { qualifyLead(id: $id) { opportunity { id } userErrors { code } } }",
        {"id": lead["id"]},
    )
    opportunity = qualified["qualifyLead"]["opportunity"]["id"]
    for activity, event in (("subject kind", "type"), (activity_all, event_all)):
        got = await api(
            "query($id: ID!) { opportunity(id: $id) { timeline { edges { node {"
            f" activity {{ {activity} }} event {{ {event} }} }} }} }} }} }}",
            {"id": opportunity},
        )
        subjects_there = [
            e["node"]["activity"]["subject"]
            for e in got["opportunity"]["timeline"]["edges"]
            if e["node"]["activity"] is not None
        ]
        assert subjects_there == [
            e["node"]["activity"]["subject"] for e in edges if e["node"]["activity"] is not None
        ]


def test_a_partial_activity_refuses_what_it_was_not_read_for() -> None:
    from persistence.sales_repo import _activity_reader, _timeline_statement

    columns = timeline_columns({"id", "subject"}, {"id", "type"})
    stmt = _timeline_statement("lead", None, False, None, *columns)
    keys = list(stmt.selected_columns.keys())
    row = [None] * len(keys)
    row[keys.index("id")], row[keys.index("at")] = 5, datetime(2026, 1, 1, tzinfo=UTC)
    row[keys.index("a_subject")], row[keys.index("a_kind")] = "Hi", "NOTE"
    read = _activity_reader(stmt, "a_", (("id", 1), ("occurred_at", 2)), columns[0])
    activity = read(row)
    assert (activity.id, activity.subject, activity.kind.value) == (5, "Hi", "NOTE")
    with pytest.raises(AttributeError):
        _ = activity.body  # never the default (None) standing in for the stored value

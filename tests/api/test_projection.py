"""Pages that read only the lead attributes a query selects (api/projection.py): `workList`
items' leads and `lead(id:)` with its timeline answer exactly what the whole lead answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from graphql import parse

from api.projection import LEAD_READS, lead_reads
from domain.model import Lead
from persistence.repositories import partial_lead
from persistence.sales_repo import lead_columns
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

"""The fast leaf executor gives exactly what plain graphql-core execution gives."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry

from api.context import Context, Services
from api.graphql import build_schema
from api.resolvers import Mutation, Query
from domain.auth import Principal
from domain.model import Lead
from domain.roles import Role
from persistence.database import Database
from tests.conftest import Api

QUERIES = [
    "{ leads(first: 50) { edges { node { id topic firstName lastName email companyName jobTitle state stage createdAt } } } }",
    "{ leads { edges { __typename cursor c2: cursor node { __typename id t: topic source salesReady scorable fullName attributes } } pageInfo { endCursor hasNextPage } } }",
    "{ leads { edges { node { topic contact { email } } } } accounts { edges { node { name employeeCount annualRevenue } } } }",
    "{ contacts { edges { cursor node { id email firstName account { name } } } } matchingStrategies { id name fields isDefault entity } }",
    "{ leads(first: 10) { totalCount edges { cursor node { id topic firstName lastName fullName email companyName state statusReason stage source salesReady scorable attributes createdAt updatedAt contact { id email fullName account { id name employeeCount annualRevenue } } account { name } } } pageInfo { hasNextPage endCursor } } }",
    "query($yes: Boolean!) { leads { edges { node { t: topic topic @include(if: $yes) email @skip(if: $yes) ...F } } } } fragment F on Lead { stage id }",
    "{ contacts { edges { node { id email jobTitle country attributes leads { edges { node { topic } } } } } } accounts { edges { node { id name website industry } } } }",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_same_results_as_plain_execution(api: Api, database_url: str, query: str) -> None:
    await api(
        'mutation { submitForm(input: {formId: "f", fields: {email: "a@x.io", firstName: "A", companyName: "Co", x: 1}}) { leadCreated } }'
    )
    await api('mutation { createLead(input: {topic: "bare"}) { lead { id } } }')
    db = Database(database_url)
    plain = strawberry.Schema(query=Query, mutation=Mutation)
    fast = build_schema()
    context = Context(Principal(1, "t", Role.ADMIN), Services(uow=db.uow, reads=db))
    variables: dict[str, Any] = {"yes": True}
    expected = await plain.execute(query, variable_values=variables, context_value=context)
    got = await fast.execute(
        query, variable_values=variables, context_value=Context(context.principal, context.services)
    )
    assert expected.errors is None
    assert got.errors is None
    assert got.data == expected.data
    await db.dispose()


async def test_null_in_a_non_null_field_is_still_an_error(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(database_url)
    async with db.uow() as uow:
        await uow.leads.add(Lead(topic="x"))
        await uow.commit()
    from persistence import repositories

    listing = repositories._LEADS
    original = listing.to_domain

    def broken(row: Any) -> Lead:
        lead = original(row)
        lead.topic = None  # type: ignore[assignment]
        return lead

    monkeypatch.setattr(listing, "to_domain", broken)
    context = Context(Principal(1, "t", Role.ADMIN), Services(uow=db.uow, reads=db))
    result = await build_schema().execute(
        "{ leads { edges { node { topic } } } }", context_value=context
    )
    # The broken invariant surfaces as an (masked) error at the field, not as a silent null.
    assert result.errors and result.errors[0].message == "Unexpected error."
    assert result.errors[0].path == ["leads", "edges", 0, "node", "topic"]
    assert "Cannot return null for non-nullable field Lead.topic" in caplog.text
    await db.dispose()


async def test_errors_about_the_request_leave_no_traceback_in_the_log(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A FORBIDDEN, a BAD_USER_INPUT or a validation error is the client's to see: logging
    each with a traceback buried the real failures."""
    db = Database(database_url)
    schema = build_schema()
    viewer = Context(Principal(1, "t", Role.VIEWER), Services(uow=db.uow, reads=db))
    for query in (
        'mutation { createAccount(input: {name: "A"}) { account { id } } }',  # FORBIDDEN
        '{ lead(id: "nope") { id } }',  # BAD_USER_INPUT
        "{ leads { nope } }",  # validation
    ):
        result = await schema.execute(query, context_value=viewer)
        assert result.errors, query
    assert "Traceback" not in caplog.text and not [
        r for r in caplog.records if r.exc_info or r.levelname == "ERROR"
    ]
    await db.dispose()


WORK_AND_TIMELINE = [
    """query($o: ID!) { workList(ownerId: $o, first: 50) {
      edges { cursor node { dueAt lead { id topic stage } sequenceRun { id status dueAt
        currentStep { position kind title notes waitDays } sequence { name } }
        activity { id kind subject completed direction occurredAt } } }
      pageInfo { hasNextPage endCursor } } }""",
    """query($l: ID!) { lead(id: $l) { id timeline(first: 50) {
      edges { cursor node { at activity { id kind subject body completed direction }
        event { type occurredAt } } }
      pageInfo { hasNextPage endCursor } } } }""",
    # Aliases, __typename and a nested object asked twice under two keys.
    """query($o: ID!) { workList(ownerId: $o) { edges { node { __typename when: dueAt
      l1: lead { topic } l2: lead { id } run: sequenceRun { __typename currentStep { title } } } } } }""",
]


@pytest.mark.parametrize("query", WORK_AND_TIMELINE)
async def test_work_list_and_timeline_same_as_plain_execution(
    api: Api, database_url: str, query: str
) -> None:
    """Work items and timeline entries hold nested objects that may be null (a run or an
    activity, an activity or an event): the generated builders read them inline."""
    from datetime import UTC, datetime, timedelta

    from graphql import ExecutionResult
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    from tests.api.test_sales import op
    from tests.api.test_sequences import ATTACH, LOG, STAGE, owned_lead, seller, sequence, set_due

    db = Database(database_url)
    sam = await seller(api, "Sam")
    seq = await sequence(api)
    now = datetime.now(UTC)
    leads = [await owned_lead(api, sam, f"Lead {i}") for i in range(3)]
    for i, lead in enumerate(leads):
        assert (await op(api, ATTACH, l=lead["id"], s=seq))["userErrors"] == []
        await set_due(db, lead["id"], now - timedelta(hours=i + 1))
    assert (await op(api, STAGE, id=leads[0]["id"], s="SALES_ACCEPTANCE"))["userErrors"] == []
    for i, (kind, direction) in enumerate(
        [("TASK", None), ("PHONE_CALL", "OUTGOING"), ("EMAIL", "INCOMING"), ("TASK", None)]
    ):
        value = {
            "kind": kind,
            "subject": f"{kind} {i}",
            "leadId": leads[0]["id"],
            "ownerId": sam,
            "occurredAt": (now - timedelta(minutes=30 * i + 5)).isoformat(),
        }
        if direction:
            value |= {"direction": direction, "body": "b"}
        assert (await op(api, LOG, i=value))["userErrors"] == []

    fast = build_schema()
    plain = build_schema()
    plain.execution_context_class = StrawberryGraphQLCoreExecutionContext
    context = Context(Principal(1, "t", Role.ADMIN), Services(uow=db.uow, reads=db))
    variables = {"o": sam, "l": leads[0]["id"]}

    async def run(schema: strawberry.Schema) -> ExecutionResult:
        fresh = Context(context.principal, context.services)
        return await schema.execute(query, variable_values=variables, context_value=fresh)

    expected, got = await run(plain), await run(fast)
    assert expected.errors is None and got.errors is None
    assert got.data == expected.data
    data = got.data or {}
    page = data["workList"] if "workList" in data else data["lead"]["timeline"]
    assert len(page["edges"]) >= 4
    await db.dispose()


def test_dates_strings_flags_and_enums_serialise_inline() -> None:
    """The schema's own DateTime (aware, serialised by datetime.isoformat), String, ID, Boolean
    and enum leaves are written inline by the fast executor, not through graphql-core's
    coercion per value (a timeline page is 50 `at`s)."""
    from datetime import datetime

    from graphql import GraphQLEnumType, GraphQLNonNull, GraphQLObjectType

    from api.execution import _leaf

    schema = build_schema()._schema
    seen: dict[str, int] = {}
    for gql_type in schema.type_map.values():
        if not isinstance(gql_type, GraphQLObjectType) or gql_type.name.startswith("__"):
            continue
        for field_def in gql_type.fields.values():
            named = field_def.type
            while isinstance(named, GraphQLNonNull):
                named = named.of_type
            name = getattr(named, "name", None)
            if name not in ("DateTime", "String", "ID", "Boolean") and not isinstance(
                named, GraphQLEnumType
            ):
                continue
            leaf = _leaf(field_def)
            if leaf is None:  # a resolver the fast path does not run: not a leaf of ours to read
                continue
            kind = "enum" if isinstance(named, GraphQLEnumType) else str(name)
            assert leaf.fast is not None, f"{gql_type.name}.{field_def.ast_node or ''} ({kind})"
            if kind == "DateTime":
                assert leaf.fast is datetime and leaf.convert is datetime.isoformat
            seen[kind] = seen.get(kind, 0) + 1
    assert seen.get("DateTime", 0) > 10 and seen.get("enum", 0) > 5, seen

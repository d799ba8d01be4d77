"""Queries and mutations generated from schema.graphql (hypothesis-graphql) against the app.

No answer may be a 5xx; every answer is well-formed GraphQL JSON whose errors show no stack
trace or SQL; and afterwards the database holds only what the rules allow. The example budget
is fixed and the generation derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import asyncio
import math
import re
from contextlib import AsyncExitStack
from datetime import UTC
from pathlib import Path

import graphql
import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries
from sqlalchemy import text

from api.app import create_app
from api.settings import Settings
from domain.roles import Role
from persistence.database import Database

SCHEMA = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
QUERY_EXAMPLES = 100
MUTATION_EXAMPLES = 100
INVALID_EXAMPLES = 50  # documents with one schema violation each


def _budget(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_json_leaf = st.one_of(
    st.none().map(lambda _: graphql.NullValueNode()),
    st.booleans().map(nodes.Boolean),
    st.integers(min_value=-(2**63), max_value=2**63).map(nodes.Int),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.text(max_size=20).map(nodes.String),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(nodes.List),
        st.dictionaries(_name, inner, max_size=3).map(
            lambda d: nodes.Object(
                [
                    graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
                    for k, v in d.items()
                ]
            )
        ),
    ),
    max_leaves=8,
)
SCALARS = {
    "JSON": _json,
    "DateTime": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: nodes.String(d.isoformat())),
        st.text(max_size=12).map(nodes.String),
    ),
    "Date": st.one_of(st.dates().map(lambda d: nodes.String(d.isoformat())), st.text(max_size=8).map(nodes.String)),
}  # fmt: skip

# What must never reach a client: tracebacks, driver or SQL text.
LEAKS = re.compile(
    r"Traceback|File \"|sqlalchemy|asyncpg|sqlite3|psycopg|\bSELECT\b|\bINSERT\b|\bUPDATE \w+ SET\b",
)


def check_answer(response: httpx.Response, document: str) -> None:
    assert response.status_code < 500, (response.status_code, document, response.text[:500])
    body = orjson.loads(response.content)
    if response.status_code == 400:
        # Refused as a request before it runs (text holding U+0000, say), in GraphQL's shape.
        codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors") or []}
        assert codes == {"BAD_REQUEST"}, (document, response.text[:500])
    else:
        assert response.status_code == 200, (response.status_code, document, response.text[:500])
    assert isinstance(body, dict) and set(body) <= {"data", "errors", "extensions"}, body
    assert "data" in body or "errors" in body
    for error in body.get("errors") or []:
        assert isinstance(error, dict) and isinstance(error.get("message"), str), error
        shown = orjson.dumps(error).decode()
        assert not LEAKS.search(shown), (document, shown)
        extensions = error.get("extensions") or {}
        assert not {"exception", "stacktrace", "traceback"} & {k.lower() for k in extensions}


SEED = """
mutation {
  setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { settings { leadManagementEnabled } }
  a: createAccount(input: {name: "Contoso", industry: "Pharma", employeeCount: 1200}) { account { id } }
  s: createScoringModel(input: {name: "fit", rules: [
      {name: "cto", points: 7, condition: {attribute: {entity: LEAD, field: "jobTitle", operator: EQ, value: "CTO"}}},
      {name: "opens", points: 2, perOccurrence: true, maxPoints: 10,
       condition: {interaction: {type: EMAIL_OPENED, withinDays: 30}}}]}) { scoringModel { id } }
}
"""


async def _seed(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    seeded = (await client.post("/graphql", json={"query": SEED}, headers=headers)).json()
    assert "errors" not in seeded, seeded
    account = seeded["data"]["a"]["account"]["id"]
    model = seeded["data"]["s"]["scoringModel"]["id"]
    more = f"""mutation {{
      c: createContact(input: {{email: "lena@contoso.example", firstName: "Lena", accountId: "{account}", jobTitle: "CTO"}}) {{ contact {{ id }} }}
      p: publishScoringModel(id: "{model}") {{ scoringModel {{ id }} }}
    }}"""
    data = (await client.post("/graphql", json={"query": more}, headers=headers)).json()
    assert "errors" not in data, data
    contact = data["data"]["c"]["contact"]["id"]
    last = f"""mutation {{
      l: createLead(input: {{topic: "Robots", contactId: "{contact}", jobTitle: "CTO"}}) {{ lead {{ id }} }}
      u: createLead(input: {{topic: "Nobody's"}}) {{ lead {{ id }} }}
      i: recordInteraction(input: {{contactId: "{contact}", type: EMAIL_OPENED}}) {{ userErrors {{ message }} }}
    }}"""
    data = (await client.post("/graphql", json={"query": last}, headers=headers)).json()
    assert "errors" not in data, data


async def check_database(db: Database) -> int:
    """Invariants the schema's operations must keep, whatever was sent; how many scores."""
    async with db.read() as r:
        conn = r.conn
        rows = (await conn.execute(text("SELECT score, breakdown FROM lead_scores"))).all()
        for score, breakdown in rows:
            entries = orjson.loads(breakdown) if isinstance(breakdown, str | bytes) else breakdown
            total = sum(e[0] for e in entries if e is not None)
            assert math.isclose(score, total, abs_tol=1e-6), (score, entries)
        unscorable = await conn.scalar(
            text(
                "SELECT count(*) FROM lead_scores s JOIN leads l ON l.id = s.lead_id "
                "WHERE l.contact_id IS NULL AND l.account_id IS NULL"
            )
        )
        assert unscorable == 0, "scores of leads with no contact and no account"
        drafts = await conn.scalar(
            text(
                "SELECT count(*) FROM lead_scores s JOIN scoring_models m "
                "ON m.id = s.scoring_model_id WHERE m.status = 'DRAFT' AND m.version = 0"
            )
        )
        assert drafts == 0, "scores of a model that was never published"
        models = {
            row.id: row.status
            for row in (await conn.execute(text("SELECT id, status FROM scoring_models"))).all()
        }
        for status, criteria in (
            await conn.execute(text("SELECT status, criteria FROM qualification_models"))
        ).all():
            criteria = orjson.loads(criteria) if isinstance(criteria, str | bytes) else criteria
            for c in criteria:
                assert c["scoringModelId"] in models, "a qualification model names a deleted model"
                if status == "LIVE":
                    assert models[c["scoringModelId"]] == "LIVE", "LIVE on a stopped model"
        for table, column in (
            ("leads", "contact_id"),
            ("leads", "account_id"),
            ("contacts", "account_id"),
            ("interactions", "contact_id"),
            ("lead_scores", "lead_id"),
            ("lead_events", "lead_id"),
        ):
            parent = "contacts" if column == "contact_id" else "accounts"
            parent = "leads" if column == "lead_id" else parent
            orphans = await conn.scalar(
                text(
                    f"SELECT count(*) FROM {table} c WHERE c.{column} IS NOT NULL AND NOT EXISTS "
                    f"(SELECT 1 FROM {parent} p WHERE p.id = c.{column})"
                )
            )
            assert orphans == 0, f"{table}.{column} points nowhere"
    return len(rows)


def test_generated_queries_and_mutations(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    try:
        settings_ = Settings(
            database_url=database_url,
            env="test",
            api_key_cache_seconds=60,
            webhook_interval_seconds=0,
            score_expiry_interval_seconds=0,
        )
        app = create_app(settings_, migrate=False)
        key = loop.run_until_complete(app.state.keys.create("fuzz", Role.ADMIN))[1]
        headers = {"Authorization": f"Bearer {key}"}
        loop.run_until_complete(stack.enter_async_context(app.router.lifespan_context(app)))
        client = loop.run_until_complete(
            stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                    base_url="http://test",
                )
            )
        )
        loop.run_until_complete(_seed(client, headers))
        # The checks see the seeded score (they are not vacuous)…
        assert loop.run_until_complete(check_database(app.state.db)) >= 1
        sent: list[str] = []

        def run(document: str) -> None:
            sent.append(document)
            response = loop.run_until_complete(
                client.post("/graphql", json={"query": document}, headers=headers)
            )
            check_answer(response, document)

        @_budget(QUERY_EXAMPLES)
        @given(queries(SCHEMA, custom_scalars=SCALARS))
        def fuzz_queries(document: str) -> None:
            run(document)

        @_budget(MUTATION_EXAMPLES)
        @given(mutations(SCHEMA, custom_scalars=SCALARS))
        def fuzz_mutations(document: str) -> None:
            run(document)

        @_budget(INVALID_EXAMPLES)
        @given(
            queries(SCHEMA, custom_scalars=SCALARS, mode=Mode.NEGATIVE)
            | mutations(SCHEMA, custom_scalars=SCALARS, mode=Mode.NEGATIVE)
        )
        def fuzz_invalid(document: str) -> None:
            run(document)

        fuzz_queries()
        fuzz_mutations()
        fuzz_invalid()
        assert len(sent) >= (QUERY_EXAMPLES + MUTATION_EXAMPLES + INVALID_EXAMPLES) // 2
        loop.run_until_complete(check_database(app.state.db))

        async def corrupt() -> None:
            async with app.state.db.uow() as uow:
                await uow.conn.execute(text("UPDATE lead_scores SET score = score + 1"))
                await uow.commit()

        # …and would notice a score that is not the sum of its breakdown.
        loop.run_until_complete(corrupt())
        try:
            loop.run_until_complete(check_database(app.state.db))
            corrupted_seen = False
        except AssertionError:
            corrupted_seen = True
        assert corrupted_seen or not loop.run_until_complete(_scores(app.state.db))
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


async def _scores(db: Database) -> int:
    async with db.read() as r:
        return int(await r.conn.scalar(text("SELECT count(*) FROM lead_scores")) or 0)

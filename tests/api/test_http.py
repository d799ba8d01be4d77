"""The GraphQL endpoint over HTTP: a plain JSON POST is answered directly, the rest by the view.

Both paths must answer exactly as Strawberry's view does for the same request.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator

import httpx

from domain.roles import Role
from tests.conftest import Api

VIEWER = "{ viewer { name role } }"


def auth(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.keys[Role.ADMIN]}"}


async def test_plain_json_query_and_mutation(api: Api) -> None:
    r = await api.client.post("/graphql", json={"query": VIEWER}, headers=auth(api))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"data": {"viewer": {"name": "test ADMIN", "role": "ADMIN"}}}
    r = await api.client.post(
        "/graphql",
        json={
            "query": "mutation M($n: String!) { createAccount(input: {name: $n}) { account { name } } }",
            "variables": {"n": "Posted"},
            "operationName": "M",
        },
        headers=auth(api),
    )
    assert r.json() == {"data": {"createAccount": {"account": {"name": "Posted"}}}}


async def test_charset_parameter_and_chunked_body(api: Api) -> None:
    body = b'{"query": "{ viewer { role } }", "variables": null}'

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    headers = {**auth(api), "Content-Type": "application/json; charset=utf-8"}
    r = await api.client.post("/graphql", content=chunks(), headers=headers)
    assert r.status_code == 200
    assert r.json() == {"data": {"viewer": {"role": "ADMIN"}}}


async def test_errors_keep_the_graphql_shape(api: Api) -> None:
    r = await api.client.post("/graphql", json={"query": "{ nope }"}, headers=auth(api))
    assert r.status_code == 200
    body = r.json()
    assert body["data"] is None
    assert "Cannot query field 'nope'" in body["errors"][0]["message"]


async def test_bad_requests_get_one_graphql_shaped_answer(api: Api) -> None:
    async def post(content: bytes, content_type: str = "application/json") -> httpx.Response:
        headers = {**auth(api), "Content-Type": content_type}
        return await api.client.post("/graphql", content=content, headers=headers)

    cases = [
        (b"{not json", "the body is not JSON"),
        (b"{}", "a GraphQL request needs a query"),
        (b'{"query": null}', "a GraphQL request needs a query"),
        (b'{"query": 1}', "a GraphQL request needs a query"),
        (b'{"query": "  "}', "a GraphQL request needs a query"),
        (b'{"query": "{ viewer { role } }", "variables": []}', "variables must be a JSON object"),
        (b'{"query": "{ viewer { role } }", "variables": "{}"}', "variables must be a JSON"),
        (b'{"query": "{ viewer { role } }", "extensions": 1}', "extensions must be a JSON object"),
        (b'{"query": "{ viewer { role } }", "operationName": 5}', "operationName must be a"),
        (
            b'{"query": "query A { viewer { role } }", "operationName": "B"}',
            "the document has no operation named 'B'",
        ),
        # Several operations and no operationName: GraphQL requires the name (the first one
        # ran, unseen by Idempotency-Key).
        (
            b'{"query": "mutation M { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true)'
            b' { userErrors { code } } } query Q { viewer { role } }"}',
            "name the one to run in operationName",
        ),
        # U+0000 in text: PostgreSQL stores no such character (SQLite would).
        (
            json.dumps(
                {
                    "query": "mutation($i: AccountInput!) { createAccount(input: $i) { userErrors { code } } }",
                    "variables": {"i": {"name": "nul\x00byte"}},
                }
            ).encode(),
            "NUL characters",
        ),
        (
            json.dumps(
                {
                    "query": 'mutation { createAccount(input: {name: "a\\u0000b"}) { userErrors { code } } }'
                }
            ).encode(),
            "NUL characters",
        ),
        (b'"just a string"', "a GraphQL request is a JSON object"),
        (b"null", "a GraphQL request is a JSON object"),
        (b"1", "a GraphQL request is a JSON object"),
        (b"[1]", "a GraphQL request is a JSON object"),
        (
            json.dumps(
                {"query": '{ leads(filter: {search: "' + "x" * 100_001 + '"}) { totalCount } }'}
            ).encode(),
            "pass values as variables",
        ),
        (
            b'{"query": "subscription { leadEvents { cursor } }"}',
            "subscriptions are not allowed when using POST",
        ),
    ]
    for content, message in cases:
        r = await post(content)
        assert r.status_code == 400, (content, r.text)
        error = r.json()["errors"][0]
        assert message in error["message"], (content, r.text)
        assert error["extensions"]["code"] == "BAD_REQUEST"
    # Nor as a stream over HTTP: a subscription is a WebSocket's business.
    for accept in ("multipart/mixed", "text/event-stream"):
        headers = {**auth(api), "Content-Type": "application/json", "Accept": accept}
        body = b'{"query": "subscription { leadEvents { cursor } }"}'
        r = await api.client.post("/graphql", content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert "WebSocket" in r.json()["errors"][0]["message"]


async def test_auth_comes_before_the_body_is_read(api: Api) -> None:
    r = await api.client.post(
        "/graphql", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401
    assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_startup_objects_are_out_of_the_collectors_scans(api: Api) -> None:
    assert gc.get_freeze_count() > 0  # what startup built is never scanned again (api/app.py)

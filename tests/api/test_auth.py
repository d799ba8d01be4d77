"""Authentication and role checks over HTTP."""

from __future__ import annotations

import httpx
import pytest

from domain.roles import Role
from tests.conftest import Api

VIEWER_Q = "{ viewer { name role } }"


async def test_no_key_is_401_unauthenticated(api: Api) -> None:
    response = await api.client.post("/graphql", json={"query": VIEWER_Q})
    assert response.status_code == 401
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer lf_nope", "Basic abc", "Bearer", "lf_x"])
async def test_bad_key_is_401(api: Api, header: str) -> None:
    response = await api.client.post(
        "/graphql", json={"query": VIEWER_Q}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_viewer_names_the_key_and_role(api: Api) -> None:
    data = await api(VIEWER_Q, role=Role.MARKETER)
    assert data["viewer"] == {"name": "test MARKETER", "role": "MARKETER"}


async def test_revoked_key_is_refused(api: Api, database_url: str) -> None:
    from persistence.apikeys import ApiKeyStore
    from persistence.database import Database

    db = Database(database_url)
    store = ApiKeyStore(db, cache_seconds=0)
    key, secret = await store.create("temp", Role.VIEWER)
    assert (await api.post(VIEWER_Q, key=secret)).status_code == 200
    assert await store.revoke(key.id)
    assert not await store.revoke(key.id)
    assert (await api.post(VIEWER_Q, key=secret)).status_code == 401
    await db.dispose()


FORBIDDEN_CASES = [
    (Role.VIEWER, 'mutation { createLead(input: {topic: "x"}) { userErrors { code } } }'),
    (Role.SELLER, 'mutation { createContact(input: {email: "s@x.io"}) { userErrors { code } } }'),
    (
        Role.INTEGRATION,
        'mutation { importRecords(input: {entity: CONTACT, csv: "email\\na@b.io"}) { created } }',
    ),
    (
        Role.INTEGRATION,
        'mutation { createMatchingStrategy(input: {name: "n", entity: CONTACT, fields: ["phone"]})'
        " { userErrors { code } } }",
    ),
    (
        Role.MARKETER,
        "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) "
        "{ settings { leadManagementEnabled } } }",
    ),
    (Role.VIEWER, 'mutation { submitForm(input: {formId: "f", fields: {}}) { leadCreated } }'),
]


@pytest.mark.parametrize(("role", "query"), FORBIDDEN_CASES)
async def test_roles_are_enforced(api: Api, role: Role, query: str) -> None:
    errors = await api.errors(query, role=role)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert role.value in errors[0]["message"]


@pytest.mark.parametrize("role", list(Role))
async def test_every_role_may_read(api: Api, role: Role) -> None:
    data = await api(
        "{ leads(first: 1) { totalCount } settings { leadManagementEnabled } }", role=role
    )
    assert data["leads"]["totalCount"] == 0


async def test_integration_may_capture_and_write(api: Api) -> None:
    data = await api(
        'mutation { submitForm(input: {formId: "f1", fields: {email: "i@x.io"}}) '
        "{ contactCreated userErrors { code } } }",
        role=Role.INTEGRATION,
    )
    assert data["submitForm"]["contactCreated"] is True


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text


async def test_graphiql_page_needs_no_key_in_development(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_production_hides_graphiql_and_introspection(database_url: str) -> None:
    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(database_url=database_url, env="production"), migrate=False)
    _, secret = await app.state.keys.create("p", Role.ADMIN)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get("/graphql", headers={"Accept": "text/html"})
            assert page.status_code in (401, 404, 405)
            intro = await client.post(
                "/graphql",
                json={"query": "{ __schema { types { name } } }"},
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert "errors" in intro.json()

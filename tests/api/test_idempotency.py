"""Idempotency-Key: a mutation runs once per key and API key; retries get the stored answer."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, update

from api.app import create_app
from api.idempotency import Idempotency
from api.settings import Settings
from domain.auth import Principal
from domain.model import utcnow
from domain.roles import Role
from persistence import tables as t
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from persistence.idempotency import IdempotencyKeyStore

CREATE = 'mutation { createAccount(input: {name: "Contoso"}) { account { id name } userErrors { message } } }'
COUNT = "{ accounts { totalCount } }"


class Client:
    def __init__(self, client: httpx.AsyncClient, keys: dict[Role, str], db: Database) -> None:
        self.client = client
        self.keys = keys
        self.db = db

    async def post(
        self,
        body: Any,
        key: str | bytes | None = None,
        *,
        role: Role = Role.ADMIN,
        accept: str | None = None,
    ) -> httpx.Response:
        headers: dict[str, str | bytes] = {
            "Authorization": f"Bearer {self.keys[role]}",
            "Content-Type": "application/json",
        }
        if key is not None:
            headers["Idempotency-Key"] = key
        if accept is not None:
            headers["Accept"] = accept
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.client.post("/graphql", content=content, headers=headers)

    async def accounts(self) -> int:
        response = await self.post({"query": COUNT})
        return int(response.json()["data"]["accounts"]["totalCount"])

    async def stored_keys(self) -> int:
        async with self.db.read() as r:
            stmt = select(func.count()).select_from(t.idempotency_keys)
            return int(await r.conn.scalar(stmt) or 0)


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        database_url=database_url,
        env="test",
        api_key_cache_seconds=0,
        webhook_interval_seconds=0,
        idempotency_cleanup_interval_seconds=0,
    )
    app = create_app(settings, migrate=False)
    keys = {role: (await app.state.keys.create(f"k {role.value}", role))[1] for role in Role}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Client(http, keys, app.state.db)


@pytest.mark.parametrize("accept", [None, "multipart/mixed"], ids=["lean-path", "view-path"])
async def test_a_retry_gets_the_stored_answer_and_runs_nothing(
    client: Client, accept: str | None
) -> None:
    body = orjson.dumps({"query": CREATE})
    first = await client.post(body, "order-1", accept=accept)
    assert first.status_code == 200, first.text
    assert first.json()["data"]["createAccount"]["account"]["name"] == "Contoso"
    again = await client.post(body, "order-1", accept=accept)
    assert again.status_code == 200
    assert again.content == first.content  # byte for byte
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await client.accounts() == 1
    # A new key runs the mutation again.
    other = await client.post(body, "order-2", accept=accept)
    assert (
        other.json()["data"]["createAccount"]["account"]["id"]
        != (first.json()["data"]["createAccount"]["account"]["id"])
    )
    assert await client.accounts() == 2


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
async def test_a_body_that_is_not_plain_utf8_json_is_refused(client: Client, encoding: str) -> None:
    """A lenient parser further on must never run a mutation whose key was not looked at: a
    body with a byte order mark or in UTF-16 is a 400 before anything runs."""
    body = orjson.dumps({"query": CREATE}).decode().encode(encoding)
    for _ in range(2):
        refused = await client.post(body, "bom-1")
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert await client.accounts() == 0


async def test_the_same_key_with_another_body_is_refused(client: Client) -> None:
    assert (await client.post({"query": CREATE}, "k1")).status_code == 200
    other = CREATE.replace("Contoso", "Northwind")
    refused = await client.post({"query": other}, "k1")
    assert refused.status_code == 422
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert refused.json()["data"] is None
    # Variables are part of the body too.
    refused = await client.post({"query": CREATE, "variables": {"x": 1}}, "k1")
    assert refused.status_code == 422
    assert await client.accounts() == 1


async def test_keys_are_scoped_to_the_api_key(client: Client) -> None:
    body = {"query": CREATE}
    mine = await client.post(body, "shared", role=Role.ADMIN)
    theirs = await client.post(body, "shared", role=Role.MARKETER)
    assert "idempotent-replayed" not in theirs.headers
    assert (
        mine.json()["data"]["createAccount"]["account"]["id"]
        != (theirs.json()["data"]["createAccount"]["account"]["id"])
    )
    assert await client.accounts() == 2


async def test_queries_ignore_the_header(client: Client) -> None:
    await client.post({"query": CREATE})
    first = await client.post({"query": COUNT}, "q")
    await client.post({"query": CREATE})
    second = await client.post({"query": COUNT}, "q")
    assert first.json()["data"]["accounts"]["totalCount"] == 1
    assert second.json()["data"]["accounts"]["totalCount"] == 2
    # A document with a query and a mutation: the named operation decides.
    doc = f"query Q {COUNT} mutation M {CREATE.removeprefix('mutation ')}"
    assert (await client.post({"query": doc, "operationName": "Q"}, "q2")).status_code == 200
    assert await client.stored_keys() == 0
    await client.post({"query": doc, "operationName": "M"}, "q2")
    assert await client.stored_keys() == 1


async def test_a_bad_key_is_refused(client: Client) -> None:
    for key in ("x" * 201, "caf\u00e9".encode(), ""):
        response = await client.post({"query": CREATE}, key)
        assert response.status_code == 400, key
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await client.accounts() == 0


async def test_a_key_in_use_answers_409_and_concurrent_retries_run_once(client: Client) -> None:
    body = orjson.dumps({"query": CREATE})
    store = IdempotencyKeyStore(client.db)
    principal = await _principal(client, Role.ADMIN)
    now = utcnow()
    claim = await store.claim(principal.key_id, "busy", _sha(body), now, now + timedelta(hours=1))
    assert claim.owned
    busy = await client.post(body, "busy")
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
    assert await client.accounts() == 0

    responses = await asyncio.gather(*(client.post(body, "race") for _ in range(8)))
    assert await client.accounts() == 1
    done = [r for r in responses if r.status_code == 200]
    assert {r.status_code for r in responses} <= {200, 409}
    assert len({r.content for r in done}) == 1  # every 200 is the one answer
    assert sum("idempotent-replayed" not in r.headers for r in done) == 1


async def test_an_unfinished_request_releases_its_key(client: Client) -> None:
    store = IdempotencyKeyStore(client.db)
    idem = Idempotency(store, 60)
    principal = await _principal(client, Role.ADMIN)
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    async def crash(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await idem.handle("k", principal, b"{}", {"type": "http"}, receive, send, crash)
    assert await client.stored_keys() == 0

    async def fails(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"No GraphQL query found"})

    await idem.handle("k", principal, b"{}", {"type": "http"}, receive, send, fails)
    assert sent[0]["status"] == 400  # passed on, but not kept
    assert await client.stored_keys() == 0


async def test_expired_keys_run_again_and_are_purged(client: Client) -> None:
    body = {"query": CREATE}
    await client.post(body, "old")
    await client.post(body, "new")
    async with client.db.uow() as uow:
        await uow.conn.execute(
            update(t.idempotency_keys)
            .where(t.idempotency_keys.c.key == "old")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await uow.commit()
    rerun = await client.post(body, "old")
    assert "idempotent-replayed" not in rerun.headers
    assert await client.accounts() == 3
    async with client.db.uow() as uow:
        await uow.conn.execute(
            update(t.idempotency_keys).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await uow.commit()
    assert await IdempotencyKeyStore(client.db).purge(utcnow()) == 2
    assert await client.stored_keys() == 0


async def test_the_cleanup_job_deletes_expired_keys(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        env="test",
        webhook_interval_seconds=0,
        idempotency_key_ttl_seconds=0.001,
        idempotency_cleanup_interval_seconds=0.05,
    )
    app = create_app(settings, migrate=False)
    key = (await app.state.keys.create("k", Role.ADMIN))[1]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            c = Client(http, {Role.ADMIN: key}, app.state.db)
            assert (await c.post({"query": CREATE}, "gone")).status_code == 200
            async with asyncio.timeout(10):
                while await c.stored_keys():  # noqa: ASYNC110 (no event to wait for)
                    await asyncio.sleep(0.05)


async def _principal(client: Client, role: Role) -> Principal:
    found = await ApiKeyStore(client.db).authenticate(client.keys[role])
    assert found is not None
    return found


async def test_an_answer_that_cannot_be_stored_is_still_sent(client: Client) -> None:
    class Failing(IdempotencyKeyStore):
        async def complete(self, key_id: int, key: str, response: Any) -> None:
            raise ConnectionError("database gone")

    idem = Idempotency(Failing(client.db), 60)
    principal = await _principal(client, Role.ADMIN)
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"data":{}}'})

    await idem.handle("k", principal, b"{}", {"type": "http"}, receive, send, ok)
    assert [m.get("status") for m in sent][:1] == [200] and sent[1]["body"] == b'{"data":{}}'
    # The key stays claimed: a retry is told to wait rather than run the mutation again.
    now = utcnow()
    claim = await IdempotencyKeyStore(client.db).claim(
        principal.key_id, "k", _sha(b"{}"), now, now + timedelta(hours=1)
    )
    assert not claim.owned and claim.same_request and claim.response is None


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def test_answers_of_operations_cut_short_are_not_kept_for_replay() -> None:
    """A TIMEOUT or SERVICE_UNAVAILABLE answer rolled back: kept, it would answer every retry
    with the same Idempotency-Key for a day instead of letting one succeed."""
    from api.idempotency import _rolled_back

    def answer(code: str) -> bytes:
        error = {"message": "x", "extensions": {"code": code}}
        return orjson.dumps({"data": None, "errors": [error]})

    assert _rolled_back(answer("TIMEOUT"))
    assert _rolled_back(answer("SERVICE_UNAVAILABLE"))
    assert not _rolled_back(answer("FORBIDDEN"))
    # A userError (in the data) that happens to say TIMEOUT is an answer like any other.
    data = {"data": {"x": {"userErrors": [{"code": "TIMEOUT"}]}}}
    assert not _rolled_back(orjson.dumps(data))
    assert not _rolled_back(b"not json TIMEOUT")

"""Fixtures: a fresh, migrated database per test on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from api.ids import from_global_id
from api.settings import ROLE_NAMES, RateLimit, Settings
from domain.roles import Role
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from persistence.migrate import upgrade

PG_URL = os.environ.get("LEADFLOW_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("LEADFLOW_TEST_REDIS_URL")
REQUIRE = os.environ.get("LEADFLOW_TEST_REQUIRE_SERVICES") == "1"


def _missing(what: str, var: str) -> None:
    message = f"{what} tests need {var} (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)"
    if REQUIRE:
        pytest.fail(f"LEADFLOW_TEST_REQUIRE_SERVICES=1 but {var} is unset: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def build() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db.write_engine)
        await db.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL template database; each test gets a copy of it."""
    if not PG_URL:
        _missing("PostgreSQL", "LEADFLOW_TEST_DATABASE_URL")
    name = f"leadflow_tpl_{uuid.uuid4().hex[:8]}"
    admin_url = PG_URL

    async def run(sql: str) -> None:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    async def build() -> None:
        await run(f'CREATE DATABASE "{name}"')
        db = Database(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
        await upgrade(db.write_engine)
        await db.dispose()

    asyncio.run(build())
    yield name
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class _Copies:
    """Copies of the PostgreSQL template, made ahead in a thread while tests run, and dropped
    there after them: `CREATE DATABASE … TEMPLATE` keeps the server busy for ~0.5 s, time the
    test itself need not wait for."""

    AHEAD = 2

    def __init__(self, template: str) -> None:
        assert PG_URL is not None
        self.dsn = make_url(PG_URL).set(drivername="postgresql").render_as_string(False)
        self.template = template
        self.ready: queue.Queue[str | None] = queue.Queue()
        self.done: queue.Queue[str | None] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._work()), daemon=True)
        self.thread.start()

    async def _work(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.dsn)
        try:
            while True:
                if self.ready.qsize() < self.AHEAD:
                    name = f"leadflow_t_{uuid.uuid4().hex[:10]}"
                    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                    self.ready.put(name)
                    continue
                # Ahead enough: wait for a test to hand its database back, or for the session's
                # end (looking again at `ready` now and then, should a test take several).
                try:
                    done = await asyncio.to_thread(self.done.get, timeout=0.5)
                except queue.Empty:
                    continue
                if done is None:  # drop what was made ahead
                    while not self.ready.empty():
                        left = self.ready.get()
                        await conn.execute(f'DROP DATABASE IF EXISTS "{left}" WITH (FORCE)')
                    return
                await conn.execute(f'DROP DATABASE IF EXISTS "{done}" WITH (FORCE)')
        except BaseException as e:  # handed to the test waiting for a database
            self.error = e
            self.ready.put(None)
        finally:
            await conn.close()

    def take(self) -> str:
        name = self.ready.get(timeout=300)
        if name is None:
            raise RuntimeError(f"could not copy the template database: {self.error!r}")
        return name

    def give_back(self, name: str) -> None:
        self.done.put(name)

    def close(self) -> None:
        self.done.put(None)
        self.thread.join(120)


@pytest.fixture(scope="session")
def pg_copies(pg_template: str) -> Iterator[_Copies]:
    copies = _Copies(pg_template)
    yield copies
    copies.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database for this test, on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "leadflow.db"
        shutil.copy(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    copies: _Copies = request.getfixturevalue("pg_copies")
    assert PG_URL is not None
    name = copies.take()
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        copies.give_back(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


UNLIMITED = {role: RateLimit(per_second=1e6, burst=1_000_000) for role in ROLE_NAMES}


class Api:
    """A GraphQL client over ASGI with one API key per role (keys without a user); `user_key`
    makes a key that belongs to a user."""

    def __init__(
        self, client: httpx.AsyncClient, keys: dict[Role, str], store: ApiKeyStore | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.store = store

    async def user_key(self, user_gid: str, role: Role = Role.SELLER) -> str:
        """A new API key with `role` that belongs to the user with this global ID."""
        assert self.store is not None
        type_name, user_id = from_global_id(user_gid)
        assert type_name == "User", user_gid
        _, secret = await self.store.create(f"{role.value} of user {user_id}", role, None, user_id)
        return secret

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        role: Role = Role.ADMIN,
        key: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.keys[role]}"}
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        role: Role = Role.ADMIN,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Run an operation that must succeed without GraphQL errors; return its data."""
        response = await self.post(query, variables, role=role, key=key)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def errors(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        role: Role = Role.ADMIN,
        key: str | None = None,
    ) -> list[dict[str, Any]]:
        response = await self.post(query, variables, role=role, key=key)
        body = response.json()
        assert body.get("errors"), body
        errors: list[dict[str, Any]] = body["errors"]
        return errors


@asynccontextmanager
async def serving(database_url: str, **settings: Any) -> AsyncIterator[Api]:
    """The app on `database_url` with the test settings (and `settings` over them), with a
    key per role."""
    app = create_app(
        Settings(
            database_url=database_url,
            env="test",
            api_key_cache_seconds=0,
            webhook_interval_seconds=0,
            rate_limits=UNLIMITED,  # tests of the limits themselves build their own app
            **settings,
        ),
        migrate=False,
    )
    store: ApiKeyStore = app.state.keys
    keys = {role: (await store.create(f"test {role.value}", role))[1] for role in Role}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, keys, store)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with serving(database_url) as api:
        yield api

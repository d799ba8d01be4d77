"""Subscriptions over a real WebSocket to uvicorn in a subprocess (graphql-transport-ws).

`memory`: one server, in-process broker. `redis`: two servers on one database (PostgreSQL when configured) and one Redis;
mutations go to the first, subscribers listen on the second, and the periodic table poll is
slowed to 30 s, so what reaches them in time came through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from domain.events import encode_event_cursor
from domain.roles import Role
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from tests.conftest import PG_URL, REDIS_URL, _missing
from tests.services import free_port, start_server

ROOT = Path(__file__).resolve().parents[2]
CREATE_LEAD = (
    "mutation($i: LeadInput!) { createLead(input: $i) { lead { id } userErrors { message } } }"
)
SUBSCRIBE = (
    "subscription($after: String, $types: [LeadEventType!]) {"
    " leadEvents(after: $after, types: $types) { cursor type lead { id topic } } }"
)


def _start(db_url: str, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    return start_server(db_url, {"LEADFLOW_API_KEY_CACHE_SECONDS": "0", **extra})


async def _pg(sql: str) -> None:
    assert PG_URL is not None
    engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


@dataclass
class Servers:
    writer: str  # mutations go here
    reader: str  # subscribers connect here
    admin: str
    viewer: str

    async def mutate(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                f"{self.writer}/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self.admin}"},
            )
        body = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def lead(self, topic: str) -> str:
        data = await self.mutate(CREATE_LEAD, {"i": {"topic": topic}})
        lead_id: str = data["createLead"]["lead"]["id"]
        return lead_id

    async def head(self) -> str:
        """The cursor of the newest positioned event (position 0 when there is none)."""
        cursor, after = encode_event_cursor(0), None
        while True:
            data = await self.mutate(
                "query($after: String) { leadEvents(first: 500, after: $after) "
                "{ pageInfo { hasNextPage endCursor } } }",
                {"after": after},
            )
            info = data["leadEvents"]["pageInfo"]
            cursor = info["endCursor"] or cursor
            if not info["hasNextPage"]:
                return cursor
            after = info["endCursor"]

    @property
    def ws(self) -> str:
        return self.reader.replace("http://", "ws://") + "/graphql"


@pytest.fixture(scope="module", params=["memory", "redis"])
def servers(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    extra = {"LEADFLOW_EVENT_RELAY_INTERVAL_SECONDS": "30"}
    if request.param == "redis":
        if not REDIS_URL:
            _missing("Redis", "LEADFLOW_TEST_REDIS_URL")
        extra["LEADFLOW_REDIS_URL"] = str(REDIS_URL)
    pg_name = None
    if request.param == "redis" and PG_URL:
        # Two servers sharing PostgreSQL and Redis, as in production.
        template = request.getfixturevalue("pg_template")
        pg_name = f"leadflow_ws_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg(f'CREATE DATABASE "{pg_name}" TEMPLATE "{template}"'))
        db_url = make_url(PG_URL).set(database=pg_name).render_as_string(hide_password=False)
    else:
        path = tmp_path_factory.mktemp("ws") / "leadflow.db"
        shutil.copy(sqlite_template, path)
        db_url = f"sqlite+aiosqlite:///{path}"

    async def keys() -> tuple[str, str]:
        db = Database(db_url)
        store = ApiKeyStore(db)
        admin = (await store.create("ws admin", Role.ADMIN))[1]
        viewer = (await store.create("ws viewer", Role.VIEWER))[1]
        await db.dispose()
        return admin, viewer

    admin, viewer = asyncio.run(keys())
    procs = []
    try:
        writer_proc, writer = _start(db_url, extra)
        procs.append(writer_proc)
        reader = writer
        if request.param == "redis":
            reader_proc, reader = _start(db_url, extra)
            procs.append(reader_proc)
        yield Servers(writer, reader, admin, viewer)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


@asynccontextmanager
async def subscription(
    servers: Servers, query: str = SUBSCRIBE, **variables: Any
) -> AsyncIterator[ClientConnection]:
    async with connect(servers.ws, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {servers.viewer}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        message = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": query, "variables": variables},
        }
        await ws.send(json.dumps(message))
        yield ws


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    event: dict[str, Any] = next(iter(message["payload"]["data"].values()))
    return event


async def receive_for(ws: ClientConnection, lead_ids: set[str], n: int) -> list[dict[str, Any]]:
    """The next `n` events about these leads (other tests' events are skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < n:
        event = await receive(ws)
        if event["lead"]["id"] in lead_ids:
            got.append(event)
    return got


@pytest.mark.parametrize(
    "payload", [None, {}, {"authorization": "Bearer nope"}, {"authorization": "nope"}]
)
async def test_connection_without_a_valid_key_is_closed_with_4401(
    servers: Servers, payload: dict[str, str] | None
) -> None:
    async with connect(servers.ws, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            init["payload"] = payload
        await ws.send(json.dumps(init))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_live_events_without_after(servers: Servers) -> None:
    async with subscription(servers, types=["CREATED"]) as ws:
        # No acknowledgement tells when a subscription is in place: create probes until one
        # arrives; from then on nothing may be missed.
        probes: list[str] = []
        while True:
            probes.append(await servers.lead("probe"))
            try:
                first = await receive(ws, timeout=0.5)
                break
            except TimeoutError:
                continue
        assert first["lead"]["id"] in probes
        rest = probes[probes.index(first["lead"]["id"]) + 1 :]
        leads = [await servers.lead(f"live {i}") for i in range(3)]
        got = await receive_for(ws, set(rest + leads), len(rest) + 3)
        assert [e["lead"]["id"] for e in got] == rest + leads
        assert {e["type"] for e in got} == {"CREATED"}
        cursors = [first["cursor"]] + [e["cursor"] for e in got]
        assert len(set(cursors)) == len(cursors)


async def test_replay_after_a_cursor_then_live(servers: Servers) -> None:
    start = await servers.head()
    async with subscription(servers, after=start) as ws:
        a = await servers.lead("a")
        (event_a,) = await receive_for(ws, {a}, 1)
    # Disconnected: these happen while nobody listens.
    missed = [await servers.lead("b"), await servers.lead("c")]
    async with subscription(servers, after=event_a["cursor"]) as ws:
        got = await receive_for(ws, set(missed), 2)
        assert [e["lead"]["id"] for e in got] == missed
        later = await servers.lead("d")
        (event_d,) = await receive_for(ws, {a, later, *missed}, 1)
        assert event_d["lead"]["id"] == later  # nothing of a, b or c again


async def test_no_gap_and_no_duplicate_when_events_arrive_during_replay(servers: Servers) -> None:
    start = await servers.head()
    before = [await servers.lead(f"before {i}") for i in range(30)]
    during: list[str] = []

    async def keep_creating() -> None:
        for i in range(30):
            during.append(await servers.lead(f"during {i}"))

    async with subscription(servers, after=start, types=["CREATED"]) as ws:
        creating = asyncio.create_task(keep_creating())
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while len(got) < 60:
                event = await receive(ws)
                if event["lead"]["topic"].startswith(("before", "during")):
                    got.append(event)
        await creating
    assert [e["lead"]["id"] for e in got] == before + during


async def test_qualification_changes_only(servers: Servers) -> None:
    await servers.mutate(
        "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { userErrors { message } } }",
        {},
    )
    rule = {
        "name": "visits",
        "points": 10,
        "condition": {"interaction": {"type": "PAGE_VISITED"}},
    }
    model = await servers.mutate(
        "mutation($i: ScoringModelInput!) { createScoringModel(input: $i) { scoringModel { id } } }",
        {"i": {"name": "ws", "rules": [rule], "salesReadyThreshold": 10}},
    )
    model_id = model["createScoringModel"]["scoringModel"]["id"]
    await servers.mutate(
        "mutation($id: ID!) { publishScoringModel(id: $id) { userErrors { message } } }",
        {"id": model_id},
    )
    contact = await servers.mutate(
        'mutation { createContact(input: {email: "ws-q@x.io"}) { contact { id } } }', {}
    )
    contact_id = contact["createContact"]["contact"]["id"]
    lead = await servers.mutate(CREATE_LEAD, {"i": {"topic": "q", "contactId": contact_id}})
    lead_id = lead["createLead"]["lead"]["id"]
    start = await servers.head()
    query = (
        "subscription($after: String) { leadQualificationChanged(after: $after) "
        "{ cursor type salesReady previousSalesReady lead { id } scoringModel { id } } }"
    )
    async with subscription(servers, query, after=start) as ws:
        await servers.mutate(
            "mutation($i: RecordInteractionInput!) { recordInteraction(input: $i) { userErrors { message } } }",
            {"i": {"contactId": contact_id, "type": "PAGE_VISITED"}},
        )
        (event,) = await receive_for(ws, {lead_id}, 1)
    assert event["type"] == "SALES_READY"
    assert (event["salesReady"], event["previousSalesReady"]) == (True, False)
    assert event["scoringModel"] == {"id": model_id}


def _redis_server(port: int) -> subprocess.Popen[bytes]:
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--loglevel", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)


@pytest.fixture
def own_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server of this test's own on a free port (never the shared one)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    procs = [_redis_server(port)]
    yield port, procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


async def test_redis_restart_during_a_stream_loses_nothing(
    own_redis: tuple[int, list[subprocess.Popen[bytes]]],
    sqlite_template: Path,
    tmp_path: Path,
) -> None:
    port, redis_procs = own_redis
    path = tmp_path / "leadflow.db"
    shutil.copy(sqlite_template, path)
    db_url = f"sqlite+aiosqlite:///{path}"
    db = Database(db_url)
    store = ApiKeyStore(db)
    admin = (await store.create("admin", Role.ADMIN))[1]
    viewer = (await store.create("viewer", Role.VIEWER))[1]
    await db.dispose()
    # The table poll is slowed to 30 s: after the restart, delivery must come through Redis.
    extra = {
        "LEADFLOW_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "LEADFLOW_EVENT_RELAY_INTERVAL_SECONDS": "30",
    }
    procs = []
    try:
        for _ in range(2):
            proc, url = await asyncio.to_thread(_start, db_url, extra)
            procs.append((proc, url))
        servers = Servers(procs[0][1], procs[1][1], admin, viewer)
        async with subscription(servers, after=encode_event_cursor(0), types=["CREATED"]) as ws:
            before = await servers.lead("before")
            assert [e["lead"]["id"] for e in await receive_for(ws, {before}, 1)] == [before]

            redis_procs[0].terminate()
            await asyncio.to_thread(redis_procs[0].wait, 10)
            # Redis is down: the servers keep serving; these events wait in the table.
            during = [await servers.lead(f"during {i}") for i in range(3)]
            redis_procs.append(await asyncio.to_thread(_redis_server, port))

            # The listener reconnects by itself (with backoff); the next notice after that
            # makes the reader catch up from the table.
            after: list[str] = []
            got: list[dict[str, Any]] = []
            async with asyncio.timeout(20):
                while not got:
                    after.append(await servers.lead("after"))
                    try:
                        got.append(await receive(ws, timeout=0.5))
                    except TimeoutError:
                        continue
                expected = during + after
                while len(got) < len(expected):
                    got.append(await receive(ws))
            assert [e["lead"]["id"] for e in got] == expected
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(10)


async def test_workers_share_events_without_redis(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`leadflow serve --workers 2` on SQLite: a change made through either worker reaches a
    subscriber on the other, through the table (each worker polls its head)."""
    path = tmp_path_factory.mktemp("workers") / "leadflow.db"
    shutil.copy(sqlite_template, path)
    db_url = f"sqlite+aiosqlite:///{path}"
    db = Database(db_url)
    admin = (await ApiKeyStore(db).create("workers admin", Role.ADMIN))[1]
    viewer = (await ApiKeyStore(db).create("workers viewer", Role.VIEWER))[1]
    await db.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(
        LEADFLOW_DATABASE_URL=db_url, LEADFLOW_ENV="test", LEADFLOW_API_KEY_CACHE_SECONDS="0"
    )
    cli = [sys.executable, "-c", "from api.cli import main; main()"]
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [*cli, "serve", "--workers", "2", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(30), httpx.AsyncClient(timeout=1) as client:
            while True:
                try:
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "server did not start"
                await asyncio.sleep(0.2)
        servers = Servers(url, url, admin, viewer)
        start = await servers.head()
        async with subscription(servers, after=start, types=["CREATED"]) as ws:
            # Each mutation on a new connection: the two workers take turns accepting them.
            leads = [await servers.lead(f"worker {i}") for i in range(8)]
            got = await receive_for(ws, set(leads), len(leads))
        assert [e["lead"]["id"] for e in got] == leads
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_shared_delivery_keeps_each_subscribers_variables_and_errors(
    servers: Servers,
) -> None:
    """Subscribers of one document share its execution per event only when their variables
    match: each still gets the payload (and the errors) of its own variables."""
    query = (
        "subscription($after: String, $types: [LeadEventType!], $n: Int) "
        "{ leadEvents(after: $after, types: $types) "
        "{ type lead { id topic timeline(first: $n) { edges { cursor } } } } }"
    )
    start = await servers.head()
    async with contextlib.AsyncExitStack() as stack:

        async def subscribe(**variables: Any) -> ClientConnection:
            cm = subscription(servers, query, after=start, **variables)
            return await stack.enter_async_context(cm)

        ok = [await subscribe(types=["CREATED"], n=1) for _ in range(3)]
        bad = await subscribe(types=["CREATED"], n=-1)
        other = await subscribe(types=["STAGE_CHANGED"], n=1)
        # A fragment at the root is not for the shared path: Strawberry runs it, as before.
        fragment = (
            "subscription($after: String) { ...F } "
            "fragment F on Subscription { leadEvents(after: $after, types: [CREATED]) { type } }"
        )
        unshared = await stack.enter_async_context(subscription(servers, fragment, after=start))
        first = await servers.lead("shared 1")
        for ws in ok:
            raw = await asyncio.wait_for(ws.recv(), 5)
            # Written by the shared delivery: a text frame, like every other message.
            assert isinstance(raw, str)
            message = json.loads(raw)
            assert message == {
                "id": "1",
                "type": "next",
                "payload": message["payload"],
            }
            assert message["payload"]["data"]["leadEvents"]["lead"]["id"] == first
        raw = await asyncio.wait_for(unshared.recv(), 5)
        assert isinstance(raw, str)  # Strawberry's own path: text too
        assert json.loads(raw)["payload"] == {"data": {"leadEvents": {"type": "CREATED"}}}
        await ok[1].close()  # one goes away: the others go on
        second = await servers.lead("shared 2")
        for ws in (ok[0], ok[2]):
            (event,) = await receive_for(ws, {second}, 1)
            assert event["type"] == "CREATED"
            assert event["lead"]["topic"] == "shared 2"
            assert len(event["lead"]["timeline"]["edges"]) == 1
        for _ in range(2):  # first: -1 is an error, for this subscriber only, once per event
            message = json.loads(await asyncio.wait_for(bad.recv(), 5))
            assert message["type"] == "next"
            (error,) = message["payload"]["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT"
            assert error["path"][-1] == "timeline"
        with pytest.raises(TimeoutError):  # nothing CREATED for a STAGE_CHANGED subscriber
            await asyncio.wait_for(other.recv(), 0.5)

"""Fault injection with real servers: PostgreSQL or Redis stopped mid-load, then restarted.

A uvicorn subprocess serves a mixed load (interactions with idempotency keys, single and
batched; lead creation; lead lists) and a WebSocket subscriber follows every lead event, while
a private PostgreSQL or redis-server (never the shared ones) is stopped at once and started
again. Meanwhile every answer must be a success or a clear SERVICE_UNAVAILABLE (a GraphQL error,
or HTTP 503 when the key cannot even be checked), each within the client's timeout, and
/readyz must go red; afterwards the server must recover by itself, every acknowledged write
must be stored once, and the subscriber must have received every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.ids import from_global_id
from domain.events import decode_event_cursor, encode_event_cursor
from domain.roles import Role
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from persistence.migrate import upgrade
from tests.conftest import REQUIRE
from tests.services import (
    PrivatePostgres,
    PrivateRedis,
    postgres_bin_dir,
    start_server,
    stop_server,
)

TIMEOUT = 10.0  # no request may take longer, outage or not
# The rate limiter stays in the path (with Redis, it falls back to counting in memory during the
# outage) but far above what the load sends: throttling is not what these tests are about.
RATE_LIMITS = '{"ADMIN": {"per_second": 100000, "burst": 100000}}'
LEAK_MARKERS = ("Traceback", "asyncpg", "sqlalchemy", "psycopg", "redis.exceptions", 'File "')

RECORD_ONE = (
    "mutation($i: RecordInteractionInput!) { recordInteraction(input: $i) "
    "{ interactions { id } userErrors { code message } } }"
)
RECORD_MANY = (
    "mutation($i: [RecordInteractionInput!]!) { recordInteractions(inputs: $i) "
    "{ interactions { id } userErrors { code message } } }"
)
CREATE_LEAD = (
    "mutation($i: LeadInput!) { createLead(input: $i) { lead { id } userErrors { message } } }"
)
LIST_LEADS = "{ leads(first: 20) { edges { node { id topic stage } } } }"
SUBSCRIBE = "subscription($after: String) { leadEvents(after: $after) { cursor type lead { id } } }"


def _skip_or_fail(message: str) -> None:
    if REQUIRE:
        pytest.fail(f"LEADFLOW_TEST_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """One PostgreSQL cluster of this session's own, on a free port, that tests may kill."""
    bin_dir, why = postgres_bin_dir()
    if bin_dir is None:
        _skip_or_fail(f"the fault-injection tests need a PostgreSQL installation: {why}")
    assert bin_dir is not None
    pg = PrivatePostgres(bin_dir)
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        _skip_or_fail("the Redis fault-injection test needs redis-server on PATH")
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.close()


async def _admin_sql(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


@dataclass
class Keys:
    admin: str
    viewer: str
    fresh: list[str]  # keys no server has seen yet (so they cannot be in its cache)


async def _keys(db_url: str) -> Keys:
    db = Database(db_url)
    store = ApiKeyStore(db)
    admin = (await store.create("faults admin", Role.ADMIN))[1]
    viewer = (await store.create("faults viewer", Role.VIEWER))[1]
    fresh = [(await store.create(f"fresh {i}", Role.VIEWER))[1] for i in range(2)]
    await db.dispose()
    return Keys(admin, viewer, fresh)


@dataclass
class Outcomes:
    """What the load saw: counts by kind, and anything that was neither ok nor unavailable."""

    counts: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def note(self, op: str, kind: str, elapsed: float, detail: str = "") -> None:
        self.counts[f"{op}:{kind}"] += 1
        self.slowest = max(self.slowest, elapsed)
        if kind not in ("ok", "unavailable"):
            self.unexpected.append(f"{op}: {kind} {detail}"[:500])

    def total(self, kind: str) -> int:
        return sum(n for k, n in self.counts.items() if k.endswith(f":{kind}"))


class Load:
    """Mixed traffic against one server, recording every outcome."""

    def __init__(self, url: str, keys: Keys, contacts: list[str]) -> None:
        self.url = url
        self.keys = keys
        self.contacts = contacts
        self.outcomes = Outcomes()
        self.acked: dict[str, str] = {}  # idempotency key -> interaction id first answered
        self.leads: list[str] = []  # leads whose creation was acknowledged
        self.stop = asyncio.Event()
        self.client = httpx.AsyncClient(timeout=TIMEOUT)

    async def post(self, op: str, query: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        """The data of a successful answer; None after recording an unavailable one."""
        started = time.monotonic()
        try:
            response = await self.client.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self.keys.admin}"},
            )
        except httpx.TimeoutException:
            self.outcomes.note(op, "timeout", time.monotonic() - started)
            return None
        elapsed = time.monotonic() - started
        body_text = response.text
        if any(marker in body_text for marker in LEAK_MARKERS):
            self.outcomes.note(op, "leak", elapsed, body_text)
            return None
        body = response.json()
        errors = body.get("errors") or []
        codes = {(e.get("extensions") or {}).get("code") for e in errors}
        if response.status_code == 503 and codes == {"SERVICE_UNAVAILABLE"}:
            self.outcomes.note(op, "unavailable", elapsed)
            return None
        if response.status_code != 200:
            self.outcomes.note(op, f"http {response.status_code}", elapsed, body_text)
            return None
        if errors:
            kind = "unavailable" if codes == {"SERVICE_UNAVAILABLE"} else "error"
            self.outcomes.note(op, kind, elapsed, body_text)
            return None
        payload = next(iter(body["data"].values()))
        if isinstance(payload, dict) and payload.get("userErrors"):
            self.outcomes.note(op, "userErrors", elapsed, body_text)
            return None
        self.outcomes.note(op, "ok", elapsed)
        data: dict[str, Any] = body["data"]
        return data

    async def interactions(self, worker: int, batched: bool) -> None:
        """Record interactions, retrying each call with the same keys until it is answered."""
        contact = self.contacts[worker % len(self.contacts)]
        n = 0
        while not self.stop.is_set():
            size = 5 if batched else 1
            keys = [f"w{worker}-{n + i}" for i in range(size)]
            n += size
            inputs = [
                {"contactId": contact, "type": "PAGE_VISITED", "idempotencyKey": k} for k in keys
            ]
            while True:  # a client retry: same keys, so at most one of each is stored
                if batched:
                    data = await self.post("recordInteractions", RECORD_MANY, {"i": inputs})
                else:
                    data = await self.post("recordInteraction", RECORD_ONE, {"i": inputs[0]})
                if data is not None:
                    got = next(iter(data.values()))["interactions"]
                    assert len(got) == size
                    for key, interaction in zip(keys, got, strict=True):
                        assert self.acked.setdefault(key, interaction["id"]) == interaction["id"]
                    break
                await asyncio.sleep(0.05)

    async def create_leads(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            data = await self.post("createLead", CREATE_LEAD, {"i": {"topic": f"fault {n}"}})
            if data is not None:
                self.leads.append(data["createLead"]["lead"]["id"])
            else:
                await asyncio.sleep(0.05)

    async def list_leads(self) -> None:
        while not self.stop.is_set():
            if await self.post("leads", LIST_LEADS, {}) is None:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)


class Readiness:
    """Polls /readyz; remembers each answer with its time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, int, dict[str, Any]]] = []

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            while True:
                response = await client.get(f"{self.url}/readyz")
                self.seen.append((time.monotonic(), response.status_code, response.json()))
                await asyncio.sleep(0.05)

    def red_since(self, moment: float) -> dict[str, Any] | None:
        for at, status, body in self.seen:
            if at > moment and status != 200:
                return body
        return None

    def green_since(self, moment: float) -> bool:
        return any(at > moment and status == 200 for at, status, _ in self.seen)


class Follower:
    """A leadEvents subscriber that reconnects with its last cursor whenever it is cut off."""

    def __init__(self, url: str, key: str) -> None:
        self.ws_url = url.replace("http://", "ws://") + "/graphql"
        self.key = key
        self.positions: list[int] = []
        self.created: set[str] = set()
        self.reconnects = 0
        self.errors: list[Any] = []

    async def run(self) -> None:
        cursor = encode_event_cursor(0)
        while True:
            try:
                async with connect(self.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
                    init = {
                        "type": "connection_init",
                        "payload": {"authorization": f"Bearer {self.key}"},
                    }
                    await ws.send(json.dumps(init))
                    if json.loads(await ws.recv())["type"] != "connection_ack":
                        raise ConnectionError("not acknowledged")
                    payload = {"query": SUBSCRIBE, "variables": {"after": cursor}}
                    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] != "next":
                            self.errors.append(message)  # an error or complete: resubscribe
                            break
                        if message["payload"].get("errors"):
                            self.errors.append(message["payload"]["errors"])
                            break
                        event = message["payload"]["data"]["leadEvents"]
                        cursor = event["cursor"]
                        self.positions.append(decode_event_cursor(cursor))
                        if event["type"] == "CREATED":
                            self.created.add(event["lead"]["id"])
            except (OSError, ConnectionClosed, InvalidStatus, ConnectionError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.2)


async def _until(condition: Any, seconds: float, what: str) -> None:
    """Wait until `condition()` holds; fail saying `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


def _follower_errors_are_clear(follower: Follower) -> None:
    """What a subscriber was told when cut off: SERVICE_UNAVAILABLE, nothing internal."""
    text_ = json.dumps(follower.errors)
    assert not any(marker in text_ for marker in LEAK_MARKERS), text_
    assert "Unexpected error" not in text_, text_


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _finish(load: Load, tasks: list[asyncio.Task[Any]]) -> None:
    """Stop the load; each writer finishes (and so acknowledges) the call it is retrying."""
    load.stop.set()
    async with asyncio.timeout(30):
        await asyncio.gather(*tasks)


async def _setup(url: str, keys: Keys, contacts: int) -> list[str]:
    """Lead management on, one LIVE model scoring every visit, contacts each with a lead."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:

        async def call(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
            response = await client.post(
                f"{url}/graphql",
                json={"query": query, "variables": variables or {}},
                headers={"Authorization": f"Bearer {keys.admin}"},
            )
            body = response.json()
            assert "errors" not in body, body
            data: dict[str, Any] = body["data"]
            return data

        await call(
            "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) "
            "{ userErrors { message } } }"
        )
        rule = {
            "name": "visits",
            "points": 1,
            "perOccurrence": True,
            "condition": {"interaction": {"type": "PAGE_VISITED"}},
        }
        model = await call(
            "mutation($i: ScoringModelInput!) { createScoringModel(input: $i) "
            "{ scoringModel { id } } }",
            {"i": {"name": "faults", "rules": [rule]}},
        )
        await call(
            "mutation($id: ID!) { publishScoringModel(id: $id) { userErrors { message } } }",
            {"id": model["createScoringModel"]["scoringModel"]["id"]},
        )
        ids = []
        for i in range(contacts):
            contact = await call(
                "mutation($e: String!) { createContact(input: {email: $e}) { contact { id } } }",
                {"e": f"fault-{i}@example.com"},
            )
            contact_id = contact["createContact"]["contact"]["id"]
            await call(CREATE_LEAD, {"i": {"topic": f"scored {i}", "contactId": contact_id}})
            ids.append(contact_id)
        return ids


async def _stored(db_url: str) -> tuple[dict[str, int], set[int], int, int]:
    """(idempotency key -> interaction id, lead ids, last event position, unpositioned events)."""
    db = Database(db_url)
    async with db.read() as r:
        rows = (
            await r.conn.execute(
                text(
                    "SELECT idempotency_key, id FROM interactions WHERE idempotency_key IS NOT NULL"
                )
            )
        ).all()
        lead_ids = set((await r.conn.execute(text("SELECT id FROM leads"))).scalars())
        head = await r.conn.scalar(text("SELECT coalesce(max(position), 0) FROM lead_events"))
        unpositioned = await r.conn.scalar(
            text("SELECT count(*) FROM lead_events WHERE position IS NULL")
        )
    await db.dispose()
    keys = Counter(row[0] for row in rows)
    assert not [k for k, n in keys.items() if n > 1], "an idempotency key stored twice"
    return {row[0]: int(row[1]) for row in rows}, lead_ids, int(head or 0), int(unpositioned or 0)


def _numeric(global_id: str) -> int:
    return from_global_id(global_id)[1]


async def _check_nothing_lost(db_url: str, load: Load, follower: Follower) -> None:
    # The relay positions what was committed before and during the outage; then the
    # subscriber must catch up with the table's head.
    deadline = time.monotonic() + 20
    while True:
        _, _, head, unpositioned = await _stored(db_url)
        if unpositioned == 0:
            break
        assert time.monotonic() < deadline, f"{unpositioned} events still unpositioned"
        await asyncio.sleep(0.2)
    await _until(
        lambda: bool(follower.positions) and follower.positions[-1] >= head,
        20,
        f"the subscriber reaches position {head}",
    )
    interactions, lead_ids, head, _ = await _stored(db_url)
    # Every acknowledged interaction is stored, once, under the id the client was given;
    # every key the client sent was eventually acknowledged (retries with the same key).
    assert {k: _numeric(v) for k, v in load.acked.items()} == {
        k: v for k, v in interactions.items() if k in load.acked
    }
    assert set(interactions) == set(load.acked)
    # Every acknowledged lead is stored.
    assert {_numeric(lead) for lead in load.leads} <= lead_ids
    # Every event exactly once, in order (positions are dense: 1..head).
    assert follower.positions[:head] == list(range(1, head + 1))
    assert set(load.leads) <= follower.created


async def test_postgres_killed_mid_load_then_restarted(private_pg: PrivatePostgres) -> None:
    name = f"faults_{uuid.uuid4().hex[:8]}"
    await _admin_sql(private_pg.url, f'CREATE DATABASE "{name}"')
    db_url = private_pg.database_url(name)
    db = Database(db_url)
    await upgrade(db.write_engine)
    await db.dispose()
    keys = await _keys(db_url)
    extra = {
        "LEADFLOW_API_KEY_CACHE_SECONDS": "300",  # keys in use stay checked through the outage
        "LEADFLOW_EVENT_RELAY_INTERVAL_SECONDS": "0.2",
        "LEADFLOW_WEBHOOK_INTERVAL_SECONDS": "0",
        "LEADFLOW_RATE_LIMITS": RATE_LIMITS,
    }
    proc, url = await asyncio.to_thread(start_server, db_url, extra)
    tasks: list[asyncio.Task[Any]] = []
    watchers: list[asyncio.Task[Any]] = []
    load = Load(url, keys, await _setup(url, keys, contacts=3))
    readiness, follower = Readiness(url), Follower(url, keys.viewer)
    try:
        watchers = [asyncio.create_task(readiness.run()), asyncio.create_task(follower.run())]
        tasks = [
            asyncio.create_task(load.interactions(0, batched=False)),
            asyncio.create_task(load.interactions(1, batched=False)),
            asyncio.create_task(load.interactions(2, batched=True)),
            asyncio.create_task(load.create_leads()),
            asyncio.create_task(load.list_leads()),
        ]
        await _until(
            lambda: len(load.acked) >= 30 and len(load.leads) >= 10 and follower.positions,
            30,
            "warm-up",
        )

        killed = time.monotonic()
        await asyncio.to_thread(private_pg.kill)
        unavailable_before = load.outcomes.total("unavailable")
        await _until(
            lambda: (
                readiness.red_since(killed) is not None
                and load.outcomes.total("unavailable") >= unavailable_before + 10
            ),
            15,
            "readiness red and requests answered SERVICE_UNAVAILABLE",
        )
        assert readiness.red_since(killed) == {"status": "unavailable", "database": "unavailable"}

        # A key the server has not checked yet cannot be checked now: HTTP 503, retry later.
        response = await load.client.post(
            f"{url}/graphql",
            json={"query": "{ viewer { name } }"},
            headers={"Authorization": f"Bearer {keys.fresh[0]}"},
        )
        assert response.status_code == 503, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert response.headers["Retry-After"] == "1"
        # The same over a WebSocket: close 1013 (try again later).
        async with connect(
            url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]
        ) as ws:  # type: ignore[list-item]
            init = {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {keys.fresh[1]}"},
            }
            await ws.send(json.dumps(init))
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(TIMEOUT):
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

        restarted = time.monotonic()
        await asyncio.to_thread(private_pg.start)
        acked, created = len(load.acked), len(load.leads)
        await _until(
            lambda: (
                readiness.green_since(restarted)
                and len(load.acked) >= acked + 30
                and len(load.leads) > created
            ),
            30,
            "recovery: readiness green, writes acknowledged again",
        )
        await _finish(load, tasks)
        await _check_nothing_lost(db_url, load, follower)
    finally:
        await _cancel(tasks + watchers)
        await load.client.aclose()
        await asyncio.to_thread(stop_server, proc)
        if not private_pg.running:  # the test failed during the outage
            await asyncio.to_thread(private_pg.start)
        await _admin_sql(private_pg.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    outcomes = load.outcomes
    assert outcomes.unexpected == [], outcomes.unexpected[:5]
    assert outcomes.slowest < TIMEOUT
    assert outcomes.total("unavailable") > 0 and outcomes.total("ok") > 0, outcomes.counts
    _follower_errors_are_clear(follower)


async def test_redis_killed_mid_load_then_restarted(
    private_redis: PrivateRedis, sqlite_template: Path, tmp_path: Path
) -> None:
    """Two servers on one database and a Redis of the test's own. Redis only carries notices:
    while it is down every request still succeeds, readiness is red (naming Redis), events
    reach the other server's subscriber through its table poll, and after the restart both
    listeners re-subscribe by themselves (readiness green again)."""
    path = tmp_path / "leadflow.db"
    shutil.copy(sqlite_template, path)
    db_url = f"sqlite+aiosqlite:///{path}"
    keys = await _keys(db_url)
    extra = {
        "LEADFLOW_REDIS_URL": private_redis.url,
        "LEADFLOW_API_KEY_CACHE_SECONDS": "300",
        "LEADFLOW_EVENT_RELAY_INTERVAL_SECONDS": "0.5",
        "LEADFLOW_WEBHOOK_INTERVAL_SECONDS": "0",
        "LEADFLOW_RATE_LIMITS": RATE_LIMITS,
    }
    procs: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    watchers: list[asyncio.Task[Any]] = []
    load: Load | None = None
    try:
        for _ in range(2):
            procs.append(await asyncio.to_thread(start_server, db_url, extra))
        (_, writer), (_, reader) = procs
        load = Load(writer, keys, await _setup(writer, keys, contacts=2))
        ready = [Readiness(writer), Readiness(reader)]
        follower = Follower(reader, keys.viewer)
        watchers = [asyncio.create_task(r.run()) for r in ready]
        watchers.append(asyncio.create_task(follower.run()))
        tasks = [
            asyncio.create_task(load.interactions(0, batched=False)),
            asyncio.create_task(load.interactions(1, batched=True)),
            asyncio.create_task(load.create_leads()),
            asyncio.create_task(load.list_leads()),
        ]
        await _until(
            lambda: len(load.acked) >= 20 and len(load.leads) >= 5 and bool(follower.positions),
            30,
            "warm-up",
        )

        killed = time.monotonic()
        await asyncio.to_thread(private_redis.kill)
        await _until(
            lambda: all(r.red_since(killed) is not None for r in ready), 15, "readiness red"
        )
        for r in ready:
            expected = {"status": "unavailable", "database": "ok", "redis": "unavailable"}
            assert r.red_since(killed) == expected
        # Redis is down, the table is not: leads created now reach the other server's
        # subscriber through its poll of the table.
        created = len(load.leads)
        await _until(lambda: len(load.leads) >= created + 5, 15, "writes during the outage")
        during = set(load.leads[created : created + 5])
        await _until(lambda: during <= follower.created, 15, "delivery during the outage")

        restarted = time.monotonic()
        await asyncio.to_thread(private_redis.start)
        await _until(
            lambda: all(r.green_since(restarted) for r in ready),
            20,
            "readiness green: Redis answers and both listeners are subscribed again",
        )
        acked = len(load.acked)
        await _until(lambda: len(load.acked) >= acked + 10, 15, "writes after the restart")
        await _finish(load, tasks)
        await _check_nothing_lost(db_url, load, follower)
    finally:
        await _cancel(tasks + watchers)
        if load is not None:
            await load.client.aclose()
        for proc, _ in procs:
            await asyncio.to_thread(stop_server, proc)
    assert load is not None
    outcomes = load.outcomes
    assert outcomes.unexpected == [], outcomes.unexpected[:5]
    assert outcomes.total("unavailable") == 0, outcomes.counts  # Redis is not needed to serve
    assert outcomes.slowest < TIMEOUT
    _follower_errors_are_clear(follower)

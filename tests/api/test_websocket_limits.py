"""graphql-transport-ws at the door: origins, subprotocol, close codes, limits, revocation.

A real uvicorn server runs in the test's event loop, so the client sees real WebSocket frames
and close codes.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from sqlalchemy import update
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.app import create_app
from api.cli import server_options
from api.settings import RateLimit, Settings
from domain.roles import GRANTS, Permission, Role
from persistence import tables as t
from tests.conftest import UNLIMITED

PROTOCOL = "graphql-transport-ws"
SUBSCRIBE = "subscription { leadEvents { cursor } }"


@dataclass
class Server:
    app: Starlette
    url: str
    host: str
    keys: dict[Role, str]
    key_ids: dict[Role, int]


@asynccontextmanager
async def running(database_url: str, **overrides: Any) -> AsyncIterator[Server]:
    values: dict[str, Any] = dict(
        database_url=database_url,
        env="test",
        api_key_cache_seconds=0,
        webhook_interval_seconds=0,
        score_expiry_interval_seconds=0,
        rate_limits=UNLIMITED,
    )
    values.update(overrides)
    settings = Settings(**values)
    app = create_app(settings, migrate=False)
    keys, key_ids = {}, {}
    for role in Role:
        key, secret = await app.state.keys.create(f"ws {role.value}", role)
        keys[role], key_ids[role] = secret, key.id
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        **server_options(settings),  # as `leadflow serve` runs it
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        host = f"127.0.0.1:{port}"
        yield Server(app, f"ws://{host}/graphql", host, keys, key_ids)
    finally:
        server.should_exit = True
        await task


def speak(server: Server) -> Any:
    """A client connection offering graphql-transport-ws."""
    return connect(server.url, subprotocols=[PROTOCOL])  # type: ignore[list-item]


async def init(ws: ClientConnection, key: str) -> None:
    payload = {"authorization": f"Bearer {key}"}
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    ack = await ws.recv()
    assert isinstance(ack, str), ack  # a text frame: graphql-transport-ws messages are text
    assert json.loads(ack)["type"] == "connection_ack"


async def subscribe(ws: ClientConnection, id_: str, query: str = SUBSCRIBE) -> None:
    await ws.send(json.dumps({"id": id_, "type": "subscribe", "payload": {"query": query}}))


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """The close code and reason the server sends next (frames before it are skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    async with running(database_url) as s:
        yield s


# ---------------------------------------------------------------- handshake


async def test_only_graphql_transport_ws_is_spoken(server: Server) -> None:
    for offered in (["graphql-ws"], None):
        async with connect(server.url, subprotocols=offered) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol is None
            code, reason = await closed_with(ws)
            assert (code, reason) == (4406, "Subprotocol not acceptable")


async def test_origin_allow_list(database_url: str) -> None:
    allowed = "https://app.example.com"
    async with running(database_url, ws_allowed_origins=[allowed]) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                server.url, subprotocols=[PROTOCOL], origin="https://evil.example.net"
            ):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 403
        origins = [allowed, f"http://{server.host}", None]  # listed, same host, no browser
        for origin in origins:
            async with connect(
                server.url,
                subprotocols=[PROTOCOL],  # type: ignore[list-item]
                origin=origin,  # type: ignore[arg-type]
            ) as ws:
                await init(ws, server.keys[Role.VIEWER])


# ---------------------------------------------------------------- close codes


async def test_invalid_message_closes_4400(server: Server) -> None:
    async with speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        await ws.send(json.dumps({"type": "nonsense"}))
        assert await closed_with(ws) == (4400, "Unknown message type: nonsense")
    async with speak(server) as ws:
        await ws.send("not json")
        assert (await closed_with(ws))[0] == 4400


async def test_subscribe_before_ack_closes_4401(server: Server) -> None:
    async with speak(server) as ws:
        await subscribe(ws, "1")
        assert (await closed_with(ws))[0] == 4401


async def test_role_that_may_not_subscribe_closes_4403(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every role may subscribe today; take the grant away from VIEWER for this test.
    monkeypatch.setitem(GRANTS, Role.VIEWER, GRANTS[Role.VIEWER] - {Permission.SUBSCRIBE})
    async with speak(server) as ws:
        payload = {"authorization": f"Bearer {server.keys[Role.VIEWER]}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert await closed_with(ws) == (4403, "Forbidden: the VIEWER role may not subscribe")


async def test_no_connection_init_in_time_closes_4408(database_url: str) -> None:
    async with (
        running(database_url, ws_connection_init_timeout_seconds=0.2) as server,
        speak(server) as ws,
    ):
        assert await closed_with(ws) == (4408, "Connection initialisation timeout")


def test_connection_init_timeout_is_at_most_10_seconds() -> None:
    assert Settings().ws_connection_init_timeout_seconds == 10
    with pytest.raises(ValueError, match="less than or equal to 10"):
        Settings(ws_connection_init_timeout_seconds=11)


async def test_subscriber_id_in_use_closes_4409(server: Server) -> None:
    async with speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        await subscribe(ws, "a")
        await subscribe(ws, "a")
        assert await closed_with(ws) == (4409, "Subscriber for a already exists")


async def test_second_connection_init_closes_4429(server: Server) -> None:
    async with speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        payload = {"authorization": f"Bearer {server.keys[Role.VIEWER]}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert await closed_with(ws) == (4429, "Too many initialisation requests")


# ---------------------------------------------------------------- limits


async def test_messages_larger_than_the_body_cap_close_1009(database_url: str) -> None:
    async with running(database_url, max_body_bytes=2048) as server, speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        query = "subscription { leadEvents { cursor } } " + "#" * 4096
        await subscribe(ws, "1", query)
        assert (await closed_with(ws))[0] == 1009  # message too big


async def test_subscriptions_per_connection_are_capped(database_url: str) -> None:
    async with running(database_url, ws_max_subscriptions=2) as server, speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        for id_ in ("1", "2", "3"):
            await subscribe(ws, id_)
        frame = await ws.recv()
        assert isinstance(frame, str), frame
        refused = json.loads(frame)
        assert refused["id"] == "3"
        assert refused["type"] == "error"
        assert refused["payload"][0]["message"] == "Subscription limit reached"
        # The connection stays open; completing one makes room for another.
        await ws.send(json.dumps({"id": "1", "type": "complete"}))
        await subscribe(ws, "4")
        await ws.send(json.dumps({"type": "ping"}))
        pong = await ws.recv()
        assert isinstance(pong, str) and json.loads(pong) == {"type": "pong"}


async def test_subscribe_messages_are_rate_limited(database_url: str) -> None:
    limits = {**UNLIMITED, "VIEWER": RateLimit(per_second=0.001, burst=2)}
    async with running(database_url, rate_limits=limits) as server, speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        for id_ in ("1", "2", "3"):
            await subscribe(ws, id_)
        refused = json.loads(await ws.recv())
        assert refused["id"] == "3"
        assert refused["type"] == "error"
        error = refused["payload"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] >= 1


async def test_a_websocket_only_subscribes(server: Server) -> None:
    """Queries and mutations belong on POST /graphql (CSRF rules, timeout, Idempotency-Key):
    over the WebSocket they are refused and nothing runs."""
    async with speak(server) as ws:
        await init(ws, server.keys[Role.ADMIN])
        create = 'mutation { createAccount(input: {name: "ViaWS"}) { account { id } } }'
        for id_, query in (("1", create), ("2", "{ viewer { name } }")):
            await subscribe(ws, id_, query)
            refused = json.loads(await ws.recv())
            assert (refused["id"], refused["type"]) == (id_, "error")
            assert "only subscribes" in refused["payload"][0]["message"]
        # A mutation beside a subscription, with no operationName: GraphQL needs the name (the
        # first operation ran); a broken document, one over the token limit and one too long
        # get an error each, before anything parses them at length.
        many_ids = "subscription { leadEvents { " + "cursor " * 6000 + "} }"
        for id_, query, says in (
            ("m", create + " subscription S { leadEvents { cursor } }", "operationName"),
            ("s", "subscription { leadEvents { cursor }", "Syntax Error"),
            ("t", many_ids, "tokens"),
            ("l", "subscription { leadEvents { cursor } }" + " " * 100_001, "variables"),
            (
                "r",
                "subscription { leadEvents { " + "lead { id } " * 1100 + "} }",
                "too many times",
            ),
        ):
            await subscribe(ws, id_, query)
            refused = json.loads(await ws.recv())
            assert (refused["id"], refused["type"]) == (id_, "error"), refused
            assert any(says in e["message"] for e in refused["payload"]), refused
        await subscribe(ws, "3")  # a subscription still works on the same connection
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
    async with server.app.state.db.read() as r:
        assert await r.accounts.count(None) == 0


async def test_production_subscription_errors_carry_no_hints(database_url: str) -> None:
    async with running(database_url, env="production") as server, speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        query = "subscription($t: [LeadEventType!]) { leadEvents(types: $t) { cursor } }"
        payload = {"query": query, "variables": {"t": ["CRETED"]}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error", error
        assert "CRETED" in error["payload"][0]["message"]
        assert "Did you mean" not in error["payload"][0]["message"]


# ---------------------------------------------------------------- revocation


async def test_revoking_the_key_closes_open_subscriptions_4401(database_url: str) -> None:
    async with running(database_url, ws_key_check_seconds=0.1) as server, speak(server) as ws:
        await init(ws, server.keys[Role.VIEWER])
        await subscribe(ws, "1")
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
        assert await server.app.state.keys.revoke(server.key_ids[Role.VIEWER])
        assert await closed_with(ws) == (4401, "Unauthorized: the key was revoked")


async def test_lowering_the_role_closes_open_subscriptions_4403(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(GRANTS, Role.VIEWER, GRANTS[Role.VIEWER] - {Permission.SUBSCRIBE})
    async with running(database_url, ws_key_check_seconds=0.1) as server, speak(server) as ws:
        await init(ws, server.keys[Role.SELLER])
        await subscribe(ws, "1")
        async with server.app.state.db.uow() as uow:
            await uow.conn.execute(
                update(t.api_keys)
                .where(t.api_keys.c.id == server.key_ids[Role.SELLER])
                .values(role=Role.VIEWER.value)
            )
            await uow.commit()
        assert await closed_with(ws) == (4403, "Forbidden: the VIEWER role may not subscribe")


# ---------------------------------------------------------------- HTTP keep-alive


def test_keep_alive_outlasts_client_and_proxy_idle_timeouts() -> None:
    # httpx drops idle connections after 5 s, AWS load balancers after 60 s: the server must
    # not close first, or a request sent at that moment gets a dropped connection.
    assert server_options(Settings())["timeout_keep_alive"] > 60


async def test_idle_http_connections_stay_open_for_keep_alive_seconds(database_url: str) -> None:
    async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        return head.split(b"\r\n")[0]

    async with running(database_url, keep_alive_seconds=0.5) as server:
        host, port = server.host.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            assert await answered(reader, writer) == b"HTTP/1.1 200 OK"
            await asyncio.sleep(0.2)  # within keep-alive: the same connection serves again
            assert await answered(reader, writer) == b"HTTP/1.1 200 OK"
            async with asyncio.timeout(5):  # idle past keep-alive: the server closes it
                assert await reader.read() == b""
        finally:
            writer.close()


async def test_unknown_keys_from_one_address_are_throttled(database_url: str) -> None:
    """Past AUTH_FAILURES_BURST unknown keys, an address is refused (429 over HTTP, 4429 over
    WebSocket) before any key is looked up, until its bucket refills; keys found valid lately
    are still served."""
    import httpx

    async with running(database_url, auth_failures_per_second=0.5, auth_failures_burst=3) as s:
        query = {"query": "{ viewer { name } }"}
        async with httpx.AsyncClient(base_url=f"http://{s.host}") as client:

            async def ask(key: str) -> httpx.Response:
                return await client.post(
                    "/graphql", json=query, headers={"Authorization": f"Bearer {key}"}
                )

            assert (await ask(s.keys[Role.VIEWER])).status_code == 200  # known keys never count
            for i in range(3):
                assert (await ask(f"lf_guess{i}")).status_code == 401
            refused = await ask("lf_guess3")
            assert refused.status_code == 429
            assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            assert "unknown API keys" in refused.json()["errors"][0]["message"]
            assert 1 <= int(refused.headers["retry-after"]) <= 2
            # Until it may try again, a key not seen valid lately waits; one that was is served
            # (a client sharing the address with a guesser, behind one proxy, keeps working).
            assert (await ask(s.keys[Role.MARKETER])).status_code == 429
            assert (await ask(s.keys[Role.VIEWER])).status_code == 200
            async with speak(s) as ws:
                payload = {"authorization": f"Bearer {s.keys[Role.MARKETER]}"}
                await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
                assert (await closed_with(ws))[0] == 4429
            async with speak(s) as ws:
                await init(ws, s.keys[Role.VIEWER])
            await asyncio.sleep(2.1)
            assert (await ask(s.keys[Role.MARKETER])).status_code == 200
            async with speak(s) as ws:
                await init(ws, s.keys[Role.MARKETER])

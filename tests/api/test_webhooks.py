"""Webhooks: registration over GraphQL, signed deliveries to a real local receiver, retries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.ids import from_global_id
from api.webhooks import HttpSender, render
from domain import webhook_services as ws
from domain.model import utcnow
from domain.roles import Role
from domain.webhooks import MAX_ATTEMPTS, backoff, signature, verify
from persistence.brokers import MemoryBroker
from persistence.database import Database
from persistence.relay import Relay
from tests.conftest import Api

ERRORS = "userErrors { code field message }"
CREATE = f"mutation($i: WebhookInput!) {{ createWebhook(input: $i) {{ webhook {{ id name url eventTypes active }} secret {ERRORS} }} }}"
DELIVERIES = "query($id: ID!) { webhook(id: $id) { deliveries { totalCount edges { node { status attempts lastStatus lastError eventId deliveredAt } } } } }"


class Receiver:
    """A real HTTP server on a free port that records requests and answers as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []  # statuses to answer with, in order; then 200

    async def handle(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        return Response(status_code=self.answers.pop(0) if self.answers else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Starlette(routes=[Route("/hook", rec.handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn has no started event)
        await asyncio.sleep(0.01)
    yield rec, f"http://127.0.0.1:{port}/hook"
    server.should_exit = True
    await task


async def create(api: Api, url: str, **extra: Any) -> dict[str, Any]:
    data = await api(CREATE, {"i": {"name": "CRM sync", "url": url, **extra}})
    return data["createWebhook"]


async def make_lead(api: Api, topic: str) -> str:
    data = await api(
        "mutation($t: String!) { createLead(input: {topic: $t}) { lead { id } } }", {"t": topic}
    )
    return str(data["createLead"]["lead"]["id"])


async def add_event(db: Database, lead_gid: str, type_: str) -> None:
    from api.ids import from_global_id

    async with db.uow() as uow:
        await uow.events.add(from_global_id(lead_gid)[1], type_, {"note": type_}, utcnow())
        await uow.commit()
    # What the server's relay does after such a commit: give the event its position.
    await Relay(db, MemoryBroker()).position()


def test_signatures() -> None:
    body = b'{"a":1}'
    header = signature("s" * 16, 1700000000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify("s" * 16, header, body)
    assert not verify("s" * 16, header, body + b" ")
    assert not verify("x" * 16, header, body)
    assert not verify("s" * 16, "garbage", body)
    assert backoff(1) == timedelta(seconds=10) and backoff(2) == timedelta(seconds=20)
    assert backoff(30) == timedelta(hours=1)


async def test_crud_validation_and_roles(api: Api) -> None:
    made = await create(api, "https://example.com/hook", eventTypes=["MARKETING_QUALIFIED"])
    assert made["userErrors"] == []
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 20
    hook = made["webhook"]
    assert hook["eventTypes"] == ["MARKETING_QUALIFIED"] and hook["active"] is True
    bad = await create(api, "ftp://x", eventTypes=["NOPE"], secret="short")
    assert sorted(tuple(e["field"]) for e in bad["userErrors"]) == [
        ("input", "eventTypes"),
        ("input", "secret"),
        ("input", "url"),
    ]
    updated = await api(
        f'mutation($id: ID!) {{ updateWebhook(id: $id, input: {{name: "n", url: "https://e.io/x", active: false}}) {{ webhook {{ name active eventTypes }} secret {ERRORS} }} }}',
        {"id": hook["id"]},
    )
    # What an update leaves out stays as it is (the event types here).
    assert updated["updateWebhook"]["webhook"] == {
        "name": "n",
        "active": False,
        "eventTypes": ["MARKETING_QUALIFIED"],
    }
    assert updated["updateWebhook"]["secret"] is None
    renamed = await api(
        f'mutation($id: ID!) {{ updateWebhook(id: $id, input: {{name: "m", url: "https://e.io/x"}}) {{ webhook {{ name active eventTypes }} {ERRORS} }} }}',
        {"id": hook["id"]},
    )
    assert renamed["updateWebhook"]["webhook"] == {
        "name": "m",
        "active": False,
        "eventTypes": ["MARKETING_QUALIFIED"],
    }
    everything = await api(
        f'mutation($id: ID!) {{ updateWebhook(id: $id, input: {{name: "m", url: "https://e.io/x", eventTypes: null}}) {{ webhook {{ eventTypes }} {ERRORS} }} }}',
        {"id": hook["id"]},
    )
    assert everything["updateWebhook"]["webhook"] == {"eventTypes": []}
    for role in (Role.VIEWER, Role.SELLER, Role.INTEGRATION):
        r = await api.post("{ webhooks { totalCount } }", role=role)
        assert r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await api("{ webhooks { totalCount } }", role=Role.MARKETER))["webhooks"][
        "totalCount"
    ] == 1
    deleted = await api(
        f"mutation($id: ID!) {{ deleteWebhook(id: $id) {{ deletedId {ERRORS} }} }}",
        {"id": hook["id"]},
    )
    assert deleted["deleteWebhook"]["deletedId"] == hook["id"]
    assert (await api("{ webhooks { totalCount } }"))["webhooks"]["totalCount"] == 0


async def test_signed_delivery_of_wanted_events_only(
    api: Api, db: Database, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    old = await make_lead(api, "before the webhook")
    await add_event(db, old, "SCORE_CHANGED")  # older than the webhook: never sent
    made = await create(api, url, eventTypes=["MARKETING_QUALIFIED", "SALES_READY"])
    secret, hook_id = made["secret"], made["webhook"]["id"]
    lead = await make_lead(api, "after")
    await add_event(db, lead, "MARKETING_QUALIFIED")
    await add_event(db, lead, "SCORE_CHANGED")
    await add_event(db, lead, "SALES_READY")
    sender = HttpSender(allow_private=True)
    try:
        assert await ws.dispatch_once(db.uow, sender, render) == 2
        assert await ws.dispatch_once(db.uow, sender, render) == 0  # nothing twice
    finally:
        await sender.close()
    assert len(rec.requests) == 2
    types = []
    for headers, body in rec.requests:
        assert verify(secret, headers["x-leadflow-signature"], body)
        event = orjson.loads(body)["event"]
        assert event["leadId"] == lead and headers["x-leadflow-event"] == event["type"]
        # Every id is the Relay global ID the GraphQL API shows for the same record.
        assert from_global_id(event["id"])[0] == "LeadEvent"
        ids = {k: v for k, v in event["data"].items() if k.endswith("Id") and v is not None}
        assert all(from_global_id(v) for v in ids.values()), ids
        types.append(event["type"])
    assert types == ["MARKETING_QUALIFIED", "SALES_READY"]
    log = (await api(DELIVERIES, {"id": hook_id}))["webhook"]["deliveries"]
    assert log["totalCount"] == 2
    assert {(e["node"]["status"], e["node"]["lastStatus"]) for e in log["edges"]} == {
        ("DELIVERED", 200)
    }


async def test_a_paused_webhook_is_not_told_what_happens_meanwhile(
    api: Api, db: Database, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    hook_id = (await create(api, url))["webhook"]["id"]
    lead = await make_lead(api, "paused")
    pause = f'mutation($id: ID!, $a: Boolean) {{ updateWebhook(id: $id, input: {{name: "w", url: "{url}", active: $a}}) {{ {ERRORS} }} }}'
    await add_event(db, lead, "SALES_READY")  # before the pause, not yet sent
    sender = HttpSender(allow_private=True)
    try:
        queued = await ws.dispatch_once(db.uow, sender, render)
        await api(pause, {"id": hook_id, "a": False})
        await add_event(db, lead, "MARKETING_QUALIFIED")  # while paused: never sent
        assert await ws.dispatch_once(db.uow, sender, render) == 0
        await api(pause, {"id": hook_id, "a": True})
        await add_event(db, lead, "QUALIFIED")
        assert queued + await ws.dispatch_once(db.uow, sender, render) >= 1
        while await ws.dispatch_once(db.uow, sender, render):
            pass
    finally:
        await sender.close()
    sent = [orjson.loads(body)["event"]["type"] for _, body in rec.requests]
    assert "MARKETING_QUALIFIED" not in sent
    assert sent.count("SALES_READY") == 1 and sent.count("QUALIFIED") == 1


async def test_failures_are_retried_with_backoff_then_given_up(
    api: Api, db: Database, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    made = await create(api, url, eventTypes=["SALES_READY", "MARKETING_QUALIFIED"])
    hook_id = made["webhook"]["id"]
    lead = await make_lead(api, "retry me")
    await add_event(db, lead, "SALES_READY")
    rec.answers = [500, 503]
    sender = HttpSender(allow_private=True)
    now = utcnow()
    try:
        assert await ws.dispatch_once(db.uow, sender, render, now) == 1
        # Not due again before its backoff has passed.
        assert await ws.dispatch_once(db.uow, sender, render, now + timedelta(seconds=5)) == 0
        assert await ws.dispatch_once(db.uow, sender, render, now + timedelta(minutes=5)) == 1
        assert await ws.dispatch_once(db.uow, sender, render, now + timedelta(minutes=10)) == 1
    finally:
        await sender.close()
    node = (await api(DELIVERIES, {"id": hook_id}))["webhook"]["deliveries"]["edges"][0]["node"]
    assert (node["status"], node["attempts"], node["lastStatus"]) == ("DELIVERED", 3, 200)
    assert len(rec.requests) == 3
    # The same delivery id each time: the receiver can drop repeats.
    assert len({h["x-leadflow-delivery"] for h, _ in rec.requests}) == 1

    # A receiver that never answers 2xx: given up after MAX_ATTEMPTS.
    await add_event(db, lead, "MARKETING_QUALIFIED")
    rec.answers = [500] * MAX_ATTEMPTS
    sender = HttpSender(allow_private=True)
    try:
        later = now + timedelta(hours=1)
        for i in range(MAX_ATTEMPTS):
            assert await ws.dispatch_once(db.uow, sender, render, later + timedelta(hours=i)) == 1
        assert await ws.dispatch_once(db.uow, sender, render, later + timedelta(days=2)) == 0
    finally:
        await sender.close()
    failed = await api(
        "query($id: ID!) { webhook(id: $id) { deliveries(status: FAILED) { edges { node { attempts lastStatus } } } } }",
        {"id": hook_id},
    )
    assert [e["node"] for e in failed["webhook"]["deliveries"]["edges"]] == [
        {"attempts": MAX_ATTEMPTS, "lastStatus": 500}
    ]


async def test_unreachable_receiver_is_an_error_not_a_crash(api: Api, db: Database) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    made = await create(api, f"http://127.0.0.1:{port}/hook", eventTypes=["SALES_READY"])
    lead = await make_lead(api, "nobody home")
    await add_event(db, lead, "SALES_READY")
    sender = HttpSender(timeout=2, allow_private=True)
    try:
        assert await ws.dispatch_once(db.uow, sender, render) == 1
    finally:
        await sender.close()
    node = (await api(DELIVERIES, {"id": made["webhook"]["id"]}))["webhook"]["deliveries"]["edges"][
        0
    ]["node"]
    assert node["status"] == "PENDING" and node["attempts"] == 1
    assert node["lastStatus"] is None and "Connect" in node["lastError"]


async def test_the_server_delivers_by_itself(
    database_url: str, db: Database, receiver: tuple[Receiver, str]
) -> None:
    import httpx

    from api.app import create_app
    from api.settings import Settings
    from persistence.apikeys import ApiKeyStore

    rec, url = receiver
    settings = Settings(
        database_url=database_url,
        env="test",
        webhook_interval_seconds=0.05,
        webhook_allow_private_addresses=True,  # the receiver listens on 127.0.0.1
    )
    app = create_app(settings, migrate=False)
    _, key = await ApiKeyStore(db).create("hooks", Role.ADMIN)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post(
                "/graphql",
                json={
                    "query": CREATE,
                    "variables": {"i": {"name": "live", "url": url, "eventTypes": ["SALES_READY"]}},
                },
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.json()["data"]["createWebhook"]["userErrors"] == []
            r = await client.post(
                "/graphql",
                json={"query": 'mutation { createLead(input: {topic: "x"}) { lead { id } } }'},
                headers={"Authorization": f"Bearer {key}"},
            )
            lead = r.json()["data"]["createLead"]["lead"]["id"]
            await add_event(db, lead, "SALES_READY")
            for _ in range(200):
                if rec.requests:
                    break
                await asyncio.sleep(0.02)
    assert len(rec.requests) == 1
    assert orjson.loads(rec.requests[0][1])["event"]["type"] == "SALES_READY"


async def test_deliveries_go_only_to_public_addresses(receiver: tuple[Receiver, str]) -> None:
    """By default a delivery to loopback, private, link-local (cloud metadata), multicast or
    unspecified addresses is refused, however the URL names them, and nothing is sent."""
    rec, url = receiver
    sender = HttpSender(timeout=2)
    status, error = await sender.post(url, b"{}", {"content-type": "application/json"})
    assert status is None and error is not None and "127.0.0.1" in error
    assert "not a public address" in error and "ALLOW_PRIVATE" in error
    port = url.split(":")[2].split("/")[0]
    for target in (
        f"http://localhost:{port}/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://100.64.0.1/hook",
    ):
        status, error = await sender.post(target, b"{}", {})
        assert status is None and error is not None and error.startswith("refused"), target
    assert rec.requests == []

    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]  # one answer inside is enough to refuse

    status, error = await HttpSender(resolve=mixed).post("https://hooks.example.com/h", b"", {})
    assert status is None and error is not None and "10.0.0.7" in error
    # IPv6 forms that carry an IPv4 address (NAT64, 6to4, Teredo, compatible) are refused too.
    for carrier in ("64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "2001:0:4136:e378::1", "::a00:1"):

        async def carried(host: str, port: int, answer: str = carrier) -> list[str]:
            return [answer]

        status, error = await HttpSender(resolve=carried).post("http://h.example/", b"", {})
        assert status is None and error is not None and "not a public" in error, carrier
    # A URL that cannot even be resolved fails its delivery; post never raises.
    status, error = await sender.post("https://" + "a" * 70 + ".example/", b"", {})
    assert status is None and error is not None
    await sender.close()


async def test_a_public_delivery_goes_to_the_address_checked() -> None:
    """The request is sent to the address that was checked, with the URL's host as Host header
    and TLS server name: a name resolving elsewhere a moment later cannot redirect it."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def public(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 8443)
        return ["93.184.216.34"]

    sender = HttpSender(transport=httpx.MockTransport(handler), resolve=public)
    status, error = await sender.post(
        "https://user:pw@hooks.example.com:8443/in/hook?x=1", b"{}", {"x-a": "1"}
    )
    assert (status, error) == (204, None)
    request = seen[0]
    assert str(request.url) == "https://93.184.216.34:8443/in/hook?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.headers["x-a"] == "1"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["authorization"] == "Basic dXNlcjpwdw=="  # the URL's user:pw

    # An international name goes out as httpx would send it (IDNA); a default port is left out.
    names: list[str] = []

    async def named(host: str, port: int) -> list[str]:
        names.append(host)
        return ["93.184.216.34"]

    sender = HttpSender(transport=httpx.MockTransport(handler), resolve=named)
    assert (await sender.post("https://bücher.example:443/h", b"", {}))[0] == 204
    assert names == ["xn--bcher-kva.example"]
    assert seen[-1].headers["host"] == "xn--bcher-kva.example"
    assert seen[-1].extensions["sni_hostname"] == "xn--bcher-kva.example"

    async def six(host: str, port: int) -> list[str]:
        return ["2606:2800:220:1:248:1893:25c8:1946"]

    sender = HttpSender(transport=httpx.MockTransport(handler), resolve=six)
    assert (await sender.post("http://hooks.example.com/h", b"", {}))[0] == 204
    assert seen[-1].url.host == "2606:2800:220:1:248:1893:25c8:1946"
    assert seen[-1].headers["host"] == "hooks.example.com"
    assert "sni_hostname" not in seen[-1].extensions

"""GraphQL for webhooks, and how deliveries are rendered and sent over HTTP."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import strawberry

from api import types as gql
from api.context import Info
from api.execution import pure
from api.ids import decode_arg, decode_id, to_global_id
from domain import webhook_services as services
from domain.ports import UnitOfWork
from domain.roles import Permission
from domain.webhooks import Delivery, DeliveryStatus, Webhook

strawberry.enum(DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type(name="WebhookDelivery")
class WebhookDeliveryType:
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None = strawberry.field(description="HTTP status of the last attempt")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @strawberry.field
    @pure
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.id))

    @strawberry.field
    @pure
    def event_id(self) -> strawberry.ID:
        """The lead event delivered: its ID as `leadEvents` shows it (and the body's event.id)."""
        return strawberry.ID(to_global_id("LeadEvent", self.event_id))  # type: ignore[arg-type]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Delivery)


@strawberry.type(name="Webhook")
class WebhookType(gql.Node):
    name: str
    url: str
    event_types: list[str] = strawberry.field(description="Empty: every event type.")
    active: bool
    created_at: datetime
    updated_at: datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Webhook", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def deliveries(
        self,
        info: Info,
        status: DeliveryStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[WebhookDeliveryType]:
        """The delivery log, newest first."""
        webhook_id: int = self.id  # type: ignore[assignment]
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.webhooks.deliveries(webhook_id, status, page),
            lambda r: r.webhooks.count_deliveries(webhook_id, status),
        )

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Webhook)


@strawberry.input
class WebhookInput:
    name: str
    url: str
    event_types: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Lead event types to deliver; null or empty: all. Omitted: all on create, "
        "unchanged on update.",
    )
    active: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Whether events are delivered. Omitted (or null): true on create, unchanged "
        "on update.",
    )
    secret: str | None = strawberry.field(
        default=None, description="Signing secret (16+ characters); made for you when omitted."
    )


@strawberry.type
class WebhookPayload:
    webhook: WebhookType | None
    secret: str | None = strawberry.field(
        description="The signing secret, shown when the webhook is created (keep it)."
    )
    user_errors: list[gql.UserError]


def _raw(input: WebhookInput) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": input.name, "url": input.url, "secret": input.secret}
    if input.event_types is not strawberry.UNSET:
        raw["eventTypes"] = input.event_types or []
    if input.active is not strawberry.UNSET and input.active is not None:
        raw["active"] = input.active
    return raw


def _id(gid: strawberry.ID) -> int:
    return decode_id(str(gid), "Webhook", ["id"])


async def _in_uow(info: Info, fn: Any) -> tuple[Any, list[gql.UserError]]:
    from api.resolvers import in_transaction

    return await in_transaction(info, fn)


@strawberry.type
class WebhookQuery:
    @strawberry.field
    async def webhooks(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> gql.Connection[WebhookType]:
        info.context.require(Permission.MANAGE_WEBHOOKS)
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.webhooks.page(page),
            lambda r: r.webhooks.count(),
        )

    @strawberry.field
    async def webhook(self, info: Info, id: strawberry.ID) -> WebhookType | None:
        info.context.require(Permission.MANAGE_WEBHOOKS)
        pk = decode_arg(id, "Webhook")
        found: Any = await info.context.read(lambda r: r.webhooks.get(pk))
        return found  # type: ignore[no-any-return]


@strawberry.type
class WebhookMutation:
    @strawberry.mutation
    async def create_webhook(self, info: Info, input: WebhookInput) -> WebhookPayload:
        info.context.require(Permission.MANAGE_WEBHOOKS)
        raw = _raw(input)
        webhook, errors = await _in_uow(info, lambda uow: services.create_webhook(uow, raw))
        secret = webhook.secret if webhook is not None else None
        return WebhookPayload(webhook=webhook, secret=secret, user_errors=errors)

    @strawberry.mutation
    async def update_webhook(
        self, info: Info, id: strawberry.ID, input: WebhookInput
    ) -> WebhookPayload:
        info.context.require(Permission.MANAGE_WEBHOOKS)
        raw = _raw(input)

        async def run(uow: UnitOfWork) -> Webhook:
            return await services.update_webhook(uow, _id(id), raw)

        webhook, errors = await _in_uow(info, run)
        return WebhookPayload(webhook=webhook, secret=None, user_errors=errors)

    @strawberry.mutation
    async def delete_webhook(self, info: Info, id: strawberry.ID) -> gql.DeletePayload:
        info.context.require(Permission.MANAGE_WEBHOOKS)

        async def run(uow: UnitOfWork) -> int:
            return await services.delete_webhook(uow, _id(id))

        deleted, errors = await _in_uow(info, run)
        gid = None if deleted is None else strawberry.ID(to_global_id("Webhook", deleted))
        return gql.DeletePayload(deleted_id=gid, user_errors=errors)


# ---------------------------------------------------------------- sending


# Flags that set-based writers store as 0/1 on SQLite (json_object has no booleans there).
_FLAGS = frozenset(("salesReady", "previousSalesReady"))
# Record ids in event data, shown as the Relay global IDs the GraphQL API uses for them.
_IDS = {
    "scoringModelId": "ScoringModel",
    "qualificationModelId": "QualificationModel",
    "ownerId": "User",
    "previousOwnerId": "User",
    "opportunityId": "Opportunity",
    "processId": "Process",
}


def _plain(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _FLAGS:
        return bool(value)
    node = _IDS.get(key)
    if node is not None and isinstance(value, int):
        return to_global_id(node, value)
    return value.value if isinstance(value, enum.Enum) else value


def render(item: services.Outgoing) -> bytes:
    """The JSON body of a delivery: the event, with global IDs as the GraphQL API shows them."""
    event = item.event
    return orjson.dumps(
        {
            "deliveryId": str(item.delivery.id),
            "webhookId": to_global_id("Webhook", item.webhook.id),
            "event": {
                "id": to_global_id("LeadEvent", event.id),
                "type": event.type,
                "occurredAt": event.occurred_at.isoformat(),
                "leadId": to_global_id("Lead", event.lead_id),
                "data": {k: _plain(k, v) for k, v in event.payload.items()},
            },
        }
    )


Resolver = Callable[[str, int], Awaitable[list[str]]]


class _Refused(Exception):
    """A delivery not sent: its host is not a public address."""


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (a literal address: itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _public(address: str) -> bool:
    """Whether a delivery may go to `address`: a global unicast address. IPv6 forms that carry
    an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are refused unless mapped, which
    is judged as its IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None or ip.teredo is not None or _carries_ipv4(ip):
            return False
    if any(ip in net for net in _REFUSED_V4):
        return False
    return ip.is_global and not ip.is_multicast


def _carries_ipv4(ip: ipaddress.IPv6Address) -> bool:
    return any(ip in net for net in _CARRIERS)


# IPv6 ranges that reach IPv4 addresses through a translator or tunnel.
_CARRIERS = tuple(
    ipaddress.IPv6Network(n) for n in ("::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16")
)
_REFUSED_V4 = (ipaddress.IPv4Network("192.88.99.0/24"),)  # 6to4 relays (deprecated)


class HttpSender:
    """Posts deliveries with httpx: a short timeout, no redirects followed, no proxy from the
    environment.

    Unless `allow_private` (LEADFLOW_WEBHOOK_ALLOW_PRIVATE_ADDRESSES), a delivery goes only to
    public addresses: the host is resolved here, every address it resolves to must be global
    (not loopback, private, link-local - the cloud metadata service -, shared, multicast,
    reserved, unspecified, nor an IPv6 form carrying an IPv4 address), and the request is sent
    to the address checked (Host header and TLS server name keep the URL's host, credentials
    in the URL become Basic auth), so a name that resolves differently a moment later cannot
    steer it inside. Each such delivery has a connection of its own: a pooled TLS connection is
    keyed by address alone and would carry another host's request past its certificate check.
    A delivery that cannot be sent fails with the reason as its error; post never raises.
    """

    def __init__(
        self,
        timeout: float = 10.0,
        *,
        allow_private: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        limits = httpx.Limits() if allow_private else httpx.Limits(max_keepalive_connections=0)
        self.client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            limits=limits,
            trust_env=False,
        )
        self.allow_private = allow_private
        self.resolve = resolve or _resolve

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int | None, str | None]:
        try:
            extensions: dict[str, Any] = {}
            sent_headers = dict(headers)
            auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
            if not self.allow_private:
                url, host_header, server_name, auth = await self._pinned(url)
                sent_headers["host"] = host_header
                if server_name is not None:
                    extensions["sni_hostname"] = server_name
            response = await self.client.post(
                url, content=body, headers=sent_headers, extensions=extensions, auth=auth
            )
        except _Refused as e:
            return None, str(e)[:500]
        except Exception as e:  # a bad URL or host fails its delivery alone
            return None, f"{type(e).__name__}: {e}"[:500]
        return response.status_code, None

    async def _pinned(
        self, url: str
    ) -> tuple[str, str, str | None, httpx.Auth | httpx._client.UseClientDefault]:
        """The URL with its host replaced by a checked public address, the Host header to
        send, the TLS server name (https) and the URL's credentials as Basic auth; _Refused
        when the host is not public."""
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")  # IDNA, as httpx itself would send it
        if not host:
            raise _Refused(f"refused: {url[:200]} has no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = await self.resolve(host, port)
        except (OSError, UnicodeError) as e:
            raise _Refused(f"refused: {host} does not resolve ({e})") from None
        if not addresses:
            raise _Refused(f"refused: {host} does not resolve")
        for address in addresses:
            if not _public(address):
                raise _Refused(
                    f"refused: {host} resolves to {address}, which is not a public address"
                    " (LEADFLOW_WEBHOOK_ALLOW_PRIVATE_ADDRESSES=true allows it)"
                )
        address = addresses[0]
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{parsed.port}" if parsed.port else literal
        target = urlsplit(url)
        pinned = urlunsplit((target.scheme, netloc, target.path, target.query, ""))
        auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if parsed.username:
            auth = httpx.BasicAuth(parsed.username, parsed.password)
        server_name = host if parsed.scheme == "https" else None
        return pinned, parsed.netloc.decode("ascii"), server_name, auth

    async def close(self) -> None:
        await self.client.aclose()

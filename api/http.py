"""The GraphQL HTTP endpoint: authenticates every request before Strawberry runs it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from graphql import GraphQLError, parse
from graphql import OperationType as GraphQLOperationType
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import process_result
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api.context import Context, Services
from api.delivery import Hub
from api.errors import UNAVAILABLE_MESSAGE, log
from api.idempotency import (
    Idempotency,
    has_mutation,
    has_operation,
    operation_problem,
    operation_type,
    request_problem,
    too_long,
)
from api.settings import Settings
from domain.auth import Principal
from domain.errors import ServiceUnavailable
from domain.ports import Authenticator, RateLimiter
from domain.roles import Permission, Role, allows

# A WebSocket's context exists before its connection_init says who is calling. The handler
# below runs no operation before acknowledging the connection, and acknowledges only after it
# has put the authenticated caller in place of this one.
_NOT_YET_AUTHENTICATED = Principal(key_id=0, name="(not authenticated)", role=Role.VIEWER)


def unauthenticated(message: str) -> JSONResponse:
    body = {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}],
    }
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def refusal(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """A GraphQL-shaped error answer for a request refused before it runs."""
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _address_key(client: str) -> str:
    """Whom unknown keys are counted against: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's network: its addresses are not each a new client)."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if not isinstance(ip, ipaddress.IPv6Address):
        return client
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


def too_many_requests(wait: float, reason: str = "rate limit of this API key exceeded") -> Response:
    seconds = max(1, math.ceil(wait))
    return refusal(
        429, "RATE_LIMITED", f"{reason}: retry in {seconds} s", {"Retry-After": str(seconds)}
    )


_UNKNOWN_KEYS = "too many unknown API keys from this address"


def service_unavailable() -> Response:
    """503 for a request whose API key cannot be checked because the database is down."""
    return refusal(503, "SERVICE_UNAVAILABLE", UNAVAILABLE_MESSAGE, {"Retry-After": "1"})


class BodyTooLarge(Exception):
    pass


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


_POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


@dataclass(frozen=True, slots=True)
class _Operation:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


def _plain_json(headers: Mapping[str, str]) -> bool:
    """A JSON body asking for a JSON answer (not a streamed one)."""
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    accept = headers.get("accept", "")
    return (
        media_type == "application/json"
        and "multipart/mixed" not in accept
        and "text/event-stream" not in accept
    )


def _operation(data: Any) -> _Operation | None:
    """The one operation of a parsed JSON body; None for anything the view should judge."""
    if not isinstance(data, dict):
        return None
    query, variables = data.get("query"), data.get("variables")
    name, extensions = data.get("operationName"), data.get("extensions")
    if not isinstance(query, str):
        return None
    if not (
        isinstance(variables, dict | None)
        and isinstance(name, str | None)
        and isinstance(extensions, dict | None)
    ):
        return None
    return _Operation(query, variables, name, extensions)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when the client went away; BodyTooLarge past `limit` bytes.

    Counted as it streams in, so a body without (or with a false) Content-Length is refused
    after `limit` bytes and never held in memory whole.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands out `body` again, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _not_a_subscription(message: SubscribeMessage, limits: Settings) -> GraphQLError | None:
    """The error for a subscribe message that does not name one subscription to run: a query
    or a mutation, a document too long or with too many tokens, one that does not parse, or
    several operations and no operationName. None for a subscription, or for a payload the
    schema refuses with its own error anyway (no query, say). Checked before anything else
    reads the document, and cheaply: parsing stops at the token limit."""
    payload: Any = message.get("payload")
    query = payload.get("query") if isinstance(payload, dict) else None
    name = payload.get("operationName") if isinstance(payload, dict) else None
    if not isinstance(query, str) or not isinstance(name, str | None):
        return None
    long = too_long(query, limits.max_document_chars)
    if long is not None:
        return _bad_subscribe(long)
    try:
        parse(query, no_location=True, max_tokens=limits.max_tokens)
    except GraphQLError as e:  # a syntax error, or more tokens than allowed
        return _bad_subscribe(e.message)
    problem = operation_problem(query, name)
    if problem is not None:
        return _bad_subscribe(problem)
    kind = operation_type(query, name)
    if kind is None or kind is GraphQLOperationType.SUBSCRIPTION:
        return None
    return _bad_subscribe(
        f"a WebSocket only subscribes: send a {kind.value} as POST /graphql with Content-Type:"
        " application/json"
    )


def _holds_nul(data: Any) -> bool:
    """Whether a parsed request holds U+0000 in a string or key, or a GraphQL string literal
    writes one as an escape (PostgreSQL refuses it in text and JSON; SQLite would keep it)."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "query" and isinstance(value, str) and "\\u0000" in value:
                    return True
                stack.append(key)
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _bad_subscribe(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


class AuthenticatingTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with the API key in connection_init.

    Close codes: 4400 invalid message, 4401 no or bad key (or subscribe before the ack, or the
    key revoked while open), 4403 a role that may not subscribe (also when lowered while open),
    4408 no connection_init in time, 4409 a subscriber id already in use, 4429 a second
    connection_init (or one from an address throttled for unknown keys). Strawberry's base
    handler sends the ones this class does not.
    """

    view: GraphQLEndpoint
    _token: str | None = None
    _key_check: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload")
        if self.connection_init_received or (payload is not None and not isinstance(payload, dict)):
            await super().handle_connection_init(message)  # 4429, 4400
            return
        header = payload.get("authorization") if isinstance(payload, dict) else None
        token = bearer_token(header if isinstance(header, str) else None)
        socket = getattr(self.websocket, "ws", None)  # Strawberry's adapter of Starlette's
        address = getattr(socket, "client", None)
        client = address.host if address else None
        if token is not None and self.view.guessing(client, token):
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            await self.websocket.close(code=4429, reason="Too many unknown keys: retry later")
            return
        try:
            principal = await self.view.keys.authenticate(token) if token is not None else None
        except ServiceUnavailable as e:
            log.warning("connection_init: %s", e)
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            # 1013 "try again later": the key could not be checked, the client should reconnect.
            await self.websocket.close(code=1013, reason="service unavailable: retry shortly")
            return
        if principal is None or not allows(principal.role, Permission.SUBSCRIBE):
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            if principal is None:
                if token is not None:
                    await self.view.unknown_key(client)
                await self.websocket.close(code=4401, reason="Unauthorized: unknown or missing key")
            else:
                reason = f"Forbidden: the {principal.role.value} role may not subscribe"
                await self.websocket.close(code=4403, reason=reason)
            return
        self.context.principal = principal
        self._token = token
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._key_check = asyncio.create_task(self._check_key_periodically())

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message.get("id") not in self.operations:
            refused = _not_a_subscription(message, self.view.limits)
            if refused is not None:
                # Queries and mutations go over POST /graphql, where the CSRF rules, the
                # execution timeout and Idempotency-Key apply; a WebSocket only subscribes.
                await self.send_message(
                    ErrorMessage(id=message["id"], type="error", payload=[refused.formatted])
                )
                return
            wait = await self.view.throttle(self.context.principal)
            if wait:
                seconds = max(1, math.ceil(wait))
                error = GraphQLError(
                    f"rate limit of this API key exceeded: retry in {seconds} s",
                    extensions={"code": "RATE_LIMITED", "retryAfter": seconds},
                )
                await self.send_message(
                    ErrorMessage(id=message["id"], type="error", payload=[error.formatted])
                )
                return
        await super().handle_subscribe(message)

    async def _check_key_periodically(self) -> None:
        """Close the connection once its key is revoked or its role may no longer subscribe."""
        assert self._token is not None
        while True:
            await asyncio.sleep(self.view.limits.ws_key_check_seconds)
            try:
                principal = await self.view.keys.authenticate(self._token)
            except Exception:  # the database is away: keep the connection, check again later
                continue
            if principal is None:
                await self.websocket.close(code=4401, reason="Unauthorized: the key was revoked")
                return
            if not allows(principal.role, Permission.SUBSCRIBE):
                reason = f"Forbidden: the {principal.role.value} role may not subscribe"
                await self.websocket.close(code=4403, reason=reason)
                return
            self.context.principal = principal

    async def shutdown(self) -> None:
        if self._key_check is not None:
            self._key_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._key_check
        await super().shutdown()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Lead-event subscriptions go to the shared delivery (api/delivery.py)."""
        view: GraphQLEndpoint = self.view
        if view.delivery is not None:
            args = (operation.query, operation.variables, operation.operation_name)
            ws = self.websocket.ws  # type: ignore[attr-defined]
            if await view.delivery.serve(self.context.principal, operation.id, args, ws):
                return
        await super().run_operation(operation)


class GraphQLEndpoint(GraphQL[Context, None]):
    """Strawberry's ASGI view, with API-key authentication in front of it."""

    graphql_transport_ws_handler_class = AuthenticatingTransportWS

    def __init__(
        self,
        schema: Any,
        services: Services,
        keys: Authenticator,
        *,
        limits: Settings | None = None,
        rate_limiter: RateLimiter | None = None,
        idempotency: Idempotency | None = None,
        **kwargs: Any,
    ) -> None:
        limits = limits or Settings()
        # Only graphql-transport-ws: any other subprotocol (or none) is closed with 4406.
        kwargs.setdefault("subscription_protocols", (GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        kwargs.setdefault("allowed_origins", tuple(limits.ws_allowed_origins))
        kwargs.setdefault(
            "connection_init_wait_timeout",
            timedelta(seconds=limits.ws_connection_init_timeout_seconds),
        )
        kwargs.setdefault("max_subscriptions_per_connection", limits.ws_max_subscriptions)
        super().__init__(schema, **kwargs)
        self.services = services
        self.keys = keys
        self.limits = limits
        self.rate_limiter = rate_limiter if limits.rate_limit_enabled else None
        self.idempotency = idempotency
        self.delivery = Hub(schema, services, services.events) if services.events else None
        # Client address -> when (monotonic) it may present a key again, after too many
        # unknown ones: until then its requests are refused before any key is looked up.
        self._guessing: dict[str, float] = {}

    def guessing(self, client: str | None, token: str) -> float:
        """Seconds until `client` may present `token` (0.0: now): while it is throttled for
        unknown keys, only a key found valid lately (ApiKeyStore.recently_valid) goes ahead."""
        if client is None or not self._guessing:
            return 0.0
        client = _address_key(client)
        wait = self._guessing.get(client, 0.0) - time.monotonic()
        if wait <= 0:
            self._guessing.pop(client, None)
            return 0.0
        return 0.0 if self.keys.recently_valid(token) else wait

    async def unknown_key(self, client: str | None) -> float:
        """Count an unknown (or revoked) key `client` presented; the seconds it must now wait
        before presenting another (0.0: none), past AUTH_FAILURES_PER_SECOND (burst
        AUTH_FAILURES_BURST) per address. Random keys would otherwise cost a database read each."""
        if self.rate_limiter is None or client is None:
            return 0.0
        client = _address_key(client)
        wait = await self.rate_limiter.take(
            f"unknown-key:{client}",
            self.limits.auth_failures_per_second,
            self.limits.auth_failures_burst,
        )
        if wait > 0:
            if len(self._guessing) > 100_000:
                self._guessing.clear()
            self._guessing[client] = time.monotonic() + wait
        return wait

    async def throttle(self, principal: Principal) -> float:
        """0.0 when this caller may go ahead, else the seconds until it may."""
        if self.rate_limiter is None:
            return 0.0
        bucket = self.limits.rate_limit(principal.role.value)
        return await self.rate_limiter.take(
            f"key:{principal.key_id}", bucket.per_second, bucket.burst
        )

    def body_limit(self, principal: Principal) -> int:
        if allows(principal.role, Permission.IMPORT):
            return max(self.limits.max_body_bytes, self.limits.max_import_body_bytes)
        return self.limits.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            opens_ide = (
                request.method == "GET"
                and self.graphql_ide is not None
                and "query" not in request.query_params
                and "text/html" in request.headers.get("accept", "")
            )
            if opens_ide:
                await (await self.render_graphql_ide(request))(scope, receive, send)
                return
            token = bearer_token(request.headers.get("authorization"))
            if token is None:
                await unauthenticated("an API key is required: Authorization: Bearer <key>")(
                    scope, receive, send
                )
                return
            client = request.client.host if request.client else None
            wait = self.guessing(client, token)
            if wait:
                await too_many_requests(wait, _UNKNOWN_KEYS)(scope, receive, send)
                return
            try:
                principal = await self.keys.authenticate(token)
            except ServiceUnavailable as e:
                log.warning("authentication: %s", e)
                await service_unavailable()(scope, receive, send)
                return
            if principal is None:
                wait = await self.unknown_key(client)
                if wait:
                    await too_many_requests(wait, _UNKNOWN_KEYS)(scope, receive, send)
                    return
                await unauthenticated("the API key is unknown or revoked")(scope, receive, send)
                return
            wait = await self.throttle(principal)
            if wait:
                await too_many_requests(wait)(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
            if request.method == "POST":
                refused = await self._post(scope, receive, send, request, principal)
                if refused is None:
                    return
                receive = refused
        await super().__call__(scope, receive, send)

    async def _post(
        self, scope: Scope, receive: Receive, send: Send, request: Request, principal: Principal
    ) -> Receive | None:
        """Answer a POST here (returns None), or hand its body on to the view."""
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            # CSRF: a browser sends forms and text/plain across sites without asking;
            # application/json needs a CORS preflight. Multipart uploads are not offered.
            response = refusal(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "Unsupported content type: send GraphQL requests as POST with"
                " Content-Type: application/json",
            )
            await response(scope, receive, send)
            return None
        limit = self.body_limit(principal)
        too_large = refusal(
            413, "PAYLOAD_TOO_LARGE", f"the request body is larger than {limit} bytes"
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return None
        try:
            body = await _read_body(receive, limit)
        except BodyTooLarge:
            await too_large(scope, receive, send)
            return None
        if body is None:
            return None  # the client went away
        try:
            # Parsed once, here, by the parser every later step uses: a body it refuses (a
            # BOM, UTF-16, invalid UTF-8) never reaches a more lenient one further on, where
            # it could run as a mutation without its Idempotency-Key being looked at.
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            response = refusal(
                400,
                "BAD_REQUEST",
                f"the body is not JSON (UTF-8, no byte order mark): {str(e)[:200]}",
            )
            await response(scope, receive, send)
            return None
        problem = request_problem(
            data, self.limits.max_document_chars, self.limits.max_batch_operations
        )
        if problem is None and b"\\u0000" in body and _holds_nul(data):
            # JSON writes U+0000 only as this escape: a quick look at the bytes, then a walk.
            problem = "text must not contain NUL characters (U+0000): no database stores them"
        if problem is not None:
            # Before Idempotency-Key and the schema: a document with several operations and no
            # operationName would otherwise run its first one, unseen by either.
            await refusal(400, "BAD_REQUEST", problem)(scope, receive, send)
            return None
        accept = request.headers.get("accept", "")
        streamed = "multipart/mixed" in accept or "text/event-stream" in accept
        if streamed and has_operation(data, GraphQLOperationType.SUBSCRIPTION):
            response = refusal(
                400,
                "BAD_REQUEST",
                "subscriptions are served over WebSocket (graphql-transport-ws) only",
            )
            await response(scope, receive, send)
            return None
        key = request.headers.get("idempotency-key") if self.idempotency is not None else None
        if key is not None and has_mutation(data):
            # Mutations run at most once per key (api.idempotency); queries ignore the header.
            assert self.idempotency is not None

            async def serve(scope: Scope, receive: Receive, send: Send) -> None:
                forward = await self._serve(request, body, data, principal, scope, receive, send)
                if forward is not None:
                    await super(GraphQLEndpoint, self).__call__(scope, forward, send)

            replayed = _replay(body, receive)
            await self.idempotency.handle(key, principal, body, scope, replayed, send, serve)
            return None
        return await self._serve(request, body, data, principal, scope, receive, send)

    async def _serve(
        self,
        request: Request,
        body: bytes,
        data: Any,
        principal: Principal,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Receive | None:
        """Answer a plain JSON POST here (returns None), or hand its body on to the view."""
        if _plain_json(request.headers):
            operation = _operation(data)
            if operation is not None:
                response = await self._execute(principal, operation)
                await response(scope, receive, send)
                return None
        return _replay(body, receive)

    async def _execute(self, principal: Principal, operation: _Operation) -> Response:
        """Run one plain JSON POST operation; the response the view would give.

        Strawberry's view does the same through request and response adapters built for every
        transport it knows (batches, uploads, streams, GET); for the common case of one JSON
        operation those cost about as much as running a small query. Anything else still goes
        through the view.
        """
        variables = operation.variables

        async def raw_variables() -> dict[str, Any]:
            return variables or {}

        context = Context(principal, self.services, raw_variables)
        try:
            result = await self.schema.execute(
                operation.query,
                variable_values=variables,
                context_value=context,
                operation_name=operation.operation_name,
                allowed_operation_types=_POST_OPERATIONS,
                operation_extensions=operation.extensions,
            )
        except CannotGetOperationTypeError as e:
            return refusal(400, "BAD_REQUEST", e.as_http_error_reason())
        except InvalidOperationTypeError as e:
            return refusal(400, "BAD_REQUEST", e.as_http_error_reason("POST"))
        except MissingQueryError:
            return refusal(400, "BAD_REQUEST", "No GraphQL query found in the request")
        if not isinstance(result, ExecutionResult):  # incremental delivery is not enabled
            raise TypeError(f"unexpected execution result {type(result).__name__}")
        # A page of 50 leads is ~15 KB of JSON: orjson encodes it several times faster.
        body = orjson.dumps(process_result(result))
        return Response(body, media_type="application/json")

    def encode_json(self, data: object) -> str:
        # Text: Strawberry sends what this returns over the WebSocket as it is, and
        # graphql-transport-ws messages are text frames (bytes would go as binary frames,
        # which a browser hands over as a Blob).
        return orjson.dumps(data).decode()

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        if isinstance(request, WebSocket):
            return Context(_NOT_YET_AUTHENTICATED, self.services)
        principal: Principal = request.scope["state"]["principal"]

        async def raw_variables() -> dict[str, Any]:
            # The variables as the client sent them, before GraphQL filled in defaults.
            if not isinstance(request, Request):
                return {}
            body = await request.json()
            variables = body.get("variables") if isinstance(body, dict) else None
            return variables if isinstance(variables, dict) else {}

        return Context(principal, self.services, raw_variables)

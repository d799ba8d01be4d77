"""The GraphQL HTTP endpoint: authenticates every request before Strawberry runs it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import process_result
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api.context import Context, Services
from api.errors import UNAVAILABLE_MESSAGE, log
from domain.auth import Principal
from domain.errors import ServiceUnavailable
from domain.ports import Authenticator
from domain.roles import Role

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


def service_unavailable() -> JSONResponse:
    """503 for a request that could not even be authenticated because the database is down."""
    body = {
        "data": None,
        "errors": [{"message": UNAVAILABLE_MESSAGE, "extensions": {"code": "SERVICE_UNAVAILABLE"}}],
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


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


def _operation(body: bytes) -> _Operation | None:
    """The one operation of a well-formed JSON body; None for anything the view should judge."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
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


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
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


class AuthenticatingTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with the API key in connection_init: no or bad key → close 4401."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload")
        header = payload.get("authorization") if isinstance(payload, dict) else None
        token = bearer_token(header if isinstance(header, str) else None)
        view: GraphQLEndpoint = self.view  # type: ignore[assignment]
        try:
            principal = await view.keys.authenticate(token) if token is not None else None
        except ServiceUnavailable as e:
            log.warning("connection_init: %s", e)
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            # 1013 "try again later": the key could not be checked, the client should reconnect.
            await self.websocket.close(code=1013, reason="service unavailable: retry shortly")
            return
        if principal is None:
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            await self.websocket.close(code=4401, reason="Unauthorized: unknown or missing key")
            return
        self.context.principal = principal
        await super().handle_connection_init(message)


class GraphQLEndpoint(GraphQL[Context, None]):
    """Strawberry's ASGI view, with API-key authentication in front of it."""

    graphql_transport_ws_handler_class = AuthenticatingTransportWS

    def __init__(self, schema: Any, services: Services, keys: Authenticator, **kwargs: Any) -> None:
        kwargs.setdefault("subscription_protocols", (GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        super().__init__(schema, **kwargs)
        self.services = services
        self.keys = keys

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
            try:
                principal = await self.keys.authenticate(token)
            except ServiceUnavailable as e:
                log.warning("authentication: %s", e)
                await service_unavailable()(scope, receive, send)
                return
            if principal is None:
                await unauthenticated("the API key is unknown or revoked")(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
            if request.method == "POST" and _plain_json(request.headers):
                body = await _read_body(receive)
                if body is None:
                    return  # the client went away
                operation = _operation(body)
                if operation is not None:
                    response = await self._execute(principal, operation)
                    await response(scope, receive, send)
                    return
                receive = _replay(body, receive)
        await super().__call__(scope, receive, send)

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
            return PlainTextResponse(e.as_http_error_reason(), status_code=400)
        except InvalidOperationTypeError as e:
            return PlainTextResponse(e.as_http_error_reason("POST"), status_code=400)
        except MissingQueryError:
            return PlainTextResponse("No GraphQL query found in the request", status_code=400)
        if not isinstance(result, ExecutionResult):  # incremental delivery is not enabled
            raise TypeError(f"unexpected execution result {type(result).__name__}")
        body = self.encode_json(process_result(result))
        return Response(body, media_type="application/json")

    def encode_json(self, data: object) -> bytes:
        # A page of 50 leads is ~15 KB of JSON: orjson encodes it several times faster.
        return orjson.dumps(data)

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

"""Idempotency-Key: a mutation retried with the same key gets the first answer, not a rerun.

The key is scoped to the API key. The first request with a key claims it (committed at once),
runs, and stores its answer when it completed (HTTP 200); a request that failed unexpectedly
releases the claim. A later request with the same key and the same body (byte for byte) gets
the stored answer again without running anything; with another body it is refused (422,
IDEMPOTENCY_KEY_REUSED); while the first still runs it is refused too (409,
IDEMPOTENCY_KEY_IN_PROGRESS, Retry-After: 1). Requests without a mutation ignore the header.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import lru_cache
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from domain.auth import Principal
from domain.model import utcnow
from domain.ports import IdempotencyStore, StoredResponse

MAX_KEY_LENGTH = 200
REPLAYED_HEADER = "idempotent-replayed"
log = logging.getLogger("leadflow.idempotency")

Serve = Callable[[Scope, Receive, Send], Awaitable[None]]
P = ParamSpec("P")
T = TypeVar("T")


# Codes of answers of operations cut short and rolled back as a whole: a retry may succeed,
# so they are not kept for replay.
_TRANSIENT = ("TIMEOUT", "SERVICE_UNAVAILABLE")
_TRANSIENT_BYTES = tuple(f'"{code}"'.encode() for code in _TRANSIENT)


def _rolled_back(content: bytes) -> bool:
    """Whether a 200 answer reports an operation cut short (the execution timeout, an
    unreachable database): it changed nothing, and replaying it would stop any retry."""
    if not any(code in content for code in _TRANSIENT_BYTES):
        return False
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") in _TRANSIENT
        for e in errors or ()
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, headers=headers)


# Documents up to this long are analysed once and remembered; longer ones (rare, and bounded by
# Settings.max_document_chars) each time: a cache must not hold on to big strings.
CACHED_DOCUMENT_CHARS = 20_000
ANALYSIS_MAX_TOKENS = 20_000


def cached_when_short(
    analyse: Callable[Concatenate[str, P], T],
) -> Callable[Concatenate[str, P], T]:
    """`analyse(query, ...)`, its answers for the last 256 documents up to
    CACHED_DOCUMENT_CHARS long remembered; a longer document is analysed each time."""
    cached: Callable[..., T] = lru_cache(maxsize=256)(analyse)

    def run(query: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if len(query) <= CACHED_DOCUMENT_CHARS:
            return cached(query, *args, **kwargs)
        return analyse(query, *args, **kwargs)

    return run


@cached_when_short
def operations(query: str) -> tuple[tuple[str | None, OperationType], ...] | None:
    """(name, type) of each operation of a document; None when it does not parse."""
    try:
        document = parse(query, no_location=True, max_tokens=ANALYSIS_MAX_TOKENS)
    except GraphQLError:
        return None
    return tuple(
        (d.name.value if d.name else None, d.operation)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    )


def operation_type(query: str, operation_name: str | None) -> OperationType | None:
    """The type of the operation a request would run (None: a bad document, or one that does
    not name one operation: see operation_problem)."""
    found = operations(query)
    if found is None:
        return None
    if operation_name is not None:
        found = tuple(o for o in found if o[0] == operation_name)
    return found[0][1] if len(found) == 1 else None


def operation_problem(query: str, operation_name: str | None) -> str | None:
    """Why a document that parses does not name exactly one operation to run: several and no
    operationName (GraphQL requires one), or an operationName it does not have. None otherwise
    (a syntax error is reported by the schema, with its position)."""
    found = operations(query)
    if found is None:
        return None
    if operation_name is None:
        if len(found) > 1:
            return "the document holds several operations: name the one to run in operationName"
        return None
    if not any(name == operation_name for name, _ in found):
        return f"the document has no operation named {operation_name[:100]!r}"
    return None


def too_long(query: str, max_document_chars: int) -> str | None:
    """Why a document is too long to run (values belong in variables), or None."""
    if len(query) <= max_document_chars:
        return None
    return (
        f"the query document is longer than {max_document_chars} characters: pass values as "
        "variables"
    )


def request_problem(data: Any, max_document_chars: int, max_batch: int = 0) -> str | None:
    """Why a parsed JSON body is no GraphQL request this server runs, or None: a request is a
    JSON object (a batch of up to `max_batch`, a list of them) with a query (a string of at
    most `max_document_chars`: values belong in variables) naming one operation to run, and
    variables and extensions that are objects when given."""
    items = data if isinstance(data, list) else [data]
    if not isinstance(data, dict | list) or not all(isinstance(i, dict) for i in items):
        return "a GraphQL request is a JSON object with a query (and variables, operationName)"
    if isinstance(data, list):
        if not max_batch:
            return "batching is off: send one operation (a JSON object) per request"
        if not 0 < len(data) <= max_batch:
            return f"a batch holds 1 to {max_batch} operations, not {len(data)}"
    for item in items:
        query, name = item.get("query"), item.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return "a GraphQL request needs a query: the document as a string"
        if not isinstance(name, str | None):
            return "operationName must be a string (or null)"
        for part in ("variables", "extensions"):
            if not isinstance(item.get(part), dict | None):
                return f"{part} must be a JSON object (or null)"
        problem = too_long(query, max_document_chars) or operation_problem(query, name)
        if problem is not None:
            return problem
    return None


def has_operation(data: Any, kind: OperationType) -> bool:
    """Whether a parsed JSON request body (one operation or a batch) asks to run an operation
    of this kind."""
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict):
            continue
        query, name = item.get("query"), item.get("operationName")
        if (
            isinstance(query, str)
            and isinstance(name, str | None)
            and operation_type(query, name) is kind
        ):
            return True
    return False


def has_mutation(data: Any) -> bool:
    """Whether a parsed JSON request body (one operation or a batch) asks to run a mutation."""
    return has_operation(data, OperationType.MUTATION)


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


class Idempotency:
    """Runs mutations that carry an Idempotency-Key at most once per key."""

    def __init__(self, store: IdempotencyStore, ttl_seconds: float) -> None:
        self.store = store
        self.ttl = timedelta(seconds=ttl_seconds)

    async def handle(
        self,
        key: str,
        principal: Principal,
        body: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
        serve: Serve,
    ) -> None:
        """Answer a mutation request carrying `key`: run it once, or replay its answer."""
        if not valid_key(key):
            response = _error(
                400,
                "BAD_USER_INPUT",
                f"the Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII "
                "characters",
            )
            await response(scope, receive, send)
            return
        request_hash = hashlib.sha256(body).hexdigest()
        now = utcnow()
        claim = await self.store.claim(principal.key_id, key, request_hash, now, now + self.ttl)
        if not claim.owned:
            await self._refuse_or_replay(claim.same_request, claim.response)(scope, receive, send)
            return

        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await serve(scope, receive, capture)
        except BaseException:
            await self.store.release(principal.key_id, key)
            raise
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = start["status"] if start is not None else 0
        content = b"".join(
            m.get("body", b"") for m in messages if m["type"] == "http.response.body"
        )
        if status == 200 and not _rolled_back(content):
            assert start is not None
            content_type = _header(start, b"content-type")
            try:
                await self.store.complete(
                    principal.key_id, key, StoredResponse(status, content_type, content)
                )
            except Exception:
                # The mutation committed: answer it anyway. The key stays claimed until it
                # counts as abandoned, so a retry meanwhile gets 409, not a second run.
                log.exception("could not store the answer for an Idempotency-Key")
        else:  # nothing ran to the end (or it rolled back): the key may be used again
            await self.store.release(principal.key_id, key)
        for message in messages:
            await send(message)

    @staticmethod
    def _refuse_or_replay(same_request: bool, stored: StoredResponse | None) -> Response:
        if not same_request:
            return _error(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used with a different request body; use a new key",
            )
        if stored is None:
            return _error(
                409,
                "IDEMPOTENCY_KEY_IN_PROGRESS",
                "a request with this Idempotency-Key is still running; retry shortly",
                {"Retry-After": "1"},
            )
        return Response(
            stored.body,
            status_code=stored.status,
            media_type=stored.content_type or None,
            headers={REPLAYED_HEADER: "true"},
        )


def _header(start: Message, name: bytes) -> str:
    headers: Any = start.get("headers", [])
    for k, v in headers:
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return ""

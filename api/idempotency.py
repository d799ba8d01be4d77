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
from typing import Any

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


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, headers=headers)


@lru_cache(maxsize=256)
def operation_type(query: str, operation_name: str | None) -> OperationType | None:
    """The type of the operation a request would run (None: a bad document)."""
    try:
        document = parse(query, no_location=True, max_tokens=20_000)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    elif len(operations) > 1:
        return None  # GraphQL refuses it anyway: several operations and no name
    return operations[0].operation if len(operations) == 1 else None


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
        if status == 200:
            assert start is not None
            content_type = _header(start, b"content-type")
            content = b"".join(
                m.get("body", b"") for m in messages if m["type"] == "http.response.body"
            )
            try:
                await self.store.complete(
                    principal.key_id, key, StoredResponse(status, content_type, content)
                )
            except Exception:
                # The mutation committed: answer it anyway. The key stays claimed until it
                # counts as abandoned, so a retry meanwhile gets 409, not a second run.
                log.exception("could not store the answer for an Idempotency-Key")
        else:  # not a completed execution: nothing to replay, the key may be used again
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

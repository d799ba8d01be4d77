"""Turning failures into userErrors or GraphQL errors, and masking the unexpected."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from domain.auth import Principal
from domain.errors import DomainError, ServiceUnavailable, ValidationErrors
from domain.roles import Permission

T = TypeVar("T")
log = logging.getLogger("leadflow.api")

# Errors with these codes are ours and safe to show; everything else is masked.
PUBLIC_CODES = frozenset({"UNAUTHENTICATED", "FORBIDDEN", "BAD_USER_INPUT", "SERVICE_UNAVAILABLE"})
UNAVAILABLE_MESSAGE = "the service is temporarily unavailable (database unreachable); retry shortly"


def unavailable_cause(error: BaseException | None) -> ServiceUnavailable | None:
    """The ServiceUnavailable behind `error` (itself or a cause), if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ServiceUnavailable):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def forbidden(principal: Principal, permission: Permission) -> GraphQLError:
    return GraphQLError(
        f"the {principal.role.value} role may not {permission.value}",
        extensions={"code": "FORBIDDEN"},
    )


def bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def user_errors(error: DomainError) -> list[Any]:
    """The userErrors an expected failure becomes (one per problem)."""
    from api.types import UserError, UserErrorCode

    problems = error.errors if isinstance(error, ValidationErrors) else [error]
    return [
        UserError(code=UserErrorCode(p.code), field=p.field, message=p.message) for p in problems
    ]


async def as_query_error(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a query resolver; expected failures become BAD_USER_INPUT GraphQL errors."""
    try:
        return await fn()
    except DomainError as e:
        raise bad_input(e.message) from None


def is_public(error: GraphQLError) -> bool:
    """Whether an error is about the request (validation, one of our coded errors): shown to
    the client as it is, and not worth a traceback in the log."""
    if error.original_error is None:
        return True  # parse/validation errors: about the query, safe to show
    original = error.original_error
    if isinstance(original, GraphQLError) and error.path is None:
        return True  # the variables did not fit their types: about the request, safe to show
    if isinstance(original, GraphQLError):
        code = (original.extensions or {}).get("code")
        if code in PUBLIC_CODES:
            return True
    return (error.extensions or {}).get("code") in PUBLIC_CODES


def should_mask(error: GraphQLError) -> bool:
    """Mask every error that is not a validation error or one of our coded errors."""
    if is_public(error):
        return False
    original = error.original_error
    if unavailable_cause(original) is not None:
        # Replaced by a SERVICE_UNAVAILABLE error (ServiceErrors below); an outage is logged
        # where it is noticed (readiness, background jobs), not once per failed field.
        log.warning("%s: %s", ".".join(map(str, error.path or [])), original)
        return True
    log.error("unexpected error in %s", error.path, exc_info=original)
    return True


class ServiceErrors(MaskErrors):
    """MaskErrors that tells an outage apart: SERVICE_UNAVAILABLE instead of "Unexpected error".

    The client may retry such an operation; nothing was changed (or, for a commit cut off
    mid-way, an interaction's idempotencyKey makes the retry safe).
    """

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if unavailable_cause(error.original_error) is None:
            return super().anonymise_error(error)
        return GraphQLError(
            message=UNAVAILABLE_MESSAGE,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "SERVICE_UNAVAILABLE"},
        )

"""Turning failures into userErrors or GraphQL errors, and masking the unexpected."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from graphql import GraphQLError

from domain.auth import Principal
from domain.errors import DomainError, ValidationErrors
from domain.roles import Permission

T = TypeVar("T")
log = logging.getLogger("leadflow.api")

# Errors with these codes are ours and safe to show; everything else is masked.
PUBLIC_CODES = frozenset({"UNAUTHENTICATED", "FORBIDDEN", "BAD_USER_INPUT"})


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


def should_mask(error: GraphQLError) -> bool:
    """Mask every error that is not a validation error or one of our coded errors."""
    if error.original_error is None:
        return False  # parse/validation errors: about the query, safe to show
    original = error.original_error
    if isinstance(original, GraphQLError) and error.path is None:
        return False  # the variables did not fit their types: about the request, safe to show
    if isinstance(original, GraphQLError):
        code = (original.extensions or {}).get("code")
        if code in PUBLIC_CODES:
            return False
    code = (error.extensions or {}).get("code")
    if code in PUBLIC_CODES:
        return False
    log.error("unexpected error in %s", error.path, exc_info=original)
    return True

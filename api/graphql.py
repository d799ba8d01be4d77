"""The Strawberry schema with its safety limits."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import strawberry
from strawberry.extensions import (
    DisableValidation,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection

from api import types as gql
from api.errors import should_mask
from api.resolvers import Mutation, Query
from api.settings import Settings

__all__ = ["DisableValidation", "build_schema"]


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema; limits come from settings (defaults when none are given)."""
    settings = settings or Settings()
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        partial(ParserCache, maxsize=512),
        partial(ValidationCache, maxsize=512),
        partial(QueryDepthLimiter, max_depth=settings.max_query_depth),
        partial(MaxAliasesLimiter, max_alias_count=settings.max_aliases),
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        partial(MaskErrors, should_mask_error=should_mask),
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=[gql.AccountType, gql.ContactType, gql.LeadType, gql.MatchingStrategyType],
        extensions=extensions,
    )

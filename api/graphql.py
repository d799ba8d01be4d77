"""The Strawberry schema with its safety limits."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.tools import merge_types

from api import types as gql
from api.errors import should_mask
from api.execution import FastLeafExecutionContext
from api.resolvers import Mutation, Query
from api.scoring import InteractionType_, ScoringModelType, ScoringMutation, ScoringQuery
from api.settings import Settings


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema; limits come from settings (defaults when none are given)."""
    settings = settings or Settings()
    # The limiters' rule classes are made once, so every request passes the same rules and
    # the validation cache (keyed by schema, document and rules) hits for repeated queries.
    limiters = [
        QueryDepthLimiter(max_depth=settings.max_query_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_aliases),
    ]
    rules = [rule for limiter in limiters for rule in limiter.validation_rules]
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        partial(ParserCache, maxsize=512),
        partial(AddValidationRules, rules),
        partial(ValidationCache, maxsize=512),
        partial(MaskErrors, should_mask_error=should_mask),
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=merge_types("Query", (Query, ScoringQuery)),
        mutation=merge_types("Mutation", (Mutation, ScoringMutation)),
        types=[
            gql.AccountType,
            gql.ContactType,
            gql.LeadType,
            gql.MatchingStrategyType,
            ScoringModelType,
            InteractionType_,
        ],
        extensions=extensions,
        execution_context_class=FastLeafExecutionContext,
    )

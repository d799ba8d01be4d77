"""The Strawberry schema with its safety limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, ClassVar

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.schema.schema import validate_document
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from api import types as gql
from api.errors import ServiceErrors, should_mask, unavailable_cause
from api.events import EventQuery, Subscription
from api.execution import FastLeafExecutionContext
from api.qualification import QualificationModelType, QualificationMutation, QualificationQuery
from api.resolvers import Mutation, Query
from api.sales import (
    OpportunityType,
    PeopleQuery,
    SalesMutation,
    SalesQuery,
    TeamType,
    UserType,
)
from api.scoring import InteractionType_, ScoringModelType, ScoringMutation, ScoringQuery
from api.settings import Settings
from api.webhooks import WebhookMutation, WebhookQuery, WebhookType


class DocumentValidationCache(SchemaExtension):
    """Validation results per parsed document, keyed by the document's identity.

    Strawberry's ValidationCache keys an LRU cache by the document itself, and hashing a
    GraphQL document walks its whole tree on every request. ParserCache hands out the same
    document object for the same query text, so its identity is key enough; the entry keeps
    the document alive, so its id cannot be reused while the entry exists.
    """

    _entries: ClassVar[dict[tuple[int, int, tuple[Any, ...]], tuple[Any, Any]]] = {}
    maxsize: ClassVar[int] = 512

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document, rules = ctx.graphql_document, tuple(ctx.validation_rules)
        if document is None:  # parsing failed: its errors are already recorded
            yield
            return
        key = (id(ctx.schema._schema), id(document), rules)
        entry = self._entries.get(key)
        if entry is None or entry[0] is not document:
            errors = validate_document(ctx.schema._schema, document, rules)
            if len(self._entries) >= self.maxsize:
                del self._entries[next(iter(self._entries))]  # the oldest
            entry = self._entries[key] = (document, errors)
        ctx.pre_execution_errors = entry[1]
        yield


class Schema(strawberry.Schema):
    """Strawberry's schema, logging an outage's errors as one line each, not a traceback."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Errors caused by an unreachable database are logged (one line) where they are masked.
        rest = [e for e in errors if unavailable_cause(e.original_error) is None]
        if rest:
            super().process_errors(rest, execution_context)


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
        DocumentValidationCache,
        partial(ServiceErrors, should_mask_error=should_mask),
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    return Schema(
        query=merge_types(
            "Query",
            (
                Query,
                ScoringQuery,
                QualificationQuery,
                SalesQuery,
                PeopleQuery,
                EventQuery,
                WebhookQuery,
            ),
        ),
        mutation=merge_types(
            "Mutation",
            (Mutation, ScoringMutation, QualificationMutation, SalesMutation, WebhookMutation),
        ),
        subscription=Subscription,
        types=[
            gql.AccountType,
            gql.ContactType,
            gql.LeadType,
            gql.MatchingStrategyType,
            ScoringModelType,
            InteractionType_,
            QualificationModelType,
            WebhookType,
            OpportunityType,
            UserType,
            TeamType,
        ],
        extensions=extensions,
        execution_context_class=FastLeafExecutionContext,
    )

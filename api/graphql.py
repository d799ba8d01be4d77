"""The Strawberry schema with its safety limits."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

import strawberry
from graphql import GraphQLError, validate
from strawberry.extensions import (
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StreamResult, validate_document
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult

from api import types as gql
from api.audit import AuditQuery
from api.errors import ServiceErrors, is_public, should_mask, unavailable_cause
from api.events import EventQuery, Subscription
from api.execution import FastLeafExecutionContext
from api.limits import Limits, check
from api.qualification import QualificationModelType, QualificationMutation, QualificationQuery
from api.resolvers import Mutation, Query
from api.sales import (
    ActivityType,
    OpportunityType,
    PeopleQuery,
    SalesMutation,
    SalesQuery,
    TeamType,
    UserType,
)
from api.scoring import InteractionType_, ScoringModelType, ScoringMutation, ScoringQuery
from api.sequences import (
    ProcessType,
    SequenceMutation,
    SequenceQuery,
    SequenceRunType,
    SequenceType,
)
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
    _limits: ClassVar[dict[tuple[int, Limits], Limits]] = {}
    maxsize: ClassVar[int] = 512

    def __init__(
        self,
        *,
        limits: Limits,
        hide_suggestions: bool = False,
        execution_context: Any = None,
    ) -> None:
        super().__init__(execution_context=execution_context)
        self.limits = limits
        self.hide_suggestions = hide_suggestions

    def _schema_limits(self, schema: Any) -> Limits:
        """The limits, knowing which of the schema's fields are paged (take `first`)."""
        key = (id(schema), self.limits)
        found = self._limits.get(key)
        if found is None:
            paged = frozenset(
                name
                for t in schema.type_map.values()
                for name, field in (getattr(t, "fields", None) or {}).items()
                if "first" in (getattr(field, "args", None) or {})
            )
            found = self._limits[key] = replace(self.limits, paged=paged)
        return found

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document, rules = ctx.graphql_document, tuple(ctx.validation_rules)
        if document is None:  # parsing failed: its errors are already recorded
            yield
            return
        key = (id(ctx.schema._schema), id(document), rules)
        entry = self._entries.get(key)
        if entry is None or entry[0] is not document:
            # The limits first: the spec's rules must not run on what they refuse.
            errors = check(document, self._schema_limits(ctx.schema._schema))
            if not errors and self.hide_suggestions:  # production: no "Did you mean ...?"
                errors = validate(ctx.schema._schema, document, rules, hide_suggestions=True)
            elif not errors:
                errors = validate_document(ctx.schema._schema, document, rules)
            if len(self._entries) >= self.maxsize:
                del self._entries[next(iter(self._entries))]  # the oldest
            entry = self._entries[key] = (document, errors)
        ctx.pre_execution_errors = entry[1]
        yield


_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def _hide_suggestions(errors: Iterable[GraphQLError]) -> None:
    """Production: no "Did you mean ...?" hints about the schema in error messages."""
    for error in errors:
        error.message = _SUGGESTION.sub("", error.message)


def _aware_datetime(value: object) -> datetime:
    """An ISO 8601 date and time with its timezone: a time without one names no instant.
    (A GraphQLError, so the message reaches the caller for variables and literals alike.)"""
    if not isinstance(value, str):
        raise _bad_datetime(f"DateTime must be an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad_datetime(f"'{value[:64]}' is not an ISO 8601 date and time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _bad_datetime(f"'{value[:64]}' has no timezone: add Z or an offset such as +02:00")
    try:
        parsed.astimezone(UTC)  # stored and compared in UTC
    except OverflowError:
        raise _bad_datetime(f"'{value[:64]}' is out of range: years 1 to 9999 in UTC") from None
    return parsed


def _bad_datetime(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


AwareDateTime = strawberry.scalar(
    name="DateTime",
    description="Date with time and timezone (ISO 8601, e.g. 2026-11-25T10:00:00Z)",
    serialize=datetime.isoformat,
    parse_value=_aware_datetime,
)


class LimitedSchema(strawberry.Schema):
    """The schema with a wall-clock limit per query or mutation.

    A query or mutation running longer than `timeout` seconds is cancelled: the unit of work it
    had open rolls back, so nothing it wrote there is kept, and the caller gets one TIMEOUT
    error. (Interactions already handed to the recorder's shared group commit are stored whole
    or not at all; a retry with the same idempotencyKey is safe.)
    """

    def __init__(self, *args: Any, timeout: float, hide_suggestions: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self.hide_suggestions = hide_suggestions

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            async with asyncio.timeout(self.timeout or None):
                result = await super().execute(*args, **kwargs)
        except TimeoutError:
            message = (
                f"the operation took longer than {self.timeout:g} s and was stopped;"
                " its open transaction was rolled back"
            )
            return ExecutionResult(
                data=None, errors=[GraphQLError(message, extensions={"code": "TIMEOUT"})]
            )
        if self.hide_suggestions and result.errors:
            _hide_suggestions(result.errors)  # e.g. an unknown enum value in the variables
        return result

    async def stream(self, *args: Any, **kwargs: Any) -> StreamResult:
        """Subscriptions (over the WebSocket): their errors lose the hints too."""
        source = await super().stream(*args, **kwargs)
        return self._without_suggestions(source) if self.hide_suggestions else source

    async def _without_suggestions(self, source: StreamResult) -> StreamResult:
        async with aclosing(source):
            async for item in source:
                errors = getattr(item, "errors", None)
                if errors:
                    _hide_suggestions(errors)
                yield item

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Errors about the request (a FORBIDDEN, a BAD_USER_INPUT, a validation error) are the
        # client's to see, not the operator's: no traceback for them. Errors caused by an
        # unreachable database are logged (one line each) where they are masked.
        rest = [
            e for e in errors if not is_public(e) and unavailable_cause(e.original_error) is None
        ]
        if rest:
            super().process_errors(rest, execution_context)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema; limits come from settings (defaults when none are given)."""
    settings = settings or Settings()
    # Checked before validation (DocumentValidationCache), once per document.
    limits = Limits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_directives=settings.max_directives,
        max_nodes=settings.max_query_nodes,
        max_merge_work=settings.max_merge_work,
        max_page_size=settings.max_page_size,
    )
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        partial(ParserCache, maxsize=512),
        partial(DocumentValidationCache, limits=limits, hide_suggestions=settings.production),
        partial(ServiceErrors, should_mask_error=should_mask),
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    batching = settings.max_batch_operations
    return LimitedSchema(
        timeout=settings.execution_timeout_seconds,
        hide_suggestions=settings.production,
        config=StrawberryConfig(
            batching_config={"max_operations": batching} if batching else None,
            scalar_map={datetime: AwareDateTime},
        ),
        query=merge_types(
            "Query",
            (
                Query,
                ScoringQuery,
                QualificationQuery,
                SalesQuery,
                PeopleQuery,
                SequenceQuery,
                EventQuery,
                WebhookQuery,
                AuditQuery,
            ),
        ),
        mutation=merge_types(
            "Mutation",
            (
                Mutation,
                ScoringMutation,
                QualificationMutation,
                SalesMutation,
                SequenceMutation,
                WebhookMutation,
            ),
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
            ActivityType,
            SequenceType,
            SequenceRunType,
            ProcessType,
        ],
        extensions=extensions,
        execution_context_class=FastLeafExecutionContext,
    )

"""GraphQL for lead events: the LeadEvent type, the `leadEvents` query and the subscriptions."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import Any, cast

import strawberry

from api import types as gql
from api.context import Info, Loaders
from api.errors import as_query_error, bad_input
from api.execution import pure
from api.ids import decode_id, to_global_id
from api.qualification import QualificationModelType
from api.scoring import ScoringModelType
from domain.errors import Invalid
from domain.events import (
    QUALIFICATION_CHANGES,
    LeadEvent,
    LeadEventType,
    decode_event_cursor,
    encode_event_cursor,
)
from domain.model import Lead, LeadStage, LeadStatusReason
from domain.pagination import page_size
from domain.roles import Permission

strawberry.enum(LeadEventType)


def _ev(obj: Any) -> LeadEvent:
    """The domain event a LeadEvent field resolves on (Strawberry passes it as `self`)."""
    return cast(LeadEvent, obj)


async def _lead(info: Info, event: LeadEvent) -> Lead:
    if event.lead is not None:  # read once by the fan-out for all its subscribers
        return event.lead
    lead = await info.context.loaders.lead.load(event.lead_id)
    if lead is None:  # events go with their lead (ON DELETE CASCADE)
        raise RuntimeError(f"lead {event.lead_id} of event {event.id} is gone")
    return lead


@strawberry.type(name="LeadEvent")
class LeadEventType_(gql.Node):
    """Something that happened to a lead; the lead's state fields are as of the event.

    Every writer stores the lead's state in the event; an event stored by an earlier version
    without a state field shows the lead's current value for it.
    """

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, LeadEvent)

    @strawberry.field
    @pure
    def cursor(self) -> str:
        return encode_event_cursor(_ev(self).position)

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("LeadEvent", _ev(self).id))

    @strawberry.field
    @pure
    def type(self) -> LeadEventType:
        return LeadEventType(_ev(self).type)

    @strawberry.field
    @pure
    def occurred_at(self) -> datetime:
        return _ev(self).occurred_at

    @strawberry.field
    async def lead(self, info: Info) -> gql.LeadType:
        return await _lead(info, _ev(self))  # type: ignore[return-value]

    @strawberry.field
    async def status_reason(self, info: Info) -> LeadStatusReason:
        value = _ev(self).payload.get("statusReason")
        if value is not None:
            return LeadStatusReason(value)
        return (await _lead(info, _ev(self))).status_reason

    @strawberry.field
    @pure
    def previous_status_reason(self) -> LeadStatusReason | None:
        value = _ev(self).payload.get("previousStatusReason")
        return None if value is None else LeadStatusReason(value)

    @strawberry.field
    async def sales_ready(self, info: Info) -> bool:
        value = _ev(self).payload.get("salesReady")
        if value is not None:
            return bool(value)
        if _ev(self).type == LeadEventType.SALES_READY.value:
            return True
        return (await _lead(info, _ev(self))).sales_ready

    @strawberry.field
    @pure
    def previous_sales_ready(self) -> bool | None:
        value = _ev(self).payload.get("previousSalesReady")
        if value is None and _ev(self).type == LeadEventType.SALES_READY.value:
            return False
        return None if value is None else bool(value)

    @strawberry.field
    async def stage(self, info: Info) -> LeadStage:
        value = _ev(self).payload.get("stage")
        if value is not None:
            return LeadStage(value)
        return (await _lead(info, _ev(self))).stage

    @strawberry.field
    async def qualification_model(self, info: Info) -> QualificationModelType | None:
        """The qualification model that marked the lead (MARKETING_QUALIFIED, SALES_READY)."""
        model_id = _ev(self).payload.get("qualificationModelId")
        if model_id is None:
            return None
        return await info.context.loaders.qualification_model.load(int(model_id))  # type: ignore[return-value]

    @strawberry.field
    async def scoring_model(self, info: Info) -> ScoringModelType | None:
        model_id = _ev(self).payload.get("scoringModelId")
        if model_id is None:
            return None
        return await info.context.loaders.scoring_model.load(int(model_id))  # type: ignore[return-value]

    @strawberry.field
    @pure
    def score(self) -> float | None:
        value = _ev(self).payload.get("score")
        return None if value is None else float(value)

    @strawberry.field
    @pure
    def previous_score(self) -> float | None:
        value = _ev(self).payload.get("previousScore")
        return None if value is None else float(value)


@strawberry.type(name="LeadEventEdge")
class LeadEventEdge:
    node: LeadEventType_

    @strawberry.field
    def cursor(self) -> str:
        return encode_event_cursor(_ev(self.node).position)


@strawberry.type(name="LeadEventConnection")
class LeadEventConnection:
    edges: list[LeadEventEdge]
    page_info: gql.PageInfo
    types: strawberry.Private[list[str] | None]
    lead_id: strawberry.Private[int | None]

    @strawberry.field
    async def total_count(self, info: Info) -> int:
        """How many events match, across all pages."""
        types, lead_id = self.types, self.lead_id
        return await info.context.read(lambda r: r.events.count(types, lead_id))


def _types(types: Sequence[LeadEventType] | None) -> list[str] | None:
    return None if types is None else [t.value for t in types]


def _position(after: str | None) -> int | None:
    if not after:
        return None
    try:
        return decode_event_cursor(after)
    except Invalid as e:
        raise bad_input(e.message) from None


@strawberry.type
class EventQuery:
    @strawberry.field
    async def lead_events(
        self,
        info: Info,
        types: list[LeadEventType] | None = None,
        lead_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> LeadEventConnection:
        """Stored lead events in commit order (keyset on position)."""
        ctx = info.context
        ctx.require(Permission.READ)

        async def run() -> LeadEventConnection:
            size = page_size(first, ctx.services.max_page_size)
            lead_pk = None if lead_id is None else decode_id(str(lead_id), "Lead", ["leadId"])
            position = decode_event_cursor(after) if after else 0
            names = _types(types)
            rows = await ctx.read(lambda r: r.events.after(position, size + 1, names, lead_pk))
            page = rows[:size]
            end = encode_event_cursor(page[-1].position) if page else None
            return LeadEventConnection(
                edges=[LeadEventEdge(node=e) for e in page],  # type: ignore[arg-type]
                page_info=gql.PageInfo(has_next_page=len(rows) > size, end_cursor=end),
                types=names,
                lead_id=lead_pk,
            )

        return await as_query_error(run)


async def _follow(
    info: Info, after: str | None, types: Sequence[str] | None
) -> AsyncGenerator[LeadEventType_, None]:
    ctx = info.context
    ctx.require(Permission.SUBSCRIBE)
    feed = ctx.services.events
    if feed is None:
        raise RuntimeError("this server has no event feed")
    position = _position(after)
    if ctx.probe is not None:  # checked for the shared delivery, which follows the feed itself
        ctx.probe.update(after=position, types=frozenset(types) if types is not None else None)
        return
    async for event in feed.follow(position, frozenset(types) if types is not None else None):
        # A subscription lives long: each event reads the lead as it is now, not a cached copy.
        ctx.loaders = Loaders(ctx.services.reads)
        yield event  # type: ignore[misc]


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def lead_events(
        self,
        info: Info,
        types: list[LeadEventType] | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[LeadEventType_, None]:
        """Lead events as they are committed; with `after`, the stored ones after it first."""
        async for event in _follow(info, after, _types(types)):
            yield event

    @strawberry.subscription
    async def lead_qualification_changed(
        self, info: Info, after: str | None = None
    ) -> AsyncGenerator[LeadEventType_, None]:
        """MARKETING_QUALIFIED, SALES_READY, QUALIFIED and DISQUALIFIED events."""
        async for event in _follow(info, after, _types(QUALIFICATION_CHANGES)):
            yield event

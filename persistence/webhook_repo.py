"""Webhooks and their delivery log in storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.audit import AuditEntityType
from domain.pagination import Page, PageRequest
from domain.ports import StoredEvent
from domain.webhooks import Delivery, DeliveryStatus, Webhook
from persistence import tables as t
from persistence.audit_repo import insert_audited
from persistence.listing import Criterion, Listing
from persistence.repositories import upsert_insert


def to_webhook(r: Row[Any]) -> Webhook:
    return Webhook(
        name=r.name,
        url=r.url,
        secret=r.secret,
        event_types=list(r.event_types),
        active=r.active,
        cursor=r.cursor,
        id=r.id,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def to_delivery(r: Row[Any]) -> Delivery:
    return Delivery(
        webhook_id=r.webhook_id,
        event_id=r.event_id,
        status=DeliveryStatus(r.status),
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        last_status=r.last_status,
        last_error=r.last_error,
        id=r.id,
        created_at=r.created_at,
        delivered_at=r.delivered_at,
    )


def _event(r: Row[Any]) -> StoredEvent:
    return StoredEvent(r.id, r.lead_id, r.type, r.occurred_at, dict(r.payload), r.position)


_WEBHOOKS = Listing[None, Webhook](t.webhooks, {}, to_webhook)
# A webhook's deliveries (webhook id, status or None), newest first.
_DELIVERIES = Listing[tuple[int, DeliveryStatus | None], Delivery](
    t.webhook_deliveries,
    {
        "webhook": Criterion(
            lambda r: {"webhook_id": r[0]},
            lambda: t.webhook_deliveries.c.webhook_id == bindparam("webhook_id"),
        ),
        "status": Criterion(
            lambda r: None if r[1] is None else {"status": r[1].value},
            lambda: t.webhook_deliveries.c.status == bindparam("status"),
        ),
    },
    to_delivery,
)


def _delivery_values(d: Delivery) -> dict[str, Any]:
    return {
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "status": d.status.value,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "delivered_at": d.delivered_at,
    }


class WebhookRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.webhooks

    def _row(self, w: Webhook) -> dict[str, Any]:
        return {
            "name": w.name,
            "url": w.url,
            "secret": w.secret,
            "event_types": list(w.event_types),
            "active": w.active,
            "cursor": w.cursor,
            "created_at": w.created_at,
            "updated_at": w.updated_at,
        }

    async def get(self, id_: int, *, for_update: bool = False) -> Webhook | None:
        stmt = select(self.table).where(self.table.c.id == id_)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return to_webhook(row) if row else None

    async def get_many(self, ids: Sequence[int]) -> dict[int, Webhook]:
        stmt = select(self.table).where(self.table.c.id.in_(list(ids)))
        return {r.id: to_webhook(r) for r in (await self.conn.execute(stmt)).all()}

    async def active(self) -> list[Webhook]:
        stmt = select(self.table).where(self.table.c.active).order_by(self.table.c.id)
        return [to_webhook(r) for r in (await self.conn.execute(stmt)).all()]

    async def add(self, webhook: Webhook) -> Webhook:
        webhook.id = await insert_audited(
            self.conn, self.table, self._row(webhook), AuditEntityType.WEBHOOK
        )
        return webhook

    async def save(self, webhook: Webhook) -> None:
        await self.conn.execute(
            update(self.table).where(self.table.c.id == webhook.id).values(self._row(webhook))
        )

    async def delete(self, id_: int) -> None:
        d = t.webhook_deliveries
        await self.conn.execute(delete(d).where(d.c.webhook_id == id_))
        await self.conn.execute(delete(self.table).where(self.table.c.id == id_))

    async def page(self, page: PageRequest) -> Page[Webhook]:
        return await _WEBHOOKS.page(self.conn, None, page)

    async def count(self) -> int:
        return await _WEBHOOKS.count(self.conn, None)

    async def last_event(self) -> int:
        """The highest event position so far: a new webhook starts after it."""
        e = t.lead_events.c
        return int(await self.conn.scalar(select(func.max(e.position))) or 0)

    async def events_after(self, cursor: int, limit: int) -> list[StoredEvent]:
        """Positioned lead events after position `cursor`, in commit order.

        By position, not id: ids are not committed in order on PostgreSQL, positions are (see
        persistence/relay.py), so paging by position never skips an event.
        """
        e = t.lead_events.c
        stmt = (
            select(t.lead_events)
            .where(e.position.is_not(None), e.position > cursor)
            .order_by(e.position)
            .limit(limit)
        )
        return [_event(r) for r in (await self.conn.execute(stmt)).all()]

    async def events(self, ids: Sequence[int]) -> dict[int, StoredEvent]:
        stmt = select(t.lead_events).where(t.lead_events.c.id.in_(list(ids)))
        return {r.id: _event(r) for r in (await self.conn.execute(stmt)).all()}

    # ------------------------------------------------------------ deliveries

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Queue deliveries; one already queued for the same webhook and event is kept."""
        if not deliveries:
            return
        stmt = upsert_insert(self.conn)(t.webhook_deliveries).on_conflict_do_nothing(
            index_elements=["webhook_id", "event_id"]
        )
        await self.conn.execute(stmt, [_delivery_values(d) for d in deliveries])

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        d = t.webhook_deliveries.c
        # A paused webhook's pending deliveries wait for it to be active again.
        active = select(t.webhooks.c.id).where(t.webhooks.c.active)
        stmt = (
            select(t.webhook_deliveries)
            .where(
                d.status == DeliveryStatus.PENDING.value,
                d.next_attempt_at <= now,
                d.webhook_id.in_(active.scalar_subquery()),
            )
            .order_by(d.next_attempt_at, d.id)
            .limit(limit)
        )
        return [to_delivery(r) for r in (await self.conn.execute(stmt)).all()]

    async def save_delivery(self, delivery: Delivery) -> None:
        d = t.webhook_deliveries
        await self.conn.execute(
            update(d).where(d.c.id == delivery.id).values(_delivery_values(delivery))
        )

    async def deliveries(
        self, webhook_id: int, status: DeliveryStatus | None, page: PageRequest
    ) -> Page[Delivery]:
        return await _DELIVERIES.page(self.conn, (webhook_id, status), page)

    async def count_deliveries(self, webhook_id: int, status: DeliveryStatus | None) -> int:
        return await _DELIVERIES.count(self.conn, (webhook_id, status))

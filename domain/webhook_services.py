"""Webhook use cases: registration, and at-least-once delivery of lead events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain import audit
from domain.errors import NotFound
from domain.model import utcnow
from domain.ports import StoredEvent, UnitOfWork, UnitOfWorkFactory, WebhookSender
from domain.webhooks import Delivery, Webhook, build_webhook, signature

DISPATCH_LOCK = "job:webhooks"
LEASE = timedelta(minutes=2)  # a claimed delivery is retried by anyone after this
_WH = audit.AuditEntityType.WEBHOOK


async def create_webhook(uow: UnitOfWork, raw: Mapping[str, Any]) -> Webhook:
    """Register a webhook; it is told about events from now on."""
    webhook = build_webhook(raw)
    webhook.cursor = await uow.webhooks.last_event()
    webhook = await uow.webhooks.add(webhook)
    await audit.record(uow, "create", _WH, webhook.id, None, audit.webhook(webhook))
    return webhook


async def _webhook(uow: UnitOfWork, id_: int) -> Webhook:
    webhook = await uow.webhooks.get(id_, for_update=True)
    if webhook is None:
        raise NotFound("no webhook with this id", ["id"])
    return webhook


async def update_webhook(uow: UnitOfWork, id_: int, raw: Mapping[str, Any]) -> Webhook:
    """Change name and URL, and the event types, active flag and secret when given (what is
    left out stays as it is)."""
    webhook = await _webhook(uow, id_)
    before = audit.webhook(webhook)
    kept = {"eventTypes": list(webhook.event_types), "active": webhook.active}
    changed = build_webhook({**kept, **raw})
    if changed.active and not webhook.active:
        # Paused means not told: what happened meanwhile is not delivered on resuming.
        webhook.cursor = await uow.webhooks.last_event()
    webhook.name, webhook.url = changed.name, changed.url
    webhook.event_types, webhook.active = changed.event_types, changed.active
    rotated = raw.get("secret") is not None and changed.secret != webhook.secret
    if raw.get("secret") is not None:
        webhook.secret = changed.secret
    webhook.updated_at = utcnow()
    await uow.webhooks.save(webhook)
    after = audit.webhook(webhook)
    if rotated:
        after["secretRotated"] = True  # the secret itself stays out of the log
    await audit.record(uow, "update", _WH, webhook.id, before, after)
    return webhook


async def delete_webhook(uow: UnitOfWork, id_: int) -> int:
    webhook = await _webhook(uow, id_)
    await uow.webhooks.delete(id_)
    await audit.record(uow, "delete", _WH, id_, audit.webhook(webhook), None)
    return id_


async def enqueue(uow: UnitOfWork, now: datetime, batch: int = 500) -> int:
    """Queue a delivery per active webhook for each new event it wants, due `now`."""
    queued = 0
    for webhook in await uow.webhooks.active():
        events = await uow.webhooks.events_after(webhook.cursor, batch)
        if not events:
            continue
        deliveries = [
            Delivery(webhook.id, e.id, next_attempt_at=now, created_at=now)
            for e in events
            if webhook.wants(e.type)
        ]
        await uow.webhooks.add_deliveries(deliveries)
        webhook.cursor = events[-1].position or webhook.cursor
        await uow.webhooks.save(webhook)
        queued += len(deliveries)
    return queued


@dataclass(frozen=True, slots=True)
class Outgoing:
    delivery: Delivery
    webhook: Webhook
    event: StoredEvent


Render = Callable[[Outgoing], bytes]


async def claim(uow: UnitOfWork, now: datetime, limit: int) -> list[Outgoing]:
    """Due deliveries, leased to the caller: nobody else sends them for LEASE."""
    due = await uow.webhooks.due(now, limit)
    if not due:
        return []
    hooks = await uow.webhooks.get_many(sorted({d.webhook_id for d in due}))
    events = await uow.webhooks.events(sorted({d.event_id for d in due}))
    out = []
    for d in due:
        webhook, event = hooks.get(d.webhook_id), events.get(d.event_id)
        if webhook is None or event is None:  # the lead (and its events) was deleted
            d.give_up("the event no longer exists")
        else:
            d.next_attempt_at = now + LEASE
            out.append(Outgoing(d, webhook, event))
        await uow.webhooks.save_delivery(d)
    return out


async def dispatch_once(
    uow: UnitOfWorkFactory,
    sender: WebhookSender,
    render: Render,
    now: datetime | None = None,
    limit: int = 100,
) -> int:
    """Queue new events, then send what is due once; returns how many were sent.

    Queuing and claiming happen under a lock only one process holds at a time; the HTTP calls
    run outside any transaction, and their outcomes are recorded afterwards. A process that
    dies in between leaves its claims to be retried when their lease ends (at least once).
    """
    now = now or utcnow()
    async with uow() as unit:
        if not await unit.try_lock(DISPATCH_LOCK):
            return 0
        await enqueue(unit, now)
        outgoing = await claim(unit, now, limit)
        await unit.commit()
    if not outgoing:
        return 0
    results = await _send_all(sender, render, outgoing)
    async with uow() as unit:
        done = utcnow()
        for item, (status, error) in zip(outgoing, results, strict=True):
            item.delivery.record(status, error, done)
            await unit.webhooks.save_delivery(item.delivery)
        await unit.commit()
    return len(outgoing)


async def _send_all(
    sender: WebhookSender, render: Render, outgoing: Sequence[Outgoing]
) -> list[tuple[int | None, str | None]]:
    async def send(item: Outgoing) -> tuple[int | None, str | None]:
        body = render(item)
        timestamp = int(utcnow().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "LeadFlow-Webhooks/1",
            "x-leadflow-delivery": str(item.delivery.id),
            "x-leadflow-event": item.event.type,
            "x-leadflow-signature": signature(item.webhook.secret, timestamp, body),
        }
        return await sender.post(item.webhook.url, body, headers)

    return list(await asyncio.gather(*(send(item) for item in outgoing)))

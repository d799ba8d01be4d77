"""Background jobs of the server process: score expiry, webhook delivery, key cleanup."""

from __future__ import annotations

import asyncio
import logging

from domain.errors import ServiceUnavailable
from domain.model import utcnow
from domain.ports import IdempotencyStore, ReadAccess, UnitOfWorkFactory, WebhookSender
from domain.scoring_services import rescore_expired
from domain.webhook_services import Render, dispatch_once

log = logging.getLogger("leadflow.jobs")

EXPIRY_LOCK = "job:score-expiry"


async def expire_scores_once(reads: ReadAccess, uow: UnitOfWorkFactory, batch: int = 500) -> int:
    """Re-score leads whose time-window contributions ran out; how many were re-scored.

    A cheap read decides whether there is work; the write transaction then takes a lock that
    only one process can hold (PostgreSQL advisory lock; SQLite has one writer anyway), so with
    several server processes each batch is done once.
    """
    now = utcnow()
    async with reads.read() as r:
        if not await r.scores.expired(now, 1):
            return 0
    async with uow() as unit:
        if not await unit.try_lock(EXPIRY_LOCK):
            return 0
        done = await rescore_expired(unit, now, batch)
        await unit.commit()
    return done


async def expiry_loop(reads: ReadAccess, uow: UnitOfWorkFactory, interval: float) -> None:
    """Run `expire_scores_once` every `interval` seconds until cancelled; errors are logged."""
    while True:
        await asyncio.sleep(interval)
        try:
            while await expire_scores_once(reads, uow) > 0:
                pass  # a full batch may leave more: go on until none is left
        except asyncio.CancelledError:
            raise
        except ServiceUnavailable as e:
            log.warning("score expiry skipped: %s", e)
        except Exception:
            log.exception("score expiry failed; retrying in %s s", interval)


async def webhook_loop(
    uow: UnitOfWorkFactory, sender: WebhookSender, render: Render, interval: float
) -> None:
    """Deliver webhooks every `interval` seconds (more at once while work is left)."""
    while True:
        await asyncio.sleep(interval)
        try:
            while await dispatch_once(uow, sender, render) > 0:
                pass
        except asyncio.CancelledError:
            raise
        except ServiceUnavailable as e:
            log.warning("webhook delivery skipped: %s", e)
        except Exception:
            log.exception("webhook delivery failed; retrying in %s s", interval)


async def idempotency_cleanup_loop(store: IdempotencyStore, interval: float) -> None:
    """Delete expired Idempotency-Key answers every `interval` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await store.purge(utcnow())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("idempotency key cleanup failed; retrying in %s s", interval)

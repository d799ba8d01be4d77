"""Background jobs of the server process: score expiry, webhook delivery, key cleanup, and
handing freed memory back to the operating system."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

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


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: fn(0)


async def memory_trim_loop(interval: float) -> None:
    """Every `interval` seconds, give the memory the C allocator holds free back to the OS.

    Whatever Python frees outside its own small-object arenas (result rows, JSON, request and
    response bodies, SQLite's page caches; one allocator arena per database thread) goes back
    to glibc's malloc, which keeps it for reuse: scattered between live blocks, it stays in the
    process's RSS, which then creeps up with the busiest moments seen so far (a publish, a
    burst of subscribers) although nothing leaks. malloc_trim releases those free pages; it
    runs in a thread, as it walks every arena. Nothing to do where the C library has no such
    call.
    """
    trim = _malloc_trim()
    if trim is None:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(trim)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("memory trim failed; retrying in %s s", interval)

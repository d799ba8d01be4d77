"""The Starlette application: the composition root that wires storage to the API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from api.context import Services
from api.fanout import FanOut
from api.graphql import build_schema
from api.http import GraphQLEndpoint
from api.idempotency import Idempotency
from api.jobs import expiry_loop, idempotency_cleanup_loop, webhook_loop
from api.memory import limit_malloc_arenas, memory_trim_loop
from api.settings import Settings, get_settings
from api.webhooks import HttpSender, render
from domain.ports import EventBroker, RateLimiter
from persistence.apikeys import ApiKeyStore
from persistence.brokers import CHANNEL as EVENT_CHANNEL
from persistence.brokers import MemoryBroker, RedisBroker
from persistence.database import Database
from persistence.idempotency import IdempotencyKeyStore
from persistence.migrate import pending, upgrade
from persistence.ratelimit import MemoryRateLimiter, RedisRateLimiter
from persistence.relay import Relay

log = logging.getLogger("leadflow")

READINESS_TIMEOUT = 3.0  # seconds per check: a load balancer's probe must get an answer


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> Starlette:
    """The ASGI app for these settings; `migrate` upgrades the database on startup."""
    settings = settings or get_settings()
    db = Database(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )
    keys = ApiKeyStore(db, cache_seconds=settings.api_key_cache_seconds)
    # Lead events: the relay positions committed events and announces them on the broker; this
    # process's one broker subscription feeds its fan-out to GraphQL subscriptions.
    # Redis names (the event channel, rate buckets) carry a digest of the database URL, so
    # deployments sharing one Redis never see each other's notices.
    database = hashlib.sha256(settings.database_url.encode()).hexdigest()[:16]
    broker: EventBroker = (
        RedisBroker(settings.redis_url, f"{EVENT_CHANNEL}:{database}")
        if settings.redis_url
        else MemoryBroker()
    )
    fanout = FanOut(db)
    relay = Relay(
        db,
        broker,
        fanout.notify,
        interval=settings.event_relay_interval_seconds,
        on_events=fanout.offer,
    )
    db.events_committed.append(relay.wake)
    db.head_committed.append(lambda head, events: fanout.offer(events))
    db.head_committed.append(lambda head, events: relay.committed(head))
    services = Services(uow=db.uow, reads=db, max_page_size=settings.max_page_size, events=fanout)
    # Per API key: shared by every process through Redis when there is one.
    limiter: RateLimiter = (
        RedisRateLimiter(settings.redis_url, f"leadflow:rate:{database}:")
        if settings.redis_url
        else MemoryRateLimiter()
    )
    idempotency_keys = IdempotencyKeyStore(db)
    graphql = GraphQLEndpoint(
        build_schema(settings),
        services,
        keys,
        limits=settings,
        rate_limiter=limiter,
        idempotency=Idempotency(idempotency_keys, settings.idempotency_key_ttl_seconds),
        graphql_ide=None if settings.production else "graphiql",
        allow_queries_via_get=False,
    )

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def check_database() -> str:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT):
                await db.ping()
                if await pending(db.read_engine):
                    return "migrations pending"
        except Exception as e:  # any failure to reach the database means not ready
            log.warning("readiness: database unavailable: %s", e)
            return "unavailable"
        return "ok"

    async def check_redis() -> str:
        if not isinstance(broker, RedisBroker):
            return "ok"
        try:
            async with asyncio.timeout(READINESS_TIMEOUT):
                await broker.ping()
        except Exception as e:
            log.warning("readiness: redis unavailable: %s", e)
            return "unavailable"
        return "ok"

    async def readyz(_: Request) -> JSONResponse:
        checks = {"database": await check_database()}
        if settings.redis_url:
            checks["redis"] = await check_redis()
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", **checks})
        status = "migrations pending" if "migrations pending" in checks.values() else "unavailable"
        return JSONResponse({"status": status, **checks}, status_code=503)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if migrate:
            await upgrade(db.write_engine)
        # Startup objects live as long as the process: keep them out of the collector's scans,
        # which otherwise add pauses of ~100 ms to request latency under load.
        gc.collect()
        gc.freeze()
        await fanout.start()
        jobs = [
            asyncio.create_task(broker.listen(fanout.notify)),
            asyncio.create_task(relay.run()),
        ]
        if settings.score_expiry_interval_seconds > 0:
            interval = settings.score_expiry_interval_seconds
            jobs.append(asyncio.create_task(expiry_loop(db, db.uow, interval)))
        if settings.idempotency_cleanup_interval_seconds > 0:
            interval = settings.idempotency_cleanup_interval_seconds
            jobs.append(asyncio.create_task(idempotency_cleanup_loop(idempotency_keys, interval)))
        sender = HttpSender(allow_private=settings.webhook_allow_private_addresses)
        if settings.webhook_interval_seconds > 0:
            interval = settings.webhook_interval_seconds
            jobs.append(asyncio.create_task(webhook_loop(db.uow, sender, render, interval)))
        if settings.memory_trim_interval_seconds > 0:
            interval = settings.memory_trim_interval_seconds
            jobs.append(asyncio.create_task(memory_trim_loop(interval)))
        yield
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await sender.close()
        await fanout.stop()
        await broker.close()
        await limiter.close()
        await db.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.keys = keys
    app.state.idempotency_keys = idempotency_keys
    app.state.relay = relay
    app.state.fanout = fanout
    app.state.settings = settings
    app.state.rate_limiter = limiter
    return app


def app_factory() -> Starlette:
    """Entry point for `uvicorn --factory api.app:app_factory` (the CLI has migrated)."""
    settings = get_settings()
    # Before the database threads start: they then share a few allocator arenas.
    limit_malloc_arenas(settings.malloc_arenas)
    return create_app(settings, migrate=False)

"""Engines, the unit of work and read access, for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import replace
from functools import cached_property
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from domain.auth import Principal
from domain.errors import ServiceUnavailable
from domain.events import LeadEvent
from persistence import sqlite_driver
from persistence.audit_repo import AuditRepository
from persistence.faults import is_unavailable
from persistence.outbox import (
    CHECKPOINT_LATER,
    EVENTS_WRITTEN,
    POSITIONED_AFTER,
    SELF_POSITIONED,
)
from persistence.qualification_repo import QualificationModelRepository
from persistence.repositories import (
    AccountRepository,
    ContactRepository,
    LeadRepository,
    MatchingStrategyRepository,
    SettingsRepository,
)
from persistence.sales_repo import (
    ActivityRepository,
    AssignmentRuleRepository,
    OpportunityRepository,
    ProcessRepository,
    SequenceRepository,
    StakeholderRepository,
    TeamRepository,
    UserRepository,
)
from persistence.scoring_repo import (
    InteractionRepository,
    LeadEventRepository,
    LeadScoreRepository,
    ScoringModelRepository,
)
from persistence.webhook_repo import WebhookRepository


class Repositories:
    """Every repository, bound to one connection; each made on first use (a read uses one or
    two of them)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @cached_property
    def accounts(self) -> AccountRepository:
        return AccountRepository(self.conn)

    @cached_property
    def contacts(self) -> ContactRepository:
        return ContactRepository(self.conn)

    @cached_property
    def leads(self) -> LeadRepository:
        return LeadRepository(self.conn)

    @cached_property
    def strategies(self) -> MatchingStrategyRepository:
        return MatchingStrategyRepository(self.conn)

    @cached_property
    def settings(self) -> SettingsRepository:
        return SettingsRepository(self.conn)

    @cached_property
    def interactions(self) -> InteractionRepository:
        return InteractionRepository(self.conn)

    @cached_property
    def scoring_models(self) -> ScoringModelRepository:
        return ScoringModelRepository(self.conn)

    @cached_property
    def scores(self) -> LeadScoreRepository:
        return LeadScoreRepository(self.conn)

    @cached_property
    def events(self) -> LeadEventRepository:
        return LeadEventRepository(self.conn)

    @cached_property
    def qualification_models(self) -> QualificationModelRepository:
        return QualificationModelRepository(self.conn)

    @cached_property
    def webhooks(self) -> WebhookRepository:
        return WebhookRepository(self.conn)

    @cached_property
    def opportunities(self) -> OpportunityRepository:
        return OpportunityRepository(self.conn)

    @cached_property
    def users(self) -> UserRepository:
        return UserRepository(self.conn)

    @cached_property
    def teams(self) -> TeamRepository:
        return TeamRepository(self.conn)

    @cached_property
    def assignment_rules(self) -> AssignmentRuleRepository:
        return AssignmentRuleRepository(self.conn)

    @cached_property
    def stakeholders(self) -> StakeholderRepository:
        return StakeholderRepository(self.conn)

    @cached_property
    def activities(self) -> ActivityRepository:
        return ActivityRepository(self.conn)

    @cached_property
    def audit(self) -> AuditRepository:
        return AuditRepository(self.conn)

    @cached_property
    def sequences(self) -> SequenceRepository:
        return SequenceRepository(self.conn)

    @cached_property
    def processes(self) -> ProcessRepository:
        return ProcessRepository(self.conn)


_ALL_EVENTS = 1 << 62
_AUTOCHECKPOINT = 1000  # SQLite's default: checkpoint at commit once the WAL has 1000 pages
_HANDED_OVER = 1000  # at most this many events of a commit are handed to the hooks


UNAVAILABLE_MESSAGE = "the database is unavailable; retry shortly"


def _unavailable(error: BaseException) -> ServiceUnavailable:
    """What a connection failure becomes at the storage boundary (the cause stays chained)."""
    return ServiceUnavailable(f"{UNAVAILABLE_MESSAGE} ({type(error).__name__})")


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


async def _checkpoint_at_commit(conn: AsyncConnection) -> None:
    """Turn SQLite's automatic checkpoint at commit back on (see CHECKPOINT_LATER), through the
    driver: outside a transaction, where SQLAlchemy would begin one (BEGIN IMMEDIATE)."""
    with suppress(Exception):  # a broken connection is discarded anyway
        driver = (await conn.get_raw_connection()).driver_connection
        if driver is not None:
            await driver.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")
            del conn.info[CHECKPOINT_LATER]


class SqlUnitOfWork(Repositories):
    """One write transaction; rolled back unless committed."""

    def __init__(self, db: Database, actor: Principal | None = None) -> None:
        self._db = db
        self.actor = actor
        self._conn_cm: Any = None
        self._committed = False
        self._held: set[int] = set()

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._db.is_sqlite:
            # One writer at a time per process: waiting here is cheaper than SQLITE_BUSY.
            await self._db.write_lock.acquire()
        try:
            self._conn_cm = self._db.write_engine.connect()
            conn = await self._conn_cm.__aenter__()
            try:
                conn.info[EVENTS_WRITTEN] = False  # info outlives the checkout: reset it
                conn.info.pop(POSITIONED_AFTER, None)
                conn.info[SELF_POSITIONED] = self._db.is_sqlite
                if conn.info.get(CHECKPOINT_LATER):  # the last unit of work could not reset it
                    await _checkpoint_at_commit(conn)
                await conn.begin()
            except BaseException as e:
                await self._conn_cm.__aexit__(type(e), e, e.__traceback__)
                raise
        except BaseException as e:
            if self._db.is_sqlite:
                self._db.write_lock.release()
            if isinstance(e, Exception) and is_unavailable(e):
                raise _unavailable(e) from e
            raise
        super().__init__(conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            try:
                info: dict[Any, Any] = {}
                with suppress(Exception):  # a closed connection has no info to read
                    info = self.conn.info
                # Other users of this pooled connection (the relay, scripts) position nothing early.
                info.pop(SELF_POSITIONED, None)
                info.pop(POSITIONED_AFTER, None)
                try:
                    if not self._committed and self.conn.in_transaction():
                        await self.conn.rollback()
                except Exception as e:
                    # A connection that died mid-transaction cannot roll back (the server already
                    # did); the error that ended the transaction is the one to report.
                    if exc is None:
                        if is_unavailable(e):
                            raise _unavailable(e) from e
                        raise
                if info.get(CHECKPOINT_LATER):
                    await _checkpoint_at_commit(self.conn)
                    if self._committed:
                        self._db.checkpoint_soon()
            finally:
                await self._conn_cm.__aexit__(exc_type, exc, tb)
        finally:
            if self._db.is_sqlite:
                self._db.write_lock.release()
        unavailable = isinstance(exc, Exception) and not isinstance(exc, ServiceUnavailable)
        if unavailable and exc is not None and is_unavailable(exc):
            raise _unavailable(exc) from exc

    async def commit(self) -> None:
        head: int | None = None
        events: list[LeadEvent] = []
        if self._db.is_sqlite and self.conn.info.get(EVENTS_WRITTEN):
            # SQLite runs one writer at a time (BEGIN IMMEDIATE, across processes too), so this
            # transaction can position its own events: positions stay dense and in commit
            # order, and the events are readable at commit instead of after a relay
            # transaction queued behind the next writers (persistence/relay.py).
            # Set-based inserts may have positioned their events already (insert_events).
            before = self.conn.info.pop(POSITIONED_AFTER, None)
            if before is None:
                before = await self.events.max_position()
            await self.events.assign_positions(_ALL_EVENTS)
            head = await self.events.max_position()
            if self._db.head_committed and 0 < head - before <= _HANDED_OVER:
                # The events with their leads as committed, for this process's fan-out: it
                # need not read them back (api/fanout.py `offer`).
                events = await self.events.after(before, head - before, until=head)
                leads = await self.leads.get_many(sorted({e.lead_id for e in events}))
                events = [replace(e, lead=leads.get(e.lead_id)) for e in events]
        await self.conn.commit()
        self._committed = True
        if self.conn.info.get(EVENTS_WRITTEN):
            self.conn.info[EVENTS_WRITTEN] = False
            for hook in self._db.events_committed:
                hook()
            if head is not None:
                for head_hook in self._db.head_committed:
                    head_hook(head, events)

    async def lock(self, key: str) -> None:
        # SQLite already serialises writers (BEGIN IMMEDIATE); PostgreSQL needs a lock per key.
        if self._db.is_sqlite:
            return
        lock_id = _lock_id(key)
        if lock_id not in self._held:
            await self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
            self._held.add(lock_id)

    async def try_lock(self, key: str) -> bool:
        # SQLite: this transaction already holds the only write lock there is.
        if self._db.is_sqlite:
            return True
        lock_id = _lock_id(key)
        stmt = text("SELECT pg_try_advisory_xact_lock(:k)")
        got = bool(await self.conn.scalar(stmt, {"k": lock_id}))
        if got:
            self._held.add(lock_id)
        return got


def json_dumps(value: Any) -> str:
    """JSON columns' text: orjson (several times faster than the json module, which scoring
    shows: every breakdown and event payload is written through here), or the json module for
    what orjson does not take (integers beyond 64 bits), so anything json took still goes in."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def json_loads(raw: str | bytes) -> Any:
    """JSON columns' values: orjson, or the json module for what only it reads (NaN)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


_JSON = {"json_serializer": json_dumps, "json_deserializer": json_loads}


class Database:
    """The engines for one database URL."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.write_lock = asyncio.Lock()
        # Called (synchronously, so keep them cheap) after a transaction that wrote events commits.
        self.events_committed: list[Callable[[], None]] = []
        # Called after a commit that positioned its events (SQLite) with the new head position
        # and those events (with their leads; empty when there were too many to hand over).
        self.head_committed: list[Callable[[int, list[LeadEvent]], None]] = []
        self._checkpoint: asyncio.Task[None] | None = None
        self._checkpoint_again = False
        if self.is_sqlite:
            self.write_engine = self._sqlite_engine(url, busy_timeout_ms, "BEGIN IMMEDIATE", 1)
            self.read_engine = self._sqlite_engine(url, busy_timeout_ms, None, pool_size)
        else:
            self.write_engine = create_async_engine(
                url,
                **_JSON,
                pool_size=pool_size,
                max_overflow=pool_size,
                # A connection the server dropped (restart, failover) is replaced on checkout
                # instead of failing the request that drew it.
                pool_pre_ping=True,
                pool_timeout=10,
                # A connect gives up after 5 s (asyncpg waits 60 by default), so a request
                # during an outage fails with SERVICE_UNAVAILABLE instead of hanging.
                connect_args={
                    "timeout": 5,
                    # asyncpg keeps statements prepared; a generic plan chosen while a table was
                    # small (e.g. early in an import) would otherwise stick as it grows.
                    "server_settings": {"plan_cache_mode": "force_custom_plan"},
                },
            )
            self.read_engine = self.write_engine

    @staticmethod
    def _sqlite_engine(url: str, busy_ms: int, begin: str | None, size: int) -> AsyncEngine:
        # aiosqlite with one thread hand-over per statement (persistence/sqlite_driver.py).
        parsed = make_url(url)
        if sqlite_driver.AVAILABLE and parsed.get_driver_name() == "aiosqlite":
            parsed = parsed.set(drivername=f"sqlite+{sqlite_driver.DRIVER}")
        engine = create_async_engine(parsed, **_JSON, pool_size=size, max_overflow=0)

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        if begin is not None:

            @event.listens_for(engine.sync_engine, "begin")
            def _begin(conn: Any) -> None:
                conn.exec_driver_sql(begin)

        return engine

    def uow(self, actor: Principal | None = None) -> SqlUnitOfWork:
        """A new unit of work (write transaction); `actor` is who the audit log names."""
        return SqlUnitOfWork(self, actor)

    def read(self) -> AbstractAsyncContextManager[Repositories]:
        """Repositories on a pooled connection for reading, outside any write transaction."""
        return self._read()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Repositories]:
        try:
            async with self.read_engine.connect() as conn:
                yield Repositories(conn)
        except ServiceUnavailable:
            raise
        except Exception as e:
            if is_unavailable(e):
                raise _unavailable(e) from e
            raise

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def checkpoint_soon(self) -> None:
        """Checkpoint the WAL (PASSIVE: it never blocks a writer or reader) in the background,
        on a connection of the read pool; one at a time, once more if asked while running."""
        if self._checkpoint is not None and not self._checkpoint.done():
            self._checkpoint_again = True
            return
        self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoints())

    async def _run_checkpoints(self) -> None:
        again = True
        while again:
            self._checkpoint_again = False
            with suppress(Exception):  # the next commit's automatic checkpoint still runs
                async with self.read_engine.connect() as conn:
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            again = self._checkpoint_again

    async def checkpointed(self) -> None:
        """Wait for a background checkpoint (checkpoint_soon) that is running, if any."""
        if self._checkpoint is not None:
            await asyncio.wait({self._checkpoint})

    async def dispose(self) -> None:
        await self.checkpointed()
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()

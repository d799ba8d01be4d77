"""The audit log in storage: entries written in the caller's transaction, read newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, Table, bindparam, cast, func, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.audit import Actor, AuditEntityType, AuditEntry, AuditFilter
from domain.pagination import Page, PageRequest
from persistence import tables as t
from persistence.listing import Criterion, Listing

_C = t.audit_log.c


async def unused_id(conn: AsyncConnection, table: Table, entity: AuditEntityType) -> dict[str, int]:
    """The id for a new audited record on SQLite: past both the table's largest id and every
    id the audit log names for this kind of record. SQLite hands out max(rowid) + 1, so once
    the newest record is deleted its id would come back and the audit log would mix the two
    records' histories. ({} on PostgreSQL: its sequences never hand an id out twice.)"""
    if conn.dialect.name != "sqlite":
        return {}
    a = t.audit_log.c
    audited = (
        select(func.max(cast(a.entity_id, Integer)))
        .where(a.entity_type == entity.value)
        .scalar_subquery()
    )
    newest = select(func.max(table.c.id)).scalar_subquery()
    top = await conn.scalar(select(func.max(func.coalesce(newest, 0), func.coalesce(audited, 0))))
    return {"id": int(top or 0) + 1}


async def insert_audited(
    conn: AsyncConnection, table: Table, row: dict[str, Any], entity: AuditEntityType
) -> int:
    """Insert an audited record (its `row` without id) under an id never used for one of its
    kind (see unused_id); returns the id."""
    stmt = insert(table).values({**row, **await unused_id(conn, table, entity)})
    return int(await conn.scalar(stmt.returning(table.c.id)))


def to_entry(r: Row[Any]) -> AuditEntry:
    return AuditEntry(
        action=r.action,
        entity_type=AuditEntityType(r.entity_type),
        entity_id=r.entity_id,
        actor=Actor(r.actor_key_id, r.actor_name, r.actor_role, r.actor_user_id),
        before=r.before_state,
        after=r.after_state,
        occurred_at=r.occurred_at,
        id=r.id,
    )


_ENTRIES = Listing[AuditFilter, AuditEntry](
    t.audit_log,
    {
        "type": Criterion(
            lambda f: None if f.entity_type is None else {"entity_type": f.entity_type.value},
            lambda: _C.entity_type == bindparam("entity_type"),
        ),
        "entity": Criterion(
            lambda f: None if f.entity_id is None else {"entity_id": f.entity_id},
            lambda: _C.entity_id == bindparam("entity_id"),
        ),
        "actor": Criterion(
            lambda f: None if f.actor_key_id is None else {"actor_key_id": f.actor_key_id},
            lambda: _C.actor_key_id == bindparam("actor_key_id"),
        ),
        "since": Criterion(
            lambda f: None if f.since is None else {"since": f.since},
            lambda: _C.occurred_at >= bindparam("since", type_=_C.occurred_at.type),
        ),
    },
    to_entry,
)


class AuditRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, entry: AuditEntry) -> None:
        await self.conn.execute(
            insert(t.audit_log).values(
                occurred_at=entry.occurred_at,
                action=entry.action,
                entity_type=entry.entity_type.value,
                entity_id=entry.entity_id,
                actor_key_id=entry.actor.key_id,
                actor_name=entry.actor.name,
                actor_role=entry.actor.role,
                actor_user_id=entry.actor.user_id,
                before_state=entry.before,
                after_state=entry.after,
            )
        )

    async def page(self, filter_: AuditFilter, page: PageRequest) -> Page[AuditEntry]:
        return await _ENTRIES.page(self.conn, filter_, page, sort="id")

    async def count(self, filter_: AuditFilter) -> int:
        return await _ENTRIES.count(self.conn, filter_)

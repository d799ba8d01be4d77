"""The outbox's shared flags (which transactions wrote lead events), and set-based event inserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, insert, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence import tables as t

# Set on a connection's info when a transaction writes events: the unit of work then wakes the
# relay after commit (persistence/relay.py). Every repository that writes lead events sets it.
EVENTS_WRITTEN = "leadflow.events_written"

# Set on a connection's info (True) while a SQLite unit of work holds it: that transaction is
# the only writer there is and positions its own events at commit (persistence/database.py), so
# set-based event inserts may give their events positions right away (insert_events).
SELF_POSITIONED = "leadflow.self_positioned"
# The highest position before this transaction positioned any event itself (set by
# insert_events, read at commit): the events after it are the ones this transaction wrote.
POSITIONED_AFTER = "leadflow.positioned_after"

_COLUMNS = ["lead_id", "type", "occurred_at", "payload"]


async def insert_events(conn: AsyncConnection, events: Select[Any], order: Any) -> None:
    """INSERT INTO lead_events (lead_id, type, occurred_at, payload) `events`, which must be
    ordered by `order` alone (unique per row), and set EVENTS_WRITTEN.

    In a SQLite unit of work the events get their positions in the same statement, in id
    order, instead of an UPDATE of every new event at commit: that UPDATE rewrote each row and
    two of its index entries again (a sixth of a publish of 100,000 leads). Events this
    transaction wrote earlier without one are positioned first, so positions still follow ids.
    """
    conn.info[EVENTS_WRITTEN] = True
    if not conn.info.get(SELF_POSITIONED):
        await conn.execute(insert(t.lead_events).from_select(_COLUMNS, events))
        return
    position = t.lead_events.c.position
    if POSITIONED_AFTER not in conn.info:
        conn.info[POSITIONED_AFTER] = int(await conn.scalar(select(func.max(position))) or 0)
    await conn.execute(POSITION_ALL)
    start = int(await conn.scalar(select(func.max(position))) or 0)
    numbered = events.add_columns(literal(start) + func.row_number().over(order_by=order))
    await conn.execute(insert(t.lead_events).from_select([*_COLUMNS, "position"], numbered))


# Gives every unpositioned event the next position, in id order (SQLite: cheap when there is
# none, through the partial index ix_lead_events_unpositioned). Starts with UPDATE (not WITH):
# Python's sqlite3 reports no rowcount for a WITH statement.
POSITION_ALL = text(
    """
    UPDATE lead_events SET position = todo.pos
    FROM (
        SELECT id,
               (SELECT coalesce(max(position), 0) FROM lead_events)
               + row_number() OVER (ORDER BY id) AS pos
        FROM lead_events WHERE position IS NULL ORDER BY id
    ) AS todo
    WHERE lead_events.id = todo.id
    """
)


# Set on a connection's info (True) by a SQLite transaction that writes a lot (a publish's
# re-scoring): its commit skips the automatic WAL checkpoint, which would copy every page it
# wrote into the database file before the commit returns; the unit of work turns automatic
# checkpoints back on right after and has a connection of the read pool checkpoint in the
# background instead (persistence/database.py).
CHECKPOINT_LATER = "leadflow.checkpoint_later"

"""Baseline for bench/work_list.py: the same work list and timeline rows as plain JSON.

A tiny Starlette app with GET /work?owner=ID (the owner's due sequence steps and open tasks,
oldest due first, 50 of them) and GET /timeline?lead=ID (the lead's 50 newest activities and
events). Each runs one hand-written SQL statement, built once, that returns every field the
GraphQL query of the benchmark asks for (joins instead of follow-up reads), through the same
driver and engine setup (persistence.database.Database's read engine).

    LEADFLOW_DATABASE_URL=... python -m uvicorn --factory --app-dir bench plain_work_app:app_factory
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import bindparam, cast, false, literal, null, select, text, union_all
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from persistence import tables as t
from persistence.database import Database

PAGE_SIZE = 50
_r, _l, _s, _a, _e = (
    t.sequence_runs.c,
    t.leads.c,
    t.sequences.c,
    t.activities.c,
    t.lead_events.c,
)
_OWNER = bindparam("owner", type_=_l.owner_id.type)
_NOW = bindparam("now", type_=t.UTCDateTime())
_LEAD = bindparam("lead", type_=_l.id.type)

# Each source ordered and cut to a page and one along its index, then merged: the plain SQL a
# person would write for "the first 50 of two sorted sources".
_TASKS = (
    select(
        literal("a").label("src"),
        _a.id,
        _a.occurred_at.label("at"),
        _a.lead_id,
        _a.kind,
        _a.subject,
    )
    .where(
        _a.owner_id == _OWNER,
        _a.kind == "TASK",
        _a.completed == false(),
        _a.occurred_at <= _NOW,
    )
    .order_by(_a.occurred_at, _a.id)
    .limit(PAGE_SIZE + 1)
    .subquery()
)
_STEPS = (
    select(
        literal("s").label("src"),
        _r.id,
        _r.due_at.label("at"),
        _r.lead_id,
        _r.step,
        _r.sequence_id,
    )
    .select_from(t.sequence_runs.join(t.leads, _l.id == _r.lead_id))
    .where(_l.owner_id == _OWNER, _l.state == "OPEN", text("sequence_runs.status = 'ACTIVE'"))
    .where(_r.due_at <= _NOW)
    .order_by(_r.due_at, _r.id)
    .limit(PAGE_SIZE + 1)
    .subquery()
)
_WORK_UNION = union_all(
    select(
        _TASKS.c.src,
        _TASKS.c.id,
        _TASKS.c.at,
        _TASKS.c.lead_id,
        _TASKS.c.kind,
        _TASKS.c.subject,
        cast(null(), _r.step.type).label("step"),
        cast(null(), _r.sequence_id.type).label("sequence_id"),
    ),
    select(
        _STEPS.c.src,
        _STEPS.c.id,
        _STEPS.c.at,
        _STEPS.c.lead_id,
        cast(null(), _a.kind.type).label("kind"),
        cast(null(), _a.subject.type).label("subject"),
        _STEPS.c.step,
        _STEPS.c.sequence_id,
    ),
).subquery()
_w = _WORK_UNION.c
_PAGE = select(_WORK_UNION).order_by(_w.at, _w.src, _w.id).limit(PAGE_SIZE + 1).subquery()
WORK = (
    select(_PAGE, _l.topic, _s.steps)
    .select_from(
        _PAGE.outerjoin(t.leads, _l.id == _PAGE.c.lead_id).outerjoin(
            t.sequences, _s.id == _PAGE.c.sequence_id
        )
    )
    .order_by(_PAGE.c.at, _PAGE.c.src, _PAGE.c.id)
)

_ACTIVITIES = (
    select(
        literal("a").label("src"),
        _a.id,
        _a.occurred_at.label("at"),
        _a.kind,
        _a.subject,
        _a.completed,
        cast(null(), _e.type.type).label("type"),
    )
    .where(_a.lead_id == _LEAD)
    .order_by(_a.occurred_at.desc(), _a.id.desc())
    .limit(PAGE_SIZE + 1)
    .subquery()
)
_EVENTS = (
    select(
        literal("e").label("src"),
        _e.id,
        _e.occurred_at.label("at"),
        cast(null(), _a.kind.type).label("kind"),
        cast(null(), _a.subject.type).label("subject"),
        cast(null(), _a.completed.type).label("completed"),
        _e.type,
    )
    .where(_e.lead_id == _LEAD, _e.position.is_not(None))
    .order_by(_e.occurred_at.desc(), _e.id.desc())
    .limit(PAGE_SIZE + 1)
    .subquery()
)
_TIMELINE_UNION = union_all(select(_ACTIVITIES), select(_EVENTS)).subquery()
_u = _TIMELINE_UNION.c
TIMELINE = (
    select(_TIMELINE_UNION).order_by(_u.at.desc(), _u.src.desc(), _u.id.desc()).limit(PAGE_SIZE + 1)
)


def create_app(database_url: str) -> Starlette:
    db = Database(database_url)

    async def work(request: Request) -> JSONResponse:
        owner = int(request.query_params["owner"])
        async with db.read_engine.connect() as conn:
            rows = (await conn.execute(WORK, {"owner": owner, "now": datetime.now(UTC)})).all()
        items = []
        for row in rows[:PAGE_SIZE]:
            item = {"dueAt": row.at.isoformat(), "lead": {"id": row.lead_id, "topic": row.topic}}
            if row.src == "s":
                step = row.steps[row.step]
                item["run"] = row.id
                item["step"] = {
                    "position": row.step + 1,
                    "kind": step["kind"],
                    "title": step["title"],
                }
            else:
                item["activity"] = {"id": row.id, "kind": row.kind, "subject": row.subject}
            items.append(item)
        return JSONResponse({"items": items, "hasNextPage": len(rows) > PAGE_SIZE})

    async def timeline(request: Request) -> JSONResponse:
        lead = int(request.query_params["lead"])
        async with db.read_engine.connect() as conn:
            rows = (await conn.execute(TIMELINE, {"lead": lead})).all()
        items = []
        for row in rows[:PAGE_SIZE]:
            item: dict[str, object] = {"at": row.at.isoformat()}
            if row.src == "a":
                item["activity"] = {
                    "id": row.id,
                    "kind": row.kind,
                    "subject": row.subject,
                    "completed": row.completed,
                }
            else:
                item["event"] = {"type": row.type}
            items.append(item)
        return JSONResponse({"items": items, "hasNextPage": len(rows) > PAGE_SIZE})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await db.dispose()

    routes = [Route("/work", work), Route("/timeline", timeline), Route("/healthz", healthz)]
    return Starlette(routes=routes, lifespan=lifespan)


def app_factory() -> Starlette:
    """Entry point for `uvicorn --factory`; the database comes from LEADFLOW_DATABASE_URL."""
    return create_app(os.environ["LEADFLOW_DATABASE_URL"])

"""Baseline for bench/leads_list.py: the same lead page as plain JSON, without GraphQL.

A tiny Starlette app exposing GET /leads?after=CURSOR. It runs the SQL the API's lead list runs
(newest first by created_at then id, keyset after a cursor, one row more than the page to know
whether another page follows) through the same driver and engine setup
(persistence.database.Database's read engine), and returns the page's rows as JSON. Its two
statements are built once, so it pays neither for building SQL nor for GraphQL per request.

    LEADFLOW_DATABASE_URL=... python -m uvicorn --factory --app-dir bench plain_app:app_factory
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import and_, bindparam, or_, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from domain.errors import Invalid
from domain.pagination import decode_cursor, encode_cursor
from persistence import tables as t
from persistence.database import Database

PAGE_SIZE = 50
_c = t.leads.c
# The ten fields the GraphQL benchmark asks for, under their GraphQL names.
COLUMNS = {
    "id": _c.id,
    "topic": _c.topic,
    "firstName": _c.first_name,
    "lastName": _c.last_name,
    "email": _c.email,
    "companyName": _c.company_name,
    "jobTitle": _c.job_title,
    "state": _c.state,
    "stage": _c.stage,
    "createdAt": _c.created_at,
}

_VALUE = bindparam("after_value", type_=_c.created_at.type)
_ID = bindparam("after_id", type_=_c.id.type)
_NEWEST_FIRST = (_c.created_at.desc(), _c.id.desc())
# Built once: a baseline should not pay for building and cache-keying a statement per request.
FIRST_PAGE = select(*COLUMNS.values()).order_by(*_NEWEST_FIRST).limit(PAGE_SIZE + 1)
# Strictly after the cursor; the predicate has the shape of the app's (repositories._after).
NEXT_PAGE = (
    select(*COLUMNS.values())
    .where(and_(_c.created_at <= _VALUE, or_(_c.created_at < _VALUE, _c.id < _ID)))
    .order_by(*_NEWEST_FIRST)
    .limit(PAGE_SIZE + 1)
)


def create_app(database_url: str) -> Starlette:
    db = Database(database_url)
    names = list(COLUMNS)

    async def leads(request: Request) -> JSONResponse:
        raw = request.query_params.get("after")
        try:
            after = decode_cursor(raw) if raw else None
        except Invalid as e:
            return JSONResponse({"error": e.message}, status_code=400)
        async with db.read_engine.connect() as conn:
            if after is None:
                rows = (await conn.execute(FIRST_PAGE)).all()
            else:
                params = {"after_value": after[0], "after_id": after[1]}
                rows = (await conn.execute(NEXT_PAGE, params)).all()
        has_next = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        items = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            item["createdAt"] = item["createdAt"].isoformat()
            items.append(item)
        end = encode_cursor(rows[-1].created_at, rows[-1].id) if rows else None
        return JSONResponse({"leads": items, "hasNextPage": has_next, "endCursor": end})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await db.dispose()

    return Starlette(routes=[Route("/leads", leads), Route("/healthz", healthz)], lifespan=lifespan)


def app_factory() -> Starlette:
    """Entry point for `uvicorn --factory`; the database comes from LEADFLOW_DATABASE_URL."""
    return create_app(os.environ["LEADFLOW_DATABASE_URL"])

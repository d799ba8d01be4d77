"""Reading many rows from SQLite as one: the rows packed into a JSON array by the database.

aiosqlite runs each statement on a thread of its own connection; its fetch steps through the
result row by row, and each row is one more hand-over of the interpreter lock between that thread
and the event loop's. While the loop is busy with other requests, those hand-overs (not the SQL)
are most of what a page of 50 rows costs: measured on a timeline page at 4 concurrent requests
(bench/work_list.py), the driver threads spent 0.97 ms of CPU per request reading rows one by one
and the server answered 400 requests/s; packed, 550/s. The packed statement returns one row, its
text parsed by orjson on the loop's thread.

Values come back as the plain rows would hold them: each column's SQLAlchemy result processor
(timestamps, flags, JSON) is applied to its JSON value, which is the column's stored value
(SQLite stores text, integers and reals; a statement with a real or blob column, whose JSON
form would not give it back exactly, is read as plain rows). Other databases read the plain rows.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

Processors = tuple[tuple[int, Callable[[Any], Any]], ...]

# Per statement kept alive elsewhere (the caller's cache of built statements), by its key.
_PACKED: dict[Hashable, tuple[Any, Processors, Any]] = {}
_PACKED_LIMIT = 256


def _pack(stmt: Any, dialect: Dialect) -> tuple[Any, Processors, Any]:
    """`stmt` as one JSON array of its rows (each an array of its columns, in order), the
    result processors of its columns by position, and a row class reading them by name."""
    columns = list(stmt.selected_columns)
    packed = None  # a column JSON would not give back exactly: the plain rows
    if not any(_inexact(c.type) for c in columns):
        packed = select(func.json_group_array(func.json_array(*stmt.subquery().c)))
    processors = (
        (i, c.type.dialect_impl(dialect).result_processor(dialect, None))
        for i, c in enumerate(columns)
    )
    row_class = _row_class(tuple(stmt.selected_columns.keys()))
    return packed, tuple((i, p) for i, p in processors if p), row_class


def _inexact(column_type: Any) -> bool:
    """Whether values of this type may not survive SQLite's JSON text exactly (reals: it
    writes 15 significant digits; blobs)."""
    impl = getattr(column_type, "impl_instance", column_type)
    try:
        python_type = impl.python_type
    except NotImplementedError:
        return False
    return python_type in (float, Decimal, bytes)


@lru_cache(maxsize=256)
def _row_class(keys: tuple[str, ...]) -> Any:
    """A list subclass that also answers its columns' names as attributes (as a Row does); a
    name wins over a list method of the same name (`count`, `index`)."""
    attributes: dict[str, Any] = {"__slots__": ()}
    for i, key in enumerate(keys):
        attributes.setdefault(key, property(itemgetter(i)))
    return type("PackedRow", (list,), attributes)


async def rows(
    conn: AsyncConnection,
    stmt: Any,
    params: dict[str, Any] | None = None,
    *,
    key: Hashable | None = None,
) -> list[Any]:
    """The rows of `stmt`: Row objects, or on SQLite lists of the same values in the same order
    (read by position or by column name). `key`: the statement is built once and kept by the
    caller under this key, so its packed form is kept too; without one it is packed anew."""
    if conn.dialect.name != "sqlite":
        return list((await conn.execute(stmt, params)).all())
    found = None if key is None else _PACKED.get((key, conn.dialect.name))
    if found is None:
        found = _pack(stmt, conn.dialect)
        if key is not None:
            if len(_PACKED) >= _PACKED_LIMIT:
                _PACKED.clear()
            _PACKED[key, conn.dialect.name] = found
    packed, processors, row_class = found
    if packed is None:
        return list((await conn.execute(stmt, params)).all())
    text = (await conn.execute(packed, params)).scalar_one()
    out = [row_class(values) for values in orjson.loads(text)]
    if processors:
        for row in out:
            for i, process in processors:
                row[i] = process(row[i])
    return out

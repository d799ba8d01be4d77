"""Filtered keyset pages of one table, each filter shape's statement built once and reused.

Building a SELECT with SQLAlchemy and computing its cache key costs more per request than
running it on a page of 50 rows. A `Listing` therefore describes its optional filters as
criteria with *named* parameters: a request picks the criteria it uses (its shape) and supplies
their values, and the statement for that shape, sort and cursor presence is built on first use
and executed with new parameter values ever after. The number of shapes is bounded by the
criteria, so the cache is too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import Invalid
from domain.pagination import Page, PageRequest

F = TypeVar("F")  # what a request filters by
T = TypeVar("T")  # the domain object of a row

Params = dict[str, Any]


def _fits(value: Any, sort_type: type | None) -> bool:
    """Whether a cursor's sort value can stand where a `sort_type` value sorts (None: any)."""
    if value is None or sort_type is None:
        return True
    if sort_type is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, sort_type) and not isinstance(value, bool)


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains_pattern(term: str) -> str:
    """The LIKE pattern of a case-insensitive substring search (see `contains`)."""
    return f"%{escape_like(term.strip().lower())}%"


def contains(column: Any, param: str) -> ColumnElement[bool]:
    """`column` contains the search bound to `param` (a `contains_pattern`), ignoring case."""
    return func.lower(column).like(bindparam(param), escape="\\")


@dataclass(frozen=True, slots=True)
class Criterion(Generic[F]):
    """An optional filter: its parameters taken from a request (None when unused) and its SQL."""

    params: Callable[[F], Params | None]
    sql: Callable[[], ColumnElement[bool]]


@dataclass(frozen=True, slots=True)
class Sort:
    """What a listing orders by: an expression, and the FROM clause it needs (None: the table)."""

    expression: Callable[[], tuple[Any, FromClause | None]]


class Listing(Generic[F, T]):
    """Keyset pages and counts of the rows of `table` that match a request's criteria."""

    def __init__(
        self,
        table: Table,
        criteria: Mapping[str, Criterion[F]],
        to_domain: Callable[[Row[Any]], T],
        sorts: Mapping[str, Sort] | None = None,
    ) -> None:
        self.table = table
        self.criteria = criteria
        self.to_domain = to_domain
        self.sorts = sorts or {}
        self._columns = list(table.c.keys())
        self._id_index = self._columns.index("id")
        self._statements: dict[Hashable, tuple[Select[Any], int]] = {}

    def _shape(self, request: F) -> tuple[tuple[str, ...], Params]:
        names: list[str] = []
        params: Params = {}
        for name, criterion in self.criteria.items():
            values = criterion.params(request)
            if values is not None:
                names.append(name)
                params.update(values)
        return tuple(names), params

    def _filtered(self, names: tuple[str, ...]) -> Select[Any]:
        return select(self.table).where(*(self.criteria[n].sql() for n in names))

    def _build(
        self, names: tuple[str, ...], sort_name: str, descending: bool, after: bool
    ) -> tuple[Select[Any], int, type | None]:
        stmt = self._filtered(names)
        sort = self.sorts.get(sort_name)
        if sort is None:  # a column of the table
            expr: Any = self.table.c[sort_name]
            key_index = self._columns.index(sort_name)
        else:
            expr, from_ = sort.expression()
            stmt = stmt.add_columns(expr.label("sort_key"))
            if from_ is not None:
                stmt = stmt.select_from(from_)
            key_index = len(self._columns)
        id_col = self.table.c.id
        if after:
            # Strictly after the cursor (sort value, id), written so an index range applies.
            value = bindparam("after_value", type_=expr.type)
            id_ = bindparam("after_id", type_=id_col.type)
            if descending:
                stmt = stmt.where(and_(expr <= value, or_(expr < value, id_col < id_)))
            else:
                stmt = stmt.where(and_(expr >= value, or_(expr > value, id_col > id_)))
        order = (expr.desc(), id_col.desc()) if descending else (expr.asc(), id_col.asc())
        limit = bindparam("page_limit", type_=Integer())
        try:  # a TypeDecorator (UTCDateTime) says `object`: its implementation knows
            sort_type: type | None = getattr(expr.type, "impl_instance", expr.type).python_type
        except NotImplementedError:
            sort_type = None
        if sort_type is object:
            sort_type = None
        return stmt.order_by(*order).limit(limit), key_index, sort_type

    def _statement(self, key: Hashable, build: Callable[[], Any]) -> Any:
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    async def page(
        self,
        conn: AsyncConnection,
        request: F,
        page: PageRequest,
        *,
        sort: str = "created_at",
        descending: bool = True,
        sort_params: Params | None = None,
    ) -> Page[T]:
        """One page after `page.after`, ordered by `sort` (a column or a named Sort), then id."""
        names, params = self._shape(request)
        after = page.after is not None
        stmt, key_index, sort_type = self._statement(
            (names, sort, descending, after),
            lambda: self._build(names, sort, descending, after),
        )
        if sort_params:
            params.update(sort_params)
        if page.after is not None:
            value = page.after[0]
            if not _fits(value, sort_type):  # a cursor of another list, or hand-made
                raise Invalid("this cursor does not belong to this list and order", ["after"])
            params["after_value"], params["after_id"] = page.after
        params["page_limit"] = page.first + 1
        rows = (await conn.execute(stmt, params)).all()
        has_next = len(rows) > page.first
        rows = rows[: page.first]
        id_index = self._id_index
        keys = [(r[key_index], r[id_index]) for r in rows]
        return Page([self.to_domain(r) for r in rows], keys, has_next)

    async def count(self, conn: AsyncConnection, request: F) -> int:
        """How many rows match the request."""
        names, params = self._shape(request)
        stmt = self._statement(
            ("count", names),
            lambda: select(func.count()).select_from(self._filtered(names).subquery()),
        )
        return int(await conn.scalar(stmt, params) or 0)

"""Repositories over one SQLAlchemy connection: SQL in, domain objects out."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    FromClause,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.audit import AuditEntityType
from domain.fields import CONTACT_FIELDS, LEAD_FIELDS, FieldSpec
from domain.lifecycle import ModelStatus
from domain.model import (
    Account,
    Contact,
    Feature,
    Lead,
    LeadSource,
    LeadStage,
    LeadState,
    LeadStatusReason,
    MatchEntity,
    MatchingStrategy,
)
from domain.pagination import Page, PageRequest
from domain.ports import LeadFilter, LeadOrder
from persistence import tables as t
from persistence.audit_repo import insert_audited
from persistence.listing import Criterion, Listing, Params, Sort, contains, contains_pattern
from persistence.outbox import insert_events
from persistence.tables import IdType

T = TypeVar("T")
_CHUNK = 500  # bound parameters per IN (...) list; SQLite allows 32766 in all


def upsert_insert(conn: AsyncConnection) -> Any:
    """The dialect's INSERT construct, which has ON CONFLICT clauses (SQLite and PostgreSQL)."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _values(record: Any, table: Table, skip: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.c:
        if col.key in skip or col.key == "name_key":
            continue
        value = getattr(record, col.key)
        out[col.key] = value.value if hasattr(value, "value") and col.key != "attributes" else value
    if table is t.accounts:
        out["name_key"] = record.name.lower()
    return out


def _column(table: Table, specs: Mapping[str, FieldSpec], field: str) -> Any:
    return table.c[specs[field].attr]


def _equals(table: Table, specs: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> Any:
    """Strategy comparison: emails and marketing contexts exactly, other text case-insensitively."""
    conds = []
    for name, value in values.items():
        col = _column(table, specs, name)
        if name in ("email", "marketingContext") or not isinstance(value, str):
            conds.append(col == value)
        else:
            conds.append(func.lower(col) == value.lower())
    return and_(*conds)


# ---------------------------------------------------------------- mapping


def _columns(table: Table, cls: type) -> Callable[[Row[Any]], tuple[Any, ...]]:
    """Read a `select(table)` row in the order of `cls`'s fields (by position: faster than names).

    The domain dataclasses name their fields after the columns, so the order comes from them.
    """
    keys = list(table.c.keys())
    return itemgetter(*(keys.index(f.name) for f in fields(cls)))


_ACCOUNT = _columns(t.accounts, Account)
_CONTACT = _columns(t.contacts, Contact)
_LEAD = _columns(t.leads, Lead)


def to_account(r: Row[Any]) -> Account:
    name, industry, employees, revenue, country, website, attrs, id_, created, updated = _ACCOUNT(r)
    return Account(
        name, industry, employees, revenue, country, website, attrs or {}, id_, created, updated
    )


def _prefixed_account(r: Row[Any]) -> Account:
    """The account in a row whose account columns are labelled a_<column>."""
    return Account(
        name=r.a_name,
        industry=r.a_industry,
        employee_count=r.a_employee_count,
        annual_revenue=r.a_annual_revenue,
        country=r.a_country,
        website=r.a_website,
        attributes=r.a_attributes or {},
        id=r.a_id,
        created_at=r.a_created_at,
        updated_at=r.a_updated_at,
    )


def to_contact(r: Row[Any]) -> Contact:
    first, last, email, phone, title, country, account_id, attrs, id_, created, updated = _CONTACT(
        r
    )
    return Contact(
        first, last, email, phone, title, country, account_id, attrs or {}, id_, created, updated
    )


# Plain dict lookups: calling Enum(value) per row is measurably slower on list pages.
_SOURCES = {e.value: e for e in LeadSource}
_STATES = {e.value: e for e in LeadState}
_REASONS = {e.value: e for e in LeadStatusReason}
_STAGES = {e.value: e for e in LeadStage}


def to_lead(r: Row[Any]) -> Lead:
    # Built positionally from the row (columns in the order of Lead's fields), then the enum
    # columns are turned into members.
    lead = Lead(*_LEAD(r))
    lead.source = _SOURCES[lead.source]  # type: ignore[index]
    lead.state = _STATES[lead.state]  # type: ignore[index]
    lead.status_reason = _REASONS[lead.status_reason]  # type: ignore[index]
    lead.stage = _STAGES[lead.stage]  # type: ignore[index]
    if lead.attributes is None:
        lead.attributes = {}
    return lead


_LEAD_ENUMS: dict[str, dict[str, Any]] = {
    "source": _SOURCES,
    "state": _STATES,
    "status_reason": _REASONS,
    "stage": _STAGES,
}


def partial_lead(names: Sequence[str], values: Sequence[Any]) -> Lead:
    """A Lead holding only the attributes `names` (columns of leads, with their decoded
    `values`): for a page whose query reads no more of its leads (api/projection.py). Its other
    attributes are unset, so reading one raises AttributeError rather than a wrong default."""
    lead = Lead.__new__(Lead)
    for name, value in zip(names, values, strict=True):
        enum = _LEAD_ENUMS.get(name)
        if enum is not None:
            value = enum[value]
        elif name == "attributes" and value is None:
            value = {}
        setattr(lead, name, value)
    return lead


def to_strategy(r: Row[Any]) -> MatchingStrategy:
    return MatchingStrategy(
        name=r.name,
        entity=MatchEntity(r.entity),
        fields=list(r.fields),
        form_ids=list(r.form_ids),
        is_default=r.is_default,
        id=r.id,
    )


# ---------------------------------------------------------------- lists


def _search(term: str | None) -> Params | None:
    return {"search": contains_pattern(term)} if term and term.strip() else None


_ACCOUNTS = Listing[str | None, Account](
    t.accounts,
    {"search": Criterion(_search, lambda: contains(t.accounts.c.name, "search"))},
    to_account,
)


def _contact_search() -> ColumnElement[bool]:
    c = t.contacts.c
    full = func.coalesce(c.first_name, "") + literal(" ") + func.coalesce(c.last_name, "")
    account_names = select(t.accounts.c.id).where(contains(t.accounts.c.name, "search"))
    return or_(
        contains(full, "search"), contains(c.email, "search"), c.account_id.in_(account_names)
    )


# A contact list request: (search, account id).
_CONTACTS = Listing[tuple[str | None, int | None], Contact](
    t.contacts,
    {
        "search": Criterion(lambda r: _search(r[0]), _contact_search),
        "account": Criterion(
            lambda r: None if r[1] is None else {"account_id": r[1]},
            lambda: t.contacts.c.account_id == bindparam("account_id"),
        ),
    },
    to_contact,
)


def _one_of(name: str, values: Sequence[Any] | None) -> Params | None:
    return {name: [v.value for v in values]} if values else None


def _equal(name: str, value: Any) -> Params | None:
    return None if value is None else {name: value}


def _in(column: Any, name: str) -> Callable[[], ColumnElement[bool]]:
    return lambda: column.in_(bindparam(name, expanding=True))


def _lead_search() -> ColumnElement[bool]:
    c = t.leads.c
    full = func.coalesce(c.first_name, "") + literal(" ") + func.coalesce(c.last_name, "")
    return or_(
        contains(full, "search"),
        contains(c.email, "search"),
        contains(c.company_name, "search"),
        contains(c.topic, "search"),
    )


def _min_score() -> ColumnElement[bool]:
    # An alias of its own: ordering by SCORE joins lead_scores in the outer query.
    s = t.lead_scores.alias("min_score").c
    return (
        select(s.lead_id)
        .where(
            s.lead_id == t.leads.c.id,
            s.scoring_model_id == bindparam("min_score_model"),
            s.score >= bindparam("min_score"),
        )
        .exists()
    )


def _score_sort() -> tuple[Any, FromClause]:
    # Leads the model has not scored sort as 0.
    scores = t.lead_scores
    joined = t.leads.outerjoin(
        scores,
        and_(
            scores.c.lead_id == t.leads.c.id,
            scores.c.scoring_model_id == bindparam("sort_model"),
        ),
    )
    return func.coalesce(scores.c.score, 0.0), joined


_lc = t.leads.c
_LEADS = Listing[LeadFilter, Lead](
    t.leads,
    {
        "state": Criterion(lambda f: _one_of("state", f.state), _in(_lc.state, "state")),
        "status_reason": Criterion(
            lambda f: _one_of("status_reason", f.status_reason),
            _in(_lc.status_reason, "status_reason"),
        ),
        "stage": Criterion(lambda f: _one_of("stage", f.stage), _in(_lc.stage, "stage")),
        "source": Criterion(lambda f: _one_of("source", f.source), _in(_lc.source, "source")),
        "sales_ready": Criterion(
            lambda f: _equal("sales_ready", f.sales_ready),
            lambda: _lc.sales_ready == bindparam("sales_ready"),
        ),
        "contact": Criterion(
            lambda f: _equal("contact_id", f.contact_id),
            lambda: _lc.contact_id == bindparam("contact_id"),
        ),
        "account": Criterion(
            lambda f: _equal("account_id", f.account_id),
            lambda: _lc.account_id == bindparam("account_id"),
        ),
        "created_after": Criterion(
            lambda f: _equal("created_after", f.created_after),
            lambda: _lc.created_at >= bindparam("created_after"),
        ),
        "created_before": Criterion(
            lambda f: _equal("created_before", f.created_before),
            lambda: _lc.created_at < bindparam("created_before"),
        ),
        "owner": Criterion(
            lambda f: _equal("owner_id", f.owner_id),
            lambda: _lc.owner_id == bindparam("owner_id"),
        ),
        "search": Criterion(lambda f: _search(f.search), _lead_search),
        "min_score": Criterion(
            lambda f: (
                None
                if f.min_score is None
                else {"min_score_model": f.min_score.scoring_model_id, "min_score": f.min_score.min}
            ),
            _min_score,
        ),
    },
    to_lead,
    sorts={"score": Sort(_score_sort)},
)


# ---------------------------------------------------------------- repositories


# Statements built once and reused with parameters: a statement built for each call is coerced
# and has its cache key computed again every time, a large part of a short request's CPU.


@cache
def _by_ids(table: Table, one: bool) -> Any:
    """SELECT * ... WHERE id IN :ids (or, for `one` id, id = :ids: an IN list is rendered
    anew for every execution), built once per table (every batch loader runs one)."""
    if one:
        where = table.c.id == bindparam("ids", type_=table.c.id.type)
    else:
        where = table.c.id.in_(bindparam("ids", expanding=True, type_=table.c.id.type))
    return select(table).where(where)


@cache
def insert_returning_id(table: Table) -> Any:
    """INSERT INTO table ... RETURNING id: its values come as parameters of the execution."""
    return insert(table).returning(table.c.id)


@cache
def update_by_id(table: Table) -> Any:
    """UPDATE table SET <the parameters' columns> WHERE id = :_id."""
    return update(table).where(table.c.id == bindparam("_id", type_=table.c.id.type))


def _in_list(name: str) -> Any:
    """A bound IN list (one statement for any number of values)."""
    return bindparam(name, expanding=True)


# Contacts with their accounts' columns (prefixed a_), by contact ids.
_CONTACTS_WITH_ACCOUNTS = (
    select(t.contacts, *[col.label(f"a_{col.key}") for col in t.accounts.c])
    .outerjoin(t.accounts, t.accounts.c.id == t.contacts.c.account_id)
    .where(t.contacts.c.id.in_(_in_list("ids")))
)

# The leads of :contacts, and the contactless leads of their accounts.
_OF_CONTACTS = or_(
    t.leads.c.contact_id.in_(_in_list("contacts")),
    and_(
        t.leads.c.contact_id.is_(None),
        t.leads.c.account_id.in_(
            select(t.contacts.c.account_id)
            .where(t.contacts.c.id.in_(_in_list("contacts")), t.contacts.c.account_id.is_not(None))
            .scalar_subquery()
        ),
    ),
)
_LEAD_IDS_OF_CONTACTS = select(t.leads.c.id).where(_OF_CONTACTS).order_by(t.leads.c.id)
# The same leads whole, locked in id order.
_LEADS_OF_CONTACTS = select(t.leads).where(_OF_CONTACTS).order_by(t.leads.c.id).with_for_update()


class _Repo:
    table: Table

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _rows_by_ids(self, ids: Sequence[int]) -> list[Row[Any]]:
        rows: list[Row[Any]] = []
        unique = sorted(set(ids))
        if len(unique) == 1:
            stmt = _by_ids(self.table, True)
            return list((await self.conn.execute(stmt, {"ids": unique[0]})).all())
        stmt = _by_ids(self.table, False)
        for i in range(0, len(unique), _CHUNK):
            part = unique[i : i + _CHUNK]
            rows.extend((await self.conn.execute(stmt, {"ids": part})).all())
        return rows

    async def _insert(self, record: Any) -> None:
        values = _values(record, self.table)
        record.id = int(await self.conn.scalar(insert_returning_id(self.table), values))

    async def _insert_many(self, records: Sequence[Any]) -> None:
        if records:
            await self.conn.execute(insert(self.table), [_values(r, self.table) for r in records])

    async def _save(self, record: Any) -> None:
        values = {"_id": record.id, **_values(record, self.table)}
        await self.conn.execute(update_by_id(self.table), values)

    async def _save_many(self, records: Sequence[Any]) -> None:
        if not records:
            return
        params = [{"_id": r.id, **_values(r, self.table)} for r in records]
        await self.conn.execute(update_by_id(self.table), params)

    async def _find_many(
        self, specs: Mapping[str, FieldSpec], field: str, values: Sequence[Any], extra: Any = None
    ) -> list[Row[Any]]:
        col = _column(self.table, specs, field)
        exact = field in ("email", "marketingContext")
        target = col if exact else func.lower(col)
        rows: list[Row[Any]] = []
        wanted = sorted({v if exact or not isinstance(v, str) else v.lower() for v in values})
        for i in range(0, len(wanted), _CHUNK):
            stmt = select(self.table).where(target.in_(wanted[i : i + _CHUNK]))
            if extra is not None:
                stmt = stmt.where(extra)
            rows.extend((await self.conn.execute(stmt.order_by(self.table.c.id))).all())
        return rows


class AccountRepository(_Repo):
    table = t.accounts

    async def get(self, id_: int) -> Account | None:
        row = (await self.conn.execute(select(self.table).where(self.table.c.id == id_))).first()
        return to_account(row) if row else None

    async def get_for_update(self, id_: int) -> Account | None:
        stmt = select(self.table).where(self.table.c.id == id_).with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return to_account(row) if row else None

    async def get_many(self, ids: Sequence[int]) -> dict[int, Account]:
        return {r.id: to_account(r) for r in await self._rows_by_ids(ids)}

    async def add(self, account: Account) -> Account:
        await self._insert(account)
        return account

    async def add_many(self, accounts: Sequence[Account]) -> None:
        await self._insert_many(accounts)

    async def save(self, account: Account) -> None:
        await self._save(account)

    async def save_many(self, accounts: Sequence[Account]) -> None:
        await self._save_many(accounts)

    async def find_by_names(self, names: Sequence[str]) -> dict[str, Account]:
        keys = sorted({n.lower() for n in names})
        found: dict[str, Account] = {}
        for i in range(0, len(keys), _CHUNK):
            stmt = (
                select(self.table)
                .where(self.table.c.name_key.in_(keys[i : i + _CHUNK]))
                .order_by(self.table.c.id.desc())
            )
            for r in (await self.conn.execute(stmt)).all():
                found[r.name_key] = to_account(r)  # the oldest wins: ids descend
        return found

    async def list(self, search: str | None, page: PageRequest) -> Page[Account]:
        return await _ACCOUNTS.page(self.conn, search, page)

    async def count(self, search: str | None) -> int:
        return await _ACCOUNTS.count(self.conn, search)


class ContactRepository(_Repo):
    table = t.contacts

    async def get(self, id_: int) -> Contact | None:
        row = (await self.conn.execute(select(self.table).where(self.table.c.id == id_))).first()
        return to_contact(row) if row else None

    async def get_for_update(self, id_: int) -> Contact | None:
        stmt = select(self.table).where(self.table.c.id == id_).with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return to_contact(row) if row else None

    async def get_many(self, ids: Sequence[int]) -> dict[int, Contact]:
        return {r.id: to_contact(r) for r in await self._rows_by_ids(ids)}

    async def get_many_with_accounts(
        self, ids: Sequence[int]
    ) -> tuple[dict[int, Contact], dict[int, Account]]:
        contacts: dict[int, Contact] = {}
        accounts: dict[int, Account] = {}
        unique = sorted(set(ids))
        for i in range(0, len(unique), _CHUNK):
            part = {"ids": unique[i : i + _CHUNK]}
            for r in (await self.conn.execute(_CONTACTS_WITH_ACCOUNTS, part)).all():
                contacts[r.id] = to_contact(r)
                if r.a_id is not None and r.a_id not in accounts:
                    accounts[r.a_id] = _prefixed_account(r)
        return contacts, accounts

    async def add(self, contact: Contact) -> tuple[Contact, bool]:
        if contact.email is None:
            await self._insert(contact)
            return contact, True
        # Insert unless the email exists; the unique index settles concurrent inserts.
        values = _values(contact, self.table)
        stmt = (
            upsert_insert(self.conn)(self.table)
            .values(values)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(self.table.c.id)
        )
        new_id = await self.conn.scalar(stmt)
        if new_id is not None:
            contact.id = int(new_id)
            return contact, True
        row = (
            await self.conn.execute(select(self.table).where(self.table.c.email == contact.email))
        ).one()
        return to_contact(row), False

    async def add_many(self, contacts: Sequence[Contact]) -> None:
        await self._insert_many(contacts)

    async def save(self, contact: Contact) -> None:
        await self._save(contact)

    async def save_many(self, contacts: Sequence[Contact]) -> None:
        await self._save_many(contacts)

    async def find(self, values: Mapping[str, Any]) -> Contact | None:
        stmt = (
            select(self.table)
            .where(_equals(self.table, CONTACT_FIELDS, values))
            .order_by(self.table.c.id)
            .limit(1)
            .with_for_update()
        )
        row = (await self.conn.execute(stmt)).first()
        return to_contact(row) if row else None

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Contact]:
        return [to_contact(r) for r in await self._find_many(CONTACT_FIELDS, field, values)]

    async def email_taken(self, email: str, except_id: int | None = None) -> bool:
        stmt = select(self.table.c.id).where(self.table.c.email == email)
        if except_id is not None:
            stmt = stmt.where(self.table.c.id != except_id)
        return (await self.conn.scalar(stmt.limit(1))) is not None

    async def list(
        self, search: str | None, account_id: int | None, page: PageRequest
    ) -> Page[Contact]:
        return await _CONTACTS.page(self.conn, (search, account_id), page)

    async def count(self, search: str | None, account_id: int | None) -> int:
        return await _CONTACTS.count(self.conn, (search, account_id))


# The leads follow_process moves, with what their STAGE_CHANGED events say (a temporary table,
# created and dropped by each call, in its transaction).
_MOVES = Table(
    "lf_process_moves",
    MetaData(),
    # INTEGER PRIMARY KEY on SQLite: the rowid, so no separate index to fill.
    Column("lead_id", IdType, primary_key=True, autoincrement=False),
    Column("previous_stage", String(64), nullable=False),
    Column("status_reason", String(32), nullable=False),
    Column("sales_ready", Boolean, nullable=False),
    # Moves to automated marketing qualification first (its first points).
    Column("first", Boolean, nullable=False),
    # Moves to sales acceptance (it became sales-ready).
    Column("to_acceptance", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)


class LeadRepository(_Repo):
    table = t.leads

    async def get(self, id_: int) -> Lead | None:
        row = (await self.conn.execute(select(self.table).where(self.table.c.id == id_))).first()
        return to_lead(row) if row else None

    async def get_for_update(self, id_: int) -> Lead | None:
        stmt = select(self.table).where(self.table.c.id == id_).with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return to_lead(row) if row else None

    async def get_many(self, ids: Sequence[int]) -> dict[int, Lead]:
        return {r.id: to_lead(r) for r in await self._rows_by_ids(ids)}

    async def add(self, lead: Lead) -> Lead:
        await self._insert(lead)
        return lead

    async def add_many(self, leads: Sequence[Lead]) -> None:
        """Insert in bulk; each lead gets its id (needed to score imported leads)."""
        if not leads:
            return
        stmt = insert(self.table).returning(self.table.c.id, sort_by_parameter_order=True)
        result = await self.conn.execute(stmt, [_values(lead, self.table) for lead in leads])
        for lead, row in zip(leads, result.all(), strict=True):
            lead.id = int(row.id)

    async def save(self, lead: Lead) -> None:
        await self._save(lead)

    async def save_many(self, leads: Sequence[Lead]) -> None:
        await self._save_many(leads)

    async def find(self, values: Mapping[str, Any]) -> Lead | None:
        stmt = (
            select(self.table)
            .where(_equals(self.table, LEAD_FIELDS, values))
            .where(self.table.c.state == LeadState.OPEN.value)
            .order_by(self.table.c.id)
            .limit(1)
            .with_for_update()
        )
        row = (await self.conn.execute(stmt)).first()
        return to_lead(row) if row else None

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Lead]:
        is_open = self.table.c.state == LeadState.OPEN.value
        return [to_lead(r) for r in await self._find_many(LEAD_FIELDS, field, values, is_open)]

    async def list(self, filter_: LeadFilter, order: LeadOrder, page: PageRequest) -> Page[Lead]:
        sort = {"SCORE": "score", "UPDATED_AT": "updated_at"}.get(order.field, "created_at")
        return await _LEADS.page(
            self.conn,
            filter_,
            page,
            sort=sort,
            descending=order.descending,
            sort_params={"sort_model": order.scoring_model_id} if sort == "score" else None,
        )

    async def ids_for_contacts(self, contact_ids: Sequence[int]) -> Sequence[int]:
        rows = await self.conn.execute(_LEAD_IDS_OF_CONTACTS, {"contacts": list(contact_ids)})
        return [r.id for r in rows.all()]

    async def lock_and_get(self, ids: Sequence[int]) -> Sequence[Lead]:
        unique = sorted(set(ids))
        leads: list[Lead] = []
        for i in range(0, len(unique), _CHUNK):
            stmt = select(self.table).where(self.table.c.id.in_(unique[i : i + _CHUNK]))
            rows = await self.conn.execute(stmt.order_by(self.table.c.id).with_for_update())
            leads.extend(to_lead(r) for r in rows.all())
        return leads

    async def lock_for_contacts(self, contact_ids: Sequence[int]) -> Sequence[Lead]:
        # One statement instead of ids_for_contacts + lock_and_get: PostgreSQL locks the rows
        # in the order they are returned (LockRows sits above the sort), so in id order.
        rows = await self.conn.execute(_LEADS_OF_CONTACTS, {"contacts": sorted(set(contact_ids))})
        return [to_lead(r) for r in rows.all()]

    async def lock_many(self, ids: Sequence[int]) -> None:
        unique = sorted(set(ids))
        for i in range(0, len(unique), _CHUNK):
            part = unique[i : i + _CHUNK]
            stmt = select(self.table.c.id).where(self.table.c.id.in_(part))
            await self.conn.execute(stmt.order_by(self.table.c.id).with_for_update())

    async def ids_for_account(self, account_id: int) -> Sequence[int]:
        c = self.table.c
        members = select(t.contacts.c.id).where(t.contacts.c.account_id == account_id)
        stmt = select(c.id).where(
            or_(c.account_id == account_id, c.contact_id.in_(members.scalar_subquery()))
        )
        return [r.id for r in (await self.conn.execute(stmt.order_by(c.id))).all()]

    async def count(self, filter_: LeadFilter) -> int:
        return await _LEADS.count(self.conn, filter_)

    async def ready_to_assign(self, lead_ids: Sequence[int] | None) -> Sequence[Lead]:
        """OPEN, sales-ready leads without an owner, among `lead_ids` (or all), in id order."""
        c = t.leads.c
        waiting = and_(c.sales_ready, c.owner_id.is_(None), c.state == LeadState.OPEN.value)
        if lead_ids is None:
            stmt = select(t.leads).where(waiting).order_by(c.id)
            return [to_lead(r) for r in (await self.conn.execute(stmt)).all()]
        unique = sorted(set(lead_ids))
        found: builtins.list[Lead] = []
        for i in range(0, len(unique), _CHUNK):
            stmt = select(t.leads).where(waiting, c.id.in_(unique[i : i + _CHUNK]))
            found += [to_lead(r) for r in (await self.conn.execute(stmt.order_by(c.id))).all()]
        return found

    async def follow_process(
        self,
        lead_ids: Sequence[int] | None,
        now: datetime,
        scored_by: int | None = None,
        first_scores: bool = False,
    ) -> None:
        """The automatic stage moves of domain.sales, set-based, with STAGE_CHANGED events.

        For these leads (or all): an OPEN lead in INQUIRY with points from a LIVE scoring model
        whose points changed in this operation (a SCORE_CHANGED at `now`) moves to automated
        marketing qualification; then an OPEN lead that became sales-ready in it (a SALES_READY
        at `now`) and is before sales acceptance moves there. Forward only, as `first_scored`
        and `follow_checkboxes` say; a lead nothing happened to keeps a stage set by hand.
        `scored_by` (after one model's publish, when only its scores changed) limits both moves
        to the leads that model scored, which spares a scan of every lead's scores; with
        `first_scores` (its first publish: it had no scores before) every lead it gave points
        had a SCORE_CHANGED, so that is not looked up.

        One pass over the leads finds the moving ones (with what their events say) and puts
        them in a temporary table; the events and the one UPDATE per lead are written from it,
        so the leads are read once and each moving row is written once, whatever its moves.
        """
        c = t.leads.c
        s = t.lead_scores.c
        stages = list(LeadStage)
        earlier = [st.value for st in stages[: stages.index(LeadStage.SALES_ACCEPTANCE)]]
        inquiry = c.stage == LeadStage.INQUIRY.value
        source: FromClause = t.leads
        e, at = t.lead_events.c, literal(now, t.UTCDateTime())

        def happened(type_: str) -> Any:  # by ix_lead_events_lead_time: (lead, time) seeks
            return exists().where(e.lead_id == c.id, e.occurred_at == at, e.type == type_)

        if scored_by is None:
            live = select(t.scoring_models.c.id).where(
                t.scoring_models.c.status == ModelStatus.LIVE.value
            )
            points: Any = exists().where(
                s.lead_id == c.id, s.score != 0, s.scoring_model_id.in_(live.scalar_subquery())
            )
        else:
            # Only the leads this model scored (the join), with points from it. `+ 0` keeps
            # SQLite from driving the join by ix_lead_scores_model_score, which visits the
            # leads in score order (a random read per lead once they outgrow the page cache):
            # the leads are scanned in id order and their scores looked up by lead.
            source = t.leads.join(
                t.lead_scores, and_(s.lead_id == c.id, s.scoring_model_id + 0 == scored_by)
            )
            points = s.score != 0
        # to automated marketing qualification, and to sales acceptance
        changed = true() if scored_by is not None and first_scores else happened("SCORE_CHANGED")
        first = and_(inquiry, points, changed)
        ready = and_(c.sales_ready, c.stage.in_(earlier), happened("SALES_READY"))
        conn = self.conn
        await conn.run_sync(lambda sc: _MOVES.drop(sc, checkfirst=True))
        await conn.run_sync(_MOVES.create)
        parts = (
            [None]
            if lead_ids is None
            else [
                sorted(set(lead_ids))[i : i + _CHUNK] for i in range(0, len(set(lead_ids)), _CHUNK)
            ]
        )
        moving = 0
        for part in parts:
            # The first term only reads the lead: its rows are filtered before the scores are
            # looked at (after a model's publish, most leads are past inquiry already).
            where = and_(
                c.state == LeadState.OPEN.value,
                or_(inquiry, and_(c.sales_ready, c.stage.in_(earlier))),
                or_(first, ready),
            )
            if part is not None:
                where = and_(c.id.in_(part), where)
            found = select(
                c.id,
                c.stage,
                c.status_reason,
                c.sales_ready,
                case((first, True), else_=False),
                case((ready, True), else_=False),
            ).select_from(source)
            done = await conn.execute(
                insert(_MOVES).from_select(
                    [
                        "lead_id",
                        "previous_stage",
                        "status_reason",
                        "sales_ready",
                        "first",
                        "to_acceptance",
                    ],
                    found.where(where),
                )
            )
            moving += done.rowcount or 0
        if moving:
            await self._move(now)
        await conn.run_sync(_MOVES.drop)

    async def _move(self, now: datetime) -> None:
        """The STAGE_CHANGED events of the leads in _MOVES (each lead's in order), then their
        stage: sales acceptance for those that became sales-ready, else automated marketing
        qualification."""
        conn = self.conn
        m = _MOVES.c
        amq = LeadStage.AUTOMATED_MARKETING_QUALIFICATION.value
        sa = LeadStage.SALES_ACCEPTANCE.value
        obj = func.jsonb_build_object if conn.dialect.name == "postgresql" else func.json_object
        at = literal(now, t.UTCDateTime())
        for stage, previous, which in (
            (amq, m.previous_stage, m.first),
            (sa, case((m.first, amq), else_=m.previous_stage), m.to_acceptance),
        ):
            payload = obj(
                "stage",
                literal(stage),
                "previousStage",
                previous,
                "statusReason",
                m.status_reason,
                "salesReady",
                m.sales_ready,
            )
            events = select(m.lead_id, literal("STAGE_CHANGED"), at, payload).where(which)
            await insert_events(conn, events.order_by(m.lead_id), m.lead_id)
        await conn.execute(
            update(t.leads)
            .where(t.leads.c.id == m.lead_id)
            .values(stage=case((m.to_acceptance, sa), else_=amq), updated_at=now)
        )


class MatchingStrategyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.matching_strategies

    def _row(self, s: MatchingStrategy) -> dict[str, Any]:
        return {
            "name": s.name,
            "entity": s.entity.value,
            "fields": list(s.fields),
            "form_ids": list(s.form_ids),
            "is_default": s.is_default,
        }

    async def get(self, id_: int) -> MatchingStrategy | None:
        row = (await self.conn.execute(select(self.table).where(self.table.c.id == id_))).first()
        return to_strategy(row) if row else None

    async def list(self, entity: MatchEntity | None = None) -> list[MatchingStrategy]:
        stmt = select(self.table).order_by(self.table.c.id)
        if entity is not None:
            stmt = stmt.where(self.table.c.entity == entity.value)
        return [to_strategy(r) for r in (await self.conn.execute(stmt)).all()]

    async def add(self, strategy: MatchingStrategy) -> MatchingStrategy:
        strategy.id = await insert_audited(
            self.conn, self.table, self._row(strategy), AuditEntityType.MATCHING_STRATEGY
        )
        return strategy

    async def save(self, strategy: MatchingStrategy) -> None:
        stmt = update(self.table).where(self.table.c.id == strategy.id).values(self._row(strategy))
        await self.conn.execute(stmt)

    async def delete(self, id_: int) -> None:
        await self.conn.execute(delete(self.table).where(self.table.c.id == id_))


class SettingsRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def feature_enabled(self, feature: Feature) -> bool:
        key = f"feature.{feature.value}"
        value = await self.conn.scalar(select(t.settings.c.value).where(t.settings.c.key == key))
        return bool(value)

    async def set_feature(self, feature: Feature, enabled: bool) -> None:
        key = f"feature.{feature.value}"
        done = await self.conn.execute(
            update(t.settings).where(t.settings.c.key == key).values(value=enabled)
        )
        if not done.rowcount:
            await self.conn.execute(insert(t.settings).values(key=key, value=enabled))

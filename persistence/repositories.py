"""Repositories over one SQLAlchemy connection: SQL in, domain objects out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.fields import CONTACT_FIELDS, LEAD_FIELDS, FieldSpec
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

T = TypeVar("T")
_CHUNK = 500  # bound parameters per IN (...) list; SQLite allows 32766 in all


def upsert_insert(conn: AsyncConnection) -> Any:
    """The dialect's INSERT construct, which has ON CONFLICT clauses (SQLite and PostgreSQL)."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: Any, term: str) -> ColumnElement[bool]:
    pattern = f"%{_escape_like(term.strip().lower())}%"
    return func.lower(column).like(pattern, escape="\\")


def _after(sort: Any, id_col: Any, after: tuple[Any, int], descending: bool) -> Any:
    """Rows strictly after the cursor (sort value, id), written so an index range applies."""
    value, id_ = after
    v = bindparam(None, value, type_=sort.type)
    if descending:
        return and_(sort <= v, or_(sort < v, id_col < id_))
    return and_(sort >= v, or_(sort > v, id_col > id_))


async def _page(
    conn: AsyncConnection,
    stmt: Select[Any],
    table: Table,
    sort: Any,
    descending: bool,
    page: PageRequest,
    to_domain: Callable[[Row[Any]], T],
    key: str | None = None,
) -> Page[T]:
    """One page by keyset on (sort, id); `key` names the sort column in rows when it is labelled."""
    id_col = table.c.id
    if page.after is not None:
        stmt = stmt.where(_after(sort, id_col, page.after, descending))
    order = (sort.desc(), id_col.desc()) if descending else (sort.asc(), id_col.asc())
    rows = (await conn.execute(stmt.order_by(*order).limit(page.first + 1))).all()
    has_next = len(rows) > page.first
    rows = rows[: page.first]
    items = [to_domain(r) for r in rows]
    keys = [(r._mapping[key or sort.key], r.id) for r in rows]
    return Page(items, keys, has_next)


async def _count(conn: AsyncConnection, stmt: Select[Any]) -> int:
    total = await conn.scalar(select(func.count()).select_from(stmt.subquery()))
    return int(total or 0)


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


def to_account(r: Row[Any]) -> Account:
    return Account(
        name=r.name,
        industry=r.industry,
        employee_count=r.employee_count,
        annual_revenue=r.annual_revenue,
        country=r.country,
        website=r.website,
        attributes=r.attributes or {},
        id=r.id,
        created_at=r.created_at,
        updated_at=r.updated_at,
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
    return Contact(
        first_name=r.first_name,
        last_name=r.last_name,
        email=r.email,
        phone=r.phone,
        job_title=r.job_title,
        country=r.country,
        account_id=r.account_id,
        attributes=r.attributes or {},
        id=r.id,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


# Plain dict lookups: calling Enum(value) per row is measurably slower on list pages.
_SOURCES = {e.value: e for e in LeadSource}
_STATES = {e.value: e for e in LeadState}
_REASONS = {e.value: e for e in LeadStatusReason}
_STAGES = {e.value: e for e in LeadStage}


def to_lead(r: Row[Any]) -> Lead:
    return Lead(
        topic=r.topic,
        first_name=r.first_name,
        last_name=r.last_name,
        email=r.email,
        company_name=r.company_name,
        job_title=r.job_title,
        phone=r.phone,
        attributes=r.attributes or {},
        contact_id=r.contact_id,
        account_id=r.account_id,
        marketing_context=r.marketing_context,
        source=_SOURCES[r.source],
        state=_STATES[r.state],
        status_reason=_REASONS[r.status_reason],
        sales_ready=r.sales_ready,
        stage=_STAGES[r.stage],
        id=r.id,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def to_strategy(r: Row[Any]) -> MatchingStrategy:
    return MatchingStrategy(
        name=r.name,
        entity=MatchEntity(r.entity),
        fields=list(r.fields),
        form_ids=list(r.form_ids),
        is_default=r.is_default,
        id=r.id,
    )


# ---------------------------------------------------------------- repositories


class _Repo:
    table: Table

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _rows_by_ids(self, ids: Sequence[int]) -> list[Row[Any]]:
        rows: list[Row[Any]] = []
        unique = sorted(set(ids))
        for i in range(0, len(unique), _CHUNK):
            part = unique[i : i + _CHUNK]
            rows.extend(
                (await self.conn.execute(select(self.table).where(self.table.c.id.in_(part)))).all()
            )
        return rows

    async def _insert(self, record: Any) -> None:
        new_id = await self.conn.scalar(
            insert(self.table).values(_values(record, self.table)).returning(self.table.c.id)
        )
        record.id = int(new_id)

    async def _insert_many(self, records: Sequence[Any]) -> None:
        if records:
            await self.conn.execute(insert(self.table), [_values(r, self.table) for r in records])

    async def _save(self, record: Any) -> None:
        await self.conn.execute(
            update(self.table)
            .where(self.table.c.id == record.id)
            .values(_values(record, self.table))
        )

    async def _save_many(self, records: Sequence[Any]) -> None:
        if not records:
            return
        params = [{"_id": r.id, **_values(r, self.table)} for r in records]
        cols: dict[str, Any] = {k: bindparam(k) for k in params[0] if k != "_id"}
        stmt = update(self.table).where(self.table.c.id == bindparam("_id")).values(cols)
        await self.conn.execute(stmt, params)

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

    def _filtered(self, search: str | None) -> Select[Any]:
        stmt = select(self.table)
        if search and search.strip():
            stmt = stmt.where(_contains(self.table.c.name, search))
        return stmt

    async def list(self, search: str | None, page: PageRequest) -> Page[Account]:
        stmt = self._filtered(search)
        return await _page(
            self.conn, stmt, self.table, self.table.c.created_at, True, page, to_account
        )

    async def count(self, search: str | None) -> int:
        return await _count(self.conn, self._filtered(search))


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
        a = t.accounts
        account_columns = [col.label(f"a_{col.key}") for col in a.c]
        unique = sorted(set(ids))
        for i in range(0, len(unique), _CHUNK):
            stmt = (
                select(self.table, *account_columns)
                .outerjoin(a, a.c.id == self.table.c.account_id)
                .where(self.table.c.id.in_(unique[i : i + _CHUNK]))
            )
            for r in (await self.conn.execute(stmt)).all():
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

    def _filtered(self, search: str | None, account_id: int | None) -> Select[Any]:
        c = self.table.c
        stmt = select(self.table)
        if search and search.strip():
            full = func.coalesce(c.first_name, "") + literal(" ") + func.coalesce(c.last_name, "")
            account_names = select(t.accounts.c.id).where(_contains(t.accounts.c.name, search))
            stmt = stmt.where(
                or_(
                    _contains(full, search),
                    _contains(c.email, search),
                    c.account_id.in_(account_names),
                )
            )
        if account_id is not None:
            stmt = stmt.where(c.account_id == account_id)
        return stmt

    async def list(
        self, search: str | None, account_id: int | None, page: PageRequest
    ) -> Page[Contact]:
        stmt = self._filtered(search, account_id)
        return await _page(
            self.conn, stmt, self.table, self.table.c.created_at, True, page, to_contact
        )

    async def count(self, search: str | None, account_id: int | None) -> int:
        return await _count(self.conn, self._filtered(search, account_id))


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

    def _filtered(self, f: LeadFilter) -> Select[Any]:
        c = self.table.c
        stmt = select(self.table)
        if f.state:
            stmt = stmt.where(c.state.in_([s.value for s in f.state]))
        if f.status_reason:
            stmt = stmt.where(c.status_reason.in_([s.value for s in f.status_reason]))
        if f.stage:
            stmt = stmt.where(c.stage.in_([s.value for s in f.stage]))
        if f.source:
            stmt = stmt.where(c.source.in_([s.value for s in f.source]))
        if f.sales_ready is not None:
            stmt = stmt.where(c.sales_ready == f.sales_ready)
        if f.contact_id is not None:
            stmt = stmt.where(c.contact_id == f.contact_id)
        if f.account_id is not None:
            stmt = stmt.where(c.account_id == f.account_id)
        if f.created_after is not None:
            stmt = stmt.where(c.created_at >= f.created_after)
        if f.created_before is not None:
            stmt = stmt.where(c.created_at < f.created_before)
        if f.search and f.search.strip():
            full = func.coalesce(c.first_name, "") + literal(" ") + func.coalesce(c.last_name, "")
            stmt = stmt.where(
                or_(
                    _contains(full, f.search),
                    _contains(c.email, f.search),
                    _contains(c.company_name, f.search),
                    _contains(c.topic, f.search),
                )
            )
        if f.min_score is not None:
            # An alias of its own: ordering by SCORE may join lead_scores in the outer query.
            s = t.lead_scores.alias("min_score").c
            stmt = stmt.where(
                select(s.lead_id)
                .where(
                    s.lead_id == c.id,
                    s.scoring_model_id == f.min_score.scoring_model_id,
                    s.score >= f.min_score.min,
                )
                .exists()
            )
        return stmt

    async def list(self, filter_: LeadFilter, order: LeadOrder, page: PageRequest) -> Page[Lead]:
        stmt = self._filtered(filter_)
        if order.field == "SCORE":
            # Leads the model has not scored sort as 0.
            scores = t.lead_scores
            joined = self.table.outerjoin(
                scores,
                and_(
                    scores.c.lead_id == self.table.c.id,
                    scores.c.scoring_model_id == order.scoring_model_id,
                ),
            )
            sort: Any = func.coalesce(scores.c.score, 0.0)
            stmt = stmt.add_columns(sort.label("sort_score")).select_from(joined)
            return await _page(
                self.conn, stmt, self.table, sort, order.descending, page, to_lead, "sort_score"
            )
        col = self.table.c.updated_at if order.field == "UPDATED_AT" else self.table.c.created_at
        return await _page(self.conn, stmt, self.table, col, order.descending, page, to_lead)

    async def ids_for_contacts(self, contact_ids: Sequence[int]) -> Sequence[int]:
        c = self.table.c
        accounts = select(t.contacts.c.account_id).where(
            t.contacts.c.id.in_(list(contact_ids)), t.contacts.c.account_id.is_not(None)
        )
        stmt = select(c.id).where(
            or_(
                c.contact_id.in_(list(contact_ids)),
                and_(c.contact_id.is_(None), c.account_id.in_(accounts.scalar_subquery())),
            )
        )
        return [r.id for r in (await self.conn.execute(stmt.order_by(c.id))).all()]

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
        c = self.table.c
        wanted = sorted(set(contact_ids))
        accounts = select(t.contacts.c.account_id).where(
            t.contacts.c.id.in_(wanted), t.contacts.c.account_id.is_not(None)
        )
        stmt = select(self.table).where(
            or_(
                c.contact_id.in_(wanted),
                and_(c.contact_id.is_(None), c.account_id.in_(accounts.scalar_subquery())),
            )
        )
        rows = await self.conn.execute(stmt.order_by(c.id).with_for_update())
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
        return await _count(self.conn, self._filtered(filter_))


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
        stmt = insert(self.table).values(self._row(strategy)).returning(self.table.c.id)
        strategy.id = int(await self.conn.scalar(stmt))
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

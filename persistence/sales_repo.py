"""Opportunities in storage."""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from datetime import datetime
from operator import itemgetter
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from domain.errors import Conflict, Duplicate
from domain.events import LeadEvent
from domain.model import Lead
from domain.pagination import Page, PageRequest
from domain.sales import (
    Activity,
    ActivityKind,
    AssignmentRule,
    AssignmentStrategy,
    Competitor,
    Direction,
    Opportunity,
    OpportunityStage,
    OpportunityStatus,
    Stakeholder,
    Team,
    TimelineEntry,
    User,
    UserKind,
)
from domain.scoring import parse_condition
from domain.sequences import (
    Process,
    ProcessStage,
    RunStatus,
    SequenceRun,
    SequenceStep,
    WorkItem,
)
from domain.sequences import Sequence as Sequence_
from persistence import packing
from persistence import tables as t
from persistence.listing import Criterion, Listing
from persistence.repositories import partial_lead, to_lead, upsert_insert
from persistence.scoring_repo import to_lead_event


def to_opportunity(r: Row[Any]) -> Opportunity:
    return Opportunity(
        name=r.name,
        lead_id=r.lead_id,
        contact_id=r.contact_id,
        account_id=r.account_id,
        estimated_value=r.estimated_value,
        close_date=r.close_date,
        stage=OpportunityStage(r.stage),
        status=OpportunityStatus(r.status),
        id=r.id,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


_c = t.opportunities.c
# An opportunity list request: (status or None, lead id or None).
_LIST = Listing[tuple[OpportunityStatus | None, int | None], Opportunity](
    t.opportunities,
    {
        "status": Criterion(
            lambda r: None if r[0] is None else {"status": r[0].value},
            lambda: _c.status == bindparam("status"),
        ),
        "lead": Criterion(
            lambda r: None if r[1] is None else {"lead_id": r[1]},
            lambda: _c.lead_id == bindparam("lead_id"),
        ),
    },
    to_opportunity,
)


class OpportunityRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.opportunities

    def _row(self, o: Opportunity) -> dict[str, Any]:
        return {
            "name": o.name,
            "lead_id": o.lead_id,
            "contact_id": o.contact_id,
            "account_id": o.account_id,
            "estimated_value": o.estimated_value,
            "close_date": o.close_date,
            "stage": o.stage.value,
            "status": o.status.value,
            "created_at": o.created_at,
            "updated_at": o.updated_at,
        }

    async def get_many(self, ids: Sequence[int]) -> dict[int, Opportunity]:
        stmt = select(self.table).where(_c.id.in_(list(ids)))
        return {r.id: to_opportunity(r) for r in (await self.conn.execute(stmt)).all()}

    async def get_for_update(self, id_: int) -> Opportunity | None:
        stmt = select(self.table).where(_c.id == id_).with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return to_opportunity(row) if row else None

    async def add(self, opportunity: Opportunity) -> Opportunity:
        stmt = insert(self.table).values(self._row(opportunity)).returning(_c.id)
        opportunity.id = int(await self.conn.scalar(stmt))
        return opportunity

    async def save(self, opportunity: Opportunity) -> None:
        await self.conn.execute(
            update(self.table).where(_c.id == opportunity.id).values(self._row(opportunity))
        )

    async def has_open(self, lead_id: int) -> bool:
        stmt = select(_c.id).where(_c.lead_id == lead_id, _c.status == OpportunityStatus.OPEN.value)
        return (await self.conn.scalar(stmt.limit(1))) is not None

    async def list(
        self, status: OpportunityStatus | None, lead_id: int | None, page: PageRequest
    ) -> Page[Opportunity]:
        return await _LIST.page(self.conn, (status, lead_id), page)

    async def count(self, status: OpportunityStatus | None, lead_id: int | None) -> int:
        return await _LIST.count(self.conn, (status, lead_id))


# ---------------------------------------------------------------- users and teams


def to_user(r: Row[Any]) -> User:
    return User(
        name=r.name,
        email=r.email,
        kind=UserKind(r.kind),
        team_id=r.team_id,
        id=r.id,
        created_at=r.created_at,
    )


def to_team(r: Row[Any]) -> Team:
    return Team(name=r.name, id=r.id, created_at=r.created_at)


_USERS = Listing[int | None, User](
    t.users,
    {
        "team": Criterion(
            lambda team: None if team is None else {"team_id": team},
            lambda: t.users.c.team_id == bindparam("team_id"),
        )
    },
    to_user,
)
_TEAMS = Listing[None, Team](t.teams, {}, to_team)


class UserRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, user: User) -> User:
        """Store a new user; Duplicate when the email belongs to another user."""
        values = {
            "name": user.name,
            "email": user.email,
            "kind": user.kind.value,
            "team_id": user.team_id,
            "created_at": user.created_at,
        }
        stmt = (
            upsert_insert(self.conn)(t.users)
            .values(values)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(t.users.c.id)
        )
        new_id = await self.conn.scalar(stmt)
        if new_id is None:
            raise Duplicate(f"a user with the email {user.email} exists", ["input", "email"])
        user.id = int(new_id)
        return user

    async def get_many(self, ids: Sequence[int]) -> dict[int, User]:
        stmt = select(t.users).where(t.users.c.id.in_(list(ids)))
        return {r.id: to_user(r) for r in (await self.conn.execute(stmt)).all()}

    async def in_teams(self, team_ids: Sequence[int]) -> dict[int, list[User]]:
        """The members of these teams, each team's in id order."""
        stmt = select(t.users).where(t.users.c.team_id.in_(list(team_ids))).order_by(t.users.c.id)
        out: dict[int, list[User]] = {team: [] for team in team_ids}
        for r in (await self.conn.execute(stmt)).all():
            out[r.team_id].append(to_user(r))
        return out

    async def open_leads(self, user_ids: Sequence[int]) -> dict[int, int]:
        """How many OPEN leads each user owns."""
        c = t.leads.c
        stmt = (
            select(c.owner_id, func.count())
            .where(c.owner_id.in_(list(user_ids)), c.state == "OPEN")
            .group_by(c.owner_id)
        )
        return {int(r[0]): int(r[1]) for r in (await self.conn.execute(stmt)).all()}

    async def list(self, team_id: int | None, page: PageRequest) -> Page[User]:
        return await _USERS.page(self.conn, team_id, page)

    async def count(self, team_id: int | None) -> int:
        return await _USERS.count(self.conn, team_id)


class TeamRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, team: Team) -> Team:
        stmt = insert(t.teams).values(name=team.name, created_at=team.created_at)
        team.id = int(await self.conn.scalar(stmt.returning(t.teams.c.id)))
        return team

    async def get_many(self, ids: Sequence[int]) -> dict[int, Team]:
        stmt = select(t.teams).where(t.teams.c.id.in_(list(ids)))
        return {r.id: to_team(r) for r in (await self.conn.execute(stmt)).all()}

    async def list(self, page: PageRequest) -> Page[Team]:
        return await _TEAMS.page(self.conn, None, page)

    async def count(self) -> int:
        return await _TEAMS.count(self.conn, None)


def to_rule(r: Row[Any]) -> AssignmentRule:
    return AssignmentRule(
        name=r.name,
        team_id=r.team_id,
        strategy=AssignmentStrategy(r.strategy),
        condition=None if r.condition is None else parse_condition(r.condition, ["condition"]),
        condition_json=r.condition,
        priority=r.priority,
        active=r.active,
        last_user_id=r.last_user_id,
        id=r.id,
        created_at=r.created_at,
    )


class AssignmentRuleRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.assignment_rules

    async def add(self, rule: AssignmentRule) -> AssignmentRule:
        values = {
            "name": rule.name,
            "team_id": rule.team_id,
            "strategy": rule.strategy.value,
            "condition": rule.condition_json,
            "priority": rule.priority,
            "active": rule.active,
            "last_user_id": rule.last_user_id,
            "created_at": rule.created_at,
        }
        stmt = insert(self.table).values(values).returning(self.table.c.id)
        rule.id = int(await self.conn.scalar(stmt))
        return rule

    async def all(self, active_only: bool = False) -> list[AssignmentRule]:
        """Rules in the order they are tried: priority, then age."""
        c = self.table.c
        stmt = select(self.table).order_by(c.priority, c.id)
        if active_only:
            stmt = stmt.where(c.active)
        return [to_rule(r) for r in (await self.conn.execute(stmt)).all()]

    async def get(self, id_: int) -> AssignmentRule | None:
        row = (await self.conn.execute(select(self.table).where(self.table.c.id == id_))).first()
        return to_rule(row) if row else None

    async def save_cursor(self, rule: AssignmentRule) -> None:
        await self.conn.execute(
            update(self.table)
            .where(self.table.c.id == rule.id)
            .values(last_user_id=rule.last_user_id)
        )


def _competitor(r: Row[Any]) -> Competitor:
    return Competitor(r.lead_id, r.name, r.notes, r.id, r.created_at)


class StakeholderRepository:
    """A lead's stakeholders and competitors."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_stakeholder(self, s: Stakeholder) -> Stakeholder:
        """Store, or change the role of the contact already on the lead."""
        table = t.lead_stakeholders
        stmt = upsert_insert(self.conn)(table).values(
            lead_id=s.lead_id, contact_id=s.contact_id, role=s.role, created_at=s.created_at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["lead_id", "contact_id"], set_={"role": s.role}
        ).returning(table.c.id, table.c.created_at)
        row = (await self.conn.execute(stmt)).one()
        s.id, s.created_at = int(row.id), row.created_at
        return s

    async def remove_stakeholder(self, lead_id: int, contact_id: int) -> bool:
        table = t.lead_stakeholders
        done = await self.conn.execute(
            delete(table).where(table.c.lead_id == lead_id, table.c.contact_id == contact_id)
        )
        return bool(done.rowcount)

    async def stakeholders(self, lead_id: int) -> list[Stakeholder]:
        table = t.lead_stakeholders
        stmt = select(table).where(table.c.lead_id == lead_id).order_by(table.c.id)
        return [
            Stakeholder(r.lead_id, r.contact_id, r.role, r.id, r.created_at)
            for r in (await self.conn.execute(stmt)).all()
        ]

    async def add_competitor(self, c: Competitor) -> Competitor:
        table = t.lead_competitors
        stmt = insert(table).values(
            lead_id=c.lead_id, name=c.name, notes=c.notes, created_at=c.created_at
        )
        c.id = int(await self.conn.scalar(stmt.returning(table.c.id)))
        return c

    async def remove_competitor(self, lead_id: int, competitor_id: int) -> bool:
        table = t.lead_competitors
        done = await self.conn.execute(
            delete(table).where(table.c.lead_id == lead_id, table.c.id == competitor_id)
        )
        return bool(done.rowcount)

    async def competitors(self, lead_id: int) -> list[Competitor]:
        table = t.lead_competitors
        stmt = select(table).where(table.c.lead_id == lead_id).order_by(table.c.id)
        return [_competitor(r) for r in (await self.conn.execute(stmt)).all()]

    async def competitor(self, id_: int) -> Competitor | None:
        table = t.lead_competitors
        r = (await self.conn.execute(select(table).where(table.c.id == id_))).first()
        return _competitor(r) if r else None


# ---------------------------------------------------------------- activities and the timeline


def keyset_branch(
    stmt: Any, at: Any, id_: Any, src: str, after_src: str | None, *, descending: bool
) -> Any:
    """One source of a merged (time, source, id) keyset page: its rows past the cursor (bound as
    after_at/after_id; `after_src` is the cursor's source, None: no cursor), in page order, at
    most `page_limit` of them, so each source reads only what a page can use, along its index,
    however many rows it holds."""
    if after_src is not None:
        value = bindparam("after_at", type_=t.UTCDateTime())
        after_id = bindparam("after_id", type_=id_.type)
        if descending:
            past = at < value
            if src < after_src:
                stmt = stmt.where(at <= value)
            elif src == after_src:
                stmt = stmt.where(or_(past, and_(at == value, id_ < after_id)))
            else:
                stmt = stmt.where(past)
        else:
            past = at > value
            if src > after_src:
                stmt = stmt.where(at >= value)
            elif src == after_src:
                stmt = stmt.where(or_(past, and_(at == value, id_ > after_id)))
            else:
                stmt = stmt.where(past)
    order = (at.desc(), id_.desc()) if descending else (at.asc(), id_.asc())
    return stmt.order_by(*order).limit(bindparam("page_limit", type_=Integer())).subquery()


def merged(branches: list[Any], *, descending: bool) -> Any:
    """The branches' rows together, in page order, at most `page_limit` (each row: src, id, at
    and whatever else the branches select, alike)."""
    union = union_all(*(select(b) for b in branches)).subquery()
    u = union.c
    order = (u.at.desc(), u.src.desc(), u.id.desc()) if descending else (u.at, u.src, u.id)
    return select(union).order_by(*order).limit(bindparam("page_limit", type_=Integer()))


def page_params(first: int, after: tuple[datetime, str, int] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"page_limit": first + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after[0], after[2]
    return params


# Merged-page statements, built once per shape (building and cache-keying a statement of this
# size costs more than running it).
_MERGED: dict[Hashable, Any] = {}


def _merged_statement(key: Hashable, build: Any) -> Any:
    found = _MERGED.get(key)
    if found is None:
        found = _MERGED[key] = build()
    return found


class _Prefixed:
    """The columns of one source in a merged page's rows, read by position (a row's mapping is
    slow to walk for each of 50 rows and 20 columns)."""

    __slots__ = ("_get", "_names")

    def __init__(self, stmt: Any, prefix: str, shared: Shared = ()) -> None:
        keys = list(stmt.selected_columns.keys())
        fields = [(k[len(prefix) :], i) for i, k in enumerate(keys) if k.startswith(prefix)]
        fields += shared
        self._names = tuple(name for name, _ in fields)
        positions = [i for _, i in fields]
        # itemgetter of one position returns the value itself, not a 1-tuple.
        getter = itemgetter(*positions) if len(positions) > 1 else None
        self._get: Any = getter or (lambda r: tuple(r[i] for i in positions))

    def __call__(self, r: Row[Any]) -> SimpleNamespace:
        return SimpleNamespace(**dict(zip(self._names, self._get(r), strict=True)))

    def values(self, r: Row[Any]) -> tuple[Any, ...]:
        """The source's values in the order of `names`."""
        return self._get(r)  # type: ignore[no-any-return]

    @property
    def names(self) -> tuple[str, ...]:
        """The source's column names (unprefixed), in the order of `values`."""
        return self._names


# A source's columns a merged page's rows already hold unprefixed, as (name, position): its id
# and time (and lead) are the page's own first columns, selected once, not twice.
Shared = tuple[tuple[str, int], ...]
_PAGE_KEYS: Shared = (("id", 1), ("occurred_at", 2))
_WORK_KEYS: Shared = (("id", 1), ("occurred_at", 2), ("lead_id", 3))
_RUN_KEYS: Shared = (("id", 1), ("due_at", 2), ("lead_id", 3))

_READERS: dict[tuple[int, str, Shared], _Prefixed] = {}


def _reader(stmt: Any, prefix: str, shared: Shared = ()) -> _Prefixed:
    key = (id(stmt), prefix, shared)
    reader = _READERS.get(key)
    if reader is None:
        reader = _READERS[key] = _Prefixed(stmt, prefix, shared)
    return reader


def _unprefixed(stmt: Any, r: Row[Any], prefix: str, shared: Shared = ()) -> Any:
    return _reader(stmt, prefix, shared)(r)


def _own_columns(
    table: Any, prefix: str, shared: Shared, only: Collection[str] | None = None
) -> list[Any]:
    """`table`'s columns (those named in `only`, or all) labelled `prefix`<name>, but those the
    page's rows hold already."""
    skip = {name for name, _ in shared}
    return [
        c.label(f"{prefix}{c.key}")
        for c in table.c
        if c.key not in skip and (only is None or c.key in only)
    ]


# The activity and event columns a timeline page reads: a summary (what a timeline list
# shows), or None: all of them. `timeline_columns` makes them from the attributes a query reads
# (api/projection.py). Two sets each keep the statements built per shape few.
ActivityColumns = tuple[str, ...] | None
EventColumns = tuple[str, ...] | None
_ACTIVITY_SUMMARY: tuple[str, ...] = tuple(
    c.key
    for c in t.activities.c
    if c.key in {"id", "occurred_at", "kind", "subject", "direction", "completed"}
)
_EVENT_SUMMARY: tuple[str, ...] = tuple(
    c.key for c in t.lead_events.c if c.key in {"id", "occurred_at", "type"}
)


def _tier(
    reads: Collection[str] | None, tiers: Sequence[tuple[str, ...]]
) -> tuple[str, ...] | None:
    """The first of `tiers` holding every name in `reads`; None (all columns) when none does,
    or `reads` is None."""
    if reads is not None:
        for tier in tiers:
            if all(name in tier for name in reads):
                return tier
    return None


def timeline_columns(
    activity_reads: Collection[str] | None, event_reads: Collection[str] | None
) -> tuple[ActivityColumns, EventColumns]:
    """The activity and event columns a timeline page reads for these attributes."""
    return _tier(activity_reads, (_ACTIVITY_SUMMARY,)), _tier(event_reads, (_EVENT_SUMMARY,))


def to_activity(r: Row[Any]) -> Activity:
    return Activity(
        kind=ActivityKind(r.kind),
        subject=r.subject,
        occurred_at=r.occurred_at,
        body=r.body,
        lead_id=r.lead_id,
        contact_id=r.contact_id,
        opportunity_id=r.opportunity_id,
        owner_id=r.owner_id,
        direction=Direction(r.direction) if r.direction else None,
        completed=r.completed,
        id=r.id,
        created_at=r.created_at,
    )


_KINDS = {m.value: m for m in ActivityKind}
_DIRECTIONS = {m.value: m for m in Direction}
_ACTIVITY_FIELDS = tuple(Activity.__dataclass_fields__)
_ACTIVITY_READERS: dict[
    tuple[int, str, Shared, ActivityColumns], Callable[[Row[Any]], Activity]
] = {}


def _activity_reader(
    stmt: Any, prefix: str, shared: Shared, only: ActivityColumns = None
) -> Callable[[Row[Any]], Activity]:
    """`to_activity` for the `prefix`ed activity columns (and the `shared` ones) of a merged
    page's rows, read by position (a page is 50 of them: a namespace per row and the enum
    lookups add up). With `only` (the page selected only those columns), each activity holds
    those attributes alone: reading another raises AttributeError, never a default."""
    key = (id(stmt), prefix, shared, only)
    found = _ACTIVITY_READERS.get(key)
    if found is not None:
        return found
    keys = list(stmt.selected_columns.keys())
    at = {k[len(prefix) :]: i for i, k in enumerate(keys) if k.startswith(prefix)}
    at.update(shared)
    names = _ACTIVITY_FIELDS if only is None else tuple(n for n in _ACTIVITY_FIELDS if n in only)
    values = itemgetter(*(at[name] for name in names))  # in the fields' order
    kinds, directions = _KINDS, _DIRECTIONS

    def decode(activity: Activity) -> Activity:
        k, d = activity.kind, activity.direction
        member = kinds.get(k)  # type: ignore[call-overload]
        activity.kind = ActivityKind(k) if member is None else member
        if d:
            way = directions.get(d)  # type: ignore[call-overload]
            activity.direction = Direction(d) if way is None else way
        else:
            activity.direction = None
        return activity

    def read(r: Row[Any]) -> Activity:
        return decode(Activity(*values(r)))

    def read_partial(r: Row[Any]) -> Activity:
        return decode(_partial(Activity, names, values(r)))

    found = _ACTIVITY_READERS[key] = read if only is None else read_partial
    return found


def _event_reader(stmt: Any, prefix: str, shared: Shared, only: EventColumns = None) -> Any:
    """The LeadEvent of a merged page's row from its `prefix`ed event columns (and the
    `shared` ones); with `only`, an event holding those attributes alone (and no fanned-out
    lead), as `_activity_reader`."""
    reader = _reader(stmt, prefix, shared)
    if only is None:
        whole: Callable[[Row[Any]], Any] = reader  # a namespace with the row's attributes
        return lambda r: to_lead_event(whole(r))

    names = (*reader.names, "lead")

    def read_partial(r: Row[Any]) -> LeadEvent:
        return _partial(LeadEvent, names, (*reader.values(r), None))

    return read_partial


P = TypeVar("P")


def _partial(cls: type[P], names: Sequence[str], values: Sequence[Any]) -> P:
    """A `cls` (a slotted dataclass, frozen or not) holding only these attributes: reading
    another raises AttributeError, never a default."""
    record = cls.__new__(cls)
    for name, value in zip(names, values, strict=True):
        object.__setattr__(record, name, value)
    return record


def _timeline_wheres(kind: str) -> list[ColumnElement[bool]]:
    """Which activities a timeline holds (bound lead_id, and opportunity_id for kind
    "opportunity"), one condition per keyset branch: the lead's, and the opportunity's own."""
    a = t.activities.c
    lead_id = bindparam("lead_id", type_=a.lead_id.type)
    wheres = [a.lead_id == lead_id]
    if kind == "opportunity":
        wheres.append(
            and_(
                a.opportunity_id == bindparam("opportunity_id", type_=a.opportunity_id.type),
                or_(a.lead_id.is_(None), a.lead_id != lead_id),
            )
        )
    return wheres


_TIMELINE_ORDER = _WORK_ORDER = itemgetter(2, 0, 1)


def _timeline_count_statement(kind: str) -> Any:
    """How many entries a timeline (see _timeline_statement) holds."""
    e = t.lead_events.c
    lead_id = bindparam("lead_id", type_=e.lead_id.type)
    counts = [
        select(func.count()).select_from(t.activities).where(where).scalar_subquery()
        for where in _timeline_wheres(kind)
    ]
    events = (
        select(func.count())
        .select_from(t.lead_events)
        .where(e.lead_id == lead_id, e.position.is_not(None))
        .scalar_subquery()
    )
    total: Any = events
    for count in counts:
        total = total + count
    return select(total)


def _timeline_statement(
    kind: str,
    after_src: str | None,
    with_lead: bool = False,
    lead: LeadColumns = None,
    activity: ActivityColumns = None,
    event: EventColumns = None,
) -> Any:
    """A timeline page's statement, reading the activity and event columns `activity` and
    `event` name (or all); `with_lead`: the lead's own row comes with it (src "l",
    its columns - those named by `lead`, or all - undecoded as l_<column>, time NULL), so one
    trip to the database reads both. Its rows come in no particular order: `_timeline` sorts
    them.

    Each source's branch carries its own columns (NULL for the other source's), so the page is
    read in one pass along the indexes; joining the page's ids back to their tables costs an
    index probe per row and table (three times the whole statement, on PostgreSQL)."""
    a, e, ld = t.activities.c, t.lead_events.c, t.leads.c
    lead_id = bindparam("lead_id", type_=a.lead_id.type)
    own_a = _own_columns(t.activities, "a_", _PAGE_KEYS, activity)
    own_e = _own_columns(t.lead_events, "e_", _PAGE_KEYS, event)
    lead_read = _lead_read(lead) if with_lead else []
    # Typed NULLs: a UNION takes each column's type from its branches (PostgreSQL), and its
    # result processors from the first one (SQLAlchemy).
    no_a, no_e = _nulls(own_a), _nulls(own_e)
    no_lead = [cast(null(), c.type).label(f"l_{c.key}") for c in lead_read]
    branches = [
        keyset_branch(
            select(
                literal("a").label("src"), a.id, a.occurred_at.label("at"), *own_a, *no_e, *no_lead
            ).where(where),
            a.occurred_at,
            a.id,
            "a",
            after_src,
            descending=True,
        )
        for where in _timeline_wheres(kind)
    ]
    events = select(
        literal("e").label("src"), e.id, e.occurred_at.label("at"), *no_a, *own_e, *no_lead
    ).where(e.lead_id == lead_id, e.position.is_not(None))
    branches.append(keyset_branch(events, e.occurred_at, e.id, "e", after_src, descending=True))
    page = merged(branches, descending=True)
    if not with_lead:
        return page
    # Outside the page's limit; its NULL time sorts first or last, as the database likes.
    the_lead = select(
        literal("l").label("src"),
        ld.id,
        cast(null(), t.UTCDateTime()).label("at"),
        *no_a,
        *no_e,
        *_lead_labels(lead),
    ).where(ld.id == lead_id)
    return union_all(the_lead, select(page.subquery()))


def _nulls(columns: list[Any]) -> list[Any]:
    """NULLs of the types of these labelled columns, under their labels."""
    return [cast(null(), c.type).label(c.name) for c in columns]


def _work_sources(tasks: Any, steps: Any) -> tuple[Any, Any]:
    """The two selects of a work list (bound owner_id and now) with their conditions: the
    owner's open tasks due, and the current steps due of the active sequences of the owner's
    OPEN leads."""
    r, ld, a = t.sequence_runs.c, t.leads.c, t.activities.c
    owner = bindparam("owner_id", type_=ld.owner_id.type)
    now = bindparam("now", type_=t.UTCDateTime())
    tasks = tasks.where(
        a.owner_id == owner,
        a.kind == ActivityKind.TASK.value,
        a.completed == false(),
        a.occurred_at <= now,
    )
    steps = steps.select_from(t.sequence_runs.join(t.leads, ld.id == r.lead_id)).where(
        ld.owner_id == owner, ld.state == "OPEN", _ACTIVE, r.due_at <= now
    )
    return tasks, steps


def _work_count_statement() -> Any:
    tasks, steps = _work_sources(
        select(func.count()).select_from(t.activities), select(func.count())
    )
    return select(tasks.scalar_subquery() + steps.scalar_subquery())


def _work_statement(after_src: str | None, lead: LeadColumns = None) -> Any:
    r, ld, a, sq = t.sequence_runs.c, t.leads.c, t.activities.c, t.sequences.c
    tasks, steps = _work_sources(
        select(
            literal("a").label("src"),
            a.id,
            a.occurred_at.label("at"),
            a.lead_id.label("lead_id"),
        ),
        select(
            literal("s").label("src"),
            r.id,
            r.due_at.label("at"),
            r.lead_id.label("lead_id"),
        ),
    )
    page = merged(
        [
            keyset_branch(tasks, a.occurred_at, a.id, "a", after_src, descending=False),
            keyset_branch(steps, r.due_at, r.id, "s", after_src, descending=False),
        ],
        descending=False,
    ).subquery()
    p = page.c
    # The page is found on narrow (src, id, at, lead) rows; its own rows (task or run with its
    # sequence) and its leads are then read whole by primary key, in the same statement.
    return (
        select(
            p.src,  # src, id, at, lead_id first: read by position
            p.id,
            p.at,
            p.lead_id,
            *_own_columns(t.activities, "a_", _WORK_KEYS),
            *_own_columns(t.sequence_runs, "s_", _RUN_KEYS),
            sq.name.label("s_seq_name"),
            sq.steps.label("s_seq_steps"),
            sq.created_at.label("s_seq_created_at"),
            # Undecoded: a page often holds several items of one lead, decoded once (_LeadDecoder).
            *_lead_labels(lead),
        ).select_from(
            page.outerjoin(t.activities, and_(p.src == "a", a.id == p.id))
            .outerjoin(t.sequence_runs, and_(p.src == "s", r.id == p.id))
            .outerjoin(t.sequences, sq.id == r.sequence_id)
            .outerjoin(t.leads, ld.id == p.lead_id)
        )
        # No ORDER BY: `work_list` sorts the page's rows (however they come, packed or not).
    )


# The lead columns a page reads: None for all of them, else their names in table order, as
# `lead_columns` makes them from the attributes a query reads (api/projection.py).
LeadColumns = tuple[str, ...] | None

# What a page reads of its leads is rounded up to the first of these that holds it (or to the
# whole lead): a few fixed shapes, so the statements built per shape (and their readers) stay
# few whatever combination of fields clients select.
_LEAD_TIERS = tuple(
    tuple(c.key for c in t.leads.c if c.key in tier)
    for tier in (
        {"id"},
        {
            "id",
            "topic",
            "first_name",
            "last_name",
            "email",
            "company_name",
            "state",
            "stage",
            "owner_id",
        },
    )
)


def lead_columns(reads: Collection[str] | None) -> LeadColumns:
    return _tier(reads, _LEAD_TIERS)


def _lead_read(lead: LeadColumns) -> list[Any]:
    """The lead columns `lead` names (all when None), in table order: the order of the `l_`
    columns a page selects, and of the values its _LeadDecoder decodes."""
    return [c for c in t.leads.c if lead is None or c.key in lead]


def _lead_labels(lead: LeadColumns) -> list[Any]:
    return [type_coerce(c, NullType()).label(f"l_{c.key}") for c in _lead_read(lead)]


_LEAD_DECODERS: dict[tuple[str, LeadColumns], tuple[tuple[int, Callable[[Any], Any]], ...]] = {}


def _lead_decoding(
    dialect: Dialect, lead: LeadColumns
) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """(position, result processor) of the lead columns read (`lead`) the dialect processes, as
    SQLAlchemy itself would have applied them had they been selected with their own types."""
    found = _LEAD_DECODERS.get((dialect.name, lead))
    if found is None:
        processors = (
            (i, c.type.dialect_impl(dialect).result_processor(dialect, None))
            for i, c in enumerate(_lead_read(lead))
        )
        found = _LEAD_DECODERS[dialect.name, lead] = tuple((i, p) for i, p in processors if p)
    return found


class _LeadDecoder:
    """The leads of one page, from their undecoded `l_` columns: each distinct lead is decoded
    and built once, and its items share it (as the request's lead loader would hand out)."""

    __slots__ = ("_done", "_lead", "_processors", "_values")

    def __init__(self, stmt: Any, dialect: Dialect, lead: LeadColumns = None) -> None:
        self._values = _reader(stmt, "l_").values
        self._processors = _lead_decoding(dialect, lead)
        self._lead = lead
        self._done: dict[Any, Lead] = {}

    def __call__(self, lead_id: Any, r: Row[Any]) -> Lead:
        lead = self._done.get(lead_id)
        if lead is None:
            lead = self._done[lead_id] = self.decode(r)
        return lead

    def decode(self, r: Row[Any]) -> Lead:
        """The lead of this row, decoded and built afresh."""
        values = list(self._values(r))
        for i, process in self._processors:
            values[i] = process(values[i])
        if self._lead is not None:
            return partial_lead(self._lead, values)
        return to_lead(values)  # type: ignore[arg-type]


class ActivityRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.activities

    def _row(self, a: Activity) -> dict[str, Any]:
        return {
            "kind": a.kind.value,
            "subject": a.subject,
            "body": a.body,
            "lead_id": a.lead_id,
            "contact_id": a.contact_id,
            "opportunity_id": a.opportunity_id,
            "owner_id": a.owner_id,
            "direction": a.direction.value if a.direction else None,
            "completed": a.completed,
            "occurred_at": a.occurred_at,
            "created_at": a.created_at,
        }

    async def add(self, activity: Activity) -> Activity:
        stmt = insert(self.table).values(self._row(activity)).returning(self.table.c.id)
        activity.id = int(await self.conn.scalar(stmt))
        return activity

    async def save(self, activity: Activity) -> None:
        await self.conn.execute(
            update(self.table).where(self.table.c.id == activity.id).values(self._row(activity))
        )

    async def get_many(self, ids: Sequence[int]) -> dict[int, Activity]:
        stmt = select(self.table).where(self.table.c.id.in_(list(ids)))
        return {r.id: to_activity(r) for r in (await self.conn.execute(stmt)).all()}

    async def upcoming(self, owner_id: int, start: datetime, end: datetime) -> list[Activity]:
        """The owner's open appointments and tasks due from `start` to `end`, soonest first."""
        a = self.table.c
        stmt = (
            select(self.table)
            .where(
                a.owner_id == owner_id,
                ~a.completed,
                a.kind.in_([ActivityKind.APPOINTMENT.value, ActivityKind.TASK.value]),
                a.occurred_at >= start,
                a.occurred_at <= end,
            )
            .order_by(a.occurred_at, a.id)
        )
        return [to_activity(r) for r in (await self.conn.execute(stmt)).all()]

    async def timeline(
        self,
        lead_id: int,
        first: int,
        after: tuple[datetime, str, int] | None,
        activity_reads: Collection[str] | None = None,
        event_reads: Collection[str] | None = None,
    ) -> tuple[list[TimelineEntry], bool]:
        """The lead's activities and (positioned) events, newest first, after a cursor; with
        `activity_reads` / `event_reads`, they hold at least those attributes (and their id),
        else all of them.

        One keyset over both tables: (time, source, id) with source "a" (activity) or "e"
        (event), so equal times still page in a stable order.
        """
        columns = timeline_columns(activity_reads, event_reads)
        page, _ = await self._timeline("lead", {"lead_id": lead_id}, first, after, columns)
        return page

    async def lead_and_timeline(
        self,
        lead_id: int,
        first: int,
        after: tuple[datetime, str, int] | None,
        lead_reads: Collection[str] | None = None,
        activity_reads: Collection[str] | None = None,
        event_reads: Collection[str] | None = None,
    ) -> tuple[Lead | None, tuple[list[TimelineEntry], bool] | None]:
        """The lead (holding the attributes `lead_reads` names, with its id, or all of them) and
        a page of its timeline (as `timeline`) in one statement; (None, None) when there is no
        such lead."""
        columns = timeline_columns(activity_reads, event_reads)
        params = {"lead_id": lead_id}
        page, lead = await self._timeline(
            "lead", params, first, after, columns, True, lead_columns(lead_reads)
        )
        return (None, None) if lead is None else (lead, page)

    async def _timeline(
        self,
        kind: str,
        params: dict[str, Any],
        first: int,
        after: tuple[datetime, str, int] | None,
        columns: tuple[ActivityColumns, EventColumns],
        with_lead: bool = False,
        lead_read: LeadColumns = None,
    ) -> tuple[tuple[list[TimelineEntry], bool], Lead | None]:
        """A timeline page: `kind` "lead" (bound lead_id) or "opportunity" (bound lead_id and
        opportunity_id: the opportunity's activities besides the lead's), reading the activity
        and event `columns`; and with `with_lead` the lead itself (None if there is none)."""
        after_src = None if after is None else after[1]
        activity_read, event_read = columns
        key = ("timeline", kind, after_src, with_lead, lead_read, activity_read, event_read)
        stmt = _merged_statement(
            key,
            lambda: _timeline_statement(
                kind, after_src, with_lead, lead_read, activity_read, event_read
            ),
        )
        params = {**params, **page_params(first, after)}
        rows = await packing.rows(self.conn, stmt, params, key=key)
        lead = None
        if with_lead:
            for i, r in enumerate(rows):  # the lead's row (NULL time)
                if r[0] == "l":
                    lead = _LeadDecoder(stmt, self.conn.dialect, lead_read).decode(rows.pop(i))
                    break
        rows.sort(key=_TIMELINE_ORDER, reverse=True)  # newest first: (time, source, id)
        more = len(rows) > first
        rows = rows[:first]
        activity = _activity_reader(stmt, "a_", _PAGE_KEYS, activity_read)
        event = None
        entries = []
        for r in rows:
            src, id_, at = r[0], r[1], r[2]  # by position: a row's names are slower to look up
            if src == "a":
                entries.append(TimelineEntry(at, src, id_, activity(r), None))
            elif src == "e":
                if event is None:
                    event = _event_reader(stmt, "e_", _PAGE_KEYS, event_read)
                entries.append(TimelineEntry(at, src, id_, None, event(r)))
        return (entries, more), lead

    async def timeline_count(self, lead_id: int | None, opportunity_id: int | None) -> int:
        kind = "lead" if opportunity_id is None else "opportunity"
        stmt = _merged_statement(("timeline count", kind), lambda: _timeline_count_statement(kind))
        params: dict[str, Any] = {"lead_id": lead_id}
        if opportunity_id is not None:
            params["opportunity_id"] = opportunity_id
        return int(await self.conn.scalar(stmt, params) or 0)

    async def opportunity_timeline(
        self,
        opportunity: Opportunity,
        first: int,
        after: tuple[datetime, str, int] | None,
        activity_reads: Collection[str] | None = None,
        event_reads: Collection[str] | None = None,
    ) -> tuple[list[TimelineEntry], bool]:
        """The opportunity's activities with the history of the lead it came from (the lead's
        activities and events), newest first, in the keyset of `timeline` (`activity_reads`
        and `event_reads` as there)."""
        params = {"lead_id": opportunity.lead_id, "opportunity_id": opportunity.id}
        columns = timeline_columns(activity_reads, event_reads)
        page, _ = await self._timeline("opportunity", params, first, after, columns)
        return page


# ---------------------------------------------------------------- sequences and the work list


def to_sequence(r: Row[Any]) -> Sequence_:
    return Sequence_(
        name=r.name,
        steps=[SequenceStep.from_json(s) for s in r.steps],
        id=r.id,
        created_at=r.created_at,
    )


def to_run(r: Row[Any]) -> SequenceRun:
    """A run from a `_RUNS` row (the run's columns and its sequence's)."""
    return SequenceRun(
        lead_id=r.lead_id,
        sequence_id=r.sequence_id,
        step=r.step,
        due_at=r.due_at,
        status=RunStatus(r.status),
        id=r.id,
        started_at=r.started_at,
        completed_at=r.completed_at,
        sequence=Sequence_(
            name=r.seq_name,
            steps=[SequenceStep.from_json(s) for s in r.seq_steps],
            id=r.sequence_id,
            created_at=r.seq_created_at,
        ),
    )


# A run with its sequence (its steps are shown with the run).
_RUNS = select(
    t.sequence_runs,
    t.sequences.c.name.label("seq_name"),
    t.sequences.c.steps.label("seq_steps"),
    t.sequences.c.created_at.label("seq_created_at"),
).select_from(t.sequence_runs.join(t.sequences, t.sequences.c.id == t.sequence_runs.c.sequence_id))


_SEQUENCES = Listing[None, Sequence_](t.sequences, {}, to_sequence)
_PROCESSES = Listing[None, Process](t.processes, {}, lambda r: to_process(r))
_ACTIVE = text("sequence_runs.status = 'ACTIVE'")  # literal: the partial index applies


class SequenceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, sequence: Sequence_) -> Sequence_:
        stmt = insert(t.sequences).values(
            name=sequence.name,
            steps=[s.to_json() for s in sequence.steps],
            created_at=sequence.created_at,
        )
        sequence.id = int(await self.conn.scalar(stmt.returning(t.sequences.c.id)))
        return sequence

    async def get_many(self, ids: Sequence[int]) -> dict[int, Sequence_]:
        stmt = select(t.sequences).where(t.sequences.c.id.in_(list(ids)))
        return {r.id: to_sequence(r) for r in (await self.conn.execute(stmt)).all()}

    async def active_run(self, lead_id: int) -> SequenceRun | None:
        r = t.sequence_runs.c
        stmt = _RUNS.where(r.lead_id == lead_id, _ACTIVE)
        row = (await self.conn.execute(stmt)).first()
        return None if row is None else to_run(row)

    async def runs(self, lead_id: int) -> list[SequenceRun]:
        """Every run of the lead, newest first."""
        r = t.sequence_runs.c
        stmt = _RUNS.where(r.lead_id == lead_id).order_by(r.id.desc())
        return [to_run(row) for row in (await self.conn.execute(stmt)).all()]

    async def get_runs(self, ids: Sequence[int]) -> dict[int, SequenceRun]:
        stmt = _RUNS.where(t.sequence_runs.c.id.in_(list(ids)))
        return {row.id: to_run(row) for row in (await self.conn.execute(stmt)).all()}

    def _run_row(self, run: SequenceRun) -> dict[str, Any]:
        return {
            "lead_id": run.lead_id,
            "sequence_id": run.sequence_id,
            "step": run.step,
            "due_at": run.due_at,
            "status": run.status.value,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
        }

    async def add_run(self, run: SequenceRun) -> SequenceRun:
        """Store a new ACTIVE run; Conflict when the lead got another one meanwhile."""
        stmt = (
            upsert_insert(self.conn)(t.sequence_runs)
            .values(self._run_row(run))
            .on_conflict_do_nothing(
                index_elements=["lead_id"], index_where=t.sequence_runs.c.status == "ACTIVE"
            )
            .returning(t.sequence_runs.c.id)
        )
        new_id = await self.conn.scalar(stmt)
        if new_id is None:
            raise Conflict("the lead already has an active sequence; complete it first", ["leadId"])
        run.id = int(new_id)
        return run

    async def save_run(self, run: SequenceRun) -> None:
        r = t.sequence_runs
        await self.conn.execute(update(r).where(r.c.id == run.id).values(self._run_row(run)))

    async def work_list(
        self,
        owner_id: int,
        now: datetime,
        first: int,
        after: tuple[datetime, str, int] | None,
        lead_reads: Collection[str] | None = None,
    ) -> tuple[list[WorkItem], bool]:
        """The owner's due work, oldest due first: the current steps of the active sequences
        of the owner's OPEN leads and the owner's open tasks, due now or earlier. Each item's
        lead holds the attributes `lead_reads` names (with its id), or all of them."""
        after_src = None if after is None else after[1]
        read = lead_columns(lead_reads)
        key = ("work", after_src, read)
        stmt = _merged_statement(key, lambda: _work_statement(after_src, read))
        params = {"owner_id": owner_id, "now": now, **page_params(first, after)}
        rows = await packing.rows(self.conn, stmt, params, key=key)
        rows.sort(key=_WORK_ORDER)  # oldest due first: (time, source, id), however packed
        more = len(rows) > first
        rows = rows[:first]
        lead_of = _LeadDecoder(stmt, self.conn.dialect, read)
        activities = _activity_reader(stmt, "a_", _WORK_KEYS)
        items = []
        for x in rows:
            src, id_, at, lead_id = x[0], x[1], x[2], x[3]  # by position: faster than names
            run = to_run(_unprefixed(stmt, x, "s_", _RUN_KEYS)) if src == "s" else None
            activity = activities(x) if src == "a" else None
            lead = None if lead_id is None else lead_of(lead_id, x)
            items.append(WorkItem(at, src, id_, lead_id, run, activity, lead))
        return items, more

    async def work_count(self, owner_id: int, now: datetime) -> int:
        stmt = _merged_statement(("work count",), _work_count_statement)
        return int(await self.conn.scalar(stmt, {"owner_id": owner_id, "now": now}) or 0)

    async def list(self, page: PageRequest) -> Page[Sequence_]:
        return await _SEQUENCES.page(self.conn, None, page)

    async def count(self) -> int:
        return await _SEQUENCES.count(self.conn, None)


# ---------------------------------------------------------------- custom processes


def to_process(r: Row[Any]) -> Process:
    return Process(
        name=r.name,
        stages=[ProcessStage(s["name"], tuple(s["requiredFields"])) for s in r.stages],
        id=r.id,
        created_at=r.created_at,
    )


class ProcessRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, process: Process) -> Process:
        stages = [
            {"name": s.name, "requiredFields": list(s.required_fields)} for s in process.stages
        ]
        stmt = insert(t.processes).values(
            name=process.name, stages=stages, created_at=process.created_at
        )
        process.id = int(await self.conn.scalar(stmt.returning(t.processes.c.id)))
        return process

    async def get_many(self, ids: Sequence[int]) -> dict[int, Process]:
        stmt = select(t.processes).where(t.processes.c.id.in_(list(ids)))
        return {r.id: to_process(r) for r in (await self.conn.execute(stmt)).all()}

    async def list(self, page: PageRequest) -> Page[Process]:
        return await _PROCESSES.page(self.conn, None, page)

    async def count(self) -> int:
        return await _PROCESSES.count(self.conn, None)

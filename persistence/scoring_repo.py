"""Repositories for interactions, scoring models, lead scores and lead events."""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Engine, Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select

from domain.audit import AuditEntityType
from domain.events import LeadEvent
from domain.lifecycle import ModelStatus
from domain.model import Feature, LeadState
from domain.pagination import Page, PageRequest
from domain.scoring import (
    CurrentScore,
    Grade,
    Interaction,
    InteractionScope,
    InteractionType,
    Rule,
    ScoreResult,
    ScoringModel,
    StoredScore,
    encode_breakdown,
    from_us,
    load_rules,
    to_us,
)
from persistence import tables as t
from persistence.audit_repo import insert_audited
from persistence.listing import Criterion, Listing
from persistence.outbox import CHECKPOINT_LATER, EVENTS_WRITTEN, insert_events
from persistence.repositories import _CHUNK, insert_returning_id, upsert_insert
from persistence.scoring_sql import GROUPED, ScoringCompiler, sales_ready, score_expressions
from persistence.tables import IdType, JSONType

# ---------------------------------------------------------------- interactions


_TYPES = {e.value: e for e in InteractionType}


def to_interaction(r: Row[Any]) -> Interaction:
    return Interaction(
        contact_id=r.contact_id,
        type=_TYPES[r.type],
        occurred_at=r.occurred_at,
        name=r.name,
        properties=r.properties or {},
        id=r.id,
        idempotency_key=r.idempotency_key,
        created_at=r.created_at,
    )


# A contact's interactions, newest first.
_CONTACT_INTERACTIONS = Listing[int, Interaction](
    t.interactions,
    {
        "contact": Criterion(
            lambda contact_id: {"contact_id": contact_id},
            lambda: t.interactions.c.contact_id == bindparam("contact_id"),
        )
    },
    to_interaction,
)


def _scored_interaction(r: Row[Any]) -> Interaction:
    return Interaction(
        contact_id=r.contact_id,
        type=_TYPES[r.type],
        occurred_at=from_us(r.occurred_us),
        name=r.name,
        properties=r.properties or {},
        id=r.id,
        idempotency_key=r.idempotency_key,
        created_at=r.created_at,
    )


def _in_scope(scope: InteractionScope) -> ColumnElement[bool]:
    """The interactions a scope names: its types, each since its moment if it has one."""
    c = t.interactions.c
    always = sorted(kind.value for kind, since in scope.items() if since is None)
    terms: list[ColumnElement[bool]] = [c.type.in_(always)] if always else []
    for kind, since in sorted(scope.items(), key=lambda item: item[0].value):
        if since is not None:
            terms.append(and_(c.type == kind.value, c.occurred_us > to_us(since)))
    return or_(*terms)


class InteractionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.interactions

    def _row(self, i: Interaction) -> dict[str, Any]:
        return {
            "contact_id": i.contact_id,
            "type": i.type.value,
            "name": i.name,
            "occurred_at": i.occurred_at,
            "occurred_us": to_us(i.occurred_at),
            "properties": dict(i.properties),
            "idempotency_key": i.idempotency_key,
            "created_at": i.created_at,
        }

    async def add(self, interaction: Interaction) -> tuple[Interaction, bool]:
        """Store an interaction; with a known idempotency key, (the stored one, False)."""
        stmt = upsert_insert(self.conn)(self.table).values(self._row(interaction))
        if interaction.idempotency_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
        new_id = await self.conn.scalar(stmt.returning(self.table.c.id))
        if new_id is not None:
            return _with_id(interaction, int(new_id)), True
        row = (
            await self.conn.execute(
                select(self.table).where(
                    self.table.c.idempotency_key == interaction.idempotency_key
                )
            )
        ).one()
        return to_interaction(row), False

    async def add_many(self, interactions: Sequence[Interaction]) -> list[Interaction]:
        """Store interactions in one go; returns them with their ids, in order."""
        if not interactions:
            return []
        rows = [self._row(i) for i in interactions]
        if len(rows) == 1:
            new_id = await self.conn.scalar(insert_returning_id(self.table), rows[0])
            return [_with_id(interactions[0], int(new_id))]
        if self.conn.dialect.name == "sqlite":
            # SQLAlchemy runs INSERT … RETURNING with sort_by_parameter_order one row per
            # statement on SQLite. One executemany instead: this transaction is the only writer
            # (BEGIN IMMEDIATE) and each row gets the next rowid, so the ids are the consecutive
            # ones ending at the last inserted rowid.
            await self.conn.execute(insert(self.table), rows)
            last = int(await self.conn.scalar(text("SELECT last_insert_rowid()")) or 0)
            first = last - len(rows) + 1
            return [_with_id(i, first + n) for n, i in enumerate(interactions)]
        stmt = insert(self.table).returning(self.table.c.id, sort_by_parameter_order=True)
        result = await self.conn.execute(stmt, rows)
        return [_with_id(i, int(row.id)) for i, row in zip(interactions, result.all(), strict=True)]

    async def for_subject(
        self, contact_id: int | None, account_id: int | None
    ) -> list[Interaction]:
        """The interactions a lead is scored on: its contact's, or its account's contacts'."""
        if contact_id is not None:
            where = self.table.c.contact_id == contact_id
        elif account_id is not None:
            members = select(t.contacts.c.id).where(t.contacts.c.account_id == account_id)
            where = self.table.c.contact_id.in_(members.scalar_subquery())
        else:
            return []
        rows = (await self.conn.execute(select(self.table).where(where))).all()
        return [to_interaction(r) for r in rows]

    async def for_subjects(
        self,
        contact_ids: Sequence[int],
        account_ids: Sequence[int],
        scope: InteractionScope | None = None,
    ) -> tuple[dict[int, list[Interaction]], dict[int, list[Interaction]]]:
        """Interactions per contact, and per account (of all its contacts), for many leads;
        with a scope, only the types and times it names."""
        by_contact: dict[int, list[Interaction]] = {i: [] for i in contact_ids}
        by_account: dict[int, list[Interaction]] = {i: [] for i in account_ids}
        if scope is not None and not scope:
            return by_contact, by_account
        c = self.table.c
        within = _in_scope(scope) if scope is not None else true()
        # occurred_us is occurred_at exactly (both written from one value), the column the SQL
        # evaluator reads, and an integer: no timestamp parsing for the rows scoring reads.
        columns = [c.id, c.contact_id, c.type, c.name, c.occurred_us, c.properties]
        columns += [c.idempotency_key, c.created_at]
        wanted = sorted(set(contact_ids))
        for i in range(0, len(wanted), _CHUNK):
            stmt = select(*columns).where(c.contact_id.in_(wanted[i : i + _CHUNK]), within)
            for r in (await self.conn.execute(stmt)).all():
                by_contact[r.contact_id].append(_scored_interaction(r))
        accounts = sorted(set(account_ids))
        for i in range(0, len(accounts), _CHUNK):
            member = t.contacts.c
            stmt = (
                select(*columns, member.account_id.label("member_of"))
                .join(t.contacts, member.id == c.contact_id)
                .where(member.account_id.in_(accounts[i : i + _CHUNK]), within)
            )
            for r in (await self.conn.execute(stmt)).all():
                by_account[r.member_of].append(_scored_interaction(r))
        return by_contact, by_account

    async def get_many(self, ids: Sequence[int]) -> dict[int, Interaction]:
        rows = (
            await self.conn.execute(select(self.table).where(self.table.c.id.in_(list(ids))))
        ).all()
        return {r.id: to_interaction(r) for r in rows}

    async def list_for_contact(self, contact_id: int, page: PageRequest) -> Page[Interaction]:
        return await _CONTACT_INTERACTIONS.page(self.conn, contact_id, page)

    async def count_for_contact(self, contact_id: int) -> int:
        return await _CONTACT_INTERACTIONS.count(self.conn, contact_id)


def _with_id(i: Interaction, id_: int) -> Interaction:
    return replace(i, id=id_)


# ---------------------------------------------------------------- scoring models


def dump_rules(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "name": r.name,
            "points": r.points,
            "perOccurrence": r.per_occurrence,
            "maxPoints": r.max_points,
            "condition": r.raw_condition,
        }
        for r in rules
    ]


# Parsed rules per (model, last change): parsing is ~2 ms for a 10-rule model and LIVE models are
# read on every interaction. Rules are immutable, so sharing them is safe.
_PARSED: dict[tuple[int, datetime, str], list[Rule]] = {}


def _rules(model_id: int, changed: datetime, which: str, stored: Any) -> list[Rule]:
    key = (model_id, changed, which)
    rules = _PARSED.get(key)
    if rules is None:
        if len(_PARSED) > 1000:
            _PARSED.clear()
        rules = _PARSED[key] = load_rules(stored)
    return list(rules)


# The LIVE models per engine (so per database), with the stamp they were read under: the
# (id, version, updated_at) of every LIVE model. Every change that matters to scoring changes
# the stamp (publish bumps the version, stop and delete take the model out of the LIVE set, and
# a LIVE model cannot be edited), so one small query per call tells whether the cache holds,
# whichever process made the change.
_LIVE: weakref.WeakKeyDictionary[Engine, tuple[tuple[tuple[Any, ...], ...], list[ScoringModel]]]
_LIVE = weakref.WeakKeyDictionary()


def _copy(m: ScoringModel) -> ScoringModel:
    """A copy callers may change without touching the cached model (rules are immutable)."""
    return replace(
        m,
        rules=list(m.rules),
        grades=list(m.grades),
        published_rules=list(m.published_rules) if m.published_rules is not None else None,
    )


def to_model(r: Row[Any]) -> ScoringModel:
    return ScoringModel(
        name=r.name,
        rules=_rules(r.id, r.updated_at, "rules", r.rules),
        description=r.description,
        sales_ready_threshold=r.sales_ready_threshold,
        grades=[Grade(g["name"], g["minScore"]) for g in r.grades],
        status=ModelStatus(r.status),
        version=r.version,
        id=r.id,
        published_at=r.published_at,
        stopped_at=r.stopped_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
        published_rules=(
            _rules(r.id, r.updated_at, "published", r.published_rules)
            if r.published_rules is not None
            else None
        ),
    )


_MODELS = Listing[ModelStatus | None, ScoringModel](
    t.scoring_models,
    {
        "status": Criterion(
            lambda status: None if status is None else {"status": status.value},
            lambda: t.scoring_models.c.status == bindparam("status"),
        )
    },
    to_model,
)


@cache
def _live_stamps(if_enabled: Feature | None) -> Any:
    """The LIVE models' (id, version, updated_at), and the feature switch's value as `enabled`
    when one is named: read by every interaction, so built once per switch."""
    c = t.scoring_models.c
    columns: list[Any] = [c.id, c.version, c.updated_at]
    if if_enabled is not None:
        key = f"feature.{if_enabled.value}"
        setting = select(t.settings.c.value).where(t.settings.c.key == key)
        columns.append(setting.scalar_subquery().label("enabled"))
    return select(*columns).where(c.status == ModelStatus.LIVE.value).order_by(c.id)


class ScoringModelRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.scoring_models

    def _row(self, m: ScoringModel) -> dict[str, Any]:
        return {
            "name": m.name,
            "description": m.description,
            "status": m.status.value,
            "version": m.version,
            "rules": dump_rules(m.rules),
            "published_rules": dump_rules(m.published_rules)
            if m.published_rules is not None
            else None,
            "grades": [{"name": g.name, "minScore": g.min_score} for g in m.grades],
            "sales_ready_threshold": m.sales_ready_threshold,
            "published_at": m.published_at,
            "stopped_at": m.stopped_at,
            "created_at": m.created_at,
            "updated_at": m.updated_at,
        }

    async def get(self, id_: int, *, for_update: bool = False) -> ScoringModel | None:
        stmt = select(self.table).where(self.table.c.id == id_)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return to_model(row) if row else None

    async def get_many(self, ids: Sequence[int]) -> dict[int, ScoringModel]:
        rows = (
            await self.conn.execute(select(self.table).where(self.table.c.id.in_(list(ids))))
        ).all()
        return {r.id: to_model(r) for r in rows}

    async def live(self, *, if_enabled: Feature | None = None) -> list[ScoringModel]:
        """The LIVE models in id order, from a per-process cache checked by one small query.

        None at all when `if_enabled` names a feature that is off (read in the same query).
        """
        stamp_rows = (await self.conn.execute(_live_stamps(if_enabled))).all()
        if if_enabled is not None and not (stamp_rows and stamp_rows[0].enabled):
            return []
        stamp = tuple((r.id, r.version, r.updated_at) for r in stamp_rows)
        if not stamp:
            return []
        engine = self.conn.sync_engine
        cached = _LIVE.get(engine)
        if cached is not None and cached[0] == stamp:
            return [_copy(m) for m in cached[1]]
        c = self.table.c
        stmt = select(self.table).where(c.status == ModelStatus.LIVE.value).order_by(c.id)
        models = [to_model(r) for r in (await self.conn.execute(stmt)).all()]
        # Another transaction may have committed in between (PostgreSQL): cache only what
        # matches the stamp, and answer with what was read last, as before.
        if tuple((m.id, m.version, m.updated_at) for m in models) == stamp:
            _LIVE[engine] = (stamp, [_copy(m) for m in models])
        return models

    async def add(self, model: ScoringModel) -> ScoringModel:
        model.id = await insert_audited(
            self.conn, self.table, self._row(model), AuditEntityType.SCORING_MODEL
        )
        return model

    async def save(self, model: ScoringModel) -> None:
        await self.conn.execute(
            update(self.table).where(self.table.c.id == model.id).values(self._row(model))
        )

    async def delete(self, id_: int) -> None:
        await self.conn.execute(
            delete(t.lead_scores).where(t.lead_scores.c.scoring_model_id == id_)
        )
        await self.conn.execute(delete(self.table).where(self.table.c.id == id_))

    async def list(self, status: ModelStatus | None, page: PageRequest) -> Page[ScoringModel]:
        return await _MODELS.page(self.conn, status, page)

    async def count(self, status: ModelStatus | None) -> int:
        return await _MODELS.count(self.conn, status)


# ---------------------------------------------------------------- lead scores


def to_stored(r: Row[Any]) -> StoredScore:
    return StoredScore(
        lead_id=r.lead_id,
        scoring_model_id=r.scoring_model_id,
        model_version=r.model_version,
        score=r.score,
        sales_ready=r.sales_ready,
        entries=list(r.breakdown),
        next_expiry=from_us(r.next_expiry_us) if r.next_expiry_us is not None else None,
        updated_at=r.updated_at,
    )


# From this many new scores, SQLite stores them with a page cache of LARGE_RESCORE_CACHE_KIB
# instead of the default 2 MiB (see LeadScoreRepository._store_with_large_cache).
LARGE_RESCORE = 300_000
LARGE_RESCORE_CACHE_KIB = 256 * 1024

# From this many new scores, SQLite checkpoints the WAL after the commit, in the background
# (see CHECKPOINT_LATER in persistence/outbox.py): a tenth of a publish of 100,000 leads.
CHECKPOINT_LATER_SCORES = 10_000

_tmp_meta = MetaData()
NEW_SCORES = Table(
    "lf_new_scores",
    _tmp_meta,
    # INTEGER PRIMARY KEY on SQLite: the rowid itself, so no separate index to fill.
    Column("lead_id", IdType, primary_key=True, autoincrement=False),
    Column("score", Float, nullable=False),
    # No column for the model's sales-ready verdict: score >= threshold where needed is cheaper
    # than a second sum per lead.
    Column("breakdown", JSONType, nullable=False),
    Column("next_expiry_us", BigInteger),
    # The lead's state as it was scored, for the events (no second read of the lead).
    Column("stage", String(64), nullable=False),
    Column("status_reason", String(32), nullable=False),
    Column("sales_ready", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)


_SCORE_UPSERTS: dict[str, Any] = {}


def _score_upsert(conn: AsyncConnection) -> Any:
    """INSERT … ON CONFLICT DO UPDATE of lead_scores, built once per dialect (building the
    `excluded` columns costs more than running the statement for a few rows)."""
    stmt = _SCORE_UPSERTS.get(conn.dialect.name)
    if stmt is None:
        insert_ = upsert_insert(conn)(t.lead_scores)
        excluded = insert_.excluded
        keys = ("model_version", "score", "sales_ready", "breakdown", "next_expiry_us")
        stmt = _SCORE_UPSERTS[conn.dialect.name] = insert_.on_conflict_do_update(
            index_elements=["lead_id", "scoring_model_id"],
            set_={k: excluded[k] for k in (*keys, "updated_at")},
        )
    return stmt


# The stored scores of some leads (all models: see LeadScoreRepository.current).
_CURRENT_SCORES = select(
    t.lead_scores.c.lead_id,
    t.lead_scores.c.scoring_model_id,
    t.lead_scores.c.score,
    t.lead_scores.c.model_version,
    t.lead_scores.c.next_expiry_us,
    t.lead_scores.c.sales_ready,
).where(t.lead_scores.c.lead_id.in_(bindparam("leads", expanding=True)))


class LeadScoreRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.lead_scores

    async def for_leads(self, lead_ids: Sequence[int]) -> dict[int, list[StoredScore]]:
        stmt = select(self.table).where(self.table.c.lead_id.in_(list(lead_ids)))
        out: dict[int, list[StoredScore]] = {i: [] for i in lead_ids}
        for r in (await self.conn.execute(stmt.order_by(self.table.c.scoring_model_id))).all():
            out[r.lead_id].append(to_stored(r))
        return out

    async def get(self, lead_id: int, model_id: int) -> StoredScore | None:
        stmt = select(self.table).where(
            self.table.c.lead_id == lead_id, self.table.c.scoring_model_id == model_id
        )
        row = (await self.conn.execute(stmt)).first()
        return to_stored(row) if row else None

    async def current(
        self, lead_ids: Sequence[int], model_ids: Sequence[int]
    ) -> dict[tuple[int, int], CurrentScore]:
        """The stored scores of these leads for these models, by (lead, model)."""
        out: dict[tuple[int, int], CurrentScore] = {}
        models = set(model_ids)
        wanted = sorted(set(lead_ids))
        for i in range(0, len(wanted), _CHUNK):
            # By lead only, the models picked here: with the model in the WHERE, SQLite reads
            # every score of each model through ix_lead_scores_model_score instead of looking
            # up these leads' few rows by the (lead_id, scoring_model_id) key.
            part = {"leads": wanted[i : i + _CHUNK]}
            for r in (await self.conn.execute(_CURRENT_SCORES, part)).all():
                if r.scoring_model_id in models:
                    expiry = from_us(r.next_expiry_us) if r.next_expiry_us is not None else None
                    out[r.lead_id, r.scoring_model_id] = CurrentScore(
                        r.score, r.model_version, expiry, bool(r.sales_ready)
                    )
        return out

    async def put_many(
        self, scores: Sequence[tuple[int, ScoringModel, ScoreResult]], now: datetime
    ) -> None:
        """Store (lead, model, result) scores in one statement, replacing the stored ones."""
        if not scores:
            return
        rows = [
            {
                "lead_id": lead_id,
                "scoring_model_id": model.id,
                "model_version": model.version,
                "score": result.score,
                "sales_ready": model.is_sales_ready(result.score),
                "breakdown": encode_breakdown(model, result),
                "next_expiry_us": to_us(result.next_expiry) if result.next_expiry else None,
                "updated_at": now,
            }
            for lead_id, model, result in scores
        ]
        await self.conn.execute(_score_upsert(self.conn), rows)

    async def put(
        self, lead_id: int, model: ScoringModel, result: ScoreResult, now: datetime
    ) -> StoredScore | None:
        """Store a lead's score for a model; returns the score it replaced, if any."""
        previous = await self.get(lead_id, model.id)
        values = {
            "lead_id": lead_id,
            "scoring_model_id": model.id,
            "model_version": model.version,
            "score": result.score,
            "sales_ready": model.is_sales_ready(result.score),
            "breakdown": encode_breakdown(model, result),
            "next_expiry_us": to_us(result.next_expiry) if result.next_expiry else None,
            "updated_at": now,
        }
        stmt = upsert_insert(self.conn)(self.table).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["lead_id", "scoring_model_id"],
            set_={k: v for k, v in values.items() if k not in ("lead_id", "scoring_model_id")},
        )
        await self.conn.execute(stmt)
        return previous

    async def expired(self, now: datetime, limit: int) -> list[tuple[int, int]]:
        """(lead, model) pairs whose contributions expired by `now`, for LIVE models."""
        live = select(t.scoring_models.c.id).where(
            t.scoring_models.c.status == ModelStatus.LIVE.value
        )
        stmt = (
            select(self.table.c.lead_id, self.table.c.scoring_model_id)
            .where(
                self.table.c.next_expiry_us <= to_us(now),
                self.table.c.scoring_model_id.in_(live.scalar_subquery()),
            )
            .order_by(self.table.c.next_expiry_us)
            .limit(limit)
        )
        return [(r.lead_id, r.scoring_model_id) for r in (await self.conn.execute(stmt)).all()]

    async def drop_unscorable(self, lead_ids: Sequence[int] | None) -> int:
        """Delete the scores of these leads (or all) that have neither a contact nor an account
        any more: such a lead is not scored, so it keeps no score either. How many rows."""
        c, leads = self.table.c, t.leads.c
        unscorable = select(leads.id).where(leads.contact_id.is_(None), leads.account_id.is_(None))
        parts: list[Sequence[int] | None] = [None]
        if lead_ids is not None:
            wanted = sorted(set(lead_ids))
            parts = [wanted[i : i + _CHUNK] for i in range(0, len(wanted), _CHUNK)]
        dropped = 0
        for part in parts:
            where = c.lead_id.in_(unscorable.scalar_subquery())
            if part is not None:
                where = and_(c.lead_id.in_(list(part)), where)
            dropped += (await self.conn.execute(delete(self.table).where(where))).rowcount or 0
        return dropped

    async def rescore_all(
        self, model: ScoringModel, now: datetime, lead_ids: Sequence[int] | None = None
    ) -> int:
        """Score every scorable lead (or `lead_ids`) with `model` in a few set-based statements.

        New scores go to a temporary table first, so score-change and sales-ready events can be
        written (set-based too) by comparing them with the stored ones before they are replaced.
        Returns how many leads were scored.
        """
        conn = self.conn
        pg = conn.dialect.name == "postgresql"
        now_us = to_us(now)
        if pg:
            # JIT compilation costs seconds on these wide statements and saves nothing here.
            await conn.execute(text("SET LOCAL jit = off"))
        # Created in this transaction: a rollback removes it too.
        await conn.run_sync(lambda c: NEW_SCORES.drop(c, checkfirst=True))
        await conn.run_sync(lambda c: NEW_SCORES.create(c))
        scored = 0
        temporary: list[Table] = []
        for account_mode in (False, True):
            compiler = ScoringCompiler(conn.dialect.name, now_us, account_mode)
            compiler.compile_rules(model)
            grouped = None
            if lead_ids is None and not pg and compiler.grouped_columns:
                grouped = await self._grouped_table(compiler, account_mode)
                temporary.append(grouped)
            # OFFSET 0 keeps both planners from inlining `r`, which would evaluate each rule's
            # conditions once per reference in the outer expressions.
            stmt, shapes = compiler.scores_select(
                model, lead_ids, grouped.alias(GROUPED) if grouped is not None else None
            )
            rules = stmt.offset(0).subquery("r")
            score, breakdown, expiry = score_expressions(rules, model, shapes, pg)
            result = await conn.execute(
                insert(NEW_SCORES).from_select(
                    [
                        "lead_id",
                        "score",
                        "breakdown",
                        "next_expiry_us",
                        "stage",
                        "status_reason",
                        "sales_ready",
                    ],
                    select(
                        rules.c.lead_id,
                        score,
                        breakdown,
                        expiry,
                        rules.c.stage,
                        rules.c.status_reason,
                        rules.c.sales_ready,
                    ),
                )
            )
            scored += result.rowcount
        for table in temporary:
            await conn.run_sync(table.drop)
        if conn.dialect.name == "sqlite" and scored >= CHECKPOINT_LATER_SCORES:
            await conn.execute(text("PRAGMA wal_autocheckpoint = 0"))
            conn.info[CHECKPOINT_LATER] = True
        if conn.dialect.name == "sqlite" and scored >= LARGE_RESCORE:
            await self._store_with_large_cache(model, now)
        else:
            await self._store_new_scores(model, now)
        await conn.run_sync(lambda c: NEW_SCORES.drop(c))
        return scored

    async def _grouped_table(self, compiler: ScoringCompiler, account_mode: bool) -> Table:
        """The per-subject interaction aggregates of every subject, in a temporary table keyed
        by subject (SQLite, publish). Joining the leads to it by rowid is cheaper than to the
        GROUP BY subquery, for which SQLite builds an automatic index each time."""
        table = Table(
            f"lf_grouped_{int(account_mode)}",
            MetaData(),
            Column("subject_id", IdType, primary_key=True, autoincrement=False),
            *(Column(name, BigInteger) for name in compiler.grouped_columns),
            prefixes=["TEMPORARY"],
        )
        await self.conn.run_sync(lambda c: table.drop(c, checkfirst=True))
        await self.conn.run_sync(table.create)
        await self.conn.execute(
            insert(table).from_select(
                ["subject_id", *compiler.grouped_columns], compiler.grouped_select(None)
            )
        )
        return table

    async def _store_with_large_cache(self, model: ScoringModel, now: datetime) -> None:
        """_store_new_scores with a page cache big enough for lead_scores and its indexes, which
        saves reading the same pages again and again (a quarter of the upsert at 1,000,000
        leads). Only for this work: SQLite fills the cache as it goes and shrinks it back
        afterwards. Below LARGE_RESCORE scores the default cache does better."""
        before = int(await self.conn.scalar(text("PRAGMA cache_size")) or -2000)
        await self.conn.execute(text(f"PRAGMA cache_size = {-LARGE_RESCORE_CACHE_KIB}"))
        try:
            await self._store_new_scores(model, now)
        finally:
            with suppress(Exception):  # never hide the error that got us here
                await self.conn.execute(text(f"PRAGMA cache_size = {before}"))

    async def _store_new_scores(self, model: ScoringModel, now: datetime) -> None:
        """Events, then the sales-ready marks, then the scores, from lf_new_scores."""
        conn = self.conn
        await self._record_set_events(model, now)
        n = NEW_SCORES.c
        # Leads that crossed the threshold become sales-ready (open leads only): the model
        # finds them ready now and did not in the score stored before (which is replaced
        # below), so a lead whose mark was taken off by hand is not marked again for nothing.
        await conn.execute(
            update(t.leads)
            .where(
                t.leads.c.id.in_(_crossed(model).scalar_subquery()),
                ~t.leads.c.sales_ready,
                t.leads.c.state == LeadState.OPEN.value,
            )
            .values(sales_ready=True, updated_at=now)
        )
        upsert = upsert_insert(conn)(self.table).from_select(
            [
                "lead_id",
                "scoring_model_id",
                "model_version",
                "score",
                "sales_ready",
                "breakdown",
                "next_expiry_us",
                "updated_at",
            ],
            select(
                n.lead_id,
                literal(model.id),
                literal(model.version),
                n.score,
                sales_ready(model, n.score),
                n.breakdown,
                n.next_expiry_us,
                literal(now, t.UTCDateTime()),
            ).where(true()),  # SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT
        )
        excluded = upsert.excluded
        upsert = upsert.on_conflict_do_update(
            index_elements=["lead_id", "scoring_model_id"],
            set_={
                "model_version": excluded.model_version,
                "score": excluded.score,
                "sales_ready": excluded.sales_ready,
                "breakdown": excluded.breakdown,
                "next_expiry_us": excluded.next_expiry_us,
                "updated_at": excluded.updated_at,
            },
        )
        await conn.execute(upsert)

    async def _record_set_events(self, model: ScoringModel, now: datetime) -> None:
        conn = self.conn
        n, old, lead = NEW_SCORES.c, self.table.alias("old"), t.leads
        pg = conn.dialect.name == "postgresql"
        obj = func.jsonb_build_object if pg else func.json_object
        joined = NEW_SCORES.outerjoin(
            old, and_(old.c.lead_id == n.lead_id, old.c.scoring_model_id == model.id)
        )
        changed = or_(
            and_(old.c.score.is_(None), n.score != 0),
            and_(old.c.score.is_not(None), old.c.score != n.score),
        )
        # Each event holds the lead's state as of the event (the sales-ready mark and the
        # stage moves of this publish come after its score changes).
        state = ("statusReason", n.status_reason, "stage", n.stage)
        payload = obj(
            "scoringModelId",
            literal(model.id),
            "score",
            n.score,
            "previousScore",
            old.c.score,
            "salesReady",
            n.sales_ready,
            *state,
        )
        await insert_events(
            conn,
            select(n.lead_id, literal("SCORE_CHANGED"), literal(now, t.UTCDateTime()), payload)
            .select_from(joined)
            .where(changed)
            .order_by(n.lead_id),
            n.lead_id,
        )
        ready = obj(
            "scoringModelId",
            literal(model.id),
            "score",
            n.score,
            "salesReady",
            true(),
            "previousSalesReady",
            false(),
            *state,
        )
        await insert_events(
            conn,
            select(n.lead_id, literal("SALES_READY"), literal(now, t.UTCDateTime()), ready)
            .select_from(NEW_SCORES.join(lead, lead.c.id == n.lead_id))
            .where(
                n.lead_id.in_(_crossed(model).scalar_subquery()),
                ~lead.c.sales_ready,
                lead.c.state == LeadState.OPEN.value,
            )
            .order_by(n.lead_id),
            n.lead_id,
        )


def _crossed(model: ScoringModel) -> Select[tuple[int]]:
    """The leads in lf_new_scores the model finds sales-ready now and did not in their stored
    score (none stored, or stored not ready): those that crossed its threshold."""
    n, old = NEW_SCORES.c, t.lead_scores.alias("was")
    was_ready = (
        select(old.c.lead_id)
        .where(
            old.c.lead_id == n.lead_id,
            old.c.scoring_model_id == model.id,
            old.c.sales_ready,
        )
        .exists()
    )
    return select(n.lead_id).where(sales_ready(model, n.score), ~was_ready)


# ---------------------------------------------------------------- lead events

# Starts with UPDATE (not WITH): Python's sqlite3 reports no rowcount for a WITH statement.
_POSITION = text(
    """
    UPDATE lead_events SET position = todo.pos
    FROM (
        SELECT id,
               (SELECT coalesce(max(position), 0) FROM lead_events)
               + row_number() OVER (ORDER BY id) AS pos
        FROM lead_events WHERE position IS NULL ORDER BY id LIMIT :limit
    ) AS todo
    WHERE lead_events.id = todo.id
    """
)


def to_lead_event(r: Row[Any]) -> LeadEvent:
    return LeadEvent(r.position, r.id, r.lead_id, r.type, r.occurred_at, r.payload)


_MAX_POSITION = select(func.max(t.lead_events.c.position))


def _positioned(typed: bool, for_lead: bool) -> list[Any]:
    """Positioned events (of :types, of :lead_id)."""
    c = t.lead_events.c
    where: list[Any] = [c.position.is_not(None)]
    if typed:
        where.append(c.type.in_(bindparam("types", expanding=True)))
    if for_lead:
        where.append(c.lead_id == bindparam("lead_id", type_=c.lead_id.type))
    return where


@cache
def _events_after(typed: bool, for_lead: bool, bounded: bool) -> Any:
    """Positioned events after :after (of :types, of :lead_id, up to :until), :limit of them
    in position order: each commit with events and each fan-out read runs one, so each shape
    is built once."""
    c = t.lead_events.c
    position = c.position.type  # BIGINT on PostgreSQL: positions outgrow 32 bits
    where = [*_positioned(typed, for_lead), c.position > bindparam("after", type_=position)]
    if bounded:
        where.append(c.position <= bindparam("until", type_=position))
    limit = bindparam("limit", type_=Integer)
    return select(t.lead_events).where(*where).order_by(c.position).limit(limit)


@cache
def _events_count(typed: bool, for_lead: bool) -> Any:
    """How many positioned events (of :types, of :lead_id)."""
    return select(func.count()).select_from(t.lead_events).where(*_positioned(typed, for_lead))


def _event_params(types: Sequence[str] | None, lead_id: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if types is not None:
        params["types"] = list(types)
    if lead_id is not None:
        params["lead_id"] = lead_id
    return params


class LeadEventRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.lead_events

    async def add(self, lead_id: int, type_: str, payload: Mapping[str, Any], now: datetime) -> int:
        values = {"lead_id": lead_id, "type": type_, "occurred_at": now, "payload": dict(payload)}
        self.conn.info[EVENTS_WRITTEN] = True
        return int(await self.conn.scalar(insert_returning_id(self.table), values))

    async def add_many(
        self, events: Sequence[tuple[int, str, Mapping[str, Any]]], now: datetime
    ) -> None:
        """Record (lead, type, payload) events in this order."""
        if not events:
            return
        rows = [
            {"lead_id": lead_id, "type": type_, "occurred_at": now, "payload": dict(payload)}
            for lead_id, type_, payload in events
        ]
        self.conn.info[EVENTS_WRITTEN] = True
        await self.conn.execute(insert(self.table), rows)

    async def positioned(self, id_: int) -> LeadEvent | None:
        c = self.table.c
        stmt = select(self.table).where(c.id == id_, c.position.is_not(None))
        row = (await self.conn.execute(stmt)).first()
        return to_lead_event(row) if row else None

    async def for_lead(self, lead_id: int) -> list[tuple[int, str, dict[str, Any]]]:
        stmt = select(self.table).where(self.table.c.lead_id == lead_id).order_by(self.table.c.id)
        return [(r.id, r.type, r.payload) for r in (await self.conn.execute(stmt)).all()]

    async def after(
        self,
        position: int,
        limit: int,
        types: Sequence[str] | None = None,
        lead_id: int | None = None,
        until: int | None = None,
    ) -> list[LeadEvent]:
        params = {**_event_params(types, lead_id), "after": position, "limit": limit}
        if until is not None:
            params["until"] = until
        stmt = _events_after(types is not None, lead_id is not None, until is not None)
        return [to_lead_event(r) for r in (await self.conn.execute(stmt, params)).all()]

    async def max_position(self) -> int:
        return int(await self.conn.scalar(_MAX_POSITION) or 0)

    async def count(self, types: Sequence[str] | None, lead_id: int | None) -> int:
        stmt = _events_count(types is not None, lead_id is not None)
        return int(await self.conn.scalar(stmt, _event_params(types, lead_id)) or 0)

    async def has_unpositioned(self) -> bool:
        stmt = select(self.table.c.id).where(self.table.c.position.is_(None)).limit(1)
        return (await self.conn.scalar(stmt)) is not None

    async def assign_positions(self, limit: int) -> int:
        """Give the oldest `limit` unpositioned events the next positions, in id order.

        The caller holds the positioning lock (see persistence/relay.py); returns how many.
        """
        result = await self.conn.execute(_POSITION, {"limit": limit})
        return int(result.rowcount or 0)

"""Qualification models in storage, and their criteria as SQL for set-based evaluation.

`domain.qualification.meets`/`decide` say what a model does to one lead; `_meets` and
`_guards` below say the same in SQL, so publishing a model evaluates every open lead in a few
statements instead of a query per lead (tests hold both to the same answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.audit import AuditEntityType
from domain.lifecycle import ModelStatus
from domain.model import LeadState, LeadStatusReason
from domain.pagination import Page, PageRequest
from domain.qualification import (
    MatchMode,
    QualificationActions,
    QualificationCriterion,
    QualificationModel,
)
from persistence import tables as t
from persistence.audit_repo import insert_audited
from persistence.listing import Criterion, Listing
from persistence.outbox import insert_events

_CHUNK = 500  # lead ids per IN (...) list


def to_qualification_model(r: Row[Any]) -> QualificationModel:
    return QualificationModel(
        name=r.name,
        criteria=[QualificationCriterion(c["scoringModelId"], c["minScore"]) for c in r.criteria],
        actions=QualificationActions(r.mark_marketing_qualified, r.mark_sales_ready),
        match=MatchMode(r.match),
        status=ModelStatus(r.status),
        version=r.version,
        id=r.id,
        published_at=r.published_at,
        stopped_at=r.stopped_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


_MODELS = Listing[ModelStatus | None, QualificationModel](
    t.qualification_models,
    {
        "status": Criterion(
            lambda status: None if status is None else {"status": status.value},
            lambda: t.qualification_models.c.status == bindparam("status"),
        )
    },
    to_qualification_model,
)

_l = t.leads.c


def _meets(model: QualificationModel) -> ColumnElement[bool]:
    """The model's criteria on `leads` rows: a missing score meets nothing."""
    s = t.lead_scores.c
    hits = [
        exists().where(
            s.lead_id == _l.id,
            s.scoring_model_id == c.scoring_model_id,
            s.score >= c.min_score,
        )
        for c in model.criteria
    ]
    return and_(*hits) if model.match is MatchMode.ALL else or_(*hits)


def _guards() -> ColumnElement[bool]:
    """Only OPEN leads that are not already qualified change (domain.qualification.can_change)."""
    return and_(
        _l.state == LeadState.OPEN.value,
        _l.status_reason != LeadStatusReason.QUALIFIED.value,
    )


_MQ = LeadStatusReason.MARKETING_QUALIFIED.value


def _marks_mq() -> ColumnElement[bool]:
    marks: ColumnElement[bool] = _l.status_reason != _MQ
    return marks


def _marks_sr() -> ColumnElement[bool]:
    marks: ColumnElement[bool] = ~_l.sales_ready
    return marks


def _changes(model: QualificationModel) -> ColumnElement[bool]:
    """The lead gets at least one new mark from the model."""
    marks = []
    if model.actions.mark_marketing_qualified:
        marks.append(_marks_mq())
    if model.actions.mark_sales_ready:
        marks.append(_marks_sr())
    return or_(*marks)


def _chunks(lead_ids: Sequence[int] | None) -> list[Sequence[int] | None]:
    if lead_ids is None:
        return [None]
    unique = sorted(set(lead_ids))
    return [unique[i : i + _CHUNK] for i in range(0, len(unique), _CHUNK)]


# Read by every score change (scoring_services._score): built once.
_LIVE_MODELS = (
    select(t.qualification_models)
    .where(t.qualification_models.c.status == ModelStatus.LIVE.value)
    .order_by(t.qualification_models.c.id)
)


class QualificationModelRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.table = t.qualification_models

    def _row(self, m: QualificationModel) -> dict[str, Any]:
        return {
            "name": m.name,
            "status": m.status.value,
            "version": m.version,
            "match": m.match.value,
            "criteria": [
                {"scoringModelId": c.scoring_model_id, "minScore": c.min_score} for c in m.criteria
            ],
            "mark_marketing_qualified": m.actions.mark_marketing_qualified,
            "mark_sales_ready": m.actions.mark_sales_ready,
            "published_at": m.published_at,
            "stopped_at": m.stopped_at,
            "created_at": m.created_at,
            "updated_at": m.updated_at,
        }

    async def get(self, id_: int, *, for_update: bool = False) -> QualificationModel | None:
        stmt = select(self.table).where(self.table.c.id == id_)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return to_qualification_model(row) if row else None

    async def get_many(self, ids: Sequence[int]) -> dict[int, QualificationModel]:
        stmt = select(self.table).where(self.table.c.id.in_(list(ids)))
        return {r.id: to_qualification_model(r) for r in (await self.conn.execute(stmt)).all()}

    async def live(self) -> list[QualificationModel]:
        rows = (await self.conn.execute(_LIVE_MODELS)).all()
        return [to_qualification_model(r) for r in rows]

    async def using(self, scoring_model_id: int) -> list[QualificationModel]:
        """Every qualification model (any status) whose criteria name this scoring model."""
        rows = (await self.conn.execute(select(self.table).order_by(self.table.c.id))).all()
        models = [to_qualification_model(r) for r in rows]
        return [m for m in models if scoring_model_id in m.scoring_model_ids]

    async def add(self, model: QualificationModel) -> QualificationModel:
        model.id = await insert_audited(
            self.conn, self.table, self._row(model), AuditEntityType.QUALIFICATION_MODEL
        )
        return model

    async def save(self, model: QualificationModel) -> None:
        await self.conn.execute(
            update(self.table).where(self.table.c.id == model.id).values(self._row(model))
        )

    async def delete(self, id_: int) -> None:
        await self.conn.execute(delete(self.table).where(self.table.c.id == id_))

    async def list(self, status: ModelStatus | None, page: PageRequest) -> Page[QualificationModel]:
        return await _MODELS.page(self.conn, status, page)

    async def count(self, status: ModelStatus | None) -> int:
        return await _MODELS.count(self.conn, status)

    async def apply(
        self, model: QualificationModel, now: datetime, lead_ids: Sequence[int] | None = None
    ) -> int:
        """Mark every lead (or `lead_ids`) the model qualifies, set-based, with their events.

        Events are written first, from the leads' values before the marks; returns how many
        leads changed.
        """
        conn = self.conn
        pg = conn.dialect.name == "postgresql"
        obj = func.jsonb_build_object if pg else func.json_object
        at = literal(now, t.UTCDateTime())
        model_id = literal(model.id)
        # (event type, the lead lacks the mark, the mark, the event's payload) per action.
        marks: list[tuple[str, ColumnElement[bool], dict[str, Any], Any]] = []
        # Each event holds the lead's state as of the event: the marketing-qualified mark comes
        # first, then the sales-ready one (the stage moves after both).
        status_after_mq: Any = _l.status_reason
        if model.actions.mark_marketing_qualified:
            payload = obj(
                "qualificationModelId",
                model_id,
                "statusReason",
                literal(_MQ),
                "previousStatusReason",
                _l.status_reason,
                "salesReady",
                _l.sales_ready,
                "stage",
                _l.stage,
            )
            marks.append(("MARKETING_QUALIFIED", _marks_mq(), {"status_reason": _MQ}, payload))
            status_after_mq = literal(_MQ)
        if model.actions.mark_sales_ready:
            payload = obj(
                "qualificationModelId",
                model_id,
                "statusReason",
                status_after_mq,
                "salesReady",
                true(),
                "previousSalesReady",
                false(),
                "stage",
                _l.stage,
            )
            marks.append(("SALES_READY", _marks_sr(), {"sales_ready": True}, payload))
        changed = 0
        for part in _chunks(lead_ids):
            base = and_(_guards(), _meets(model))
            if part is not None:
                base = and_(_l.id.in_(list(part)), base)
            count = select(func.count()).select_from(t.leads).where(base, _changes(model))
            changed += int(await conn.scalar(count) or 0)
            # Events first: they record the leads' values before the marks.
            for type_, needed, _, payload in marks:
                events = select(_l.id, literal(type_), at, payload).where(base, needed)
                await insert_events(conn, events.order_by(_l.id), _l.id)
            for _, needed, values, _ in marks:
                await conn.execute(
                    update(t.leads).where(base, needed).values(**values, updated_at=now)
                )
        return changed

    async def preview(
        self, model: QualificationModel, sample: int
    ) -> tuple[int, int, Sequence[int]]:
        """(leads the model would evaluate, leads it would change, the first `sample` of those)."""
        conn = self.conn
        evaluated = await conn.scalar(select(func.count()).select_from(t.leads).where(_guards()))
        would = and_(_guards(), _meets(model), _changes(model))
        count = await conn.scalar(select(func.count()).select_from(t.leads).where(would))
        ids = (
            await conn.scalars(select(_l.id).where(would).order_by(_l.id.desc()).limit(sample))
        ).all()
        return int(evaluated or 0), int(count or 0), list(ids)

"""The set-based process moves (LeadRepository.follow_process) mean what domain.sales says."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import insert, select

from domain import sales
from domain.lifecycle import ModelStatus
from domain.model import Lead, LeadStage, LeadState, LeadStatusReason, utcnow
from domain.scoring import ScoringModel
from persistence import tables as t
from persistence.database import Database


@pytest.mark.parametrize(
    "scope", ["some leads", "all leads", "scored by one model", "first scores of one model"]
)
async def test_follow_process_equals_the_python_rules(db: Database, scope: str) -> None:
    rng = random.Random(5)
    now = utcnow()
    async with db.uow() as uow:
        live = await uow.scoring_models.add(
            ScoringModel(name="live", rules=[], status=ModelStatus.LIVE)
        )
        other = await uow.scoring_models.add(
            ScoringModel(name="other live", rules=[], status=ModelStatus.LIVE)
        )
        stopped = await uow.scoring_models.add(
            ScoringModel(name="stopped", rules=[], status=ModelStatus.STOPPED)
        )
        leads: list[Lead] = []
        for i in range(120):
            state = rng.choice([LeadState.OPEN] * 4 + [LeadState.QUALIFIED, LeadState.DISQUALIFIED])
            lead = Lead(
                topic=f"l{i}",
                state=state,
                status_reason=rng.choice([LeadStatusReason.NEW, LeadStatusReason.CONTACTED]),
                stage=rng.choice(list(LeadStage)),
                sales_ready=rng.random() < 0.3,
            )
            leads.append(await uow.leads.add(lead))
        rows: list[dict[str, Any]] = []
        points: dict[int, set[int]] = {}  # lead → the models that gave it points
        scored: dict[int, set[int]] = {}  # lead → the models that scored it
        for lead in leads:
            points[lead.id], scored[lead.id] = set(), set()
            for model in (live, other, stopped):
                if rng.random() < 0.6:
                    score = float(rng.choice([0, 0, 5, 20]))
                    scored[lead.id].add(model.id)
                    if score != 0:
                        points[lead.id].add(model.id)
                    rows.append(
                        {
                            "lead_id": lead.id,
                            "scoring_model_id": model.id,
                            "model_version": 1,
                            "score": score,
                            "sales_ready": False,
                            "breakdown": [],
                            "next_expiry_us": None,
                            "updated_at": now,
                        }
                    )
        await uow.conn.execute(insert(t.lead_scores), rows)
        # What happened to each lead in the operation that now follows the process: the moves
        # only follow a score change (first points) or a new sales-ready mark at `moved_at`.
        moved_at = utcnow()
        happened: dict[int, set[str]] = {}
        for lead in leads:
            happened[lead.id] = {k for k in ("SCORE_CHANGED", "SALES_READY") if rng.random() < 0.6}
            # Decoys: the same kinds of events at another time change nothing.
            for kind in ("SCORE_CHANGED", "SALES_READY"):
                await uow.events.add(lead.id, kind, {}, now)
            for kind in sorted(happened[lead.id]):
                await uow.events.add(lead.id, kind, {}, moved_at)
        await uow.commit()
    if scope == "some leads":
        chosen: list[int] | None = [lead.id for lead in leads[::2]]
        included = set(chosen)
        has_points = {i: bool(points[i] & {live.id, other.id}) for i in points}
    elif scope == "all leads":
        chosen, included = None, {lead.id for lead in leads}
        has_points = {i: bool(points[i] & {live.id, other.id}) for i in points}
    else:
        chosen, included = None, {i for i in scored if live.id in scored[i]}
        has_points = {i: live.id in points[i] for i in points}
    expected: dict[int, list[dict[str, Any]]] = {}
    for lead in leads:
        copy = Lead(
            topic=lead.topic,
            state=lead.state,
            status_reason=lead.status_reason,
            stage=lead.stage,
            sales_ready=lead.sales_ready,
        )
        changes = []
        if lead.id in included:
            # A model's first scores are all new: each lead it gave points had a SCORE_CHANGED.
            changed = scope.startswith("first") or "SCORE_CHANGED" in happened[lead.id]
            first = sales.first_scored(copy) if has_points[lead.id] and changed else None
            ready = "SALES_READY" in happened[lead.id]
            follow = sales.follow_checkboxes(copy, ("sales_ready",)) if ready else None
            changes = [c.payload for c in (first, follow) if c is not None]
        expected[lead.id] = changes
    async with db.uow() as uow:
        if scope.endswith("one model"):
            first_scores = scope.startswith("first")
            await uow.leads.follow_process(
                None, moved_at, scored_by=live.id, first_scores=first_scores
            )
        else:
            await uow.leads.follow_process(chosen, moved_at)
        await uow.commit()
    async with db.read() as r:
        after = await r.leads.get_many([lead.id for lead in leads])
        events = (
            await r.conn.execute(
                select(t.lead_events.c.lead_id, t.lead_events.c.payload)
                .where(t.lead_events.c.type == "STAGE_CHANGED")
                .order_by(t.lead_events.c.id)
            )
        ).all()
    assert any(expected.values())
    for lead in leads:
        # Each lead's events in order, saying what the Python rules say.
        got = [
            {**e.payload, "salesReady": bool(e.payload["salesReady"])}
            for e in events
            if e.lead_id == lead.id
        ]
        assert got == expected[lead.id], lead
        final = expected[lead.id][-1]["stage"] if expected[lead.id] else lead.stage.value
        assert after[lead.id].stage.value == final, lead
        if expected[lead.id]:
            assert after[lead.id].updated_at == moved_at
        else:
            assert after[lead.id].updated_at == lead.updated_at


async def test_follow_process_without_moves_writes_nothing(db: Database) -> None:
    async with db.uow() as uow:
        lead = await uow.leads.add(Lead(topic="quiet", stage=LeadStage.INQUIRY))
        await uow.commit()
    async with db.uow() as uow:
        await uow.leads.follow_process([lead.id], utcnow())
        await uow.leads.follow_process(None, utcnow())  # the temporary table is gone again
        await uow.commit()
    async with db.read() as r:
        assert await r.events.for_lead(lead.id) == []
        stored = await r.leads.get(lead.id)
        assert stored is not None and stored.stage is LeadStage.INQUIRY

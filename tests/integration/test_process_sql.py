"""The set-based process moves (LeadRepository.follow_process) mean what domain.sales says."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import insert, select

from domain import sales
from domain.lifecycle import ModelStatus
from domain.model import Lead, LeadStage, LeadState, LeadStatusReason, utcnow
from domain.scoring import ScoringModel
from persistence import tables as t
from persistence.database import Database


async def test_follow_process_equals_the_python_rules(db: Database) -> None:
    rng = random.Random(5)
    now = utcnow()
    async with db.uow() as uow:
        live = await uow.scoring_models.add(
            ScoringModel(name="live", rules=[], status=ModelStatus.LIVE)
        )
        stopped = await uow.scoring_models.add(
            ScoringModel(name="stopped", rules=[], status=ModelStatus.STOPPED)
        )
        leads: list[Lead] = []
        for i in range(80):
            state = rng.choice([LeadState.OPEN] * 4 + [LeadState.QUALIFIED, LeadState.DISQUALIFIED])
            lead = Lead(
                topic=f"l{i}",
                state=state,
                status_reason=LeadStatusReason.NEW,
                stage=rng.choice(list(LeadStage)),
                sales_ready=rng.random() < 0.3,
            )
            leads.append(await uow.leads.add(lead))
        rows: list[dict[str, Any]] = []
        points: dict[int, bool] = {}
        for lead in leads:
            points[lead.id] = False
            for model in (live, stopped):
                if rng.random() < 0.6:
                    score = float(rng.choice([0, 0, 5, 20]))
                    points[lead.id] |= model is live and score != 0
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
        await uow.commit()
    chosen = [lead.id for lead in leads[::2]]
    expected: dict[int, list[str]] = {}
    for lead in leads:
        copy = Lead(
            topic=lead.topic, state=lead.state, stage=lead.stage, sales_ready=lead.sales_ready
        )
        moves = []
        if lead.id in chosen:
            first = sales.first_scored(copy) if points[lead.id] else None
            for change in (first, sales.follow_checkboxes(copy)):
                if change is not None:
                    moves.append(change.payload["stage"])
        expected[lead.id] = moves
    async with db.uow() as uow:
        await uow.leads.follow_process(chosen, utcnow())
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
    for lead in leads:
        got = [e.payload["stage"] for e in events if e.lead_id == lead.id]
        assert sorted(got) == sorted(expected[lead.id]), lead
        final = expected[lead.id][-1] if expected[lead.id] else lead.stage.value
        assert after[lead.id].stage.value == final, lead

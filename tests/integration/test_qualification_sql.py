"""The SQL form of qualification (set-based apply, preview) means what domain.decide means.

Leads in every state, with random scores for two scoring models (some missing), are qualified
by random models set-based; each lead must end exactly as `decide` says, with one event per
new mark, and a second apply must change nothing (marks are sticky and never repeated).
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import func, insert, select

from domain.lifecycle import ModelStatus
from domain.model import Lead, LeadState, LeadStatusReason, utcnow
from domain.qualification import (
    MatchMode,
    QualificationActions,
    QualificationCriterion,
    QualificationModel,
    decide,
)
from domain.scoring import ScoringModel
from persistence import tables as t
from persistence.database import Database

STATES = [
    (LeadState.OPEN, LeadStatusReason.NEW),
    (LeadState.OPEN, LeadStatusReason.CONTACTED),
    (LeadState.OPEN, LeadStatusReason.MARKETING_QUALIFIED),
    (LeadState.OPEN, LeadStatusReason.QUALIFIED),
    (LeadState.QUALIFIED, LeadStatusReason.QUALIFIED),
    (LeadState.DISQUALIFIED, LeadStatusReason.LOST),
]


async def _world(
    db: Database, rng: random.Random
) -> tuple[list[Lead], dict[int, dict[int, float]], list[int]]:
    now = utcnow()
    async with db.uow() as uow:
        models = [
            await uow.scoring_models.add(
                ScoringModel(name=f"m{i}", rules=[], status=ModelStatus.LIVE)
            )
            for i in range(2)
        ]
        leads = []
        for i in range(60):
            state, reason = rng.choice(STATES)
            lead = Lead(
                topic=f"l{i}", state=state, status_reason=reason, sales_ready=rng.random() < 0.3
            )
            leads.append(await uow.leads.add(lead))
        scores: dict[int, dict[int, float]] = {}
        rows: list[dict[str, Any]] = []
        for lead in leads:
            scores[lead.id] = {}
            for m in models:
                if rng.random() < 0.8:
                    value = float(rng.choice([0, 10, 29.5, 30, 50, 80]))
                    scores[lead.id][m.id] = value
                    rows.append(
                        {
                            "lead_id": lead.id,
                            "scoring_model_id": m.id,
                            "model_version": 1,
                            "score": value,
                            "sales_ready": False,
                            "breakdown": [],
                            "next_expiry_us": None,
                            "updated_at": now,
                        }
                    )
        await uow.conn.execute(insert(t.lead_scores), rows)
        await uow.commit()
    return leads, scores, [m.id for m in models]


def _random_model(rng: random.Random, model_ids: list[int]) -> QualificationModel:
    chosen = rng.sample(model_ids, rng.choice([1, 2]))
    mq, sr = rng.choice([(True, False), (False, True), (True, True)])
    return QualificationModel(
        name="q",
        criteria=[QualificationCriterion(m, float(rng.choice([10, 30, 50]))) for m in chosen],
        actions=QualificationActions(mq, sr),
        match=rng.choice(list(MatchMode)),
        status=ModelStatus.LIVE,
    )


async def test_set_based_apply_equals_decide(db: Database) -> None:
    rng = random.Random(20261124)
    leads, scores, model_ids = await _world(db, rng)
    for round_ in range(6):
        model = _random_model(rng, model_ids)
        async with db.read() as r:
            current = await r.leads.get_many([lead.id for lead in leads])
            evaluated, would, _ = await r.qualification_models.preview(model, 100)
        expected = {i: decide(model, lead, scores[i]) for i, lead in current.items()}
        assert would == sum(1 for d in expected.values() if d), round_
        assert evaluated == sum(
            1
            for lead in current.values()
            if lead.state is LeadState.OPEN and lead.status_reason is not LeadStatusReason.QUALIFIED
        )
        async with db.uow() as uow:
            async with db.read() as r:
                before_events = await r.conn.scalar(select(func.count()).select_from(t.lead_events))
            model = await uow.qualification_models.add(model)
            changed = await uow.qualification_models.apply(model, utcnow())
            await uow.commit()
        assert changed == would
        async with db.read() as r:
            after = await r.leads.get_many(list(current))
            events = (
                await r.conn.execute(select(t.lead_events).order_by(t.lead_events.c.id))
            ).all()
        new_events = events[before_events:]
        for lead_id, decision in expected.items():
            old, new = current[lead_id], after[lead_id]
            want_reason = (
                LeadStatusReason.MARKETING_QUALIFIED
                if decision.marketing_qualified
                else old.status_reason
            )
            assert new.status_reason is want_reason, (round_, lead_id)
            assert new.sales_ready is (old.sales_ready or decision.sales_ready), (round_, lead_id)
            assert new.state is old.state
            kinds = sorted(e.type for e in new_events if e.lead_id == lead_id)
            want = sorted(
                ["MARKETING_QUALIFIED"] * decision.marketing_qualified
                + ["SALES_READY"] * decision.sales_ready
            )
            assert kinds == want, (round_, lead_id)
            for e in new_events:
                if e.lead_id == lead_id and e.type == "MARKETING_QUALIFIED":
                    assert e.payload["previousStatusReason"] == old.status_reason.value
                    assert e.payload["qualificationModelId"] == model.id
        # Sticky and idempotent: the same model again changes nothing.
        async with db.uow() as uow:
            assert await uow.qualification_models.apply(model, utcnow()) == 0
            await uow.commit()


async def test_apply_to_some_leads_only(db: Database) -> None:
    rng = random.Random(7)
    leads, _, model_ids = await _world(db, rng)
    model = QualificationModel(
        name="any",
        criteria=[QualificationCriterion(model_ids[0], 0)],
        actions=QualificationActions(True, True),
        match=MatchMode.ANY,
        status=ModelStatus.LIVE,
    )
    chosen = [lead.id for lead in leads[:10]]
    async with db.uow() as uow:
        model = await uow.qualification_models.add(model)
        await uow.qualification_models.apply(model, utcnow(), chosen)
        await uow.commit()
    async with db.read() as r:
        after = await r.leads.get_many([lead.id for lead in leads])
    for lead in leads[10:]:
        assert after[lead.id].status_reason is lead.status_reason
        assert after[lead.id].sales_ready is lead.sales_ready

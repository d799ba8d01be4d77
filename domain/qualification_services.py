"""Qualification use cases: models through their lifecycle, and leads qualified by them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import audit, sales
from domain.assignment import assign_ready
from domain.errors import Conflict, NotFound
from domain.events import lead_snapshot
from domain.features import require_lead_management
from domain.lifecycle import ModelStatus
from domain.model import Lead, LeadStatusReason, utcnow
from domain.ports import Repositories, UnitOfWork
from domain.qualification import QualificationModel, build_qualification_model, decide
from domain.scoring import ScoringModel

MAX_SAMPLE = 100
_QM = audit.AuditEntityType.QUALIFICATION_MODEL


async def _model(uow: UnitOfWork, id_: int) -> QualificationModel:
    model = await uow.qualification_models.get(id_, for_update=True)
    if model is None:
        raise NotFound("no qualification model with this id", ["id"])
    return model


async def _referenced(repos: Repositories, model: QualificationModel) -> dict[int, ScoringModel]:
    """The scoring models the criteria name; NOT_FOUND for one that does not exist."""
    found = await repos.scoring_models.get_many(model.scoring_model_ids)
    for i, c in enumerate(model.criteria):
        if c.scoring_model_id not in found:
            raise NotFound(
                "no scoring model with this id", ["input", "criteria", str(i), "scoringModelId"]
            )
    return found


async def create_qualification_model(uow: UnitOfWork, raw: Mapping[str, Any]) -> QualificationModel:
    """A new DRAFT model, checked in full."""
    await require_lead_management(uow)
    model = build_qualification_model(raw)
    await _referenced(uow, model)
    model = await uow.qualification_models.add(model)
    await audit.record(uow, "create", _QM, model.id, None, audit.qualification_model(model))
    return model


async def update_qualification_model(
    uow: UnitOfWork, id_: int, raw: Mapping[str, Any]
) -> QualificationModel:
    """Replace a DRAFT or STOPPED model's definition (a LIVE one is a CONFLICT)."""
    await require_lead_management(uow)
    model = await _model(uow, id_)
    definition = build_qualification_model(raw)
    await _referenced(uow, definition)
    before = audit.qualification_model(model)
    model.edit(definition)
    await uow.qualification_models.save(model)
    await audit.record(uow, "update", _QM, model.id, before, audit.qualification_model(model))
    return model


async def publish_qualification_model(
    uow: UnitOfWork, id_: int, now: datetime | None = None
) -> QualificationModel:
    """Make a model LIVE (every scoring model it uses must be LIVE) and evaluate every open lead.

    The evaluation is set-based and in the same transaction: a lead it qualifies is marked and
    its events are recorded before the publish commits.
    """
    await require_lead_management(uow)
    model = await _model(uow, id_)
    scoring = await uow.scoring_models.get_many(model.scoring_model_ids)
    for i, c in enumerate(model.criteria):
        used = scoring.get(c.scoring_model_id)
        if used is None or used.status is not ModelStatus.LIVE:
            name = f"'{used.name}'" if used else f"#{c.scoring_model_id} (deleted)"
            state = used.status.value if used else "missing"
            raise Conflict(
                f"scoring model {name} is {state}; every scoring model of the criteria must be "
                "LIVE to publish",
                ["criteria", str(i), "scoringModelId"],
            )
    before = audit.qualification_model(model)
    model.publish()
    await uow.qualification_models.save(model)
    await audit.record(uow, "publish", _QM, model.id, before, audit.qualification_model(model))
    now = now or utcnow()
    await uow.qualification_models.apply(model, now)
    await uow.leads.follow_process(None, now)  # sales-ready leads: on to sales acceptance
    await assign_ready(uow, None, now)  # and to a seller, by the assignment rules
    return model


async def stop_qualification_model(uow: UnitOfWork, id_: int) -> QualificationModel:
    """Stop a LIVE model; the leads it marked stay marked."""
    await require_lead_management(uow)
    model = await _model(uow, id_)
    before = audit.qualification_model(model)
    model.stop()
    await uow.qualification_models.save(model)
    await audit.record(uow, "stop", _QM, model.id, before, audit.qualification_model(model))
    return model


async def delete_qualification_model(uow: UnitOfWork, id_: int) -> int:
    """Delete a model that is not LIVE."""
    await require_lead_management(uow)
    model = await _model(uow, id_)
    if model.status is ModelStatus.LIVE:
        raise Conflict("a LIVE model cannot be deleted; stop it first", ["id"])
    await uow.qualification_models.delete(id_)
    await audit.record(uow, "delete", _QM, id_, audit.qualification_model(model), None)
    return id_


@dataclass(frozen=True, slots=True)
class Preview:
    evaluated: int
    would_qualify: int
    sample_ids: Sequence[int]


async def preview_qualification_model(
    repos: Repositories, raw: Mapping[str, Any], sample: int
) -> Preview:
    """What a model would do to the leads now, changing nothing."""
    await require_lead_management(repos)
    model = build_qualification_model(raw)
    await _referenced(repos, model)
    evaluated, would, ids = await repos.qualification_models.preview(
        model, max(0, min(sample, MAX_SAMPLE))
    )
    return Preview(evaluated, would, ids)


# ---------------------------------------------------------------- qualifying leads


async def qualify_leads(uow: UnitOfWork, lead_ids: Sequence[int], now: datetime) -> None:
    """Evaluate the LIVE qualification models for these leads, set-based (after bulk scoring)."""
    if not lead_ids:
        return
    for model in await uow.qualification_models.live():
        await uow.qualification_models.apply(model, now, lead_ids)


async def qualify_lead(
    uow: UnitOfWork,
    lead: Lead,
    scores: Mapping[int, float],
    models: Sequence[QualificationModel],
    now: datetime,
    before: Mapping[int, float] | None = None,
) -> bool:
    """Apply the LIVE models to one lead whose scores were just computed; True if it changed.

    `scores` holds every LIVE scoring model's score for the lead, and a LIVE qualification
    model only uses LIVE scoring models, so nothing else needs reading. `before`: the scores
    they replaced (see decide); None marks on the criteria alone.
    """
    changed = False
    for model in models:
        decision = decide(model, lead, scores, before)
        if decision.marketing_qualified:
            previous = lead.status_reason
            lead.status_reason = LeadStatusReason.MARKETING_QUALIFIED
            marked = lead_snapshot(
                lead, qualificationModelId=model.id, previousStatusReason=previous.value
            )
            await uow.events.add(lead.id, "MARKETING_QUALIFIED", marked, now)
        if decision.sales_ready:
            lead.sales_ready = True
            marked = lead_snapshot(lead, qualificationModelId=model.id, previousSalesReady=False)
            await uow.events.add(lead.id, "SALES_READY", marked, now)
            # sales-ready: on to sales acceptance
            moved = sales.follow_checkboxes(lead, ("sales_ready",))
            if moved is not None:
                await uow.events.add(lead.id, moved.type, moved.payload, now)
        if decision:
            changed = True
    if changed:
        lead.updated_at = now
        await uow.leads.save(lead)
    return changed

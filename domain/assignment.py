"""Assignment: a lead that becomes sales-ready goes to a seller, by the first rule that fits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from domain.model import Lead, LeadState
from domain.ports import UnitOfWork
from domain.sales import assign
from domain.scoring import holds
from domain.subjects import subjects_for


def _waiting(lead: Lead, require_ready: bool) -> bool:
    ready = lead.sales_ready or not require_ready
    return ready and lead.owner_id is None and lead.state is LeadState.OPEN


async def assign_by_rules(
    uow: UnitOfWork, leads: Sequence[Lead], now: datetime, *, require_ready: bool = True
) -> list[Lead]:
    """Give each OPEN, sales-ready lead without an owner one, by the active rules; in id order.

    Saves the leads it assigned (with their ASSIGNED events) and the rules' round-robin
    cursors, in the caller's transaction, and returns those leads. `require_ready=False`
    (an explicit request) assigns leads that are not sales-ready yet too.
    """
    waiting = sorted(
        (lead for lead in leads if _waiting(lead, require_ready)), key=lambda lead: lead.id
    )
    if not waiting:
        return []
    rules = await uow.assignment_rules.all(active_only=True)
    if not rules:
        return []
    subjects = await subjects_for(uow, waiting)
    members = await uow.users.in_teams(sorted({r.team_id for r in rules}))
    loads = await uow.users.open_leads([u.id for team in members.values() for u in team])
    assigned: list[Lead] = []
    events: list[tuple[int, str, dict[str, Any]]] = []
    moved = set()
    for lead in waiting:
        for rule in rules:
            if rule.condition is not None and not holds(rule.condition, subjects[lead.id], now):
                continue
            user = rule.choose(members.get(rule.team_id, []), loads)
            if user is None:
                continue  # an empty team: the next rule may have someone
            change = assign(lead, user)
            if change is not None:
                events.append((lead.id, change.type, change.payload))
                assigned.append(lead)
            loads[user.id] = loads.get(user.id, 0) + 1
            rule.last_user_id = user.id
            moved.add(rule.id)
            break
    if assigned:
        await uow.leads.save_many(assigned)
        await uow.events.add_many(events, now)
    for rule in rules:
        if rule.id in moved:
            await uow.assignment_rules.save_cursor(rule)
    return assigned


async def assign_ready(uow: UnitOfWork, lead_ids: Sequence[int] | None, now: datetime) -> None:
    """Assign the leads among `lead_ids` (or all) that wait for an owner (after bulk work)."""
    await assign_by_rules(uow, await uow.leads.ready_to_assign(lead_ids), now)

"""Sales use cases: stages by hand, the process checkboxes, qualify, disqualify, reactivate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain import sales, sequences
from domain.assignment import assign_by_rules
from domain.errors import Conflict, Invalid, NotFound
from domain.fields import CONTACT_FIELDS
from domain.matching import lock_keys, match_values, strategies_for
from domain.model import (
    Account,
    Contact,
    Lead,
    LeadSource,
    LeadStage,
    LeadState,
    LeadStatusReason,
    MatchEntity,
    utcnow,
)
from domain.ports import UnitOfWork
from domain.sales import Change, Opportunity, OpportunityStatus
from domain.scoring_services import rescore_leads
from domain.services import create_lead, find_or_create_account


async def _lead(uow: UnitOfWork, id_: int, field: str = "id") -> Lead:
    """The lead, locked; NotFound naming the argument (`field`) that gave its id."""
    lead = await uow.leads.get_for_update(id_)
    if lead is None:
        raise NotFound("no lead with this id", [field])
    return lead


async def _open_lead(uow: UnitOfWork, id_: int, doing: str, field: str = "id") -> Lead:
    """The lead, locked, when it is OPEN; a closed lead is a CONFLICT for what it is `doing`."""
    lead = await _lead(uow, id_, field)
    if lead.state is not LeadState.OPEN:
        raise Conflict(
            f"the lead is {lead.state.value}: only an OPEN lead {doing} (reactivate it first)",
            [field],
        )
    return lead


async def _record(
    uow: UnitOfWork, lead: Lead, changes: list[Change | None], *, changed: bool = False
) -> None:
    """Save the lead and record its changes as events, in this transaction: when there is an
    event, or when `changed` says the lead changed in a way no event records."""
    done = [c for c in changes if c is not None]
    if not done and not changed:
        return
    await uow.leads.save(lead)
    now = utcnow()
    for change in done:
        await uow.events.add(lead.id, change.type, change.payload, now)


async def set_lead_stage(
    uow: UnitOfWork, id_: int, stage: LeadStage | None, process_stage: str | None = None
) -> Lead:
    """Put a lead in any stage by hand (STAGE_CHANGED when it moves): `stage` of the default
    process, or `process_stage` of the custom process the lead follows (whose required fields
    the lead must have)."""
    if (stage is None) == (process_stage is None):
        raise Invalid("give either stage or processStage", ["stage"])
    lead = await _open_lead(uow, id_, "moves in its process")
    if process_stage is None:
        assert stage is not None
        await _record(uow, lead, [sales.move_to(lead, stage, forward_only=False)])
        return lead
    if lead.process_id is None:
        raise Invalid(
            "the lead follows the default process; set its stage, or assign it a process",
            ["processStage"],
        )
    process = (await uow.processes.get_many([lead.process_id]))[lead.process_id]
    await _record(uow, lead, [sequences.enter_stage(lead, process, process_stage)])
    return lead


async def assign_lead_process(uow: UnitOfWork, id_: int, process_id: int | None) -> Lead:
    """Put a lead on a custom process, in its first stage (None: back to the default)."""
    lead = await _lead(uow, id_)
    process = None
    if process_id is not None:
        process = (await uow.processes.get_many([process_id])).get(process_id)
        if process is None:
            raise NotFound("no process with this id", ["processId"])
    await _record(uow, lead, [sequences.follow_process(lead, process)])
    return lead


async def create_process(uow: UnitOfWork, raw: Mapping[str, Any]) -> sequences.Process:
    return await uow.processes.add(sequences.build_process(raw))


# ---------------------------------------------------------------- sales sequences


async def create_sequence(uow: UnitOfWork, raw: Mapping[str, Any]) -> sequences.Sequence:
    return await uow.sequences.add(sequences.build_sequence(raw))


async def _sequence(uow: UnitOfWork, id_: int, path: list[str]) -> sequences.Sequence:
    found = (await uow.sequences.get_many([id_])).get(id_)
    if found is None:
        raise NotFound("no sequence with this id", path)
    return found


async def attach_sequence(uow: UnitOfWork, lead_id: int, sequence_id: int) -> sequences.SequenceRun:
    """Start a sequence on an OPEN lead without an active one (else CONFLICT)."""
    lead = await _lead(uow, lead_id, "leadId")
    sequence = await _sequence(uow, sequence_id, ["sequenceId"])
    run = sequences.start_run(lead, sequence, await uow.sequences.active_run(lead.id))
    return await uow.sequences.add_run(run)


async def complete_sequence_step(
    uow: UnitOfWork, lead_id: int, position: int, notes: str | None
) -> sequences.SequenceRun:
    """Complete the current step of the lead's active sequence (else CONFLICT) and advance;
    the done call, email or task is logged on the lead's timeline as a completed activity."""
    # Locks the lead: completions of one lead queue up.
    lead = await _open_lead(uow, lead_id, "works its sequence", "leadId")
    run = await uow.sequences.active_run(lead.id)
    sequence = await _sequence(uow, run.sequence_id, ["leadId"]) if run else None
    if run is None or sequence is None:
        raise Conflict("the lead has no active sequence", ["leadId"])
    run.sequence = sequence
    activity = sequences.complete_step(run, sequence, position, lead, notes)
    await uow.sequences.save_run(run)
    if activity is not None:
        await uow.activities.add(activity)
    return run


async def update_lead_process(uow: UnitOfWork, id_: int, flags: Mapping[str, bool]) -> Lead:
    """Tick or untick the process checkboxes; the stage follows them forward."""
    lead = await _lead(uow, id_)
    before = sales.process_flags(lead)
    changes: list[Change | None] = list(sales.update_process(lead, flags))
    await _record(uow, lead, changes, changed=sales.process_flags(lead) != before)
    await assign_by_rules(uow, [lead], utcnow())  # ticked sales-ready: to a seller, by the rules
    return lead


@dataclass(frozen=True, slots=True)
class Qualified:
    lead: Lead
    opportunity: Opportunity
    contact: Contact | None
    account: Account | None


async def _contact_for(uow: UnitOfWork, lead: Lead) -> Contact | None:
    """The lead's contact; when it has none, one matched or made from the lead's data."""
    if lead.contact_id is not None:
        return await uow.contacts.get(lead.contact_id)
    values = {
        name: value
        for name, value in {
            "firstName": lead.first_name,
            "lastName": lead.last_name,
            "email": lead.email,
            "phone": lead.phone,
            "jobTitle": lead.job_title,
        }.items()
        if value
    }
    if not values:
        return None
    strategies = strategies_for(await uow.strategies.list(), MatchEntity.CONTACT, None)
    for key in lock_keys(MatchEntity.CONTACT, strategies, values):
        await uow.lock(key)
    for strategy in strategies:
        wanted = match_values(strategy, values)
        if wanted is not None and (found := await uow.contacts.find(wanted)) is not None:
            return found
    contact = Contact()
    for name, value in values.items():
        setattr(contact, CONTACT_FIELDS[name].attr, value)
    contact, _ = await uow.contacts.add(contact)
    return contact


async def qualify_lead(uow: UnitOfWork, id_: int, raw: Mapping[str, Any]) -> Qualified:
    """Close an OPEN lead as qualified and open its opportunity.

    The contact and account come from the lead; missing ones are matched (matching strategies,
    account by name) or made from the lead's data, so qualifying never makes a duplicate.
    """
    lead = await _lead(uow, id_)
    change = sales.qualify(lead)
    opportunity = sales.build_opportunity(lead, raw)
    contact = await _contact_for(uow, lead)
    account_id = lead.account_id or (contact.account_id if contact else None)
    account = await uow.accounts.get(account_id) if account_id else None
    if account is None and lead.company_name:
        account = await find_or_create_account(uow, lead.company_name)
    if contact is not None and contact.account_id is None and account is not None:
        contact.account_id = account.id
        contact.updated_at = utcnow()
        await uow.contacts.save(contact)
    lead.contact_id = contact.id if contact else lead.contact_id
    lead.account_id = account.id if account else lead.account_id
    opportunity.contact_id = lead.contact_id
    opportunity.account_id = lead.account_id
    opportunity = await uow.opportunities.add(opportunity)
    change.payload["opportunityId"] = opportunity.id
    await _record(uow, lead, [change])
    return Qualified(await _rescored(uow, lead), opportunity, contact, account)


async def _rescored(uow: UnitOfWork, lead: Lead, *, reopened: bool = False) -> Lead:
    """Score a lead whose state (or contact and account) just changed with the LIVE models (a
    rule may read its state) and the lead as that left it; a `reopened` one is marked for
    whatever holds now (a threshold it crossed while closed marks it)."""
    if await rescore_leads(uow, [lead.id], reopened=reopened):
        return await _lead(uow, lead.id)
    return lead


async def update_opportunity(uow: UnitOfWork, id_: int, raw: Mapping[str, Any]) -> Opportunity:
    """Change an opportunity's name, stage, value or close date, close it as WON or LOST, or
    reopen it (see domain.sales.update_opportunity). Closing it frees its lead to be
    disqualified or reactivated."""
    opportunity = await uow.opportunities.get_for_update(id_)
    if opportunity is None:
        raise NotFound("no opportunity with this id", ["id"])
    reopening = (
        opportunity.status is not OpportunityStatus.OPEN
        and raw.get("status") is OpportunityStatus.OPEN
    )
    if reopening and opportunity.lead_id is not None:
        # The lead's rules hold either way: a lead with an open opportunity stays qualified
        # (it cannot be disqualified or reactivated) and has one open opportunity at most.
        lead = await uow.leads.get_for_update(opportunity.lead_id)
        if lead is not None and lead.state is not LeadState.QUALIFIED:
            raise Conflict(
                f"its lead is {lead.state.value}: an opportunity reopens only while the lead "
                "it was made from is qualified",
                ["id"],
            )
        if await uow.opportunities.has_open(opportunity.lead_id):
            raise Conflict("the lead it was made from has another open opportunity", ["id"])
    sales.update_opportunity(opportunity, raw)
    await uow.opportunities.save(opportunity)
    return opportunity


async def disqualify_lead(uow: UnitOfWork, id_: int, reason: LeadStatusReason) -> Lead:
    """Close a lead with a reason (not while an opportunity made from it is open)."""
    lead = await _lead(uow, id_)
    change = sales.disqualify(lead, reason, await uow.opportunities.has_open(lead.id))
    await _record(uow, lead, [change])
    return await _rescored(uow, lead)


async def reactivate_lead(uow: UnitOfWork, id_: int) -> Lead:
    """Open a closed lead again."""
    lead = await _lead(uow, id_)
    change = sales.reactivate(lead, await uow.opportunities.has_open(lead.id))
    await _record(uow, lead, [change])
    return await _rescored(uow, lead, reopened=True)


# ---------------------------------------------------------------- users, teams, assignment


async def create_team(uow: UnitOfWork, raw: Mapping[str, Any]) -> sales.Team:
    return await uow.teams.add(sales.build_team(raw))


async def create_user(uow: UnitOfWork, raw: Mapping[str, Any]) -> sales.User:
    """A new seller, teleprospector or manager; the team must exist; emails are unique."""
    user = sales.build_user(raw)
    if user.team_id is not None and not await uow.teams.get_many([user.team_id]):
        raise NotFound("no team with this id", ["input", "teamId"])
    return await uow.users.add(user)


async def assign_lead(uow: UnitOfWork, id_: int, user_id: int | None) -> Lead:
    """Make a user the lead's owner; without one, the assignment rules choose.

    ASSIGNED is recorded when the owner changes.
    """
    if user_id is None:
        lead = await _open_lead(
            uow, id_, "is assigned by the rules; give a userId to assign it by hand"
        )
        if lead.owner_id is None and not await assign_by_rules(
            uow, [lead], utcnow(), require_ready=False
        ):
            raise Conflict("no active assignment rule has someone for this lead", ["id"])
        return lead
    lead = await _lead(uow, id_)
    user = (await uow.users.get_many([user_id])).get(user_id)
    if user is None:
        raise NotFound("no user with this id", ["userId"])
    await _record(uow, lead, [sales.assign(lead, user)])
    return lead


async def create_assignment_rule(uow: UnitOfWork, raw: Mapping[str, Any]) -> sales.AssignmentRule:
    """A rule for the leads that become sales-ready (the team must exist)."""
    rule = sales.build_assignment_rule(raw)
    if not await uow.teams.get_many([rule.team_id]):
        raise NotFound("no team with this id", ["input", "teamId"])
    return await uow.assignment_rules.add(rule)


# ---------------------------------------------------------------- stakeholders and competitors


async def add_stakeholder(
    uow: UnitOfWork, lead_id: int, contact_id: int, role: str
) -> sales.Stakeholder:
    """Put a contact on the lead's buying committee (again: its role changes)."""
    await _lead(uow, lead_id, "leadId")
    if await uow.contacts.get(contact_id) is None:
        raise NotFound("no contact with this id", ["input", "contactId"])
    return await uow.stakeholders.add_stakeholder(
        sales.build_stakeholder(lead_id, contact_id, role)
    )


async def remove_stakeholder(uow: UnitOfWork, lead_id: int, contact_id: int) -> int:
    if not await uow.stakeholders.remove_stakeholder(lead_id, contact_id):
        raise NotFound("this contact is not a stakeholder of the lead", ["contactId"])
    return contact_id


async def add_competitor(
    uow: UnitOfWork, lead_id: int, name: str, notes: str | None
) -> sales.Competitor:
    await _lead(uow, lead_id, "leadId")
    return await uow.stakeholders.add_competitor(sales.build_competitor(lead_id, name, notes))


async def remove_competitor(uow: UnitOfWork, lead_id: int, competitor_id: int) -> int:
    if not await uow.stakeholders.remove_competitor(lead_id, competitor_id):
        raise NotFound("no such competitor on the lead", ["competitorId"])
    return competitor_id


# ---------------------------------------------------------------- activities and the timeline


async def log_activity(uow: UnitOfWork, raw: Mapping[str, Any]) -> sales.Activity:
    """Record a call, email, appointment, task, note or post on a lead, contact or opportunity."""
    activity = sales.build_activity(raw)
    if activity.lead_id is not None and await uow.leads.get(activity.lead_id) is None:
        raise NotFound("no lead with this id", ["input", "leadId"])
    if activity.contact_id is not None and await uow.contacts.get(activity.contact_id) is None:
        raise NotFound("no contact with this id", ["input", "contactId"])
    if activity.opportunity_id is not None and not await uow.opportunities.get_many(
        [activity.opportunity_id]
    ):
        raise NotFound("no opportunity with this id", ["input", "opportunityId"])
    if activity.owner_id is not None and not await uow.users.get_many([activity.owner_id]):
        raise NotFound("no user with this id", ["input", "ownerId"])
    return await uow.activities.add(activity)


async def convert_activity_to_lead(uow: UnitOfWork, activity_id: int) -> Lead:
    """Turn a received email into a lead (source ACTIVITY) about its contact; the email joins
    the new lead's timeline."""
    activity = (await uow.activities.get_many([activity_id])).get(activity_id)
    if activity is None:
        raise NotFound("no activity with this id", ["id"])
    if activity.kind is not sales.ActivityKind.EMAIL or activity.direction is not (
        sales.Direction.INCOMING
    ):
        raise Conflict("only a received email (EMAIL, INCOMING) becomes a lead", ["id"])
    if activity.lead_id is not None:
        raise Conflict("this email already belongs to a lead", ["id"])
    values: dict[str, Any] = {"topic": activity.subject, "source": LeadSource.ACTIVITY}
    if activity.contact_id is not None:
        contact = await uow.contacts.get(activity.contact_id)
        if contact is not None:
            values.update(
                contactId=contact.id,
                email=contact.email,
                firstName=contact.first_name,
                lastName=contact.last_name,
            )
    lead = await create_lead(uow, {k: v for k, v in values.items() if v is not None})
    activity.lead_id = lead.id
    await uow.activities.save(activity)
    return lead

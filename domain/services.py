"""Use cases: plain async functions of (unit of work, command)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import audit
from domain.errors import Conflict, DomainError, Duplicate, Invalid, NotFound, ValidationErrors
from domain.events import LeadEventType, lead_snapshot
from domain.fields import (
    ACCOUNT_FIELDS,
    CONTACT_FIELDS,
    LEAD_FIELDS,
    FieldSpec,
    check_attributes,
    coerce,
    fill_empty,
    merge_attributes,
)
from domain.matching import (
    check_strategy,
    lock_keys,
    match_values,
    strategies_for,
)
from domain.model import (
    FORM_SOURCES,
    Account,
    Contact,
    Feature,
    Lead,
    LeadSource,
    MatchEntity,
    MatchingStrategy,
    utcnow,
)
from domain.ports import UnitOfWork
from domain.scoring import Interaction, InteractionType
from domain.scoring_services import rescore_everything, rescore_for_contacts, rescore_leads

MAX_FORM_ID = 200
_MS = audit.AuditEntityType.MATCHING_STRATEGY


def _collect(
    specs: Mapping[str, FieldSpec], values: Mapping[str, Any], prefix: str
) -> tuple[dict[str, Any], list[DomainError]]:
    """Coerce the standard fields present in `values` (API names) to record attributes."""
    out: dict[str, Any] = {}
    errors: list[DomainError] = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            continue
        try:
            out[spec.attr] = coerce(spec, value, [prefix, name])
        except DomainError as e:
            errors.append(e)
    return out, errors


def _raise_if(errors: list[DomainError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ValidationErrors(errors)


def _attributes(values: Mapping[str, Any], prefix: str, errors: list[DomainError]) -> Any:
    try:
        return check_attributes(values["attributes"], [prefix, "attributes"])
    except DomainError as e:
        errors.append(e)
        return None


def _require(name: str, attrs: Mapping[str, Any], errors: list[DomainError]) -> None:
    """A required text field with no value is an error, unless its value was already
    reported (too long, say): one error per field, never two that contradict each other."""
    path = ["input", name]
    if not attrs.get(name) and not any(e.field == path for e in errors):
        errors.append(Invalid(f"{name} must not be empty", path))


def _apply(record: Any, attrs: Mapping[str, Any]) -> None:
    for attr, value in attrs.items():
        setattr(record, attr, value)
    record.updated_at = utcnow()


# ---------------------------------------------------------------- accounts


async def create_account(uow: UnitOfWork, values: Mapping[str, Any]) -> Account:
    """Create an account from API-named values."""
    attrs, errors = _collect(ACCOUNT_FIELDS, values, "input")
    if "attributes" in values:
        attrs["attributes"] = _attributes(values, "input", errors)
    _require("name", attrs, errors)
    _raise_if(errors)
    return await uow.accounts.add(Account(**attrs))


async def update_account(uow: UnitOfWork, id_: int, values: Mapping[str, Any]) -> Account:
    """Change the fields present in `values`; absent fields stay as they are."""
    account = await uow.accounts.get_for_update(id_)
    if account is None:
        raise NotFound("no account with this id", ["id"])
    attrs, errors = _collect(ACCOUNT_FIELDS, values, "input")
    if "attributes" in values:
        attrs["attributes"] = _attributes(values, "input", errors)
    if "name" in values:
        _require("name", attrs, errors)
    _raise_if(errors)
    _apply(account, attrs)
    await uow.accounts.save(account)
    await rescore_leads(uow, await uow.leads.ids_for_account(account.id))
    return account


# ---------------------------------------------------------------- contacts


async def _check_account(uow: UnitOfWork, account_id: int | None, path: list[str]) -> None:
    if account_id is not None and await uow.accounts.get(account_id) is None:
        raise NotFound("no account with this id", path)


async def create_contact(uow: UnitOfWork, values: Mapping[str, Any]) -> Contact:
    """Create a contact; its email must not belong to another contact."""
    attrs, errors = _collect(CONTACT_FIELDS, values, "input")
    if "attributes" in values:
        attrs["attributes"] = _attributes(values, "input", errors)
    _raise_if(errors)
    account_id = values.get("accountId")
    await _check_account(uow, account_id, ["input", "accountId"])
    email = attrs.get("email")
    if email:
        await uow.lock(f"contact-email:{email}")
        if await uow.contacts.email_taken(email):
            raise Duplicate(f"a contact with email {email} exists", ["input", "email"])
    contact, created = await uow.contacts.add(Contact(account_id=account_id, **attrs))
    if not created:
        raise Duplicate(f"a contact with email {email} exists", ["input", "email"])
    return contact


async def update_contact(uow: UnitOfWork, id_: int, values: Mapping[str, Any]) -> Contact:
    """Change the fields present in `values`."""
    contact = await uow.contacts.get_for_update(id_)
    if contact is None:
        raise NotFound("no contact with this id", ["id"])
    attrs, errors = _collect(CONTACT_FIELDS, values, "input")
    if "attributes" in values:
        attrs["attributes"] = _attributes(values, "input", errors)
    _raise_if(errors)
    if "accountId" in values:
        await _check_account(uow, values["accountId"], ["input", "accountId"])
        attrs["account_id"] = values["accountId"]
    email = attrs.get("email")
    if email and email != contact.email:
        await uow.lock(f"contact-email:{email}")
        if await uow.contacts.email_taken(email, except_id=contact.id):
            raise Duplicate(f"a contact with email {email} exists", ["input", "email"])
    left = (
        contact.account_id
        if attrs.get("account_id", contact.account_id) != contact.account_id
        else None
    )
    _apply(contact, attrs)
    await uow.contacts.save(contact)
    affected = list(await uow.leads.ids_for_contacts([contact.id]))
    if left is not None:  # the account it left no longer counts its interactions
        affected += await uow.leads.ids_for_account(left)
    await rescore_leads(uow, affected)
    return contact


# ---------------------------------------------------------------- leads


async def _lead_links(uow: UnitOfWork, values: Mapping[str, Any], lead: Lead) -> None:
    """Apply contactId/accountId from `values`; a contact brings its account along (also in
    place of the account the previous contact brought, unless accountId is given)."""
    if "contactId" in values:
        contact_id = values["contactId"]
        if contact_id is not None and contact_id != lead.contact_id:
            contact = await uow.contacts.get(contact_id)
            if contact is None:
                raise NotFound("no contact with this id", ["input", "contactId"])
            previous = await uow.contacts.get(lead.contact_id) if lead.contact_id else None
            came_along = previous is not None and previous.account_id == lead.account_id
            if "accountId" not in values and (lead.account_id is None or came_along):
                lead.account_id = contact.account_id
        lead.contact_id = contact_id
    if "accountId" in values:
        await _check_account(uow, values["accountId"], ["input", "accountId"])
        lead.account_id = values["accountId"]


async def record_created(uow: UnitOfWork, leads: Sequence[Lead]) -> None:
    """Record a CREATED event per new lead, in the transaction that creates them."""
    if leads:
        created = LeadEventType.CREATED.value
        await uow.events.add_many(
            [(lead.id, created, lead_snapshot(lead)) for lead in leads], utcnow()
        )


async def create_lead(uow: UnitOfWork, values: Mapping[str, Any]) -> Lead:
    """Create a lead, optionally linked to a contact and/or account."""
    attrs, errors = _collect(LEAD_FIELDS, values, "input")
    if "attributes" in values:
        attrs["attributes"] = _attributes(values, "input", errors)
    _require("topic", attrs, errors)
    _raise_if(errors)
    lead = Lead(**attrs)
    if values.get("source") is not None:
        lead.source = values["source"]
    await _lead_links(uow, values, lead)
    lead = await uow.leads.add(lead)
    await record_created(uow, [lead])
    await rescore_leads(uow, [lead.id])
    # Scoring may have qualified, marked or moved it: answer with the lead as stored now.
    return (await uow.leads.get(lead.id)) or lead


async def update_lead(uow: UnitOfWork, id_: int, values: Mapping[str, Any]) -> Lead:
    """Change the fields present in `values`."""
    lead = await uow.leads.get_for_update(id_)
    if lead is None:
        raise NotFound("no lead with this id", ["id"])
    attrs, errors = _collect(LEAD_FIELDS, values, "input")
    if "attributes" in values:
        attrs["attributes"] = _attributes(values, "input", errors)
    if "topic" in values:
        _require("topic", attrs, errors)
    _raise_if(errors)
    if values.get("source") is not None:
        attrs["source"] = values["source"]
    await _lead_links(uow, values, lead)
    _apply(lead, attrs)
    await uow.leads.save(lead)
    await rescore_leads(uow, [lead.id])
    return (await uow.leads.get(lead.id)) or lead


# ---------------------------------------------------------------- capture


@dataclass(frozen=True, slots=True)
class FormSubmission:
    form_id: str
    fields: Mapping[str, Any]
    source: LeadSource = LeadSource.LANDING_PAGE
    create_lead: bool = True
    topic: str | None = None
    submitted_at: datetime | None = None


@dataclass(slots=True)
class CaptureResult:
    contact: Contact
    lead: Lead | None
    contact_created: bool
    lead_created: bool


_KEY_CHARS = re.compile(r"[\s_\-]")
_ALL_FIELDS = {**CONTACT_FIELDS, **LEAD_FIELDS}
_CANONICAL = {_KEY_CHARS.sub("", name).lower(): name for name in _ALL_FIELDS}
_CANONICAL.update({"company": "companyName", "accountname": "companyName", "title": "jobTitle"})


def canonical_field(key: str) -> str | None:
    """The standard field a submitted key names ('first_name', 'First Name' → firstName)."""
    return _CANONICAL.get(_KEY_CHARS.sub("", key).lower())


def _split_form_fields(
    fields: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], list[DomainError]]:
    """Standard fields (API names, coerced) and custom attributes of a submission."""
    standard: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    errors: list[DomainError] = []
    for key, value in fields.items():
        name = canonical_field(key)
        path = ["input", "fields", key]
        if name is None:
            if value is not None and not isinstance(value, str | int | float | bool):
                errors.append(Invalid(f"field {key} must be a string, number or boolean", path))
            elif len(key) > 100:
                errors.append(Invalid("field names are at most 100 characters", path))
            else:
                custom[key] = value
            continue
        try:
            standard[name] = coerce(_ALL_FIELDS[name], value, path)
        except DomainError as e:
            errors.append(e)
    try:
        check_attributes(custom, ["input", "fields"])
    except DomainError as e:
        errors.append(e)
    return standard, custom, errors


def _values_for(specs: Mapping[str, FieldSpec], standard: Mapping[str, Any]) -> dict[str, Any]:
    return {name: v for name, v in standard.items() if name in specs and v is not None}


async def find_or_create_account(uow: UnitOfWork, name: str) -> Account:
    """The account with this name (case-insensitive), created when there is none."""
    await uow.lock(f"account-name:{name.lower()}")
    found = await uow.accounts.find_by_names([name])
    account = found.get(name.lower())
    if account is None:
        account = await uow.accounts.add(Account(name=name))
    return account


async def submit_form(uow: UnitOfWork, cmd: FormSubmission) -> CaptureResult:
    """Find or create the contact (and lead) a form submission is about, per matching strategies."""
    errors: list[DomainError] = []
    form_id = cmd.form_id.strip()
    if not form_id or len(form_id) > MAX_FORM_ID:
        errors.append(Invalid(f"formId must be 1 to {MAX_FORM_ID} characters", ["input", "formId"]))
    if cmd.source not in FORM_SOURCES:
        allowed = ", ".join(sorted(s.value for s in FORM_SOURCES))
        errors.append(Invalid(f"source must be one of {allowed}", ["input", "source"]))
    if not isinstance(cmd.fields, Mapping):
        raise Invalid("fields must be a JSON object", ["input", "fields"])
    standard, custom, field_errors = _split_form_fields(cmd.fields)
    errors.extend(field_errors)
    topic = (cmd.topic or "").strip() or standard.get("topic")
    if topic is not None and len(topic) > 1000:
        errors.append(Invalid("topic is longer than 1000 characters", ["input", "topic"]))
    _raise_if(errors)

    strategies = await uow.strategies.list()
    contact_values = _values_for(CONTACT_FIELDS, standard)
    contact_strategies = strategies_for(strategies, MatchEntity.CONTACT, form_id)
    for key in lock_keys(MatchEntity.CONTACT, contact_strategies, contact_values):
        await uow.lock(key)
    contact: Contact | None = None
    for strategy in contact_strategies:
        wanted = match_values(strategy, contact_values)
        if wanted is not None and (contact := await uow.contacts.find(wanted)) is not None:
            break
    contact_created = False
    if contact is None:
        attrs = {CONTACT_FIELDS[n].attr: v for n, v in contact_values.items()}
        contact, contact_created = await uow.contacts.add(Contact(attributes=dict(custom), **attrs))
    if not contact_created:
        fill = dict(contact_values)
        email = fill.get("email")
        if not contact.email and email and await uow.contacts.email_taken(email, contact.id):
            # Matched by another strategy; the email belongs to someone else and stays theirs.
            del fill["email"]
        changed = fill_empty(contact, CONTACT_FIELDS, fill)
        changed = merge_attributes(contact, custom) or changed
        if changed:
            contact.updated_at = utcnow()
            await uow.contacts.save(contact)

    company = standard.get("companyName")
    if company and contact.account_id is None:
        account = await find_or_create_account(uow, company)
        contact.account_id = account.id
        contact.updated_at = utcnow()
        await uow.contacts.save(contact)

    lead: Lead | None = None
    lead_created = False
    if cmd.create_lead:
        lead_values = _values_for(LEAD_FIELDS, standard)
        lead_values["marketingContext"] = form_id
        lead_values["topic"] = topic or f"Submission of {form_id}"
        lead_strategies = strategies_for(strategies, MatchEntity.LEAD, form_id)
        for key in lock_keys(MatchEntity.LEAD, lead_strategies, lead_values):
            await uow.lock(key)
        for strategy in lead_strategies:
            wanted = match_values(strategy, lead_values)
            if wanted is not None and (lead := await uow.leads.find(wanted)) is not None:
                break
        if lead is None:
            attrs = {LEAD_FIELDS[n].attr: v for n, v in lead_values.items()}
            lead = await uow.leads.add(
                Lead(
                    source=cmd.source,
                    contact_id=contact.id,
                    account_id=contact.account_id,
                    attributes=dict(custom),
                    **attrs,
                )
            )
            lead_created = True
            await record_created(uow, [lead])
        else:
            changed = fill_empty(lead, LEAD_FIELDS, lead_values)
            changed = merge_attributes(lead, custom) or changed
            if lead.contact_id is None:
                lead.contact_id, changed = contact.id, True
            if lead.account_id is None and contact.account_id is not None:
                lead.account_id, changed = contact.account_id, True
            if changed:
                lead.updated_at = utcnow()
                await uow.leads.save(lead)
    # The submission is an interaction of the contact's, credited for scoring at once.
    kind = (
        InteractionType.EVENT_REGISTERED
        if cmd.source is LeadSource.EVENT_REGISTRATION
        else InteractionType.FORM_SUBMITTED
    )
    await uow.interactions.add(
        Interaction(
            contact_id=contact.id,
            type=kind,
            occurred_at=cmd.submitted_at or utcnow(),
            name=form_id,
            properties={"formId": form_id, "source": cmd.source.value},
        )
    )
    await rescore_for_contacts(uow, [contact.id], utcnow())
    if lead is not None:
        lead = (await uow.leads.get(lead.id)) or lead
    return CaptureResult(contact, lead, contact_created, lead_created)


# ---------------------------------------------------------------- matching strategies


async def create_strategy(uow: UnitOfWork, strategy: MatchingStrategy) -> MatchingStrategy:
    """Add a matching strategy after checking its fields."""
    check_strategy(strategy)
    saved = await uow.strategies.add(strategy)
    await audit.record(uow, "create", _MS, saved.id, None, audit.matching_strategy(saved))
    return saved


async def _is_last_default(uow: UnitOfWork, strategy: MatchingStrategy) -> bool:
    if not strategy.is_default:
        return False
    defaults = [s for s in await uow.strategies.list(strategy.entity) if s.is_default]
    return len(defaults) <= 1


async def update_strategy(uow: UnitOfWork, id_: int, changes: MatchingStrategy) -> MatchingStrategy:
    """Replace a strategy's definition; the last default of an entity must stay a default."""
    await uow.lock("matching-strategies")
    current = await uow.strategies.get(id_)
    if current is None:
        raise NotFound("no matching strategy with this id", ["id"])
    check_strategy(changes)
    leaves_defaults = not changes.is_default or changes.entity != current.entity
    if leaves_defaults and await _is_last_default(uow, current):
        raise Conflict(
            f"this is the last default {current.entity.value} strategy; make another default first",
            ["input", "isDefault"],
        )
    changes.id = current.id
    await uow.strategies.save(changes)
    before, after = audit.matching_strategy(current), audit.matching_strategy(changes)
    await audit.record(uow, "update", _MS, current.id, before, after)
    return changes


async def delete_strategy(uow: UnitOfWork, id_: int) -> int:
    """Delete a strategy unless it is the last default of its entity."""
    await uow.lock("matching-strategies")
    current = await uow.strategies.get(id_)
    if current is None:
        raise NotFound("no matching strategy with this id", ["id"])
    if await _is_last_default(uow, current):
        raise Conflict(
            f"the last default {current.entity.value} strategy cannot be deleted", ["id"]
        )
    await uow.strategies.delete(id_)
    await audit.record(uow, "delete", _MS, id_, audit.matching_strategy(current), None)
    return id_


# ---------------------------------------------------------------- settings


async def set_feature(uow: UnitOfWork, feature: Feature, enabled: bool) -> None:
    """Turn a feature switch on or off. Turning lead management back on scores every lead with
    the LIVE models in the same transaction: what was recorded or changed while it was off
    counts from then on."""
    was = await uow.settings.feature_enabled(feature)
    await uow.settings.set_feature(feature, enabled)
    if feature is Feature.LEAD_MANAGEMENT and enabled and not was:
        await rescore_everything(uow, utcnow())
    await audit.record(
        uow,
        "set",
        audit.AuditEntityType.FEATURE_SWITCH,
        feature.value,
        {"feature": feature.value, "enabled": was},
        {"feature": feature.value, "enabled": enabled},
    )

"""Importing CSV files of contacts, leads or accounts, with matching applied row by row."""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.errors import DomainError, Invalid
from domain.fields import (
    ACCOUNT_FIELDS,
    CONTACT_FIELDS,
    LEAD_FIELDS,
    MAX_ATTRIBUTE_NAME,
    FieldSpec,
    check_attributes,
    coerce,
    fill_empty,
    merge_attributes,
)
from domain.matching import match_key, match_values, strategies_for
from domain.model import Account, Contact, Lead, LeadSource, MatchEntity, MatchingStrategy, utcnow
from domain.ports import UnitOfWork
from domain.scoring_services import rescore_leads, score_new_leads
from domain.services import canonical_field, record_created

MAX_CSV_BYTES = 20 * 1024 * 1024
ROWS_PER_CHUNK = 1000


class ImportEntity(enum.Enum):
    CONTACT = "CONTACT"
    LEAD = "LEAD"
    ACCOUNT = "ACCOUNT"


_SPECS: dict[ImportEntity, dict[str, FieldSpec]] = {
    ImportEntity.CONTACT: dict(CONTACT_FIELDS),
    ImportEntity.LEAD: dict(LEAD_FIELDS),
    ImportEntity.ACCOUNT: dict(ACCOUNT_FIELDS),
}
# Fields an import may set beyond the record's own: the account a contact belongs to.
MATCH_SPECS = {MatchEntity.CONTACT: CONTACT_FIELDS, MatchEntity.LEAD: LEAD_FIELDS}
_EXTRA = {
    ImportEntity.CONTACT: {"companyName"},
    ImportEntity.LEAD: set(),
    ImportEntity.ACCOUNT: set(),
}


@dataclass(slots=True)
class ImportResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def add(self, other: ImportResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.skipped += other.skipped
        self.failed += other.failed
        self.errors.extend(other.errors)


@dataclass(frozen=True, slots=True)
class Row:
    number: int  # 1-based data row, header excluded
    values: dict[str, Any]  # API field names, or "attributes.<key>"


def _target(entity: ImportEntity, name: str) -> str | None:
    """The field a column or mapping target names, or None when it names none."""
    if name.startswith("attributes.") and len(name) > len("attributes."):
        return name if len(name) - len("attributes.") <= MAX_ATTRIBUTE_NAME else None
    if entity is ImportEntity.ACCOUNT:
        lowered = name.replace("_", "").replace(" ", "").lower()
        by_key = {n.lower(): n for n in ACCOUNT_FIELDS}
        by_key.update({"accountname": "name", "company": "name", "companyname": "name"})
        return by_key.get(lowered)
    canonical = canonical_field(name)
    if canonical in _SPECS[entity] or canonical in _EXTRA[entity]:
        return canonical
    return None


def column_plan(
    entity: ImportEntity, header: Sequence[str], mapping: Mapping[str, Any] | None
) -> dict[int, str]:
    """Which CSV column feeds which field: the mapping first, then columns named like fields."""
    if mapping is not None and not isinstance(mapping, Mapping):
        raise Invalid("mapping must be a JSON object of column → field", ["input", "mapping"])
    mapping = mapping or {}
    plan: dict[int, str] = {}
    for column, target in mapping.items():
        if column not in header:
            raise Invalid(f"the CSV has no column '{column}'", ["input", "mapping", column])
        if target is None or target == "":
            continue
        name = _target(entity, str(target))
        if name is None:
            allowed = ", ".join(sorted([*_SPECS[entity], *_EXTRA[entity], "attributes.<key>"]))
            raise Invalid(
                f"'{str(target)[:120]}' is not a {entity.value} field; use one of {allowed} "
                f"(a key of at most {MAX_ATTRIBUTE_NAME} characters)",
                ["input", "mapping", column],
            )
        plan[header.index(column)] = name
    for i, column in enumerate(header):
        if column not in mapping and (name := _target(entity, column)) is not None:
            plan[i] = name
    if len(set(plan.values())) != len(plan):
        raise Invalid("two columns map to the same field", ["input", "mapping"])
    if not plan:
        raise Invalid("no column maps to a field; give a mapping", ["input", "mapping"])
    return plan


def read_csv(
    text: str, entity: ImportEntity, mapping: Mapping[str, Any] | None
) -> tuple[dict[int, str], Iterator[Row]]:
    """The column plan and the rows of a CSV document (header on the first line)."""
    if len(text) > MAX_CSV_BYTES:
        raise Invalid(f"the CSV is larger than {MAX_CSV_BYTES} bytes", ["input", "csv"])
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise Invalid("the CSV is empty", ["input", "csv"]) from None
    except csv.Error as e:
        raise Invalid(f"the CSV cannot be read: {e}", ["input", "csv"]) from None
    plan = column_plan(entity, header, mapping)

    def rows() -> Iterator[Row]:
        number = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                number += 1
                yield Row(number, {"__error__": f"unreadable line: {e}"})
                continue
            number += 1
            yield Row(number, {name: cells[i] for i, name in plan.items() if i < len(cells)})

    return plan, rows()


def _parse_row(entity: ImportEntity, row: Row) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(standard values, custom attributes) of a row, or the row's error message."""
    if "__error__" in row.values:
        return str(row.values["__error__"])
    specs = _SPECS[entity]
    standard: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    problems: list[str] = []
    for name, raw in row.values.items():
        if name.startswith("attributes."):
            if raw.strip():
                custom[name[len("attributes.") :]] = raw.strip()
            continue
        spec = specs.get(name) or FieldSpec(name, name)
        try:
            value = coerce(spec, raw, [name])
        except DomainError as e:
            problems.append(e.message)
            continue
        if value is not None:
            standard[name] = value
    if problems:
        return "; ".join(problems)
    try:
        check_attributes(custom, ["attributes"])  # as createContact and the others check them
    except DomainError as e:
        return e.message
    return standard, custom


async def _index(
    uow: UnitOfWork,
    entity: MatchEntity,
    strategies: Sequence[MatchingStrategy],
    candidates: Sequence[Mapping[str, Any]],
) -> dict[tuple[Any, ...], Any]:
    """Existing records matching any candidate, keyed by each strategy's match key."""
    index: dict[tuple[Any, ...], Any] = {}
    repo: Any = uow.contacts if entity is MatchEntity.CONTACT else uow.leads
    fetched: dict[tuple[str, tuple[str, ...]], list[Any]] = {}  # strategies often share a field
    for strategy in strategies:
        first = strategy.fields[0]
        values = tuple(sorted({str(c[first]) for c in candidates if match_values(strategy, c)}))
        if not values:
            continue
        if (first, values) not in fetched:
            fetched[first, values] = await repo.find_many(first, list(values))
        for record in fetched[first, values]:
            key_values = {n: getattr(record, MATCH_SPECS[entity][n].attr) for n in strategy.fields}
            if all(v not in (None, "") for v in key_values.values()):
                index.setdefault((strategy.id, *match_key(key_values)), record)
    return index


def _lookup(
    index: Mapping[tuple[Any, ...], Any],
    strategies: Sequence[MatchingStrategy],
    values: Mapping[str, Any],
) -> Any:
    for strategy in strategies:
        wanted = match_values(strategy, values)
        if wanted is not None and (hit := index.get((strategy.id, *match_key(wanted)))):
            return hit
    return None


def _remember(
    index: dict[tuple[Any, ...], Any],
    strategies: Sequence[MatchingStrategy],
    values: Mapping[str, Any],
    record: Any,
) -> None:
    for strategy in strategies:
        wanted = match_values(strategy, values)
        if wanted is not None:
            index.setdefault((strategy.id, *match_key(wanted)), record)


async def _accounts_by_name(uow: UnitOfWork, names: Sequence[str]) -> dict[str, Account]:
    """Accounts for these names, creating the missing ones as the first row spells them."""
    if not names:
        return {}
    found = await uow.accounts.find_by_names(sorted(names))
    missing: dict[str, str] = {}
    for n in names:
        if n.lower() not in found:
            missing.setdefault(n.lower(), n)
    if missing:
        await uow.accounts.add_many([Account(name=n) for n in missing.values()])
        found = await uow.accounts.find_by_names(sorted(names))
    return found


async def import_chunk(uow: UnitOfWork, entity: ImportEntity, rows: Sequence[Row]) -> ImportResult:
    """Import up to a chunk of rows in the caller's transaction; bad rows write nothing."""
    result = ImportResult()
    parsed: list[tuple[Row, dict[str, Any], dict[str, Any]]] = []
    for row in rows:
        outcome = _parse_row(entity, row)
        if isinstance(outcome, str):
            result.failed += 1
            result.errors.append((row.number, outcome))
            continue
        standard, custom = outcome
        if not standard and not custom:
            result.skipped += 1
            continue
        if entity is ImportEntity.ACCOUNT and not standard.get("name"):
            result.failed += 1
            result.errors.append((row.number, "name is required"))
            continue
        if entity is ImportEntity.LEAD and not standard.get("topic"):
            result.failed += 1
            result.errors.append((row.number, "topic is required"))
            continue
        parsed.append((row, standard, custom))
    if entity is ImportEntity.ACCOUNT:
        await _import_accounts(uow, parsed, result)
    elif entity is ImportEntity.CONTACT:
        await _import_contacts(uow, parsed, result)
    else:
        await _import_leads(uow, parsed, result)
    return result


Parsed = Sequence[tuple[Row, dict[str, Any], dict[str, Any]]]


def _merged(record: Any, custom: Mapping[str, Any], row: Row, result: ImportResult) -> bool | None:
    """Add a row's custom attributes to a record it matched: whether that changed it, or None
    (the row failed, the record unchanged) when they would not fit."""
    try:
        return merge_attributes(record, custom)
    except DomainError as e:
        result.failed += 1
        result.errors.append((row.number, e.message))
        return None


async def _import_accounts(uow: UnitOfWork, parsed: Parsed, result: ImportResult) -> None:
    found = await uow.accounts.find_by_names(sorted({s["name"] for _, s, _ in parsed}))
    new: dict[str, Account] = {}
    changed: dict[int, Account] = {}
    for row, standard, custom in parsed:
        key = standard["name"].lower()
        account = found.get(key) or new.get(key)
        if account is None:
            attrs = {ACCOUNT_FIELDS[n].attr: v for n, v in standard.items()}
            new[key] = Account(attributes=custom, **attrs)
            result.created += 1
            continue
        merged = _merged(account, custom, row, result)
        if merged is None:
            continue
        touched = fill_empty(account, ACCOUNT_FIELDS, standard) or merged
        if touched:
            account.updated_at = utcnow()
            if account.id:
                changed[account.id] = account
            result.updated += 1
        else:
            result.skipped += 1
    await uow.accounts.add_many(list(new.values()))
    await uow.accounts.save_many(list(changed.values()))
    # Changed fields count for the leads scored on these accounts, as updateAccount's do.
    affected = [i for account_id in changed for i in await uow.leads.ids_for_account(account_id)]
    await rescore_leads(uow, affected)


async def _import_contacts(uow: UnitOfWork, parsed: Parsed, result: ImportResult) -> None:
    strategies = strategies_for(await uow.strategies.list(), MatchEntity.CONTACT, None)
    by_email = MatchingStrategy("email", MatchEntity.CONTACT, ["email"], id=-1)
    candidates = [s for _, s, _ in parsed]
    index = await _index(uow, MatchEntity.CONTACT, [*strategies, by_email], candidates)
    accounts = await _accounts_by_name(
        uow, list(dict.fromkeys(s["companyName"] for _, s, _ in parsed if s.get("companyName")))
    )
    new: list[Contact] = []
    changed: dict[int, Contact] = {}
    joined: set[int] = set()  # accounts existing contacts joined
    for row, standard, custom in parsed:
        company = standard.pop("companyName", None)
        account_id = accounts[company.lower()].id if company else None
        # The email is unique, so a contact with it is the match whatever the strategies say.
        contact = _lookup(index, [*strategies, by_email], standard)
        if contact is None:
            attrs = {CONTACT_FIELDS[n].attr: v for n, v in standard.items()}
            contact = Contact(account_id=account_id, attributes=custom, **attrs)
            new.append(contact)
            _remember(index, [*strategies, by_email], standard, contact)
            result.created += 1
            continue
        fill = standard
        email = standard.get("email")
        if not contact.email and email:
            owner = index.get((by_email.id, *match_key({"email": email})))
            if owner is not None and owner is not contact:
                # Matched by another strategy; the email belongs to someone else.
                fill = {k: v for k, v in standard.items() if k != "email"}
        merged = _merged(contact, custom, row, result)
        if merged is None:
            continue
        touched = fill_empty(contact, CONTACT_FIELDS, fill) or merged
        if contact.account_id is None and account_id is not None:
            contact.account_id, touched = account_id, True
            joined.add(account_id)
        if touched:
            contact.updated_at = utcnow()
            if contact.id:
                changed[contact.id] = contact
            result.updated += 1
        else:
            result.skipped += 1
    await uow.contacts.add_many(new)
    await uow.contacts.save_many(list(changed.values()))
    # As updateContact: the contacts' leads, and the account-based leads of accounts a contact
    # joined (they now count its interactions).
    affected = list(await uow.leads.ids_for_contacts(list(changed)))
    for account_id in sorted(joined):
        affected += await uow.leads.ids_for_account(account_id)
    await rescore_leads(uow, affected)


async def _import_leads(uow: UnitOfWork, parsed: Parsed, result: ImportResult) -> None:
    strategies = strategies_for(await uow.strategies.list(), MatchEntity.LEAD, None)
    candidates = [s for _, s, _ in parsed]
    index = await _index(uow, MatchEntity.LEAD, strategies, candidates)
    emails = sorted({s["email"] for s in candidates if s.get("email")})
    contacts = {c.email: c for c in await uow.contacts.find_many("email", emails)} if emails else {}
    new: list[Lead] = []
    changed: dict[int, Lead] = {}
    for row, standard, custom in parsed:
        contact = contacts.get(standard.get("email"))
        lead = _lookup(index, strategies, standard)
        if lead is None:
            attrs = {LEAD_FIELDS[n].attr: v for n, v in standard.items()}
            lead = Lead(
                source=LeadSource.IMPORT,
                contact_id=contact.id if contact else None,
                account_id=contact.account_id if contact else None,
                attributes=custom,
                **attrs,
            )
            new.append(lead)
            _remember(index, strategies, standard, lead)
            result.created += 1
            continue
        merged = _merged(lead, custom, row, result)
        if merged is None:
            continue
        touched = fill_empty(lead, LEAD_FIELDS, standard) or merged
        if lead.contact_id is None and contact is not None:
            lead.contact_id, touched = contact.id, True
            if lead.account_id is None:
                lead.account_id = contact.account_id
        if touched:
            lead.updated_at = utcnow()
            if lead.id:
                changed[lead.id] = lead
            result.updated += 1
        else:
            result.skipped += 1
    await uow.leads.add_many(new)
    await record_created(uow, new)
    await score_new_leads(uow, [lead.id for lead in new if lead.scorable])
    await uow.leads.save_many(list(changed.values()))
    await rescore_leads(uow, sorted(changed))  # changed fields, or a contact just linked


def chunks(rows: Iterator[Row], size: int = ROWS_PER_CHUNK) -> Iterator[list[Row]]:
    """Rows in lists of `size`."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

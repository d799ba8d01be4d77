"""An in-memory unit of work implementing domain.ports, for fast use-case tests.

It keeps the storage semantics the domain relies on:
- records are stored as copies, so a change the use case does not `save` is not persisted;
- `add` gives the record its id; `add_many` stores copies without touching the caller's objects;
- the contact email is unique: `ContactRepository.add` answers (existing, False) for a taken
  email, and `save`/`add_many` raise `UniqueViolation` like the database's unique index would;
- strategy comparison (`find`) matches emails and marketing contexts exactly and other text
  case-insensitively; lead look-ups only see OPEN leads;
- a unit of work used as `async with` is rolled back unless `commit()` was called.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

from domain.audit import AuditEntry, AuditFilter
from domain.auth import Principal
from domain.fields import CONTACT_FIELDS, LEAD_FIELDS, FieldSpec
from domain.lifecycle import ModelStatus
from domain.matching import DEFAULT_STRATEGIES
from domain.model import (
    Account,
    Contact,
    Feature,
    Lead,
    LeadState,
    MatchEntity,
    MatchingStrategy,
)
from domain.pagination import Page, PageRequest
from domain.ports import LeadFilter, LeadOrder, UnitOfWork
from domain.scoring import (
    CurrentScore,
    Interaction,
    InteractionScope,
    ScoreResult,
    ScoringModel,
    StoredScore,
    Subject,
    encode_breakdown,
    evaluate,
)

T = TypeVar("T", Account, Contact, Lead)
_EXACT = frozenset({"email", "marketingContext"})


class UniqueViolation(Exception):
    """What the database's unique index on contacts.email would raise."""


@dataclass
class FakeDatabase:
    """The stored rows, shared by the units of work made from it."""

    accounts: dict[int, Account] = field(default_factory=dict)
    contacts: dict[int, Contact] = field(default_factory=dict)
    leads: dict[int, Lead] = field(default_factory=dict)
    strategies: dict[int, MatchingStrategy] = field(default_factory=dict)
    features: dict[Feature, bool] = field(default_factory=dict)
    interactions: dict[int, Interaction] = field(default_factory=dict)
    scoring_models: dict[int, ScoringModel] = field(default_factory=dict)
    scores: dict[tuple[int, int], StoredScore] = field(default_factory=dict)
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    next_id: int = 1

    @classmethod
    def seeded(cls) -> FakeDatabase:
        """A database as the first migration leaves it: the two default strategies."""
        db = cls()
        for strategy in DEFAULT_STRATEGIES:
            s = copy.deepcopy(strategy)
            s.id = db.new_id()
            db.strategies[s.id] = s
        return db

    def new_id(self) -> int:
        id_ = self.next_id
        self.next_id += 1
        return id_


def _equal(name: str, stored: Any, wanted: Any) -> bool:
    if name not in _EXACT and isinstance(stored, str) and isinstance(wanted, str):
        return stored.lower() == wanted.lower()
    return bool(stored == wanted)


def _matches(record: Any, specs: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> bool:
    return all(_equal(n, getattr(record, specs[n].attr), v) for n, v in values.items())


def _contains(text: str | None, term: str) -> bool:
    return text is not None and term.strip().lower() in text.lower()


def _page(
    records: list[T], sort: Callable[[T], Any], descending: bool, page: PageRequest
) -> Page[T]:
    ordered = sorted(records, key=lambda r: (sort(r), r.id), reverse=descending)
    if page.after is not None:
        after = page.after
        if descending:
            ordered = [r for r in ordered if (sort(r), r.id) < after]
        else:
            ordered = [r for r in ordered if (sort(r), r.id) > after]
    items = ordered[: page.first]
    keys = [(sort(r), r.id) for r in items]
    return Page([copy.deepcopy(r) for r in items], keys, len(ordered) > page.first)


class _Records(Generic[T]):
    """get/get_many/add/save shared by accounts, contacts and leads."""

    def __init__(self, db: FakeDatabase, rows: dict[int, T]) -> None:
        self.db = db
        self.rows: dict[int, T] = rows

    def _check(self, record: T) -> None:
        """Constraints a table enforces on insert and update."""

    async def get(self, id_: int) -> T | None:
        row = self.rows.get(id_)
        return copy.deepcopy(row) if row is not None else None

    async def get_for_update(self, id_: int) -> T | None:
        return await self.get(id_)

    async def get_many(self, ids: Sequence[int]) -> dict[int, T]:
        return {i: copy.deepcopy(self.rows[i]) for i in set(ids) if i in self.rows}

    def _insert(self, record: T) -> None:
        self._check(record)
        record.id = self.db.new_id()
        self.rows[record.id] = copy.deepcopy(record)

    async def add_many(self, records: Sequence[T]) -> None:
        for record in records:
            self._check(record)
            record.id = self.db.new_id()
            self.rows[record.id] = copy.deepcopy(record)

    async def save(self, record: T) -> None:
        assert record.id in self.rows, f"save of a record that was never added: {record!r}"
        self._check(record)
        self.rows[record.id] = copy.deepcopy(record)

    async def save_many(self, records: Sequence[T]) -> None:
        for record in records:
            await self.save(record)


class FakeAccounts(_Records[Account]):
    async def add(self, account: Account) -> Account:
        self._insert(account)
        return account

    async def find_by_names(self, names: Sequence[str]) -> dict[str, Account]:
        keys = {n.lower() for n in names}
        found: dict[str, Account] = {}
        for account in sorted(self.rows.values(), key=lambda a: a.id, reverse=True):
            if account.name.lower() in keys:
                found[account.name.lower()] = copy.deepcopy(account)  # the oldest wins
        return found

    def _filtered(self, search: str | None) -> list[Account]:
        rows = list(self.rows.values())
        if search and search.strip():
            rows = [a for a in rows if _contains(a.name, search)]
        return rows

    async def list(self, search: str | None, page: PageRequest) -> Page[Account]:
        return _page(self._filtered(search), lambda a: a.created_at, True, page)

    async def count(self, search: str | None) -> int:
        return len(self._filtered(search))


class FakeContacts(_Records[Contact]):
    async def get_many_with_accounts(
        self, ids: Sequence[int]
    ) -> tuple[dict[int, Contact], dict[int, Account]]:
        contacts = await self.get_many(ids)
        accounts = {
            c.account_id: copy.deepcopy(self.db.accounts[c.account_id])
            for c in contacts.values()
            if c.account_id is not None and c.account_id in self.db.accounts
        }
        return contacts, accounts

    def _check(self, record: Contact) -> None:
        if record.email is not None and self._owner(record.email, except_id=record.id):
            raise UniqueViolation(f"contacts.email {record.email!r} exists")

    def _owner(self, email: str, except_id: int | None = None) -> Contact | None:
        for contact in self.rows.values():
            if contact.email == email and contact.id != except_id:
                return contact
        return None

    async def add(self, contact: Contact) -> tuple[Contact, bool]:
        if contact.email is not None and (existing := self._owner(contact.email)) is not None:
            return copy.deepcopy(existing), False
        self._insert(contact)
        return contact, True

    async def find(self, values: Mapping[str, Any]) -> Contact | None:
        for contact in sorted(self.rows.values(), key=lambda c: c.id):
            if _matches(contact, CONTACT_FIELDS, values):
                return copy.deepcopy(contact)
        return None

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Contact]:
        return [
            copy.deepcopy(c)
            for c in sorted(self.rows.values(), key=lambda c: c.id)
            if any(_equal(field, getattr(c, CONTACT_FIELDS[field].attr), v) for v in values)
        ]

    async def email_taken(self, email: str, except_id: int | None = None) -> bool:
        return self._owner(email, except_id) is not None

    def _filtered(self, search: str | None, account_id: int | None) -> list[Contact]:
        rows = list(self.rows.values())
        if search and search.strip():
            rows = [
                c
                for c in rows
                if _contains(c.full_name, search)
                or _contains(c.email, search)
                or (
                    c.account_id in self.db.accounts
                    and _contains(self.db.accounts[c.account_id].name, search)
                )
            ]
        if account_id is not None:
            rows = [c for c in rows if c.account_id == account_id]
        return rows

    async def list(
        self, search: str | None, account_id: int | None, page: PageRequest
    ) -> Page[Contact]:
        return _page(self._filtered(search, account_id), lambda c: c.created_at, True, page)

    async def count(self, search: str | None, account_id: int | None) -> int:
        return len(self._filtered(search, account_id))


class FakeLeads(_Records[Lead]):
    async def add(self, lead: Lead) -> Lead:
        self._insert(lead)
        return lead

    async def ids_for_contacts(self, contact_ids: Sequence[int]) -> Sequence[int]:
        accounts = {
            c.account_id for c in self.db.contacts.values() if c.id in contact_ids and c.account_id
        }
        return sorted(
            lead.id
            for lead in self.rows.values()
            if lead.contact_id in contact_ids
            or (lead.contact_id is None and lead.account_id in accounts)
        )

    async def lock_many(self, ids: Sequence[int]) -> None:
        return None

    async def lock_and_get(self, ids: Sequence[int]) -> list[Lead]:
        return [copy.deepcopy(self.rows[i]) for i in sorted(set(ids)) if i in self.rows]

    async def lock_for_contacts(self, contact_ids: Sequence[int]) -> list[Lead]:
        return await self.lock_and_get(await self.ids_for_contacts(contact_ids))

    async def ids_for_account(self, account_id: int) -> Sequence[int]:
        members = {c.id for c in self.db.contacts.values() if c.account_id == account_id}
        return sorted(
            lead.id
            for lead in self.rows.values()
            if lead.account_id == account_id or lead.contact_id in members
        )

    def _open(self) -> list[Lead]:
        return [
            lead
            for lead in sorted(self.rows.values(), key=lambda x: x.id)
            if lead.state is LeadState.OPEN
        ]

    async def find(self, values: Mapping[str, Any]) -> Lead | None:
        for lead in self._open():
            if _matches(lead, LEAD_FIELDS, values):
                return copy.deepcopy(lead)
        return None

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Lead]:
        return [
            copy.deepcopy(lead)
            for lead in self._open()
            if any(_equal(field, getattr(lead, LEAD_FIELDS[field].attr), v) for v in values)
        ]

    def _filtered(self, f: LeadFilter) -> list[Lead]:
        def keep(lead: Lead) -> bool:
            checks = [
                not f.state or lead.state in f.state,
                not f.status_reason or lead.status_reason in f.status_reason,
                not f.stage or lead.stage in f.stage,
                not f.source or lead.source in f.source,
                f.sales_ready is None or lead.sales_ready == f.sales_ready,
                f.contact_id is None or lead.contact_id == f.contact_id,
                f.account_id is None or lead.account_id == f.account_id,
                f.created_after is None or lead.created_at >= f.created_after,
                f.created_before is None or lead.created_at < f.created_before,
            ]
            if f.search and f.search.strip():
                checks.append(
                    any(
                        _contains(text, f.search)
                        for text in (lead.full_name, lead.email, lead.topic, lead.company_name)
                    )
                )
            return all(checks)

        return [lead for lead in self.rows.values() if keep(lead)]

    async def list(self, filter_: LeadFilter, order: LeadOrder, page: PageRequest) -> Page[Lead]:
        def sort(lead: Lead) -> datetime:
            return lead.updated_at if order.field == "UPDATED_AT" else lead.created_at

        return _page(self._filtered(filter_), sort, order.descending, page)

    async def count(self, filter_: LeadFilter) -> int:
        return len(self._filtered(filter_))

    async def ready_to_assign(self, lead_ids: Sequence[int] | None) -> Sequence[Lead]:
        return []  # the fakes have no assignment rules

    async def follow_process(
        self, lead_ids: Sequence[int] | None, now: datetime, scored_by: int | None = None
    ) -> None:
        pass  # the fakes keep no scores; the SQL is tested on real databases


class FakeStrategies:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def get(self, id_: int) -> MatchingStrategy | None:
        row = self.db.strategies.get(id_)
        return copy.deepcopy(row) if row is not None else None

    async def list(self, entity: MatchEntity | None = None) -> list[MatchingStrategy]:
        rows = sorted(self.db.strategies.values(), key=lambda s: s.id)
        return [copy.deepcopy(s) for s in rows if entity is None or s.entity is entity]

    async def add(self, strategy: MatchingStrategy) -> MatchingStrategy:
        strategy.id = self.db.new_id()
        self.db.strategies[strategy.id] = copy.deepcopy(strategy)
        return strategy

    async def save(self, strategy: MatchingStrategy) -> None:
        if strategy.id in self.db.strategies:
            self.db.strategies[strategy.id] = copy.deepcopy(strategy)

    async def delete(self, id_: int) -> None:
        self.db.strategies.pop(id_, None)


class FakeSettings:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def feature_enabled(self, feature: Feature) -> bool:
        return self.db.features.get(feature, False)

    async def set_feature(self, feature: Feature, enabled: bool) -> None:
        self.db.features[feature] = enabled


class FakeInteractions:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def add(self, interaction: Interaction) -> tuple[Interaction, bool]:
        key = interaction.idempotency_key
        for existing in self.db.interactions.values():
            if key is not None and existing.idempotency_key == key:
                return existing, False
        stored = dataclasses.replace(interaction, id=self.db.new_id())
        self.db.interactions[stored.id] = stored
        return stored, True

    async def for_subject(
        self, contact_id: int | None, account_id: int | None
    ) -> list[Interaction]:
        if contact_id is not None:
            members = {contact_id}
        elif account_id is not None:
            members = {c.id for c in self.db.contacts.values() if c.account_id == account_id}
        else:
            return []
        return [i for i in self.db.interactions.values() if i.contact_id in members]

    async def for_subjects(
        self,
        contact_ids: Sequence[int],
        account_ids: Sequence[int],
        scope: InteractionScope | None = None,
    ) -> tuple[dict[int, list[Interaction]], dict[int, list[Interaction]]]:
        def scoped(found: list[Interaction]) -> list[Interaction]:
            if scope is None:
                return found
            return [
                i
                for i in found
                if i.type in scope and ((since := scope[i.type]) is None or i.occurred_at > since)
            ]

        by_contact = {i: scoped(await self.for_subject(i, None)) for i in contact_ids}
        by_account = {a: scoped(await self.for_subject(None, a)) for a in account_ids}
        return by_contact, by_account

    async def get_many(self, ids: Sequence[int]) -> dict[int, Interaction]:
        return {i: self.db.interactions[i] for i in ids if i in self.db.interactions}

    async def list_for_contact(self, contact_id: int, page: PageRequest) -> Page[Interaction]:
        mine = [i for i in self.db.interactions.values() if i.contact_id == contact_id]
        return _page(mine, lambda i: i.created_at, True, page)  # type: ignore[type-var]

    async def count_for_contact(self, contact_id: int) -> int:
        return sum(1 for i in self.db.interactions.values() if i.contact_id == contact_id)


class FakeScoringModels:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def get(self, id_: int, *, for_update: bool = False) -> ScoringModel | None:
        model = self.db.scoring_models.get(id_)
        return copy.deepcopy(model) if model else None

    async def get_many(self, ids: Sequence[int]) -> dict[int, ScoringModel]:
        return {
            i: copy.deepcopy(self.db.scoring_models[i]) for i in ids if i in self.db.scoring_models
        }

    async def live(self, *, if_enabled: Feature | None = None) -> list[ScoringModel]:
        if if_enabled is not None and not self.db.features.get(if_enabled, False):
            return []
        return [
            copy.deepcopy(m)
            for m in self.db.scoring_models.values()
            if m.status is ModelStatus.LIVE
        ]

    async def add(self, model: ScoringModel) -> ScoringModel:
        model.id = self.db.new_id()
        self.db.scoring_models[model.id] = copy.deepcopy(model)
        return model

    async def save(self, model: ScoringModel) -> None:
        self.db.scoring_models[model.id] = copy.deepcopy(model)

    async def delete(self, id_: int) -> None:
        self.db.scoring_models.pop(id_, None)

    async def list(self, status: ModelStatus | None, page: PageRequest) -> Page[ScoringModel]:
        models = [
            m for m in self.db.scoring_models.values() if status is None or m.status is status
        ]
        return _page(models, lambda m: m.created_at, True, page)  # type: ignore[type-var]

    async def count(self, status: ModelStatus | None) -> int:
        return sum(
            1 for m in self.db.scoring_models.values() if status is None or m.status is status
        )


class FakeScores:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def for_leads(self, lead_ids: Sequence[int]) -> dict[int, list[StoredScore]]:
        return {i: [s for (lead, _), s in self.db.scores.items() if lead == i] for i in lead_ids}

    async def get(self, lead_id: int, model_id: int) -> StoredScore | None:
        return self.db.scores.get((lead_id, model_id))

    async def current(
        self, lead_ids: Sequence[int], model_ids: Sequence[int]
    ) -> dict[tuple[int, int], CurrentScore]:
        return {
            key: CurrentScore(s.score, s.model_version, s.next_expiry, s.sales_ready)
            for key, s in self.db.scores.items()
            if key[0] in lead_ids and key[1] in model_ids
        }

    async def put_many(
        self, scores: Sequence[tuple[int, ScoringModel, ScoreResult]], now: datetime
    ) -> None:
        for lead_id, model, result in scores:
            await self.put(lead_id, model, result, now)

    async def put(
        self, lead_id: int, model: ScoringModel, result: ScoreResult, now: datetime
    ) -> StoredScore | None:
        previous = self.db.scores.get((lead_id, model.id))
        self.db.scores[lead_id, model.id] = StoredScore(
            lead_id,
            model.id,
            model.version,
            result.score,
            model.is_sales_ready(result.score),
            encode_breakdown(model, result),
            result.next_expiry,
            now,
        )
        return previous

    async def expired(self, now: datetime, limit: int) -> list[tuple[int, int]]:
        return [
            key
            for key, s in self.db.scores.items()
            if s.next_expiry is not None and s.next_expiry <= now
        ][:limit]

    async def rescore_all(
        self, model: ScoringModel, now: datetime, lead_ids: Sequence[int] | None = None
    ) -> int:
        scored = 0
        for lead in list(self.db.leads.values()):
            if not lead.scorable or (lead_ids is not None and lead.id not in lead_ids):
                continue
            contact = self.db.contacts.get(lead.contact_id) if lead.contact_id else None
            account_id = lead.account_id or (contact.account_id if contact else None)
            account = self.db.accounts.get(account_id) if account_id else None
            interactions = await FakeInteractions(self.db).for_subject(
                lead.contact_id, lead.account_id
            )
            result = evaluate(model, Subject(lead, contact, account, interactions), now)
            await self.put(lead.id, model, result, now)
            scored += 1
        return scored


class FakeEvents:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def add(self, lead_id: int, type_: str, payload: Mapping[str, Any], now: datetime) -> int:
        self.db.events.append((lead_id, type_, dict(payload)))
        return len(self.db.events)

    async def add_many(
        self, events: Sequence[tuple[int, str, Mapping[str, Any]]], now: datetime
    ) -> None:
        for lead_id, type_, payload in events:
            await self.add(lead_id, type_, payload, now)


class FakeAudit:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def add(self, entry: AuditEntry) -> None:
        self.db.audit.append(entry)

    async def page(self, filter_: AuditFilter, page: PageRequest) -> Page[AuditEntry]:
        raise NotImplementedError  # listed only through the SQL repository

    async def count(self, filter_: AuditFilter) -> int:
        return len(self.db.audit)


class FakeUnitOfWork:
    """One 'transaction' over a FakeDatabase; `locks` records every lock taken, in order."""

    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.db = db if db is not None else FakeDatabase.seeded()
        self.locks: list[str] = []
        self.commits = 0
        self.actor: Principal | None = None
        self._snapshot: FakeDatabase | None = None

    @property
    def accounts(self) -> FakeAccounts:
        return FakeAccounts(self.db, self.db.accounts)

    @property
    def contacts(self) -> FakeContacts:
        return FakeContacts(self.db, self.db.contacts)

    @property
    def leads(self) -> FakeLeads:
        return FakeLeads(self.db, self.db.leads)

    @property
    def strategies(self) -> FakeStrategies:
        return FakeStrategies(self.db)

    @property
    def settings(self) -> FakeSettings:
        return FakeSettings(self.db)

    @property
    def interactions(self) -> FakeInteractions:
        return FakeInteractions(self.db)

    @property
    def scoring_models(self) -> FakeScoringModels:
        return FakeScoringModels(self.db)

    @property
    def scores(self) -> FakeScores:
        return FakeScores(self.db)

    @property
    def events(self) -> FakeEvents:
        return FakeEvents(self.db)

    @property
    def audit(self) -> FakeAudit:
        return FakeAudit(self.db)

    async def __aenter__(self) -> FakeUnitOfWork:
        self._snapshot = copy.deepcopy(self.db)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._snapshot is not None:
            # Roll back: put the rows back as they were when the transaction began.
            for name in (
                "accounts",
                "contacts",
                "leads",
                "strategies",
                "features",
                "interactions",
                "scoring_models",
                "scores",
            ):
                target = getattr(self.db, name)
                target.clear()
                target.update(getattr(self._snapshot, name))
            self.db.events[:] = self._snapshot.events
            self.db.audit[:] = self._snapshot.audit
            self.db.next_id = self._snapshot.next_id
            self._snapshot = None

    async def commit(self) -> None:
        self._snapshot = None
        self.commits += 1

    async def lock(self, key: str) -> None:
        self.locks.append(key)

    async def try_lock(self, key: str) -> bool:
        self.locks.append(key)
        return True


def as_port(uow: FakeUnitOfWork) -> UnitOfWork:
    """The fake typed as the domain's port (mypy checks that it conforms)."""
    return uow

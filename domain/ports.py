"""What the domain needs from storage; `persistence` implements these protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from domain.auth import Principal
from domain.events import LeadEvent
from domain.model import (
    Account,
    Contact,
    Feature,
    Lead,
    LeadSource,
    LeadStage,
    LeadState,
    LeadStatusReason,
    MatchEntity,
    MatchingStrategy,
)
from domain.pagination import Page, PageRequest
from domain.scoring import Interaction, ModelStatus, ScoreResult, ScoringModel, StoredScore


@dataclass(frozen=True, slots=True)
class ScoreThreshold:
    scoring_model_id: int
    min: float


@dataclass(frozen=True, slots=True)
class LeadFilter:
    state: Sequence[LeadState] | None = None
    status_reason: Sequence[LeadStatusReason] | None = None
    stage: Sequence[LeadStage] | None = None
    sales_ready: bool | None = None
    source: Sequence[LeadSource] | None = None
    contact_id: int | None = None
    account_id: int | None = None
    search: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_score: ScoreThreshold | None = None


@dataclass(frozen=True, slots=True)
class LeadOrder:
    field: str = "CREATED_AT"  # CREATED_AT, UPDATED_AT or SCORE
    descending: bool = True
    scoring_model_id: int | None = None  # for SCORE


class AccountRepository(Protocol):
    async def get(self, id_: int) -> Account | None: ...
    async def get_for_update(self, id_: int) -> Account | None:
        """Read and lock the row until the transaction ends (no lost updates)."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, Account]: ...
    async def add(self, account: Account) -> Account: ...
    async def add_many(self, accounts: Sequence[Account]) -> None: ...
    async def save(self, account: Account) -> None: ...
    async def save_many(self, accounts: Sequence[Account]) -> None: ...
    async def find_by_names(self, names: Sequence[str]) -> dict[str, Account]:
        """Accounts whose name equals one of `names`, case-insensitively, keyed by lower(name)."""
        ...

    async def list(self, search: str | None, page: PageRequest) -> Page[Account]: ...
    async def count(self, search: str | None) -> int: ...


class ContactRepository(Protocol):
    async def get(self, id_: int) -> Contact | None: ...
    async def get_for_update(self, id_: int) -> Contact | None:
        """Read and lock the row until the transaction ends (no lost updates)."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, Contact]: ...
    async def add(self, contact: Contact) -> tuple[Contact, bool]:
        """Insert and return (contact, True); if the email is taken, (existing contact, False)."""
        ...

    async def add_many(self, contacts: Sequence[Contact]) -> None: ...
    async def save(self, contact: Contact) -> None: ...
    async def save_many(self, contacts: Sequence[Contact]) -> None: ...
    async def find(self, values: Mapping[str, Any]) -> Contact | None:
        """The oldest contact whose fields (API names) all equal `values`, locked until commit."""
        ...

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Contact]: ...
    async def email_taken(self, email: str, except_id: int | None = None) -> bool: ...
    async def list(
        self, search: str | None, account_id: int | None, page: PageRequest
    ) -> Page[Contact]: ...
    async def count(self, search: str | None, account_id: int | None) -> int: ...


class LeadRepository(Protocol):
    async def get(self, id_: int) -> Lead | None: ...
    async def get_for_update(self, id_: int) -> Lead | None:
        """Read and lock the row until the transaction ends (no lost updates)."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, Lead]: ...
    async def add(self, lead: Lead) -> Lead: ...
    async def add_many(self, leads: Sequence[Lead]) -> None:
        """Insert in bulk and set each lead's id."""
        ...

    async def save(self, lead: Lead) -> None: ...
    async def save_many(self, leads: Sequence[Lead]) -> None: ...
    async def find(self, values: Mapping[str, Any]) -> Lead | None:
        """The oldest OPEN lead whose fields (API names) all equal `values`, locked until commit."""
        ...

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Lead]:
        """OPEN leads whose `field` (API name) is one of `values`."""
        ...

    async def list(
        self, filter_: LeadFilter, order: LeadOrder, page: PageRequest
    ) -> Page[Lead]: ...
    async def count(self, filter_: LeadFilter) -> int: ...
    async def ids_for_contacts(self, contact_ids: Sequence[int]) -> Sequence[int]:
        """Leads scored on these contacts' interactions (theirs, and their accounts' leads)."""
        ...

    async def ids_for_account(self, account_id: int) -> Sequence[int]:
        """Leads whose account, directly or through their contact, is this one."""
        ...

    async def lock_many(self, ids: Sequence[int]) -> None:
        """Lock these leads' rows until commit, in id order."""
        ...


class MatchingStrategyRepository(Protocol):
    async def get(self, id_: int) -> MatchingStrategy | None: ...
    async def list(self, entity: MatchEntity | None = None) -> list[MatchingStrategy]: ...
    async def add(self, strategy: MatchingStrategy) -> MatchingStrategy: ...
    async def save(self, strategy: MatchingStrategy) -> None: ...
    async def delete(self, id_: int) -> None: ...


class SettingsRepository(Protocol):
    async def feature_enabled(self, feature: Feature) -> bool: ...
    async def set_feature(self, feature: Feature, enabled: bool) -> None: ...


class Repositories(Protocol):
    @property
    def interactions(self) -> InteractionRepository: ...
    @property
    def scoring_models(self) -> ScoringModelRepository: ...
    @property
    def scores(self) -> LeadScoreRepository: ...
    @property
    def events(self) -> LeadEventRepository: ...
    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def contacts(self) -> ContactRepository: ...
    @property
    def leads(self) -> LeadRepository: ...
    @property
    def strategies(self) -> MatchingStrategyRepository: ...
    @property
    def settings(self) -> SettingsRepository: ...


class ReadAccess(Protocol):
    def read(self) -> AbstractAsyncContextManager[Repositories]:
        """Repositories on a connection of their own, for reading only."""
        ...


class Authenticator(Protocol):
    async def authenticate(self, secret: str) -> Principal | None:
        """The caller an API key belongs to; None for an unknown or revoked key."""
        ...


class UnitOfWork(Repositories, Protocol):
    """One transaction: rolled back unless `commit()` is called."""

    async def __aenter__(self) -> UnitOfWork: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def commit(self) -> None: ...
    async def lock(self, key: str) -> None:
        """Serialise concurrent transactions that work on the same `key` until commit."""
        ...

    async def try_lock(self, key: str) -> bool:
        """Take the lock for `key` until commit if nobody holds it; False otherwise."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


# ---------------------------------------------------------------- scoring


class InteractionRepository(Protocol):
    async def add(self, interaction: Interaction) -> tuple[Interaction, bool]:
        """Store; with an idempotency key already used, (the stored one, False)."""
        ...

    async def add_many(self, interactions: Sequence[Interaction]) -> list[Interaction]:
        """Insert interactions without idempotency keys; returns them with their ids."""
        ...

    async def for_subject(
        self, contact_id: int | None, account_id: int | None
    ) -> list[Interaction]: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, Interaction]: ...
    async def list_for_contact(self, contact_id: int, page: PageRequest) -> Page[Interaction]: ...
    async def count_for_contact(self, contact_id: int) -> int: ...


class ScoringModelRepository(Protocol):
    async def get(self, id_: int, *, for_update: bool = False) -> ScoringModel | None: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, ScoringModel]: ...
    async def live(self) -> list[ScoringModel]: ...
    async def add(self, model: ScoringModel) -> ScoringModel: ...
    async def save(self, model: ScoringModel) -> None: ...
    async def delete(self, id_: int) -> None: ...
    async def list(self, status: ModelStatus | None, page: PageRequest) -> Page[ScoringModel]: ...
    async def count(self, status: ModelStatus | None) -> int: ...


class LeadScoreRepository(Protocol):
    async def for_leads(self, lead_ids: Sequence[int]) -> dict[int, list[StoredScore]]: ...
    async def get(self, lead_id: int, model_id: int) -> StoredScore | None: ...
    async def put(
        self, lead_id: int, model: ScoringModel, result: ScoreResult, now: datetime
    ) -> StoredScore | None:
        """Store a lead's score for a model; returns the score it replaced, if any."""
        ...

    async def expired(self, now: datetime, limit: int) -> list[tuple[int, int]]: ...
    async def rescore_all(
        self, model: ScoringModel, now: datetime, lead_ids: Sequence[int] | None = None
    ) -> int:
        """Score every scorable lead with the model, set-based; events included."""
        ...


class LeadEventRepository(Protocol):
    async def add(
        self, lead_id: int, type_: str, payload: Mapping[str, Any], now: datetime
    ) -> int: ...
    async def add_many(
        self, events: Sequence[tuple[int, str, Mapping[str, Any]]], now: datetime
    ) -> None:
        """Store (lead id, type, payload) events in one statement."""
        ...

    async def after(
        self,
        position: int,
        limit: int,
        types: Sequence[str] | None = None,
        lead_id: int | None = None,
        until: int | None = None,
    ) -> list[LeadEvent]:
        """Positioned events after `position` (up to `until`), in position order."""
        ...

    async def max_position(self) -> int:
        """The highest position given so far (0 when none)."""
        ...

    async def count(self, types: Sequence[str] | None, lead_id: int | None) -> int: ...


# ---------------------------------------------------------------- delivery


class EventBroker(Protocol):
    """Carries "events were positioned up to p" notices between server processes.

    Notices may be lost (Redis pub/sub is at most once): they only say *when* to read; what to
    deliver is always read from the event table by position.
    """

    async def publish(self, position: int) -> None:
        """Announce that events up to `position` can be read; raise if the broker is down."""
        ...

    async def listen(self, on_position: Callable[[int], Awaitable[None]]) -> None:
        """Call `on_position` for every notice until cancelled, reconnecting by itself."""
        ...

    async def close(self) -> None: ...

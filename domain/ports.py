"""What the domain needs from storage; `persistence` implements these protocols."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from domain.auth import Principal
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


@dataclass(frozen=True, slots=True)
class LeadOrder:
    field: str = "CREATED_AT"  # CREATED_AT or UPDATED_AT
    descending: bool = True


class AccountRepository(Protocol):
    async def get(self, id_: int) -> Account | None: ...
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
    async def get_many(self, ids: Sequence[int]) -> dict[int, Contact]: ...
    async def add(self, contact: Contact) -> tuple[Contact, bool]:
        """Insert and return (contact, True); if the email is taken, (existing contact, False)."""
        ...

    async def add_many(self, contacts: Sequence[Contact]) -> None: ...
    async def save(self, contact: Contact) -> None: ...
    async def save_many(self, contacts: Sequence[Contact]) -> None: ...
    async def find(self, values: Mapping[str, Any]) -> Contact | None:
        """The oldest contact whose fields (API names) all equal `values`."""
        ...

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Contact]: ...
    async def email_taken(self, email: str, except_id: int | None = None) -> bool: ...
    async def list(
        self, search: str | None, account_id: int | None, page: PageRequest
    ) -> Page[Contact]: ...
    async def count(self, search: str | None, account_id: int | None) -> int: ...


class LeadRepository(Protocol):
    async def get(self, id_: int) -> Lead | None: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, Lead]: ...
    async def add(self, lead: Lead) -> Lead: ...
    async def add_many(self, leads: Sequence[Lead]) -> None: ...
    async def save(self, lead: Lead) -> None: ...
    async def save_many(self, leads: Sequence[Lead]) -> None: ...
    async def find(self, values: Mapping[str, Any]) -> Lead | None:
        """The oldest OPEN lead whose fields (API names) all equal `values`."""
        ...

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Lead]:
        """OPEN leads whose `field` (API name) is one of `values`."""
        ...

    async def list(self, filter_: LeadFilter, order: LeadOrder, page: PageRequest) -> Page[Lead]: ...
    async def count(self, filter_: LeadFilter) -> int: ...


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
    accounts: AccountRepository
    contacts: ContactRepository
    leads: LeadRepository
    strategies: MatchingStrategyRepository
    settings: SettingsRepository


class ReadAccess(Protocol):
    def read(self) -> AbstractAsyncContextManager[Repositories]:
        """Repositories on a connection of their own, for reading only."""
        ...


class Authenticator(Protocol):
    async def authenticate(self, secret: str) -> Principal | None:
        """The caller an API key belongs to; None for an unknown or revoked key."""
        ...


class UnitOfWork(Protocol):
    """One transaction: rolled back unless `commit()` is called."""

    accounts: AccountRepository
    contacts: ContactRepository
    leads: LeadRepository
    strategies: MatchingStrategyRepository
    settings: SettingsRepository

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


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...

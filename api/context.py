"""The per-request context every resolver sees."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import strawberry
from strawberry.dataloader import DataLoader

from api.errors import bad_input, forbidden
from api.fanout import FanOut
from domain.auth import Principal
from domain.model import Account, Contact, Lead
from domain.ports import ReadAccess, Repositories, UnitOfWorkFactory
from domain.qualification import QualificationModel
from domain.roles import Permission, allows
from domain.scoring import ScoringModel, StoredScore
from domain.scoring_services import InteractionRecorder

T = TypeVar("T")


@dataclass(slots=True)
class Services:
    """What the app's composition root hands to every request."""

    uow: UnitOfWorkFactory
    reads: ReadAccess
    max_page_size: int = 500
    events: FanOut | None = None  # this process's fan-out of lead events to subscriptions
    # One per app: it groups the interactions of concurrent calls into shared transactions.
    recorder: InteractionRecorder = field(init=False)

    def __post_init__(self) -> None:
        self.recorder = InteractionRecorder(self.uow)


class Loaders:
    """Fresh batch loaders per request: one query per record type per tick.

    Each is made on first use: most requests (a list page, a mutation) need none of them.
    """

    def __init__(self, reads: ReadAccess) -> None:
        self._reads = reads

    @cached_property
    def account(self) -> DataLoader[int, Account | None]:
        return DataLoader(self._accounts)

    @cached_property
    def contact(self) -> DataLoader[int, Contact | None]:
        return DataLoader(self._contacts)

    @cached_property
    def lead(self) -> DataLoader[int, Lead | None]:
        return DataLoader(self._leads)

    @cached_property
    def scores(self) -> DataLoader[int, list[StoredScore]]:
        return DataLoader(self._scores)

    @cached_property
    def qualification_model(self) -> DataLoader[int, QualificationModel | None]:
        return DataLoader(self._qualification_models)

    @cached_property
    def scoring_model(self) -> DataLoader[int, ScoringModel | None]:
        return DataLoader(self._scoring_models)

    async def _accounts(self, ids: Sequence[int]) -> list[Account | None]:
        async with self._reads.read() as r:
            found = await r.accounts.get_many(ids)
        return [found.get(i) for i in ids]

    async def _contacts(self, ids: Sequence[int]) -> list[Contact | None]:
        async with self._reads.read() as r:
            found = await r.contacts.get_many(ids)
        return [found.get(i) for i in ids]

    async def _leads(self, ids: Sequence[int]) -> list[Lead | None]:
        async with self._reads.read() as r:
            found = await r.leads.get_many(ids)
        return [found.get(i) for i in ids]

    async def _scores(self, lead_ids: Sequence[int]) -> list[list[StoredScore]]:
        async with self._reads.read() as r:
            found = await r.scores.for_leads(lead_ids)
        return [found.get(i, []) for i in lead_ids]

    async def _qualification_models(self, ids: Sequence[int]) -> list[QualificationModel | None]:
        async with self._reads.read() as r:
            found = await r.qualification_models.get_many(ids)
        return [found.get(i) for i in ids]

    async def _scoring_models(self, ids: Sequence[int]) -> list[ScoringModel | None]:
        async with self._reads.read() as r:
            found = await r.scoring_models.get_many(ids)
        return [found.get(i) for i in ids]


@dataclass(slots=True)
class Context:
    principal: Principal
    services: Services
    raw_variables: Callable[[], Awaitable[dict[str, Any]]] | None = None
    # Set by the shared subscription delivery (api/delivery.py): a subscription resolver checks
    # its arguments, records them here and returns without following anything.
    probe: dict[str, Any] | None = None
    loaders: Loaders = field(init=False)
    # Pages read ahead with a parent record, in the same read, for the field below it that
    # asks for them (taken once; see api/sales.py `lead_with_timeline`).
    _ahead: dict[Any, Any] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.services.reads)

    def require(self, permission: Permission) -> None:
        """Raise a FORBIDDEN GraphQL error unless the caller's role grants `permission`."""
        if not allows(self.principal.role, permission):
            raise forbidden(self.principal, permission)

    def own_user_id(self, instead: str) -> int:
        """The user the caller's API key belongs to ("my leads", "my work"); a BAD_USER_INPUT
        error naming the argument to pass `instead` when the key belongs to no user."""
        user_id = self.principal.user_id
        if user_id is None:
            raise bad_input(
                f"this API key belongs to no user: pass {instead} or use a key that belongs to "
                "a user (leadflow apikey create --user USER_ID)"
            )
        return user_id

    def keep_ahead(self, key: Any, value: Any) -> None:
        """Keep a result read ahead for the resolver that will ask for it by `key`."""
        if self._ahead is None:
            self._ahead = {}
        self._ahead[key] = value

    def take_ahead(self, key: Any) -> Any:
        """The result kept for `key` (None: none), given once."""
        return None if self._ahead is None else self._ahead.pop(key, None)

    async def read(self, fn: Callable[[Repositories], Awaitable[T]]) -> T:
        """Run one read on a pooled connection of its own."""
        async with self.services.reads.read() as r:
            return await fn(r)


Info = strawberry.Info[Context, Any]

"""Strawberry types of the GraphQL contract. Sources are domain objects, resolved by attribute."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

from api.context import Info
from api.errors import as_query_error
from api.execution import pure
from api.ids import to_global_id
from domain import model
from domain.importing import ImportEntity as _ImportEntity
from domain.pagination import Page, PageRequest, encode_cursor, page_request
from domain.roles import Role as _Role

if TYPE_CHECKING:
    from api.sales import CompetitorType, StakeholderType, TimelineConnection, UserType
    from api.scoring import InteractionType_, LeadScore
    from api.sequences import ProcessType, SequenceRunType

# ---------------------------------------------------------------- enums (domain enums exposed)

# strawberry.enum registers the domain enum in place, so the API returns domain values as they are.
for _enum in (
    _Role,
    model.Feature,
    model.LeadState,
    model.LeadStatusReason,
    model.LeadStage,
    model.LeadSource,
    model.MatchEntity,
    _ImportEntity,
):
    strawberry.enum(_enum)
Role = _Role
Feature = model.Feature
LeadState = model.LeadState
LeadStatusReason = model.LeadStatusReason
LeadStage = model.LeadStage
LeadSource = model.LeadSource
MatchEntity = model.MatchEntity
ImportEntity = _ImportEntity


@strawberry.enum
class UserErrorCode(enum.Enum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    DUPLICATE = "DUPLICATE"
    FEATURE_DISABLED = "FEATURE_DISABLED"
    FORBIDDEN = "FORBIDDEN"


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum
class LeadOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    SCORE = "SCORE"


# ---------------------------------------------------------------- basics


@strawberry.type
class UserError:
    code: UserErrorCode
    field: list[str] | None
    message: str


@strawberry.type(description="The caller: its API key's name and role, and the key's user.")
class Viewer:
    name: str
    role: Role
    user_id: strawberry.Private[int | None] = None

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="The user the API key belongs to (whose leads `mine` and the default "
        "`workList`/`reminders` are); null for a key without a user."
    )
    async def user(self, info: Info) -> Annotated[UserType, strawberry.lazy("api.sales")] | None:
        user_id = self.user_id
        if user_id is None:
            return None
        found = await info.context.read(lambda r: r.users.get_many([user_id]))
        return found.get(user_id)  # type: ignore[return-value]


@strawberry.type
class Settings:
    lead_management_enabled: bool


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


NodeT = TypeVar("NodeT")


@strawberry.type
class Edge(Generic[NodeT]):
    node: NodeT
    key: strawberry.Private[tuple[Any, int]]

    @strawberry.field
    @pure
    def cursor(self) -> str:
        return encode_cursor(*self.key)


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        """How many records match, across all pages."""
        return await self.count()


def connection(page: Page[Any], count: Callable[[], Awaitable[int]]) -> Connection[Any]:
    """A Relay connection over a page of domain objects."""
    edges = [Edge(node=n, key=k) for k, n in zip(page.keys, page.items, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor),
        count=count,
    )


async def paged(
    ctx: Any,
    first: int | None,
    after: str | None,
    fetch: Callable[[Any, PageRequest], Awaitable[Page[Any]]],
    count: Callable[[Any], Awaitable[int]],
) -> Connection[Any]:
    """One page of a list as a connection, read on the request's connection; a bad page size,
    cursor or filter is a BAD_USER_INPUT error. `count` runs only if totalCount is asked for."""

    async def run() -> Connection[Any]:
        page = page_request(first, after, ctx.services.max_page_size)
        result = await ctx.read(lambda r: fetch(r, page))
        return connection(result, lambda: ctx.read(count))

    return await as_query_error(run)


async def load_linked(loader: Any, key: int | None) -> Any:
    """The record a nullable link points to, through the request's batch loader (None: none)."""
    return None if key is None else await loader.load(key)


# ---------------------------------------------------------------- records


@strawberry.type(name="Account")
class AccountType(Node):
    name: str
    industry: str | None
    employee_count: int | None
    annual_revenue: float | None
    country: str | None
    website: str | None
    attributes: JSON | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Account", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def contacts(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[ContactType, strawberry.lazy("api.types")]]:
        from api.resolvers import list_contacts

        return await list_contacts(info, None, self.id, first, after)  # type: ignore[arg-type]

    @strawberry.field
    async def leads(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[LeadType, strawberry.lazy("api.types")]]:
        from api.resolvers import lead_filter, list_leads

        filter_ = lead_filter(account_id=self.id)  # type: ignore[arg-type]
        return await list_leads(info, filter_, None, first, after)

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, model.Account)


@strawberry.type(name="Contact")
class ContactType(Node):
    first_name: str | None
    last_name: str | None
    full_name: str
    email: str | None
    phone: str | None
    job_title: str | None
    country: str | None
    attributes: JSON | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Contact", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def account(self, info: Info) -> AccountType | None:
        return await load_linked(info.context.loaders.account, self.account_id)  # type: ignore[attr-defined,no-any-return]

    @strawberry.field
    async def leads(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[LeadType, strawberry.lazy("api.types")]]:
        from api.resolvers import lead_filter, list_leads

        filter_ = lead_filter(contact_id=self.id)  # type: ignore[arg-type]
        return await list_leads(info, filter_, None, first, after)

    @strawberry.field
    async def interactions(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[InteractionType_, strawberry.lazy("api.scoring")]]:
        contact_id: int = self.id  # type: ignore[assignment]
        return await paged(
            info.context,
            first,
            after,
            lambda r, page: r.interactions.list_for_contact(contact_id, page),
            lambda r: r.interactions.count_for_contact(contact_id),
        )

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, model.Contact)


@strawberry.type(name="Lead")
class LeadType(Node):
    topic: str
    first_name: str | None
    last_name: str | None
    full_name: str
    email: str | None
    company_name: str | None
    job_title: str | None
    phone: str | None
    attributes: JSON | None
    marketing_context: str | None = strawberry.field(
        description="Campaign, marketing page or form id the lead came from."
    )
    source: LeadSource
    state: LeadState
    status_reason: LeadStatusReason
    sales_ready: bool
    stage: LeadStage
    scorable: bool = strawberry.field(
        description="False when the lead has neither a parent contact nor a parent account."
    )
    teleprospecting_ready: bool
    teleprospect_accepted: bool
    sales_accepted: bool
    process_stage: str | None = strawberry.field(
        description="The lead's stage in its custom process; null on the default process."
    )
    created_at: datetime
    updated_at: datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Lead", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def contact(self, info: Info) -> ContactType | None:
        return await load_linked(info.context.loaders.contact, self.contact_id)  # type: ignore[attr-defined,no-any-return]

    @strawberry.field
    async def account(self, info: Info) -> AccountType | None:
        return await load_linked(info.context.loaders.account, self.account_id)  # type: ignore[attr-defined,no-any-return]

    @strawberry.field
    async def timeline(
        self, info: Info, first: int | None = 50, after: str | None = None
    ) -> Annotated[TimelineConnection, strawberry.lazy("api.sales")]:
        """Activities and lead events, newest first (keyset pages)."""
        from api.sales import lead_timeline

        return await lead_timeline(info, self.id, first, after)  # type: ignore[arg-type]

    @strawberry.field
    async def process(
        self, info: Info
    ) -> Annotated[ProcessType, strawberry.lazy("api.sequences")] | None:
        """The custom process the lead follows; null: the default process (`stage`)."""
        from api.sequences import lead_process

        return await lead_process(info, self.process_id)  # type: ignore[attr-defined]

    @strawberry.field
    async def sequence(
        self, info: Info
    ) -> Annotated[SequenceRunType, strawberry.lazy("api.sequences")] | None:
        """The lead's active sales sequence, if any."""
        from api.sequences import lead_sequence

        return await lead_sequence(info, self.id)  # type: ignore[arg-type]

    @strawberry.field
    async def stakeholders(
        self, info: Info
    ) -> list[Annotated[StakeholderType, strawberry.lazy("api.sales")]]:
        """Contacts with a role in the buying decision."""
        lead_id: int = self.id  # type: ignore[assignment]
        found: Any = await info.context.read(lambda r: r.stakeholders.stakeholders(lead_id))
        return found  # type: ignore[no-any-return]

    @strawberry.field
    async def competitors(
        self, info: Info
    ) -> list[Annotated[CompetitorType, strawberry.lazy("api.sales")]]:
        lead_id: int = self.id  # type: ignore[assignment]
        found: Any = await info.context.read(lambda r: r.stakeholders.competitors(lead_id))
        return found  # type: ignore[no-any-return]

    @strawberry.field
    async def owner(self, info: Info) -> Annotated[UserType, strawberry.lazy("api.sales")] | None:
        """The user (seller) working the lead."""
        owner_id: int | None = self.owner_id  # type: ignore[attr-defined]
        if owner_id is None:
            return None
        found = await info.context.read(lambda r: r.users.get_many([owner_id]))
        return found.get(owner_id)  # type: ignore[return-value]

    @strawberry.field
    async def scores(
        self, info: Info
    ) -> list[Annotated[LeadScore, strawberry.lazy("api.scoring")]]:
        from api.scoring import lead_scores

        return await lead_scores(info, self.id)  # type: ignore[arg-type]

    @strawberry.field
    async def score(
        self, info: Info, scoring_model_id: strawberry.ID
    ) -> Annotated[LeadScore, strawberry.lazy("api.scoring")] | None:
        from api.ids import decode_arg
        from api.scoring import lead_scores

        wanted = decode_arg(scoring_model_id, "ScoringModel")
        scores = await lead_scores(info, self.id)  # type: ignore[arg-type]
        return next((s for s in scores if s.model.id == wanted), None)

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, model.Lead)


@strawberry.type(name="MatchingStrategy")
class MatchingStrategyType(Node):
    name: str
    entity: MatchEntity
    fields: list[str]
    form_ids: list[str]
    is_default: bool

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("MatchingStrategy", self.id))  # type: ignore[arg-type]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, model.MatchingStrategy)


# ---------------------------------------------------------------- inputs


def provided(inp: Any) -> dict[str, Any]:
    """The fields a client actually sent (API camelCase names), leaving out UNSET ones."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(inp):
        value = getattr(inp, f.name)
        if value is not strawberry.UNSET:
            head, *rest = f.name.split("_")
            out[head + "".join(p.title() for p in rest)] = value
    return out


@strawberry.input
class AccountInput:
    name: str
    industry: str | None = strawberry.UNSET
    employee_count: int | None = strawberry.UNSET
    annual_revenue: float | None = strawberry.UNSET
    country: str | None = strawberry.UNSET
    website: str | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET


@strawberry.input
class ContactInput:
    first_name: str | None = strawberry.UNSET
    last_name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    job_title: str | None = strawberry.UNSET
    country: str | None = strawberry.UNSET
    account_id: strawberry.ID | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET


@strawberry.input
class LeadInput:
    topic: str
    first_name: str | None = strawberry.UNSET
    last_name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    company_name: str | None = strawberry.UNSET
    job_title: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    contact_id: strawberry.ID | None = strawberry.UNSET
    account_id: strawberry.ID | None = strawberry.UNSET
    marketing_context: str | None = strawberry.UNSET
    source: LeadSource | None = model.LeadSource.MANUAL
    attributes: JSON | None = strawberry.UNSET


@strawberry.input
class ScoreThresholdInput:
    scoring_model_id: strawberry.ID
    min: float


@strawberry.input
class LeadFilter:
    state: list[LeadState] | None = None
    status_reason: list[LeadStatusReason] | None = None
    stage: list[LeadStage] | None = None
    sales_ready: bool | None = None
    source: list[LeadSource] | None = None
    contact_id: strawberry.ID | None = None
    account_id: strawberry.ID | None = None
    search: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_score: ScoreThresholdInput | None = None
    owner_id: strawberry.ID | None = None
    mine: bool | None = strawberry.field(
        default=None,
        description="true: only leads owned by the user the API key belongs to (an error for a "
        "key without a user). Not together with ownerId.",
    )


@strawberry.input(description="SCORE needs scoringModelId.")
class LeadOrder:
    field: LeadOrderField
    direction: OrderDirection = OrderDirection.DESC
    scoring_model_id: strawberry.ID | None = None


@strawberry.input
class MatchingStrategyInput:
    name: str
    entity: MatchEntity
    fields: list[str]
    form_ids: list[str] | None = None
    is_default: bool | None = False


@strawberry.input
class FormSubmissionInput:
    form_id: str = strawberry.field(
        description="Marketing page / form / event id; it becomes the lead's marketingContext."
    )
    fields: JSON = strawberry.field(
        description='{"email": ..., "firstName": ..., "companyName": ..., any custom key}'
    )
    source: LeadSource | None = model.LeadSource.LANDING_PAGE
    create_lead: bool | None = True
    topic: str | None = None
    submitted_at: datetime | None = None


@strawberry.input
class ImportInput:
    entity: ImportEntity
    csv: str
    mapping: JSON | None = strawberry.field(
        default=None, description='{"CSV column": "field"}; a null field skips the column.'
    )


# ---------------------------------------------------------------- payloads


@strawberry.type
class SettingsPayload:
    settings: Settings | None
    user_errors: list[UserError]


@strawberry.type
class AccountPayload:
    account: AccountType | None
    user_errors: list[UserError]


@strawberry.type
class ContactPayload:
    contact: ContactType | None
    user_errors: list[UserError]


@strawberry.type
class LeadPayload:
    lead: LeadType | None
    user_errors: list[UserError]


@strawberry.type
class FormSubmissionPayload:
    contact: ContactType | None
    lead: LeadType | None
    contact_created: bool
    lead_created: bool
    user_errors: list[UserError]


@strawberry.type
class ImportRowError:
    row: int
    message: str


@strawberry.type
class ImportPayload:
    created: int
    updated: int
    skipped: int
    failed: int
    errors: list[ImportRowError]
    user_errors: list[UserError]


@strawberry.type
class MatchingStrategyPayload:
    matching_strategy: MatchingStrategyType | None
    user_errors: list[UserError]


@strawberry.type
class DeletePayload:
    deleted_id: strawberry.ID | None
    user_errors: list[UserError]

"""GraphQL for the sales process: stages, process checkboxes, qualify/disqualify, opportunities."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import FieldNode, IntValueNode, NullValueNode, StringValueNode, VariableNode
from strawberry.scalars import JSON

from api import types as gql
from api.context import Info
from api.errors import bad_input
from api.execution import pure
from api.ids import decode_arg, decode_id, to_global_id
from api.projection import lead_reads, timeline_reads
from domain import sales_services as services
from domain.errors import Invalid
from domain.model import Lead, LeadStage, LeadStatusReason, utcnow
from domain.pagination import page_size
from domain.ports import UnitOfWork
from domain.roles import Permission
from domain.sales import (
    Activity,
    ActivityKind,
    AssignmentRule,
    AssignmentStrategy,
    Competitor,
    Direction,
    Opportunity,
    OpportunityStage,
    OpportunityStatus,
    Stakeholder,
    Team,
    User,
    UserKind,
    decode_timeline_cursor,
    encode_timeline_cursor,
)

if TYPE_CHECKING:
    from api.events import LeadEventType_

strawberry.enum(OpportunityStage)
strawberry.enum(OpportunityStatus)
strawberry.enum(UserKind)
strawberry.enum(AssignmentStrategy)
strawberry.enum(ActivityKind)
strawberry.enum(Direction)


@strawberry.type(name="Activity")
class ActivityType(gql.Node):
    kind: ActivityKind
    subject: str
    body: str | None
    direction: Direction | None
    completed: bool
    occurred_at: dt.datetime = strawberry.field(description="When it happened, or is due.")
    created_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Activity", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def lead(self, info: Info) -> gql.LeadType | None:
        return await gql.load_linked(info.context.loaders.lead, self.lead_id)  # type: ignore[attr-defined,no-any-return]

    @strawberry.field
    async def contact(self, info: Info) -> gql.ContactType | None:
        return await gql.load_linked(info.context.loaders.contact, self.contact_id)  # type: ignore[attr-defined,no-any-return]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Activity)


# An edge of a timeline page and its node are both the domain TimelineEntry itself (its `at`,
# `activity` and `event` are the node's fields): no objects made per entry to show it.


@strawberry.type
class TimelineItem:
    """An activity or a lead event: exactly one of the two is set."""

    at: dt.datetime
    activity: ActivityType | None
    event: Annotated[LeadEventType_, strawberry.lazy("api.events")] | None


@strawberry.type
class TimelineEdge:
    @strawberry.field
    @pure
    def cursor(self) -> str:
        return encode_timeline_cursor(self)  # type: ignore[arg-type]

    @strawberry.field
    @pure
    def node(self) -> TimelineItem:
        return self  # type: ignore[return-value]


@strawberry.type
class TimelineConnection:
    edges: list[TimelineEdge]
    page_info: gql.PageInfo
    # Which timeline: counted only when totalCount is asked for.
    lead_id: strawberry.Private[int | None] = None
    opportunity_id: strawberry.Private[int | None] = None

    @strawberry.field
    async def total_count(self, info: Info) -> int:
        lead_id, opportunity_id = self.lead_id, self.opportunity_id
        return await info.context.read(
            lambda r: r.activities.timeline_count(lead_id, opportunity_id)
        )


async def lead_timeline(
    info: Info, lead_id: int, first: int | None, after: str | None
) -> TimelineConnection:
    """A lead's activities and events, newest first, in keyset pages."""
    connection = await _timeline(
        info,
        first,
        after,
        lambda r, size, cursor, reads: r.activities.timeline(lead_id, size, cursor, *reads),
        lead_id,
    )
    connection.lead_id = lead_id
    return connection


def _timeline_ahead(info: Info) -> tuple[int, tuple[dt.datetime, str, int] | None] | None:
    """The page size and cursor of the lead's timeline when the selection of this `lead` field
    asks for it exactly once, plainly (no fragment or directive around it, arguments written
    out or given as variables) and with valid arguments; None otherwise: it is then read by
    its own resolver, errors and all. (A page read ahead is only used by a timeline resolver
    that asks for that same page, so a misreading here could only cost a read.)"""
    raw = info._raw_info
    if len(raw.field_nodes) != 1 or raw.field_nodes[0].selection_set is None:
        return None
    found = None
    for node in raw.field_nodes[0].selection_set.selections:
        if not isinstance(node, FieldNode):
            return None  # a fragment may hold another timeline: not worth looking into
        if node.name.value == "timeline":
            if found is not None or node.directives:
                return None
            found = node
    if found is None:
        return None
    # Strawberry hands resolvers the coerced values themselves (graphql-core: `.coerced`).
    variables: Any = getattr(raw.variable_values, "coerced", raw.variable_values)
    args: dict[str, Any] = {"first": 50, "after": None}
    for arg in found.arguments or ():
        name, value = arg.name.value, arg.value
        if name not in args:
            return None
        if isinstance(value, VariableNode):
            if value.name.value not in variables:
                return None
            args[name] = variables[value.name.value]
        elif isinstance(value, IntValueNode):
            args[name] = int(value.value)
        elif isinstance(value, StringValueNode):
            args[name] = value.value
        elif isinstance(value, NullValueNode):
            args[name] = None
        else:
            return None
    first, after = args["first"], args["after"]
    size = 50 if first is None else first
    if type(size) is not int or size < 0 or not (after is None or type(after) is str):
        return None
    size = min(size, info.context.services.max_page_size)
    try:
        return size, None if after is None else decode_timeline_cursor(after)
    except (Invalid, ValueError):
        return None


async def lead_with_timeline(info: Info, lead_id: int) -> Lead | None:
    """`lead(id:)`: the lead, as its loader would give it. When the query asks for its timeline
    too (and the lead is not loaded yet), that page is read in the same statement as the lead
    and kept for the timeline resolver: one pooled connection and trip to the database instead
    of two."""
    ctx = info.context
    loader = ctx.loaders.lead
    ahead = None if loader.cache_map.get(lead_id) is not None else _timeline_ahead(info)
    if ahead is None:
        return await loader.load(lead_id)
    size, cursor = ahead
    # Only what this selection reads of the lead (and of the timeline's activities and
    # events): such a lead is not handed to the loader, nor such a page to another timeline.
    reads, timeline = lead_reads(info), timeline_reads(info, ("timeline",))
    lead, page = await ctx.read(
        lambda r: r.activities.lead_and_timeline(lead_id, size, cursor, reads, *timeline)
    )
    if reads is None:
        loader.prime(lead_id, lead)
    if page is not None:
        ctx.keep_ahead(("timeline", lead_id, size, cursor, timeline), page)
    return lead


async def _timeline(
    info: Info, first: int | None, after: str | None, read: Any, lead_id: int | None = None
) -> TimelineConnection:
    ctx = info.context
    try:
        size = page_size(first, ctx.services.max_page_size)
    except Invalid as e:
        raise bad_input(e.message) from None
    try:
        cursor = None if after is None else decode_timeline_cursor(after)
    except Invalid as e:
        raise bad_input(e.message) from None
    # Only the activity and event attributes this selection reads (api/projection.py).
    reads = timeline_reads(info)
    page: Any = None
    if lead_id is not None:
        page = ctx.take_ahead(("timeline", lead_id, size, cursor, reads))
    if page is None:
        page = await ctx.read(lambda r: read(r, size, cursor, reads))
    entries, more = page
    end = encode_timeline_cursor(entries[-1]) if entries else None
    return TimelineConnection(
        edges=entries,
        page_info=gql.PageInfo(has_next_page=more, end_cursor=end),
    )


@strawberry.input
class ActivityInput:
    kind: ActivityKind
    subject: str
    body: str | None = None
    lead_id: strawberry.ID | None = None
    contact_id: strawberry.ID | None = None
    opportunity_id: strawberry.ID | None = None
    owner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Defaults to the user the API key belongs to, if any."
    )
    occurred_at: dt.datetime | None = None
    direction: Direction | None = None
    completed: bool = False


@strawberry.type
class ActivityPayload:
    activity: ActivityType | None
    user_errors: list[gql.UserError]


@strawberry.type(name="Team")
class TeamType(gql.Node):
    name: str
    created_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Team", self.id))  # type: ignore[arg-type]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Team)


@strawberry.type(name="User")
class UserType(gql.Node):
    name: str
    email: str
    kind: UserKind
    created_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("User", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def team(self, info: Info) -> TeamType | None:
        team_id: int | None = self.team_id  # type: ignore[attr-defined]
        if team_id is None:
            return None
        found = await info.context.read(lambda r: r.teams.get_many([team_id]))
        return found.get(team_id)  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, User)


@strawberry.input
class TeamInput:
    name: str


@strawberry.input
class UserInput:
    name: str
    email: str
    kind: UserKind = UserKind.SELLER
    team_id: strawberry.ID | None = None


@strawberry.type(name="AssignmentRule")
class AssignmentRuleType(gql.Node):
    name: str
    strategy: AssignmentStrategy
    priority: int
    active: bool
    created_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("AssignmentRule", self.id))  # type: ignore[arg-type]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, AssignmentRule)

    @strawberry.field
    def condition(self) -> JSON | None:
        """In the scoring rule language; null: every lead."""
        return self.condition_json  # type: ignore[attr-defined,no-any-return]

    @strawberry.field
    async def team(self, info: Info) -> TeamType | None:
        team_id: int = self.team_id  # type: ignore[attr-defined]
        found = await info.context.read(lambda r: r.teams.get_many([team_id]))
        return found.get(team_id)  # type: ignore[return-value]


@strawberry.input
class AssignmentRuleInput:
    name: str
    team_id: strawberry.ID
    strategy: AssignmentStrategy = AssignmentStrategy.ROUND_ROBIN
    condition: JSON | None = strawberry.field(
        default=None, description="A ConditionInput as JSON (scoring rule language); none: all."
    )
    priority: int = 0
    active: bool = True


@strawberry.type
class AssignmentRulePayload:
    assignment_rule: AssignmentRuleType | None
    user_errors: list[gql.UserError]


@strawberry.type(name="Stakeholder")
class StakeholderType:
    role: str
    created_at: dt.datetime

    @strawberry.field
    async def contact(self, info: Info) -> gql.ContactType | None:
        return await info.context.loaders.contact.load(self.contact_id)  # type: ignore[attr-defined,return-value]


@strawberry.type(name="Competitor")
class CompetitorType(gql.Node):
    name: str
    notes: str | None
    created_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Competitor", self.id))  # type: ignore[arg-type]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Competitor)


@strawberry.input
class StakeholderInput:
    contact_id: strawberry.ID
    role: str = strawberry.field(description="e.g. decision maker, influencer, user")


@strawberry.input
class CompetitorInput:
    name: str
    notes: str | None = None


@strawberry.type
class StakeholderPayload:
    stakeholder: StakeholderType | None
    user_errors: list[gql.UserError]


@strawberry.type
class CompetitorPayload:
    competitor: CompetitorType | None
    user_errors: list[gql.UserError]


@strawberry.type
class TeamPayload:
    team: TeamType | None
    user_errors: list[gql.UserError]


@strawberry.type
class UserPayload:
    user: UserType | None
    user_errors: list[gql.UserError]


@strawberry.type(name="Opportunity")
class OpportunityType(gql.Node):
    name: str
    stage: OpportunityStage
    status: OpportunityStatus
    estimated_value: float | None
    close_date: dt.date | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Opportunity", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def lead(self, info: Info) -> gql.LeadType | None:
        """The lead it was qualified from (its history stays there)."""
        return await info.context.loaders.lead.load(self.lead_id)  # type: ignore[attr-defined,return-value]

    @strawberry.field
    async def contact(self, info: Info) -> gql.ContactType | None:
        return await gql.load_linked(info.context.loaders.contact, self.contact_id)  # type: ignore[attr-defined,no-any-return]

    @strawberry.field
    async def account(self, info: Info) -> gql.AccountType | None:
        return await gql.load_linked(info.context.loaders.account, self.account_id)  # type: ignore[attr-defined,no-any-return]

    @strawberry.field
    async def timeline(
        self, info: Info, first: int | None = 50, after: str | None = None
    ) -> TimelineConnection:
        """Activities logged on the opportunity and the history carried over from its lead
        (the lead's activities and events), newest first (keyset pages)."""
        opportunity: Opportunity = self  # type: ignore[assignment]
        connection = await _timeline(
            info,
            first,
            after,
            lambda r, size, cursor, reads: r.activities.opportunity_timeline(
                opportunity, size, cursor, *reads
            ),
        )
        connection.lead_id, connection.opportunity_id = opportunity.lead_id, opportunity.id
        return connection

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Opportunity)


@strawberry.input
class QualifyLeadInput:
    opportunity_name: str | None = strawberry.field(
        default=None, description="Defaults to the lead's topic."
    )
    estimated_value: float | None = None
    estimated_close_date: dt.date | None = None


@strawberry.input
class LeadProcessInput:
    teleprospecting_ready: bool | None = None
    teleprospect_accepted: bool | None = None
    sales_ready: bool | None = None
    sales_accepted: bool | None = None


@strawberry.input
class OpportunityUpdateInput:
    """Only the fields given change; null clears estimatedValue or closeDate."""

    name: str | None = strawberry.UNSET
    stage: OpportunityStage | None = strawberry.UNSET
    status: OpportunityStatus | None = strawberry.field(
        default=strawberry.UNSET,
        description="WON or LOST closes the opportunity (stage CLOSE); OPEN reopens it.",
    )
    estimated_value: float | None = strawberry.UNSET
    close_date: dt.date | None = strawberry.UNSET


@strawberry.type
class OpportunityPayload:
    opportunity: OpportunityType | None
    user_errors: list[gql.UserError]


@strawberry.type
class QualifyLeadPayload:
    lead: gql.LeadType | None
    opportunity: OpportunityType | None
    contact: gql.ContactType | None
    account: gql.AccountType | None
    user_errors: list[gql.UserError]


async def _in_uow(info: Info, fn: Any) -> tuple[Any, list[gql.UserError]]:
    from api.resolvers import in_transaction

    return await in_transaction(info, fn)


async def require_user(ctx: Any, user_id: int) -> None:
    """BAD_USER_INPUT when there is no such user (an empty answer would look like no work)."""
    found = await ctx.read(lambda r: r.users.get_many([user_id]))
    if user_id not in found:
        raise bad_input("no user with this id (ownerId)")


def _lead_id(gid: strawberry.ID, field: str = "id") -> int:
    return decode_id(str(gid), "Lead", [field])


async def _lead_change(info: Info, fn: Any) -> gql.LeadPayload:
    info.context.require(Permission.SALES_PROCESS)
    lead, errors = await _in_uow(info, fn)
    return gql.LeadPayload(lead=lead, user_errors=errors)


@strawberry.type
class SalesQuery:
    @strawberry.field
    async def opportunity(self, info: Info, id: strawberry.ID) -> OpportunityType | None:
        info.context.require(Permission.READ)
        pk = decode_arg(id, "Opportunity")
        found = await info.context.read(lambda r: r.opportunities.get_many([pk]))
        return found.get(pk)  # type: ignore[return-value]

    @strawberry.field
    async def opportunities(
        self,
        info: Info,
        status: OpportunityStatus | None = None,
        lead_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[OpportunityType]:
        info.context.require(Permission.READ)
        lead = None if lead_id is None else decode_arg(lead_id, "Lead", ["leadId"])
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.opportunities.list(status, lead, page),
            lambda r: r.opportunities.count(status, lead),
        )


@strawberry.type
class PeopleQuery:
    @strawberry.field
    async def users(
        self,
        info: Info,
        team_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[UserType]:
        info.context.require(Permission.READ)
        team = None if team_id is None else decode_arg(team_id, "Team", ["teamId"])
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.users.list(team, page),
            lambda r: r.users.count(team),
        )

    @strawberry.field
    async def reminders(
        self, info: Info, owner_id: strawberry.ID | None = None, within_hours: int = 24
    ) -> list[ActivityType]:
        """The assistant: the owner's open appointments and tasks due in the next hours. Without
        ownerId: the user the API key belongs to."""
        ctx = info.context
        ctx.require(Permission.READ)
        if not 0 < within_hours <= 24 * 90:
            raise bad_input("withinHours must be between 1 and 2160")
        if owner_id is None:
            owner = ctx.own_user_id("ownerId")
        else:
            owner = decode_arg(owner_id, "User", ["ownerId"])
        now = utcnow()
        end = now + dt.timedelta(hours=within_hours)
        found = await ctx.read(lambda r: r.activities.upcoming(owner, now, end))
        if not found:
            await require_user(ctx, owner)
        return found  # type: ignore[return-value]

    @strawberry.field
    async def assignment_rules(self, info: Info) -> list[AssignmentRuleType]:
        """In the order they are tried."""
        info.context.require(Permission.READ)
        rules = await info.context.read(lambda r: r.assignment_rules.all())
        return rules  # type: ignore[return-value]

    @strawberry.field
    async def teams(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> gql.Connection[TeamType]:
        info.context.require(Permission.READ)
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.teams.list(page),
            lambda r: r.teams.count(),
        )


@strawberry.type
class SalesMutation:
    @strawberry.mutation
    async def create_team(self, info: Info, input: TeamInput) -> TeamPayload:
        info.context.require(Permission.ADMINISTER)
        raw = {"name": input.name}
        team, errors = await _in_uow(info, lambda uow: services.create_team(uow, raw))
        return TeamPayload(team=team, user_errors=errors)

    @strawberry.mutation
    async def create_user(self, info: Info, input: UserInput) -> UserPayload:
        """A seller, teleprospector or manager (ADMIN)."""
        info.context.require(Permission.ADMINISTER)

        async def run(uow: UnitOfWork) -> User:
            team = None
            if input.team_id is not None:
                team = decode_id(str(input.team_id), "Team", ["input", "teamId"])
            raw = {"name": input.name, "email": input.email, "kind": input.kind, "teamId": team}
            return await services.create_user(uow, raw)

        user, errors = await _in_uow(info, run)
        return UserPayload(user=user, user_errors=errors)

    @strawberry.mutation
    async def add_stakeholder(
        self, info: Info, lead_id: strawberry.ID, input: StakeholderInput
    ) -> StakeholderPayload:
        """Put a contact on the lead's buying committee (again: its role changes)."""
        info.context.require(Permission.SALES_PROCESS)

        async def run(uow: UnitOfWork) -> Stakeholder:
            contact = decode_id(str(input.contact_id), "Contact", ["input", "contactId"])
            return await services.add_stakeholder(
                uow, _lead_id(lead_id, "leadId"), contact, input.role
            )

        found, errors = await _in_uow(info, run)
        return StakeholderPayload(stakeholder=found, user_errors=errors)

    @strawberry.mutation
    async def remove_stakeholder(
        self, info: Info, lead_id: strawberry.ID, contact_id: strawberry.ID
    ) -> gql.DeletePayload:
        info.context.require(Permission.SALES_PROCESS)

        async def run(uow: UnitOfWork) -> int:
            contact = decode_id(str(contact_id), "Contact", ["contactId"])
            return await services.remove_stakeholder(uow, _lead_id(lead_id, "leadId"), contact)

        gone, errors = await _in_uow(info, run)
        gid = None if gone is None else strawberry.ID(to_global_id("Contact", gone))
        return gql.DeletePayload(deleted_id=gid, user_errors=errors)

    @strawberry.mutation
    async def add_competitor(
        self, info: Info, lead_id: strawberry.ID, input: CompetitorInput
    ) -> CompetitorPayload:
        info.context.require(Permission.SALES_PROCESS)

        async def run(uow: UnitOfWork) -> Competitor:
            return await services.add_competitor(
                uow, _lead_id(lead_id, "leadId"), input.name, input.notes
            )

        found, errors = await _in_uow(info, run)
        return CompetitorPayload(competitor=found, user_errors=errors)

    @strawberry.mutation
    async def remove_competitor(
        self, info: Info, lead_id: strawberry.ID, competitor_id: strawberry.ID
    ) -> gql.DeletePayload:
        info.context.require(Permission.SALES_PROCESS)

        async def run(uow: UnitOfWork) -> int:
            pk = decode_id(str(competitor_id), "Competitor", ["competitorId"])
            return await services.remove_competitor(uow, _lead_id(lead_id, "leadId"), pk)

        gone, errors = await _in_uow(info, run)
        gid = None if gone is None else strawberry.ID(to_global_id("Competitor", gone))
        return gql.DeletePayload(deleted_id=gid, user_errors=errors)

    @strawberry.mutation
    async def log_activity(self, info: Info, input: ActivityInput) -> ActivityPayload:
        """A call, email, appointment, task, note or post on a lead, contact or opportunity."""
        info.context.require(Permission.SALES_PROCESS)

        async def run(uow: UnitOfWork) -> Activity:
            def pk(gid: strawberry.ID | None, kind: str, name: str) -> int | None:
                return None if gid is None else decode_id(str(gid), kind, ["input", name])

            raw = {
                "kind": input.kind,
                "subject": input.subject,
                "body": input.body,
                "leadId": pk(input.lead_id, "Lead", "leadId"),
                "contactId": pk(input.contact_id, "Contact", "contactId"),
                "opportunityId": pk(input.opportunity_id, "Opportunity", "opportunityId"),
                # Without ownerId, the user the API key belongs to (if any) owns it: it shows
                # in their work list and reminders.
                "ownerId": pk(input.owner_id, "User", "ownerId")
                if input.owner_id is not None
                else info.context.principal.user_id,
                "occurredAt": input.occurred_at,
                "direction": input.direction,
                "completed": input.completed,
            }
            return await services.log_activity(uow, raw)

        activity, errors = await _in_uow(info, run)
        return ActivityPayload(activity=activity, user_errors=errors)

    @strawberry.mutation
    async def convert_activity_to_lead(self, info: Info, id: strawberry.ID) -> gql.LeadPayload:
        """Turn a received email into a lead (source ACTIVITY) about its contact."""

        async def run(uow: UnitOfWork) -> Lead:
            activity = decode_id(str(id), "Activity", ["id"])
            return await services.convert_activity_to_lead(uow, activity)

        return await _lead_change(info, run)

    @strawberry.mutation
    async def create_assignment_rule(
        self, info: Info, input: AssignmentRuleInput
    ) -> AssignmentRulePayload:
        """Who gets the leads that become sales-ready (ADMIN)."""
        info.context.require(Permission.ADMINISTER)

        async def run(uow: UnitOfWork) -> AssignmentRule:
            raw = {
                "name": input.name,
                "teamId": decode_id(str(input.team_id), "Team", ["input", "teamId"]),
                "strategy": input.strategy,
                "condition": input.condition,
                "priority": input.priority,
                "active": input.active,
            }
            return await services.create_assignment_rule(uow, raw)

        rule, errors = await _in_uow(info, run)
        return AssignmentRulePayload(assignment_rule=rule, user_errors=errors)

    @strawberry.mutation
    async def assign_lead(
        self, info: Info, id: strawberry.ID, user_id: strawberry.ID | None = None
    ) -> gql.LeadPayload:
        """Make a user the lead's owner; without userId, the assignment rules choose."""

        async def run(uow: UnitOfWork) -> Lead:
            owner = None if user_id is None else decode_id(str(user_id), "User", ["userId"])
            return await services.assign_lead(uow, _lead_id(id), owner)

        return await _lead_change(info, run)

    @strawberry.mutation
    async def set_lead_stage(
        self,
        info: Info,
        id: strawberry.ID,
        stage: LeadStage | None = None,
        process_stage: str | None = None,
    ) -> gql.LeadPayload:
        """Put a lead in any stage of its process by hand: `stage` of the default process, or
        `processStage` of its custom process (one of the two; the lead must have the fields the
        stage requires)."""

        async def run(uow: UnitOfWork) -> Lead:
            return await services.set_lead_stage(uow, _lead_id(id), stage, process_stage)

        return await _lead_change(info, run)

    @strawberry.mutation
    async def update_lead_process(
        self, info: Info, id: strawberry.ID, input: LeadProcessInput
    ) -> gql.LeadPayload:
        """Tick or untick the process checkboxes; the stage follows them forward."""
        flags = {
            name: value
            for name, value in {
                "teleprospectingReady": input.teleprospecting_ready,
                "teleprospectAccepted": input.teleprospect_accepted,
                "salesReady": input.sales_ready,
                "salesAccepted": input.sales_accepted,
            }.items()
            if value is not None
        }

        async def run(uow: UnitOfWork) -> Lead:
            return await services.update_lead_process(uow, _lead_id(id), flags)

        return await _lead_change(info, run)

    @strawberry.mutation
    async def qualify_lead(
        self, info: Info, id: strawberry.ID, input: QualifyLeadInput | None = None
    ) -> QualifyLeadPayload:
        """Close an OPEN lead as qualified and open its opportunity (DEVELOP)."""
        info.context.require(Permission.SALES_PROCESS)
        raw: dict[str, Any] = {}
        if input is not None:
            raw = {
                "opportunityName": input.opportunity_name,
                "estimatedValue": input.estimated_value,
                "estimatedCloseDate": input.estimated_close_date,
            }

        async def run(uow: UnitOfWork) -> services.Qualified:
            return await services.qualify_lead(uow, _lead_id(id), raw)

        done, errors = await _in_uow(info, run)
        if done is None:
            return QualifyLeadPayload(
                lead=None, opportunity=None, contact=None, account=None, user_errors=errors
            )
        return QualifyLeadPayload(
            lead=done.lead,
            opportunity=done.opportunity,
            contact=done.contact,
            account=done.account,
            user_errors=[],
        )

    @strawberry.mutation
    async def update_opportunity(
        self, info: Info, id: strawberry.ID, input: OpportunityUpdateInput
    ) -> OpportunityPayload:
        """Change an opportunity, close it as WON or LOST, or reopen it. A closed opportunity
        frees the lead it was qualified from to be disqualified or reactivated."""
        info.context.require(Permission.SALES_PROCESS)
        names = {
            "name": input.name,
            "stage": input.stage,
            "status": input.status,
            "estimatedValue": input.estimated_value,
            "closeDate": input.close_date,
        }
        raw = {k: v for k, v in names.items() if v is not strawberry.UNSET}

        async def run(uow: UnitOfWork) -> Opportunity:
            opportunity_id = decode_id(str(id), "Opportunity", ["id"])
            return await services.update_opportunity(uow, opportunity_id, raw)

        found, errors = await _in_uow(info, run)
        return OpportunityPayload(opportunity=found, user_errors=errors)

    @strawberry.mutation
    async def disqualify_lead(
        self, info: Info, id: strawberry.ID, reason: LeadStatusReason
    ) -> gql.LeadPayload:
        """Close a lead as LOST, CANNOT_CONTACT, NO_LONGER_INTERESTED or CANCELED."""

        async def run(uow: UnitOfWork) -> Lead:
            return await services.disqualify_lead(uow, _lead_id(id), reason)

        return await _lead_change(info, run)

    @strawberry.mutation
    async def reactivate_lead(self, info: Info, id: strawberry.ID) -> gql.LeadPayload:
        async def run(uow: UnitOfWork) -> Lead:
            return await services.reactivate_lead(uow, _lead_id(id))

        return await _lead_change(info, run)

"""Query and Mutation resolvers: parse input, check the role, run the use case."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import strawberry
from graphql import ObjectValueNode, VariableNode

from api import types as gql
from api.context import Info
from api.errors import bad_input, user_errors
from api.ids import decode_arg, decode_id, from_global_id, to_global_id
from api.sales import lead_with_timeline
from domain import importing, services
from domain.errors import DomainError, Invalid, NotFound
from domain.fields import check_search
from domain.model import Account, Contact, Lead, LeadSource, MatchingStrategy
from domain.ports import LeadFilter, LeadOrder, ScoreThreshold, UnitOfWork
from domain.roles import Permission

T = TypeVar("T")


async def in_transaction(
    info: Info, fn: Callable[[UnitOfWork], Awaitable[T]]
) -> tuple[T | None, list[gql.UserError]]:
    """Run a use case in one unit of work: (result, []) after commit, or (None, userErrors)."""
    try:
        async with info.context.services.uow() as uow:
            uow.actor = info.context.principal  # the audit log names the caller
            result = await fn(uow)
            await uow.commit()
        return result, []
    except DomainError as e:
        return None, user_errors(e)


async def sent_keys(info: Info, argument: str = "input") -> set[str]:
    """The input fields the client actually wrote, telling them from schema defaults."""
    raw = info._raw_info
    for arg in raw.field_nodes[0].arguments or ():
        if arg.name.value != argument:
            continue
        if isinstance(arg.value, ObjectValueNode):
            return {f.name.value for f in arg.value.fields}
        if isinstance(arg.value, VariableNode) and info.context.raw_variables is not None:
            value = (await info.context.raw_variables()).get(arg.value.name.value)
            return set(value) if isinstance(value, dict) else set()
    return set()


def _id(gid: Any, expected: str, field: list[str]) -> int | None:
    return None if gid is None else decode_id(str(gid), expected, field)


def _search(term: str | None, path: list[str]) -> str | None:
    try:
        return check_search(term, path)
    except Invalid as e:
        raise bad_input(e.message) from None


def _with_ids(values: dict[str, Any], *names: tuple[str, str]) -> dict[str, Any]:
    """Decode the global IDs among `values` (in place) into primary keys."""
    for key, expected in names:
        if key in values:
            values[key] = _id(values[key], expected, ["input", key])
    return values


# ---------------------------------------------------------------- lists


def lead_filter(
    f: gql.LeadFilter | None = None, *, contact_id: int | None = None, account_id: int | None = None
) -> LeadFilter:
    """The domain filter for a GraphQL LeadFilter, plus any parent record."""
    if f is None:
        return LeadFilter(contact_id=contact_id, account_id=account_id)
    min_score = None
    if f.min_score is not None:
        model_id = decode_id(
            str(f.min_score.scoring_model_id), "ScoringModel", ["filter", "minScore"]
        )
        min_score = ScoreThreshold(model_id, f.min_score.min)
    return LeadFilter(
        min_score=min_score,
        state=f.state,
        status_reason=f.status_reason,
        stage=f.stage,
        sales_ready=f.sales_ready,
        source=f.source,
        contact_id=_id(f.contact_id, "Contact", ["filter", "contactId"]) or contact_id,
        account_id=_id(f.account_id, "Account", ["filter", "accountId"]) or account_id,
        owner_id=_id(f.owner_id, "User", ["filter", "ownerId"]),
        search=_search(f.search, ["filter", "search"]),
        created_after=f.created_after,
        created_before=f.created_before,
    )


def lead_order(order: gql.LeadOrder | None) -> LeadOrder:
    """The domain ordering; SCORE needs the scoring model whose score sorts."""
    if order is None:
        return LeadOrder()
    model_id = None
    if order.field is gql.LeadOrderField.SCORE:
        if order.scoring_model_id is None:
            raise Invalid("ordering by SCORE needs scoringModelId", ["orderBy", "scoringModelId"])
        model_id = decode_id(str(order.scoring_model_id), "ScoringModel", ["orderBy"])
    descending = order.direction is gql.OrderDirection.DESC
    return LeadOrder(order.field.value, descending, model_id)


async def list_leads(
    info: Info,
    filter_: LeadFilter,
    order: gql.LeadOrder | None,
    first: int | None,
    after: str | None,
) -> gql.Connection[Any]:
    return await gql.paged(
        info.context,
        first,
        after,
        lambda r, page: r.leads.list(filter_, lead_order(order), page),
        lambda r: r.leads.count(filter_),
    )


async def list_contacts(
    info: Info, search: str | None, account_id: int | None, first: int | None, after: str | None
) -> gql.Connection[Any]:
    search = _search(search, ["search"])
    return await gql.paged(
        info.context,
        first,
        after,
        lambda r, page: r.contacts.list(search, account_id, page),
        lambda r: r.contacts.count(search, account_id),
    )


# ---------------------------------------------------------------- queries


async def _one(found: Awaitable[Mapping[int, Any]], pk: int) -> Any:
    return (await found).get(pk)


# node(id:): the types read by one repository call (the others have batch loaders, or their
# own resolver), each given the request's read repositories and the primary key.
_NODE_READS: dict[str, Callable[[Any, int], Awaitable[Any]]] = {
    "User": lambda r, pk: _one(r.users.get_many([pk]), pk),
    "Team": lambda r, pk: _one(r.teams.get_many([pk]), pk),
    "Opportunity": lambda r, pk: _one(r.opportunities.get_many([pk]), pk),
    "Activity": lambda r, pk: _one(r.activities.get_many([pk]), pk),
    "Interaction": lambda r, pk: _one(r.interactions.get_many([pk]), pk),
    "Webhook": lambda r, pk: r.webhooks.get(pk),
    "LeadEvent": lambda r, pk: r.events.positioned(pk),
    "Competitor": lambda r, pk: r.stakeholders.competitor(pk),
    "AssignmentRule": lambda r, pk: r.assignment_rules.get(pk),
    "MatchingStrategy": lambda r, pk: r.strategies.get(pk),
}


@strawberry.type
class Query:
    @strawberry.field
    async def node(self, info: Info, id: strawberry.ID) -> gql.Node | None:
        info.context.require(Permission.READ)
        try:
            type_name, pk = from_global_id(str(id))
        except Invalid as e:
            raise bad_input(e.message) from None
        loaders = info.context.loaders
        if type_name == "Account":
            return await loaders.account.load(pk)  # type: ignore[return-value]
        if type_name == "Contact":
            return await loaders.contact.load(pk)  # type: ignore[return-value]
        if type_name == "Lead":
            return await loaders.lead.load(pk)  # type: ignore[return-value]
        if type_name == "ScoringModel":
            return await loaders.scoring_model.load(pk)  # type: ignore[return-value]
        if type_name == "QualificationModel":
            return await loaders.qualification_model.load(pk)  # type: ignore[return-value]
        if type_name == "Webhook":
            info.context.require(Permission.MANAGE_WEBHOOKS)
        if type_name in ("Sequence", "SequenceRun", "Process"):
            from api.sequences import node

            return await node(info, type_name, pk)  # type: ignore[no-any-return]
        read = _NODE_READS.get(type_name)
        if read is None:
            return None  # a well-formed id of no entity this API has
        found: gql.Node | None = await info.context.read(lambda r: read(r, pk))
        return found

    @strawberry.field
    def viewer(self, info: Info) -> gql.Viewer:
        p = info.context.principal
        return gql.Viewer(name=p.name, role=p.role, user_id=p.user_id)

    @strawberry.field
    async def settings(self, info: Info) -> gql.Settings:
        info.context.require(Permission.READ)
        return await _settings(info)

    @strawberry.field
    async def account(self, info: Info, id: strawberry.ID) -> gql.AccountType | None:
        info.context.require(Permission.READ)
        return await info.context.loaders.account.load(decode_arg(id, "Account"))  # type: ignore[return-value]

    @strawberry.field
    async def accounts(
        self,
        info: Info,
        search: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[gql.AccountType]:
        info.context.require(Permission.READ)
        term = _search(search, ["search"])
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.accounts.list(term, page),
            lambda r: r.accounts.count(term),
        )

    @strawberry.field
    async def contact(self, info: Info, id: strawberry.ID) -> gql.ContactType | None:
        info.context.require(Permission.READ)
        return await info.context.loaders.contact.load(decode_arg(id, "Contact"))  # type: ignore[return-value]

    @strawberry.field
    async def contacts(
        self,
        info: Info,
        search: str | None = None,
        account_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[gql.ContactType]:
        info.context.require(Permission.READ)
        account = None if account_id is None else decode_arg(account_id, "Account")
        return await list_contacts(info, search, account, first, after)

    @strawberry.field
    async def lead(self, info: Info, id: strawberry.ID) -> gql.LeadType | None:
        info.context.require(Permission.READ)
        return await lead_with_timeline(info, decode_arg(id, "Lead"))  # type: ignore[return-value]

    @strawberry.field
    async def leads(
        self,
        info: Info,
        filter: gql.LeadFilter | None = None,
        order_by: gql.LeadOrder | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[gql.LeadType]:
        info.context.require(Permission.READ)
        try:
            domain_filter = lead_filter(filter)
        except Invalid as e:
            raise bad_input(e.message) from None
        if filter is not None and filter.mine:
            if filter.owner_id is not None:
                raise bad_input("filter: pass either mine or ownerId, not both")
            own = info.context.own_user_id("filter.ownerId")
            domain_filter = dataclasses.replace(domain_filter, owner_id=own)
        return await list_leads(info, domain_filter, order_by, first, after)

    @strawberry.field
    async def matching_strategies(
        self,
        info: Info,
        entity: gql.MatchEntity | None = None,
    ) -> list[gql.MatchingStrategyType]:
        info.context.require(Permission.READ)
        strategies = await info.context.read(lambda r: r.strategies.list(entity))
        return strategies  # type: ignore[return-value]


async def _settings(info: Info) -> gql.Settings:
    from domain.model import Feature

    enabled = await info.context.read(lambda r: r.settings.feature_enabled(Feature.LEAD_MANAGEMENT))
    return gql.Settings(lead_management_enabled=enabled)


# ---------------------------------------------------------------- mutations


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def set_feature_switch(
        self,
        info: Info,
        feature: gql.Feature,
        enabled: bool,
    ) -> gql.SettingsPayload:
        info.context.require(Permission.ADMINISTER)
        _, errors = await in_transaction(
            info, lambda uow: services.set_feature(uow, feature, enabled)
        )
        return gql.SettingsPayload(
            settings=None if errors else await _settings(info), user_errors=errors
        )

    @strawberry.mutation
    async def create_account(self, info: Info, input: gql.AccountInput) -> gql.AccountPayload:
        info.context.require(Permission.WRITE_RECORDS)
        values = gql.provided(input)
        account, errors = await in_transaction(
            info, lambda uow: services.create_account(uow, values)
        )
        return gql.AccountPayload(account=account, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def update_account(
        self, info: Info, id: strawberry.ID, input: gql.AccountInput
    ) -> gql.AccountPayload:
        info.context.require(Permission.WRITE_RECORDS)

        async def run(uow: UnitOfWork) -> Account:
            return await services.update_account(
                uow, decode_id(id, "Account", ["id"]), gql.provided(input)
            )

        account, errors = await in_transaction(info, run)
        return gql.AccountPayload(account=account, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def create_contact(self, info: Info, input: gql.ContactInput) -> gql.ContactPayload:
        info.context.require(Permission.WRITE_RECORDS)

        async def run(uow: UnitOfWork) -> Contact:
            values = _with_ids(gql.provided(input), ("accountId", "Account"))
            return await services.create_contact(uow, values)

        contact, errors = await in_transaction(info, run)
        return gql.ContactPayload(contact=contact, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def update_contact(
        self, info: Info, id: strawberry.ID, input: gql.ContactInput
    ) -> gql.ContactPayload:
        info.context.require(Permission.WRITE_RECORDS)

        async def run(uow: UnitOfWork) -> Contact:
            values = _with_ids(gql.provided(input), ("accountId", "Account"))
            return await services.update_contact(uow, decode_id(id, "Contact", ["id"]), values)

        contact, errors = await in_transaction(info, run)
        return gql.ContactPayload(contact=contact, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def create_lead(self, info: Info, input: gql.LeadInput) -> gql.LeadPayload:
        info.context.require(Permission.WRITE_RECORDS)

        async def run(uow: UnitOfWork) -> Lead:
            values = _with_ids(
                gql.provided(input), ("contactId", "Contact"), ("accountId", "Account")
            )
            return await services.create_lead(uow, values)

        lead, errors = await in_transaction(info, run)
        return gql.LeadPayload(lead=lead, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def update_lead(
        self, info: Info, id: strawberry.ID, input: gql.LeadInput
    ) -> gql.LeadPayload:
        info.context.require(Permission.WRITE_RECORDS)

        # `source` has a schema default (MANUAL): an update changes it only when it was sent.
        keep_source = "source" in await sent_keys(info)

        async def run(uow: UnitOfWork) -> Lead:
            values = _with_ids(
                gql.provided(input), ("contactId", "Contact"), ("accountId", "Account")
            )
            if not keep_source:
                values.pop("source", None)
            return await services.update_lead(uow, decode_id(id, "Lead", ["id"]), values)

        lead, errors = await in_transaction(info, run)
        return gql.LeadPayload(lead=lead, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def submit_form(
        self, info: Info, input: gql.FormSubmissionInput
    ) -> gql.FormSubmissionPayload:
        info.context.require(Permission.CAPTURE)
        cmd = services.FormSubmission(
            form_id=input.form_id,
            fields=input.fields,  # type: ignore[arg-type]
            source=input.source or LeadSource.LANDING_PAGE,
            create_lead=input.create_lead is not False,
            topic=input.topic,
            submitted_at=input.submitted_at,
        )
        result, errors = await in_transaction(info, lambda uow: services.submit_form(uow, cmd))
        if result is None:
            return gql.FormSubmissionPayload(
                contact=None,
                lead=None,
                contact_created=False,
                lead_created=False,
                user_errors=errors,
            )
        return gql.FormSubmissionPayload(
            contact=result.contact,  # type: ignore[arg-type]
            lead=result.lead,  # type: ignore[arg-type]
            contact_created=result.contact_created,
            lead_created=result.lead_created,
            user_errors=[],
        )

    @strawberry.mutation
    async def import_records(self, info: Info, input: gql.ImportInput) -> gql.ImportPayload:
        info.context.require(Permission.IMPORT)

        async def run(uow: UnitOfWork) -> importing.ImportResult:
            mapping: Any = input.mapping
            _, rows = importing.read_csv(input.csv, input.entity, mapping)
            total = importing.ImportResult()
            for chunk in importing.chunks(rows):
                total.add(await importing.import_chunk(uow, input.entity, chunk))
            return total

        result, errors = await in_transaction(info, run)
        result = result or importing.ImportResult()
        return gql.ImportPayload(
            created=result.created,
            updated=result.updated,
            skipped=result.skipped,
            failed=result.failed,
            errors=[gql.ImportRowError(row=r, message=m) for r, m in result.errors],
            user_errors=errors,
        )

    @strawberry.mutation
    async def create_matching_strategy(
        self, info: Info, input: gql.MatchingStrategyInput
    ) -> gql.MatchingStrategyPayload:
        info.context.require(Permission.MANAGE_MATCHING)
        strategy = _strategy(input)
        saved, errors = await in_transaction(
            info, lambda uow: services.create_strategy(uow, strategy)
        )
        return gql.MatchingStrategyPayload(matching_strategy=saved, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def update_matching_strategy(
        self, info: Info, id: strawberry.ID, input: gql.MatchingStrategyInput
    ) -> gql.MatchingStrategyPayload:
        info.context.require(Permission.MANAGE_MATCHING)

        async def run(uow: UnitOfWork) -> MatchingStrategy:
            pk = decode_id(id, "MatchingStrategy", ["id"])
            return await services.update_strategy(uow, pk, _strategy(input))

        saved, errors = await in_transaction(info, run)
        return gql.MatchingStrategyPayload(matching_strategy=saved, user_errors=errors)  # type: ignore[arg-type]

    @strawberry.mutation
    async def delete_matching_strategy(self, info: Info, id: strawberry.ID) -> gql.DeletePayload:
        info.context.require(Permission.MANAGE_MATCHING)

        async def run(uow: UnitOfWork) -> int:
            return await services.delete_strategy(uow, decode_id(id, "MatchingStrategy", ["id"]))

        deleted, errors = await in_transaction(info, run)
        gid = None if deleted is None else strawberry.ID(to_global_id("MatchingStrategy", deleted))
        return gql.DeletePayload(deleted_id=gid, user_errors=errors)


def _strategy(input: gql.MatchingStrategyInput) -> MatchingStrategy:
    return MatchingStrategy(
        name=input.name,
        entity=input.entity,
        fields=list(input.fields),
        form_ids=list(input.form_ids or []),
        is_default=bool(input.is_default),
    )


__all__ = ["Mutation", "NotFound", "Query"]

"""GraphQL types, queries and mutations for qualification models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from api import types as gql
from api.context import Info
from api.errors import bad_input, user_errors
from api.execution import pure
from api.ids import decode_arg, decode_id, to_global_id
from api.scoring import ScoringModelType
from domain import qualification_services as services
from domain.errors import DomainError
from domain.lifecycle import ModelStatus
from domain.model import utcnow
from domain.ports import UnitOfWork
from domain.qualification import MatchMode, QualificationModel
from domain.roles import Permission

strawberry.enum(MatchMode)


# ---------------------------------------------------------------- output types


@strawberry.type
class QualificationCriterion:
    min_score: float
    scoring_model_id: strawberry.Private[int]

    @strawberry.field
    async def scoring_model(self, info: Info) -> ScoringModelType:
        # A scoring model used by a qualification model cannot be deleted.
        return await info.context.loaders.scoring_model.load(self.scoring_model_id)  # type: ignore[return-value]


@strawberry.type
class QualificationActions:
    mark_marketing_qualified: bool
    mark_sales_ready: bool


@strawberry.type(name="QualificationModel")
class QualificationModelType(gql.Node):
    name: str
    status: ModelStatus
    version: int
    match: MatchMode
    published_at: datetime | None
    stopped_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("QualificationModel", self.id))  # type: ignore[arg-type]

    @strawberry.field
    def criteria(self) -> list[QualificationCriterion]:
        model: QualificationModel = self  # type: ignore[assignment]
        return [
            QualificationCriterion(min_score=c.min_score, scoring_model_id=c.scoring_model_id)
            for c in model.criteria
        ]

    @strawberry.field
    def actions(self) -> QualificationActions:
        model: QualificationModel = self  # type: ignore[assignment]
        return QualificationActions(
            mark_marketing_qualified=model.actions.mark_marketing_qualified,
            mark_sales_ready=model.actions.mark_sales_ready,
        )

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, QualificationModel)


@strawberry.type
class QualificationPreview:
    evaluated_leads: int
    would_qualify: int
    sample_ids: strawberry.Private[list[int]]

    @strawberry.field
    async def sample(self, info: Info, first: int | None = 10) -> list[gql.LeadType]:
        """Up to `first` of the leads that would change (newest first), as they are now."""
        first = 10 if first is None else first
        if first < 0 or first > services.MAX_SAMPLE:
            raise bad_input(f"first must be between 0 and {services.MAX_SAMPLE}")
        leads = await info.context.loaders.lead.load_many(self.sample_ids[:first])
        return [lead for lead in leads if lead is not None]  # type: ignore[misc]


# ---------------------------------------------------------------- inputs


@strawberry.input
class QualificationCriterionInput:
    scoring_model_id: strawberry.ID
    min_score: float


@strawberry.input
class QualificationActionsInput:
    mark_marketing_qualified: bool = True
    mark_sales_ready: bool = False


@strawberry.input
class QualificationModelInput:
    name: str
    criteria: list[QualificationCriterionInput]
    actions: QualificationActionsInput
    match: MatchMode = MatchMode.ALL


def _raw(input: QualificationModelInput) -> dict[str, Any]:
    """The input as the domain reads it, scoring model IDs decoded (bad ones: INVALID)."""
    errors: list[DomainError] = []
    criteria: list[dict[str, Any]] = []
    for i, c in enumerate(input.criteria):
        path = ["input", "criteria", str(i), "scoringModelId"]
        try:
            model_id = decode_id(str(c.scoring_model_id), "ScoringModel", path)
        except DomainError as e:
            errors.append(e)
            continue
        criteria.append({"scoringModelId": model_id, "minScore": c.min_score})
    if errors:
        from domain.errors import ValidationErrors

        raise errors[0] if len(errors) == 1 else ValidationErrors(errors)
    return {
        "name": input.name,
        "match": input.match.value,
        "criteria": criteria,
        "actions": {
            "markMarketingQualified": input.actions.mark_marketing_qualified,
            "markSalesReady": input.actions.mark_sales_ready,
        },
    }


# ---------------------------------------------------------------- payloads


@strawberry.type
class QualificationModelPayload:
    qualification_model: QualificationModelType | None
    user_errors: list[gql.UserError]


@strawberry.type
class QualificationPreviewPayload:
    preview: QualificationPreview | None
    user_errors: list[gql.UserError]


# ---------------------------------------------------------------- resolvers


async def _in_uow(info: Info, fn: Any) -> tuple[Any, list[gql.UserError]]:
    from api.resolvers import in_transaction

    return await in_transaction(info, fn)


def _model_id(gid: strawberry.ID) -> int:
    return decode_id(str(gid), "QualificationModel", ["id"])


async def _change(info: Info, fn: Any) -> QualificationModelPayload:
    info.context.require(Permission.MANAGE_MODELS)
    model, errors = await _in_uow(info, fn)
    return QualificationModelPayload(qualification_model=model, user_errors=errors)


@strawberry.type
class QualificationQuery:
    @strawberry.field
    async def qualification_model(
        self, info: Info, id: strawberry.ID
    ) -> QualificationModelType | None:
        info.context.require(Permission.READ)
        pk = decode_arg(id, "QualificationModel")
        return await info.context.loaders.qualification_model.load(pk)  # type: ignore[return-value]

    @strawberry.field
    async def qualification_models(
        self,
        info: Info,
        status: ModelStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[QualificationModelType]:
        info.context.require(Permission.READ)
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.qualification_models.list(status, page),
            lambda r: r.qualification_models.count(status),
        )


@strawberry.type
class QualificationMutation:
    @strawberry.mutation
    async def create_qualification_model(
        self, info: Info, input: QualificationModelInput
    ) -> QualificationModelPayload:
        async def run(uow: UnitOfWork) -> QualificationModel:
            return await services.create_qualification_model(uow, _raw(input))

        return await _change(info, run)

    @strawberry.mutation
    async def update_qualification_model(
        self, info: Info, id: strawberry.ID, input: QualificationModelInput
    ) -> QualificationModelPayload:
        async def run(uow: UnitOfWork) -> QualificationModel:
            return await services.update_qualification_model(uow, _model_id(id), _raw(input))

        return await _change(info, run)

    @strawberry.mutation
    async def publish_qualification_model(
        self, info: Info, id: strawberry.ID
    ) -> QualificationModelPayload:
        async def run(uow: UnitOfWork) -> QualificationModel:
            return await services.publish_qualification_model(uow, _model_id(id), utcnow())

        return await _change(info, run)

    @strawberry.mutation
    async def stop_qualification_model(
        self, info: Info, id: strawberry.ID
    ) -> QualificationModelPayload:
        async def run(uow: UnitOfWork) -> QualificationModel:
            return await services.stop_qualification_model(uow, _model_id(id))

        return await _change(info, run)

    @strawberry.mutation
    async def delete_qualification_model(self, info: Info, id: strawberry.ID) -> gql.DeletePayload:
        info.context.require(Permission.MANAGE_MODELS)

        async def run(uow: UnitOfWork) -> int:
            return await services.delete_qualification_model(uow, _model_id(id))

        deleted, errors = await _in_uow(info, run)
        gid = (
            None if deleted is None else strawberry.ID(to_global_id("QualificationModel", deleted))
        )
        return gql.DeletePayload(deleted_id=gid, user_errors=errors)

    @strawberry.mutation
    async def preview_qualification_model(
        self, info: Info, input: QualificationModelInput
    ) -> QualificationPreviewPayload:
        """What the model would do to the leads now (count and sample); nothing changes."""
        ctx = info.context
        ctx.require(Permission.MANAGE_MODELS)
        try:
            raw = _raw(input)
            found = await ctx.read(
                lambda r: services.preview_qualification_model(r, raw, services.MAX_SAMPLE)
            )
        except DomainError as e:
            return QualificationPreviewPayload(preview=None, user_errors=user_errors(e))
        preview = QualificationPreview(
            evaluated_leads=found.evaluated,
            would_qualify=found.would_qualify,
            sample_ids=list(found.sample_ids),
        )
        return QualificationPreviewPayload(preview=preview, user_errors=[])

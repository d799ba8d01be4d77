"""GraphQL types, queries and mutations for interactions and scoring models."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api import types as gql
from api.context import Info
from api.errors import user_errors
from api.execution import direct_input, pure
from api.ids import decode_arg, decode_id, to_global_id
from domain import scoring, scoring_services
from domain.errors import DomainError, Invalid
from domain.lifecycle import ModelStatus
from domain.model import utcnow
from domain.ports import UnitOfWork
from domain.roles import Permission
from domain.scoring import (
    ConditionEntity,
    Contribution,
    InteractionType,
    Operator,
    Rule,
    ScoringModel,
    StoredScore,
    decode_breakdown,
)

for _enum in (InteractionType, ModelStatus, ConditionEntity):
    strawberry.enum(_enum)
strawberry.enum(Operator, name="ConditionOperator")


# ---------------------------------------------------------------- output types


@strawberry.type(name="Interaction")
class InteractionType_(gql.Node):
    type: InteractionType
    name: str | None
    occurred_at: datetime
    properties: JSON | None

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Interaction", self.id))  # type: ignore[arg-type]

    @strawberry.field
    async def contact(self, info: Info) -> gql.ContactType:
        contact = await info.context.loaders.contact.load(self.contact_id)  # type: ignore[attr-defined]
        return contact  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, scoring.Interaction)


@strawberry.type
class ScoringRule:
    id: strawberry.ID
    name: str
    points: float
    per_occurrence: bool
    max_points: float | None
    condition: JSON


def _rule(model: ScoringModel, rule: Rule) -> ScoringRule:
    return ScoringRule(
        id=strawberry.ID(f"{to_global_id('ScoringModel', model.id)}.{rule.id}"),
        name=rule.name,
        points=rule.points,
        per_occurrence=rule.per_occurrence,
        max_points=rule.max_points,
        condition=rule.raw_condition,
    )


@strawberry.type
class Grade:
    name: str
    min_score: float


@strawberry.type(name="ScoringModel")
class ScoringModelType(gql.Node):
    name: str
    description: str | None
    status: ModelStatus
    version: int
    sales_ready_threshold: float | None
    published_at: datetime | None
    stopped_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("ScoringModel", self.id))  # type: ignore[arg-type]

    @strawberry.field
    def rules(self) -> list[ScoringRule]:
        model: ScoringModel = self  # type: ignore[assignment]
        return [_rule(model, r) for r in model.rules]

    @strawberry.field
    def grades(self) -> list[Grade]:
        model: ScoringModel = self  # type: ignore[assignment]
        return [Grade(name=g.name, min_score=g.min_score) for g in model.grades]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, ScoringModel)


@strawberry.type
class ScoreContribution:
    rule: ScoringRule
    points: float
    occurrences: int
    expires_at: datetime | None


@strawberry.type
class LeadScore:
    score: float
    sales_ready: bool
    updated_at: datetime
    model: strawberry.Private[ScoringModel]
    entries: strawberry.Private[list[Any]]

    @strawberry.field
    def scoring_model(self) -> ScoringModelType:
        return self.model  # type: ignore[return-value]

    @strawberry.field
    def grade(self) -> str | None:
        return self.model.grade_for(self.score)

    @strawberry.field
    def breakdown(self) -> list[ScoreContribution]:
        rules = {r.id: r for r in self.model.scoring_rules}
        out: list[ScoreContribution] = []
        for c in decode_breakdown(self.model, self.entries):
            out.append(_contribution(self.model, rules[c.rule_id], c))
        return out


def _contribution(model: ScoringModel, rule: Rule, c: Contribution) -> ScoreContribution:
    return ScoreContribution(
        rule=_rule(model, rule), points=c.points, occurrences=c.occurrences, expires_at=c.expires_at
    )


async def lead_scores(info: Info, lead_id: int) -> list[LeadScore]:
    """A lead's stored scores (batched across the leads of a page)."""
    stored: list[StoredScore] = await info.context.loaders.scores.load(lead_id)
    models = await info.context.loaders.scoring_model.load_many(
        [s.scoring_model_id for s in stored]
    )
    return [
        LeadScore(
            score=s.score,
            sales_ready=s.sales_ready,
            updated_at=s.updated_at,
            model=m,
            entries=s.entries,
        )
        for s, m in zip(stored, models, strict=True)
        if m is not None
    ]


# ---------------------------------------------------------------- inputs


@strawberry.input
class AttributeConditionInput:
    entity: ConditionEntity
    field: str = strawberry.field(
        description='A standard field (jobTitle, industry, employeeCount…) or "attributes.<key>".'
    )
    operator: Operator
    value: JSON | None = None


@strawberry.input
class PropertyMatchInput:
    key: str
    operator: Operator
    value: JSON | None = None


@strawberry.input
class InteractionConditionInput:
    type: InteractionType
    name: str | None = None
    within_days: int | None = None
    min_count: int | None = 1
    properties: list[PropertyMatchInput] | None = None


@strawberry.input(one_of=True)
class ConditionInput:
    all: list[ConditionInput] | None = strawberry.UNSET
    any: list[ConditionInput] | None = strawberry.UNSET
    not_: ConditionInput | None = strawberry.field(default=strawberry.UNSET, name="not")
    attribute: AttributeConditionInput | None = strawberry.UNSET
    interaction: InteractionConditionInput | None = strawberry.UNSET


@strawberry.input
class ScoringRuleInput:
    name: str
    points: float
    condition: ConditionInput
    per_occurrence: bool | None = strawberry.field(
        default=False,
        description="Points per matching interaction (condition: one interaction condition).",
    )
    max_points: float | None = strawberry.field(
        default=None, description="Cap on what this rule awards."
    )


@strawberry.input
class GradeInput:
    name: str
    min_score: float


@strawberry.input
class ScoringModelInput:
    name: str
    rules: list[ScoringRuleInput]
    description: str | None = None
    sales_ready_threshold: float | None = None
    grades: list[GradeInput] | None = None


@direct_input  # batches of up to 1000: see api.execution.direct_input
@strawberry.input
class RecordInteractionInput:
    type: InteractionType
    contact_id: strawberry.ID | None = strawberry.field(
        default=None, description="Exactly one of contactId and contactEmail."
    )
    contact_email: str | None = None
    name: str | None = strawberry.field(default=None, description="Identifies CUSTOM events.")
    occurred_at: datetime | None = strawberry.field(default=None, description="Default: now.")
    properties: JSON | None = None
    idempotency_key: str | None = strawberry.field(
        default=None, description="The same key is recorded once."
    )


def to_raw(value: Any) -> Any:
    """An input object as the API's JSON (camelCase keys, enum names), leaving out unset fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is strawberry.UNSET or v is None:
                continue
            name = f.name.rstrip("_")
            head, *rest = name.split("_")
            out[head + "".join(p.title() for p in rest)] = to_raw(v)
        return out
    if isinstance(value, list):
        return [to_raw(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


# ---------------------------------------------------------------- payloads


@strawberry.type
class ScoringModelPayload:
    scoring_model: ScoringModelType | None
    user_errors: list[gql.UserError]


@strawberry.type
class RecordInteractionsPayload:
    interactions: list[InteractionType_]
    user_errors: list[gql.UserError]


# ---------------------------------------------------------------- resolvers


async def _in_uow(info: Info, fn: Any) -> tuple[Any, list[gql.UserError]]:
    from api.resolvers import in_transaction

    return await in_transaction(info, fn)


def _item(raw: RecordInteractionInput, path: list[str]) -> scoring_services.InteractionInput:
    contact_id = None
    if raw.contact_id is not None:
        contact_id = decode_id(str(raw.contact_id), "Contact", [*path, "contactId"])
    return scoring_services.InteractionInput(
        type=raw.type,
        contact_id=contact_id,
        contact_email=raw.contact_email,
        name=raw.name,
        occurred_at=raw.occurred_at,
        properties=raw.properties,
        idempotency_key=raw.idempotency_key,
    )


async def _record(
    info: Info, inputs: Sequence[RecordInteractionInput], batch: bool
) -> RecordInteractionsPayload:
    info.context.require(Permission.CAPTURE)
    if len(inputs) > scoring_services.MAX_BATCH:
        error = Invalid(f"at most {scoring_services.MAX_BATCH} interactions per call", ["inputs"])
        return RecordInteractionsPayload(interactions=[], user_errors=user_errors(error))
    items: list[scoring_services.InteractionInput] = []
    positions: list[int] = []  # each item's index in `inputs`
    errors: list[tuple[int, DomainError]] = []
    for i, raw in enumerate(inputs):
        path = ["inputs", str(i)] if batch else ["input"]
        try:
            items.append(_item(raw, path))
            positions.append(i)
        except DomainError as e:  # a malformed ID: reported like any other bad item
            errors.append((i, e))
    if items:
        try:
            result = await info.context.services.recorder.record(items, batch=batch)
        except DomainError as e:
            return RecordInteractionsPayload(interactions=[], user_errors=user_errors(e))
    else:
        result = scoring_services.RecordResult([], [])
    for problem in result.errors:
        # The recorder numbered the items it was given: back to their index in `inputs`.
        index, where = 0, problem.field
        if batch and where and len(where) > 1 and where[0] == "inputs":
            index = positions[int(where[1])]
            problem.field = ["inputs", str(index), *where[2:]]
        errors.append((index, problem))
    errors.sort(key=lambda found: found[0])
    problems = [u for _, e in errors for u in user_errors(e)]
    recorded: list[Any] = result.interactions  # domain objects, resolved by InteractionType_
    return RecordInteractionsPayload(interactions=recorded, user_errors=problems)


def _model_id(gid: strawberry.ID) -> int:
    return decode_id(str(gid), "ScoringModel", ["id"])


@strawberry.type
class ScoringQuery:
    @strawberry.field
    async def scoring_model(self, info: Info, id: strawberry.ID) -> ScoringModelType | None:
        info.context.require(Permission.READ)
        pk = decode_arg(id, "ScoringModel")
        return await info.context.loaders.scoring_model.load(pk)  # type: ignore[return-value]

    @strawberry.field
    async def scoring_models(
        self,
        info: Info,
        status: ModelStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[ScoringModelType]:
        info.context.require(Permission.READ)
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.scoring_models.list(status, page),
            lambda r: r.scoring_models.count(status),
        )


@strawberry.type
class ScoringMutation:
    @strawberry.mutation
    async def record_interaction(
        self, info: Info, input: RecordInteractionInput
    ) -> RecordInteractionsPayload:
        return await _record(info, [input], batch=False)

    @strawberry.mutation
    async def record_interactions(
        self, info: Info, inputs: list[RecordInteractionInput]
    ) -> RecordInteractionsPayload:
        return await _record(info, inputs, batch=True)

    @strawberry.mutation
    async def create_scoring_model(
        self, info: Info, input: ScoringModelInput
    ) -> ScoringModelPayload:
        info.context.require(Permission.MANAGE_MODELS)
        raw = to_raw(input)
        model, errors = await _in_uow(
            info, lambda uow: scoring_services.create_scoring_model(uow, raw)
        )
        return ScoringModelPayload(scoring_model=model, user_errors=errors)

    @strawberry.mutation
    async def update_scoring_model(
        self, info: Info, id: strawberry.ID, input: ScoringModelInput
    ) -> ScoringModelPayload:
        info.context.require(Permission.MANAGE_MODELS)
        raw = to_raw(input)

        async def run(uow: UnitOfWork) -> ScoringModel:
            return await scoring_services.update_scoring_model(uow, _model_id(id), raw)

        model, errors = await _in_uow(info, run)
        return ScoringModelPayload(scoring_model=model, user_errors=errors)

    @strawberry.mutation
    async def publish_scoring_model(self, info: Info, id: strawberry.ID) -> ScoringModelPayload:
        info.context.require(Permission.MANAGE_MODELS)

        async def run(uow: UnitOfWork) -> ScoringModel:
            return await scoring_services.publish_scoring_model(uow, _model_id(id), utcnow())

        model, errors = await _in_uow(info, run)
        return ScoringModelPayload(scoring_model=model, user_errors=errors)

    @strawberry.mutation
    async def stop_scoring_model(self, info: Info, id: strawberry.ID) -> ScoringModelPayload:
        info.context.require(Permission.MANAGE_MODELS)

        async def run(uow: UnitOfWork) -> ScoringModel:
            return await scoring_services.stop_scoring_model(uow, _model_id(id))

        model, errors = await _in_uow(info, run)
        return ScoringModelPayload(scoring_model=model, user_errors=errors)

    @strawberry.mutation
    async def delete_scoring_model(self, info: Info, id: strawberry.ID) -> gql.DeletePayload:
        info.context.require(Permission.MANAGE_MODELS)

        async def run(uow: UnitOfWork) -> int:
            return await scoring_services.delete_scoring_model(uow, _model_id(id))

        deleted, errors = await _in_uow(info, run)
        gid = None if deleted is None else strawberry.ID(to_global_id("ScoringModel", deleted))
        return gql.DeletePayload(deleted_id=gid, user_errors=errors)

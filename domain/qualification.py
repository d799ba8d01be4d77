"""Qualification models: criteria on LIVE scoring models' scores, and what happens when met.

A model holds a minimum score per scoring model, combined with ALL (every criterion) or ANY
(at least one). A lead that meets them is marked marketing-qualified and/or sales-ready, with
these guards: only OPEN leads change; a lead already qualified (state or status reason
QUALIFIED) is never marked again; marks are sticky — a marketing-qualified lead stays so when
its scores drop later.

As for scoring, the meaning exists twice: `meets` and `decide` here for one lead, and a SQL
form in persistence for set-based work (publishing over every lead, previews). A score the
scoring model has not given the lead meets no criterion.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain import lifecycle
from domain.errors import DomainError, Invalid, ValidationErrors
from domain.lifecycle import ModelStatus
from domain.model import Lead, LeadState, LeadStatusReason, utcnow

MAX_CRITERIA = 20
MAX_SCORE = 1e12


class MatchMode(enum.Enum):
    ALL = "ALL"
    ANY = "ANY"


@dataclass(frozen=True, slots=True)
class QualificationCriterion:
    scoring_model_id: int
    min_score: float


@dataclass(frozen=True, slots=True)
class QualificationActions:
    mark_marketing_qualified: bool = True
    mark_sales_ready: bool = False


@dataclass(slots=True)
class QualificationModel:
    name: str
    criteria: list[QualificationCriterion]
    actions: QualificationActions = field(default_factory=QualificationActions)
    match: MatchMode = MatchMode.ALL
    status: ModelStatus = ModelStatus.DRAFT
    version: int = 0
    id: int = 0
    published_at: datetime | None = None
    stopped_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def edit(self, definition: QualificationModel) -> None:
        """Replace name, criteria, match and actions; only a DRAFT or STOPPED model may change."""
        lifecycle.require_editable(self)
        self.name = definition.name
        self.criteria = definition.criteria
        self.match = definition.match
        self.actions = definition.actions
        self.updated_at = utcnow()

    def publish(self) -> None:
        """Make the model LIVE; each publish is a new version."""
        lifecycle.go_live(self)

    def stop(self) -> None:
        """Stop the model: it acts no more, and what it did stays as it is."""
        lifecycle.stop(self)

    @property
    def scoring_model_ids(self) -> list[int]:
        return [c.scoring_model_id for c in self.criteria]


def meets(model: QualificationModel, scores: Mapping[int, float]) -> bool:
    """Whether a lead with these scores (scoring model id → score) meets the criteria."""
    hits = (
        c.scoring_model_id in scores and scores[c.scoring_model_id] >= c.min_score
        for c in model.criteria
    )
    return all(hits) if model.match is MatchMode.ALL else any(hits)


def can_change(lead: Lead) -> bool:
    """Only OPEN leads that are not already qualified are marked."""
    return lead.state is LeadState.OPEN and lead.status_reason is not LeadStatusReason.QUALIFIED


@dataclass(frozen=True, slots=True)
class Decision:
    """What a model does to a lead: which marks it sets now."""

    marketing_qualified: bool
    sales_ready: bool

    def __bool__(self) -> bool:
        return self.marketing_qualified or self.sales_ready


def decide(
    model: QualificationModel,
    lead: Lead,
    scores: Mapping[int, float],
    before: Mapping[int, float] | None = None,
) -> Decision:
    """The marks `model` sets on `lead` given its scores (none when the guards say no).

    With `before`, the lead's scores before they were just computed: the model marks only when
    its criteria newly hold (they did not with those), so a mark taken off by hand is not put
    back by a change that leaves the criteria as they were."""
    if not can_change(lead) or not meets(model, scores):
        return Decision(False, False)
    if before is not None and meets(model, before):
        return Decision(False, False)
    return Decision(
        model.actions.mark_marketing_qualified
        and lead.status_reason is not LeadStatusReason.MARKETING_QUALIFIED,
        model.actions.mark_sales_ready and not lead.sales_ready,
    )


def _number(value: Any, path: list[str], errors: list[DomainError]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(Invalid("must be a number", path))
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too big for a float
        number = math.inf
    if not math.isfinite(number) or abs(number) > MAX_SCORE:
        errors.append(Invalid(f"must be a finite number within ±{MAX_SCORE:g}", path))
        return None
    return number


def build_qualification_model(raw: Mapping[str, Any]) -> QualificationModel:
    """A DRAFT model from a QualificationModelInput (API names), checking everything at once.

    Criteria name scoring models by their (decoded) id; whether those exist and are LIVE is
    for the use case to check.
    """
    errors: list[DomainError] = []
    name = raw.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 200:
        errors.append(Invalid("name must be 1 to 200 characters", ["input", "name"]))
    match_raw = raw.get("match") or MatchMode.ALL.value
    try:
        match = MatchMode(match_raw)
    except (ValueError, TypeError):
        errors.append(Invalid("match must be ALL or ANY", ["input", "match"]))
        match = MatchMode.ALL
    criteria_raw: Any = raw.get("criteria") or []
    if not isinstance(criteria_raw, list) or not all(isinstance(c, Mapping) for c in criteria_raw):
        errors.append(Invalid("criteria is a list of criteria", ["input", "criteria"]))
        criteria_raw = []
    elif not criteria_raw:
        errors.append(Invalid("a model needs at least one criterion", ["input", "criteria"]))
    elif len(criteria_raw) > MAX_CRITERIA:
        errors.append(
            Invalid(f"a model has at most {MAX_CRITERIA} criteria", ["input", "criteria"])
        )
        criteria_raw = []
    criteria: list[QualificationCriterion] = []
    for i, c in enumerate(criteria_raw):
        path = ["input", "criteria", str(i)]
        model_id = c.get("scoringModelId")
        minimum = _number(c.get("minScore"), [*path, "minScore"], errors)
        if not isinstance(model_id, int) or isinstance(model_id, bool):
            errors.append(Invalid("scoringModelId must name a scoring model", [*path]))
            continue
        if any(k.scoring_model_id == model_id for k in criteria):
            errors.append(Invalid("each scoring model may appear in one criterion only", [*path]))
            continue
        if minimum is not None:
            criteria.append(QualificationCriterion(model_id, minimum))
    actions_raw = raw.get("actions") or {}
    if not isinstance(actions_raw, Mapping):
        errors.append(Invalid("actions is an object", ["input", "actions"]))
        actions_raw = {}
    actions = QualificationActions(
        bool(actions_raw.get("markMarketingQualified", True)),
        bool(actions_raw.get("markSalesReady", False)),
    )
    if not (actions.mark_marketing_qualified or actions.mark_sales_ready):
        errors.append(
            Invalid(
                "a model must mark leads marketing-qualified, sales-ready or both",
                ["input", "actions"],
            )
        )
    if errors:
        raise errors[0] if len(errors) == 1 else ValidationErrors(errors)
    return QualificationModel(name=name, criteria=criteria, actions=actions, match=match)

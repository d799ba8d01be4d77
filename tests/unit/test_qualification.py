"""Qualification rules of the domain: criteria, guards, stickiness, lifecycle, validation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from domain.errors import Conflict, Invalid, ValidationErrors
from domain.lifecycle import ModelStatus
from domain.model import Lead, LeadState, LeadStatusReason
from domain.qualification import (
    MatchMode,
    QualificationActions,
    QualificationCriterion,
    QualificationModel,
    build_qualification_model,
    decide,
    meets,
)


def model(
    match: MatchMode = MatchMode.ALL, mq: bool = True, sr: bool = False
) -> QualificationModel:
    return QualificationModel(
        name="m",
        criteria=[QualificationCriterion(1, 50), QualificationCriterion(2, 30)],
        actions=QualificationActions(mq, sr),
        match=match,
    )


@pytest.mark.parametrize(
    ("scores", "all_", "any_"),
    [
        ({1: 50, 2: 30}, True, True),
        ({1: 49.9, 2: 30}, False, True),
        ({1: 50}, False, True),  # a missing score meets nothing
        ({}, False, False),
        ({1: 10, 2: 10}, False, False),
        ({1: -5, 2: 31}, False, True),
    ],
)
def test_all_and_any(scores: dict[int, float], all_: bool, any_: bool) -> None:
    assert meets(model(MatchMode.ALL), scores) is all_
    assert meets(model(MatchMode.ANY), scores) is any_


@pytest.mark.parametrize(
    ("state", "reason", "sales_ready", "mq", "sr"),
    [
        (LeadState.OPEN, LeadStatusReason.NEW, False, True, True),
        (LeadState.OPEN, LeadStatusReason.CONTACTED, True, True, False),
        (LeadState.OPEN, LeadStatusReason.MARKETING_QUALIFIED, False, False, True),
        (LeadState.OPEN, LeadStatusReason.QUALIFIED, False, False, False),
        (LeadState.QUALIFIED, LeadStatusReason.QUALIFIED, False, False, False),
        (LeadState.DISQUALIFIED, LeadStatusReason.LOST, False, False, False),
    ],
)
def test_guards(
    state: LeadState, reason: LeadStatusReason, sales_ready: bool, mq: bool, sr: bool
) -> None:
    lead = Lead(topic="t", state=state, status_reason=reason, sales_ready=sales_ready)
    decision = decide(model(mq=True, sr=True), lead, {1: 80, 2: 80})
    assert (decision.marketing_qualified, decision.sales_ready) == (mq, sr)
    assert bool(decision) is (mq or sr)


def test_marks_stay_when_scores_drop() -> None:
    lead = Lead(topic="t", status_reason=LeadStatusReason.MARKETING_QUALIFIED, sales_ready=True)
    assert not decide(model(mq=True, sr=True), lead, {1: 0, 2: 0})
    assert lead.status_reason is LeadStatusReason.MARKETING_QUALIFIED and lead.sales_ready


def test_only_the_chosen_actions() -> None:
    lead = Lead(topic="t")
    decision = decide(model(mq=False, sr=True), lead, {1: 80, 2: 80})
    assert (decision.marketing_qualified, decision.sales_ready) == (False, True)


def test_lifecycle() -> None:
    m = model()
    m.publish()
    assert (m.status, m.version) == (ModelStatus.LIVE, 1)
    with pytest.raises(Conflict):
        m.edit(model())
    with pytest.raises(Conflict):
        m.publish()
    m.stop()
    with pytest.raises(Conflict):
        m.stop()
    m.edit(model(MatchMode.ANY))
    assert m.match is MatchMode.ANY
    m.publish()
    assert m.version == 2 and m.stopped_at is None


def raw(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "MQL",
        "match": "ALL",
        "criteria": [{"scoringModelId": 1, "minScore": 10}],
        "actions": {"markMarketingQualified": True, "markSalesReady": False},
    }
    return {**body, **overrides}


def test_build_reads_the_input() -> None:
    m = build_qualification_model(raw(match="ANY"))
    assert (m.name, m.match, m.status, m.criteria) == (
        "MQL",
        MatchMode.ANY,
        ModelStatus.DRAFT,
        [QualificationCriterion(1, 10.0)],
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, ["input", "name"]),
        ({"name": "x" * 201}, ["input", "name"]),
        ({"match": "SOME"}, ["input", "match"]),
        ({"criteria": []}, ["input", "criteria"]),
        (
            {"criteria": [{"scoringModelId": 1, "minScore": math.nan}]},
            ["input", "criteria", "0", "minScore"],
        ),
        (
            {"criteria": [{"scoringModelId": 1, "minScore": math.inf}]},
            ["input", "criteria", "0", "minScore"],
        ),
        (
            {"criteria": [{"scoringModelId": 1, "minScore": True}]},
            ["input", "criteria", "0", "minScore"],
        ),
        ({"criteria": [{"scoringModelId": 1, "minScore": 1}] * 2}, ["input", "criteria", "1"]),
        (
            {"criteria": [{"scoringModelId": i, "minScore": 1} for i in range(21)]},
            ["input", "criteria"],
        ),
        ({"actions": {"markMarketingQualified": False}}, ["input", "actions"]),
    ],
)
def test_build_rejects(overrides: dict[str, Any], field: list[str]) -> None:
    with pytest.raises(Invalid) as e:
        build_qualification_model(raw(**overrides))
    assert e.value.field == field


def test_build_reports_every_problem_at_once() -> None:
    with pytest.raises(ValidationErrors) as e:
        build_qualification_model(raw(name="", criteria=[]))
    assert [p.field for p in e.value.errors] == [["input", "name"], ["input", "criteria"]]

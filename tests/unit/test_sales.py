"""The default lead process: automatic moves go forward only; closing rules."""

from __future__ import annotations

import pytest

from domain import sales
from domain.errors import Conflict, Invalid
from domain.model import Lead, LeadStage, LeadState, LeadStatusReason


def test_first_score_moves_an_inquiry_only() -> None:
    lead = Lead(topic="t")
    change = sales.first_scored(lead)
    assert change is not None and lead.stage is LeadStage.AUTOMATED_MARKETING_QUALIFICATION
    assert change.payload["previousStage"] == "INQUIRY"
    assert sales.first_scored(lead) is None
    later = Lead(topic="t", stage=LeadStage.SALES_ACCEPTANCE)
    assert sales.first_scored(later) is None and later.stage is LeadStage.SALES_ACCEPTANCE
    closed = Lead(topic="t", state=LeadState.QUALIFIED)
    assert sales.first_scored(closed) is None


def test_automatic_moves_never_go_back() -> None:
    lead = Lead(topic="t", stage=LeadStage.SALES_ACCEPTANCE, teleprospecting_ready=True)
    assert sales.follow_checkboxes(lead) is None
    assert lead.stage is LeadStage.SALES_ACCEPTANCE


def test_sales_ready_by_hand_records_the_event_once() -> None:
    lead = Lead(topic="t")
    changes = sales.update_process(lead, {"salesReady": True})
    assert [c.type for c in changes] == ["SALES_READY", "STAGE_CHANGED"]
    assert sales.update_process(lead, {"salesReady": True}) == []
    with pytest.raises(Invalid):
        sales.update_process(lead, {"nope": True})


def test_closing_rules() -> None:
    lead = Lead(topic="t")
    with pytest.raises(Conflict):
        sales.reactivate(lead, False)
    sales.qualify(lead)
    with pytest.raises(Conflict):
        sales.qualify(lead)
    with pytest.raises(Conflict):
        sales.disqualify(lead, LeadStatusReason.LOST, has_open_opportunity=True)
    change = sales.disqualify(lead, LeadStatusReason.CANCELED, has_open_opportunity=False)
    assert change.payload["previousStatusReason"] == "QUALIFIED"
    assert (lead.state, lead.status_reason) == (LeadState.DISQUALIFIED, LeadStatusReason.CANCELED)
    sales.reactivate(lead, False)
    assert (lead.state, lead.status_reason) == (LeadState.OPEN, LeadStatusReason.NEW)

"""The default lead process: automatic moves go forward only; closing rules."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain import sales
from domain.errors import Conflict, Invalid
from domain.model import Lead, LeadStage, LeadState, LeadStatusReason
from domain.sales import (
    TimelineEntry,
    decode_timeline_cursor,
    encode_timeline_cursor,
    keyset_cursor,
)
from domain.sequences import WorkItem, encode_work_cursor


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
    assert sales.follow_checkboxes(lead, ("teleprospecting_ready",)) is None
    assert lead.stage is LeadStage.SALES_ACCEPTANCE


def test_only_boxes_ticked_now_move_a_lead() -> None:
    """A stage set by hand stays until a box that calls for a move is ticked again."""
    lead = Lead(topic="t")
    sales.update_process(lead, {"teleprospectingReady": True})
    sales.update_process(lead, {"teleprospectAccepted": True})
    assert lead.stage is LeadStage.TELEPROSPECTING_QUALIFICATION
    lead.stage = LeadStage.INQUIRY  # by hand
    for flags in ({"salesAccepted": True}, {"teleprospectingReady": True}, {}):
        assert sales.update_process(lead, flags) == []
        assert lead.stage is LeadStage.INQUIRY
    sales.update_process(lead, {"teleprospectAccepted": False})
    changes = sales.update_process(lead, {"teleprospectAccepted": True})
    assert [c.type for c in changes] == ["STAGE_CHANGED"]
    assert lead.stage is LeadStage.TELEPROSPECTING_QUALIFICATION


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


# ---------------------------------------------------------------- keyset cursors


@pytest.mark.parametrize(
    ("at", "source", "id_"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "a", 1),
        (datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "e", 2**40),
        (datetime(1999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))), "s", 0),
        (datetime(2026, 1, 2), "a", -7),
        # Outside the direct format: the JSON encoder answers.
        (datetime(2026, 1, 2, tzinfo=UTC), 'q"\\é', 3),
        (datetime(2026, 1, 2, tzinfo=UTC), "a", True),
    ],
)
def test_keyset_cursor_is_the_compact_json_array_in_base64(
    at: datetime, source: str, id_: int
) -> None:
    raw = json.dumps([at.isoformat(), source, id_], separators=(",", ":"))
    expected = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    assert keyset_cursor(at, source, id_) == expected
    if source in ("a", "e") and id_.__class__ is int:
        entry = TimelineEntry(at, source, id_, None, None)
        assert encode_timeline_cursor(entry) == expected
        if at.tzinfo is not None:
            assert decode_timeline_cursor(expected) == (at, source, id_)
    if source in ("a", "s") and id_.__class__ is int:
        item = WorkItem(at, source, id_, None, None, None)
        assert encode_work_cursor(item) == expected

"""Lead events: what happened to a lead, in the order the outbox committed it.

Every change to a lead is written to the event table in the transaction that makes it
(a transactional outbox). Each event gets a *position* after commit (see
`persistence.relay`); positions are dense, strictly increasing and committed in increasing
order, so "everything after position p" is a complete, gap-free answer at any moment. The
opaque cursor of an event encodes its position.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import Invalid
from domain.model import Lead


class LeadEventType(enum.Enum):
    CREATED = "CREATED"
    SCORE_CHANGED = "SCORE_CHANGED"
    MARKETING_QUALIFIED = "MARKETING_QUALIFIED"
    SALES_READY = "SALES_READY"
    STAGE_CHANGED = "STAGE_CHANGED"
    QUALIFIED = "QUALIFIED"
    DISQUALIFIED = "DISQUALIFIED"
    REACTIVATED = "REACTIVATED"
    ASSIGNED = "ASSIGNED"


QUALIFICATION_CHANGES = (
    LeadEventType.MARKETING_QUALIFIED,
    LeadEventType.SALES_READY,
    LeadEventType.QUALIFIED,
    LeadEventType.DISQUALIFIED,
)


@dataclass(frozen=True, slots=True)
class LeadEvent:
    """One stored, positioned event. `payload` keys are listed in `lead_snapshot`'s docstring."""

    position: int
    id: int
    lead_id: int
    type: str
    occurred_at: datetime
    payload: Mapping[str, Any]
    # The lead as read once for everyone the event is fanned out to (not stored with it).
    lead: Lead | None = field(default=None, compare=False)


def lead_snapshot(lead: Lead, **extra: Any) -> dict[str, Any]:
    """The payload of an event about `lead`: its state after the change, plus `extra`.

    Keys a reader understands (every writer stores the state keys; in an event stored by an
    earlier version without one, a missing state key means "as the lead is now"):
    statusReason, previousStatusReason, salesReady, previousSalesReady, stage,
    scoringModelId, score, previousScore, qualificationModelId.
    """
    return {
        "statusReason": lead.status_reason.value,
        "salesReady": lead.sales_ready,
        "stage": lead.stage.value,
        **extra,
    }


_CURSOR_PREFIX = "ev:"


def encode_event_cursor(position: int) -> str:
    """The opaque cursor of the event at `position`."""
    raw = f"{_CURSOR_PREFIX}{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_event_cursor(cursor: str, field: str = "after") -> int:
    """The position a cursor stands for; Invalid when it is not an event cursor of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError
        digits = raw[len(_CURSOR_PREFIX) :]
        if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
            raise ValueError
        position = int(digits)
        if position >= 2**63:  # beyond BIGINT: no event has it
            raise ValueError
        return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid(f"'{cursor[:64]}' is not a valid event cursor", [field]) from None

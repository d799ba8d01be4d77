"""Contacts, accounts, leads and matching strategies: the records marketing works with."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class LeadState(enum.Enum):
    OPEN = "OPEN"
    QUALIFIED = "QUALIFIED"
    DISQUALIFIED = "DISQUALIFIED"


class LeadStatusReason(enum.Enum):
    NEW = "NEW"
    CONTACTED = "CONTACTED"
    MARKETING_QUALIFIED = "MARKETING_QUALIFIED"
    QUALIFIED = "QUALIFIED"
    LOST = "LOST"
    CANNOT_CONTACT = "CANNOT_CONTACT"
    NO_LONGER_INTERESTED = "NO_LONGER_INTERESTED"
    CANCELED = "CANCELED"


class LeadStage(enum.Enum):
    INQUIRY = "INQUIRY"
    AUTOMATED_MARKETING_QUALIFICATION = "AUTOMATED_MARKETING_QUALIFICATION"
    TELEPROSPECTING_ACCEPTANCE = "TELEPROSPECTING_ACCEPTANCE"
    TELEPROSPECTING_QUALIFICATION = "TELEPROSPECTING_QUALIFICATION"
    SALES_ACCEPTANCE = "SALES_ACCEPTANCE"


class LeadSource(enum.Enum):
    MANUAL = "MANUAL"
    IMPORT = "IMPORT"
    LANDING_PAGE = "LANDING_PAGE"
    EVENT_REGISTRATION = "EVENT_REGISTRATION"
    LEAD_GEN_FORM = "LEAD_GEN_FORM"
    JOURNEY = "JOURNEY"
    ACTIVITY = "ACTIVITY"
    OTHER = "OTHER"


FORM_SOURCES = frozenset(
    {LeadSource.LANDING_PAGE, LeadSource.EVENT_REGISTRATION, LeadSource.LEAD_GEN_FORM}
)


class MatchEntity(enum.Enum):
    CONTACT = "CONTACT"
    LEAD = "LEAD"


class Feature(enum.Enum):
    LEAD_MANAGEMENT = "LEAD_MANAGEMENT"


def _full_name(first: str | None, last: str | None, fallback: str | None) -> str:
    name = " ".join(part for part in (first, last) if part)
    return name or (fallback or "")


@dataclass(slots=True)
class Account:
    name: str
    industry: str | None = None
    employee_count: int | None = None
    annual_revenue: float | None = None
    country: str | None = None
    website: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class Contact:
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    job_title: str | None = None
    country: str | None = None
    account_id: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def full_name(self) -> str:
        return _full_name(self.first_name, self.last_name, self.email)


@dataclass(slots=True)
class Lead:
    topic: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    company_name: str | None = None
    job_title: str | None = None
    phone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    contact_id: int | None = None
    account_id: int | None = None
    marketing_context: str | None = None
    source: LeadSource = LeadSource.MANUAL
    state: LeadState = LeadState.OPEN
    status_reason: LeadStatusReason = LeadStatusReason.NEW
    sales_ready: bool = False
    stage: LeadStage = LeadStage.INQUIRY
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    # The default business process's checkboxes (see domain/sales.py).
    teleprospecting_ready: bool = False
    teleprospect_accepted: bool = False
    sales_accepted: bool = False
    owner_id: int | None = None  # the user (seller) working the lead
    # A custom process (domain/sequences.py) and the lead's stage in it; None: the default.
    process_id: int | None = None
    process_stage: str | None = None

    @property
    def full_name(self) -> str:
        return _full_name(self.first_name, self.last_name, self.email)

    @property
    def scorable(self) -> bool:
        """A lead with neither a parent contact nor a parent account is never scored."""
        return self.contact_id is not None or self.account_id is not None


@dataclass(slots=True)
class MatchingStrategy:
    name: str
    entity: MatchEntity
    fields: list[str]
    form_ids: list[str] = field(default_factory=list)
    is_default: bool = False
    id: int = 0

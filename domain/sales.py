"""The lead business process and sales qualification: stages, checkboxes, qualify, disqualify.

The default process has five stages in order. A lead enters automated marketing qualification
when it first gets a score; ticking teleprospecting-ready moves it to teleprospecting
acceptance, teleprospect-accepted to teleprospecting qualification, and sales-ready (by hand,
by a scoring model's threshold or by a qualification model) straight to sales acceptance,
skipping the teleprospecting stages. Automatic moves only go forward; a user may set any
stage by hand.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from domain.errors import Conflict, Invalid
from domain.fields import CONTACT_FIELDS, coerce
from domain.model import Lead, LeadStage, LeadState, LeadStatusReason, utcnow
from domain.pagination import cursor_time, is_int64
from domain.scoring import Condition, parse_condition

STAGES = list(LeadStage)
DISQUALIFY_REASONS = frozenset(
    {
        LeadStatusReason.LOST,
        LeadStatusReason.CANNOT_CONTACT,
        LeadStatusReason.NO_LONGER_INTERESTED,
        LeadStatusReason.CANCELED,
    }
)
MAX_VALUE = 1e15


class OpportunityStage(enum.Enum):
    DEVELOP = "DEVELOP"
    PROPOSE = "PROPOSE"
    CLOSE = "CLOSE"


class OpportunityStatus(enum.Enum):
    OPEN = "OPEN"
    WON = "WON"
    LOST = "LOST"


@dataclass(slots=True)
class Opportunity:
    name: str
    lead_id: int
    contact_id: int | None = None
    account_id: int | None = None
    estimated_value: float | None = None
    close_date: date | None = None
    stage: OpportunityStage = OpportunityStage.DEVELOP
    status: OpportunityStatus = OpportunityStatus.OPEN
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Change:
    """An event to record about a lead: its type and payload."""

    type: str
    payload: dict[str, Any]


def _state(lead: Lead) -> dict[str, Any]:
    return {
        "statusReason": lead.status_reason.value,
        "salesReady": lead.sales_ready,
        "stage": lead.stage.value,
    }


def move_to(lead: Lead, stage: LeadStage, *, forward_only: bool) -> Change | None:
    """Put the lead in `stage` (automatic moves never go back); the STAGE_CHANGED, if any."""
    if stage is lead.stage:
        return None
    if forward_only and STAGES.index(stage) < STAGES.index(lead.stage):
        return None
    previous = lead.stage
    lead.stage = stage
    lead.updated_at = utcnow()
    return Change("STAGE_CHANGED", {**_state(lead), "previousStage": previous.value})


def first_scored(lead: Lead) -> Change | None:
    """A lead's first points move it from inquiry to automated marketing qualification."""
    if lead.stage is not LeadStage.INQUIRY or lead.state is not LeadState.OPEN:
        return None
    return move_to(lead, LeadStage.AUTOMATED_MARKETING_QUALIFICATION, forward_only=True)


# The stage each checkbox moves a lead to when it is ticked, furthest first.
_TICKED_TO = (
    ("sales_ready", LeadStage.SALES_ACCEPTANCE),
    ("teleprospect_accepted", LeadStage.TELEPROSPECTING_QUALIFICATION),
    ("teleprospecting_ready", LeadStage.TELEPROSPECTING_ACCEPTANCE),
)


def follow_checkboxes(lead: Lead, ticked: Collection[str]) -> Change | None:
    """The automatic stage move for the checkboxes just `ticked` (attribute names), forward
    only: to the furthest stage one of them calls for. Boxes ticked before, and salesAccepted
    (no stage of its own), move nothing: a stage set by hand stays."""
    if lead.state is not LeadState.OPEN:
        return None
    for attr, target in _TICKED_TO:
        if attr in ticked and getattr(lead, attr):
            return move_to(lead, target, forward_only=True)
    return None


PROCESS_FLAGS = {
    "teleprospectingReady": "teleprospecting_ready",
    "teleprospectAccepted": "teleprospect_accepted",
    "salesReady": "sales_ready",
    "salesAccepted": "sales_accepted",
}


def process_flags(lead: Lead) -> tuple[bool, ...]:
    """The lead's process checkboxes, in PROCESS_FLAGS order."""
    return tuple(getattr(lead, attr) for attr in PROCESS_FLAGS.values())


def update_process(lead: Lead, flags: Mapping[str, bool]) -> list[Change]:
    """Tick or untick the process checkboxes given (API names), then follow them."""
    if lead.state is not LeadState.OPEN:
        raise Conflict(f"the lead is {lead.state.value}; only an OPEN lead moves in its process")
    changes: list[Change] = []
    ticked: list[str] = []
    for name, value in flags.items():
        attr = PROCESS_FLAGS.get(name)
        if attr is None:
            raise Invalid(f"unknown process field {name}", ["input", name])
        before = getattr(lead, attr)
        if before != value:
            setattr(lead, attr, bool(value))
            lead.updated_at = utcnow()
            if value:
                ticked.append(attr)
            if attr == "sales_ready":
                # Both ways: a dashboard following qualification changes sees the mark taken
                # off by hand too (salesReady false, previousSalesReady true).
                changes.append(
                    Change("SALES_READY", {**_state(lead), "previousSalesReady": before})
                )
    moved = follow_checkboxes(lead, ticked)
    if moved is not None:
        changes.append(moved)
    return changes


def qualify(lead: Lead) -> Change:
    """Close an OPEN lead as qualified (the opportunity is made by the use case)."""
    if lead.state is not LeadState.OPEN:
        raise Conflict(
            f"only an OPEN lead can be qualified; this one is {lead.state.value}", ["id"]
        )
    previous = lead.status_reason
    lead.state, lead.status_reason = LeadState.QUALIFIED, LeadStatusReason.QUALIFIED
    lead.updated_at = utcnow()
    return Change("QUALIFIED", {**_state(lead), "previousStatusReason": previous.value})


def disqualify(lead: Lead, reason: LeadStatusReason, has_open_opportunity: bool) -> Change:
    """Close a lead with a reason; not while an opportunity made from it is open."""
    if reason not in DISQUALIFY_REASONS:
        names = ", ".join(sorted(r.value for r in DISQUALIFY_REASONS))
        raise Invalid(f"a disqualification reason is one of {names}", ["reason"])
    if lead.state is LeadState.DISQUALIFIED:
        raise Conflict("the lead is already disqualified", ["id"])
    if has_open_opportunity:
        raise Conflict(
            "an opportunity made from this lead is open; close it first (updateOpportunity)",
            ["id"],
        )
    previous = lead.status_reason
    lead.state, lead.status_reason = LeadState.DISQUALIFIED, reason
    lead.updated_at = utcnow()
    return Change("DISQUALIFIED", {**_state(lead), "previousStatusReason": previous.value})


def reactivate(lead: Lead, has_open_opportunity: bool) -> Change:
    """Open a closed lead again (status NEW); not while its opportunity is open."""
    if lead.state is LeadState.OPEN:
        raise Conflict("the lead is already OPEN", ["id"])
    if has_open_opportunity:
        raise Conflict(
            "an opportunity made from this lead is open; close it first (updateOpportunity)",
            ["id"],
        )
    previous = lead.status_reason
    lead.state, lead.status_reason = LeadState.OPEN, LeadStatusReason.NEW
    lead.updated_at = utcnow()
    return Change("REACTIVATED", {**_state(lead), "previousStatusReason": previous.value})


def _opportunity_name(value: Any, field: str) -> str:
    name = str(value or "").strip()
    if not name or len(name) > 1000:
        raise Invalid(f"{field} must be 1 to 1000 characters", ["input", field])
    return name


def _estimated_value(value: Any) -> float | None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(float(value))
        or not 0 <= float(value) <= MAX_VALUE
    ):
        raise Invalid("estimatedValue must be a finite amount ≥ 0", ["input", "estimatedValue"])
    return None if value is None else float(value)


def _close_date(value: Any, field: str) -> date | None:
    if value is not None and not isinstance(value, date):
        raise Invalid(f"{field} must be a date", ["input", field])
    return value


def build_opportunity(lead: Lead, raw: Mapping[str, Any]) -> Opportunity:
    """The opportunity a qualified lead becomes (name defaults to the lead's topic)."""
    return Opportunity(
        name=_opportunity_name(raw.get("opportunityName") or lead.topic, "opportunityName"),
        lead_id=lead.id,
        estimated_value=_estimated_value(raw.get("estimatedValue")),
        close_date=_close_date(raw.get("estimatedCloseDate"), "estimatedCloseDate"),
    )


OPPORTUNITY_FIELDS = frozenset(("name", "stage", "status", "estimatedValue", "closeDate"))


def update_opportunity(o: Opportunity, raw: Mapping[str, Any]) -> None:
    """Change an opportunity with the fields given (API names; null clears estimatedValue and
    closeDate). Status WON or LOST closes it (stage CLOSE); a closed one only changes when it
    is reopened (status OPEN) in the same change. Checked in full before anything changes."""
    unknown = set(raw) - OPPORTUNITY_FIELDS
    if unknown:
        raise Invalid(f"unknown opportunity field {sorted(unknown)[0]}", ["input"])
    status = raw.get("status", o.status)
    if not isinstance(status, OpportunityStatus):
        raise Invalid("status must be OPEN, WON or LOST", ["input", "status"])
    reopened = o.status is not OpportunityStatus.OPEN and status is OpportunityStatus.OPEN
    # Reopened without a stage: back to the start of the sales stages.
    stage = raw.get("stage", OpportunityStage.DEVELOP if reopened else o.stage)
    if not isinstance(stage, OpportunityStage):
        raise Invalid("stage must be DEVELOP, PROPOSE or CLOSE", ["input", "stage"])
    if status is OpportunityStatus.OPEN and stage is OpportunityStage.CLOSE:
        raise Invalid(
            "an open opportunity is in DEVELOP or PROPOSE; close it with status WON or LOST",
            ["input", "stage"],
        )
    if o.status is not OpportunityStatus.OPEN and status is not OpportunityStatus.OPEN:
        raise Conflict(
            f"the opportunity is {o.status.value}; reopen it (status OPEN) to change it", ["id"]
        )
    name = _opportunity_name(raw["name"], "name") if "name" in raw else o.name
    value = _estimated_value(raw["estimatedValue"]) if "estimatedValue" in raw else None
    close = _close_date(raw["closeDate"], "closeDate") if "closeDate" in raw else None
    o.name, o.status = name, status
    o.stage = OpportunityStage.CLOSE if status is not OpportunityStatus.OPEN else stage
    if "estimatedValue" in raw:
        o.estimated_value = value
    if "closeDate" in raw:
        o.close_date = close
    o.updated_at = utcnow()


# ---------------------------------------------------------------- users and teams


class UserKind(enum.Enum):
    SELLER = "SELLER"
    TELEPROSPECTOR = "TELEPROSPECTOR"
    MANAGER = "MANAGER"


@dataclass(slots=True)
class Team:
    name: str
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class User:
    """Someone who works leads: a seller, a teleprospector or a manager."""

    name: str
    email: str
    kind: UserKind = UserKind.SELLER
    team_id: int | None = None
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)


def build_team(raw: Mapping[str, Any]) -> Team:
    name = str(raw.get("name") or "").strip()
    if not name or len(name) > 200:
        raise Invalid("name must be 1 to 200 characters", ["input", "name"])
    return Team(name=name)


def build_user(raw: Mapping[str, Any]) -> User:
    """A user from a UserInput (API names); the email is normalised (trim, lower-case)."""
    name = str(raw.get("name") or "").strip()
    if not name or len(name) > 200:
        raise Invalid("name must be 1 to 200 characters", ["input", "name"])
    email = coerce(CONTACT_FIELDS["email"], raw.get("email"), ["input", "email"])
    if email is None:
        raise Invalid("email is required", ["input", "email"])
    kind = raw.get("kind") or UserKind.SELLER
    return User(name=name, email=email, kind=UserKind(kind), team_id=raw.get("teamId"))


def assign(lead: Lead, user: User | None) -> Change | None:
    """Make `user` the lead's owner (None: nobody); the ASSIGNED event when it changes."""
    owner = user.id if user is not None else None
    if owner == lead.owner_id:
        return None
    previous = lead.owner_id
    lead.owner_id = owner
    lead.updated_at = utcnow()
    return Change("ASSIGNED", {**_state(lead), "ownerId": owner, "previousOwnerId": previous})


# ---------------------------------------------------------------- assignment rules


class AssignmentStrategy(enum.Enum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_LOADED = "LEAST_LOADED"


@dataclass(slots=True)
class AssignmentRule:
    """Who gets a lead that becomes sales-ready: a team's member, when the condition holds.

    Rules are tried by `priority` (then age); the first whose condition holds (no condition:
    every lead) picks a member of its team, in turn (ROUND_ROBIN, after `last_user_id`) or the
    one with the fewest open leads (LEAST_LOADED, ties to the oldest user).
    """

    name: str
    team_id: int
    strategy: AssignmentStrategy = AssignmentStrategy.ROUND_ROBIN
    condition: Condition | None = None
    condition_json: Any = None  # the condition as the API gave it, to store and show
    priority: int = 0
    active: bool = True
    last_user_id: int | None = None
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)

    def choose(self, members: Sequence[User], loads: Mapping[int, int]) -> User | None:
        """The member who gets the next lead (members in id order), None for an empty team."""
        if not members:
            return None
        if self.strategy is AssignmentStrategy.LEAST_LOADED:
            return min(members, key=lambda u: (loads.get(u.id, 0), u.id))
        after = [u for u in members if self.last_user_id is None or u.id > self.last_user_id]
        return after[0] if after else members[0]


def build_assignment_rule(raw: Mapping[str, Any]) -> AssignmentRule:
    """A rule from an AssignmentRuleInput (API names, team id decoded)."""
    name = raw.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 200:
        raise Invalid("name must be 1 to 200 characters", ["input", "name"])
    try:
        strategy = AssignmentStrategy(raw.get("strategy") or AssignmentStrategy.ROUND_ROBIN)
    except (ValueError, TypeError):
        raise Invalid("unknown assignment strategy", ["input", "strategy"]) from None
    condition_json = raw.get("condition")
    condition = (
        None if condition_json is None else parse_condition(condition_json, ["input", "condition"])
    )
    priority = raw.get("priority") or 0
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 10**6:
        raise Invalid("priority must be a whole number within ±1,000,000", ["input", "priority"])
    return AssignmentRule(
        name=name,
        team_id=int(raw["teamId"]),
        strategy=strategy,
        condition=condition,
        condition_json=condition_json,
        priority=priority,
        active=bool(raw.get("active", True)),
    )


# ---------------------------------------------------------------- stakeholders and competitors

MAX_ROLE = 200


@dataclass(slots=True)
class Stakeholder:
    """A contact with a role in the lead's buying decision (decision maker, influencer, …)."""

    lead_id: int
    contact_id: int
    role: str
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class Competitor:
    """A competitor in the running for the lead's business."""

    lead_id: int
    name: str
    notes: str | None = None
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)


def _text(value: Any, name: str, limit: int, required: bool = True) -> str | None:
    text = str(value or "").strip()
    if not text:
        if required:
            raise Invalid(f"{name} must not be empty", ["input", name])
        return None
    if len(text) > limit:
        raise Invalid(f"{name} is longer than {limit} characters", ["input", name])
    return text


def build_stakeholder(lead_id: int, contact_id: int, role: Any) -> Stakeholder:
    return Stakeholder(lead_id, contact_id, _text(role, "role", MAX_ROLE) or "")


def build_competitor(lead_id: int, name: Any, notes: Any) -> Competitor:
    return Competitor(
        lead_id, _text(name, "name", 200) or "", _text(notes, "notes", 5000, required=False)
    )


# ---------------------------------------------------------------- activities (the timeline)


class ActivityKind(enum.Enum):
    PHONE_CALL = "PHONE_CALL"
    EMAIL = "EMAIL"
    APPOINTMENT = "APPOINTMENT"
    TASK = "TASK"
    NOTE = "NOTE"
    POST = "POST"


class Direction(enum.Enum):
    INCOMING = "INCOMING"
    OUTGOING = "OUTGOING"


@dataclass(slots=True)
class Activity:
    """Something a seller did or will do about a lead, contact or opportunity."""

    kind: ActivityKind
    subject: str
    occurred_at: datetime  # when it happened, or is due (tasks, appointments)
    body: str | None = None
    lead_id: int | None = None
    contact_id: int | None = None
    opportunity_id: int | None = None
    owner_id: int | None = None
    direction: Direction | None = None
    completed: bool = False
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)


def build_activity(raw: Mapping[str, Any]) -> Activity:
    """An activity from an ActivityInput (API names, ids decoded)."""
    subject = _text(raw.get("subject"), "subject", 1000) or ""
    body = _text(raw.get("body"), "body", 20000, required=False)
    if not any(raw.get(k) is not None for k in ("leadId", "contactId", "opportunityId")):
        raise Invalid("an activity is about a lead, a contact or an opportunity", ["input"])
    when = raw.get("occurredAt") or utcnow()
    if when.tzinfo is None:
        raise Invalid("occurredAt needs a time zone", ["input", "occurredAt"])
    return Activity(
        kind=ActivityKind(raw["kind"]),
        subject=subject,
        occurred_at=when,
        body=body,
        lead_id=raw.get("leadId"),
        contact_id=raw.get("contactId"),
        opportunity_id=raw.get("opportunityId"),
        owner_id=raw.get("ownerId"),
        direction=Direction(raw["direction"]) if raw.get("direction") else None,
        completed=bool(raw.get("completed", False)),
    )


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a lead's timeline: an activity or a lead event, at its time."""

    at: datetime
    source: str  # "a" activity, "e" event: part of the cursor
    id: int
    activity: Activity | None
    event: Any  # domain.events.LeadEvent (kept loose: events import nothing of sales)


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def keyset_cursor(at: datetime, source: str, id_: int) -> str:
    """The opaque cursor of a (time, source, id) keyset position: base64 of the compact JSON
    array. The usual case (one-letter source, int id) is formatted directly, with the same
    bytes the JSON encoder writes (an ISO timestamp needs no escaping): it runs for every edge
    of a page."""
    if id_.__class__ is int and source in _SOURCES:
        raw = f'["{at.isoformat()}","{source}",{id_}]'
    else:
        raw = _COMPACT.encode([at.isoformat(), source, id_])
    # base64.urlsafe_b64encode, without its two wrapper calls.
    encoded = binascii.b2a_base64(raw.encode(), newline=False).translate(_URLSAFE)
    return encoded.decode().rstrip("=")


_SOURCES = frozenset(("a", "e", "s"))
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encode_timeline_cursor(entry: TimelineEntry) -> str:
    return keyset_cursor(entry.at, entry.source, entry.id)


def decode_keyset_cursor(cursor: str, sources: Collection[str]) -> tuple[datetime, str, int]:
    """The (time, source, id) a `keyset_cursor` stands for; Invalid when it is not one, or its
    source is not one of `sources`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, source, id_ = json.loads(base64.urlsafe_b64decode(padded.encode()))
        when = cursor_time(at)
        if source not in sources or not is_int64(id_):
            raise ValueError
        return when, source, id_
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Invalid(f"'{cursor[:64]}' is not a valid cursor", ["after"]) from None


def decode_timeline_cursor(cursor: str) -> tuple[datetime, str, int]:
    """The (time, source, id) a timeline cursor stands for; Invalid when it is not one."""
    return decode_keyset_cursor(cursor, ("a", "e"))

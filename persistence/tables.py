"""The database tables (SQLModel). Row ↔ domain mapping lives in repositories.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text, so every value is stored in one naive UTC form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # SQLite hands back the text we stored (or SQL's own 'YYYY-MM-DD HH:MM:SS'): one C
        # parse instead of the generic regular-expression parse and a second conversion.
        # Naive text (every value we store) parses as UTC with its offset appended: ten times
        # cheaper than parsing and then `replace(tzinfo=UTC)`, and `tzinfo` is the same UTC.
        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                fast = parse(value + "+00:00")
                if fast.tzinfo is UTC:  # not so for a date alone ("+00:00" read as its time)
                    return fast
            except (ValueError, TypeError):
                pass  # text with an offset of its own (or not text): the general way
            parsed = parse(value)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)

        parse = datetime.fromisoformat

        return process


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
IdType = BigInteger().with_variant(Integer(), "sqlite")


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=False, **kw))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


def _text(length: int = 1000, **kw: Any) -> Any:
    return Field(default=None, sa_column=Column(String(length), **kw))


class AccountRow(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_created", "created_at", "id"),
        Index("ix_accounts_name_key", "name_key"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(1000), nullable=False))
    name_key: str = Field(sa_column=Column(String(1000), nullable=False))
    industry: str | None = _text()
    employee_count: int | None = Field(default=None, sa_column=Column(BigInteger))
    annual_revenue: float | None = None
    country: str | None = _text()
    website: str | None = _text()
    attributes: dict[str, Any] = _json()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ContactRow(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_created", "created_at", "id"),
        Index("ux_contacts_email", "email", unique=True),
        Index("ix_contacts_account", "account_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    first_name: str | None = _text()
    last_name: str | None = _text()
    email: str | None = _text()
    phone: str | None = _text()
    job_title: str | None = _text()
    country: str | None = _text()
    account_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("accounts.id", ondelete="SET NULL"))
    )
    attributes: dict[str, Any] = _json()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class LeadRow(SQLModel, table=True):
    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_created", "created_at", "id"),
        Index("ix_leads_updated", "updated_at", "id"),
        Index("ix_leads_contact", "contact_id"),
        Index("ix_leads_account", "account_id"),
        Index("ix_leads_email_context", "email", "marketing_context"),
        Index("ix_leads_context", "marketing_context"),
        Index("ix_leads_owner", "owner_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    topic: str = Field(sa_column=Column(String(1000), nullable=False))
    first_name: str | None = _text()
    last_name: str | None = _text()
    email: str | None = _text()
    company_name: str | None = _text()
    job_title: str | None = _text()
    phone: str | None = _text()
    attributes: dict[str, Any] = _json()
    contact_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("contacts.id", ondelete="SET NULL"))
    )
    account_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("accounts.id", ondelete="SET NULL"))
    )
    marketing_context: str | None = _text()
    source: str = Field(sa_column=Column(String(32), nullable=False))
    state: str = Field(sa_column=Column(String(32), nullable=False))
    status_reason: str = Field(sa_column=Column(String(32), nullable=False))
    sales_ready: bool = Field(sa_column=Column(Boolean, nullable=False))
    stage: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    teleprospecting_ready: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    teleprospect_accepted: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    sales_accepted: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    owner_id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, ForeignKey("users.id", ondelete="SET NULL")),
    )
    process_id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, ForeignKey("processes.id", ondelete="SET NULL")),
    )
    process_stage: str | None = _text(200)


class MatchingStrategyRow(SQLModel, table=True):
    __tablename__ = "matching_strategies"
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    entity: str = Field(sa_column=Column(String(16), nullable=False))
    fields: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    form_ids: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    is_default: bool = Field(sa_column=Column(Boolean, nullable=False))


class SettingRow(SQLModel, table=True):
    __tablename__ = "settings"
    key: str = Field(sa_column=Column(String(100), primary_key=True))
    value: Any = Field(sa_column=Column(JSONType, nullable=False))


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user", "user_id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    role: str = Field(sa_column=Column(String(32), nullable=False))
    prefix: str = Field(sa_column=Column(String(32), nullable=False))
    key_hash: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    created_at: datetime = _ts()
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # The user the key belongs to ("my leads", the default work list); null for a bare key.
    user_id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, ForeignKey("users.id", ondelete="SET NULL")),
    )


metadata = SQLModel.metadata
accounts = AccountRow.__table__  # type: ignore[attr-defined]
contacts = ContactRow.__table__  # type: ignore[attr-defined]
leads = LeadRow.__table__  # type: ignore[attr-defined]
matching_strategies = MatchingStrategyRow.__table__  # type: ignore[attr-defined]
settings = SettingRow.__table__  # type: ignore[attr-defined]
api_keys = ApiKeyRow.__table__  # type: ignore[attr-defined]


class InteractionRow(SQLModel, table=True):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_contact_type_time", "contact_id", "type", "occurred_us"),
        Index("ux_interactions_idempotency", "idempotency_key", unique=True),
        Index("ix_interactions_created", "created_at", "id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    contact_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    )
    type: str = Field(sa_column=Column(String(32), nullable=False))
    name: str | None = _text(200)
    occurred_at: datetime = _ts()
    # Microseconds since the epoch: windows and expiries are integer arithmetic, identical in
    # Python, SQLite and PostgreSQL.
    occurred_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    properties: dict[str, Any] = _json()
    idempotency_key: str | None = _text(200)
    created_at: datetime = _ts()


class ScoringModelRow(SQLModel, table=True):
    __tablename__ = "scoring_models"
    __table_args__ = (Index("ix_scoring_models_created", "created_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    description: str | None = _text(5000)
    status: str = Field(sa_column=Column(String(16), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    rules: list[Any] = Field(sa_column=Column(JSONType, nullable=False))
    published_rules: list[Any] | None = Field(default=None, sa_column=Column(JSONType))
    grades: list[Any] = Field(sa_column=Column(JSONType, nullable=False))
    sales_ready_threshold: float | None = None
    published_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    stopped_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class LeadScoreRow(SQLModel, table=True):
    __tablename__ = "lead_scores"
    __table_args__ = (
        Index("ix_lead_scores_model_score", "scoring_model_id", "score", "lead_id"),
        # Partial: most scores never expire, and the expiry job asks for next_expiry_us <= now.
        Index(
            "ix_lead_scores_expiry",
            "next_expiry_us",
            sqlite_where=text("next_expiry_us IS NOT NULL"),
            postgresql_where=text("next_expiry_us IS NOT NULL"),
        ),
    )
    lead_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    )
    scoring_model_id: int = Field(
        sa_column=Column(
            BigInteger, ForeignKey("scoring_models.id", ondelete="CASCADE"), primary_key=True
        )
    )
    model_version: int = Field(sa_column=Column(Integer, nullable=False))
    score: float = Field(nullable=False)
    sales_ready: bool = Field(sa_column=Column(Boolean, nullable=False))
    # One entry per rule of the model version, in rule order: [points, occurrences,
    # expires_us] when the rule awarded something, null when it did not.
    breakdown: list[Any] = Field(sa_column=Column(JSONType, nullable=False))
    next_expiry_us: int | None = Field(default=None, sa_column=Column(BigInteger))
    updated_at: datetime = _ts()


class QualificationModelRow(SQLModel, table=True):
    __tablename__ = "qualification_models"
    __table_args__ = (Index("ix_qualification_models_created", "created_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    match: str = Field(sa_column=Column(String(8), nullable=False))
    # [{"scoringModelId": int, "minScore": float}, ...]
    criteria: list[Any] = Field(sa_column=Column(JSONType, nullable=False))
    mark_marketing_qualified: bool = Field(sa_column=Column(Boolean, nullable=False))
    mark_sales_ready: bool = Field(sa_column=Column(Boolean, nullable=False))
    published_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    stopped_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class WebhookRow(SQLModel, table=True):
    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_created", "created_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    url: str = Field(sa_column=Column(String(2000), nullable=False))
    # Needed in clear to sign deliveries; shown to API clients only when the webhook is made.
    secret: str = Field(sa_column=Column(String(200), nullable=False))
    event_types: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    active: bool = Field(sa_column=Column(Boolean, nullable=False))
    cursor: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class WebhookDeliveryRow(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ux_webhook_deliveries_event", "webhook_id", "event_id", unique=True),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_created", "webhook_id", "created_at", "id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    webhook_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False)
    )
    event_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_status: int | None = Field(default=None, sa_column=Column(Integer))
    last_error: str | None = _text(500)
    created_at: datetime = _ts()
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class TeamRow(SQLModel, table=True):
    __tablename__ = "teams"
    __table_args__ = (Index("ix_teams_created", "created_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = _ts()


class UserRow(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_created", "created_at", "id"),
        Index("ux_users_email", "email", unique=True),
        Index("ix_users_team", "team_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    email: str = Field(sa_column=Column(String(1000), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    team_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("teams.id", ondelete="SET NULL"))
    )
    created_at: datetime = _ts()


class AssignmentRuleRow(SQLModel, table=True):
    __tablename__ = "assignment_rules"
    __table_args__ = (Index("ix_assignment_rules_created", "created_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    team_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    )
    strategy: str = Field(sa_column=Column(String(16), nullable=False))
    condition: Any = Field(default=None, sa_column=Column(JSONType))
    priority: int = Field(sa_column=Column(Integer, nullable=False))
    active: bool = Field(sa_column=Column(Boolean, nullable=False))
    last_user_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = _ts()


class StakeholderRow(SQLModel, table=True):
    __tablename__ = "lead_stakeholders"
    __table_args__ = (Index("ux_lead_stakeholders", "lead_id", "contact_id", unique=True),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    lead_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    contact_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    )
    role: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = _ts()


class CompetitorRow(SQLModel, table=True):
    __tablename__ = "lead_competitors"
    __table_args__ = (Index("ix_lead_competitors_lead", "lead_id", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    lead_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    name: str = Field(sa_column=Column(String(200), nullable=False))
    notes: str | None = _text(5000)
    created_at: datetime = _ts()


class ActivityRow(SQLModel, table=True):
    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_lead", "lead_id", "occurred_at", "id"),
        Index("ix_activities_contact", "contact_id", "occurred_at", "id"),
        Index("ix_activities_opportunity", "opportunity_id", "occurred_at", "id"),
        # Work lists and reminders: a user's open tasks and appointments by due time.
        Index("ix_activities_owner_open", "owner_id", "kind", "completed", "occurred_at", "id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    subject: str = Field(sa_column=Column(String(1000), nullable=False))
    body: str | None = _text(20000)
    lead_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("leads.id", ondelete="CASCADE"))
    )
    contact_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("contacts.id", ondelete="CASCADE"))
    )
    opportunity_id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, ForeignKey("opportunities.id", ondelete="CASCADE")),
    )
    owner_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    )
    direction: str | None = _text(16)
    completed: bool = Field(sa_column=Column(Boolean, nullable=False))
    occurred_at: datetime = _ts()
    created_at: datetime = _ts()


class SequenceRow(SQLModel, table=True):
    __tablename__ = "sequences"
    __table_args__ = (Index("ix_sequences_created", "created_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    # [{"kind", "title", "notes", "waitDays"}, ...]
    steps: list[Any] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = _ts()


class SequenceRunRow(SQLModel, table=True):
    __tablename__ = "sequence_runs"
    __table_args__ = (
        # At most one ACTIVE run per lead, also under concurrent attaches.
        Index(
            "ux_sequence_runs_active",
            "lead_id",
            unique=True,
            postgresql_where=text("status = 'ACTIVE'"),
            sqlite_where=text("status = 'ACTIVE'"),
        ),
        Index("ix_sequence_runs_lead", "lead_id", "id"),
        Index("ix_sequence_runs_sequence", "sequence_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    lead_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    sequence_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("sequences.id", ondelete="CASCADE"), nullable=False)
    )
    step: int = Field(sa_column=Column(Integer, nullable=False))
    due_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    started_at: datetime = _ts()
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class ProcessRow(SQLModel, table=True):
    __tablename__ = "processes"
    __table_args__ = (Index("ix_processes_created", "created_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    # [{"name", "requiredFields": [...]}, ...]
    stages: list[Any] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = _ts()


class OpportunityRow(SQLModel, table=True):
    __tablename__ = "opportunities"
    __table_args__ = (
        Index("ix_opportunities_created", "created_at", "id"),
        Index("ix_opportunities_lead", "lead_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    name: str = Field(sa_column=Column(String(1000), nullable=False))
    lead_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    contact_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("contacts.id", ondelete="SET NULL"))
    )
    account_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("accounts.id", ondelete="SET NULL"))
    )
    estimated_value: float | None = None
    close_date: date | None = Field(default=None, sa_column=Column(Date))
    stage: str = Field(sa_column=Column(String(16), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class LeadEventRow(SQLModel, table=True):
    __tablename__ = "lead_events"
    __table_args__ = (
        # A lead's timeline: its events newest first, read along the index a page at a time;
        # it also serves every other lookup of a lead's events (and the cascade from leads).
        Index("ix_lead_events_lead_time", "lead_id", "occurred_at", "id"),
        # Readers page by position; unique, so two relays can never hand out one position.
        Index("ux_lead_events_position", "position", unique=True),
        # The relay's "what is still unpositioned" scan stays small however big the table.
        Index(
            "ix_lead_events_unpositioned",
            "id",
            postgresql_where=text("position IS NULL"),
            sqlite_where=text("position IS NULL"),
        ),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    lead_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    type: str = Field(sa_column=Column(String(32), nullable=False))
    occurred_at: datetime = _ts()
    payload: dict[str, Any] = _json()
    # Commit order, given after commit by the relay (persistence/relay.py); NULL until then.
    position: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


interactions = InteractionRow.__table__  # type: ignore[attr-defined]
scoring_models = ScoringModelRow.__table__  # type: ignore[attr-defined]
lead_scores = LeadScoreRow.__table__  # type: ignore[attr-defined]
lead_events = LeadEventRow.__table__  # type: ignore[attr-defined]
qualification_models = QualificationModelRow.__table__  # type: ignore[attr-defined]
webhooks = WebhookRow.__table__  # type: ignore[attr-defined]
opportunities = OpportunityRow.__table__  # type: ignore[attr-defined]
teams = TeamRow.__table__  # type: ignore[attr-defined]
users = UserRow.__table__  # type: ignore[attr-defined]
assignment_rules = AssignmentRuleRow.__table__  # type: ignore[attr-defined]
lead_stakeholders = StakeholderRow.__table__  # type: ignore[attr-defined]
lead_competitors = CompetitorRow.__table__  # type: ignore[attr-defined]
activities = ActivityRow.__table__  # type: ignore[attr-defined]
sequences = SequenceRow.__table__  # type: ignore[attr-defined]
sequence_runs = SequenceRunRow.__table__  # type: ignore[attr-defined]
processes = ProcessRow.__table__  # type: ignore[attr-defined]
webhook_deliveries = WebhookDeliveryRow.__table__  # type: ignore[attr-defined]


class AuditEntryRow(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id", "id"),
        Index("ix_audit_log_actor", "actor_key_id", "id"),
        Index("ix_audit_log_occurred", "occurred_at", "id"),
    )
    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    occurred_at: datetime = _ts()
    action: str = Field(sa_column=Column(String(32), nullable=False))
    entity_type: str = Field(sa_column=Column(String(32), nullable=False))
    entity_id: str = Field(sa_column=Column(String(200), nullable=False))
    # No foreign key: an entry outlives what it names, and API keys are never deleted anyway.
    actor_key_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    actor_name: str = Field(sa_column=Column(String(200), nullable=False))
    actor_role: str | None = _text(32)
    actor_user_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    before_state: Any = Field(default=None, sa_column=Column(JSONType))
    after_state: Any = Field(default=None, sa_column=Column(JSONType))


class IdempotencyKeyRow(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires", "expires_at"),)
    api_key_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    key: str = Field(sa_column=Column(String(200), primary_key=True))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    # NULL while the first request with this key runs; its answer once it completed.
    response_status: int | None = Field(default=None, sa_column=Column(Integer))
    content_type: str | None = _text(200)
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    created_at: datetime = _ts()
    expires_at: datetime = _ts()


audit_log = AuditEntryRow.__table__  # type: ignore[attr-defined]
idempotency_keys = IdempotencyKeyRow.__table__  # type: ignore[attr-defined]

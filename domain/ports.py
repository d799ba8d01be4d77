"""What the domain needs from storage; `persistence` implements these protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from domain.audit import AuditEntry, AuditFilter
from domain.auth import Principal
from domain.events import LeadEvent
from domain.lifecycle import ModelStatus
from domain.model import (
    Account,
    Contact,
    Feature,
    Lead,
    LeadSource,
    LeadStage,
    LeadState,
    LeadStatusReason,
    MatchEntity,
    MatchingStrategy,
)
from domain.pagination import Page, PageRequest
from domain.qualification import QualificationModel
from domain.sales import (
    Activity,
    AssignmentRule,
    Competitor,
    Opportunity,
    OpportunityStatus,
    Stakeholder,
    Team,
    TimelineEntry,
    User,
)
from domain.scoring import (
    CurrentScore,
    Interaction,
    InteractionScope,
    ScoreResult,
    ScoringModel,
    StoredScore,
)
from domain.sequences import Process, SequenceRun, WorkItem
from domain.sequences import Sequence as SalesSequence
from domain.webhooks import Delivery, DeliveryStatus, Webhook


@dataclass(frozen=True, slots=True)
class ScoreThreshold:
    scoring_model_id: int
    min: float


@dataclass(frozen=True, slots=True)
class LeadFilter:
    state: Sequence[LeadState] | None = None
    status_reason: Sequence[LeadStatusReason] | None = None
    stage: Sequence[LeadStage] | None = None
    sales_ready: bool | None = None
    source: Sequence[LeadSource] | None = None
    contact_id: int | None = None
    account_id: int | None = None
    search: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_score: ScoreThreshold | None = None
    owner_id: int | None = None


@dataclass(frozen=True, slots=True)
class LeadOrder:
    field: str = "CREATED_AT"  # CREATED_AT, UPDATED_AT or SCORE
    descending: bool = True
    scoring_model_id: int | None = None  # for SCORE


class AccountRepository(Protocol):
    async def get(self, id_: int) -> Account | None: ...
    async def get_for_update(self, id_: int) -> Account | None:
        """Read and lock the row until the transaction ends (no lost updates)."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, Account]: ...
    async def add(self, account: Account) -> Account: ...
    async def add_many(self, accounts: Sequence[Account]) -> None: ...
    async def save(self, account: Account) -> None: ...
    async def save_many(self, accounts: Sequence[Account]) -> None: ...
    async def find_by_names(self, names: Sequence[str]) -> dict[str, Account]:
        """Accounts whose name equals one of `names`, case-insensitively, keyed by lower(name)."""
        ...

    async def list(self, search: str | None, page: PageRequest) -> Page[Account]: ...
    async def count(self, search: str | None) -> int: ...


class ContactRepository(Protocol):
    async def get(self, id_: int) -> Contact | None: ...
    async def get_for_update(self, id_: int) -> Contact | None:
        """Read and lock the row until the transaction ends (no lost updates)."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, Contact]: ...
    async def get_many_with_accounts(
        self, ids: Sequence[int]
    ) -> tuple[dict[int, Contact], dict[int, Account]]:
        """Contacts by id, and the accounts they belong to by id, read together."""
        ...

    async def add(self, contact: Contact) -> tuple[Contact, bool]:
        """Insert and return (contact, True); if the email is taken, (existing contact, False)."""
        ...

    async def add_many(self, contacts: Sequence[Contact]) -> None: ...
    async def save(self, contact: Contact) -> None: ...
    async def save_many(self, contacts: Sequence[Contact]) -> None: ...
    async def find(self, values: Mapping[str, Any]) -> Contact | None:
        """The oldest contact whose fields (API names) all equal `values`, locked until commit."""
        ...

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Contact]: ...
    async def email_taken(self, email: str, except_id: int | None = None) -> bool: ...
    async def list(
        self, search: str | None, account_id: int | None, page: PageRequest
    ) -> Page[Contact]: ...
    async def count(self, search: str | None, account_id: int | None) -> int: ...


class LeadRepository(Protocol):
    async def get(self, id_: int) -> Lead | None: ...
    async def get_for_update(self, id_: int) -> Lead | None:
        """Read and lock the row until the transaction ends (no lost updates)."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, Lead]: ...
    async def add(self, lead: Lead) -> Lead: ...
    async def add_many(self, leads: Sequence[Lead]) -> None:
        """Insert in bulk and set each lead's id."""
        ...

    async def save(self, lead: Lead) -> None: ...
    async def save_many(self, leads: Sequence[Lead]) -> None: ...
    async def find(self, values: Mapping[str, Any]) -> Lead | None:
        """The oldest OPEN lead whose fields (API names) all equal `values`, locked until commit."""
        ...

    async def find_many(self, field: str, values: Sequence[Any]) -> list[Lead]:
        """OPEN leads whose `field` (API name) is one of `values`."""
        ...

    async def list(
        self, filter_: LeadFilter, order: LeadOrder, page: PageRequest
    ) -> Page[Lead]: ...
    async def count(self, filter_: LeadFilter) -> int: ...
    async def ready_to_assign(self, lead_ids: Sequence[int] | None) -> Sequence[Lead]:
        """OPEN, sales-ready leads without an owner, among `lead_ids` (or all), in id order."""
        ...

    async def follow_process(
        self,
        lead_ids: Sequence[int] | None,
        now: datetime,
        scored_by: int | None = None,
        first_scores: bool = False,
    ) -> None:
        """The automatic stage moves (first points, sales-ready), set-based, with events.
        `first_scores`: `scored_by` had no scores before (its first publish)."""
        ...

    async def ids_for_contacts(self, contact_ids: Sequence[int]) -> Sequence[int]:
        """Leads scored on these contacts' interactions (theirs, and their accounts' leads)."""
        ...

    async def ids_for_account(self, account_id: int) -> Sequence[int]:
        """Leads whose account, directly or through their contact, is this one."""
        ...

    async def lock_many(self, ids: Sequence[int]) -> None:
        """Lock these leads' rows until commit, in id order."""
        ...

    async def lock_and_get(self, ids: Sequence[int]) -> Sequence[Lead]:
        """Lock these leads' rows until commit, in id order, and return them in that order."""
        ...

    async def lock_for_contacts(self, contact_ids: Sequence[int]) -> Sequence[Lead]:
        """Lock and return (in id order) the leads scored on these contacts' interactions.

        The same leads as `ids_for_contacts`: the contacts' own, and the leads of their accounts
        that have no contact.
        """
        ...


class MatchingStrategyRepository(Protocol):
    async def get(self, id_: int) -> MatchingStrategy | None: ...
    async def list(self, entity: MatchEntity | None = None) -> list[MatchingStrategy]: ...
    async def add(self, strategy: MatchingStrategy) -> MatchingStrategy: ...
    async def save(self, strategy: MatchingStrategy) -> None: ...
    async def delete(self, id_: int) -> None: ...


class SettingsRepository(Protocol):
    async def feature_enabled(self, feature: Feature) -> bool: ...
    async def set_feature(self, feature: Feature, enabled: bool) -> None: ...


class Repositories(Protocol):
    @property
    def interactions(self) -> InteractionRepository: ...
    @property
    def scoring_models(self) -> ScoringModelRepository: ...
    @property
    def scores(self) -> LeadScoreRepository: ...
    @property
    def events(self) -> LeadEventRepository: ...
    @property
    def qualification_models(self) -> QualificationModelRepository: ...
    @property
    def webhooks(self) -> WebhookRepository: ...
    @property
    def opportunities(self) -> OpportunityRepository: ...
    @property
    def users(self) -> UserRepository: ...
    @property
    def teams(self) -> TeamRepository: ...
    @property
    def assignment_rules(self) -> AssignmentRuleRepository: ...
    @property
    def stakeholders(self) -> StakeholderRepository: ...
    @property
    def activities(self) -> ActivityRepository: ...
    @property
    def sequences(self) -> SequenceRepository: ...
    @property
    def processes(self) -> ProcessRepository: ...
    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def contacts(self) -> ContactRepository: ...
    @property
    def leads(self) -> LeadRepository: ...
    @property
    def strategies(self) -> MatchingStrategyRepository: ...
    @property
    def settings(self) -> SettingsRepository: ...
    @property
    def audit(self) -> AuditRepository: ...


class ReadAccess(Protocol):
    def read(self) -> AbstractAsyncContextManager[Repositories]:
        """Repositories on a connection of their own, for reading only."""
        ...


class Authenticator(Protocol):
    async def authenticate(self, secret: str) -> Principal | None:
        """The caller an API key belongs to; None for an unknown or revoked key."""
        ...

    def recently_valid(self, secret: str) -> bool:
        """Whether this key was a valid key when last checked, within the last hour: not a
        guess (it is checked again all the same)."""
        ...


class UnitOfWork(Repositories, Protocol):
    """One transaction: rolled back unless `commit()` is called."""

    # Who runs the transaction (the request's API key); None for the command line and jobs.
    # The audit log names it.
    actor: Principal | None

    async def __aenter__(self) -> UnitOfWork: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def commit(self) -> None: ...
    async def lock(self, key: str) -> None:
        """Serialise concurrent transactions that work on the same `key` until commit."""
        ...

    async def try_lock(self, key: str) -> bool:
        """Take the lock for `key` until commit if nobody holds it; False otherwise."""
        ...


class AuditRepository(Protocol):
    async def add(self, entry: AuditEntry) -> None:
        """Write an entry in the current transaction."""
        ...

    async def page(self, filter_: AuditFilter, page: PageRequest) -> Page[AuditEntry]:
        """Entries matching the filter, newest first."""
        ...

    async def count(self, filter_: AuditFilter) -> int: ...


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for an Idempotency-Key: replayed as it was sent."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """What claiming a key found: `owned` (run the request), or someone else's claim."""

    owned: bool
    same_request: bool = True
    response: StoredResponse | None = None  # set when that request completed


class IdempotencyStore(Protocol):
    async def claim(
        self, key_id: int, key: str, request_hash: str, now: datetime, expires_at: datetime
    ) -> IdempotencyClaim:
        """Claim `key` for this API key and request, committed at once, unless someone holds it."""
        ...

    async def complete(self, key_id: int, key: str, response: StoredResponse) -> None:
        """Store the response of the request that claimed `key`."""
        ...

    async def release(self, key_id: int, key: str) -> None:
        """Drop an unfinished claim (the request failed): the key may be used again."""
        ...

    async def purge(self, now: datetime) -> int:
        """Delete expired keys; how many."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


# ---------------------------------------------------------------- scoring


class InteractionRepository(Protocol):
    async def add(self, interaction: Interaction) -> tuple[Interaction, bool]:
        """Store; with an idempotency key already used, (the stored one, False)."""
        ...

    async def add_many(self, interactions: Sequence[Interaction]) -> list[Interaction]:
        """Insert interactions without idempotency keys; returns them with their ids."""
        ...

    async def for_subject(
        self, contact_id: int | None, account_id: int | None
    ) -> list[Interaction]: ...
    async def for_subjects(
        self,
        contact_ids: Sequence[int],
        account_ids: Sequence[int],
        scope: InteractionScope | None = None,
    ) -> tuple[dict[int, list[Interaction]], dict[int, list[Interaction]]]:
        """Interactions of each contact, and of each account's contacts, in two mappings; with
        a scope, only those it names (at least: more may come)."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, Interaction]: ...
    async def list_for_contact(self, contact_id: int, page: PageRequest) -> Page[Interaction]: ...
    async def count_for_contact(self, contact_id: int) -> int: ...


class ScoringModelRepository(Protocol):
    async def get(self, id_: int, *, for_update: bool = False) -> ScoringModel | None: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, ScoringModel]: ...
    async def live(self, *, if_enabled: Feature | None = None) -> list[ScoringModel]:
        """The LIVE models, in id order (cheap to call: implementations may cache them).

        None at all when `if_enabled` names a feature that is switched off.
        """
        ...

    async def add(self, model: ScoringModel) -> ScoringModel: ...
    async def save(self, model: ScoringModel) -> None: ...
    async def delete(self, id_: int) -> None: ...
    async def list(self, status: ModelStatus | None, page: PageRequest) -> Page[ScoringModel]: ...
    async def count(self, status: ModelStatus | None) -> int: ...


class LeadScoreRepository(Protocol):
    async def drop_unscorable(self, lead_ids: Sequence[int] | None) -> int:
        """Delete the scores of these leads (or all) that have no contact and no account."""
        ...

    async def for_leads(self, lead_ids: Sequence[int]) -> dict[int, list[StoredScore]]: ...
    async def get(self, lead_id: int, model_id: int) -> StoredScore | None: ...
    async def current(
        self, lead_ids: Sequence[int], model_ids: Sequence[int]
    ) -> dict[tuple[int, int], CurrentScore]:
        """The stored scores of these leads for these models, by (lead id, model id)."""
        ...

    async def put_many(
        self, scores: Sequence[tuple[int, ScoringModel, ScoreResult]], now: datetime
    ) -> None:
        """Store (lead id, model, result) scores, replacing the stored ones."""
        ...

    async def put(
        self, lead_id: int, model: ScoringModel, result: ScoreResult, now: datetime
    ) -> StoredScore | None:
        """Store a lead's score for a model; returns the score it replaced, if any."""
        ...

    async def expired(self, now: datetime, limit: int) -> list[tuple[int, int]]: ...
    async def rescore_all(
        self, model: ScoringModel, now: datetime, lead_ids: Sequence[int] | None = None
    ) -> int:
        """Score every scorable lead with the model, set-based; events included."""
        ...


class LeadEventRepository(Protocol):
    async def add(
        self, lead_id: int, type_: str, payload: Mapping[str, Any], now: datetime
    ) -> int: ...
    async def add_many(
        self, events: Sequence[tuple[int, str, Mapping[str, Any]]], now: datetime
    ) -> None:
        """Store (lead id, type, payload) events in one statement."""
        ...

    async def positioned(self, id_: int) -> LeadEvent | None:
        """The event with this id, once it has its position (None before, or if none)."""
        ...

    async def after(
        self,
        position: int,
        limit: int,
        types: Sequence[str] | None = None,
        lead_id: int | None = None,
        until: int | None = None,
    ) -> list[LeadEvent]:
        """Positioned events after `position` (up to `until`), in position order."""
        ...

    async def max_position(self) -> int:
        """The highest position given so far (0 when none)."""
        ...

    async def count(self, types: Sequence[str] | None, lead_id: int | None) -> int: ...


# ---------------------------------------------------------------- delivery


class EventBroker(Protocol):
    """Carries "events were positioned up to p" notices between server processes.

    Notices may be lost (Redis pub/sub is at most once): they only say *when* to read; what to
    deliver is always read from the event table by position.
    """

    async def publish(self, position: int) -> None:
        """Announce that events up to `position` can be read; raise if the broker is down."""
        ...

    async def listen(self, on_position: Callable[[int], Awaitable[None]]) -> None:
        """Call `on_position` for every notice until cancelled, reconnecting by itself."""
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------- qualification


class QualificationModelRepository(Protocol):
    async def get(self, id_: int, *, for_update: bool = False) -> QualificationModel | None: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, QualificationModel]: ...
    async def live(self) -> list[QualificationModel]: ...
    async def using(self, scoring_model_id: int) -> list[QualificationModel]:
        """Every qualification model (any status) whose criteria name this scoring model."""
        ...

    async def add(self, model: QualificationModel) -> QualificationModel: ...
    async def save(self, model: QualificationModel) -> None: ...
    async def delete(self, id_: int) -> None: ...
    async def list(
        self, status: ModelStatus | None, page: PageRequest
    ) -> Page[QualificationModel]: ...
    async def count(self, status: ModelStatus | None) -> int: ...
    async def apply(
        self, model: QualificationModel, now: datetime, lead_ids: Sequence[int] | None = None
    ) -> int:
        """Mark every lead (or `lead_ids`) the model qualifies, set-based, with events."""
        ...

    async def preview(
        self, model: QualificationModel, sample: int
    ) -> tuple[int, int, Sequence[int]]:
        """(leads evaluated, leads that would change, the first `sample` of those ids)."""
        ...


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A lead event as stored: what happened to which lead, with its details."""

    id: int
    lead_id: int
    type: str
    occurred_at: datetime
    payload: Mapping[str, Any]
    position: int | None = None  # its place in commit order, once the relay gave it one


class WebhookRepository(Protocol):
    async def get(self, id_: int, *, for_update: bool = False) -> Webhook | None: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, Webhook]: ...
    async def active(self) -> list[Webhook]: ...
    async def add(self, webhook: Webhook) -> Webhook: ...
    async def save(self, webhook: Webhook) -> None: ...
    async def delete(self, id_: int) -> None: ...
    async def page(self, page: PageRequest) -> Page[Webhook]: ...
    async def count(self) -> int: ...
    async def last_event(self) -> int: ...
    async def events_after(self, cursor: int, limit: int) -> list[StoredEvent]: ...
    async def events(self, ids: Sequence[int]) -> dict[int, StoredEvent]: ...
    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None: ...
    async def due(self, now: datetime, limit: int) -> list[Delivery]: ...
    async def save_delivery(self, delivery: Delivery) -> None: ...
    async def deliveries(
        self, webhook_id: int, status: DeliveryStatus | None, page: PageRequest
    ) -> Page[Delivery]: ...
    async def count_deliveries(self, webhook_id: int, status: DeliveryStatus | None) -> int: ...


class WebhookSender(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int | None, str | None]:
        """POST `body`; (HTTP status, None) when answered, (None, why) when not."""
        ...


# ---------------------------------------------------------------- sales


class OpportunityRepository(Protocol):
    async def get_many(self, ids: Sequence[int]) -> dict[int, Opportunity]: ...
    async def get_for_update(self, id_: int) -> Opportunity | None:
        """The opportunity, locked until the end of the transaction (PostgreSQL)."""
        ...

    async def add(self, opportunity: Opportunity) -> Opportunity: ...
    async def save(self, opportunity: Opportunity) -> None: ...
    async def has_open(self, lead_id: int) -> bool: ...
    async def list(
        self, status: OpportunityStatus | None, lead_id: int | None, page: PageRequest
    ) -> Page[Opportunity]: ...
    async def count(self, status: OpportunityStatus | None, lead_id: int | None) -> int: ...


class UserRepository(Protocol):
    async def add(self, user: User) -> User:
        """Store a new user; Duplicate when the email belongs to another user."""
        ...

    async def get_many(self, ids: Sequence[int]) -> dict[int, User]: ...
    async def in_teams(self, team_ids: Sequence[int]) -> dict[int, list[User]]: ...
    async def open_leads(self, user_ids: Sequence[int]) -> dict[int, int]: ...
    async def list(self, team_id: int | None, page: PageRequest) -> Page[User]: ...
    async def count(self, team_id: int | None) -> int: ...


class TeamRepository(Protocol):
    async def add(self, team: Team) -> Team: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, Team]: ...
    async def list(self, page: PageRequest) -> Page[Team]: ...
    async def count(self) -> int: ...


class AssignmentRuleRepository(Protocol):
    async def add(self, rule: AssignmentRule) -> AssignmentRule: ...
    async def all(self, active_only: bool = False) -> list[AssignmentRule]:
        """Rules in the order they are tried: priority, then age."""
        ...

    async def get(self, id_: int) -> AssignmentRule | None: ...
    async def save_cursor(self, rule: AssignmentRule) -> None: ...


class StakeholderRepository(Protocol):
    """A lead's stakeholders and competitors."""

    async def add_stakeholder(self, s: Stakeholder) -> Stakeholder:
        """Store, or change the role of the contact already on the lead."""
        ...

    async def remove_stakeholder(self, lead_id: int, contact_id: int) -> bool: ...
    async def stakeholders(self, lead_id: int) -> list[Stakeholder]: ...
    async def add_competitor(self, c: Competitor) -> Competitor: ...
    async def remove_competitor(self, lead_id: int, competitor_id: int) -> bool: ...
    async def competitors(self, lead_id: int) -> list[Competitor]: ...
    async def competitor(self, id_: int) -> Competitor | None: ...


class ActivityRepository(Protocol):
    async def add(self, activity: Activity) -> Activity: ...
    async def save(self, activity: Activity) -> None: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, Activity]: ...
    async def upcoming(self, owner_id: int, start: datetime, end: datetime) -> list[Activity]:
        """The owner's open appointments and tasks due from `start` to `end`, soonest first."""
        ...

    async def timeline(
        self,
        lead_id: int,
        first: int,
        after: tuple[datetime, str, int] | None,
        activity_reads: Collection[str] | None = None,
        event_reads: Collection[str] | None = None,
    ) -> tuple[list[TimelineEntry], bool]:
        """The lead's activities and events, newest first; whether more follow. With
        `activity_reads` / `event_reads`, its activities / events may hold only those
        attributes (and their id): reading another raises AttributeError."""
        ...

    async def lead_and_timeline(
        self,
        lead_id: int,
        first: int,
        after: tuple[datetime, str, int] | None,
        lead_reads: Collection[str] | None = None,
        activity_reads: Collection[str] | None = None,
        event_reads: Collection[str] | None = None,
    ) -> tuple[Lead | None, tuple[list[TimelineEntry], bool] | None]:
        """The lead and a page of its timeline (as `timeline`), read together; (None, None)
        when there is no such lead. With `lead_reads`, the lead holds only those attributes
        (and its id): reading another raises AttributeError."""
        ...

    async def opportunity_timeline(
        self,
        opportunity: Opportunity,
        first: int,
        after: tuple[datetime, str, int] | None,
        activity_reads: Collection[str] | None = None,
        event_reads: Collection[str] | None = None,
    ) -> tuple[list[TimelineEntry], bool]:
        """The opportunity's activities with its lead's history, newest first (`activity_reads`
        and `event_reads` as for `timeline`)."""
        ...

    async def timeline_count(self, lead_id: int | None, opportunity_id: int | None) -> int:
        """How many entries the lead's timeline holds (with an opportunity: that one's)."""
        ...


# ---------------------------------------------------------------- rate limiting


class RateLimiter(Protocol):
    """Token buckets by name (one per API key), in this process or shared through Redis."""

    async def take(self, key: str, per_second: float, burst: int) -> float:
        """Take one token: 0.0 when the request may go ahead, else the seconds until it may."""
        ...

    async def close(self) -> None: ...


class SequenceRepository(Protocol):
    async def add(self, sequence: SalesSequence) -> SalesSequence: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, SalesSequence]: ...
    async def active_run(self, lead_id: int) -> SequenceRun | None: ...
    async def runs(self, lead_id: int) -> list[SequenceRun]: ...
    async def get_runs(self, ids: Sequence[int]) -> dict[int, SequenceRun]: ...
    async def add_run(self, run: SequenceRun) -> SequenceRun:
        """Store a new ACTIVE run; Conflict when the lead has one."""
        ...

    async def save_run(self, run: SequenceRun) -> None: ...
    async def work_list(
        self,
        owner_id: int,
        now: datetime,
        first: int,
        after: tuple[datetime, str, int] | None,
        lead_reads: Collection[str] | None = None,
    ) -> tuple[list[WorkItem], bool]:
        """The owner's due sequence steps and open tasks, oldest due first. With `lead_reads`,
        each item's lead holds only those attributes (and its id)."""
        ...

    async def work_count(self, owner_id: int, now: datetime) -> int:
        """How many items the owner's work list holds (see work_list)."""
        ...

    async def list(self, page: PageRequest) -> Page[SalesSequence]: ...
    async def count(self) -> int: ...


class ProcessRepository(Protocol):
    async def add(self, process: Process) -> Process: ...
    async def get_many(self, ids: Sequence[int]) -> dict[int, Process]: ...
    async def list(self, page: PageRequest) -> Page[Process]: ...
    async def count(self) -> int: ...

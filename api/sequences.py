"""GraphQL for sales sequences, the work list and custom processes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

from api import types as gql
from api.context import Info
from api.errors import bad_input
from api.execution import pure
from api.ids import decode_arg, decode_id, to_global_id
from api.projection import lead_reads
from api.sales import ActivityType, require_user
from domain import sales_services as services
from domain.errors import Invalid
from domain.model import Lead, utcnow
from domain.pagination import page_size
from domain.ports import UnitOfWork
from domain.roles import Permission
from domain.sequences import (
    Process,
    RunStatus,
    Sequence,
    SequenceRun,
    SequenceStep,
    StepKind,
    decode_work_cursor,
    encode_work_cursor,
)

strawberry.enum(StepKind)
strawberry.enum(RunStatus)


@strawberry.type(name="SequenceStep")
class SequenceStepType:
    position: int = strawberry.field(description="1-based place of the step in its sequence.")
    kind: StepKind
    title: str
    notes: str | None
    wait_days: int = strawberry.field(description="WAIT steps: days before the next step.")


def _steps(sequence: Sequence) -> list[SequenceStepType]:
    return [_step(s, i + 1) for i, s in enumerate(sequence.steps)]


def _step(s: SequenceStep, position: int) -> SequenceStepType:
    return SequenceStepType(
        position=position, kind=s.kind, title=s.title, notes=s.notes, wait_days=s.wait_days
    )


@strawberry.type(name="Sequence")
class SequenceType(gql.Node):
    name: str
    created_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Sequence", self.id))  # type: ignore[arg-type]

    @strawberry.field
    def steps(self) -> list[SequenceStepType]:
        return _steps(self)  # type: ignore[arg-type]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Sequence)


async def _sequence_of(info: Info, sequence_id: int) -> Sequence | None:
    found = await info.context.read(lambda r: r.sequences.get_many([sequence_id]))
    return found.get(sequence_id)


@strawberry.type(name="SequenceRun")
class SequenceRunType(gql.Node):
    """A sequence attached to a lead: its current step and when that step is due."""

    status: RunStatus
    due_at: dt.datetime | None = strawberry.field(
        description="When the current step is due; null once the run is completed."
    )
    started_at: dt.datetime
    completed_at: dt.datetime | None

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("SequenceRun", self.id))  # type: ignore[arg-type]

    @strawberry.field
    @pure
    def sequence(self) -> SequenceType | None:
        return self.sequence  # type: ignore[return-value]

    @strawberry.field
    async def lead(self, info: Info) -> gql.LeadType | None:
        return await info.context.loaders.lead.load(self.lead_id)  # type: ignore[attr-defined,return-value]

    @strawberry.field
    @pure
    def current_step(self) -> SequenceStepType | None:
        """The step to do now (never a WAIT); null once the run is completed."""
        sequence: Sequence | None = self.sequence  # type: ignore[assignment]
        index: int = self.step  # type: ignore[attr-defined]
        if self.status is not RunStatus.ACTIVE or sequence is None:
            return None
        if index >= len(sequence.steps):
            return None
        return _step(sequence.steps[index], index + 1)

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, SequenceRun)


# An edge of a work list page and its node are both the domain WorkItem itself: no objects
# made per item to show it.


@pure
def _run_of(root: Any) -> SequenceRunType | None:
    return root.run  # type: ignore[no-any-return]


@strawberry.type
class WorkItem:
    """A due sequence step or an open task: exactly one of sequenceRun and activity is set."""

    due_at: dt.datetime
    lead: gql.LeadType | None
    sequence_run: SequenceRunType | None = strawberry.field(resolver=_run_of)
    activity: ActivityType | None


@strawberry.type
class WorkItemEdge:
    @strawberry.field
    @pure
    def cursor(self) -> str:
        return encode_work_cursor(self)  # type: ignore[arg-type]

    @strawberry.field
    @pure
    def node(self) -> WorkItem:
        return self  # type: ignore[return-value]


@strawberry.type
class WorkItemConnection:
    edges: list[WorkItemEdge]
    page_info: gql.PageInfo
    # Whose work list, as of when: counted only when totalCount is asked for.
    owner_id: strawberry.Private[int] = 0
    now: strawberry.Private[dt.datetime | None] = None

    @strawberry.field
    async def total_count(self, info: Info) -> int:
        owner_id, now = self.owner_id, self.now or utcnow()
        return await info.context.read(lambda r: r.sequences.work_count(owner_id, now))


@strawberry.type(name="ProcessStage")
class ProcessStageType:
    name: str
    required_fields: list[str]


@strawberry.type(name="Process")
class ProcessType(gql.Node):
    """A custom business process: ordered stages, each with the lead fields it requires."""

    name: str
    created_at: dt.datetime

    @strawberry.field  # type: ignore[misc]
    @pure
    def id(self) -> strawberry.ID:  # type: ignore[override]
        return strawberry.ID(to_global_id("Process", self.id))  # type: ignore[arg-type]

    @strawberry.field
    def stages(self) -> list[ProcessStageType]:
        return [
            ProcessStageType(name=s.name, required_fields=list(s.required_fields))
            for s in self.stages  # type: ignore[attr-defined]
        ]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, Process)


async def lead_process(info: Info, process_id: int | None) -> ProcessType | None:
    if process_id is None:
        return None
    found = await info.context.read(lambda r: r.processes.get_many([process_id]))
    return found.get(process_id)  # type: ignore[return-value]


async def lead_sequence(info: Info, lead_id: int) -> SequenceRunType | None:
    run: Any = await info.context.read(lambda r: r.sequences.active_run(lead_id))
    return run  # type: ignore[no-any-return]


async def node(info: Info, type_name: str, pk: int) -> Any:
    """The records of this module `node(id:)` resolves (None: not one of them)."""
    if type_name == "Sequence":
        return await _sequence_of(info, pk)
    if type_name == "Process":
        return await lead_process(info, pk)
    if type_name == "SequenceRun":
        return (await info.context.read(lambda r: r.sequences.get_runs([pk]))).get(pk)
    return None


# ---------------------------------------------------------------- inputs and payloads


@strawberry.input
class SequenceStepInput:
    kind: StepKind
    title: str | None = strawberry.field(
        default=None, description="Required except for WAIT steps."
    )
    notes: str | None = None
    wait_days: int | None = strawberry.field(default=None, description="WAIT steps only: 1-365.")


@strawberry.input
class SequenceInput:
    name: str
    steps: list[SequenceStepInput]


@strawberry.type
class SequencePayload:
    sequence: SequenceType | None
    user_errors: list[gql.UserError]


@strawberry.type
class SequenceRunPayload:
    sequence_run: SequenceRunType | None
    user_errors: list[gql.UserError]


@strawberry.input
class ProcessStageInput:
    name: str
    required_fields: list[str] = strawberry.field(
        default_factory=list,
        description="Lead fields (API names), contactId, accountId, ownerId or attributes.<key>.",
    )


@strawberry.input
class ProcessInput:
    name: str
    stages: list[ProcessStageInput]


@strawberry.type
class ProcessPayload:
    process: ProcessType | None
    user_errors: list[gql.UserError]


async def _in_uow(info: Info, fn: Any) -> tuple[Any, list[gql.UserError]]:
    from api.resolvers import in_transaction

    return await in_transaction(info, fn)


@strawberry.type
class SequenceQuery:
    @strawberry.field
    async def sequences(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> gql.Connection[SequenceType]:
        """Sales sequences, newest first."""
        info.context.require(Permission.READ)
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.sequences.list(page),
            lambda r: r.sequences.count(),
        )

    @strawberry.field
    async def processes(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> gql.Connection[ProcessType]:
        """Custom business processes, newest first."""
        info.context.require(Permission.READ)
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.processes.list(page),
            lambda r: r.processes.count(),
        )

    @strawberry.field
    async def work_list(
        self,
        info: Info,
        owner_id: strawberry.ID | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> WorkItemConnection:
        """The owner's work due now: current steps of the active sequences on the owner's OPEN
        leads and the owner's open tasks, due now or overdue, oldest due first. Without ownerId:
        the user the API key belongs to."""
        ctx = info.context
        ctx.require(Permission.READ)
        if owner_id is None:
            owner = ctx.own_user_id("ownerId")
        else:
            owner = decode_arg(owner_id, "User", ["ownerId"])
        try:
            size = page_size(first, ctx.services.max_page_size)
        except Invalid as e:
            raise bad_input(e.message) from None
        try:
            cursor = None if after is None else decode_work_cursor(after)
        except Invalid as e:
            raise bad_input(e.message) from None
        now = utcnow()

        reads = lead_reads(info, ("edges", "node", "lead"))
        items, more = await ctx.read(
            lambda r: r.sequences.work_list(owner, now, size, cursor, reads)
        )
        if not items and cursor is None:
            await require_user(ctx, owner)
        end = encode_work_cursor(items[-1]) if items else None
        return WorkItemConnection(
            edges=items,  # type: ignore[arg-type]
            page_info=gql.PageInfo(has_next_page=more, end_cursor=end),
            owner_id=owner,
            now=now,
        )


@strawberry.type
class SequenceMutation:
    @strawberry.mutation
    async def create_sequence(self, info: Info, input: SequenceInput) -> SequencePayload:
        """An ordered list of CALL, EMAIL, TASK and WAIT steps (not ending with a WAIT)."""
        info.context.require(Permission.SALES_PROCESS)
        raw = {
            "name": input.name,
            "steps": [
                {"kind": s.kind, "title": s.title, "notes": s.notes, "waitDays": s.wait_days}
                for s in input.steps
            ],
        }
        found, errors = await _in_uow(info, lambda uow: services.create_sequence(uow, raw))
        return SequencePayload(sequence=found, user_errors=errors)

    @strawberry.mutation
    async def attach_sequence(
        self, info: Info, lead_id: strawberry.ID, sequence_id: strawberry.ID
    ) -> SequenceRunPayload:
        """Start a sequence on an OPEN lead; CONFLICT while the lead has an active one."""
        info.context.require(Permission.SALES_PROCESS)

        async def run(uow: UnitOfWork) -> SequenceRun:
            lead = decode_id(str(lead_id), "Lead", ["leadId"])
            sequence = decode_id(str(sequence_id), "Sequence", ["sequenceId"])
            return await services.attach_sequence(uow, lead, sequence)

        found, errors = await _in_uow(info, run)
        return SequenceRunPayload(sequence_run=found, user_errors=errors)

    @strawberry.mutation
    async def complete_sequence_step(
        self,
        info: Info,
        lead_id: strawberry.ID,
        step: int,
        notes: str | None = None,
    ) -> SequenceRunPayload:
        """Complete the current step (`step`: its 1-based position) of the lead's active
        sequence and advance it; CONFLICT for any other step. The call, email or task is logged
        on the lead's timeline as a completed activity."""
        info.context.require(Permission.SALES_PROCESS)

        async def run(uow: UnitOfWork) -> SequenceRun:
            lead = decode_id(str(lead_id), "Lead", ["leadId"])
            return await services.complete_sequence_step(uow, lead, step, notes)

        found, errors = await _in_uow(info, run)
        return SequenceRunPayload(sequence_run=found, user_errors=errors)

    @strawberry.mutation
    async def create_process(self, info: Info, input: ProcessInput) -> ProcessPayload:
        """A custom business process (ADMIN)."""
        info.context.require(Permission.ADMINISTER)
        raw = {
            "name": input.name,
            "stages": [
                {"name": s.name, "requiredFields": list(s.required_fields)} for s in input.stages
            ],
        }
        found, errors = await _in_uow(info, lambda uow: services.create_process(uow, raw))
        return ProcessPayload(process=found, user_errors=errors)

    @strawberry.mutation
    async def assign_lead_process(
        self, info: Info, id: strawberry.ID, process_id: strawberry.ID | None = None
    ) -> gql.LeadPayload:
        """Put a lead on a custom process, in its first stage; without processId, back on the
        default process (ADMIN)."""
        info.context.require(Permission.ADMINISTER)

        async def run(uow: UnitOfWork) -> Lead:
            lead = decode_id(str(id), "Lead", ["id"])
            process = None
            if process_id is not None:
                process = decode_id(str(process_id), "Process", ["processId"])
            return await services.assign_lead_process(uow, lead, process)

        lead, errors = await _in_uow(info, run)
        return gql.LeadPayload(lead=lead, user_errors=errors)

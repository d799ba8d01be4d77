"""Sales sequences, the seller's work list and custom business processes.

A sequence is an ordered list of steps (call, email, task, or wait N days). Attached to a
lead it becomes a *run* whose current step is always an actionable one (never a WAIT): the
waits before it only push its due time out. Completing the current step moves the run past
the WAITs that follow to the next actionable step, due that many days later; completing the
last step finishes the run. A lead has at most one ACTIVE run.

A custom process is an ordered list of named stages, each with the lead fields it requires;
a lead assigned to one has a `process_stage` besides the default process's `stage`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain.errors import Conflict, Invalid
from domain.fields import LEAD_FIELDS
from domain.model import Lead, LeadState, utcnow
from domain.sales import (
    Activity,
    ActivityKind,
    Change,
    Direction,
    decode_keyset_cursor,
    keyset_cursor,
)

MAX_STEPS = 100
MAX_WAIT_DAYS = 365
MAX_STAGES = 50


class StepKind(enum.Enum):
    CALL = "CALL"
    EMAIL = "EMAIL"
    TASK = "TASK"
    WAIT = "WAIT"


# The activity a completed step leaves on the lead's timeline.
STEP_ACTIVITY = {
    StepKind.CALL: ActivityKind.PHONE_CALL,
    StepKind.EMAIL: ActivityKind.EMAIL,
    StepKind.TASK: ActivityKind.TASK,
}


@dataclass(frozen=True, slots=True)
class SequenceStep:
    kind: StepKind
    title: str
    notes: str | None = None
    wait_days: int = 0  # WAIT steps only

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "title": self.title,
            "notes": self.notes,
            "waitDays": self.wait_days,
        }

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> SequenceStep:
        return SequenceStep(StepKind(raw["kind"]), raw["title"], raw.get("notes"), raw["waitDays"])


@dataclass(slots=True)
class Sequence:
    name: str
    steps: list[SequenceStep]
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)


class RunStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"


@dataclass(slots=True)
class SequenceRun:
    """A sequence attached to a lead: where it stands (`step`: 0-based index of the current
    step, len(steps) once finished) and when the current step is due."""

    lead_id: int
    sequence_id: int
    step: int = 0
    due_at: datetime | None = None
    status: RunStatus = RunStatus.ACTIVE
    id: int = 0
    started_at: datetime = field(default_factory=utcnow)
    completed_at: datetime | None = None
    # The sequence itself, when read with the run (to show its steps); not stored with it.
    sequence: Sequence | None = field(default=None, compare=False, repr=False)


def _text(value: Any, path: list[str], limit: int, required: bool = True) -> str | None:
    text = str(value or "").strip()
    if not text:
        if required:
            raise Invalid(f"{path[-1]} must not be empty", path)
        return None
    if len(text) > limit:
        raise Invalid(f"{path[-1]} is longer than {limit} characters", path)
    return text


def build_sequence(raw: Mapping[str, Any]) -> Sequence:
    """A sequence from a SequenceInput (API names): 1 to 100 steps, not ending with a WAIT."""
    name = _text(raw.get("name"), ["input", "name"], 200) or ""
    steps_raw = list(raw.get("steps") or [])
    if not 1 <= len(steps_raw) <= MAX_STEPS:
        raise Invalid(f"a sequence has 1 to {MAX_STEPS} steps", ["input", "steps"])
    steps: list[SequenceStep] = []
    for i, s in enumerate(steps_raw):
        path = ["input", "steps", str(i)]
        kind = StepKind(s["kind"])
        days = s.get("waitDays")
        if kind is StepKind.WAIT:
            if isinstance(days, bool) or not isinstance(days, int):
                raise Invalid("a WAIT step needs waitDays", [*path, "waitDays"])
            if not 1 <= days <= MAX_WAIT_DAYS:
                raise Invalid(f"waitDays must be 1 to {MAX_WAIT_DAYS}", [*path, "waitDays"])
            title = _text(s.get("title"), [*path, "title"], 1000, required=False)
            title = title or f"Wait {days} day{'s' if days != 1 else ''}"
        else:
            if days:
                raise Invalid("only a WAIT step has waitDays", [*path, "waitDays"])
            title = _text(s.get("title"), [*path, "title"], 1000) or ""
            days = 0
        notes = _text(s.get("notes"), [*path, "notes"], 5000, required=False)
        steps.append(SequenceStep(kind, title, notes, days))
    if steps[-1].kind is StepKind.WAIT:
        raise Invalid("a sequence cannot end with a WAIT step", ["input", "steps"])
    return Sequence(name=name, steps=steps)


def _next_action(steps: list[SequenceStep], index: int, at: datetime) -> tuple[int, datetime]:
    """The first actionable step from `index` on and its due time (WAITs add their days)."""
    while index < len(steps) and steps[index].kind is StepKind.WAIT:
        at += timedelta(days=steps[index].wait_days)
        index += 1
    return index, at


def start_run(lead: Lead, sequence: Sequence, active: SequenceRun | None) -> SequenceRun:
    """Attach `sequence` to an OPEN lead that has no active run; the first step is due now
    (or after the WAITs it starts with)."""
    if lead.state is not LeadState.OPEN:
        raise Conflict(f"the lead is {lead.state.value}; only an OPEN lead gets a sequence")
    if active is not None:
        raise Conflict("the lead already has an active sequence; complete it first", ["leadId"])
    now = utcnow()
    step, due = _next_action(sequence.steps, 0, now)
    return SequenceRun(lead.id, sequence.id, step, due, started_at=now, sequence=sequence)


def complete_step(
    run: SequenceRun | None, sequence: Sequence, position: int, lead: Lead, notes: str | None
) -> Activity | None:
    """Complete the run's current step (`position` is 1-based) and advance the run.

    Returns the completed activity the step leaves on the lead's timeline.
    """
    if run is None:
        raise Conflict("the lead has no active sequence", ["leadId"])
    current = run.step + 1
    if position != current:
        raise Conflict(
            f"step {position} is not the current step of the lead's sequence; step {current} is",
            ["step"],
        )
    done = sequence.steps[run.step]
    text = _text(notes, ["notes"], 20000, required=False) or done.notes
    now = utcnow()
    index, due = _next_action(sequence.steps, run.step + 1, now)
    run.step = index
    if index >= len(sequence.steps):
        run.status, run.due_at, run.completed_at = RunStatus.COMPLETED, None, now
    else:
        run.due_at = due
    return Activity(
        kind=STEP_ACTIVITY[done.kind],
        subject=done.title,
        occurred_at=now,
        body=text,
        lead_id=lead.id,
        owner_id=lead.owner_id,
        direction=Direction.OUTGOING if done.kind is not StepKind.TASK else None,
        completed=True,
    )


# ---------------------------------------------------------------- the work list


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One line of a user's work list: a due sequence step or an open task, at its due time."""

    due_at: datetime
    source: str  # "a" activity (task), "s" sequence run: part of the cursor
    id: int
    lead_id: int | None
    run: SequenceRun | None
    activity: Activity | None
    lead: Lead | None = None  # the lead it is about, read with the page


def encode_work_cursor(item: WorkItem) -> str:
    return keyset_cursor(item.due_at, item.source, item.id)


def decode_work_cursor(cursor: str) -> tuple[datetime, str, int]:
    """The (due time, source, id) a work-list cursor stands for; Invalid when it is not one."""
    return decode_keyset_cursor(cursor, ("a", "s"))


# ---------------------------------------------------------------- custom processes

# Besides the LEAD_FIELDS, a stage may require these links and `attributes.<key>`.
LINK_FIELDS = {"contactId": "contact_id", "accountId": "account_id", "ownerId": "owner_id"}


@dataclass(frozen=True, slots=True)
class ProcessStage:
    name: str
    required_fields: tuple[str, ...] = ()


@dataclass(slots=True)
class Process:
    name: str
    stages: list[ProcessStage]
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)

    def stage(self, name: str) -> ProcessStage | None:
        return next((s for s in self.stages if s.name == name), None)


def _check_field(name: str, path: list[str]) -> None:
    if name in LEAD_FIELDS or name in LINK_FIELDS:
        return
    if name.startswith("attributes.") and 0 < len(name) - 11 <= 200:
        return
    known = ", ".join([*LEAD_FIELDS, *LINK_FIELDS, "attributes.<key>"])
    raise Invalid(f"unknown lead field {name!r}; one of {known}", path)


def build_process(raw: Mapping[str, Any]) -> Process:
    """A process from a ProcessInput: 1 to 50 uniquely named stages, known required fields."""
    name = _text(raw.get("name"), ["input", "name"], 200) or ""
    stages_raw = list(raw.get("stages") or [])
    if not 1 <= len(stages_raw) <= MAX_STAGES:
        raise Invalid(f"a process has 1 to {MAX_STAGES} stages", ["input", "stages"])
    stages: list[ProcessStage] = []
    for i, s in enumerate(stages_raw):
        path = ["input", "stages", str(i)]
        stage_name = _text(s.get("name"), [*path, "name"], 200) or ""
        if any(st.name == stage_name for st in stages):
            raise Invalid(f"two stages are named {stage_name!r}", [*path, "name"])
        required = list(dict.fromkeys(s.get("requiredFields") or []))
        for f in required:
            _check_field(f, [*path, "requiredFields"])
        stages.append(ProcessStage(stage_name, tuple(required)))
    return Process(name=name, stages=stages)


def missing_fields(lead: Lead, stage: ProcessStage) -> list[str]:
    """The required fields of `stage` the lead has no value for."""
    missing = []
    for name in stage.required_fields:
        if name.startswith("attributes."):
            value = (lead.attributes or {}).get(name[11:])
        elif name in LINK_FIELDS:
            value = getattr(lead, LINK_FIELDS[name])
        else:
            value = getattr(lead, LEAD_FIELDS[name].attr)
        if value is None or (isinstance(value, str) and not value.strip()):
            missing.append(name)
    return missing


def _process_state(lead: Lead) -> dict[str, Any]:
    return {
        "statusReason": lead.status_reason.value,
        "salesReady": lead.sales_ready,
        "stage": lead.stage.value,
        "processId": lead.process_id,
        "processStage": lead.process_stage,
    }


def enter_stage(lead: Lead, process: Process, name: str) -> Change | None:
    """Put the lead in its custom process's stage `name` (any direction, by hand);
    Invalid naming the missing fields when the stage requires what the lead lacks."""
    stage = process.stage(name)
    if stage is None:
        names = ", ".join(s.name for s in process.stages)
        raise Invalid(
            f"the process {process.name!r} has no stage {name!r}; one of {names}", ["processStage"]
        )
    missing = missing_fields(lead, stage)
    if missing:
        raise Invalid(
            f"the stage {name!r} requires {', '.join(missing)}, which the lead lacks",
            ["processStage"],
        )
    if lead.process_stage == name:
        return None
    previous = lead.process_stage
    lead.process_stage = name
    lead.updated_at = utcnow()
    return Change("STAGE_CHANGED", {**_process_state(lead), "previousProcessStage": previous})


def follow_process(lead: Lead, process: Process | None) -> Change | None:
    """Put the lead on `process` (its first stage) or back on the default process (None)."""
    if process is None:
        if lead.process_id is None:
            return None
        previous = lead.process_stage
        lead.process_id = lead.process_stage = None
        lead.updated_at = utcnow()
        return Change("STAGE_CHANGED", {**_process_state(lead), "previousProcessStage": previous})
    if lead.process_id == process.id:
        return None
    first = process.stages[0]
    missing = missing_fields(lead, first)
    if missing:
        raise Invalid(
            f"the first stage {first.name!r} requires {', '.join(missing)}, which the lead lacks",
            ["processId"],
        )
    previous = lead.process_stage
    lead.process_id, lead.process_stage = process.id, first.name
    lead.updated_at = utcnow()
    return Change("STAGE_CHANGED", {**_process_state(lead), "previousProcessStage": previous})

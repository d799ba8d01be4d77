"""Which attributes of a lead (and of a timeline's activities and events) a query reads, so
that a page carrying them reads only those.

`workList` reads each item's lead, and `lead(id:)` with its timeline reads the lead, in the
same statement as the page. A lead row is wide and its columns repeat on every row of the page:
reading only the columns the query's selection of the lead needs is most of what such a page
costs the database. `lead_reads` answers from the query document itself (fragments included:
a field selected under any fragment counts); where the selection holds a field it does not know,
it answers None and the whole lead is read. The repository then builds a lead holding only
those attributes (persistence.repositories.partial_lead), which is never handed to the
request's lead loader. Reading another attribute of it raises AttributeError in Python, but a
GraphQL field read by the default resolver answers null instead: tests/api/test_projection.py
reads every field of LEAD_READS both ways, so a resolver that reads more than listed here
fails there.

A timeline page (`Lead.timeline`, `Opportunity.timeline`) likewise reads only the activity and
event columns its `edges { node { activity { ... } event { ... } } }` selections need
(ACTIVITY_READS, EVENT_READS; `timeline_reads`), building partial activities and events
(persistence.sales_repo) that no loader or cache ever holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from graphql import FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode

# GraphQL field of `Lead` -> the domain attributes its resolver reads. Fields that are not
# here (attributes, process, sequence, ...) make the whole lead read.
LEAD_READS: Mapping[str, tuple[str, ...]] = {
    "__typename": (),
    "id": ("id",),
    "topic": ("topic",),
    "firstName": ("first_name",),
    "lastName": ("last_name",),
    "fullName": ("first_name", "last_name", "email"),
    "email": ("email",),
    "companyName": ("company_name",),
    "jobTitle": ("job_title",),
    "phone": ("phone",),
    "source": ("source",),
    "state": ("state",),
    "statusReason": ("status_reason",),
    "salesReady": ("sales_ready",),
    "stage": ("stage",),
    "createdAt": ("created_at",),
    "updatedAt": ("updated_at",),
    "owner": ("owner_id",),
    "contact": ("contact_id",),
    "account": ("account_id",),
    "timeline": ("id",),
    "scores": ("id",),
    "score": ("id",),
}


# GraphQL field of `Activity` -> the domain Activity attributes its resolver reads.
ACTIVITY_READS: Mapping[str, tuple[str, ...]] = {
    "__typename": (),
    "id": ("id",),
    "kind": ("kind",),
    "subject": ("subject",),
    "body": ("body",),
    "direction": ("direction",),
    "completed": ("completed",),
    "occurredAt": ("occurred_at",),
    "createdAt": ("created_at",),
    "lead": ("lead_id",),
    "contact": ("contact_id",),
}

# GraphQL field of `LeadEvent` -> the domain LeadEvent attributes its resolver reads. The
# lead's state fields (read from the payload, or the lead) make the whole event read.
EVENT_READS: Mapping[str, tuple[str, ...]] = {
    "__typename": (),
    "id": ("id",),
    "type": ("type",),
    "occurredAt": ("occurred_at",),
}

Reads = frozenset[str] | None


def lead_reads(info: Any, path: Sequence[str] = ()) -> Reads:
    """The lead attributes (always with `id`) read by the selections reached from the current
    field along `path` (field names, e.g. ("edges", "node", "lead")); None when one of them
    selects a field not in LEAD_READS."""
    raw = info._raw_info
    return _reads(_reached(list(raw.field_nodes), raw.fragments, path), raw.fragments, LEAD_READS)


def timeline_reads(info: Any, path: Sequence[str] = ()) -> tuple[Reads, Reads]:
    """The activity and the event attributes (each with `id`, or None: all) read by the
    timeline connection reached from the current field along `path` (() when the current
    field is the timeline itself, ("timeline",) from its lead)."""
    raw = info._raw_info
    fragments: Mapping[str, FragmentDefinitionNode] = raw.fragments
    nodes = _reached(list(raw.field_nodes), fragments, (*path, "edges", "node"))
    activities = _reached(nodes, fragments, ("activity",))
    events = _reached(nodes, fragments, ("event",))
    return (
        _reads(activities, fragments, ACTIVITY_READS),
        _reads(events, fragments, EVENT_READS),
    )


def _reached(
    nodes: list[FieldNode], fragments: Mapping[str, FragmentDefinitionNode], path: Sequence[str]
) -> list[FieldNode]:
    """The fields reached from `nodes` along `path` (field names), through fragments."""
    for name in path:
        nodes = [f for node in nodes for f in _fields(node, fragments) if f.name.value == name]
    return nodes


def _reads(
    nodes: list[FieldNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    table: Mapping[str, tuple[str, ...]],
) -> Reads:
    """The attributes (with `id`) the selections of `nodes` read by `table`; None when one of
    them selects a field `table` does not know."""
    reads = {"id"}
    for node in nodes:
        for field in _fields(node, fragments):
            names = table.get(field.name.value)
            if names is None:
                return None
            reads.update(names)
    return frozenset(reads)


def _fields(
    node: FieldNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """The fields selected directly under `node`, through its fragments (validation has ruled
    out fragment cycles; directives are ignored: reading more than needed is harmless)."""
    if node.selection_set is None:
        return
    stack = list(node.selection_set.selections)
    while stack:
        selection = stack.pop()
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            stack.extend(selection.selection_set.selections)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                stack.extend(fragment.selection_set.selections)

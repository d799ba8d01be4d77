"""The audit log query: who changed which configuration object, with before/after (ADMIN only)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from api import types as gql
from api.context import Info
from api.errors import bad_input
from api.ids import from_global_id, to_global_id
from domain.audit import AuditEntityType, AuditEntry, AuditFilter
from domain.errors import Invalid
from domain.roles import Permission, Role

strawberry.enum(AuditEntityType)

# Entity types that are GraphQL nodes: their entries name them by global ID.
_NODES = {
    AuditEntityType.SCORING_MODEL: "ScoringModel",
    AuditEntityType.QUALIFICATION_MODEL: "QualificationModel",
    AuditEntityType.MATCHING_STRATEGY: "MatchingStrategy",
    AuditEntityType.WEBHOOK: "Webhook",
}
_BY_NODE = {name: kind for kind, name in _NODES.items()}


@strawberry.type(name="AuditActor")
class AuditActor:
    api_key_id: int | None = strawberry.field(
        description="The API key that made the change; null for the command line."
    )
    name: str = strawberry.field(description="The key's name, or 'command line'.")
    role: Role | None


@strawberry.type(name="AuditEntry")
class AuditEntryType:
    action: str = strawberry.field(
        description="create, update, publish, stop, delete, set (feature switch), revoke (API key)."
    )
    entity_type: AuditEntityType
    occurred_at: datetime

    @strawberry.field
    def id(self) -> strawberry.ID:
        entry: AuditEntry = self  # type: ignore[assignment]
        return strawberry.ID(to_global_id("AuditEntry", entry.id))

    @strawberry.field
    def entity_id(self) -> strawberry.ID:
        entry: AuditEntry = self  # type: ignore[assignment]
        node = _NODES.get(entry.entity_type)
        if node is None:
            return strawberry.ID(entry.entity_id)
        return strawberry.ID(to_global_id(node, int(entry.entity_id)))

    @strawberry.field
    def actor(self) -> AuditActor:
        entry: AuditEntry = self  # type: ignore[assignment]
        a = entry.actor
        return AuditActor(api_key_id=a.key_id, name=a.name, role=Role(a.role) if a.role else None)

    @strawberry.field
    def before(self) -> JSON | None:
        entry: AuditEntry = self  # type: ignore[assignment]
        return entry.before  # type: ignore[return-value]

    @strawberry.field
    def after(self) -> JSON | None:
        entry: AuditEntry = self  # type: ignore[assignment]
        return entry.after  # type: ignore[return-value]


@strawberry.input
class AuditLogFilter:
    entity_type: AuditEntityType | None = None
    entity_id: strawberry.ID | None = strawberry.field(
        default=None, description="As AuditEntry.entityId gives it."
    )
    actor_api_key_id: int | None = None
    since: datetime | None = strawberry.field(default=None, description="At or after this time.")


def _filter(raw: AuditLogFilter | None) -> AuditFilter:
    if raw is None:
        return AuditFilter()
    kind, entity_id = raw.entity_type, None
    if raw.entity_id is not None:
        entity_id = str(raw.entity_id)
        if kind is None or kind in _NODES:
            try:
                node, pk = from_global_id(entity_id)
            except Invalid:
                node, pk = "", 0
            if node in _BY_NODE and kind in (None, _BY_NODE[node]):
                kind, entity_id = _BY_NODE[node], str(pk)
            elif kind is not None:
                raise bad_input(f"'{entity_id[:64]}' is not the ID of a {_NODES[kind]}")
    return AuditFilter(kind, entity_id, raw.actor_api_key_id, raw.since)


@strawberry.type
class AuditQuery:
    @strawberry.field
    async def audit_log(
        self,
        info: Info,
        filter: AuditLogFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> gql.Connection[AuditEntryType]:
        info.context.require(Permission.ADMINISTER)
        wanted = _filter(filter)
        return await gql.paged(
            info.context,
            first,
            after,
            lambda r, page: r.audit.page(wanted, page),
            lambda r: r.audit.count(wanted),
        )

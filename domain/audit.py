"""The audit log: who changed a configuration object, how, and what it looked like before and after.

Use cases that change scoring models, qualification models, matching strategies, feature
switches, webhooks or API keys record one entry through the unit of work's `audit` repository,
in the transaction of the change: the entry commits or rolls back with it. Snapshots are plain
JSON; secrets (webhook signing secrets, API key hashes) never enter them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.auth import ApiKey, Principal
from domain.model import MatchingStrategy, utcnow
from domain.qualification import QualificationModel
from domain.scoring import ScoringModel
from domain.webhooks import Webhook

if TYPE_CHECKING:
    from domain.ports import UnitOfWork

REDACTED = "[redacted]"

Snapshot = dict[str, Any]


class AuditEntityType(enum.Enum):
    SCORING_MODEL = "SCORING_MODEL"
    QUALIFICATION_MODEL = "QUALIFICATION_MODEL"
    MATCHING_STRATEGY = "MATCHING_STRATEGY"
    FEATURE_SWITCH = "FEATURE_SWITCH"
    WEBHOOK = "WEBHOOK"
    API_KEY = "API_KEY"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: an API key (id, name, role), or the command line (no key)."""

    key_id: int | None
    name: str
    role: str | None

    @staticmethod
    def of(principal: Principal | None) -> Actor:
        if principal is None:
            return CLI
        return Actor(principal.key_id, principal.name, principal.role.value)


CLI = Actor(None, "command line", None)


@dataclass(slots=True)
class AuditEntry:
    action: str  # create, update, publish, stop, delete, set, revoke …
    entity_type: AuditEntityType
    entity_id: str  # the primary key (or the feature's name) as text
    actor: Actor
    before: Snapshot | None
    after: Snapshot | None
    occurred_at: datetime = field(default_factory=utcnow)
    id: int = 0


@dataclass(frozen=True, slots=True)
class AuditFilter:
    entity_type: AuditEntityType | None = None
    entity_id: str | None = None
    actor_key_id: int | None = None
    since: datetime | None = None


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def scoring_model(m: ScoringModel) -> Snapshot:
    return {
        "id": m.id,
        "name": m.name,
        "description": m.description,
        "status": m.status.value,
        "version": m.version,
        "salesReadyThreshold": m.sales_ready_threshold,
        "grades": [{"name": g.name, "minScore": g.min_score} for g in m.grades],
        "rules": [
            {
                "id": r.id,
                "name": r.name,
                "points": r.points,
                "perOccurrence": r.per_occurrence,
                "maxPoints": r.max_points,
                "condition": r.raw_condition,
            }
            for r in m.rules
        ],
        "publishedAt": _ts(m.published_at),
        "stoppedAt": _ts(m.stopped_at),
    }


def qualification_model(m: QualificationModel) -> Snapshot:
    return {
        "id": m.id,
        "name": m.name,
        "status": m.status.value,
        "version": m.version,
        "match": m.match.value,
        "criteria": [
            {"scoringModelId": c.scoring_model_id, "minScore": c.min_score} for c in m.criteria
        ],
        "actions": {
            "markMarketingQualified": m.actions.mark_marketing_qualified,
            "markSalesReady": m.actions.mark_sales_ready,
        },
        "publishedAt": _ts(m.published_at),
        "stoppedAt": _ts(m.stopped_at),
    }


def matching_strategy(s: MatchingStrategy) -> Snapshot:
    return {
        "id": s.id,
        "name": s.name,
        "entity": s.entity.value,
        "fields": list(s.fields),
        "formIds": list(s.form_ids),
        "isDefault": s.is_default,
    }


def webhook(w: Webhook) -> Snapshot:
    return {
        "id": w.id,
        "name": w.name,
        "url": w.url,
        "secret": REDACTED,
        "eventTypes": list(w.event_types),
        "active": w.active,
    }


def api_key(k: ApiKey) -> Snapshot:
    # The key's hash is not part of the domain object; the prefix is what `apikey list` shows.
    return {
        "id": k.id,
        "name": k.name,
        "role": k.role.value,
        "prefix": k.prefix,
        "createdAt": _ts(k.created_at),
        "revokedAt": _ts(k.revoked_at),
    }


async def record(
    uow: UnitOfWork,
    action: str,
    entity_type: AuditEntityType,
    entity_id: object,
    before: Snapshot | None,
    after: Snapshot | None,
) -> None:
    """Write one audit entry for a change, in the unit of work's transaction."""
    entry = AuditEntry(action, entity_type, str(entity_id), Actor.of(uow.actor), before, after)
    await uow.audit.add(entry)

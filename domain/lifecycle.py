"""The lifecycle scoring and qualification models share: DRAFT → LIVE → STOPPED → LIVE …

Only LIVE models act; a LIVE model cannot be edited; each publish is a new version.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Protocol

from domain.errors import Conflict
from domain.model import utcnow


class ModelStatus(enum.Enum):
    DRAFT = "DRAFT"
    LIVE = "LIVE"
    STOPPED = "STOPPED"


class Versioned(Protocol):
    status: ModelStatus
    version: int
    published_at: datetime | None
    stopped_at: datetime | None
    updated_at: datetime


def require_editable(model: Versioned) -> None:
    if model.status is ModelStatus.LIVE:
        raise Conflict("a LIVE model cannot be edited; stop it first", ["id"])


def go_live(model: Versioned) -> None:
    """Make the model LIVE; each publish is a new version."""
    if model.status is ModelStatus.LIVE:
        raise Conflict("the model is already LIVE", ["id"])
    model.status = ModelStatus.LIVE
    model.version += 1
    model.published_at = model.updated_at = utcnow()
    model.stopped_at = None


def stop(model: Versioned) -> None:
    """Stop the model; what it did stays as it is."""
    if model.status is not ModelStatus.LIVE:
        raise Conflict(
            f"only a LIVE model can be stopped; this one is {model.status.value}", ["id"]
        )
    model.status = ModelStatus.STOPPED
    model.stopped_at = model.updated_at = utcnow()

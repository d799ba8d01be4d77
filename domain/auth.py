"""API keys and the caller they authenticate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.errors import Forbidden
from domain.roles import Permission, Role, allows


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API key's id, name and role, and the user the key belongs to
    (None for a key without a user)."""

    key_id: int
    name: str
    role: Role
    user_id: int | None = None

    def require(self, permission: Permission) -> None:
        """Raise Forbidden unless this caller's role grants `permission`."""
        if not allows(self.role, permission):
            raise Forbidden(f"the {self.role.value} role may not {permission.value}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    user_id: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

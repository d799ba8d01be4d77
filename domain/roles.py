"""Roles and what each may do."""

from __future__ import annotations

import enum


class Role(enum.Enum):
    ADMIN = "ADMIN"
    MARKETER = "MARKETER"
    SELLER = "SELLER"
    INTEGRATION = "INTEGRATION"
    VIEWER = "VIEWER"


class Permission(enum.Enum):
    READ = "read"
    SUBSCRIBE = "subscribe"
    WRITE_RECORDS = "write contacts, accounts and leads"
    CAPTURE = "submit forms and record interactions"
    IMPORT = "import records"
    MANAGE_MATCHING = "manage matching strategies"
    MANAGE_MODELS = "manage scoring and qualification models"
    MANAGE_WEBHOOKS = "manage webhooks"
    SALES_PROCESS = "work the sales process"
    ADMINISTER = "administer settings and API keys"


_ALL = frozenset(Permission)

GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: _ALL,
    Role.MARKETER: frozenset(
        {
            Permission.READ,
            Permission.SUBSCRIBE,
            Permission.WRITE_RECORDS,
            Permission.CAPTURE,
            Permission.IMPORT,
            Permission.MANAGE_MATCHING,
            Permission.MANAGE_MODELS,
            Permission.MANAGE_WEBHOOKS,
        }
    ),
    Role.SELLER: frozenset({Permission.READ, Permission.SUBSCRIBE, Permission.SALES_PROCESS}),
    Role.INTEGRATION: frozenset(
        {Permission.READ, Permission.SUBSCRIBE, Permission.WRITE_RECORDS, Permission.CAPTURE}
    ),
    Role.VIEWER: frozenset({Permission.READ, Permission.SUBSCRIBE}),
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether a caller with `role` may do what `permission` names."""
    return permission in GRANTS[role]

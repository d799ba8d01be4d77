"""domain.roles and domain.auth: what each role may do."""

from __future__ import annotations

import pytest

from domain.auth import ApiKey, Principal
from domain.errors import Forbidden
from domain.roles import GRANTS, Permission, Role, allows

P = Permission
READ_ONLY = {P.READ, P.SUBSCRIBE}
EXPECTED: dict[Role, set[Permission]] = {
    Role.ADMIN: set(Permission),
    Role.MARKETER: READ_ONLY
    | {P.WRITE_RECORDS, P.CAPTURE, P.IMPORT, P.MANAGE_MATCHING, P.MANAGE_MODELS, P.MANAGE_WEBHOOKS},
    Role.SELLER: READ_ONLY | {P.SALES_PROCESS},
    Role.INTEGRATION: READ_ONLY | {P.WRITE_RECORDS, P.CAPTURE},
    Role.VIEWER: READ_ONLY,
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_role_matrix(role: Role, permission: Permission) -> None:
    assert allows(role, permission) is (permission in EXPECTED[role])


def test_every_role_has_grants() -> None:
    assert set(GRANTS) == set(Role)


def test_every_role_may_read_and_subscribe() -> None:
    assert all(GRANTS[role] >= READ_ONLY for role in Role)


def test_only_admin_administers() -> None:
    assert [r for r in Role if allows(r, P.ADMINISTER)] == [Role.ADMIN]


@pytest.mark.parametrize("permission", [P.IMPORT, P.MANAGE_MATCHING, P.MANAGE_MODELS])
def test_integration_cannot_import_or_manage(permission: Permission) -> None:
    assert not allows(Role.INTEGRATION, permission)


@pytest.mark.parametrize("permission", [P.WRITE_RECORDS, P.CAPTURE, P.IMPORT])
def test_seller_cannot_write_records(permission: Permission) -> None:
    assert not allows(Role.SELLER, permission)


def test_principal_require() -> None:
    viewer = Principal(1, "dashboard", Role.VIEWER)
    viewer.require(P.READ)
    with pytest.raises(Forbidden) as info:
        viewer.require(P.WRITE_RECORDS)
    assert info.value.code == "FORBIDDEN"
    assert "VIEWER" in info.value.message and P.WRITE_RECORDS.value in info.value.message
    Principal(2, "root", Role.ADMIN).require(P.ADMINISTER)


def test_api_key_is_active_until_revoked() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    key = ApiKey(1, "k", Role.VIEWER, "lf_abc", now)
    assert key.active
    assert not ApiKey(1, "k", Role.VIEWER, "lf_abc", now, revoked_at=now).active

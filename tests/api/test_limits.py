"""Safety limits, error masking and the feature switch."""

from __future__ import annotations

import pytest

from domain.roles import Role
from tests.conftest import Api


async def test_query_depth_is_limited(api: Api) -> None:
    level = "leads { edges { node { contact { account { %s } } } } }"
    query = "{ " + level % (level % (level % "id")) + " }"  # 15 levels; the limit is 12
    errors = await api.errors(query)
    assert "exceeds maximum operation depth" in errors[0]["message"]


async def test_validation_results_are_reused_per_document(api: Api) -> None:
    """Cached validation answers a repeated query as the first time, and keeps texts apart."""
    level = "leads { edges { node { contact { account { %s } } } } }"
    deep = "{ " + level % (level % (level % "id")) + " }"
    shallow = "{ leads { edges { node { contact { account { name } } } } } }"
    for _ in range(3):
        errors = await api.errors(deep)
        assert "exceeds maximum operation depth" in errors[0]["message"]
        assert "leads" in await api(shallow)
    errors = await api.errors("{ leads { edges { node { nope } } } }")
    assert "Cannot query field 'nope'" in errors[0]["message"]


async def test_aliases_are_limited(api: Api) -> None:
    query = "{ " + " ".join(f"a{i}: viewer {{ name }}" for i in range(31)) + " }"
    errors = await api.errors(query)
    assert "aliases" in errors[0]["message"].lower()


async def test_aliases_inside_fragments_count(api: Api) -> None:
    fragment = (
        "fragment F on Query { " + " ".join(f"a{i}: viewer {{ name }}" for i in range(31)) + " }"
    )
    errors = await api.errors("{ ...F } " + fragment)
    assert "aliases" in errors[0]["message"].lower()


async def test_tokens_are_limited(api: Api) -> None:
    query = "{ viewer { " + " ".join(["name"] * 6000) + " } }"
    errors = await api.errors(query)
    assert "token" in errors[0]["message"].lower()


async def test_unexpected_errors_are_masked(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from persistence.repositories import LeadRepository

    async def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret SQL: SELECT password FROM users")

    monkeypatch.setattr(LeadRepository, "list", boom)
    errors = await api.errors("{ leads { totalCount } }")
    assert errors[0]["message"] == "Unexpected error."
    assert "secret" not in str(errors)


async def test_feature_switch_is_off_then_on(api: Api) -> None:
    assert (await api("{ settings { leadManagementEnabled } }"))["settings"] == {
        "leadManagementEnabled": False
    }
    q = "mutation($on: Boolean!) { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: $on) { settings { leadManagementEnabled } userErrors { code } } }"
    data = await api(q, {"on": True}, role=Role.ADMIN)
    assert data["setFeatureSwitch"] == {
        "settings": {"leadManagementEnabled": True},
        "userErrors": [],
    }
    assert (await api("{ settings { leadManagementEnabled } }", role=Role.VIEWER))["settings"][
        "leadManagementEnabled"
    ] is True
    data = await api(q, {"on": False})
    assert data["setFeatureSwitch"]["settings"]["leadManagementEnabled"] is False


async def test_get_requests_cannot_run_operations(api: Api) -> None:
    response = await api.client.get(
        "/graphql",
        params={"query": "{ viewer { name } }"},
        headers={"Authorization": f"Bearer {api.keys[Role.ADMIN]}"},
    )
    assert response.status_code in (400, 405)

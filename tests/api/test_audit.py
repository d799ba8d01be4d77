"""The audit log: one entry per change of configuration, written with the change, ADMIN only."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from api.ids import to_global_id
from domain import scoring_services
from domain.audit import AuditFilter
from domain.model import Feature
from domain.roles import Role
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from tests.conftest import Api

ERRORS = "userErrors { code field message }"
LOG = """query($f: AuditLogFilter, $first: Int, $after: String) {
  auditLog(filter: $f, first: $first, after: $after) {
    totalCount
    edges { node { id action entityType entityId occurredAt before after
                   actor { apiKeyId name role } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
MODEL = {
    "name": "fit",
    "rules": [
        {
            "name": "cto",
            "points": 7,
            "condition": {
                "attribute": {
                    "entity": "CONTACT",
                    "field": "jobTitle",
                    "operator": "EQ",
                    "value": "cto",
                }
            },
        }
    ],
}
SM = "scoringModel { id status version } " + ERRORS


@pytest.fixture
async def api(api: Api) -> Api:
    """The API with lead management on (as the scoring operations need)."""
    await api(
        "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { settings { leadManagementEnabled } } }"
    )
    return api


async def log(api: Api, **filter_: Any) -> list[dict[str, Any]]:
    data = await api(LOG, {"f": filter_ or None, "first": 500})
    nodes = [e["node"] for e in data["auditLog"]["edges"]]
    assert data["auditLog"]["totalCount"] == len(nodes)
    return nodes


async def test_each_scoring_model_operation_writes_one_entry_with_before_and_after(
    api: Api,
) -> None:
    created = await api(
        f"mutation($i: ScoringModelInput!) {{ createScoringModel(input: $i) {{ {SM} }} }}",
        {"i": MODEL},
        role=Role.MARKETER,
    )
    gid = created["createScoringModel"]["scoringModel"]["id"]
    entries = await log(api, entityType="SCORING_MODEL")
    assert [e["action"] for e in entries] == ["create"]
    (entry,) = entries
    assert entry["entityId"] == gid
    assert entry["before"] is None
    assert entry["after"]["name"] == "fit" and entry["after"]["status"] == "DRAFT"
    assert entry["after"]["rules"][0]["points"] == 7
    assert entry["actor"]["name"] == "test MARKETER" and entry["actor"]["role"] == "MARKETER"
    assert isinstance(entry["actor"]["apiKeyId"], int)

    steps = [
        ("update", f"mutation($id: ID!, $i: ScoringModelInput!) {{ updateScoringModel(id: $id, input: $i) {{ {SM} }} }}",
         {"i": {**MODEL, "name": "fit 2"}}),
        ("publish", f"mutation($id: ID!) {{ publishScoringModel(id: $id) {{ {SM} }} }}", {}),
        ("stop", f"mutation($id: ID!) {{ stopScoringModel(id: $id) {{ {SM} }} }}", {}),
        ("delete", f"mutation($id: ID!) {{ deleteScoringModel(id: $id) {{ deletedId {ERRORS} }} }}", {}),
    ]  # fmt: skip
    for action, mutation, extra in steps:
        before = len(await log(api))
        data = await api(mutation, {"id": gid, **extra})
        assert not next(iter(data.values()))["userErrors"]
        assert len(await log(api)) == before + 1
        entries = await log(api, entityId=gid)  # exactly one new entry, newest first
        assert entries[0]["action"] == action
        assert entries[0]["actor"]["name"] == "test ADMIN"

    newest = {e["action"]: e for e in await log(api, entityId=gid)}
    assert newest["update"]["before"]["name"] == "fit"
    assert newest["update"]["after"]["name"] == "fit 2"
    assert (newest["publish"]["before"]["status"], newest["publish"]["after"]["status"]) == (
        "DRAFT",
        "LIVE",
    )
    assert newest["publish"]["after"]["version"] == newest["publish"]["before"]["version"] + 1
    assert (newest["stop"]["before"]["status"], newest["stop"]["after"]["status"]) == (
        "LIVE",
        "STOPPED",
    )
    assert newest["delete"]["before"]["name"] == "fit 2" and newest["delete"]["after"] is None


async def test_a_deleted_records_id_is_never_handed_out_again(api: Api) -> None:
    """The audit log tells records apart by id: a new record never gets a deleted one's id
    (SQLite would reuse the largest rowid once that row is gone)."""
    create = f"mutation($i: ScoringModelInput!) {{ createScoringModel(input: $i) {{ {SM} }} }}"
    first = (await api(create, {"i": MODEL}))["createScoringModel"]["scoringModel"]["id"]
    deleted = await api(
        "mutation($id: ID!) { deleteScoringModel(id: $id) { deletedId userErrors { code } } }",
        {"id": first},
    )
    assert deleted["deleteScoringModel"]["deletedId"] == first
    second = (await api(create, {"i": {**MODEL, "name": "other"}}))["createScoringModel"]
    assert second["scoringModel"]["id"] != first
    history = await log(api, entityType="SCORING_MODEL", entityId=second["scoringModel"]["id"])
    assert [e["action"] for e in history] == ["create"]
    assert history[0]["after"]["name"] == "other"


async def test_a_failed_change_writes_no_entry(api: Api) -> None:
    created = await api(
        f"mutation($i: ScoringModelInput!) {{ createScoringModel(input: $i) {{ {SM} }} }}",
        {"i": MODEL},
    )
    gid = created["createScoringModel"]["scoringModel"]["id"]
    await api(f"mutation($id: ID!) {{ publishScoringModel(id: $id) {{ {SM} }} }}", {"id": gid})
    count = len(await log(api))
    failures = [
        # LIVE: cannot be edited or deleted
        (f"mutation($id: ID!, $i: ScoringModelInput!) {{ updateScoringModel(id: $id, input: $i) {{ {SM} }} }}",
         {"id": gid, "i": MODEL}),
        (f"mutation($id: ID!) {{ deleteScoringModel(id: $id) {{ deletedId {ERRORS} }} }}", {"id": gid}),
        # invalid definition
        (f"mutation($i: ScoringModelInput!) {{ createScoringModel(input: $i) {{ {SM} }} }}",
         {"i": {**MODEL, "rules": [{**MODEL["rules"][0], "condition": {"attribute": {"entity": "LEAD", "field": "nope", "operator": "IS_SET"}}}]}}),
        ('mutation { createMatchingStrategy(input: {name: "x", entity: CONTACT, fields: ["nope"]}) '
         f"{{ matchingStrategy {{ id }} {ERRORS} }} }}", {}),
        (f"mutation($id: ID!) {{ deleteWebhook(id: $id) {{ deletedId {ERRORS} }} }}",
         {"id": to_global_id("Webhook", 999)}),
    ]  # fmt: skip
    for mutation, variables in failures:
        data = await api(mutation, variables)
        assert next(iter(data.values()))["userErrors"], data
    assert len(await log(api)) == count
    # A caller without the permission changes nothing and leaves no entry either.
    errors = await api.errors(
        f"mutation($id: ID!) {{ stopScoringModel(id: $id) {{ {SM} }} }}",
        {"id": gid},
        role=Role.VIEWER,
    )
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert len(await log(api)) == count


async def test_webhooks_strategies_features_and_qualification_models_are_audited(api: Api) -> None:
    secret = "s3cret-s3cret-s3cret-xyz"
    hook = await api(
        "mutation($i: WebhookInput!) { createWebhook(input: $i) { webhook { id } userErrors { message } } }",
        {"i": {"name": "crm", "url": "https://example.com/hook", "secret": secret}},
    )
    hook_id = hook["createWebhook"]["webhook"]["id"]
    new_secret = "another-secret-0123456789"
    await api(
        "mutation($id: ID!, $i: WebhookInput!) { updateWebhook(id: $id, input: $i) { webhook { id } } }",
        {
            "id": hook_id,
            "i": {"name": "crm2", "url": "https://example.com/h2", "secret": new_secret},
        },
    )
    await api(
        "mutation($id: ID!) { deleteWebhook(id: $id) { deletedId } }",
        {"id": hook_id},
    )
    hooks = await log(api, entityType="WEBHOOK")
    assert [e["action"] for e in hooks] == ["delete", "update", "create"]
    assert hooks[1]["before"]["url"] == "https://example.com/hook"
    assert hooks[1]["after"]["url"] == "https://example.com/h2"
    assert hooks[1]["after"]["secretRotated"] is True
    dumped = orjson.dumps(hooks).decode()
    assert secret not in dumped and new_secret not in dumped
    assert all(e["secret"] == "[redacted]" for h in hooks for e in (h["before"], h["after"]) if e)

    strategy = await api(
        'mutation { createMatchingStrategy(input: {name: "by phone", entity: CONTACT, fields: ["phone"]}) '
        "{ matchingStrategy { id } userErrors { message } } }"
    )
    sid = strategy["createMatchingStrategy"]["matchingStrategy"]["id"]
    await api(
        'mutation($id: ID!) { updateMatchingStrategy(id: $id, input: {name: "by phone", entity: CONTACT, fields: ["phone", "lastName"]}) '
        "{ matchingStrategy { id } } }",
        {"id": sid},
    )
    await api("mutation($id: ID!) { deleteMatchingStrategy(id: $id) { deletedId } }", {"id": sid})
    strategies = await log(api, entityId=sid)
    assert [e["action"] for e in strategies] == ["delete", "update", "create"]
    assert strategies[1]["before"]["fields"] == ["phone"]
    assert strategies[1]["after"]["fields"] == ["phone", "lastName"]

    await api(
        "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: false) { settings { leadManagementEnabled } } }"
    )
    switch, switched_on = await log(api, entityType="FEATURE_SWITCH")
    assert switched_on["before"]["enabled"] is False and switched_on["after"]["enabled"] is True
    assert switch["entityId"] == "LEAD_MANAGEMENT" and switch["action"] == "set"
    assert switch["before"]["enabled"] is True and switch["after"]["enabled"] is False
    await api(
        "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { settings { leadManagementEnabled } } }"
    )

    model = await api(
        f"mutation($i: ScoringModelInput!) {{ createScoringModel(input: $i) {{ {SM} }} }}",
        {"i": MODEL},
    )
    mid = model["createScoringModel"]["scoringModel"]["id"]
    await api(f"mutation($id: ID!) {{ publishScoringModel(id: $id) {{ {SM} }} }}", {"id": mid})
    q = {
        "name": "mql",
        "match": "ALL",
        "criteria": [{"scoringModelId": mid, "minScore": 5}],
        "actions": {"markMarketingQualified": True, "markSalesReady": False},
    }
    QM = "qualificationModel { id status } " + ERRORS
    created = await api(
        f"mutation($i: QualificationModelInput!) {{ createQualificationModel(input: $i) {{ {QM} }} }}",
        {"i": q},
    )
    qid = created["createQualificationModel"]["qualificationModel"]["id"]
    await api(
        f"mutation($id: ID!, $i: QualificationModelInput!) {{ updateQualificationModel(id: $id, input: $i) {{ {QM} }} }}",
        {"id": qid, "i": {**q, "name": "mql 2"}},
    )
    await api(f"mutation($id: ID!) {{ stopScoringModel(id: $id) {{ {SM} }} }}", {"id": mid})
    refused = await api(
        f"mutation($id: ID!) {{ publishQualificationModel(id: $id) {{ {QM} }} }}", {"id": qid}
    )
    assert refused["publishQualificationModel"]["userErrors"][0]["code"] == "CONFLICT"
    await api(f"mutation($id: ID!) {{ publishScoringModel(id: $id) {{ {SM} }} }}", {"id": mid})
    for op in ("publish", "stop", "delete"):
        name = f"{op}QualificationModel"
        fields = "deletedId" if op == "delete" else QM
        data = await api(f"mutation($id: ID!) {{ {name}(id: $id) {{ {fields} }} }}", {"id": qid})
        assert not data[name].get("userErrors")
    entries = await log(api, entityType="QUALIFICATION_MODEL")
    assert [e["action"] for e in entries] == ["delete", "stop", "publish", "update", "create"]
    assert entries[2]["before"]["status"] == "DRAFT" and entries[2]["after"]["status"] == "LIVE"
    assert (entries[3]["before"]["name"], entries[3]["after"]["name"]) == ("mql", "mql 2")
    assert entries[4]["after"]["criteria"][0]["minScore"] == 5


async def test_api_keys_are_audited_without_their_hash(api: Api, database_url: str) -> None:
    db = Database(database_url)
    try:
        store = ApiKeyStore(db)
        key, secret = await store.create("ci bot", Role.INTEGRATION)
        assert await store.revoke(key.id)
        assert not await store.revoke(key.id)  # already revoked: no change, no entry
    finally:
        await db.dispose()
    entries = await log(api, entityType="API_KEY", entityId=str(key.id))
    assert [e["action"] for e in entries] == ["revoke", "create"]
    assert entries[1]["after"]["name"] == "ci bot" and entries[1]["after"]["role"] == "INTEGRATION"
    assert entries[0]["before"]["revokedAt"] is None and entries[0]["after"]["revokedAt"]
    assert entries[0]["actor"] == {"apiKeyId": None, "name": "command line", "role": None}
    assert secret not in orjson.dumps(entries).decode()
    assert "keyHash" not in entries[1]["after"] and "key_hash" not in entries[1]["after"]


async def test_filters_and_pages(api: Api) -> None:
    for i in range(3):
        await api(
            f"mutation($i: ScoringModelInput!) {{ createScoringModel(input: $i) {{ {SM} }} }}",
            {"i": {**MODEL, "name": f"m{i}"}},
            role=Role.MARKETER if i else Role.ADMIN,
        )
    everything = await log(api, entityType="SCORING_MODEL")
    assert [e["after"]["name"] for e in everything] == ["m2", "m1", "m0"]
    marketer = everything[0]["actor"]["apiKeyId"]
    assert [e["after"]["name"] for e in await log(api, actorApiKeyId=marketer)] == ["m2", "m1"]
    assert await log(api, since="2999-01-01T00:00:00+00:00") == []
    assert len(await log(api, since=everything[-1]["occurredAt"])) >= 3
    first = await api(LOG, {"f": {"entityType": "SCORING_MODEL"}, "first": 2})
    page = first["auditLog"]
    assert page["pageInfo"]["hasNextPage"] and len(page["edges"]) == 2
    rest = await api(
        LOG,
        {"f": {"entityType": "SCORING_MODEL"}, "first": 2, "after": page["pageInfo"]["endCursor"]},
    )
    assert [e["node"]["after"]["name"] for e in rest["auditLog"]["edges"]] == ["m0"]
    errors = await api.errors(
        LOG, {"f": {"entityType": "WEBHOOK", "entityId": everything[0]["entityId"]}}
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN])
async def test_only_admins_read_the_audit_log(api: Api, role: Role) -> None:
    errors = await api.errors(LOG, {}, role=role)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_entry_rolls_back_with_the_change(db: Database) -> None:
    class Boom(Exception):
        pass

    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        await uow.commit()
    with pytest.raises(Boom):
        async with db.uow() as uow:
            await scoring_services.create_scoring_model(uow, MODEL)
            assert await uow.audit.count(AuditFilter()) == 1  # written in this transaction
            raise Boom  # after the change and its entry were written, before commit
    async with db.read() as r:
        assert await r.audit.count(AuditFilter()) == 0
        assert await r.scoring_models.count(None) == 0
    async with db.uow() as uow:
        await scoring_services.create_scoring_model(uow, MODEL)
        await uow.commit()
    async with db.read() as r:
        assert await r.audit.count(AuditFilter()) == 1

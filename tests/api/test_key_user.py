"""API keys that belong to a user: viewer, "my leads", the default work list and reminders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.ids import from_global_id
from domain.audit import AuditEntityType, AuditFilter
from domain.auth import Principal
from domain.errors import NotFound
from domain.pagination import PageRequest
from domain.roles import Role
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from tests.api.test_sales import new_lead
from tests.api.test_sequences import ASSIGN, ATTACH, LOG, op, owned_lead, seller, sequence
from tests.conftest import Api

VIEWER = "{ viewer { name role user { id name email } } }"
WORK = "query($o: ID) { workList(ownerId: $o) { edges { node { lead { topic } } } } }"
REMIND = "query($o: ID) { reminders(ownerId: $o, withinHours: 48) { subject } }"
LEADS = "query($f: LeadFilter) { leads(filter: $f, first: 50) { edges { node { topic } } } }"


def topics(data: dict[str, Any], key: str) -> list[str]:
    return sorted(e["node"].get("topic") or e["node"]["lead"]["topic"] for e in data[key]["edges"])


def bad_input(errors: list[dict[str, Any]]) -> str:
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors
    message: str = errors[0]["message"]
    return message


async def test_viewer_names_the_keys_user(api: Api) -> None:
    sam = await seller(api, "Sam")
    key = await api.user_key(sam, Role.SELLER)
    mine = await api(VIEWER, key=key)
    assert mine["viewer"]["role"] == "SELLER"
    assert mine["viewer"]["user"] == {"id": sam, "name": "Sam", "email": "sam@sales.io"}
    bare = await api(VIEWER, role=Role.VIEWER)
    assert bare["viewer"] == {"name": "test VIEWER", "role": "VIEWER", "user": None}


async def test_work_list_defaults_to_the_keys_user(api: Api) -> None:
    sam, kim = await seller(api, "Sam"), await seller(api, "Kim")
    seq = await sequence(api)
    for owner, topic in ((sam, "Sam 1"), (sam, "Sam 2"), (kim, "Kim 1")):
        lead = await owned_lead(api, owner, topic)
        assert (await op(api, ATTACH, l=lead["id"], s=seq))["userErrors"] == []
    sam_key = await api.user_key(sam, Role.VIEWER)

    assert topics(await api(WORK, key=sam_key), "workList") == ["Sam 1", "Sam 2"]
    # An explicit owner still wins over the key's user.
    assert topics(await api(WORK, {"o": kim}, key=sam_key), "workList") == ["Kim 1"]
    assert topics(await api(WORK, {"o": sam}, role=Role.VIEWER), "workList") == ["Sam 1", "Sam 2"]

    message = bad_input(await api.errors(WORK, role=Role.VIEWER))
    assert "ownerId" in message and "belongs to no user" in message


async def test_reminders_default_to_the_keys_user(api: Api) -> None:
    sam, kim = await seller(api, "Sam"), await seller(api, "Kim")
    lead = await new_lead(api, topic="Busy")
    soon = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    for owner, subject in ((sam, "sam's demo"), (kim, "kim's demo")):
        body = {"kind": "APPOINTMENT", "subject": subject, "leadId": lead["id"]}
        made = await op(api, LOG, i={**body, "ownerId": owner, "occurredAt": soon})
        assert made["userErrors"] == []
    key = await api.user_key(kim)

    assert (await api(REMIND, key=key))["reminders"] == [{"subject": "kim's demo"}]
    assert (await api(REMIND, {"o": sam}, key=key))["reminders"] == [{"subject": "sam's demo"}]
    message = bad_input(await api.errors(REMIND, role=Role.SELLER))
    assert "ownerId" in message
    # An activity logged without ownerId belongs to the user of the key that logged it.
    own = {"kind": "TASK", "subject": "kim's call back", "leadId": lead["id"], "occurredAt": soon}
    logged = await api(LOG, {"i": own}, key=await api.user_key(kim, Role.SELLER))
    assert logged["logActivity"]["userErrors"] == []
    assert [r["subject"] for r in (await api(REMIND, key=key))["reminders"]] == [
        "kim's demo",
        "kim's call back",
    ]


async def test_leads_mine_are_the_keys_users_leads(api: Api) -> None:
    sam, kim = await seller(api, "Sam"), await seller(api, "Kim")
    await owned_lead(api, sam, "Sam's")
    await owned_lead(api, kim, "Kim's")
    await new_lead(api, topic="Nobody's")
    key = await api.user_key(sam, Role.VIEWER)

    assert topics(await api(LEADS, {"f": {"mine": True}}, key=key), "leads") == ["Sam's"]
    everything = await api(LEADS, {"f": {"mine": False}}, key=key)
    assert topics(everything, "leads") == ["Kim's", "Nobody's", "Sam's"]
    # mine combines with the other criteria.
    closed = await api(LEADS, {"f": {"mine": True, "state": ["QUALIFIED"]}}, key=key)
    assert closed["leads"]["edges"] == []

    both = await api.errors(LEADS, {"f": {"mine": True, "ownerId": kim}}, key=key)
    assert "either mine or ownerId" in bad_input(both)
    no_user = await api.errors(LEADS, {"f": {"mine": True}}, role=Role.VIEWER)
    assert "filter.ownerId" in bad_input(no_user)


async def test_a_reassigned_lead_leaves_my_leads(api: Api) -> None:
    sam, kim = await seller(api, "Sam"), await seller(api, "Kim")
    lead = await owned_lead(api, sam, "Moving")
    key = await api.user_key(sam)
    assert topics(await api(LEADS, {"f": {"mine": True}}, key=key), "leads") == ["Moving"]
    assert (await op(api, ASSIGN, id=lead["id"], u=kim))["userErrors"] == []
    assert (await api(LEADS, {"f": {"mine": True}}, key=key))["leads"]["edges"] == []


async def test_the_audit_actor_names_the_keys_user(api: Api) -> None:
    sam = await seller(api, "Sam")
    key = await api.user_key(sam, Role.ADMIN)
    switch = "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { settings { leadManagementEnabled } } }"
    await api(switch, key=key)
    await api(switch)  # the fixture's ADMIN key has no user
    log = await api(
        """{ auditLog(filter: {entityType: FEATURE_SWITCH}) {
             edges { node { actor { name userId } } } } }"""
    )
    actors = [e["node"]["actor"] for e in log["auditLog"]["edges"]]
    assert actors == [
        {"name": "test ADMIN", "userId": None},
        {"name": f"ADMIN of user {from_global_id(sam)[1]}", "userId": sam},
    ]


async def _user(db: Database, name: str) -> int:
    from domain.sales import User

    async with db.uow() as uow:
        user = await uow.users.add(User(name, f"{name}@x.io"))
        await uow.commit()
    return user.id


async def test_key_store_links_the_user_and_caches_it(db: Database) -> None:
    user_id = await _user(db, "ann")
    store = ApiKeyStore(db, cache_seconds=3600)
    key, secret = await store.create("ann's key", Role.SELLER, user_id=user_id)
    _, bare_secret = await store.create("bare", Role.VIEWER)
    assert key.user_id == user_id
    assert [(k.name, k.user_id) for k in await store.list()] == [
        ("ann's key", user_id),
        ("bare", None),
    ]

    first = await store.authenticate(secret)
    assert first == Principal(key.id, "ann's key", Role.SELLER, user_id)
    # The second look-up is answered by the cache, which carries the user too.
    cached = store._cache[next(iter(store._cache))][1]
    assert cached is not None and cached.user_id == user_id
    assert await store.authenticate(secret) is first
    bare = await store.authenticate(bare_secret)
    assert bare is not None and bare.user_id is None

    with pytest.raises(NotFound):
        await store.create("ghost's key", Role.SELLER, user_id=user_id + 1000)
    assert len(await store.list()) == 2

    # The audit snapshots name the user; the actor names the acting key's user.
    assert await store.revoke(key.id, actor=first)
    async with db.read() as r:
        page = await r.audit.page(
            AuditFilter(AuditEntityType.API_KEY, str(key.id)), PageRequest(10)
        )
    revoke, create = page.items
    assert create.after is not None and create.after["userId"] == user_id
    assert revoke.before is not None and revoke.before["userId"] == user_id
    assert revoke.after is not None and revoke.after["userId"] == user_id
    assert revoke.actor.key_id == key.id and revoke.actor.user_id == user_id
    assert create.actor.user_id is None  # made from the command line

"""Limits at the HTTP door: rate limits, body size, CSRF, batching, directives, timeouts and
what production hides."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import RateLimit, Settings
from domain.roles import Role
from persistence.ratelimit import MemoryRateLimiter, RedisRateLimiter
from tests.conftest import REDIS_URL, UNLIMITED, Api, _missing

VIEWER_QUERY = "{ viewer { name role } }"


@asynccontextmanager
async def server(database_url: str, **overrides: Any) -> AsyncIterator[Api]:
    """The app with these settings over ASGI, with one key per role."""
    values: dict[str, Any] = dict(
        database_url=database_url,
        env="test",
        api_key_cache_seconds=0,
        webhook_interval_seconds=0,
        score_expiry_interval_seconds=0,
        rate_limits=UNLIMITED,
    )
    values.update(overrides)
    app = create_app(Settings(**values), migrate=False)
    keys = {role: (await app.state.keys.create(f"t {role.value}", role))[1] for role in Role}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, keys)


def bearer(api: Api, role: Role = Role.ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.keys[role]}"}


# ---------------------------------------------------------------- rate limiting


async def test_rate_limit_per_key_answers_429_with_retry_after(database_url: str) -> None:
    limits = {**UNLIMITED, "VIEWER": RateLimit(per_second=0.01, burst=3)}
    async with server(database_url, rate_limits=limits) as api:
        for _ in range(3):
            assert (await api.post(VIEWER_QUERY, role=Role.VIEWER)).status_code == 200
        refused = await api.post(VIEWER_QUERY, role=Role.VIEWER)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert "retry in" in error["message"]
        # Another role's key has its own (here unlimited) bucket.
        assert (await api.post(VIEWER_QUERY, role=Role.ADMIN)).status_code == 200


async def test_rate_limit_can_be_switched_off(database_url: str) -> None:
    limits = {**UNLIMITED, "VIEWER": RateLimit(per_second=0.01, burst=1)}
    async with server(database_url, rate_limits=limits, rate_limit_enabled=False) as api:
        for _ in range(3):
            assert (await api.post(VIEWER_QUERY, role=Role.VIEWER)).status_code == 200


def test_rate_limits_per_role_have_defaults_and_reject_unknown_roles() -> None:
    settings = Settings(rate_limits={"VIEWER": RateLimit(per_second=1, burst=2)})
    assert settings.rate_limit("VIEWER") == RateLimit(per_second=1, burst=2)
    assert settings.rate_limit("INTEGRATION").per_second > settings.rate_limit("VIEWER").per_second
    with pytest.raises(ValueError, match="unknown roles"):
        Settings(rate_limits={"ROOT": RateLimit(per_second=1, burst=1)})


async def test_memory_bucket_refills_at_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("persistence.ratelimit.time.monotonic", lambda: clock[0])
    limiter = MemoryRateLimiter()
    assert [await limiter.take("k", 2.0, 2) for _ in range(2)] == [0.0, 0.0]
    assert await limiter.take("k", 2.0, 2) == pytest.approx(0.5)
    clock[0] += 0.5  # one token back
    assert await limiter.take("k", 2.0, 2) == 0.0
    assert await limiter.take("other", 2.0, 2) == 0.0  # buckets are per key


async def test_redis_bucket_is_shared_between_processes() -> None:
    if not REDIS_URL:
        _missing("Redis", "LEADFLOW_TEST_REDIS_URL")
    prefix = f"leadflow:test-rate:{uuid.uuid4().hex}:"
    first, second = RedisRateLimiter(REDIS_URL, prefix), RedisRateLimiter(REDIS_URL, prefix)
    try:
        # Two limiters (as two server processes would hold) draw from one bucket of 4.
        taken = [await (first if i % 2 else second).take("key:1", 0.001, 4) for i in range(4)]
        assert taken == [0.0] * 4
        wait = await first.take("key:1", 0.001, 4)
        assert wait > 100  # one token per 1,000 s
        assert await second.take("key:2", 0.001, 4) == 0.0
    finally:
        await first.close()
        await second.close()


async def test_a_burst_waits_for_pooled_redis_connections() -> None:
    """2,000 takes at once share a small pool: every one counted in Redis, none in memory."""
    if not REDIS_URL:
        _missing("Redis", "LEADFLOW_TEST_REDIS_URL")
    prefix = f"leadflow:test-rate:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(REDIS_URL, prefix, max_connections=4)
    other = RedisRateLimiter(REDIS_URL, prefix)
    try:
        waits = await asyncio.gather(*(limiter.take("key:1", 0.001, 1500) for _ in range(2000)))
        assert sum(1 for w in waits if w == 0.0) == 1500  # one shared bucket of 1,500
        # The bucket lives in Redis (a second limiter sees it empty), not in the fallback.
        assert await other.take("key:1", 0.001, 1500) > 100
    finally:
        await limiter.close()
        await other.close()


async def test_redis_outage_falls_back_to_counting_in_the_process() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        # The API keeps answering, still limited, per process.
        assert [await limiter.take("key:1", 0.001, 2) for _ in range(2)] == [0.0, 0.0]
        assert await limiter.take("key:1", 0.001, 2) > 100
    finally:
        await limiter.close()


async def test_server_processes_share_a_key_bucket_through_redis(database_url: str) -> None:
    """Two apps (as two server processes) on one database and one Redis: one bucket per key."""
    if not REDIS_URL:
        _missing("Redis", "LEADFLOW_TEST_REDIS_URL")
    limits = {**UNLIMITED, "VIEWER": RateLimit(per_second=0.001, burst=3)}
    async with server(database_url, redis_url=REDIS_URL, rate_limits=limits) as first:
        settings = Settings(
            database_url=database_url,
            env="test",
            redis_url=REDIS_URL,
            rate_limits=limits,
            api_key_cache_seconds=0,
            webhook_interval_seconds=0,
            score_expiry_interval_seconds=0,
        )
        second_app = create_app(settings, migrate=False)
        async with second_app.router.lifespan_context(second_app):
            transport = httpx.ASGITransport(app=second_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as second:
                key = first.keys[Role.VIEWER]
                assert (await first.post(VIEWER_QUERY, role=Role.VIEWER)).status_code == 200
                answers = [
                    await second.post(
                        "/graphql",
                        json={"query": VIEWER_QUERY},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    for _ in range(2)
                ]
                assert [a.status_code for a in answers] == [200, 200]
                assert (await first.post(VIEWER_QUERY, role=Role.VIEWER)).status_code == 429


# ---------------------------------------------------------------- body size


async def test_body_larger_than_the_cap_is_413_before_it_is_read(database_url: str) -> None:
    async with server(database_url, max_body_bytes=2048, max_import_body_bytes=8192) as api:
        big = json.dumps({"query": VIEWER_QUERY, "variables": {"pad": "x" * 4000}}).encode()
        headers = {**bearer(api, Role.VIEWER), "Content-Type": "application/json"}
        r = await api.client.post("/graphql", content=big, headers=headers)
        assert r.status_code == 413
        assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        assert "larger than 2048 bytes" in r.json()["errors"][0]["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for i in range(0, len(big), 512):
                yield big[i : i + 512]

        r = await api.client.post("/graphql", content=chunks(), headers=headers)
        assert "content-length" not in r.request.headers
        assert r.status_code == 413
        # Roles that may import CSV get the larger cap.
        r = await api.client.post("/graphql", content=big, headers={**headers, **bearer(api)})
        assert r.status_code == 200
        assert r.json()["data"]["viewer"]["role"] == "ADMIN"


def test_default_body_cap_holds_the_largest_batch_and_import() -> None:
    settings = Settings()
    interactions = [
        {
            "type": "PAGE_VISITED",
            "contactId": "Q29udGFjdDoxMjM0NTY=",
            "properties": {"url": "x" * 200},
        }
    ] * 1000
    body = json.dumps(
        {"query": "mutation { recordInteractions }", "variables": {"i": interactions}}
    )
    assert len(body) < settings.max_body_bytes
    assert settings.max_import_body_bytes > 20 * 1024 * 1024  # the CSV limit of importRecords


# ---------------------------------------------------------------- CSRF


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/x-www-form-urlencoded", b"query=mutation+%7B+x+%7D"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{}\r\n--b--',
        ),
        (
            "text/plain",
            b'{"query": "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { userErrors { code } } }"}',
        ),
        (None, b'{"query": "{ viewer { name } }"}'),
    ],
)
async def test_only_json_posts_run(api: Api, content_type: str | None, content: bytes) -> None:
    headers = bearer(api)
    if content_type:
        headers["Content-Type"] = content_type
    r = await api.client.post("/graphql", content=content, headers=headers)
    assert r.status_code == 415
    assert "application/json" in r.json()["errors"][0]["message"]
    settings = await api("{ settings { leadManagementEnabled } }")
    assert settings["settings"]["leadManagementEnabled"] is False


async def test_mutations_cannot_run_over_get(api: Api) -> None:
    query = "mutation { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true) { userErrors { code } } }"
    r = await api.client.get("/graphql", params={"query": query}, headers=bearer(api))
    assert r.status_code == 400
    assert "mutations are not allowed when using GET" in r.text
    assert (await api("{ settings { leadManagementEnabled } }"))["settings"] == {
        "leadManagementEnabled": False
    }


# ---------------------------------------------------------------- batching


async def test_batching_is_off_by_default(api: Api) -> None:
    batch = [{"query": VIEWER_QUERY}, {"query": VIEWER_QUERY}]
    r = await api.client.post("/graphql", json=batch, headers=bearer(api))
    assert r.status_code == 400
    assert r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "batching is off" in r.json()["errors"][0]["message"]


async def test_batches_are_capped_when_enabled(database_url: str) -> None:
    async with server(database_url, max_batch_operations=2) as api:
        two = [{"query": VIEWER_QUERY}, {"query": "{ settings { leadManagementEnabled } }"}]
        r = await api.client.post("/graphql", json=two, headers=bearer(api))
        assert r.status_code == 200
        assert [sorted(answer["data"]) for answer in r.json()] == [["viewer"], ["settings"]]
        r = await api.client.post("/graphql", json=[*two, two[0]], headers=bearer(api))
        assert r.status_code == 400
        assert "a batch holds 1 to 2 operations, not 3" in r.json()["errors"][0]["message"]


# ---------------------------------------------------------------- directives


async def test_directives_are_limited(api: Api) -> None:
    query = "{ viewer { " + " ".join(["name @include(if: true)"] * 21) + " } }"
    errors = await api.errors(query)
    assert "uses 21 directives; at most 20 are allowed" in errors[0]["message"]
    ok = "{ viewer { " + " ".join(["name @include(if: true)"] * 20) + " } }"
    assert (await api(ok))["viewer"]["name"]


async def test_directives_inside_fragments_count_each_time_they_are_spread(api: Api) -> None:
    fragment = "fragment F on Viewer { name @skip(if: false) role @skip(if: false) }"
    spreads = " ".join(f"a{i}: viewer {{ ...F }}" for i in range(11))  # 11 spreads, 2 each
    errors = await api.errors("query Q { " + spreads + " } " + fragment)
    assert "'Q' uses 22 directives" in errors[0]["message"]


# ---------------------------------------------------------------- execution timeout


async def test_a_mutation_past_the_timeout_keeps_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persistence.repositories import AccountRepository

    original = AccountRepository.add
    written = asyncio.Event()

    async def add_then_hang(self: AccountRepository, account: Any) -> Any:
        stored = await original(self, account)
        written.set()  # the row is in the open transaction
        await asyncio.Event().wait()
        return stored

    monkeypatch.setattr(AccountRepository, "add", add_then_hang)
    async with server(database_url, execution_timeout_seconds=0.3) as api:
        r = await api.post('mutation { createAccount(input: {name: "Half"}) { account { id } } }')
        assert written.is_set()
        body = r.json()
        assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"
        assert "its open transaction was rolled back" in body["errors"][0]["message"]
        monkeypatch.setattr(AccountRepository, "add", original)
        data = await api('{ accounts(search: "Half") { totalCount } }')
        assert data["accounts"]["totalCount"] == 0
        created = await api(
            'mutation { createAccount(input: {name: "Whole"}) { account { name } } }'
        )
        assert created["createAccount"]["account"]["name"] == "Whole"


# ---------------------------------------------------------------- production


async def test_production_gives_no_field_suggestions(database_url: str) -> None:
    typo = "{ viewer { nmae } }"
    enum_typo = "mutation($f: Feature!) { setFeatureSwitch(feature: $f, enabled: true) { userErrors { code } } }"
    async with server(database_url, env="development") as api:
        assert "Did you mean" in (await api.errors(typo))[0]["message"]
        assert (
            "Did you mean" in (await api.errors(enum_typo, {"f": "LEAD_MANAGEMENTS"}))[0]["message"]
        )
    async with server(database_url, env="production") as api:
        errors = await api.errors(typo)
        assert "Cannot query field 'nmae'" in errors[0]["message"]
        assert "Did you mean" not in errors[0]["message"]
        errors = await api.errors(enum_typo, {"f": "LEAD_MANAGEMENTS"})
        assert "LEAD_MANAGEMENTS" in errors[0]["message"]
        assert "Did you mean" not in json.dumps(errors)


async def test_database_errors_leak_no_sql_or_trace(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from persistence.repositories import LeadRepository

    async def broken(self: LeadRepository, *_: object, **__: object) -> None:
        await self.conn.execute(text("SELECT secret_column FROM no_such_table"))

    monkeypatch.setattr(LeadRepository, "list", broken)
    r = await api.post("{ leads { totalCount } }")
    body = r.text
    assert r.json()["errors"][0]["message"] == "Unexpected error."
    for leak in ("no_such_table", "secret_column", "SELECT", "Traceback", "sqlalchemy", 'File "'):
        assert leak not in body

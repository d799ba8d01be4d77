"""Typed settings from the environment (prefix LEADFLOW_)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
ROLE_NAMES = ("ADMIN", "MARKETER", "SELLER", "INTEGRATION", "VIEWER")


class RateLimit(BaseModel):
    """A token bucket: `burst` requests at once, refilled at `per_second`."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


# Per API key, by the key's role. Integrations ingest in bulk; people click.
DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    "ADMIN": RateLimit(per_second=50, burst=100),
    "MARKETER": RateLimit(per_second=50, burst=100),
    "SELLER": RateLimit(per_second=20, burst=50),
    "INTEGRATION": RateLimit(per_second=200, burst=400),
    "VIEWER": RateLimit(per_second=20, burst=50),
}


# Database URL schemes as other tools write them, and the drivers LeadFlow runs them with.
_PLAIN_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./leadflow.db"
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    sqlite_busy_timeout_ms: int = Field(5000, ge=0)
    db_pool_size: int = Field(10, ge=1)
    max_query_depth: int = Field(12, ge=1)
    max_aliases: int = Field(30, ge=1)
    max_tokens: int = Field(5000, ge=10)
    # Characters of one GraphQL document (its query text; values go in variables).
    max_document_chars: int = Field(100_000, ge=1000)
    max_page_size: int = Field(500, ge=1, le=500)
    max_directives: int = Field(20, ge=0)
    # Objects one operation may return (pages multiply: leads(first: 500) { ... contact {
    # leads(first: 500) } } asks for 250,000) and the work of merging repeated fields.
    max_query_nodes: int = Field(20_000, ge=100)
    max_merge_work: int = Field(20_000, ge=100)
    # Operations in one batched POST (a JSON list); 0 turns batching off.
    max_batch_operations: int = Field(0, ge=0, le=50)
    # Wall-clock limit of one query or mutation; its unit of work rolls back. 0: no limit.
    execution_timeout_seconds: float = Field(30.0, ge=0)
    # Request bodies: callers whose role may import CSV (importRecords) get the larger cap.
    max_body_bytes: int = Field(1 * MiB, ge=1024)
    # How long an idle HTTP connection is kept open. Longer than the idle timeouts of clients
    # and proxies (httpx 5 s, AWS load balancers 60 s), so a client never sends a request on a
    # connection the server is closing at that moment.
    keep_alive_seconds: float = Field(65.0, gt=0)
    max_import_body_bytes: int = Field(24 * MiB, ge=1024)
    rate_limit_enabled: bool = True
    # Unknown or revoked API keys one client address may present (each costs a database read).
    auth_failures_per_second: float = Field(1.0, gt=0)
    auth_failures_burst: int = Field(20, ge=1)
    # JSON, e.g. {"VIEWER": {"per_second": 5, "burst": 10}}; roles left out keep their defaults.
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    # WebSocket: browser pages on these origins may connect besides the server's own origin
    # (requests without an Origin header come from non-browser clients and are allowed).
    ws_allowed_origins: list[str] = Field(default_factory=list)
    ws_connection_init_timeout_seconds: float = Field(10.0, gt=0, le=10)
    ws_max_subscriptions: int = Field(20, ge=1)
    # How often an open WebSocket re-checks its API key (revoked → 4401, role lowered → 4403).
    ws_key_check_seconds: float = Field(5.0, gt=0)
    api_key_cache_seconds: float = Field(5.0, ge=0)
    score_expiry_interval_seconds: float = Field(30.0, ge=0)
    webhook_interval_seconds: float = Field(2.0, ge=0)
    # Deliveries to loopback, private, link-local (cloud metadata) addresses: off by default.
    webhook_allow_private_addresses: bool = False
    # How often each process positions leftover events and polls the event table's head.
    event_relay_interval_seconds: float = Field(1.0, gt=0)
    # How long a mutation's answer is kept for its Idempotency-Key, and how often expired
    # keys are deleted (0: never).
    idempotency_key_ttl_seconds: float = Field(86400.0, gt=0)
    idempotency_cleanup_interval_seconds: float = Field(600.0, ge=0)
    # How often freed memory is handed back to the OS (glibc's malloc_trim; 0: never).
    memory_trim_interval_seconds: float = Field(60.0, ge=0)
    # glibc malloc arenas the server's threads share (MALLOC_ARENA_MAX; 0: glibc's default).
    malloc_arenas: int = Field(2, ge=0)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        """SQLite through aiosqlite or PostgreSQL through asyncpg; the plain schemes (as other
        tools write them) are taken to mean those drivers."""
        scheme, sep, rest = value.partition("://")
        scheme = _PLAIN_SCHEMES.get(scheme, scheme)
        if not sep or scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(
                "LeadFlow stores its data in SQLite (sqlite+aiosqlite:///path/to/file.db) or "
                "PostgreSQL (postgresql+asyncpg://user@host:5432/database)"
            )
        return f"{scheme}://{rest}"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None  # set but empty: no Redis
        if value.partition("://")[0] not in ("redis", "rediss", "unix"):
            raise ValueError("a Redis URL: redis://host:6379/0, rediss://… or unix://…")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _known_roles(cls, value: dict[str, RateLimit]) -> dict[str, RateLimit]:
        unknown = sorted(set(value) - set(ROLE_NAMES))
        if unknown:
            raise ValueError(f"unknown roles {unknown}; roles are {list(ROLE_NAMES)}")
        return value

    @property
    def production(self) -> bool:
        return self.env == "production"

    def rate_limit(self, role: str) -> RateLimit:
        """The token bucket of a key with this role."""
        return self.rate_limits.get(role) or DEFAULT_RATE_LIMITS[role]


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()

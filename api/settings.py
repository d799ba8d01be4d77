"""Typed settings from the environment (prefix LEADFLOW_)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./leadflow.db"
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: str = "info"
    sqlite_busy_timeout_ms: int = Field(5000, ge=0)
    db_pool_size: int = Field(10, ge=1)
    max_query_depth: int = Field(12, ge=1)
    max_aliases: int = Field(30, ge=1)
    max_tokens: int = Field(5000, ge=10)
    max_page_size: int = Field(500, ge=1, le=500)
    api_key_cache_seconds: float = Field(5.0, ge=0)
    score_expiry_interval_seconds: float = Field(30.0, ge=0)
    webhook_interval_seconds: float = Field(2.0, ge=0)
    # How often each process positions leftover events and polls the event table's head.
    event_relay_interval_seconds: float = Field(1.0, gt=0)
    # How long a mutation's answer is kept for its Idempotency-Key, and how often expired
    # keys are deleted (0: never).
    idempotency_key_ttl_seconds: float = Field(86400.0, gt=0)
    idempotency_cleanup_interval_seconds: float = Field(600.0, ge=0)

    @property
    def production(self) -> bool:
        return self.env == "production"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()

"""API keys: created once, stored as SHA-256 hashes, looked up with a short cache."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Row

from domain import audit
from domain.auth import ApiKey, Principal
from domain.errors import NotFound
from domain.model import utcnow
from domain.roles import Role
from persistence import tables as t
from persistence.database import Database

KEY_PREFIX = "lf_"
_KEY = audit.AuditEntityType.API_KEY
# What a request needs to know about its key: one narrow row on the per-request path.
_AUTH_COLUMNS = (t.api_keys.c.id, t.api_keys.c.name, t.api_keys.c.role, t.api_keys.c.user_id)


def _key(x: Row[Any]) -> ApiKey:
    return ApiKey(x.id, x.name, Role(x.role), x.prefix, x.created_at, x.revoked_at, x.user_id)


def hash_key(secret: str) -> str:
    """Keys are 256-bit random strings, so one SHA-256 is a safe, fast hash for them."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _digest(secret: str) -> str | None:
    """The stored hash of what could be a key; None for what cannot (no prefix, too long)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    return hash_key(secret)


# How long a key found valid is remembered as not a guess (recently_valid).
VALID_MEMORY_SECONDS = 3600.0


class ApiKeyStore:
    """Creates, lists, revokes and checks API keys."""

    def __init__(self, db: Database, cache_seconds: float = 5.0) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        # Digests of keys found valid, and until when that vouches for them (see recently_valid).
        self._valid: dict[str, float] = {}

    async def create(
        self,
        name: str,
        role: Role,
        actor: Principal | None = None,
        user_id: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key, belonging to `user_id` when given (NotFound when no such user); the secret
        is returned once and only its hash is stored."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("the key's name must be 1 to 200 characters")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = secret[: len(KEY_PREFIX) + 6]
        now = utcnow()
        async with self.db.uow(actor) as uow:
            if user_id is not None:
                # The foreign key guards against the user vanishing before the commit.
                found = await uow.conn.scalar(select(t.users.c.id).where(t.users.c.id == user_id))
                if found is None:
                    raise NotFound(f"no user with id {user_id}", ["user"])
            key_id = await uow.conn.scalar(
                insert(t.api_keys)
                .values(
                    name=name,
                    role=role.value,
                    prefix=prefix,
                    key_hash=hash_key(secret),
                    created_at=now,
                    user_id=user_id,
                )
                .returning(t.api_keys.c.id)
            )
            key = ApiKey(int(key_id), name, role, prefix, now, user_id=user_id)
            await audit.record(uow, "create", _KEY, key.id, None, audit.api_key(key))
            await uow.commit()
        return key, secret

    async def list(self) -> list[ApiKey]:
        async with self.db.read() as r:
            rows = (await r.conn.execute(select(t.api_keys).order_by(t.api_keys.c.id))).all()
        return [_key(x) for x in rows]

    async def revoke(self, key_id: int, actor: Principal | None = None) -> bool:
        """Revoke a key; False when no active key has this id."""
        now = utcnow()
        async with self.db.uow(actor) as uow:
            row = (
                await uow.conn.execute(
                    select(t.api_keys).where(t.api_keys.c.id == key_id).with_for_update()
                )
            ).first()
            if row is None or row.revoked_at is not None:
                return False
            await uow.conn.execute(
                update(t.api_keys).where(t.api_keys.c.id == key_id).values(revoked_at=now)
            )
            before = _key(row)
            after = ApiKey(
                before.id,
                before.name,
                before.role,
                before.prefix,
                before.created_at,
                now,
                before.user_id,
            )
            await audit.record(
                uow, "revoke", _KEY, key_id, audit.api_key(before), audit.api_key(after)
            )
            await uow.commit()
        self._cache.clear()
        return True

    async def count_active(self) -> int:
        async with self.db.read() as r:
            stmt = select(func.count()).where(t.api_keys.c.revoked_at.is_(None))
            return int(await r.conn.scalar(stmt) or 0)

    async def authenticate(self, secret: str) -> Principal | None:
        """The caller this key belongs to, or None for an unknown or revoked key."""
        digest = _digest(secret)
        if digest is None:
            return None
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            if hit[1] is not None and digest in self._valid:
                self._valid[digest] = now + VALID_MEMORY_SECONDS
            return hit[1]
        async with self.db.read() as r:
            row = (
                await r.conn.execute(
                    select(*_AUTH_COLUMNS).where(
                        t.api_keys.c.key_hash == digest, t.api_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        principal = Principal(row.id, row.name, Role(row.role), row.user_id) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self.cache_seconds, principal)
        if principal is not None:
            if len(self._valid) > 100_000:
                self._valid.clear()
            self._valid[digest] = now + VALID_MEMORY_SECONDS
        else:
            self._valid.pop(digest, None)
        return principal

    def recently_valid(self, secret: str) -> bool:
        """Whether this key was found valid by its last check in this process, within
        VALID_MEMORY_SECONDS: a caller throttled for presenting unknown keys may still use it."""
        digest = _digest(secret)
        until = None if digest is None else self._valid.get(digest)
        return until is not None and until > time.monotonic()

"""Responses kept for Idempotency-Key headers, per API key, until they expire."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from domain.ports import IdempotencyClaim, StoredResponse
from persistence import tables as t
from persistence.database import Database
from persistence.repositories import upsert_insert

_K = t.idempotency_keys.c
# A claim whose request has not answered for this long is taken to be dead (its process
# crashed between claiming and storing the answer) and may be claimed again.
ABANDONED_AFTER = timedelta(minutes=5)


class IdempotencyKeyStore:
    """Claims keys and stores the answers of the requests that claimed them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(
        self, key_id: int, key: str, request_hash: str, now: datetime, expires_at: datetime
    ) -> IdempotencyClaim:
        values = {
            "api_key_id": key_id,
            "key": key,
            "request_hash": request_hash,
            "created_at": now,
            "expires_at": expires_at,
        }
        mine = (_K.api_key_id == key_id) & (_K.key == key)
        async with self.db.uow() as uow:
            conn = uow.conn
            stmt = upsert_insert(conn)(t.idempotency_keys).values(**values)
            # On PostgreSQL a concurrent claim of the same key waits here for the first to commit.
            if (await conn.execute(stmt.on_conflict_do_nothing())).rowcount:
                await uow.commit()
                return IdempotencyClaim(owned=True)
            row = (await conn.execute(select(t.idempotency_keys).where(mine))).one()
            expired = row.expires_at <= now
            abandoned = row.response_status is None and row.created_at <= now - ABANDONED_AFTER
            if expired or (abandoned and row.request_hash == request_hash):
                await conn.execute(
                    update(t.idempotency_keys)
                    .where(mine)
                    .values(**values, response_status=None, content_type=None, body=None)
                )
                await uow.commit()
                return IdempotencyClaim(owned=True)
        if row.request_hash != request_hash:
            return IdempotencyClaim(owned=False, same_request=False)
        if row.response_status is None:
            return IdempotencyClaim(owned=False)
        response = StoredResponse(row.response_status, row.content_type or "", bytes(row.body))
        return IdempotencyClaim(owned=False, response=response)

    async def complete(self, key_id: int, key: str, response: StoredResponse) -> None:
        async with self.db.uow() as uow:
            await uow.conn.execute(
                update(t.idempotency_keys)
                .where(_K.api_key_id == key_id, _K.key == key)
                .values(
                    response_status=response.status,
                    content_type=response.content_type,
                    body=response.body,
                )
            )
            await uow.commit()

    async def release(self, key_id: int, key: str) -> None:
        async with self.db.uow() as uow:
            await uow.conn.execute(
                delete(t.idempotency_keys).where(
                    _K.api_key_id == key_id, _K.key == key, _K.response_status.is_(None)
                )
            )
            await uow.commit()

    async def purge(self, now: datetime) -> int:
        async with self.db.uow() as uow:
            done = await uow.conn.execute(delete(t.idempotency_keys).where(_K.expires_at <= now))
            await uow.commit()
        return int(done.rowcount or 0)

"""SQLite's one-hop cursor (persistence/sqlite_driver.py): DBAPI behaviour SQLAlchemy relies on,
and one thread hand-over per statement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.database import Database
from persistence.sqlite_driver import DRIVER

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with db.write_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield db.write_engine
    await db.dispose()


async def test_the_database_uses_the_one_hop_dialect(engine: AsyncEngine) -> None:
    assert engine.dialect.driver == DRIVER
    assert engine.url.drivername == f"sqlite+{DRIVER}"


async def test_rows_counts_and_ids(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await conn.execute(insert(things).values(name="a"))
        assert first.inserted_primary_key == (1,)
        many = await conn.execute(insert(things), [{"name": "b"}, {"name": "c"}, {"name": "d"}])
        assert many.rowcount == 3
        returned = await conn.execute(insert(things).values(name="e").returning(things.c.id))
        assert returned.scalar_one() == 5
        changed = await conn.execute(
            update(things).where(things.c.id > 2).values(name=things.c.name + "!")
        )
        assert changed.rowcount == 3
        rows = (await conn.execute(select(things).order_by(things.c.id))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c!"), (4, "d!"), (5, "e!")]
        assert rows[0].name == "a"
        none = await conn.execute(select(things).where(things.c.id == 99))
        assert none.first() is None
        assert (await conn.execute(text("SELECT count(*) FROM things"))).scalar() == 5
        chunks = await conn.execute(select(things.c.id).order_by(things.c.id))
        assert [r.id for r in chunks.fetchmany(2)] == [1, 2]
        assert [r.id for r in chunks.fetchall()] == [3, 4, 5]
        streamed = await conn.stream(select(things.c.id).order_by(things.c.id))
        assert [r.id async for r in streamed] == [1, 2, 3, 4, 5]


async def test_errors_are_sqlalchemys_and_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(things).values(name="x"))
            await conn.execute(insert(things).values(name="x"))
    with pytest.raises(OperationalError):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT nothing FROM nowhere"))
    async with engine.connect() as conn:
        assert (await conn.execute(select(things))).all() == []


async def test_one_thread_hand_over_per_statement(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    original = aiosqlite.Connection._execute

    async def counting(
        self: aiosqlite.Connection, fn: object, *args: object, **kw: object
    ) -> object:
        nonlocal calls
        calls += 1
        return await original(self, fn, *args, **kw)

    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the connection is set up
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
        await conn.execute(insert(things).values(name="one"))
        await conn.execute(select(things))
        await conn.execute(update(things).values(name="two"))
        assert calls == 3

"""Which database errors mean "cannot be reached" (SERVICE_UNAVAILABLE) and which do not."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from domain.errors import ServiceUnavailable
from persistence.database import Database
from persistence.faults import is_unavailable


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        _wrapped(Exception("connection was closed in the middle of operation"), invalidated=True),
        _wrapped(_PgError("57P03")),  # the database system is starting up
        _wrapped(_PgError("57P01")),  # terminating connection due to administrator command
        _wrapped(_PgError("08006")),  # connection failure
        _wrapped(_PgError("53300")),  # too many connections
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
    ],
)
def test_connection_failures_are_unavailability(error: BaseException) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.IntegrityError("INSERT", None, _PgError("23505")),  # unique violation
        _wrapped(_PgError("40P01")),  # deadlock: retry the transaction, not "the DB is down"
        sa_exc.OperationalError("BEGIN", None, sqlite3.OperationalError("database is locked")),
        ValueError("bad input"),
    ],
)
def test_other_errors_are_not(error: BaseException) -> None:
    assert not is_unavailable(error)


async def test_an_unreachable_database_raises_service_unavailable() -> None:
    # Port 1 on localhost: nothing listens there, the connect is refused at once.
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    with pytest.raises(ServiceUnavailable):
        async with db.read() as r:
            await r.conn.execute(text("SELECT 1"))
    with pytest.raises(ServiceUnavailable):
        async with db.uow():
            pass
    await db.dispose()


async def test_statement_errors_pass_through_unchanged(database_url: str) -> None:
    db = Database(database_url)
    with pytest.raises(sa_exc.DBAPIError) as raised:
        async with db.read() as r:
            await r.conn.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(raised.value, ServiceUnavailable)
    with pytest.raises(sa_exc.DBAPIError):
        async with db.uow() as uow:
            await uow.conn.execute(text("SELECT * FROM no_such_table"))
    await db.dispose()

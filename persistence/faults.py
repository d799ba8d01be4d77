"""Telling "the database cannot be reached" apart from every other database error."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# SQLSTATE classes meaning the server is gone or not accepting work: 08 connection exception,
# 57P01-57P03 admin/crash shutdown and "cannot connect now" (starting up, recovering),
# 53 insufficient resources (e.g. too many connections).
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53")


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the database could not be reached.

    Covers a refused or timed-out connect, a connection cut mid-statement (SQLAlchemy marks it
    `connection_invalidated`), a server shutting down or starting up, and a pool that could not
    hand out a connection in time. Constraint violations, SQLite's busy timeout and other
    errors about the statement itself are not unavailability.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.TimeoutError | sa_exc.InterfaceError):
            return True  # pool checkout timed out; the driver's connection is unusable
        if isinstance(current, OSError | TimeoutError):
            return True  # refused, reset, unreachable; a connect timeout
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        orig = current.orig if isinstance(current, sa_exc.DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False

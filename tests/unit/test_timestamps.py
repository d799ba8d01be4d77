"""SQLite timestamps read back as aware UTC datetimes, whatever text SQLite hands over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from persistence.tables import UTCDateTime


def _reference(value: str) -> datetime:
    """The plain way: parse, then UTC for naive text and conversion for text with an offset."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24 20:00:00.123456",  # what we store
        "2026-11-24 20:00:00",  # SQL's CURRENT_TIMESTAMP
        "2026-11-24T20:00:00.5",
        "1999-12-31 23:59:59.999999",
        "2026-11-24 20:00:00+02:00",  # text with an offset of its own
        "2026-11-24T20:00:00.123456-05:30",
        "2026-11-24T20:00:00Z",
        "2026-11-24",  # a date alone
    ],
)
def test_sqlite_result_processor_matches_the_plain_parse(text: str) -> None:
    process = UTCDateTime().result_processor(sqlite.dialect(), None)
    got = process(text)
    expected = _reference(text)
    assert got == expected
    assert got.tzinfo is UTC
    assert got.isoformat() == expected.isoformat()


def test_sqlite_result_processor_null_and_round_trip() -> None:
    dialect = sqlite.dialect()
    column = UTCDateTime()
    process = column.result_processor(dialect, None)
    assert process(None) is None
    when = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=timezone(timedelta(hours=3)))
    stored = column.process_bind_param(when, dialect)
    assert stored is not None and stored.tzinfo is None
    assert process(str(stored)) == when
    with pytest.raises(ValueError):
        process("not a time")

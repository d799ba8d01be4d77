"""domain.pagination: opaque cursors and page requests."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Page,
    PageRequest,
    decode_cursor,
    encode_cursor,
    page_request,
)

_offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
# What lists sort by: instants (stored in UTC, so within years 1 to 9999 there), 64-bit
# integers, finite floats.
_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | _offsets
)
_int64 = st.integers(-(2**63), 2**63 - 1)
_sort_values = st.one_of(
    st.none(), _int64, st.floats(allow_nan=False, allow_infinity=False), _datetimes
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@settings(database=None)
@given(_sort_values, _int64)
@example(0, 0)
@example(-1.5, 2**63 - 1)
@example(datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), 1)
@example(datetime(1, 1, 1, tzinfo=UTC), 1)
def test_cursor_round_trip(value: Any, id_: int) -> None:
    cursor = encode_cursor(value, id_)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", cursor), cursor  # URL-safe, unpadded
    decoded, decoded_id = decode_cursor(cursor)
    assert decoded_id == id_ and type(decoded_id) is int
    assert decoded == value
    assert type(decoded) is type(value)
    if isinstance(value, datetime):
        assert decoded.utcoffset() == timedelta(0)  # the same instant, in UTC


def test_different_rows_get_different_cursors() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    cursors = {encode_cursor(t, 1), encode_cursor(t, 2), encode_cursor(t.isoformat(), 1)}
    assert len(cursors) == 3


def test_an_integer_sort_value_stays_an_integer() -> None:
    assert decode_cursor(encode_cursor(3, 9)) == (3, 9)
    assert type(decode_cursor(encode_cursor(3, 9))[0]) is int
    assert type(decode_cursor(encode_cursor(3.0, 9))[0]) is float


GARBAGE = [
    "",
    "not a cursor",
    "!!!!",
    "====",
    "a",
    b64(b"not json"),
    b64(b"\xff\xfe\xfd"),
    b64(b"{}"),
    b64(b'{"t": "2024-01-01"}'),
    b64(b"[1]"),
    b64(b"[1, 2, 3]"),
    b64(b"7"),
    b64(b"null"),
    b64(b'"text"'),
    b64(b'["text", 1]'),
    b64(b"[[1], 1]"),
    b64(b'[1, "2"]'),
    b64(b"[1, 2.5]"),
    b64(b"[1, true]"),
    b64(b"[1, null]"),
    b64(b'[{"t": "yesterday"}, 1]'),
    b64(b'[{"t": 5}, 1]'),
    b64(b'[{"x": "2024-01-01"}, 1]'),
    b64(b'[{"t": "2024-01-01"}, "1"]'),
    # Made by hand: beyond what the databases hold, or not one instant.
    b64(b"[1, 100000000000000000000]"),
    b64(b"[100000000000000000000, 1]"),
    b64(b"[NaN, 1]"),
    b64(b'[{"t": "2020-01-01T00:00:00"}, 5]'),
    b64(b'[{"t": "0001-01-01T00:00:00+05:00"}, 5]'),
    b64(b'[{"t": "9999-12-31T23:59:59-05:00"}, 5]'),
]


@pytest.mark.parametrize("cursor", GARBAGE)
def test_garbage_cursors_are_invalid(cursor: str) -> None:
    with pytest.raises(Invalid) as info:
        decode_cursor(cursor)
    assert info.value.field == ["after"]
    assert info.value.code == "INVALID"
    assert "is not a valid cursor" in info.value.message


def test_the_error_quotes_a_long_cursor_only_in_part() -> None:
    cursor = "x" * 500
    with pytest.raises(Invalid) as info:
        decode_cursor(cursor)
    assert cursor[:64] in info.value.message
    assert cursor[:65] not in info.value.message


def test_a_deeply_nested_cursor_is_invalid_not_a_crash() -> None:
    # json.loads raises RecursionError (not a ValueError) on deep nesting; decode_cursor lets
    # it escape, so a crafted `after` argument becomes an internal error instead of INVALID.
    with pytest.raises(Invalid) as info:
        decode_cursor(b64(b"[" * 100_000))
    assert info.value.field == ["after"]


@settings(database=None)
@given(st.text(max_size=40))
def test_any_text_is_a_cursor_or_invalid(cursor: str) -> None:
    try:
        value, id_ = decode_cursor(cursor)
    except Invalid as e:
        assert e.field == ["after"]
        return
    assert isinstance(id_, int) and not isinstance(id_, bool)
    assert value is None or isinstance(value, int | float | datetime)


@settings(database=None)
@given(st.binary(max_size=40))
def test_any_encoded_bytes_are_a_cursor_or_invalid(raw: bytes) -> None:
    try:
        decode_cursor(b64(raw))
    except Invalid as e:
        assert e.field == ["after"]


# ---------------------------------------------------------------- page_request


def test_page_size_defaults_to_50() -> None:
    assert DEFAULT_PAGE_SIZE == 50
    assert page_request(None, None) == PageRequest(50, None)


@pytest.mark.parametrize("first", [0, 1, 50, MAX_PAGE_SIZE])
def test_page_sizes_within_bounds(first: int) -> None:
    assert page_request(first, None) == PageRequest(first, None)


@pytest.mark.parametrize("first", [MAX_PAGE_SIZE + 1, 10**9])
def test_page_sizes_above_the_cap_get_a_full_page(first: int) -> None:
    assert page_request(first, None) == PageRequest(MAX_PAGE_SIZE, None)


def test_a_negative_page_size_is_refused() -> None:
    with pytest.raises(Invalid) as info:
        page_request(-1, None)
    assert info.value.field == ["first"]


def test_page_size_cap_is_configurable() -> None:
    assert page_request(10, None, max_size=10).first == 10
    assert page_request(11, None, max_size=10).first == 10
    assert page_request(None, None, max_size=10).first == 10  # the default page, capped


def test_page_request_decodes_after() -> None:
    t = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert page_request(20, encode_cursor(t, 42)) == PageRequest(20, (t, 42))


def test_empty_after_means_the_first_page() -> None:
    assert page_request(20, "").after is None


def test_bad_after_is_invalid() -> None:
    with pytest.raises(Invalid) as info:
        page_request(20, "garbage")
    assert info.value.field == ["after"]


# ---------------------------------------------------------------- Page


def test_page_cursors() -> None:
    t = datetime(2024, 5, 1, tzinfo=UTC)
    page = Page(items=["a", "b"], keys=[(t, 1), (t, 2)], has_next=True)
    assert page.cursor(0) == encode_cursor(t, 1)
    assert page.end_cursor == encode_cursor(t, 2)
    assert decode_cursor(page.end_cursor) == (t, 2)
    assert Page(items=[], keys=[], has_next=False).end_cursor is None

"""Keyset pagination: opaque cursors over (sort value, id)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from domain.errors import Invalid

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
# json.dumps with separators builds a new encoder per call; a cursor per page makes that show.
_COMPACT = json.JSONEncoder(separators=(",", ":"))
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class PageRequest:
    first: int
    after: tuple[Any, int] | None = None


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    keys: list[tuple[Any, int]]  # (sort value, id) of each item; cursors are made on demand
    has_next: bool

    def cursor(self, index: int) -> str:
        return encode_cursor(*self.keys[index])

    @property
    def end_cursor(self) -> str | None:
        return encode_cursor(*self.keys[-1]) if self.keys else None


def encode_cursor(value: Any, id_: int) -> str:
    """An opaque cursor for the row with sort value `value` and primary key `id_`."""
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = _COMPACT.encode([value, id_]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    """The (sort value, id) a cursor stands for; Invalid when it was not made by us."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, id_ = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if isinstance(value, dict):
            value = cursor_time(value["t"])
        if not is_int64(id_):
            raise ValueError
        if isinstance(value, bool) or not (
            value is None or is_int64(value) or isinstance(value, float | datetime)
        ):
            raise ValueError
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
        return value, id_
    except (
        ValueError,
        TypeError,
        KeyError,
        RecursionError,
        OverflowError,
        binascii.Error,
        UnicodeDecodeError,
    ):
        raise Invalid(f"'{cursor[:64]}' is not a valid cursor", ["after"]) from None


def is_int64(value: Any) -> bool:
    """Whether a decoded value is an integer the databases can hold (a signed 64-bit one)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def cursor_time(text: Any) -> datetime:
    """A cursor's moment: ISO 8601 with a timezone, in UTC (ValueError or OverflowError when
    it is not one, or out of range in UTC)."""
    if not isinstance(text, str):
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(text)
    return moment.astimezone(UTC)


def page_size(first: int | None, max_size: int = MAX_PAGE_SIZE) -> int:
    """The size of the page `first` asks for: DEFAULT_PAGE_SIZE when not given, capped at
    `max_size` (a larger `first` gets a full page, as Relay clients expect); Invalid when
    negative."""
    if first is None:
        return min(DEFAULT_PAGE_SIZE, max_size)
    if first < 0:
        raise Invalid(f"first must be 0 or more, got {first}", ["first"])
    return min(first, max_size)


def page_request(
    first: int | None, after: str | None, max_size: int = MAX_PAGE_SIZE
) -> PageRequest:
    """The page size `first` asks for (see page_size) and the decoded `after`."""
    return PageRequest(page_size(first, max_size), decode_cursor(after) if after else None)

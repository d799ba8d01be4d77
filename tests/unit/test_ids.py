"""Global IDs are base64 of "Type:pk" and decode back."""

from __future__ import annotations

import base64

import pytest

from api.ids import NODE_TYPES, from_global_id, to_global_id
from domain.errors import Invalid


@pytest.mark.parametrize("pk", [1, 42, 123_456_789, 2**63 - 1])
def test_global_id_is_the_base64_of_type_and_key(pk: int) -> None:
    for type_name in sorted(NODE_TYPES):
        gid = to_global_id(type_name, pk)
        assert gid == base64.b64encode(f"{type_name}:{pk}".encode()).decode()
        assert from_global_id(gid) == (type_name, pk)


@pytest.mark.parametrize(
    "raw",
    [b"Lead: 1", b"Lead:+1", b"Lead:01", b"Lead:1_0", b"Lead:\xd9\xa1", b"Lead:1 "],
)
def test_one_record_has_one_id(raw: bytes) -> None:
    """What int() would take besides the digits to_global_id writes is not an ID."""
    with pytest.raises(Invalid):
        from_global_id(base64.b64encode(raw).decode())


def test_extra_padding_is_not_another_id() -> None:
    assert from_global_id("TGVhZDox") == ("Lead", 1)
    with pytest.raises(Invalid):
        from_global_id("TGVhZDox===")

"""Global IDs are base64 of "Type:pk" and decode back."""

from __future__ import annotations

import base64

import pytest

from api.ids import NODE_TYPES, from_global_id, to_global_id


@pytest.mark.parametrize("pk", [1, 42, 123_456_789, 2**63 - 1])
def test_global_id_is_the_base64_of_type_and_key(pk: int) -> None:
    for type_name in sorted(NODE_TYPES):
        gid = to_global_id(type_name, pk)
        assert gid == base64.b64encode(f"{type_name}:{pk}".encode()).decode()
        assert from_global_id(gid) == (type_name, pk)

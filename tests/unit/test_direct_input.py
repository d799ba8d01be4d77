"""api.execution.direct_input builds input objects exactly as Strawberry's conversion does."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from graphql import coerce_input_value
from strawberry.scalars import JSON
from strawberry.types.arguments import convert_argument

from api.execution import direct_input
from api.graphql import build_schema
from api.scoring import RecordInteractionInput
from api.settings import Settings
from domain.scoring import InteractionType


@strawberry.enum
class Color(enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


@strawberry.input
class Inner:
    color: Color
    tags: list[str] | None = None


@strawberry.input
class Outer:
    name: str
    inner: Inner | None = None
    inners: list[Inner] | None = None
    colors: list[Color] | None = None
    payload: JSON | None = None
    key: strawberry.ID | None = None
    maybe: strawberry.Maybe[str | None] = None


def _both(cls: type, value: dict[str, Any]) -> tuple[Any, Any]:
    schema = build_schema(Settings())
    registry = schema.schema_converter.scalar_registry
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    fast = definition.from_input
    assert fast is not None
    definition.from_input = None
    try:
        slow = convert_argument(value, cls, registry, schema.config)
    finally:
        definition.from_input = fast
    return convert_argument(value, cls, registry, schema.config), slow


@pytest.mark.parametrize(
    "value",
    [
        {"type": "PAGE_VISITED", "contactId": "Q29udGFjdDox", "properties": {"url": "/a"}},
        {
            "type": "CUSTOM",
            "contactEmail": "a@example.com",
            "name": "trial",
            "occurredAt": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "properties": {"n": [1, 2.5, None, {"x": True}]},
            "idempotencyKey": "k-1",
        },
        {
            "type": "EMAIL_SENT",
            "contactId": None,
            "contactEmail": None,
            "name": None,
            "occurredAt": None,
            "properties": None,
            "idempotencyKey": None,
        },
    ],
)
def test_record_interaction_input_is_what_strawberry_builds(value: dict[str, Any]) -> None:
    # What graphql-core hands to the resolver (enum names become members, scalars parsed).
    input_type = build_schema(Settings())._schema.type_map["RecordInteractionInput"]
    raw = {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in value.items()
        if not (k == "type" and v is None)
    }
    coerced = coerce_input_value(raw, input_type)
    fast, slow = _both(RecordInteractionInput, coerced)
    assert fast == slow
    assert fast.type is InteractionType[value["type"]]
    assert fast.occurred_at == value.get("occurredAt")


def test_other_fields_go_through_strawberry() -> None:
    direct_input(Outer)
    value = {
        "name": "n",
        "inner": {"color": Color.RED, "tags": ["a"]},
        "inners": [{"color": Color.BLUE}, {"color": Color.RED, "tags": None}],
        "colors": [Color.RED, Color.BLUE],
        "payload": {"deep": [1]},
        "key": "abc",
        "maybe": None,
    }
    fast, slow = _both(Outer, value)
    assert fast == slow
    assert fast.inner == Inner(color=Color.RED, tags=["a"])
    assert fast.colors == [Color.RED, Color.BLUE]
    fast, slow = _both(Outer, {"name": "only"})
    assert fast == slow

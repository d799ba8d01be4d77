"""A long-lived subscription keeps no memory per event delivered (found by bench/soak.py)."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator

import strawberry
from graphql.execution.collect_fields import CollectedFields

from api.execution import FastLeafExecutionContext


@strawberry.type
class Item:
    id: int
    name: str


@strawberry.type
class Query:
    unused: int = 0


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def items(self, count: int) -> AsyncGenerator[Item, None]:
        for i in range(count):
            yield Item(id=i, name=f"item {i}")


def _live_collected_fields() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, CollectedFields))


async def test_events_of_one_subscription_leave_nothing_behind() -> None:
    schema = strawberry.Schema(
        query=Query, subscription=Subscription, execution_context_class=FastLeafExecutionContext
    )
    stream = await schema.subscribe("subscription { items(count: 600) { id name } }")
    assert not isinstance(stream, strawberry.types.ExecutionResult)
    seen: dict[int, int] = {}
    async for result in stream:
        assert result.errors is None
        item_id = result.data["items"]["id"]  # type: ignore[index]
        if item_id in (100, 599):
            seen[item_id] = _live_collected_fields()
    # graphql-core shares one memo across a subscription's events and adds an entry per
    # event: 500 more events would leave 500 more entries.
    assert seen[599] <= seen[100]

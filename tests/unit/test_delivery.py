"""Shared delivery (api/delivery.py) with a fake event table and fake connections.

Members are driven the way the WebSocket handler drives them (`Hub.follow`), writing WebSocket
frames into fake transports that parse them back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson

from api.context import Services
from api.delivery import SLOW_BYTES, Hub, Member, Shape, shape, text_frame
from api.fanout import FanOut
from api.graphql import build_schema
from domain.auth import Principal
from domain.roles import Role
from tests.unit.test_fanout import FakeReads, FakeTable, publish, started

DOC = "subscription($types: [LeadEventType!], $after: String) { leadEvents(types: $types, after: $after) { cursor type } }"
VIEWER = Principal(key_id=1, name="viewer", role=Role.VIEWER)
ADMIN = Principal(key_id=2, name="admin", role=Role.ADMIN)


class FakeTransport(asyncio.WriteTransport):
    """Collects written frames; `backlog` plays the bytes the client has not read yet."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.backlog = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closed

    def messages(self) -> list[dict[str, Any]]:
        out, pos = [], 0
        while pos < len(self.data):
            assert self.data[pos] == 0x81  # one final text frame each
            n, start = self.data[pos + 1], pos + 2
            if n == 126:
                n, start = int.from_bytes(self.data[pos + 2 : pos + 4], "big"), pos + 4
            out.append(orjson.loads(self.data[start : start + n]))
            pos = start + n
        return out


def positions(transport: FakeTransport) -> list[int]:
    from domain.events import decode_event_cursor

    return [
        decode_event_cursor(m["payload"]["data"]["leadEvents"]["cursor"])
        for m in transport.messages()
    ]


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(3):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@asynccontextmanager
async def hub_on(table: FakeTable, **kw: Any) -> AsyncIterator[tuple[Hub, FanOut]]:
    fanout = await started(table, **kw)
    services = Services(uow=None, reads=FakeReads(table))  # type: ignore[arg-type]
    hub = Hub(build_schema(), services, fanout)
    try:
        yield hub, fanout
    finally:
        for group in list(hub.groups.values()):
            group.task.cancel()
        await fanout.stop()


class Client:
    """One subscription on a fake connection, followed by a task like the handler's."""

    def __init__(
        self,
        hub: Hub,
        variables: dict[str, Any] | None = None,
        principal: Principal = VIEWER,
        after: int | None = None,
        operation_id: str = "1",
    ) -> None:
        self.transport = FakeTransport()
        self.member = Member(operation_id, self.transport, lambda: not self.transport.closed)
        types = (variables or {}).get("types")
        self.group = hub.acquire(
            (DOC, variables, None), Shape("after"), principal, frozenset(types) if types else None
        )
        self.hub = hub
        self.task = asyncio.ensure_future(self._run(after))

    async def _run(self, after: int | None) -> None:
        try:
            await self.hub.follow(self.group, self.member, after, self._unused_send)
        finally:
            self.hub.release(self.group)

    @staticmethod
    async def _unused_send(message: bytes) -> None:
        raise AssertionError("members with a transport never send through the ASGI socket")

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_one_execution_per_event_for_a_thousand_members() -> None:
    table = FakeTable()
    async with hub_on(table) as (hub, fanout):
        clients = [Client(hub, operation_id=str(i % 3)) for i in range(1000)]
        await asyncio.sleep(0)
        assert len(hub.groups) == 1
        (group,) = hub.groups.values()
        executions = 0
        encode = group.encode

        async def counting(event: Any) -> bytes:
            nonlocal executions
            executions += 1
            return await encode(event)

        group.encode = counting  # type: ignore[method-assign]
        await publish(fanout, table, 3)
        await until(lambda: all(len(c.transport.messages()) == 3 for c in clients))
        assert executions == 3
        for i, c in enumerate(clients):
            assert positions(c.transport) == [1, 2, 3]
            assert {m["id"] for m in c.transport.messages()} == {str(i % 3)}
            assert {m["type"] for m in c.transport.messages()} == {"next"}
        for c in clients:
            await c.close()
        assert hub.groups == {}
        assert fanout.subscribers == 0


async def test_different_variables_and_roles_get_their_own_groups_and_payloads() -> None:
    table = FakeTable()
    async with hub_on(table) as (hub, fanout):
        created = Client(hub, {"types": ["CREATED"]})
        ready = Client(hub, {"types": ["SALES_READY"]})
        everything = Client(hub, {"types": None})
        admin = Client(hub, {"types": None}, principal=ADMIN)
        same_as_created = Client(hub, {"types": ["CREATED"], "after": None})  # `after` aside
        await asyncio.sleep(0)
        assert len(hub.groups) == 4
        await publish(fanout, table, 2, "CREATED")
        await publish(fanout, table, 1, "SALES_READY")
        await until(lambda: len(everything.transport.messages()) == 3)
        await until(lambda: len(admin.transport.messages()) == 3)
        await until(lambda: len(ready.transport.messages()) == 1)
        await until(lambda: len(same_as_created.transport.messages()) == 2)
        assert positions(created.transport) == [1, 2]
        assert positions(ready.transport) == [3]
        assert positions(everything.transport) == positions(admin.transport) == [1, 2, 3]
        assert created.transport.data == same_as_created.transport.data
        types = [m["payload"]["data"]["leadEvents"]["type"] for m in ready.transport.messages()]
        assert types == ["SALES_READY"]
        for c in (created, ready, everything, admin, same_as_created):
            await c.close()


async def test_a_member_that_disconnects_does_not_disturb_the_others() -> None:
    table = FakeTable()
    async with hub_on(table) as (hub, fanout):
        a, b, c = Client(hub), Client(hub), Client(hub)
        await asyncio.sleep(0)
        await publish(fanout, table, 1)
        await until(lambda: all(len(x.transport.messages()) == 1 for x in (a, b, c)))
        b.transport.closed = True  # the connection went away; its task is not even cancelled
        await publish(fanout, table, 2)
        await until(lambda: len(a.transport.messages()) == 3 and len(c.transport.messages()) == 3)
        await until(lambda: b.task.done())
        assert positions(b.transport) == [1]
        (group,) = hub.groups.values()
        assert b.member not in group.members
        await publish(fanout, table, 1)
        await until(lambda: positions(a.transport) == positions(c.transport) == [1, 2, 3, 4])
        await a.close()
        await c.close()


async def test_a_slow_member_is_taken_out_and_catches_up_from_the_table() -> None:
    table = FakeTable()
    async with hub_on(table, batch=5) as (hub, fanout):
        slow, fast = Client(hub), Client(hub)
        await asyncio.sleep(0)
        await publish(fanout, table, 2)
        await until(lambda: len(slow.transport.messages()) == 2)
        slow.transport.backlog = SLOW_BYTES + 1  # its client stopped reading
        for _ in range(10):
            await publish(fanout, table, 5)
            await asyncio.sleep(0.005)
        await until(lambda: len(fast.transport.messages()) == 52)
        assert positions(fast.transport) == list(range(1, 53))  # never held up
        assert positions(slow.transport) == [1, 2]  # nothing written while it is too full
        (group,) = hub.groups.values()
        assert slow.member not in group.members
        slow.transport.backlog = 0  # drained: it catches up by itself, then joins again
        await until(lambda: len(slow.transport.messages()) == 52)
        await publish(fanout, table, 3)
        await until(lambda: len(slow.transport.messages()) == 55)
        await until(lambda: len(fast.transport.messages()) == 55)
        assert positions(slow.transport) == positions(fast.transport) == list(range(1, 56))
        assert slow.member in group.members
        await slow.close()
        await fast.close()


async def test_replay_after_a_cursor_then_join_without_gap_or_duplicate() -> None:
    table = FakeTable()
    table.add(300)  # more than the group's history and more than a page
    async with hub_on(table, page=100) as (hub, fanout):
        live = Client(hub)
        await asyncio.sleep(0)
        replaying = Client(hub, after=10)
        for _ in range(20):  # events keep coming while it replays
            await publish(fanout, table, 3)
            await asyncio.sleep(0)
        await until(lambda: len(replaying.transport.messages()) == 350)
        await until(lambda: len(live.transport.messages()) == 60)
        assert positions(replaying.transport) == list(range(11, 361))
        assert positions(live.transport) == list(range(301, 361))
        (group,) = hub.groups.values()
        assert replaying.member in group.members
        await live.close()
        await replaying.close()


async def test_a_member_without_a_transport_gets_its_frames_through_the_socket() -> None:
    table = FakeTable()
    async with hub_on(table) as (hub, fanout):
        sent: list[bytes] = []

        async def send(message: bytes) -> None:
            sent.append(message)

        member = Member("7", None, lambda: True)
        group = hub.acquire((DOC, None, None), Shape("after"), VIEWER, None)
        task = asyncio.ensure_future(hub.follow(group, member, None, send))
        await asyncio.sleep(0)
        await publish(fanout, table, 2)
        await until(lambda: len(sent) == 2)
        messages = [orjson.loads(m) for m in sent]
        assert [m["id"] for m in messages] == ["7", "7"]
        assert [m["payload"]["data"]["leadEvents"]["type"] for m in messages] == ["CREATED"] * 2
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        hub.release(group)
        assert hub.groups == {}


def test_shape_accepts_only_one_lead_event_root_field() -> None:
    assert shape(DOC, None) == Shape("after")
    assert shape("subscription { leadQualificationChanged { cursor } }", None) == Shape(None)
    # $after used elsewhere too: it must stay part of the group's key.
    twice = (
        "subscription($after: String) { leadEvents(after: $after) "
        "{ lead { timeline(after: $after) { edges { cursor } } } } }"
    )
    assert shape(twice, None) == Shape(None)
    assert (
        shape("subscription { leadEvents { cursor } leadQualificationChanged { cursor } }", None)
        is None
    )
    assert shape("query { leadEvents { edges { cursor } } }", None) is None
    assert (
        shape("subscription { ...F } fragment F on Subscription { leadEvents { cursor } }", None)
        is None
    )
    assert shape("subscription {", None) is None


def test_text_frame_lengths() -> None:
    for n in (0, 125, 126, 65535, 65536):
        frame = text_frame(b"x" * n)
        assert frame[0] == 0x81
        assert len(frame) == n + (2 if n < 126 else 4 if n < 65536 else 10)

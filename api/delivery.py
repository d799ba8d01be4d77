"""Shared delivery of lead-event subscriptions: one execution and one frame per event per group.

Subscribers of `leadEvents` / `leadQualificationChanged` with the same document, operation
name, variables (`after` aside) and role form a **group**. The group follows the fan-out once
(api/fanout.py `Follower`), executes the document once per event with the event as root value,
encodes the result once, and writes the same bytes to every member's connection: only the
operation id of the graphql-transport-ws `next` message differs, and the frames are cached per
id within a batch. Events that arrive together (one fan-out batch) go out in one write per
member.

Fields reachable from a LeadEvent depend on the role only (never on the key's name or id), so a
group runs its executions as its first member's principal.

A member that replays (`after` older than what its group has delivered) first catches up on its
own, from the table, and joins the group when its cursor reaches what the group still holds in
its short history; from then on the group writes to it. Positions decide: a member never gets
an event twice nor misses one.

Slow members: the group writes without waiting. A member whose connection already holds more
than `SLOW_BYTES` unsent bytes (the client does not read) is taken out of the group before the
next write, so its buffer stays bounded; when its connection has drained, it catches up from
the table by its cursor and joins again, like a replaying member. Nothing is lost or sent twice,
and the others are never held up.

Writes go straight to the connection's transport as WebSocket text frames (uvicorn's protocols
write whole frames synchronously, so frames never interleave). Where no transport can be found
(another server, a test client), each member's task sends its frames through the ASGI
WebSocket instead, with the same bounded queue and slow-member rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    parse,
    visit,
)
from graphql.language import Visitor
from starlette.websockets import WebSocket, WebSocketState
from strawberry.types.graphql import OperationType as StrawberryOperationType
from strawberry.utils.aio import aclosing

from api.context import Context, Services
from api.fanout import FanOut, Follower
from api.idempotency import ANALYSIS_MAX_TOKENS, cached_when_short
from domain.auth import Principal
from domain.events import LeadEvent

log = logging.getLogger("leadflow.events")

SHARED_FIELDS = frozenset({"leadEvents", "leadQualificationChanged"})
SLOW_BYTES = 256 * 1024  # unsent bytes on a connection before its member is taken out
SLOW_FRAMES = 1000  # queued frames of a member without a transport before it is taken out
HISTORY = 256  # recent events a group keeps for members joining from a slightly older cursor
_SUBSCRIPTION = (StrawberryOperationType.SUBSCRIPTION,)

Entry = tuple[int, bytes]  # (position, encoded `payload` of the next message)


@dataclass(frozen=True, slots=True)
class Shape:
    """What makes a subscription shareable: its root field, and the `after` variable if any."""

    after_variable: str | None  # a variable used only as the root field's `after`


class _VariableCounter(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.uses: dict[str, int] = {}

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.uses[node.name.value] = self.uses.get(node.name.value, 0) + 1


@cached_when_short
def shape(query: str, operation_name: str | None) -> Shape | None:
    """The shape of a shareable subscription document; None for anything else."""
    try:
        document: DocumentNode = parse(query, max_tokens=ANALYSIS_MAX_TOKENS)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or len(document.definitions) != 1:
        return None  # fragments, several operations: the ordinary path
    operation = operations[0]
    if operation.operation != OperationType.SUBSCRIPTION or operation.directives:
        return None
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    root = selections[0]
    if root.name.value not in SHARED_FIELDS or root.directives:
        return None
    counter = _VariableCounter()
    # Variable definitions name each variable once more; count uses only.
    for definition in operation.variable_definitions or ():
        counter.uses[definition.variable.name.value] = -1
    visit(document, counter)
    after = None
    for argument in root.arguments or ():
        value = argument.value
        if (
            argument.name.value == "after"
            and isinstance(value, VariableNode)
            and counter.uses.get(value.name.value) == 1
        ):
            after = value.name.value
    return Shape(after)


def text_frame(message: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (server to client) carrying `message`."""
    n = len(message)
    if n < 126:
        return bytes((0x81, n)) + message
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + message
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + message


def next_message(operation_id: str, payload: bytes) -> bytes:
    return b'{"id":' + orjson.dumps(operation_id) + b',"type":"next","payload":' + payload + b"}"


def _is_transport(candidate: Any) -> bool:
    """A stream transport: asyncio's, or uvloop's (which is none of asyncio's classes)."""
    return all(
        callable(getattr(candidate, name, None))
        for name in ("write", "get_write_buffer_size", "is_closing")
    )


def find_transport(send: Callable[..., Any]) -> asyncio.WriteTransport | None:
    """The transport under an ASGI `send` (uvicorn's protocol, behind Starlette's wrappers)."""
    todo: list[Any] = [send]
    for _ in range(8):
        if not todo:
            return None
        fn = todo.pop()
        transport = getattr(getattr(fn, "__self__", None), "transport", None)
        if _is_transport(transport):
            return cast(asyncio.WriteTransport, transport)
        for cell in getattr(fn, "__closure__", None) or ():
            with contextlib.suppress(ValueError):
                if callable(cell.cell_contents):
                    todo.append(cell.cell_contents)
    return None


class Member:
    """One subscription (one operation id on one connection) of a group."""

    __slots__ = (
        "connected",
        "cursor",
        "id",
        "queue",
        "skip_until",
        "transport",
        "wake",
    )

    def __init__(
        self,
        operation_id: str,
        transport: asyncio.WriteTransport | None,
        connected: Callable[[], bool],
    ) -> None:
        self.id = operation_id
        self.transport = transport
        self.connected = connected
        self.cursor = 0  # every event up to here was written (or is not for this member)
        self.skip_until = 0  # events up to here are not for it (it joined after them)
        self.queue: deque[bytes] = deque()  # messages to send, without a transport
        self.wake = asyncio.Event()  # frames queued, or taken out of its group

    def slow(self) -> bool:
        if self.transport is not None:
            return self.transport.get_write_buffer_size() > SLOW_BYTES
        return len(self.queue) > SLOW_FRAMES

    def write(self, entries: list[Entry], cache: dict[str, bytes] | None = None) -> None:
        """Write the `next` messages of these events (those after skip_until)."""
        if entries and entries[0][0] <= self.skip_until:
            entries = [e for e in entries if e[0] > self.skip_until]
            cache = None
        if not entries:
            return
        self.cursor = max(self.cursor, entries[-1][0])
        if self.transport is None:
            self.queue.extend(next_message(self.id, payload) for _, payload in entries)
            self.wake.set()
            return
        if self.transport.is_closing():
            return  # gone (uvloop raises on writes to a closed transport); its task ends it
        data = cache.get(self.id) if cache is not None else None
        if data is None:
            data = b"".join(text_frame(next_message(self.id, p)) for _, p in entries)
            if cache is not None:
                cache[self.id] = data
        self.transport.write(data)


class Group:
    """Members sharing one document, variables and role: one execution per event for all."""

    def __init__(
        self,
        hub: Hub,
        key: tuple[Any, ...],
        operation: tuple[str, dict[str, Any] | None, str | None],
        principal: Principal,
        types: Collection[str] | None,
    ) -> None:
        self.hub = hub
        self.key = key
        self.query, self.variables, self.operation_name = operation
        self.principal = principal
        self.types = types
        self.follower = Follower(hub.fanout, None, types)
        self.cursor = self.follower.cursor  # every event up to here went to every member
        self.history: deque[Entry] = deque()
        self.floor = self.cursor  # history holds every event of this group after `floor`
        self.members: dict[Member, None] = {}
        self.users = 0  # members, joined or catching up
        self.task = asyncio.create_task(self._run())

    async def encode(self, event: LeadEvent) -> bytes:
        """The `payload` of the next message for this event, as JSON."""
        context = Context(self.principal, self.hub.services)
        try:
            result = await self.hub.schema.execute(
                self.query,
                variable_values=self.variables,
                context_value=context,
                root_value=event,
                operation_name=self.operation_name,
                allowed_operation_types=_SUBSCRIPTION,
            )
        except Exception:  # the schema reports errors in its result; this is a bug
            log.exception("shared subscription execution failed")
            return orjson.dumps({"data": None, "errors": [{"message": "Unexpected error."}]})
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        if result.extensions:
            payload["extensions"] = result.extensions
        return orjson.dumps(payload)

    async def _run(self) -> None:
        while True:
            try:
                events = await self.follower.next_batch()
                entries = [(e.position, await self.encode(e)) for e in events]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shared subscription delivery failed; retrying")
                await asyncio.sleep(0.5)
                continue
            before, self.cursor = self.cursor, self.follower.cursor
            self._remember(entries)
            cache: dict[str, bytes] = {}
            for member in list(self.members):
                if not member.connected():
                    del self.members[member]
                    member.wake.set()
                elif member.slow():
                    self.take_out(member, before)
                else:
                    member.write(entries, cache)

    def _remember(self, entries: list[Entry]) -> None:
        self.history.extend(entries)
        while len(self.history) > HISTORY:
            self.floor = self.history.popleft()[0]

    def take_out(self, member: Member, cursor: int) -> None:
        """A slow member leaves; it catches up from `cursor` by itself when it can."""
        self.members.pop(member, None)
        member.cursor = max(member.cursor, member.skip_until, cursor)
        member.wake.set()

    def join(self, member: Member, cursor: int) -> bool:
        """Let a member that has every event up to `cursor` join, if the history allows."""
        if cursor < self.floor:
            return False
        if cursor < self.cursor:
            member.write([e for e in self.history if e[0] > cursor])
        # The batch being executed, if any, holds only events after self.cursor.
        member.skip_until = max(cursor, self.cursor)
        member.cursor = max(member.cursor, member.skip_until)
        self.members[member] = None
        return True

    def leave(self, member: Member) -> None:
        self.members.pop(member, None)


class Hub:
    """This process's groups, by (document, operation name, variables, role)."""

    def __init__(self, schema: Any, services: Services, fanout: FanOut) -> None:
        self.schema = schema
        self.services = services
        self.fanout = fanout
        self.groups: dict[tuple[Any, ...], Group] = {}

    def acquire(
        self,
        operation: tuple[str, dict[str, Any] | None, str | None],
        shape_: Shape,
        principal: Principal,
        types: Collection[str] | None,
    ) -> Group:
        query, variables, operation_name = operation
        shared = dict(variables or {})
        if shape_.after_variable is not None:
            shared.pop(shape_.after_variable, None)
        variables_key = orjson.dumps(shared, option=orjson.OPT_SORT_KEYS)
        key = (query, operation_name, variables_key, principal.role)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(self, key, operation, principal, types)
        group.users += 1
        return group

    def release(self, group: Group) -> None:
        group.users -= 1
        if group.users == 0 and self.groups.get(group.key) is group:
            del self.groups[group.key]
            group.task.cancel()
            group.follower.close()

    async def follow(
        self,
        group: Group,
        member: Member,
        after: int | None,
        send: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """Deliver to one member until cancelled: catch up, join, and again when taken out."""
        cursor = self.fanout.head if after is None else after
        try:
            while True:
                await self._join(group, member, cursor, send)
                # Joined: the group writes; wake up to send queued frames or when taken out.
                while member in group.members:
                    await member.wake.wait()
                    member.wake.clear()
                    await self._flush(member, send)
                if not member.connected():
                    return
                await self._flush(member, send)
                await self._drained(member)
                cursor = member.cursor
        finally:
            group.leave(member)

    async def _join(
        self,
        group: Group,
        member: Member,
        cursor: int,
        send: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """Deliver events after `cursor` to the member alone until it can join its group."""
        if group.join(member, cursor):
            return
        follower = Follower(self.fanout, cursor, group.types)
        try:
            while True:
                events = await follower.next_batch()
                member.write([(e.position, await group.encode(e)) for e in events])
                await self._flush(member, send)
                await self._drained(member)
                if group.join(member, follower.cursor):
                    return
        finally:
            follower.close()

    @staticmethod
    async def _flush(member: Member, send: Callable[[bytes], Awaitable[None]]) -> None:
        while member.queue:
            await send(member.queue.popleft())

    @staticmethod
    async def _drained(member: Member) -> None:
        """Wait until the member's connection has sent most of what it holds."""
        while member.transport is not None and member.connected():
            if member.transport.get_write_buffer_size() <= SLOW_BYTES // 4:
                return
            await asyncio.sleep(0.02)

    async def probe(
        self, principal: Principal, operation: tuple[str, dict[str, Any] | None, str | None]
    ) -> dict[str, Any] | None:
        """The subscription's checked arguments, or None when it has errors to report.

        The document goes through the ordinary machinery (parsing, validation, limits,
        variables, permission, `after`), with a context that makes the resolver record its
        arguments and stop. Anything it answers is an error that the ordinary path reports.
        """
        query, variables, operation_name = operation
        context = Context(principal, self.services, probe={})
        source = await self.schema.stream(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=operation_name,
            allowed_operation_types=_SUBSCRIPTION,
        )
        async with aclosing(source):
            async for _ in source:
                return None
        return context.probe if context.probe else None

    async def serve(
        self,
        principal: Principal,
        operation_id: str,
        operation: tuple[str, dict[str, Any] | None, str | None],
        websocket: WebSocket,
    ) -> bool:
        """Serve a subscription on the shared path until cancelled; False if it is not for it."""
        query, _, operation_name = operation
        shape_ = shape(query, operation_name)
        if shape_ is None:
            return False
        arguments = await self.probe(principal, operation)
        if arguments is None:
            return False
        transport = find_transport(websocket._send)

        def connected() -> bool:
            return (
                websocket.application_state is WebSocketState.CONNECTED
                and websocket.client_state is WebSocketState.CONNECTED
                and (transport is None or not transport.is_closing())
            )

        async def send(message: bytes) -> None:
            if connected():
                await websocket.send_text(message.decode())

        member = Member(operation_id, transport, connected)
        group = self.acquire(operation, shape_, principal, arguments["types"])
        try:
            await self.follow(group, member, arguments["after"], send)
        except Exception as e:  # the connection failed under the fallback sender: it is over
            log.debug("shared subscription %s ended: %r", operation_id, e)
        finally:
            self.release(group)
        return True

"""A lean graphql-transport-ws client for many subscribers, run in a process of its own.

The subscribers' side of bench/subscriptions.py: plain asyncio protocols that speak just enough
WebSocket (RFC 6455, no extensions) to subscribe and parse frames, so that the client's own
cost does not hide the server's. Each subscriber stamps a frame with the time its bytes
arrived (`time.perf_counter()`, CLOCK_MONOTONIC on Linux, the same clock in every process of
the machine) and records it by the frame's lead id.

`run(conn, ...)` is the process entry point: it connects, reports "ready" on the pipe, waits
for "stop" (or until everyone has every lead), and sends back each subscriber's times as an
array of doubles indexed like `leads` (NaN: not received), with the duplicate count and the
CPU seconds it used while measuring.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import math
import os
import resource
import time
from array import array
from multiprocessing.connection import Connection
from typing import Any

import orjson
import uvloop


def _masked(message: bytes, opcode: int = 0x1) -> bytes:
    """A client frame: clients must mask (RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(message)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(message))
    return header + mask + body


class Subscriber(asyncio.Protocol):
    def __init__(self, host: str, port: int, key: str, query: str, index: dict[str, int]) -> None:
        self.request = (
            f"GET /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
        self.key, self.query, self.index = key, query, index
        self.times = array("d", [math.nan]) * len(index)
        self.received = 0
        self.duplicates = 0
        self.buffer = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(_masked(orjson.dumps(message)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(buf[:200]).decode()))
                return
            del buf[: end + 4]
            self.upgraded = True
            self.send(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {self.key}"}}
            )
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size - start < n:
                break
            payload = buf[start : start + n]
            pos = start + n
            if opcode in (0x1, 0x2):  # Strawberry sends its own messages as binary
                self.on_message(orjson.loads(payload), now)
            elif opcode == 0x9:
                assert self.transport is not None
                self.transport.write(_masked(bytes(payload), 0xA))
            elif opcode == 0x8:
                self.error = f"closed by the server: {bytes(payload)!r}"
        del buf[:pos]

    def on_message(self, message: dict[str, Any], now: float) -> None:
        kind = message.get("type")
        if kind == "next":
            data = message["payload"]["data"]
            lead = next(iter(data.values()))["lead"]["id"]
            i = self.index[lead]
            if math.isnan(self.times[i]):
                self.times[i] = now
                self.received += 1
            else:
                self.duplicates += 1
        elif kind == "connection_ack":
            self.send({"id": "1", "type": "subscribe", "payload": {"query": self.query}})
            self.ready.set_result(None)
        elif kind == "ping":
            self.send({"type": "pong"})
        else:
            self.error = f"unexpected message {message}"


async def _main(
    conn: Connection, url: tuple[str, int], key: str, query: str, leads: list[str]
) -> None:
    host, port = url
    loop = asyncio.get_running_loop()
    index = {lead: i for i, lead in enumerate(leads)}
    count: int = conn.recv()
    subscribers: list[Subscriber] = []
    for i in range(count):
        _, protocol = await loop.create_connection(
            lambda: Subscriber(host, port, key, query, index), host, port
        )
        subscribers.append(protocol)
        if i % 200 == 199:
            await asyncio.gather(*(s.ready for s in subscribers))
    await asyncio.gather(*(s.ready for s in subscribers))
    conn.send("ready")
    # Wait for "go", then measure the CPU this process uses until everything arrived or "stop".
    await loop.run_in_executor(None, conn.recv)
    # The collector stays out of the measurement: a pause here would show as the server's
    # latency (frames are stamped when this process reads them). What is kept is small.
    gc.collect()
    gc.freeze()
    gc.disable()
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    want = len(leads)
    while not conn.poll():
        if all(s.received >= want for s in subscribers):
            break
        await asyncio.sleep(0.05)
    cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    errors = [s.error for s in subscribers if s.error][:3]
    conn.send(
        {
            "times": [s.times.tobytes() for s in subscribers],
            "duplicates": sum(s.duplicates for s in subscribers),
            "cpu": cpu,
            "wall": wall1 - wall0,
            "errors": errors,
        }
    )
    for s in subscribers:
        if s.transport is not None:
            s.transport.close()


def run(conn: Connection, url: tuple[str, int], key: str, query: str, leads: list[str]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # uvloop, as the server runs: the client's own per-socket cost is what this file keeps low.
    uvloop.run(_main(conn, url, key, query, leads))

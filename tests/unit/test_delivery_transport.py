"""Shared delivery writes frames straight to the connection's transport: it must find it.

uvicorn's WebSocket implementation (the one `auto` picks, and sansio by name; the legacy one is
deprecated), on the asyncio loop and on uvloop (whose
transports are none of asyncio's classes), in-process: the endpoint finds the transport under
Starlette's `send`, writes one frame by hand, then one through the ASGI socket, and the client
reads both in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
import uvloop
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.delivery import find_transport, text_frame

LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


async def _endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("through asgi")  # the handshake is out (legacy sends it late)
    transport = find_transport(websocket._send)
    if transport is None:
        await websocket.send_text("no transport")
    else:
        transport.write(text_frame(b"by hand"))
        await websocket.send_text("through asgi again")
    with contextlib.suppress(WebSocketDisconnect):
        await websocket.receive_text()  # until the client closes


async def _exchange(ws: str) -> list[str]:
    app = Starlette(routes=[WebSocketRoute("/", _endpoint)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws=ws, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag only)
                await asyncio.sleep(0.01)
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as client:
            received = [str(await asyncio.wait_for(client.recv(), 5)) for _ in range(2)]
            if received[-1] != "no transport":
                received.append(str(await asyncio.wait_for(client.recv(), 5)))
            return received
    finally:
        server.should_exit = True
        await serving


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("ws", ["auto", "websockets-sansio"])
def test_frames_written_to_the_found_transport_reach_the_client(loop: str, ws: str) -> None:
    received: list[str] = []

    async def run() -> None:
        received.extend(await _exchange(ws))

    LOOPS[loop](run())
    assert received == ["through asgi", "by hand", "through asgi again"]

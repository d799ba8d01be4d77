"""Brokers that carry "events are positioned up to p" notices: in-process and Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("leadflow.events")

CHANNEL = "leadflow:lead-events"


class MemoryBroker:
    """One process: a notice goes straight to this process's listeners."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[int], Awaitable[None]]] = []

    async def publish(self, position: int) -> None:
        for listener in list(self._listeners):
            await listener(position)

    async def listen(self, on_position: Callable[[int], Awaitable[None]]) -> None:
        self._listeners.append(on_position)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            self._listeners.remove(on_position)

    async def close(self) -> None:
        self._listeners.clear()


class RedisBroker:
    """Several processes: notices go through one Redis pub/sub channel.

    Pub/sub is at most once (a notice sent while a listener is disconnected is gone); that is
    fine because a notice only says when to read, and every process also polls the event
    table's head (persistence/relay.py), so a lost notice delays delivery, never loses it.
    """

    def __init__(self, url: str, channel: str = CHANNEL, *, max_backoff: float = 2.0) -> None:
        self.url = url
        self.channel = channel
        self.max_backoff = max_backoff
        self.listening = False  # the listener is subscribed (reconnects by itself when not)
        # One quick retry, not redis-py's default ten with backoff (several seconds while
        # Redis is down): a notice that cannot be sent is dropped, the table poll covers it.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=2,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        )

    async def publish(self, position: int) -> None:
        await self._redis.publish(self.channel, str(position))

    async def ping(self) -> None:
        """Raise unless Redis answers and this process's listener is subscribed."""
        await self._redis.ping()
        if not self.listening:
            raise ConnectionError("the event listener is not subscribed (reconnecting)")

    async def listen(self, on_position: Callable[[int], Awaitable[None]]) -> None:
        delay = 0.1
        while True:
            # A connection of its own, without a read timeout: an idle channel is not an error.
            # Its retries are this loop's, with its own backoff.
            client = aioredis.Redis.from_url(
                self.url,
                socket_connect_timeout=2,
                health_check_interval=10,
                retry=Retry(NoBackoff(), 0),
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.listening = True
                if delay > 0.1:
                    log.info("redis listener reconnected")
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    with contextlib.suppress(ValueError):
                        await on_position(int(message["data"]))
            except (RedisError, OSError) as e:
                log.warning("redis listener lost its connection (%s); retrying in %.1f s", e, delay)
            finally:
                self.listening = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def close(self) -> None:
        await self._redis.aclose()

"""Token-bucket rate limiters: one process (in memory) or every process (Redis)."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("leadflow.ratelimit")


class MemoryRateLimiter:
    """Buckets in this process's memory: each server process counts on its own."""

    # Past this many buckets, those untouched for an hour (full again by then) are dropped:
    # keys per client address are not a bounded set.
    LIMIT = 50_000

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    async def take(self, key: str, per_second: float, burst: int) -> float:
        now = time.monotonic()
        if len(self._buckets) >= self.LIMIT and key not in self._buckets:
            stale = now - 3600.0
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > stale}
            if len(self._buckets) >= self.LIMIT:
                self._buckets.clear()
        tokens, at = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / per_second

    async def close(self) -> None:
        self._buckets.clear()


# The bucket is a hash {tokens, at} refilled from the server's clock, so every process shares
# one bucket per key and one clock; the key expires once a full bucket would have refilled.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every server process (one Lua script call per request).

    When Redis cannot be reached, each process counts on its own (in memory) and tries Redis
    again after `retry_seconds`: the limiter protects the service, and an outage of Redis must
    neither stop the API nor slow every request down by a connection timeout.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "leadflow:rate:",
        retry_seconds: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        # A bounded pool: a burst of requests (10,000 WebSocket subscribes at once) waits for a
        # connection instead of opening one each and running into Redis's client limit.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=1.0,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._script = self._redis.register_script(_TAKE)
        self._prefix = prefix
        self._fallback = MemoryRateLimiter()
        self._retry_seconds = retry_seconds
        self._down_until = 0.0

    async def take(self, key: str, per_second: float, burst: int) -> float:
        if self._down_until and time.monotonic() < self._down_until:
            return await self._fallback.take(key, per_second, burst)
        try:
            wait = await self._script(keys=[self._prefix + key], args=[per_second, burst])
        except (RedisError, OSError) as e:
            if not self._down_until:
                log.warning("rate limiter: Redis unavailable, counting in this process: %s", e)
            self._down_until = time.monotonic() + self._retry_seconds
            return await self._fallback.take(key, per_second, burst)
        if self._down_until:
            log.info("rate limiter: Redis is back")
            self._down_until = 0.0
        return float(wait)

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)
        await self._fallback.close()

"""Unknown-key throttling: whom it counts against, and buckets that do not pile up."""

from __future__ import annotations

from api.http import _address_key
from persistence.ratelimit import MemoryRateLimiter


def test_ipv6_clients_count_per_64_and_ipv4_per_address() -> None:
    assert _address_key("2001:db8::5") == _address_key("2001:db8::1:2:3:4") == "2001:db8::/64"
    assert _address_key("2001:db8:0:1::5") == "2001:db8:0:1::/64"
    assert _address_key("10.0.0.1") == _address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert _address_key("10.0.0.2") == "10.0.0.2"
    assert _address_key("testclient") == "testclient"


async def test_memory_buckets_untouched_for_an_hour_are_dropped_past_the_limit() -> None:
    limiter = MemoryRateLimiter()
    limiter.LIMIT = 100
    for i in range(100):
        await limiter.take(f"unknown-key:{i}", 1.0, 20)
    # Age the first half by an hour: the next new key prunes them, keeps the rest.
    for i in range(50):
        tokens, at = limiter._buckets[f"unknown-key:{i}"]
        limiter._buckets[f"unknown-key:{i}"] = (tokens, at - 3601)
    await limiter.take("unknown-key:new", 1.0, 20)
    assert len(limiter._buckets) == 51 and "unknown-key:99" in limiter._buckets
    # All fresh and still past the limit: cleared rather than grown.
    for i in range(200, 260):
        await limiter.take(f"unknown-key:{i}", 1.0, 20)
    assert len(limiter._buckets) <= 100

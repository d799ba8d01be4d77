"""Process memory: freed C-allocator memory goes back to the OS (failures never stop the job);
the allocator arena cap."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from api import memory

GLIBC = memory._malloc_trim()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(GLIBC is None, reason="the C library has no malloc_trim (not glibc)")
def test_trim_gives_freed_memory_back() -> None:
    assert GLIBC is not None
    # 64 MiB in 4 KiB blocks (each its own malloc), with a small live block after each one, so
    # the freed blocks are scattered between live ones and the heap cannot shrink from its top.
    big, pins = [], []
    for i in range(16384):
        big.append(bytes(4096 - 33) + i.to_bytes(4, "little"))
        pins.append(bytes(600) + i.to_bytes(4, "little"))
    del big
    before = _rss_kib()
    GLIBC()
    after = _rss_kib()
    assert len(pins) == 16384
    assert before - after > 32 * 1024, (before, after)


async def test_the_loop_trims_every_interval_and_survives_failures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def trim() -> int:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("boom")
        return 1

    monkeypatch.setattr(memory, "_malloc_trim", lambda: trim)
    task = asyncio.create_task(memory.memory_trim_loop(0.01))
    with caplog.at_level(logging.ERROR, logger="leadflow.jobs"):
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(calls) >= 4:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(calls) >= 4  # it went on after the failing call
    assert "memory trim failed" in caplog.text


async def test_the_loop_ends_at_once_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    await asyncio.wait_for(memory.memory_trim_loop(0.01), timeout=1)


@pytest.mark.skipif(GLIBC is None, reason="the C library has no mallopt (not glibc)")
def test_the_arena_cap_is_set_and_zero_keeps_the_default() -> None:
    assert memory.limit_malloc_arenas(0) is False
    # glibc's own default (8 per core), so the rest of the test run is not changed by it.
    assert memory.limit_malloc_arenas(8 * (os.cpu_count() or 1)) is True

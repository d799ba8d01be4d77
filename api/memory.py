"""The server process's memory with glibc's malloc: fewer allocator arenas, free memory trimmed.

Whatever Python frees outside its own small-object arenas (result rows, JSON, request and
response bodies, SQLite's page caches) goes back to the C allocator, which keeps it for reuse.
glibc gives each thread that allocates its own arena (up to 8 per core), and every database
connection runs on a thread of its own (aiosqlite): each arena keeps what its busiest moment
needed, scattered between live blocks, so the process's RSS creeps up for hours although
nothing leaks. Two remedies, both no-ops where the C library is not glibc (musl, macOS,
Windows): cap the number of arenas at startup, and periodically hand whole free pages back.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache

log = logging.getLogger("leadflow.jobs")

_M_ARENA_MAX = -8  # glibc's mallopt parameter number for the arena cap


@cache  # find_library runs ldconfig: once per process
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for the threads started from now on (as MALLOC_ARENA_MAX
    would); whether it was done. 0 leaves glibc's default."""
    libc = _libc()
    if arenas <= 0 or libc is None or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none."""
    libc = _libc()
    fn = getattr(libc, "malloc_trim", None) if libc is not None else None
    if fn is None:
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: fn(0)


async def memory_trim_loop(interval: float) -> None:
    """Every `interval` seconds, give the memory the C allocator holds free back to the OS
    (malloc_trim, in a thread: it walks every arena). Returns at once without glibc."""
    trim = _malloc_trim()
    if trim is None:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(trim)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("memory trim failed; retrying in %s s", interval)

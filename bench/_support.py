"""Shared helpers of the benchmark scripts: fresh databases, timing figures, console output.

Not a test module and not part of the app; imported by the scripts in bench/ (which run with
bench/ first on sys.path).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
SQLITE = "sqlite"
# The benches load the server from one API key far beyond its default rate limit: the limiter
# still runs on every request (its cost is measured), with buckets too large to refuse any.
UNTHROTTLED = {
    "LEADFLOW_RATE_LIMITS": json.dumps(
        {
            role: {"per_second": 1e9, "burst": 1_000_000_000}
            for role in ("ADMIN", "MARKETER", "SELLER", "INTEGRATION", "VIEWER")
        }
    )
}

# Wide enough for the result tables when the output goes to a file or a pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)


def progress(*columns: str | ProgressColumn) -> Progress:
    """A progress display that vanishes when done (and stays off when output is not a terminal)."""
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def command_line() -> str:
    """How this script was started, to print beside its figures."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def is_sqlite(url: str) -> bool:
    return url == SQLITE or make_url(url).get_backend_name() == "sqlite"


def describe(url: str) -> str:
    """A URL for display: the password hidden."""
    return url if url == SQLITE else make_url(url).render_as_string(hide_password=True)


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextmanager
def fresh_database(url: str, stem: str) -> Iterator[str]:
    """The URL of a new, empty database, removed afterwards.

    SQLite (`url` "sqlite" or any sqlite URL): a file in a new temporary directory. PostgreSQL:
    a database named leadflow_bench_<random> created through `url` and dropped at the end.
    """
    if is_sqlite(url):
        tmp = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
        try:
            yield f"sqlite+aiosqlite:///{tmp / (stem + '.db')}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    name = f"leadflow_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as e:  # report, do not hide the benchmark's own outcome
            console.print(f"[yellow]could not drop database {name}: {e}[/]")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (NaN when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def change(value: float, reference: float) -> float:
    """Relative change of `value` against `reference` (0.1 is +10 %)."""
    return value / reference - 1 if reference else math.nan


def verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


async def insert_contacts_with_leads(
    conn: AsyncConnection,
    count: int,
    now: datetime,
    contact: Callable[[int], dict[str, Any]],
    lead: Callable[[int, int], dict[str, Any]],
) -> list[int]:
    """Bulk-insert `count` contacts (`contact(i)`: their columns) and for each an OPEN, new,
    not sales-ready lead at INQUIRY (`lead(i, contact_id)`: its other columns), in chunks of
    5,000; the contacts' ids in order."""
    from domain.model import LeadSource, LeadStage, LeadState, LeadStatusReason
    from persistence import tables as t

    stamps = {"created_at": now, "updated_at": now}
    for low in range(0, count, 5000):
        rows = [{**contact(i), **stamps} for i in range(low, min(low + 5000, count))]
        await conn.execute(insert(t.contacts), rows)
    ids = list((await conn.execute(select(t.contacts.c.id).order_by(t.contacts.c.id))).scalars())
    defaults = {
        "attributes": {},
        "source": LeadSource.LANDING_PAGE.value,
        "state": LeadState.OPEN.value,
        "status_reason": LeadStatusReason.NEW.value,
        "sales_ready": False,
        "stage": LeadStage.INQUIRY.value,
        **stamps,
    }
    leads = [{**defaults, **lead(i, c)} for i, c in enumerate(ids)]
    for low in range(0, len(leads), 5000):
        await conn.execute(insert(t.leads), leads[low : low + 5000])
    return ids

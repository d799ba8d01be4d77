"""Benchmark: importing a contacts CSV the way `leadflow import contacts FILE.csv` does.

    python bench/import_contacts.py [--rows 100000] [--database-url URL]

Generates a CSV (email, first_name, last_name, company, job title, phone, country) with
--duplicates of the rows repeating an earlier email, a few rows with broken emails, and
companies shared by about 20 contacts each (so accounts are created once and then matched).
Imports it into a fresh database through the CLI's code path: domain.importing.read_csv, then
chunks(), each chunk through import_chunk in its own unit of work (Database.uow(), one commit
per chunk). The baseline, in the same run, reads the same file and inserts the same rows into
the contacts table of another fresh database with a bare executemany INSERT (ON CONFLICT (email)
DO NOTHING, same chunk size, one transaction per chunk) through the same driver.

SQLite (the default) uses temporary files; with --database-url (PostgreSQL) each run creates
databases named leadflow_bench_<random> through that URL and drops them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _support import (
    SQLITE,
    command_line,
    console,
    describe,
    fresh_database,
    progress,
    verdict,
)
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from domain.importing import (
    MAX_CSV_BYTES,
    ROWS_PER_CHUNK,
    ImportEntity,
    ImportResult,
    chunks,
    import_chunk,
    read_csv,
)
from domain.model import utcnow
from persistence import tables as t
from persistence.database import Database
from persistence.migrate import upgrade

GOAL_SECONDS = 60.0
HEADER = ["email", "first_name", "last_name", "company", "job title", "phone", "country"]
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman")
COMPANY_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne")
COMPANY_KINDS = ("Ltd", "GmbH", "Inc", "SA", "BV")
TITLES = ("CTO", "Head of Marketing", "Buyer", "Engineer", "")
COUNTRIES = ("GB", "DE", "FR", "US", "NL", "")


# ---------------------------------------------------------------- the file


@dataclass(frozen=True, slots=True)
class Generated:
    rows: int
    distinct_emails: int  # valid, distinct: the contacts an import must create
    duplicates: int  # rows repeating an earlier email: updated or skipped
    broken: int  # rows with an invalid email: failed
    companies: int
    size: int  # bytes


def generate_csv(path: Path, rows: int, duplicates: float, broken: float, seed: int) -> Generated:
    """Write the CSV; the counts it returns are what a correct import reports."""
    rng = random.Random(seed)
    companies = [
        f"{rng.choice(COMPANY_WORDS)} {i} {rng.choice(COMPANY_KINDS)}"
        for i in range(max(rows // 20, 1))
    ]
    emails: list[str] = []
    dup_rows = broken_rows = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for i in range(rows):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            draw = rng.random()
            if emails and draw < duplicates:
                email = rng.choice(emails)  # maybe in the same chunk, maybe in an earlier one
                dup_rows += 1
            elif draw < duplicates + broken:
                email = f"{first}.{last}.{i}.example.com"  # no @: rejected
                broken_rows += 1
            else:
                email = f"{first}.{last}.{i}@example{i % 50}.com".lower()
                emails.append(email)
            company = "" if rng.random() < 0.1 else rng.choice(companies)
            if company and rng.random() < 0.05:
                company = company.upper()  # the same account, written differently
            phone = "" if rng.random() < 0.2 else f"+44 20 {i:08d}"
            title, country = rng.choice(TITLES), rng.choice(COUNTRIES)
            out.writerow([email, first, last, company, title, phone, country])
    return Generated(rows, len(emails), dup_rows, broken_rows, len(companies), path.stat().st_size)


# ---------------------------------------------------------------- the two runs


@dataclass(frozen=True, slots=True)
class ImportRun:
    seconds: float
    result: ImportResult
    contacts: int
    accounts: int


async def _count(db: Database, table: Any) -> int:
    async with db.read_engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


def _bar(label: str) -> Any:
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn())
    return progress(*columns, TimeElapsedColumn())


async def run_import(url: str, path: Path, rows: int) -> ImportRun:
    """The CLI's `leadflow import contacts` loop, timed from reading the file to the last commit."""
    db = Database(url)
    try:
        await upgrade(db.write_engine)
        total = ImportResult()
        with _bar("importing") as bar:
            task = bar.add_task("import", total=rows)
            started = time.perf_counter()
            text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
            _, parsed = read_csv(text, ImportEntity.CONTACT, None)
            for chunk in chunks(parsed):
                async with db.uow() as uow:
                    result = await import_chunk(uow, ImportEntity.CONTACT, chunk)
                    await uow.commit()
                total.add(result)
                bar.advance(task, len(chunk))
            seconds = time.perf_counter() - started
        return ImportRun(seconds, total, await _count(db, t.contacts), await _count(db, t.accounts))
    finally:
        await db.dispose()


async def run_baseline(url: str, path: Path, rows: int) -> tuple[float, int]:
    """The same file into contacts with a bare executemany INSERT; (seconds, rows stored)."""
    db = Database(url)
    try:
        await upgrade(db.write_engine)
        dialect_insert = sqlite.insert if db.is_sqlite else postgresql.insert
        stmt = dialect_insert(t.contacts).on_conflict_do_nothing(index_elements=["email"])

        async def flush(batch: list[dict[str, Any]]) -> None:
            async with db.write_engine.begin() as conn:
                await conn.execute(stmt, batch)

        with _bar("baseline insert") as bar:
            task = bar.add_task("baseline", total=rows)
            started = time.perf_counter()
            text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
            reader = csv.reader(io.StringIO(text))
            next(reader)  # the header
            now = utcnow()
            batch: list[dict[str, Any]] = []
            for email, first, last, _company, title, phone, country in reader:
                batch.append(
                    {
                        "email": email or None,
                        "first_name": first or None,
                        "last_name": last or None,
                        "job_title": title or None,
                        "phone": phone or None,
                        "country": country or None,
                        "account_id": None,
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                if len(batch) >= ROWS_PER_CHUNK:
                    await flush(batch)
                    bar.advance(task, len(batch))
                    batch = []
            if batch:
                await flush(batch)
                bar.advance(task, len(batch))
            seconds = time.perf_counter() - started
        return seconds, await _count(db, t.contacts)
    finally:
        await db.dispose()


# ---------------------------------------------------------------- report


def report(gen: Generated, run: ImportRun, base_seconds: float, base_rows: int) -> bool:
    """Print the figures and checks; True when the import's counts are the expected ones."""
    r = run.result
    table = Table(title=f"importing {gen.rows:,} contacts", title_justify="left")
    for name in ("run", "seconds", "rows/s", "created", "updated", "skipped", "failed"):
        table.add_column(name, justify="left" if name == "run" else "right")
    table.add_column("stored", justify="right")
    table.add_row(
        "import (CLI path)",
        f"{run.seconds:.1f}",
        f"{gen.rows / run.seconds:,.0f}",
        f"{r.created:,}",
        f"{r.updated:,}",
        f"{r.skipped:,}",
        f"{r.failed:,}",
        f"{run.contacts:,} contacts, {run.accounts:,} accounts",
    )
    table.add_row(
        "baseline executemany",
        f"{base_seconds:.1f}",
        f"{gen.rows / base_seconds:,.0f}",
        "",
        "",
        "",
        "",
        f"{base_rows:,} contacts",
    )
    console.print(table)

    checks = Table(title="checks", title_justify="left")
    for name in ("figure", "value", "expected", ""):
        checks.add_column(name, justify="left" if name in ("figure", "") else "right")
    checks.add_row(
        "import seconds",
        f"{run.seconds:.1f}",
        f"< {GOAL_SECONDS:.0f}",
        verdict(run.seconds < GOAL_SECONDS),
    )
    checks.add_row("import ÷ baseline seconds", f"{run.seconds / base_seconds:.1f} x", "", "")
    counts = [
        ("created", r.created, gen.distinct_emails),
        ("updated + skipped", r.updated + r.skipped, gen.duplicates),
        ("failed", r.failed, gen.broken),
        ("contacts stored", run.contacts, gen.distinct_emails),
        ("accounts stored", run.accounts, gen.companies),
    ]
    ok = True
    for name, got, want in counts:
        # Every generated company name is not necessarily drawn: accounts may be fewer.
        good = got <= want if name == "accounts stored" else got == want
        ok = ok and good
        bound = f"≤ {want:,}" if name == "accounts stored" else f"{want:,}"
        checks.add_row(name, f"{got:,}", bound, verdict(good))
    console.print(checks)
    return ok


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=100_000, help="CSV rows (default 100000)")
    p.add_argument(
        "--duplicates", type=float, default=0.05, help="share of rows repeating an email (0.05)"
    )
    p.add_argument(
        "--broken", type=float, default=0.001, help="share of rows with a broken email (0.001)"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed of the generated file (1)")
    p.add_argument(
        "--database-url",
        default=SQLITE,
        help="'sqlite' (temporary files, the default) or a PostgreSQL URL to create fresh "
        "databases through, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    )
    args = p.parse_args(argv)
    if not 1 <= args.rows <= 1_000_000:
        p.error("--rows must be between 1 and 1000000")
    if not (
        0 <= args.duplicates < 1 and 0 <= args.broken < 1 and args.duplicates + args.broken < 1
    ):
        p.error("--duplicates and --broken are shares below 1, and so is their sum")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console.print(f"[bold]command:[/] {command_line()}")
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-csv-") as tmp:
        path = Path(tmp) / "contacts.csv"
        gen = generate_csv(path, args.rows, args.duplicates, args.broken, args.seed)
        console.print(
            f"{gen.rows:,} rows, {gen.size / 1e6:.1f} MB: {gen.distinct_emails:,} distinct emails, "
            f"{gen.duplicates:,} duplicate rows, {gen.broken:,} broken emails, "
            f"{gen.companies:,} companies; on {describe(args.database_url)}"
        )
        if gen.size > MAX_CSV_BYTES:
            console.print(f"[red]the file is larger than the import limit ({MAX_CSV_BYTES:,} B)[/]")
            return 2
        with fresh_database(args.database_url, "import") as url:
            run = asyncio.run(run_import(url, path, gen.rows))
        console.print(f"import: {run.seconds:.1f} s, {gen.rows / run.seconds:,.0f} rows/s")
        with fresh_database(args.database_url, "baseline") as url:
            base_seconds, base_rows = asyncio.run(run_baseline(url, path, gen.rows))
        console.print(f"baseline: {base_seconds:.1f} s, {gen.rows / base_seconds:,.0f} rows/s")
    console.print()
    ok = report(gen, run, base_seconds, base_rows)
    console.print(f"[bold]command:[/] {command_line()}", soft_wrap=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: `leads(first: 50)` through the GraphQL API, beside a plain Starlette baseline.

    python bench/leads_list.py [--leads 100000] [--seconds 10] [--database-url URL]

Seeds a fresh database (a temporary SQLite file, or a new PostgreSQL database
leadflow_bench_<random> created through --database-url and dropped afterwards) with --leads
leads, then runs two servers one after the other, each alone on the machine:

* the real API: `uvicorn --factory api.app:app_factory` (LEADFLOW_ENV=production), queried
  with `leads(first: 50, after: $after)` asking for ten fields per lead;
* the baseline: bench/plain_app.py, GET /leads?after=..., the same SQL through the same
  driver, returning the same ten columns as plain JSON.

Each is loaded by --concurrency keep-alive connections for --seconds per page after a
warm-up, on page 1 and on a deep page (page 1,000 with >= 50,000 leads, else the middle page),
in --rounds slices run in ABBA order (1, deep, deep, 1) so that a drift of the machine does not
favour one page. The deep page's cursor is computed from the database with
domain.pagination.encode_cursor, and both pages are checked against the database before they
are measured. The default load generator writes prepared HTTP/1.1 requests on asyncio streams:
httpx.AsyncClient (--client httpx) needs about a core for ~1,000 req/s, which on a 2-core
machine throttles the faster server. The generator still shares the machine, so its CPU use
and the server's are printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from _support import (
    BENCH,
    ROOT,
    SQLITE,
    UNTHROTTLED,
    change,
    command_line,
    console,
    describe,
    fresh_database,
    percentile,
    progress,
    verdict,
)
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import insert, select, text

from api.ids import from_global_id
from domain.model import LeadSource, LeadStage, LeadState, LeadStatusReason
from domain.pagination import encode_cursor
from domain.roles import Role
from persistence import tables as t
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from persistence.migrate import upgrade

PAGE_SIZE = 50
INSERT_BATCH = 5_000
RATIO_GOAL = 0.5  # GraphQL req/s ÷ baseline req/s on page 1
DEPTH_GOAL = 0.2  # deep page vs page 1, either way
READY_TIMEOUT = 60.0

QUERY = """
query Leads($after: String) {
  leads(first: 50, after: $after) {
    edges {
      node { id topic firstName lastName email companyName jobTitle state stage createdAt }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

# ---------------------------------------------------------------- seeding

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman")
COMPANIES = tuple(f"{a} {b}" for a in ("Acme", "Globex", "Initech", "Umbrella") for b in "ABCDE")
TITLES = ("CTO", "Head of Marketing", "Buyer", "Engineer", None)
# (state, status reason, stage, weight): plausible combinations.
LIFECYCLE = (
    (LeadState.OPEN, LeadStatusReason.NEW, LeadStage.INQUIRY, 6),
    (LeadState.OPEN, LeadStatusReason.CONTACTED, LeadStage.TELEPROSPECTING_ACCEPTANCE, 2),
    (LeadState.QUALIFIED, LeadStatusReason.QUALIFIED, LeadStage.SALES_ACCEPTANCE, 1),
    (LeadState.DISQUALIFIED, LeadStatusReason.LOST, LeadStage.INQUIRY, 1),
)


def lead_batches(count: int, rng: random.Random) -> Iterator[list[dict[str, Any]]]:
    """Rows for the leads table; created_at strictly increases with the row (distinct values)."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    weights = [w for *_, w in LIFECYCLE]
    for low in range(0, count, INSERT_BATCH):
        batch = []
        for i in range(low, min(low + INSERT_BATCH, count)):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            state, reason, stage, _ = rng.choices(LIFECYCLE, weights)[0]
            created = start + timedelta(seconds=i, microseconds=rng.randrange(1_000_000))
            batch.append(
                {
                    "topic": f"Interested in plan {i % 7} ({i})",
                    "first_name": first,
                    "last_name": last,
                    "email": f"{first}.{last}.{i}@example.com".lower(),
                    "company_name": rng.choice(COMPANIES),
                    "job_title": rng.choice(TITLES),
                    "phone": f"+1 555 {i:07d}",
                    "attributes": {},
                    "source": rng.choice((LeadSource.MANUAL, LeadSource.IMPORT)).value,
                    "state": state.value,
                    "status_reason": reason.value,
                    "sales_ready": False,
                    "stage": stage.value,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        yield batch


@dataclass(frozen=True, slots=True)
class Seeded:
    api_key: str
    cursors: dict[int, str | None]  # page number → its `after` cursor
    expected: dict[int, list[int]]  # page number → the lead ids it must return, in order


async def seed(url: str, count: int, pages: list[int]) -> Seeded:
    """Migrate, insert the leads (executemany), create an ADMIN key, note each page's rows."""
    db = Database(url)
    try:
        await upgrade(db.write_engine)
        columns = (TextColumn("[bold]seeding leads"), BarColumn(), MofNCompleteColumn())
        with progress(*columns, TimeElapsedColumn()) as bar:
            task = bar.add_task("seed", total=count)
            async with db.write_engine.begin() as conn:
                for batch in lead_batches(count, random.Random(7)):
                    await conn.execute(insert(t.leads), batch)
                    bar.advance(task, len(batch))
        async with db.write_engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        _, secret = await ApiKeyStore(db).create("bench", Role.ADMIN)
        order = (t.leads.c.created_at.desc(), t.leads.c.id.desc())
        cursors: dict[int, str | None] = {}
        expected: dict[int, list[int]] = {}
        async with db.read_engine.connect() as conn:
            for page in pages:
                skip = (page - 1) * PAGE_SIZE
                ids = select(t.leads.c.id).order_by(*order).offset(skip).limit(PAGE_SIZE)
                expected[page] = list((await conn.scalars(ids)).all())
                cursors[page] = None
                if skip:
                    key = select(t.leads.c.created_at, t.leads.c.id).order_by(*order)
                    row = (await conn.execute(key.offset(skip - 1).limit(1))).one()
                    cursors[page] = encode_cursor(row.created_at, row.id)
        return Seeded(secret, cursors, expected)
    finally:
        await db.dispose()


# ---------------------------------------------------------------- the two servers


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One request, sent over and over."""

    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    ids: Callable[[Any], list[int]]  # the lead ids of a decoded response


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    app: list[str]  # uvicorn arguments naming the app
    ready_path: str
    endpoint: Callable[[str | None], Endpoint]  # for a page's cursor

    def command(self, port: int) -> list[str]:
        return [
            sys.executable,
            *("-m", "uvicorn", *self.app),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--log-level", "warning", "--no-access-log"),
        ]


def graphql_server(api_key: str) -> Server:
    headers = {
        "authorization": f"Bearer {api_key}",
        "content-type": "application/json",
        "accept": "application/json",
    }

    def ids(body: Any) -> list[int]:
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return [from_global_id(e["node"]["id"])[1] for e in body["data"]["leads"]["edges"]]

    def endpoint(after: str | None) -> Endpoint:
        payload = {"query": QUERY, "variables": {"after": after}}
        return Endpoint("POST", "/graphql", json.dumps(payload).encode(), headers, ids)

    return Server("GraphQL", ["--factory", "api.app:app_factory"], "/readyz", endpoint)


def baseline_server() -> Server:
    def ids(body: Any) -> list[int]:
        return [lead["id"] for lead in body["leads"]]

    def endpoint(after: str | None) -> Endpoint:
        path = "/leads" if after is None else f"/leads?after={after}"
        return Endpoint("GET", path, None, {"accept": "application/json"}, ids)

    app = ["--factory", "--app-dir", str(BENCH), "plain_app:app_factory"]
    return Server("baseline", app, "/healthz", endpoint)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    command: list[str], env: dict[str, str], base_url: str, ready_path: str
) -> Iterator[int]:
    """Start a server process, wait until it answers `ready_path`, stop it at the end."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {proc.returncode}")
            try:
                if httpx.get(base_url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready within {READY_TIMEOUT:.0f} s")
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- load


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process: this one, or `pid` from /proc (Linux)."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Load:
    """What one page got from one server, pooled over its time slices."""

    latencies: list[float] = field(default_factory=list)  # seconds, sorted
    failures: int = 0
    wall: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    slices: list[float] = field(default_factory=list)  # req/s of each slice
    response_bytes: int = 0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    @property
    def client_cpu(self) -> float:
        """Cores the load generator kept busy, on average."""
        return self.client_cpu_s / self.wall if self.wall else 0.0

    @property
    def server_cpu(self) -> float:
        """Cores the server process kept busy, on average (its driver threads included)."""
        return self.server_cpu_s / self.wall if self.wall else 0.0

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000

    def add(self, other: Load) -> None:
        self.latencies = sorted(self.latencies + other.latencies)
        self.failures += other.failures
        self.wall += other.wall
        self.client_cpu_s += other.client_cpu_s
        self.server_cpu_s += other.server_cpu_s
        self.slices.append(other.rps)


class Sender(Protocol):
    """Sends one prepared request and returns (status, body)."""

    async def send(self) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class RawSender:
    """One keep-alive HTTP/1.1 connection replaying one prepared request.

    Several times cheaper per request than httpx, so on a small machine the load generator
    takes less CPU from the server it measures. Needs Content-Length (uvicorn sends it).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: bytes,
        head: str = "",
    ):
        self.reader, self.writer, self.request, self.head = reader, writer, request, head

    @classmethod
    async def open(cls, host: str, port: int, ep: Endpoint) -> RawSender:
        lines = [f"{ep.method} {ep.path} HTTP/1.1", f"host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in ep.headers.items()]
        head = "\r\n".join(lines) + "\r\ncontent-length: "
        if ep.body is not None:
            lines.append(f"content-length: {len(ep.body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + (ep.body or b"")
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, request, head)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """The endpoint's method, path and headers with another body."""
        return await self.send(f"{self.head}{len(body)}\r\n\r\n".encode() + body)

    async def send(self, request: bytes | None = None) -> tuple[int, bytes]:
        self.writer.write(self.request if request is None else request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return status, await self.reader.readexactly(int(value))
        raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class HttpxSender:
    """The same through a shared httpx.AsyncClient (--client httpx)."""

    def __init__(self, client: httpx.AsyncClient, ep: Endpoint) -> None:
        self.client, self.ep = client, ep

    async def send(self) -> tuple[int, bytes]:
        ep = self.ep
        r = await self.client.request(ep.method, ep.path, content=ep.body, headers=ep.headers)
        return r.status_code, r.content

    async def close(self) -> None:
        return None


async def hammer(senders: list[Sender], seconds: float, tick: Callable[[float], None]) -> Load:
    """One worker per sender, each sending back to back until `seconds` have passed."""
    load = Load()
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(sender: Sender) -> None:
        while (sent := time.perf_counter()) < deadline:
            status, body = await sender.send()
            took = time.perf_counter() - sent
            if status == 200 and b'"errors"' not in body:
                load.latencies.append(took)
            else:
                load.failures += 1

    async def ticker() -> None:
        while (now := time.perf_counter()) < deadline:
            tick(now - start)
            await asyncio.sleep(0.2)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(ticker())
        for sender in senders:
            tg.create_task(worker(sender))
    load.wall = time.perf_counter() - start
    load.latencies.sort()
    return load


def schedule(pages: list[int], rounds: int) -> list[int]:
    """Pages in ABBA order (1, deep, deep, 1, ...): a slow drift of the machine cancels out."""
    return [p for r in range(rounds) for p in (pages if r % 2 == 0 else pages[::-1])]


async def run_slice(
    senders: list[Sender], seconds: float, pid: int, tick: Callable[[float], None]
) -> Load:
    """Load for `seconds`, with the CPU time this process and the server's used meanwhile."""
    try:
        cpu0, server0 = cpu_seconds(), await asyncio.to_thread(cpu_seconds, pid)
        load = await hammer(senders, seconds, tick)
        cpu1, server1 = cpu_seconds(), await asyncio.to_thread(cpu_seconds, pid)
    finally:
        for sender in senders:
            await sender.close()
    load.client_cpu_s, load.server_cpu_s = cpu1 - cpu0, server1 - server0
    return load


async def measure(
    server: Server, seeded: Seeded, pages: list[int], port: int, pid: int, args: argparse.Namespace
) -> dict[int, Load]:
    """Check each page once, warm up, then load the pages in turn, --seconds each in all."""
    host, n = "127.0.0.1", args.concurrency
    endpoints = {page: server.endpoint(seeded.cursors[page]) for page in pages}
    loads = {page: Load() for page in pages}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    base_url = f"http://{host}:{port}"
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        for page, ep in endpoints.items():
            r = await client.request(ep.method, ep.path, content=ep.body, headers=ep.headers)
            r.raise_for_status()
            got, want = ep.ids(r.json()), seeded.expected[page]
            if got != want:
                raise RuntimeError(f"{server.name} page {page}: ids {got[:3]}…, not {want[:3]}…")
            loads[page].response_bytes = len(r.content)

        async def senders(page: int) -> list[Sender]:
            ep = endpoints[page]
            if args.client == "httpx":
                return [HttpxSender(client, ep) for _ in range(n)]
            return [await RawSender.open(host, port, ep) for _ in range(n)]

        slices = schedule(pages, args.rounds)
        slice_seconds = args.seconds / args.rounds
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn())
        with progress(*columns) as bar:
            task = bar.add_task(server.name, total=args.warmup + slice_seconds * len(slices))
            done = 0.0

            def tick(seconds: float) -> None:
                bar.update(task, completed=done + seconds)

            for page in pages:  # warm-up, not measured
                bar.update(task, description=f"{server.name}: warm-up on page {page:,}")
                await run_slice(await senders(page), args.warmup / len(pages), pid, tick)
                done += args.warmup / len(pages)
            for page in slices:
                bar.update(task, description=f"{server.name}: page {page:,}")
                loads[page].add(await run_slice(await senders(page), slice_seconds, pid, tick))
                done += slice_seconds
    return loads


# ---------------------------------------------------------------- report


def results_table(results: dict[tuple[str, int], Load]) -> Table:
    table = Table(title=f"leads(first: {PAGE_SIZE}) over HTTP", title_justify="left")
    for name in ("server", "page", "req/s", "slices req/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(name, justify="left" if name == "server" else "right")
    for name in ("ok", "failed", "bytes/resp", "server CPU", "client CPU"):
        table.add_column(name, justify="right")
    for (server, page), r in results.items():
        table.add_row(
            server,
            f"{page:,}",
            f"{r.rps:,.0f}",
            " / ".join(f"{x:,.0f}" for x in r.slices),
            f"{r.ms(0.50):.1f}",
            f"{r.ms(0.95):.1f}",
            f"{r.ms(0.99):.1f}",
            f"{len(r.latencies):,}",
            f"{r.failures:,}" if not r.failures else f"[red]{r.failures:,}[/]",
            f"{r.response_bytes:,}",
            f"{r.server_cpu:.0%}",
            f"{r.client_cpu:.0%}",
        )
    return table


def goals_table(results: dict[tuple[str, int], Load], deep: int) -> Table:
    gql1, gqld = results["GraphQL", 1], results["GraphQL", deep]
    base1, based = results["baseline", 1], results["baseline", deep]
    table = Table(title="against the baseline and across pages", title_justify="left")
    for name in ("figure", "value", "goal", ""):
        table.add_column(name, justify="left" if name in ("figure", "") else "right")
    ratio = gql1.rps / base1.rps if base1.rps else 0.0
    table.add_row(
        "GraphQL ÷ baseline, page 1 req/s",
        f"{ratio:.2f}",
        f"≥ {RATIO_GOAL}",
        verdict(ratio >= RATIO_GOAL),
    )
    deep_ratio = gqld.rps / based.rps if based.rps else 0.0
    table.add_row(f"GraphQL ÷ baseline, page {deep:,} req/s", f"{deep_ratio:.2f}", "", "")
    for name, p1, pd in (("GraphQL", gql1, gqld), ("baseline", base1, based)):
        rps = change(pd.rps, p1.rps)
        table.add_row(
            f"{name} page {deep:,} vs page 1, req/s",
            f"{rps:+.1%}",
            f"± {DEPTH_GOAL:.0%}",
            verdict(abs(rps) <= DEPTH_GOAL),
        )
        table.add_row(
            f"{name} page {deep:,} vs page 1, p95",
            f"{change(pd.ms(0.95), p1.ms(0.95)):+.1%}",
            "",
            "",
        )
    return table


# ---------------------------------------------------------------- main


def default_deep_page(leads: int) -> int:
    return 1000 if leads >= 50_000 else max(2, leads // PAGE_SIZE // 2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--leads", type=int, default=100_000, help="leads to seed (default 100000)")
    p.add_argument("--seconds", type=float, default=10.0, help="load per page and server (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured load first (2)")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="slices per page, run in ABBA order; --seconds is split among them (2)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="connections in flight (8)")
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: 'raw' keep-alive HTTP/1.1 over asyncio streams (default, light on "
        "CPU) or httpx.AsyncClient",
    )
    p.add_argument(
        "--deep-page",
        type=int,
        default=None,
        help="deep page (1000 with ≥ 50000 leads, else the middle)",
    )
    p.add_argument(
        "--database-url",
        default=SQLITE,
        help="'sqlite' (a temporary file, the default) or a PostgreSQL URL to create a fresh "
        "database through, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    )
    args = p.parse_args(argv)
    if args.leads < 2 * PAGE_SIZE:
        p.error(f"--leads must be at least {2 * PAGE_SIZE}")
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 600):
        p.error("--seconds must be in (0, 600] and --warmup in [0, 600]")
    if not (1 <= args.concurrency <= 256 and 1 <= args.rounds <= 20):
        p.error("--concurrency must be in [1, 256] and --rounds in [1, 20]")
    args.deep_page = args.deep_page or default_deep_page(args.leads)
    if not 2 <= args.deep_page <= args.leads // PAGE_SIZE:
        p.error(f"--deep-page must be between 2 and {args.leads // PAGE_SIZE} (full pages)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deep = args.deep_page
    console.print(f"[bold]command:[/] {command_line()}")
    console.print(
        f"{args.leads:,} leads on {describe(args.database_url)}; pages 1 and {deep:,}; "
        f"{args.concurrency} connections ({args.client}), {args.warmup:g} s warm-up, then "
        f"{args.seconds:g} s per page in {args.rounds} slices"
    )
    results: dict[tuple[str, int], Load] = {}
    commands: list[str] = []
    with fresh_database(args.database_url, "leads") as url:
        started = time.perf_counter()
        seeded = asyncio.run(seed(url, args.leads, [1, deep]))
        console.print(f"seeded {args.leads:,} leads in {time.perf_counter() - started:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(LEADFLOW_DATABASE_URL=url, LEADFLOW_ENV="production", **UNTHROTTLED)
        # One server at a time, so each has the machine to itself (with the load generator).
        for server in (graphql_server(seeded.api_key), baseline_server()):
            port = free_port()
            command = server.command(port)
            env_shown = "LEADFLOW_ENV=production LEADFLOW_DATABASE_URL=<the seeded database>"
            commands.append(f"{env_shown} {shlex.join(['python', *command[1:]])}")
            with running(command, env, f"http://127.0.0.1:{port}", server.ready_path) as pid:
                loads = asyncio.run(measure(server, seeded, [1, deep], port, pid, args))
            for page, load in loads.items():
                results[server.name, page] = load
                console.print(
                    f"{server.name} page {page:,}: {load.rps:,.0f} req/s, "
                    f"p95 {load.ms(0.95):.1f} ms, server CPU {load.server_cpu:.0%}, "
                    f"client CPU {load.client_cpu:.0%}"
                )
    console.print()
    console.print(results_table(results))
    console.print(goals_table(results, deep))
    console.print(f"[bold]command:[/] {command_line()}", soft_wrap=True)
    for shown in commands:
        console.print(f"[bold]server:[/]  {shown}", soft_wrap=True)
    return 1 if any(r.failures for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

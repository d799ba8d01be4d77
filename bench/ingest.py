"""Benchmark: recording interactions over HTTP with 3 LIVE scoring models, beside bare INSERTs.

    python bench/ingest.py [--contacts 10000] [--seconds 10] [--database-url URL]

Seeds a fresh database (a temporary SQLite file, or a new PostgreSQL database
leadflow_bench_<random> created through --database-url and dropped afterwards) the way
bench/publish_rescoring.py does: --contacts contacts, each with a lead, 1 in 25 as many accounts,
~3 interactions per contact over 60 days; turns lead management on, creates and publishes that
script's 3 models of 10 rules (so all 3 are LIVE) and creates an ADMIN API key. Then it starts
the real server, `uvicorn --factory api.app:app_factory` (LEADFLOW_ENV=production), and loads it
with keep-alive HTTP/1.1 connections (bench/leads_list.py's RawSender, light on CPU):

(a) single: `recordInteraction` at --concurrency connections for --seconds;
(b) batched: `recordInteractions` with --batch interactions per call at --batch-concurrency
    connections for --seconds.

Each request carries new interactions of random contacts (mixed types, page visits with
{"url": ...}, named CUSTOM events, ...), recorded "now": every one re-scores its lead with the 3
LIVE models. After a warm-up, each phase is checked: every call answered without errors or
userErrors, the interactions table grew by exactly the interactions acknowledged, and a sample
of the touched leads holds, for every model, the score the Python evaluator gives at the
moment it was stored.

The baseline runs afterwards with the server stopped: the same kind of interactions INSERTed
bare into the same table through the same driver and engine setup
(persistence.database.Database's write engine): (a) one row per transaction at --concurrency
workers, (b) executemany of --batch rows per transaction at --batch-concurrency workers, for
--seconds each. Goals: single ≥ 1/3 of the bare single-insert rate; batched ≥ 10,000
interactions/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from _support import (
    SQLITE,
    UNTHROTTLED,
    command_line,
    console,
    describe,
    fresh_database,
    percentile,
    progress,
    verdict,
)
from leads_list import Endpoint, RawSender, cpu_seconds, free_port, graphql_server, running
from publish_rescoring import INTERACTION_TYPES as TYPE_WEIGHTS
from publish_rescoring import (
    MODELS,
    count_rows,
    create_models,
    interaction,
    publish,
    seed_people,
    weighted,
)
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import insert, select

from api.ids import to_global_id
from domain.model import utcnow
from domain.roles import Role
from domain.scoring import InteractionType, Subject, evaluate
from persistence import tables as t
from persistence.apikeys import ApiKeyStore
from persistence.database import Database

SINGLE_RATIO_GOAL = 1 / 3  # API single interactions/s ÷ bare single-insert rate
BATCH_GOAL = 10_000.0  # API batched interactions/s
SAMPLE_LEADS = 100  # touched leads whose stored scores are checked against the evaluator
HOST = "127.0.0.1"

SINGLE = (
    "mutation Record($input: RecordInteractionInput!) { recordInteraction(input: $input) "
    "{ interactions { id } userErrors { code field message } } }"
)
BATCH = (
    "mutation Record($inputs: [RecordInteractionInput!]!) { recordInteractions(inputs: $inputs) "
    "{ interactions { id } userErrors { code field message } } }"
)

_itype = weighted(TYPE_WEIGHTS)


# ---------------------------------------------------------------- what is recorded


class Draw:
    """New interactions of random contacts: as rows (baseline) and as GraphQL inputs (API)."""

    def __init__(self, contacts: int, seed: int) -> None:
        self.contacts = contacts
        self.rng = random.Random(seed)

    def row(self, now: datetime) -> dict[str, Any]:
        """An interactions row, occurring now (what recordInteraction stores without occurredAt)."""
        contact_id = self.rng.randrange(1, self.contacts + 1)
        itype: InteractionType = _itype(self.rng)
        return interaction(contact_id, itype, now, self.rng)

    def input(self) -> dict[str, Any]:
        """A RecordInteractionInput for the API (no occurredAt: the server's now)."""
        r = self.row(utcnow())
        raw: dict[str, Any] = {
            "type": r["type"],
            "contactId": to_global_id("Contact", r["contact_id"]),
        }
        if r["name"] is not None:
            raw["name"] = r["name"]
        if r["properties"]:
            raw["properties"] = r["properties"]
        return raw


# ---------------------------------------------------------------- figures


@dataclass(slots=True)
class Phase:
    """One load phase: calls and their latencies."""

    name: str
    per_call: int  # interactions per call
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, sorted at the end
    failures: int = 0
    first_failure: str = ""
    wall: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    stored: int | None = None  # rows the interactions table grew by

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def interactions(self) -> int:
        return self.calls * self.per_call

    @property
    def rate(self) -> float:
        """Interactions per second."""
        return self.interactions / self.wall if self.wall else 0.0

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000

    def fail(self, why: str) -> None:
        self.failures += 1
        self.first_failure = self.first_failure or why[:300]


async def drive(
    phase: Phase,
    workers: list[Callable[[], Awaitable[str | None]]],
    seconds: float,
    label: str,
) -> None:
    """Each worker calls its function back to back until `seconds` have passed.

    A function returns None on success, else why it failed.
    """
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), TimeElapsedColumn())
    with progress(*columns) as bar:
        task = bar.add_task(label, total=seconds)
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(call: Callable[[], Awaitable[str | None]]) -> None:
            while (sent := time.perf_counter()) < deadline:
                problem = await call()
                took = time.perf_counter() - sent
                if problem is None:
                    phase.latencies.append(took)
                else:
                    phase.fail(problem)

        async def ticker() -> None:
            while (now := time.perf_counter()) < deadline:
                bar.update(task, completed=now - start)
                await asyncio.sleep(0.2)

        cpu0 = time.process_time()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ticker())
            for call in workers:
                tg.create_task(worker(call))
        phase.wall = time.perf_counter() - start
        phase.client_cpu_s = time.process_time() - cpu0
    phase.latencies.sort()


# ---------------------------------------------------------------- the API


class GraphQLClient:
    """One keep-alive connection posting GraphQL documents (RawSender underneath)."""

    def __init__(self, sender: RawSender) -> None:
        self.sender = sender

    @classmethod
    async def open(cls, port: int, api_key: str) -> GraphQLClient:
        headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "accept": "application/json",
        }
        endpoint = Endpoint("POST", "/graphql", None, headers, lambda _: [])
        return cls(await RawSender.open(HOST, port, endpoint))

    async def post(self, query: str, variables: dict[str, Any], expect: int) -> str | None:
        """Send one mutation; None when it recorded `expect` interactions, else the problem."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        status, raw = await self.sender.post(body)
        if status != 200:
            return f"HTTP {status}: {raw[:200]!r}"
        answer = json.loads(raw)
        if answer.get("errors"):
            return f"errors: {answer['errors']}"
        payload = next(iter(answer["data"].values()))
        if payload["userErrors"]:
            return f"userErrors: {payload['userErrors']}"
        if len(payload["interactions"]) != expect:
            return f"{len(payload['interactions'])} interactions recorded, not {expect}"
        return None

    async def close(self) -> None:
        await self.sender.close()


async def count_interactions(db: Database) -> int:
    async with db.read_engine.connect() as conn:
        return await count_rows(conn, t.interactions)


async def api_phase(
    db: Database,
    port: int,
    pid: int,
    api_key: str,
    phase: Phase,
    draw: Draw,
    seconds: float,
) -> None:
    """Load the server with one kind of mutation; note the CPU it used and the rows it stored."""
    clients = [await GraphQLClient.open(port, api_key) for _ in range(phase.concurrency)]

    def worker(client: GraphQLClient) -> Callable[[], Awaitable[str | None]]:
        async def call() -> str | None:
            if phase.per_call == 1:
                return await client.post(SINGLE, {"input": draw.input()}, 1)
            inputs = [draw.input() for _ in range(phase.per_call)]
            return await client.post(BATCH, {"inputs": inputs}, phase.per_call)

        return call

    try:
        before = await count_interactions(db)
        server0 = await asyncio.to_thread(cpu_seconds, pid)
        await drive(phase, [worker(c) for c in clients], seconds, phase.name)
        phase.server_cpu_s = await asyncio.to_thread(cpu_seconds, pid) - server0
        phase.stored = await count_interactions(db) - before
    finally:
        for c in clients:
            await c.close()


@dataclass(frozen=True, slots=True)
class ScoreCheck:
    leads: int
    scores: int  # (lead, model) pairs compared
    mismatched: list[str]
    missing: int  # (lead, model) pairs with no stored score
    kept: int  # scores stored before the phases, kept: no new interaction could change them


async def check_scores(db: Database, since: datetime, sample: int, seed: int) -> ScoreCheck:
    """Leads touched by the API phases: every LIVE model's stored score, re-evaluated.

    A lead is re-scored in the transaction that records its interaction, with `now` the moment
    stored as updated_at; evaluating the lead again at that moment, with every interaction
    recorded since, must give the same score. That holds for the scores the interactions were
    able to change (re-scored, updated_at in the phases) and for those kept as they were
    (updated_at before them): a later interaction that could change a kept score would make it
    differ here.
    """
    async with db.read() as r:
        touched = (
            await r.conn.scalars(
                select(t.leads.c.id)
                .distinct()
                .join(t.interactions, t.interactions.c.contact_id == t.leads.c.contact_id)
                .where(t.interactions.c.created_at >= since)
            )
        ).all()
        models = await r.scoring_models.live()
        chosen = random.Random(seed).sample(list(touched), min(sample, len(touched)))
        mismatched: list[str] = []
        missing = kept = compared = 0
        for lead_id in sorted(chosen):
            lead = await r.leads.get(lead_id)
            assert lead is not None
            contact = await r.contacts.get(lead.contact_id) if lead.contact_id else None
            account_id = lead.account_id or (contact.account_id if contact else None)
            account = await r.accounts.get(account_id) if account_id else None
            interactions = await r.interactions.for_subject(lead.contact_id, lead.account_id)
            subject = Subject(lead, contact, account, interactions)
            for model in models:
                stored = await r.scores.get(lead_id, model.id)
                if stored is None:
                    missing += 1
                    continue
                kept += stored.updated_at < since
                expected = evaluate(model, subject, stored.updated_at).score
                compared += 1
                if expected != stored.score:
                    mismatched.append(
                        f"lead {lead_id}, {model.name}: stored {stored.score}, evaluator {expected}"
                    )
    return ScoreCheck(len(chosen), compared, mismatched, missing, kept)


# ---------------------------------------------------------------- the baseline


async def baseline_phase(db: Database, phase: Phase, draw: Draw, seconds: float) -> None:
    """Bare INSERTs through the app's write engine: one transaction per call."""
    engine = db.write_engine
    stmt = insert(t.interactions)

    def worker() -> Callable[[], Awaitable[str | None]]:
        async def call() -> str | None:
            now = utcnow()
            rows = [draw.row(now) for _ in range(phase.per_call)]
            async with engine.begin() as conn:
                await conn.execute(stmt, rows[0] if phase.per_call == 1 else rows)
            return None

        return call

    before = await count_interactions(db)
    await drive(phase, [worker() for _ in range(phase.concurrency)], seconds, phase.name)
    phase.stored = await count_interactions(db) - before


# ---------------------------------------------------------------- the run


@dataclass(slots=True)
class Outcome:
    phases: dict[str, Phase] = field(default_factory=dict)
    scores: ScoreCheck | None = None
    server_command: str = ""


async def prepare(url: str, args: argparse.Namespace) -> str:
    """Seed, make the 3 models LIVE, create an ADMIN key; returns the key."""
    db = Database(url)
    try:
        now = utcnow()
        seeded = await seed_people(db, args.contacts, 3.0, now, args.seed)
        ids = await create_models(db, MODELS)
        took = []
        for model_id in ids:
            seconds = await publish(db, model_id, now, 600.0)
            if seconds is None:
                raise RuntimeError("publishing a model took more than 600 s")
            took.append(seconds)
        _, secret = await ApiKeyStore(db).create("bench", Role.ADMIN)
        console.print(
            f"seeded {seeded.contacts:,} contacts with a lead each, {seeded.accounts:,} "
            f"accounts, {seeded.interactions:,} interactions in {seeded.seconds:.1f} s; "
            f"3 models LIVE (published in {' / '.join(f'{x:.2f}' for x in took)} s)"
        )
        return str(secret)
    finally:
        await db.dispose()


async def load_api(
    url: str, port: int, pid: int, api_key: str, args: argparse.Namespace, out: Outcome
) -> None:
    db = Database(url)
    try:
        draw = Draw(args.contacts, args.seed + 1)
        # Unmeasured: connections, caches and the first compilations of each document.
        for per_call in (1, args.batch):
            warm = Phase("warm-up", per_call, args.concurrency)
            await api_phase(db, port, pid, api_key, warm, draw, args.warmup / 2)
            if warm.failures:
                raise RuntimeError(f"the warm-up failed: {warm.first_failure}")
        since = utcnow()
        single = Phase("API recordInteraction", 1, args.concurrency)
        await api_phase(db, port, pid, api_key, single, draw, args.seconds)
        batched = Phase(
            f"API recordInteractions ({args.batch}/call)", args.batch, args.batch_concurrency
        )
        await api_phase(db, port, pid, api_key, batched, draw, args.seconds)
        out.phases["api single"], out.phases["api batch"] = single, batched
        for p in (single, batched):
            console.print(
                f"{p.name}: {p.rate:,.0f} interactions/s, p95 {p.ms(0.95):.1f} ms per call, "
                f"{p.failures} failed"
            )
        with console.status("checking stored scores"):
            out.scores = await check_scores(db, since, SAMPLE_LEADS, args.seed)
    finally:
        await db.dispose()


async def load_baseline(url: str, args: argparse.Namespace, out: Outcome) -> None:
    db = Database(url)
    try:
        draw = Draw(args.contacts, args.seed + 2)
        await baseline_phase(db, Phase("warm-up", 1, args.concurrency), draw, args.warmup / 2)
        single = Phase("bare INSERT (1/tx)", 1, args.concurrency)
        await baseline_phase(db, single, draw, args.seconds)
        batched = Phase(f"bare executemany ({args.batch}/tx)", args.batch, args.batch_concurrency)
        await baseline_phase(db, batched, draw, args.seconds)
        out.phases["base single"], out.phases["base batch"] = single, batched
        for p in (single, batched):
            console.print(f"{p.name}: {p.rate:,.0f} interactions/s, p95 {p.ms(0.95):.1f} ms")
    finally:
        await db.dispose()


# ---------------------------------------------------------------- report


def report(out: Outcome, args: argparse.Namespace) -> bool:
    """Print the figures and checks; True when every call and check succeeded."""
    table = Table(title="recording interactions, 3 LIVE models", title_justify="left")
    columns = ("phase", "conc.", "interactions/s", "calls", "p50 ms", "p95 ms", "p99 ms")
    for name in (*columns, "failed", "stored", "server CPU", "client CPU"):
        table.add_column(name, justify="left" if name == "phase" else "right")
    for p in out.phases.values():
        server = "" if p.server_cpu_s is None else f"{p.server_cpu_s / p.wall:.0%}"
        table.add_row(
            p.name,
            str(p.concurrency),
            f"{p.rate:,.0f}",
            f"{p.calls:,}",
            f"{p.ms(0.50):.1f}",
            f"{p.ms(0.95):.1f}",
            f"{p.ms(0.99):.1f}",
            f"{p.failures:,}" if not p.failures else f"[red]{p.failures:,}[/]",
            f"{p.stored:,}" if p.stored is not None else "",
            server,
            f"{p.client_cpu_s / p.wall:.0%}" if p.wall else "",
        )
    console.print(table)
    console.print(
        "ms: per call (one interaction, or a batch); stored: rows the interactions table grew "
        "by; CPU: cores kept busy on average (server: the uvicorn process; client: this one, "
        "which runs the baseline itself)."
    )

    api1, apib = out.phases["api single"], out.phases["api batch"]
    base1, baseb = out.phases["base single"], out.phases["base batch"]
    goals = Table(title="against the baseline", title_justify="left")
    for name in ("figure", "value", "goal", ""):
        goals.add_column(name, justify="left" if name in ("figure", "") else "right")
    ratio1 = api1.rate / base1.rate if base1.rate else 0.0
    goals.add_row(
        "single: API ÷ bare single-row INSERT",
        f"{ratio1:.3f}",
        f"≥ {SINGLE_RATIO_GOAL:.3f}",
        verdict(ratio1 >= SINGLE_RATIO_GOAL),
    )
    goals.add_row(
        f"batched, {args.batch} per call: API interactions/s",
        f"{apib.rate:,.0f}",
        f"≥ {BATCH_GOAL:,.0f}",
        verdict(apib.rate >= BATCH_GOAL),
    )
    ratiob = apib.rate / baseb.rate if baseb.rate else 0.0
    goals.add_row(
        f"batched, {args.batch} per call: API ÷ bare executemany", f"{ratiob:.3f}", "", ""
    )
    console.print(goals)

    checks = Table(title="checks", title_justify="left")
    for name in ("check", "value", "expected", ""):
        checks.add_column(name, justify="left" if name in ("check", "") else "right")
    ok = True
    for p in out.phases.values():
        good = p.failures == 0 and p.stored == p.interactions
        ok = ok and good
        checks.add_row(
            f"{p.name}: failed calls; rows stored",
            f"{p.failures:,}; {p.stored:,}",
            f"0; {p.interactions:,}",
            verdict(good),
        )
        if p.first_failure:
            checks.add_row("  first failure", p.first_failure, "", "")
    s = out.scores
    if s is not None:
        good = not s.mismatched and s.missing == 0 and s.scores > 0
        ok = ok and good
        checks.add_row(
            f"stored scores of {s.leads} touched leads ≠ evaluator at their updated_at "
            f"({s.kept} kept from before: no new interaction could change them)",
            f"{len(s.mismatched)} of {s.scores}, {s.missing} missing",
            f"0 of {s.leads * len(MODELS)}, 0",
            verdict(good),
        )
        for line in s.mismatched[:5]:
            checks.add_row(f"  {line}", "", "", "")
    console.print(checks)
    return ok


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--contacts", type=int, default=10_000, help="contacts, each with a lead")
    p.add_argument("--seconds", type=float, default=10.0, help="load per phase (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured load first (2)")
    p.add_argument("--concurrency", type=int, default=8, help="connections for (a) (8)")
    p.add_argument("--batch-concurrency", type=int, default=4, help="connections for (b) (4)")
    p.add_argument("--batch", type=int, default=100, help="interactions per batched call (100)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument(
        "--database-url",
        default=SQLITE,
        help="'sqlite' (a temporary file, the default) or a PostgreSQL URL to create a fresh "
        "database through, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    )
    args = p.parse_args(argv)
    if not 100 <= args.contacts <= 1_000_000:
        p.error("--contacts must be between 100 and 1000000")
    if not (0 < args.seconds <= 600 and 0 < args.warmup <= 600):
        p.error("--seconds must be in (0, 600] and --warmup in (0, 600]")
    if not (1 <= args.concurrency <= 256 and 1 <= args.batch_concurrency <= 256):
        p.error("--concurrency and --batch-concurrency must be in [1, 256]")
    if not 2 <= args.batch <= 1000:
        p.error("--batch must be between 2 and 1000 (the API's limit)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console.print(f"[bold]command:[/] {command_line()}")
    console.print(
        f"{args.contacts:,} contacts/leads on {describe(args.database_url)}; 3 LIVE models; "
        f"(a) recordInteraction at {args.concurrency} connections, (b) recordInteractions "
        f"of {args.batch} at {args.batch_concurrency}; {args.warmup:g} s warm-up, "
        f"{args.seconds:g} s per phase"
    )
    out = Outcome()
    with fresh_database(args.database_url, "ingest") as url:
        api_key = asyncio.run(prepare(url, args))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(LEADFLOW_DATABASE_URL=url, LEADFLOW_ENV="production", **UNTHROTTLED)
        server = graphql_server(api_key)
        port = free_port()
        command = server.command(port)
        shown = shlex.join(["python", *command[1:]])
        out.server_command = f"LEADFLOW_ENV=production LEADFLOW_DATABASE_URL=<seeded> {shown}"
        with running(command, env, f"http://{HOST}:{port}", server.ready_path) as pid:
            asyncio.run(load_api(url, port, pid, api_key, args, out))
        # The server is stopped: the baseline has the machine to itself, like the server had.
        asyncio.run(load_baseline(url, args, out))
    console.print()
    ok = report(out, args)
    console.print(f"[bold]command:[/] {command_line()}", soft_wrap=True)
    console.print(f"[bold]server:[/]  {out.server_command}", soft_wrap=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

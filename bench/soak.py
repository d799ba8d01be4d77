"""Soak: a server under steady mixed load for many minutes; lost events, errors, p95s, RSS drift.

    python bench/soak.py [--minutes 15] [--warmup-minutes W] [--subscribers 20]
                         [--ingest-rate 20] [--batch-rate 1] [--batch-size 50] [--list-rate 10]
                         [--leads 2000] [--database-url URL] [--redis-url URL]
                         [--server-setting NAME=VALUE ...]

Seeds a fresh database (embedded SQLite by default) with --leads leads, each with its contact,
a LIVE scoring model that gives a point per page visit (so nearly every interaction changes a
score and records a SCORE_CHANGED event) and a second model in DRAFT. Then it starts the real
server as users run it (`leadflow serve`, production settings) in a subprocess and runs,
at fixed rates for --minutes:

* `recordInteraction` (single), `recordInteractions` (batches of --batch-size), each with
  idempotency keys, on random contacts;
* `leads(first: 50)` list queries, filtered or ordered at random;
* --subscribers WebSocket subscribers of `leadEvents` (from the start position), counting the
  events they receive and checking each arrives once, in order, without a gap;
* halfway through, one `publishScoringModel` of the DRAFT model: it re-scores every lead at once
  and sends a burst of events to every subscriber.

Report: lost events per subscriber (events in the table after the start position against events
received: must be 0), duplicates and gaps, errors by kind, p95 per operation (overall, and in
the first against the last minute after warm-up: the same run's baseline for latency drift),
and the server's RSS sampled every few seconds, with its drift extrapolated per hour from
least-squares lines (goal < 5 %/h of the RSS at the start of each stretch): the verdict takes
the steady stretches, from the end of warm-up to the publish and from 30 s after the publish to
the end, and reports the publish's one-off step between them in MiB; the line across the
publish is printed too.
A rich live display shows progress on a terminal. Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from _support import (
    SQLITE,
    command_line,
    console,
    describe,
    fresh_database,
    insert_contacts_with_leads,
    percentile,
    verdict,
)
from leads_list import free_port, running
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from api.ids import to_global_id
from domain import scoring_services as ss
from domain.events import decode_event_cursor, encode_event_cursor
from domain.model import Feature, utcnow
from domain.roles import Role
from persistence import tables as t
from persistence.apikeys import ApiKeyStore
from persistence.brokers import MemoryBroker
from persistence.database import Database
from persistence.migrate import upgrade
from persistence.relay import Relay

DRIFT_GOAL = 5.0  # % of RSS per hour
RSS_EVERY = 5.0  # seconds between RSS samples
TIMEOUT = 30.0  # per request

RECORD_ONE = (
    "mutation($i: RecordInteractionInput!) { recordInteraction(input: $i) "
    "{ interactions { id } userErrors { code message } } }"
)
RECORD_MANY = (
    "mutation($i: [RecordInteractionInput!]!) { recordInteractions(inputs: $i) "
    "{ interactions { id } userErrors { code message } } }"
)
LIST_QUERIES = [
    "{ leads(first: 50) { edges { node { id topic email stage statusReason } } "
    "pageInfo { endCursor } } }",
    "{ leads(first: 50, orderBy: {field: CREATED_AT, direction: DESC}) "
    "{ edges { node { id topic companyName } } } }",
    "{ leads(first: 50, filter: {state: [OPEN]}) { edges { node { id topic stage } } } }",
]
PUBLISH = "mutation($id: ID!) { publishScoringModel(id: $id) { userErrors { code message } } }"
SUBSCRIBE = "subscription($after: String) { leadEvents(after: $after) { cursor type } }"


# ---------------------------------------------------------------- seeding


@dataclass
class Seed:
    key: str
    contacts: list[str]  # global ids
    draft_model: str  # global id of the model published halfway
    start_position: int


async def seed(url: str, leads: int) -> Seed:
    db = Database(url)
    try:
        await upgrade(db.write_engine)
        now = utcnow()
        async with db.write_engine.begin() as conn:
            contacts = await insert_contacts_with_leads(
                conn,
                leads,
                now,
                lambda i: {
                    "email": f"soak{i}@bench.io",
                    "first_name": "Soak",
                    "attributes": {"tier": random.choice(["gold", "silver"])},
                },
                lambda i, c: {
                    "topic": f"Soak lead {c}",
                    "email": f"soak{i}@bench.io",
                    "company_name": f"Company {i % 97}",
                    "contact_id": c,
                },
            )
        async with db.uow() as uow:
            await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
            visits = {
                "name": "visits",
                "rules": [
                    {
                        "name": "visit",
                        "points": 1,
                        "perOccurrence": True,
                        "condition": {"interaction": {"type": "PAGE_VISITED"}},
                    }
                ],
            }
            live = await ss.create_scoring_model(uow, visits)
            await ss.publish_scoring_model(uow, live.id, utcnow())
            fit = {
                "name": "fit and recent activity",
                "rules": [
                    {
                        "name": "gold",
                        "points": 20,
                        "condition": {
                            "attribute": {
                                "entity": "CONTACT",
                                "field": "attributes.tier",
                                "operator": "EQ",
                                "value": "gold",
                            }
                        },
                    },
                    {
                        "name": "active",
                        "points": 10,
                        "condition": {"interaction": {"type": "PAGE_VISITED", "withinDays": 30}},
                    },
                ],
                "salesReadyThreshold": 25,
            }
            draft = await ss.create_scoring_model(uow, fit)
            await uow.commit()
        # Everything the seed did is positioned before the subscribers start after it.
        start = await Relay(db, MemoryBroker()).run_once()
        _, key = await ApiKeyStore(db).create("soak", Role.ADMIN)
        return Seed(
            key,
            [to_global_id("Contact", int(c)) for c in contacts],
            to_global_id("ScoringModel", draft.id),
            start,
        )
    finally:
        await db.dispose()


async def table_events(url: str, after: int) -> tuple[int, int, int]:
    """(positioned events after `after`, their highest position, unpositioned events)."""
    db = Database(url)
    try:
        async with db.read() as r:
            c = t.lead_events.c
            row = (
                await r.conn.execute(
                    select(func.count(), func.coalesce(func.max(c.position), after)).where(
                        c.position > after
                    )
                )
            ).one()
            pending = await r.conn.scalar(select(func.count()).where(c.position.is_(None)))
        return int(row[0]), int(row[1]), int(pending or 0)
    finally:
        await db.dispose()


# ---------------------------------------------------------------- measuring


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    latencies: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    errors: Counter[str] = field(default_factory=Counter)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, KiB)
    rss_parts: list[tuple[int, ...]] = field(default_factory=list)  # RSS_PARTS of each sample
    interactions: int = 0
    publish_at: float | None = None

    def ok(self, op: str, seconds: float) -> None:
        self.latencies[op].append((time.monotonic() - self.started, seconds))

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


RSS_PARTS = ("RssAnon", "RssFile", "RssShmem")  # heap, mapped files, shared memory (KiB)


def rss_kib(pid: int) -> tuple[int, tuple[int, ...]]:
    """The process's RSS and its parts (RSS_PARTS), from /proc."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == "VmRSS" or name in RSS_PARTS:
                fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), tuple(fields.get(p, 0) for p in RSS_PARTS)


class Subscriber:
    """One leadEvents subscription; reconnects with its last cursor if it is ever cut off."""

    def __init__(self, ws_url: str, key: str, start: int, stats: Stats) -> None:
        self.ws_url, self.key, self.stats = ws_url, key, stats
        self.position = start
        self.received = 0
        self.duplicates = 0
        self.gaps = 0
        self.connected = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.stats.error(f"subscription cut off ({type(e).__name__})")
                await asyncio.sleep(0.5)

    async def _session(self) -> None:
        async with websockets.connect(
            self.ws_url, subprotocols=["graphql-transport-ws"], max_size=2**22, max_queue=None
        ) as ws:  # type: ignore[list-item]
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {self.key}"}}
            await ws.send(json.dumps(init))
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no connection_ack: {ack}")
            variables = {"after": encode_event_cursor(self.position)}
            message = {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": variables},
            }
            await ws.send(json.dumps(message))
            self.connected.set()
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                    continue
                if kind != "next" or message["payload"].get("errors"):
                    raise RuntimeError(f"subscription ended: {str(message)[:200]}")
                position = decode_event_cursor(message["payload"]["data"]["leadEvents"]["cursor"])
                if position <= self.position:
                    self.duplicates += 1
                    continue
                if position != self.position + 1:
                    self.gaps += 1
                self.position = position
                self.received += 1


class Load:
    def __init__(self, base: str, seed_: Seed, stats: Stats, args: argparse.Namespace) -> None:
        self.base, self.seed, self.stats, self.args = base, seed_, stats, args
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {seed_.key}"},
            limits=limits,
            timeout=TIMEOUT,
        )
        self.in_flight: Counter[str] = Counter()
        self.counter = 0

    async def call(self, op: str, query: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            response = await self.client.post(
                "/graphql", json={"query": query, "variables": variables}
            )
        except httpx.TimeoutException:
            self.stats.error(f"{op}: timeout")
            return None
        except httpx.TransportError as e:
            self.stats.error(f"{op}: {type(e).__name__}")
            return None
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            self.stats.error(f"{op}: HTTP {response.status_code}")
            return None
        body = response.json()
        if body.get("errors"):
            codes = {(e.get("extensions") or {}).get("code", "no code") for e in body["errors"]}
            self.stats.error(f"{op}: GraphQL error {','.join(sorted(map(str, codes)))}")
            return None
        data: dict[str, Any] = body["data"]
        payload = next(iter(data.values()))
        if isinstance(payload, dict) and payload.get("userErrors"):
            codes = {e["code"] for e in payload["userErrors"]}
            self.stats.error(f"{op}: userError {','.join(sorted(codes))}")
            return None
        self.stats.ok(op, elapsed)
        return data

    def _interaction(self) -> dict[str, Any]:
        self.counter += 1
        return {
            "contactId": random.choice(self.seed.contacts),
            "type": "PAGE_VISITED",
            "properties": {"url": f"/page/{self.counter % 50}"},
            "idempotencyKey": f"soak-{self.counter}",
        }

    async def single(self) -> None:
        if await self.call("recordInteraction", RECORD_ONE, {"i": self._interaction()}):
            self.stats.interactions += 1

    async def batch(self) -> None:
        inputs = [self._interaction() for _ in range(self.args.batch_size)]
        if await self.call(
            f"recordInteractions x{self.args.batch_size}", RECORD_MANY, {"i": inputs}
        ):
            self.stats.interactions += len(inputs)

    async def listing(self) -> None:
        await self.call("leads list", random.choice(LIST_QUERIES), {})

    async def publish(self) -> None:
        self.stats.publish_at = time.monotonic() - self.stats.started
        await self.call("publishScoringModel", PUBLISH, {"id": self.seed.draft_model})

    async def at_rate(self, name: str, rate: float, job: Any, until: float, cap: int = 32) -> None:
        """Start `job` `rate` times a second until `until`; at most `cap` in flight."""
        if rate <= 0:
            return
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        n = 0
        while True:
            at = start + n / rate
            if at >= until:
                break
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            n += 1
            if len(tasks) >= cap:
                # The server is behind: the load generator holds back instead of piling up.
                self.stats.error(f"{name}: not sent, {cap} calls already waiting (load generator)")
                continue
            task = asyncio.create_task(job())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


def p95_ms(
    samples: list[tuple[float, float]], low: float = 0.0, high: float = float("inf")
) -> float:
    values = sorted(s for at, s in samples if low <= at < high)
    return percentile(values, 0.95) * 1000


def drift_per_hour(points: list[tuple[float, int]]) -> tuple[float, float]:
    """(least-squares slope in KiB per hour, that slope as % of the first point's RSS per hour)."""
    if len(points) < 3:
        return float("nan"), float("nan")
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    slope = sxy / sxx if sxx else 0.0  # KiB per second
    base = points[0][1]
    return slope * 3600, slope * 3600 / base * 100 if base else float("nan")


def live_table(stats: Stats, subscribers: list[Subscriber], total: float) -> Table:
    elapsed = time.monotonic() - stats.started
    table = Table(title=f"soak: {elapsed / 60:.1f} of {total / 60:.1f} min", show_header=True)
    table.add_column("operation")
    table.add_column("calls", justify="right")
    table.add_column("p95 last 60 s", justify="right")
    for op, samples in sorted(stats.latencies.items()):
        table.add_row(op, f"{len(samples):,}", f"{p95_ms(samples, elapsed - 60):.1f} ms")
    received = [s.received for s in subscribers]
    table.add_row("events received (min/max)", f"{min(received):,} / {max(received):,}", "")
    table.add_row("errors", f"{sum(stats.errors.values()):,}", "")
    if stats.rss:
        table.add_row("server RSS", f"{stats.rss[-1][1] / 1024:.1f} MiB", "")
    return table


async def soak(url: str, seed_: Seed, pid: int, port: int, args: argparse.Namespace) -> bool:
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql"
    stats = Stats()
    subscribers = [
        Subscriber(ws_url, seed_.key, seed_.start_position, stats) for _ in range(args.subscribers)
    ]
    sub_tasks = [asyncio.create_task(s.run()) for s in subscribers]
    async with asyncio.timeout(60):
        await asyncio.gather(*(s.connected.wait() for s in subscribers))
    load = Load(base, seed_, stats, args)
    total = args.minutes * 60
    stats.started = time.monotonic()
    until = stats.started + total

    async def sample_rss() -> None:
        while True:
            total, parts = rss_kib(pid)
            stats.rss.append((time.monotonic() - stats.started, total))
            stats.rss_parts.append(parts)
            await asyncio.sleep(RSS_EVERY)

    async def publish_halfway() -> None:
        await asyncio.sleep(total / 2)
        await load.publish()

    sampler = asyncio.create_task(sample_rss())
    jobs = [
        load.at_rate("recordInteraction", args.ingest_rate, load.single, until),
        load.at_rate("recordInteractions", args.batch_rate, load.batch, until, cap=8),
        load.at_rate("leads list", args.list_rate, load.listing, until),
        publish_halfway(),
    ]
    runner = asyncio.gather(*jobs)
    if console.is_terminal:
        with Live(console=console, refresh_per_second=1, transient=True) as live:
            while not runner.done():
                live.update(live_table(stats, subscribers, total))
                await asyncio.wait([runner], timeout=1.0)
    else:
        while not runner.done():
            await asyncio.wait([runner], timeout=60.0)
            elapsed = time.monotonic() - stats.started
            calls = sum(len(v) for v in stats.latencies.values())
            rss = stats.rss[-1][1] / 1024 if stats.rss else 0
            console.print(
                f"  {elapsed / 60:4.1f} min: {calls:,} calls, {stats.interactions:,} interactions, "
                f"{sum(stats.errors.values())} errors, events received ≥ "
                f"{min(s.received for s in subscribers):,}, RSS {rss:.1f} MiB"
            )
    await runner
    run_seconds = time.monotonic() - stats.started
    sampler.cancel()
    await load.client.aclose()

    # Drain: every subscriber must reach the table's head (positioned after the last commit).
    drain_started = time.monotonic()
    while True:
        count, head, pending = await table_events(url, seed_.start_position)
        if pending == 0 and all(s.position >= head for s in subscribers):
            break
        if time.monotonic() - drain_started > 120:
            break
        await asyncio.sleep(0.5)
    drain = time.monotonic() - drain_started
    for task in sub_tasks:
        task.cancel()
    await asyncio.gather(*sub_tasks, return_exceptions=True)

    # ------------------------------------------------------------ report
    console.print()
    console.print(
        f"ran {run_seconds / 60:.1f} min: {stats.interactions:,} interactions recorded, "
        f"publish at {stats.publish_at or 0:.0f} s; subscribers drained in {drain:.1f} s"
    )
    lost = [max(0, count - s.received) for s in subscribers]
    duplicates = sum(s.duplicates for s in subscribers)
    gaps = sum(s.gaps for s in subscribers)
    console.print(
        f"events: {count:,} in the table after the start ({pending} unpositioned); each of "
        f"{len(subscribers)} subscribers received {min(s.received for s in subscribers):,} to "
        f"{max(s.received for s in subscribers):,}; lost {sum(lost):,} (max {max(lost)} per "
        f"subscriber), duplicates {duplicates}, gaps {gaps}"
    )
    warmup = args.warmup_minutes * 60
    table = Table(title="latency (ms)")
    table.add_column("operation")
    table.add_column("calls", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    table.add_column("p95 1st min after warm-up", justify="right")
    table.add_column("p95 last min", justify="right")
    for op, samples in sorted(stats.latencies.items()):
        values = sorted(s for _, s in samples)
        table.add_row(
            op,
            f"{len(samples):,}",
            f"{percentile(values, 0.5) * 1000:.1f}",
            f"{percentile(values, 0.95) * 1000:.1f}",
            f"{p95_ms(samples, warmup, warmup + 60):.1f}",
            f"{p95_ms(samples, run_seconds - 60):.1f}",
        )
    console.print(table)
    if stats.errors:
        console.print("errors by kind:")
        for kind, n in stats.errors.most_common():
            console.print(f"  {n:>7,}  {kind}")
    else:
        console.print("errors: none")

    after_warmup = [(at, kib) for at, kib in stats.rss if at >= warmup]
    rss_values = [kib for _, kib in stats.rss]
    kib_h, pct_h = drift_per_hour(after_warmup)
    console.print(
        f"server RSS: {rss_values[0] / 1024:.1f} MiB at start, "
        f"{after_warmup[0][1] / 1024 if after_warmup else float('nan'):.1f} MiB after warm-up "
        f"({args.warmup_minutes:g} min, the baseline), {rss_values[-1] / 1024:.1f} MiB at the end, "
        f"max {max(rss_values) / 1024:.1f} MiB; {len(stats.rss)} samples every {RSS_EVERY:g} s"
    )
    # Where it is: the heap (anonymous memory), mapped files (the SQLite WAL index, libraries)
    # or shared memory, at the end of warm-up, just before the publish and at the end.
    last = len(stats.rss) - 1
    times = [at for at, _ in stats.rss]
    marks = [("after warm-up", next((i for i, at in enumerate(times) if at >= warmup), last))]
    if stats.publish_at is not None:
        before_publish = [i for i, at in enumerate(times) if at < stats.publish_at]
        marks.append(("before the publish", before_publish[-1] if before_publish else 0))
    marks.append(("end", last))
    shown = [
        f"{label} " + " / ".join(f"{kib / 1024:.1f}" for kib in stats.rss_parts[i])
        for label, i in marks
    ]
    console.print(f"  RSS in MiB, {' / '.join(RSS_PARTS)}: " + "; ".join(shown))
    console.print(
        f"RSS line after warm-up (least squares, across the publish): {kib_h / 1024:+.1f} MiB/h "
        f"= {pct_h:+.2f} %/h"
    )
    # Drift is growth under steady load. The publish adds a one-off step (a second LIVE model's
    # working set, the caches its re-scoring fills) that a line across it turns into a slope;
    # the verdict takes the steeper of the steady stretches before it and once it has settled.
    steady = [pct_h]
    if stats.publish_at is not None:
        before = [(at, kib) for at, kib in stats.rss if warmup <= at < stats.publish_at]
        settled = [(at, kib) for at, kib in stats.rss if at >= max(warmup, stats.publish_at + 30)]
        if len(before) >= 3 and len(settled) >= 3:
            _, before_pct = drift_per_hour(before)
            _, settled_pct = drift_per_hour(settled)
            step = (settled[0][1] - before[-1][1]) / 1024
            console.print(
                f"  from the end of warm-up to the publish: {before_pct:+.2f} %/h; the publish: "
                f"{step:+.1f} MiB once; from 30 s after it to the end: {settled_pct:+.2f} %/h"
            )
            steady = [before_pct, settled_pct]
    drift_ok = max(steady) < DRIFT_GOAL
    console.print(
        f"RSS drift under steady load < {DRIFT_GOAL:g} %/h "
        f"(steepest stretch {max(steady):+.2f} %/h): {verdict(drift_ok)}"
    )
    events_ok = sum(lost) == 0 and duplicates == 0 and gaps == 0 and pending == 0
    console.print(f"no lost, duplicated or out-of-order event: {verdict(events_ok)}")
    return events_ok and drift_ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument(
        "--warmup-minutes", type=float, default=None, help="default: 1/5 of the run, at most 3"
    )
    p.add_argument("--subscribers", type=int, default=20)
    p.add_argument(
        "--ingest-rate", type=float, default=20.0, help="recordInteraction calls per second"
    )
    p.add_argument(
        "--batch-rate", type=float, default=1.0, help="recordInteractions calls per second"
    )
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--list-rate", type=float, default=10.0, help="lead list queries per second")
    p.add_argument("--leads", type=int, default=2000)
    p.add_argument("--database-url", default=SQLITE)
    p.add_argument("--redis-url", default=None)
    p.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting, e.g. MEMORY_TRIM_INTERVAL_SECONDS=0 (LEADFLOW_ is added)",
    )
    args = p.parse_args(argv)
    if args.warmup_minutes is None:
        args.warmup_minutes = min(3.0, args.minutes / 5)
    console.print(f"[bold]command:[/] {command_line()}")
    console.print(
        f"{args.minutes:g} min on {describe(args.database_url)}"
        f"{', Redis ' + args.redis_url if args.redis_url else ''}: {args.ingest_rate:g} single "
        f"interactions/s, {args.batch_rate:g} batches/s of {args.batch_size}, {args.list_rate:g} "
        f"lead lists/s, {args.subscribers} subscribers, {args.leads:,} leads"
    )
    with fresh_database(args.database_url, "soak") as url:
        seed_ = asyncio.run(seed(url, args.leads))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(
            LEADFLOW_DATABASE_URL=url, LEADFLOW_ENV="production", LEADFLOW_LOG_LEVEL="warning"
        )
        if args.redis_url:
            env["LEADFLOW_REDIS_URL"] = args.redis_url
        for setting in args.server_setting:
            name, _, value = setting.partition("=")
            env[f"LEADFLOW_{name.upper().removeprefix('LEADFLOW_')}"] = value
        port = free_port()
        # `leadflow serve`: uvicorn with the server's own options (keep-alive, message cap).
        command = [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
        with running(command, env, f"http://127.0.0.1:{port}", "/readyz") as pid:
            ok = asyncio.run(soak(url, seed_, pid, port, args))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

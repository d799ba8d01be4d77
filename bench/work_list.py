"""Benchmark: `workList` and `Lead.timeline(first: 50)` over HTTP beside plain SQL.

    python bench/work_list.py [--activities 1000000] [--seconds 10] [--database-url URL]

Seeds a fresh database (a temporary SQLite file, or a new PostgreSQL database through
--database-url, dropped afterwards) with --users sellers, --leads leads owned in turn by them
(each with its positioned CREATED event), 10 sequences attached to half of the leads (current
steps due from 30 days ago to 30 days ahead), and --activities activities (Core executemany)
spread over the leads and their owners: every kind, half of the tasks open, times over the past
year and the coming month. One lead, the busy one, gets --busy of them.

Then runs two servers side by side, loading one at a time:

* the real API (`uvicorn --factory api.app:app_factory`, LEADFLOW_ENV=production), queried with
  `workList(ownerId: <seller 1>, first: 50)` and `lead(id: <busy>) { timeline(first: 50) }`;
* the baseline, bench/plain_work_app.py: one hand-written SQL statement per request returning
  the same rows and fields, as plain JSON through the same driver.

Both answers are checked to hold the same items in the same order before measuring. Each query
gets --concurrency keep-alive connections for --seconds per server after a warm-up, in --rounds
slices alternating the servers in ABBA order (so a drifting machine favours neither); p95
latencies are compared (goal: GraphQL p95 at most twice the baseline's).
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from _support import (
    BENCH,
    SQLITE,
    UNTHROTTLED,
    command_line,
    console,
    describe,
    fresh_database,
    verdict,
)
from leads_list import (
    Endpoint,
    Load,
    RawSender,
    Sender,
    Server,
    free_port,
    run_slice,
    running,
)
from rich.table import Table
from sqlalchemy import insert, text

from api.ids import from_global_id, to_global_id
from domain.roles import Role
from persistence import tables as t
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from persistence.migrate import upgrade

GOAL = 2.0  # GraphQL p95 ÷ baseline p95
BATCH = 10_000
KINDS = ("PHONE_CALL", "EMAIL", "APPOINTMENT", "TASK", "NOTE", "POST")
STEPS = [
    {"kind": "CALL", "title": "Intro call", "notes": None, "waitDays": 0},
    {"kind": "WAIT", "title": "Wait 2 days", "notes": None, "waitDays": 2},
    {"kind": "EMAIL", "title": "Follow-up", "notes": None, "waitDays": 0},
    {"kind": "WAIT", "title": "Wait 3 days", "notes": None, "waitDays": 3},
    {"kind": "TASK", "title": "Send proposal", "notes": None, "waitDays": 0},
]

WORK_QUERY = """query W($o: ID!) { workList(ownerId: $o, first: 50) {
  edges { cursor node { dueAt lead { id topic }
    sequenceRun { id currentStep { position kind title } } activity { id kind subject } } }
  pageInfo { hasNextPage endCursor } } }"""
TIMELINE_QUERY = """query T($id: ID!) { lead(id: $id) { timeline(first: 50) {
  edges { cursor node { at activity { id kind subject completed } event { type } } }
  pageInfo { hasNextPage endCursor } } } }"""


@dataclass(frozen=True, slots=True)
class Seeded:
    api_key: str
    owner: int
    busy: int


async def seed(url: str, args: argparse.Namespace) -> Seeded:
    rng = random.Random(11)
    db = Database(url)
    now = datetime.now(UTC)
    try:
        await upgrade(db.write_engine)
        started = time.perf_counter()
        async with db.write_engine.begin() as conn:
            await conn.execute(
                insert(t.users),
                [
                    {
                        "name": f"Seller {u}",
                        "email": f"s{u}@x.io",
                        "kind": "SELLER",
                        "created_at": now,
                    }
                    for u in range(1, args.users + 1)
                ],
            )
            await conn.execute(
                insert(t.sequences),
                [{"name": f"Seq {s}", "steps": STEPS, "created_at": now} for s in range(10)],
            )
            for low in range(0, args.leads, BATCH):
                ids = range(low + 1, min(low + BATCH, args.leads) + 1)
                leads = [
                    {
                        "id": i,
                        "topic": f"Lead {i}",
                        "attributes": {},
                        "source": "MANUAL",
                        "state": "OPEN",
                        "status_reason": "NEW",
                        "sales_ready": True,
                        "stage": "SALES_ACCEPTANCE",
                        "owner_id": (i - 1) % args.users + 1,
                        "created_at": now - timedelta(days=400),
                        "updated_at": now,
                    }
                    for i in ids
                ]
                await conn.execute(insert(t.leads), leads)
                events = [
                    {
                        "id": i,
                        "lead_id": i,
                        "type": "CREATED",
                        "occurred_at": now - timedelta(days=400),
                        "payload": {},
                        "position": i,
                    }
                    for i in ids
                ]
                await conn.execute(insert(t.lead_events), events)
                runs = [
                    {
                        "lead_id": i,
                        "sequence_id": rng.randrange(1, 11),
                        "step": rng.choice((0, 2, 4)),
                        "due_at": now + timedelta(seconds=rng.uniform(-30, 30) * 86400),
                        "status": "ACTIVE",
                        "started_at": now - timedelta(days=31),
                    }
                    for i in ids
                    if i % 2 == 0
                ]
                await conn.execute(insert(t.sequence_runs), runs)
            done = 0
            while done < args.activities:
                rows = []
                for _ in range(min(BATCH, args.activities - done)):
                    lead = 1 if done < args.busy else rng.randrange(1, args.leads + 1)
                    kind = rng.choice(KINDS)
                    when = now + timedelta(seconds=rng.uniform(-365, 30) * 86400)
                    rows.append(
                        {
                            "kind": kind,
                            "subject": f"{kind.lower()} {done}",
                            "lead_id": lead,
                            "owner_id": (lead - 1) % args.users + 1,
                            "completed": kind != "TASK" or rng.random() < 0.5,
                            "occurred_at": when,
                            "created_at": when,
                        }
                    )
                    done += 1
                await conn.execute(insert(t.activities), rows)
                if done % 200_000 == 0:
                    console.print(f"  {done:,} activities")
            if db.is_sqlite:
                await conn.execute(text("ANALYZE"))
        if not db.is_sqlite:
            async with db.write_engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM ANALYZE")
                )
        console.print(f"seeded in {time.perf_counter() - started:.1f} s" + " " * 20)
        _, secret = await ApiKeyStore(db).create("bench", Role.ADMIN)
        return Seeded(secret, 1, 1)
    finally:
        await db.dispose()


# ---------------------------------------------------------------- servers and checks


def work_items_graphql(body: Any) -> list[tuple[str, int]]:
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    out = []
    for edge in body["data"]["workList"]["edges"]:
        node = edge["node"]
        if node["activity"]:
            out.append(("a", from_global_id(node["activity"]["id"])[1]))
        else:
            out.append(("s", from_global_id(node["lead"]["id"])[1]))
    return out


def work_items_plain(body: Any) -> list[tuple[str, int]]:
    return [
        ("a", i["activity"]["id"]) if "activity" in i else ("s", i["lead"]["id"])
        for i in body["items"]
    ]


def timeline_graphql(body: Any) -> list[tuple[str, Any]]:
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return [
        ("a", from_global_id(e["node"]["activity"]["id"])[1])
        if e["node"]["activity"]
        else ("e", e["node"]["event"]["type"])
        for e in body["data"]["lead"]["timeline"]["edges"]
    ]


def timeline_plain(body: Any) -> list[tuple[str, Any]]:
    return [
        ("a", i["activity"]["id"]) if "activity" in i else ("e", i["event"]["type"])
        for i in body["items"]
    ]


def graphql_server(seeded: Seeded) -> tuple[Server, dict[str, Endpoint]]:
    headers = {
        "authorization": f"Bearer {seeded.api_key}",
        "content-type": "application/json",
        "accept": "application/json",
    }

    def post(query: str, variables: dict[str, Any], ids: Any) -> Endpoint:
        body = json.dumps({"query": query, "variables": variables}).encode()
        return Endpoint("POST", "/graphql", body, headers, ids)

    endpoints = {
        "workList": post(WORK_QUERY, {"o": to_global_id("User", seeded.owner)}, work_items_graphql),
        "timeline": post(
            TIMELINE_QUERY, {"id": to_global_id("Lead", seeded.busy)}, timeline_graphql
        ),
    }
    server = Server(
        "GraphQL", ["--factory", "api.app:app_factory"], "/readyz", lambda _: endpoints["workList"]
    )
    return server, endpoints


def baseline_server(seeded: Seeded) -> tuple[Server, dict[str, Endpoint]]:
    headers = {"accept": "application/json"}
    endpoints = {
        "workList": Endpoint("GET", f"/work?owner={seeded.owner}", None, headers, work_items_plain),
        "timeline": Endpoint("GET", f"/timeline?lead={seeded.busy}", None, headers, timeline_plain),
    }
    app = ["--factory", "--app-dir", str(BENCH), "plain_work_app:app_factory"]
    return Server("baseline", app, "/healthz", lambda _: endpoints["workList"]), endpoints


@dataclass(slots=True)
class Running:
    name: str
    endpoints: dict[str, Endpoint]
    port: int
    pid: int


async def measure(
    servers: list[Running], args: argparse.Namespace
) -> tuple[dict[tuple[str, str], Load], dict[str, dict[str, list[Any]]]]:
    """Check both servers' answers, warm each up, then load them in --rounds slices per query
    in ABBA order (GraphQL, baseline, baseline, GraphQL, ...), so that a machine whose load
    drifts (other work on it) does not favour either; each slice has its server to itself."""
    host, n = "127.0.0.1", args.concurrency
    loads: dict[tuple[str, str], Load] = {}
    seen: dict[str, dict[str, list[Any]]] = {}
    for srv in servers:
        seen[srv.name] = {}
        async with httpx.AsyncClient(base_url=f"http://{host}:{srv.port}", timeout=60) as c:
            for query, ep in srv.endpoints.items():
                r = await c.request(ep.method, ep.path, content=ep.body, headers=ep.headers)
                r.raise_for_status()
                seen[srv.name][query] = ep.ids(r.json())
                if len(seen[srv.name][query]) != 50:
                    raise RuntimeError(f"{srv.name} {query}: not 50 items")

    def tick(_: float) -> None:
        return None

    async def slice_(srv: Running, query: str, seconds: float) -> Load:
        ep = srv.endpoints[query]
        senders: list[Sender] = [await RawSender.open(host, srv.port, ep) for _ in range(n)]
        return await run_slice(senders, seconds, srv.pid, tick)

    for srv in servers:
        for query in srv.endpoints:
            await slice_(srv, query, args.warmup)
            loads[srv.name, query] = Load()
    for query in servers[0].endpoints:
        for r in range(args.rounds):
            for srv in servers if r % 2 == 0 else servers[::-1]:
                loads[srv.name, query].add(await slice_(srv, query, args.seconds / args.rounds))
    for (name, query), load in loads.items():
        console.print(
            f"{name} {query}: {load.rps:,.0f} req/s, p50 {load.ms(0.5):.1f} ms, "
            f"p95 {load.ms(0.95):.1f} ms, failed {load.failures}, server CPU {load.server_cpu:.0%}"
        )
    return loads, seen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--activities", type=int, default=1_000_000)
    p.add_argument("--leads", type=int, default=20_000)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--busy", type=int, default=20_000, help="activities of the busy lead")
    p.add_argument("--seconds", type=float, default=10.0, help="load per query and server")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=4, help="ABBA slices per query (4)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--database-url", default=SQLITE)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console.print(f"[bold]command:[/] {command_line()}")
    console.print(
        f"{args.activities:,} activities over {args.leads:,} leads and {args.users} sellers on "
        f"{describe(args.database_url)}; {args.concurrency} connections, {args.warmup:g} s "
        f"warm-up, {args.seconds:g} s per query and server in {args.rounds} ABBA slices"
    )
    with fresh_database(args.database_url, "work") as url:
        seeded = asyncio.run(seed(url, args))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        # The load is one API key far past any per-key rate limit: measure serving, not 429s.
        env.update(LEADFLOW_DATABASE_URL=url, LEADFLOW_ENV="production", **UNTHROTTLED)
        (gserver, gends), (bserver, bends) = graphql_server(seeded), baseline_server(seeded)
        gport, bport = free_port(), free_port()
        gcmd, bcmd = gserver.command(gport), bserver.command(bport)
        for command in (gcmd, bcmd):
            console.print(f"[bold]server:[/] {shlex.join(['python', *command[1:]])}")
        with (
            running(gcmd, env, f"http://127.0.0.1:{gport}", gserver.ready_path) as gpid,
            running(bcmd, env, f"http://127.0.0.1:{bport}", bserver.ready_path) as bpid,
        ):
            servers = [
                Running("GraphQL", gends, gport, gpid),
                Running("baseline", bends, bport, bpid),
            ]
            results, answers = asyncio.run(measure(servers, args))
    same = answers["GraphQL"] == answers["baseline"]
    table = Table(title="p95 over HTTP, GraphQL against plain SQL", title_justify="left")
    columns = ["query", "GraphQL p95 ms", "plain p95 ms", "ratio", "goal", ""]
    columns += ["p50 ms", "p50 ratio", "GraphQL req/s", "plain req/s"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("query", "") else "right")
    failed = 0
    for query in ("workList", "timeline"):
        g, b = results["GraphQL", query], results["baseline", query]
        failed += g.failures + b.failures
        ratio = g.ms(0.95) / b.ms(0.95)
        table.add_row(
            query,
            f"{g.ms(0.95):.1f}",
            f"{b.ms(0.95):.1f}",
            f"{ratio:.2f}",
            f"≤ {GOAL:g}",
            verdict(ratio <= GOAL),
            f"{g.ms(0.5):.1f} / {b.ms(0.5):.1f}",
            f"{g.ms(0.5) / b.ms(0.5):.2f}",
            f"{g.rps:,.0f}",
            f"{b.rps:,.0f}",
        )
    console.print(table)
    console.print(f"same items in the same order from both servers: {verdict(same)}")
    console.print(f"[bold]command:[/] {command_line()}", soft_wrap=True)
    return 1 if failed or not same else 0


if __name__ == "__main__":
    sys.exit(main())

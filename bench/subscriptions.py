"""Benchmark: qualification changes delivered to GraphQL subscribers, beside raw Redis pub/sub.

    python bench/subscriptions.py [--subscribers 1000] [--rate 200] [--seconds 10]
                                  [--redis-url redis://127.0.0.1:6379/0] [--database-url URL]
    python bench/subscriptions.py --capacity --subscribers 10000

Seeds a fresh database with one lead per change to come (each with its own contact), a LIVE
scoring model (10 points per page visit) and a LIVE qualification model (score ≥ 10 marks the
lead marketing-qualified), then starts the real server (`uvicorn --factory
api.app:app_factory`, production, with LEADFLOW_REDIS_URL set so events cross Redis) and opens
--subscribers WebSocket connections (graphql-transport-ws, key in connection_init), each
subscribed to `leadQualificationChanged { cursor type lead { id } }`. The subscribers live in
--clients processes of their own with a lean WebSocket client (bench/_wsclient.py), so that
parsing a thousand sockets' frames does not compete with the driver; the CPU used by the server
and by those processes is printed, and so are deliveries per second of server CPU, a figure a
busy machine disturbs less than deliveries per second of wall time.

Latency (default): a driver records one page visit per lead at --rate per second for --seconds
through `recordInteraction`; each visit qualifies its lead in the same transaction. The time
from the mutation's answer (the commit is done) to each subscriber's frame for that lead is one
sample; p50/p99 over all of them. The answer reaches the driver some time after the commit, so
this figure can come out below zero when frames overtake answers; the time from sending the
request to the frame is printed beside it as an upper bound (it includes the transaction and
any queue in front of it). The baseline, in the same run, is a raw Redis pub/sub round
trip on the same Redis at the same rate (publish → a subscriber's receive). Goal: p99 within
the raw p99 + 20 ms. Every subscriber must receive every change exactly once.

Capacity (--capacity): the server's RSS before and after the subscribers connect gives the
memory per connection (goal ≤ 100 KiB with 10,000); then a burst of --burst changes is sent as
fast as the server takes them and the deliveries per second to all subscribers are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import multiprocessing
import os
import random
import resource
import sys
import time
from array import array

import _wsclient
import orjson
import redis.asyncio as aioredis
from _support import (
    SQLITE,
    UNTHROTTLED,
    command_line,
    console,
    describe,
    fresh_database,
    insert_contacts_with_leads,
    percentile,
    verdict,
)
from leads_list import Endpoint, RawSender, free_port, running
from sqlalchemy import select

from api.ids import to_global_id
from domain import qualification_services as qs
from domain import scoring_services as ss
from domain.model import Feature, utcnow
from domain.roles import Role
from persistence import tables as t
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from persistence.migrate import upgrade

LATENCY_MARGIN_MS = 20.0
RSS_GOAL_KIB = 100.0
SUBSCRIPTION = "subscription { leadQualificationChanged { cursor type lead { id } } }"
RECORD = (
    "mutation($i: RecordInteractionInput!) "
    "{ recordInteraction(input: $i) { userErrors { message } } }"
)


async def seed(url: str, leads: int) -> tuple[str, list[tuple[int, int]]]:
    """An ADMIN key, and (contact id, lead id) pairs ready to be qualified by one visit."""
    db = Database(url)
    try:
        await upgrade(db.write_engine)
        now = utcnow()
        async with db.write_engine.begin() as conn:
            await insert_contacts_with_leads(
                conn,
                leads,
                now,
                lambda i: {"email": f"s{i}@bench.io", "first_name": "S", "attributes": {}},
                lambda i, c: {"topic": f"Lead {c}", "email": f"s{i}@bench.io", "contact_id": c},
            )
            pairs = (
                await conn.execute(
                    select(t.leads.c.contact_id, t.leads.c.id).order_by(t.leads.c.id)
                )
            ).all()
        async with db.uow() as uow:
            await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
            visits = {
                "name": "visits",
                "rules": [
                    {
                        "name": "visit",
                        "points": 10,
                        "condition": {"interaction": {"type": "PAGE_VISITED"}},
                    }
                ],
            }
            model = await ss.create_scoring_model(uow, visits)
            await ss.publish_scoring_model(uow, model.id, utcnow())
            mql = {
                "name": "MQL",
                "criteria": [{"scoringModelId": model.id, "minScore": 10}],
                "actions": {"markMarketingQualified": True, "markSalesReady": False},
            }
            q = await qs.create_qualification_model(uow, mql)
            await qs.publish_qualification_model(uow, q.id)
            await uow.commit()
        _, key = await ApiKeyStore(db).create("bench", Role.ADMIN)
        return key, [(int(c), int(lead)) for c, lead in pairs]
    finally:
        await db.dispose()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def drive(
    base: str, key: str, pairs: list[tuple[int, int]], rate: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Qualify each lead by one visit, at `rate` per second; when each request was sent and
    when its answer (the commit is done) arrived."""
    sent: dict[str, float] = {}
    committed: dict[str, float] = {}
    # Lean keep-alive connections (bench/leads_list.py RawSender): httpx's pool costs the
    # driver most of a core at this rate, CPU the server and the subscribers need.
    host, _, port = base.removeprefix("http://").partition(":")
    endpoint = Endpoint(
        "POST",
        "/graphql",
        None,
        {"authorization": f"Bearer {key}", "content-type": "application/json"},
        lambda _: [],
    )
    idle: asyncio.Queue[RawSender] = asyncio.Queue()
    senders = [await RawSender.open(host, int(port), endpoint) for _ in range(32)]
    for sender in senders:
        idle.put_nowait(sender)

    async def one(contact: int, lead: int) -> None:
        body = orjson.dumps(
            {
                "query": RECORD,
                "variables": {
                    "i": {"contactId": to_global_id("Contact", contact), "type": "PAGE_VISITED"}
                },
            }
        )
        sender = await idle.get()
        try:
            sent[to_global_id("Lead", lead)] = time.perf_counter()
            status, answer = await sender.post(body)
            committed[to_global_id("Lead", lead)] = time.perf_counter()
        finally:
            idle.put_nowait(sender)
        data = orjson.loads(answer)
        if status != 200 or data.get("errors") or data["data"]["recordInteraction"]["userErrors"]:
            raise RuntimeError(f"recordInteraction failed: {answer[:300]!r}")

    tasks = []
    start = time.perf_counter()
    try:
        for i, (contact, lead) in enumerate(pairs):
            if rate > 0:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(contact, lead)))
        await asyncio.gather(*tasks)
    finally:
        for sender in senders:
            await sender.close()
    return sent, committed


async def redis_baseline(url: str, count: int, rate: float) -> list[float]:
    """Raw pub/sub round trips on the same Redis at the same rate: seconds, sorted."""
    client = aioredis.from_url(url)
    pubsub = client.pubsub()
    channel = f"bench:{random.randrange(1 << 30)}"
    await pubsub.subscribe(channel)
    samples: list[float] = []
    done = asyncio.Event()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            samples.append(time.perf_counter() - float(message["data"]))
            if len(samples) == count:
                done.set()
                return

    listener = asyncio.create_task(listen())
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.publish(channel, repr(time.perf_counter()))
    await asyncio.wait_for(done.wait(), timeout=30)
    listener.cancel()
    await pubsub.aclose()
    await client.aclose()
    return sorted(samples)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    url: str, key: str, pairs: list[tuple[int, int]], pid: int, port: int, args: argparse.Namespace
) -> bool:
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    leads = [to_global_id("Lead", lead) for _, lead in pairs]
    rss_before = rss_kib(pid)
    # The subscribers live in processes of their own (bench/_wsclient.py), so that parsing
    # their frames does not slow down the driver or hide the server's latency.
    spawn = multiprocessing.get_context("spawn")
    clients = []
    for i in range(args.clients):
        ours, theirs = spawn.Pipe()
        process = spawn.Process(
            target=_wsclient.run, args=(theirs, ("127.0.0.1", port), key, SUBSCRIPTION, leads)
        )
        process.start()
        ours.send(args.subscribers // args.clients + (i < args.subscribers % args.clients))
        clients.append((process, ours))
    for _, pipe in clients:
        ready = await loop.run_in_executor(None, pipe.recv)
        assert ready == "ready", ready
    await asyncio.sleep(1.0)
    rss_after = rss_kib(pid)
    per_conn = (rss_after - rss_before) / max(1, args.subscribers)
    console.print(
        f"{args.subscribers:,} subscribers connected; server RSS {rss_before / 1024:.0f} → "
        f"{rss_after / 1024:.0f} MiB ({per_conn:.1f} KiB per connection)"
    )
    rate = 0.0 if args.capacity else args.rate
    for _, pipe in clients:
        pipe.send("go")
    # No collector pauses in the driver either: they would delay its requests and the times
    # it stamps on the answers.
    gc.collect()
    gc.disable()
    started, server_cpu = time.perf_counter(), cpu_seconds(pid)
    try:
        sent_by_lead, committed_by_lead = await drive(base, key, pairs, rate)
    finally:
        gc.enable()
    # Generous: a slow fan-out must show as latency, not as missing deliveries.
    wait = max(60.0, args.subscribers * len(pairs) / 1000)
    results = []
    for _, pipe in clients:
        if not await loop.run_in_executor(None, pipe.poll, wait):
            pipe.send("stop")
        results.append(await loop.run_in_executor(None, pipe.recv))
        wait = 1.0
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(pid) - server_cpu
    for process, _ in clients:
        process.join(30)
    want = len(pairs)
    committed = [committed_by_lead.get(lead, math.nan) for lead in leads]
    sent = [sent_by_lead.get(lead, math.nan) for lead in leads]
    latencies: list[float] = []
    upper: list[float] = []
    delivered = duplicates = 0
    last = started
    for result in results:
        for errors in result["errors"]:
            console.print(f"[red]client error: {errors}")
        duplicates += result["duplicates"]
        for raw in result["times"]:
            times = array("d")
            times.frombytes(raw)
            for at, answered, asked in zip(times, committed, sent, strict=True):
                if not math.isnan(at):
                    delivered += 1
                    last = max(last, at)
                    latencies.append(at - answered)
                    upper.append(at - asked)
    latencies.sort()
    upper.sort()
    missing = args.subscribers * want - delivered
    span = last - started
    console.print(
        f"deliveries: {delivered:,} of {args.subscribers * want:,} (missing {missing:,}, "
        f"duplicates {duplicates:,}) in {span:.1f} s = {delivered / span:,.0f}/s"
    )
    console.print(
        f"deliveries per second of server CPU (mutations included): "
        f"{delivered / max(server_cpu, 1e-9):,.0f}"
    )
    client_cpu = sum(r["cpu"] for r in results)
    console.print(
        f"CPU over {elapsed:.1f} s: server {server_cpu:.1f} s ({server_cpu / elapsed:.0%} of a "
        f"core), subscriber processes {client_cpu:.1f} s ({client_cpu / elapsed:.0%})"
    )
    ok = missing == 0 and duplicates == 0
    if args.capacity:
        goal = per_conn <= RSS_GOAL_KIB
        console.print(f"memory per connection ≤ {RSS_GOAL_KIB:g} KiB: {verdict(goal)}")
        return ok and goal
    # The latency only counts at the rate asked for: if the server commits more slowly, the
    # requests queue and the frames trail the sending ever more, whatever commit → frame says.
    took = sorted(committed_by_lead[lead] - sent_by_lead[lead] for lead in committed_by_lead)
    kept = want / max(max(committed_by_lead.values()) - min(sent_by_lead.values()), 1e-9)
    console.print(
        f"changes committed at {kept:,.0f}/s (asked {args.rate:g}/s); the mutation itself: "
        f"p50 {percentile(took, 0.5) * 1000:.1f} ms, p99 {percentile(took, 0.99) * 1000:.1f} ms"
    )
    kept_up = kept >= 0.95 * args.rate
    raw = await redis_baseline(args.redis_url, want, args.rate)
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    r50, r99 = percentile(raw, 0.5) * 1000, percentile(raw, 0.99) * 1000
    console.print(
        f"commit → WebSocket frame: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies):,} samples)"
    )
    u50, u99 = percentile(upper, 0.5) * 1000, percentile(upper, 0.99) * 1000
    console.print(
        f"request sent → WebSocket frame (an upper bound: includes the commit itself): "
        f"p50 {u50:.1f} ms, p99 {u99:.1f} ms"
    )
    console.print(f"raw Redis pub/sub round trip: p50 {r50:.2f} ms, p99 {r99:.2f} ms")
    goal = p99 <= r99 + LATENCY_MARGIN_MS
    console.print(f"p99 within raw p99 + {LATENCY_MARGIN_MS:g} ms: {verdict(goal)}")
    console.print(f"changes committed at ≥ 95 % of the rate asked: {verdict(kept_up)}")
    return ok and goal and kept_up


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200.0, help="qualification changes per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--capacity", action="store_true", help="fan-out capacity and memory instead")
    p.add_argument("--burst", type=int, default=200, help="changes sent in --capacity mode")
    p.add_argument("--clients", type=int, default=1, help="subscriber processes")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--database-url", default=SQLITE)
    args = p.parse_args(argv)
    # Every subscriber is a socket on each side: raise the open-file limit as far as allowed.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want_files = min(hard, max(soft, 2 * args.subscribers + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want_files, hard))
    changes = args.burst if args.capacity else int(args.rate * args.seconds)
    console.print(f"[bold]command:[/] {command_line()}")
    console.print(
        f"{args.subscribers:,} subscribers, {changes:,} changes, "
        f"{describe(args.database_url)}, Redis {args.redis_url}"
    )
    with fresh_database(args.database_url, "subscriptions") as url:
        key, pairs = asyncio.run(seed(url, changes))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(
            LEADFLOW_DATABASE_URL=url,
            LEADFLOW_ENV="production",
            LEADFLOW_REDIS_URL=args.redis_url,
            **UNTHROTTLED,
        )
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.app:app_factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--ws-max-queue",
            "64",
        ]
        with running(command, env, f"http://127.0.0.1:{port}", "/readyz") as pid:
            ok = asyncio.run(measure(url, key, pairs, pid, port, args))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

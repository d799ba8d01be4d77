"""Benchmark: publishing a qualification model over every lead, beside hand-written SQL.

    python bench/qualification_publish.py [--leads 1000000] [--database-url URL]

Seeds a fresh database (a temporary SQLite file, or a new PostgreSQL database created through
--database-url and dropped afterwards) with --leads leads in a CRM-like mix of states (most
OPEN and NEW, some contacted, marketing-qualified, qualified or disqualified, a few sales-ready)
and, for two LIVE scoring models, a score for 9 in 10 leads each (Core executemany, then
ANALYZE).

A qualification model "engagement ≥ 50 AND fit ≥ 30, mark marketing-qualified and sales-ready"
is created with domain.qualification_services and published with publish_qualification_model in
one unit of work, timed to the end of its commit: the set-based evaluation of every open lead,
its MARKETING_QUALIFIED / SALES_READY events and the marks.

The baseline, in the same run and before ours, is the same work written by hand: two INSERT …
SELECT of the events and two UPDATEs with the same conditions, in one transaction, timed to its
end and then rolled back (so both start from the same data). After ours, the number of leads it
marked must equal what the baseline's conditions select, and a lead count by status proves the
marks landed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from _support import SQLITE, command_line, console, describe, fresh_database, progress, verdict
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import func, insert, select, text

from domain import qualification_services as qs
from domain.lifecycle import ModelStatus
from domain.model import Feature, LeadSource, LeadStage, LeadState, LeadStatusReason, utcnow
from domain.scoring import ScoringModel
from persistence import tables as t
from persistence.database import Database
from persistence.migrate import upgrade

INSERT_BATCH = 10_000
GOAL_SECONDS = 30.0  # 1,000,000 leads on SQLite

# (state, status reason, sales ready, weight)
MIX = (
    (LeadState.OPEN, LeadStatusReason.NEW, False, 70),
    (LeadState.OPEN, LeadStatusReason.CONTACTED, False, 10),
    (LeadState.OPEN, LeadStatusReason.MARKETING_QUALIFIED, False, 5),
    (LeadState.OPEN, LeadStatusReason.NEW, True, 3),
    (LeadState.QUALIFIED, LeadStatusReason.QUALIFIED, True, 6),
    (LeadState.DISQUALIFIED, LeadStatusReason.LOST, False, 6),
)


def batches(
    count: int, model_ids: list[int], rng: random.Random
) -> Iterator[tuple[list[Any], list[Any]]]:
    """(lead rows, score rows) per batch; lead ids are assigned 1..count in order."""
    now = utcnow()
    weights = [w for *_, w in MIX]
    for low in range(0, count, INSERT_BATCH):
        leads, scores = [], []
        for i in range(low, min(low + INSERT_BATCH, count)):
            state, reason, ready, _ = rng.choices(MIX, weights)[0]
            created = now - timedelta(seconds=count - i)
            leads.append(
                {
                    "id": i + 1,
                    "topic": f"Interest {i}",
                    "email": f"lead{i}@example.com",
                    "attributes": {},
                    "source": LeadSource.LANDING_PAGE.value,
                    "state": state.value,
                    "status_reason": reason.value,
                    "sales_ready": ready,
                    "stage": LeadStage.INQUIRY.value,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            for model_id in model_ids:
                if rng.random() < 0.9:
                    scores.append(
                        {
                            "lead_id": i + 1,
                            "scoring_model_id": model_id,
                            "model_version": 1,
                            "score": float(rng.randrange(0, 101, 5)),
                            "sales_ready": False,
                            "breakdown": [],
                            "next_expiry_us": None,
                            "updated_at": now,
                        }
                    )
        yield leads, scores


async def seed(db: Database, count: int) -> list[int]:
    await upgrade(db.write_engine)
    async with db.uow() as uow:
        await uow.settings.set_feature(Feature.LEAD_MANAGEMENT, True)
        models = [
            await uow.scoring_models.add(ScoringModel(name=n, rules=[], status=ModelStatus.LIVE))
            for n in ("Engagement", "Fit")
        ]
        await uow.commit()
    ids = [m.id for m in models]
    columns = (TextColumn("[bold]seeding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress(*columns) as bar:
        task = bar.add_task("seed", total=count)
        async with db.write_engine.begin() as conn:
            for leads, scores in batches(count, ids, random.Random(11)):
                await conn.execute(insert(t.leads), leads)
                await conn.execute(insert(t.lead_scores), scores)
                bar.advance(task, len(leads))
    async with db.write_engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return ids


def baseline_statements(engagement: int, fit: int, pg: bool) -> list[str]:
    """The publish's work by hand: events, then marks, for leads meeting both criteria."""
    obj = "jsonb_build_object" if pg else "json_object"
    meets = f"""
        l.state = 'OPEN' AND l.status_reason <> 'QUALIFIED'
        AND EXISTS (SELECT 1 FROM lead_scores s WHERE s.lead_id = l.id
                    AND s.scoring_model_id = {engagement} AND s.score >= 50)
        AND EXISTS (SELECT 1 FROM lead_scores s WHERE s.lead_id = l.id
                    AND s.scoring_model_id = {fit} AND s.score >= 30)"""
    now = "CURRENT_TIMESTAMP"
    return [
        f"""INSERT INTO lead_events (lead_id, type, occurred_at, payload)
            SELECT l.id, 'MARKETING_QUALIFIED', {now},
                   {obj}('qualificationModelId', 0, 'previousStatusReason', l.status_reason)
            FROM leads l WHERE {meets} AND l.status_reason <> 'MARKETING_QUALIFIED'""",
        f"""INSERT INTO lead_events (lead_id, type, occurred_at, payload)
            SELECT l.id, 'SALES_READY', {now}, {obj}('qualificationModelId', 0)
            FROM leads l WHERE {meets} AND NOT l.sales_ready""",
        f"""UPDATE leads SET status_reason = 'MARKETING_QUALIFIED', updated_at = {now}
            WHERE id IN (SELECT l.id FROM leads l WHERE {meets}
                         AND l.status_reason <> 'MARKETING_QUALIFIED')""",
        f"""UPDATE leads SET sales_ready = true, updated_at = {now}
            WHERE id IN (SELECT l.id FROM leads l WHERE {meets} AND NOT l.sales_ready)""",
    ]


async def run_baseline(db: Database, statements: list[str]) -> tuple[float, int]:
    """Seconds for the hand-written statements (then rolled back), and the leads marked MQL."""
    async with db.write_engine.connect() as conn:
        await conn.begin()
        started = time.perf_counter()
        rowcounts = [(await conn.execute(text(sql))).rowcount for sql in statements]
        seconds = time.perf_counter() - started
        await conn.rollback()
    return seconds, rowcounts[2]


async def run(url: str, leads: int) -> bool:
    db = Database(url)
    try:
        started = time.perf_counter()
        engagement, fit = await seed(db, leads)
        console.print(
            f"seeded {leads:,} leads and their scores in {time.perf_counter() - started:.1f} s"
        )
        pg = db.write_engine.dialect.name == "postgresql"
        base_s, base_marked = await run_baseline(db, baseline_statements(engagement, fit, pg))
        async with db.read() as r:
            before = await r.conn.scalar(select(func.count()).select_from(t.lead_events))
        definition = {
            "name": "MQL",
            "match": "ALL",
            "criteria": [
                {"scoringModelId": engagement, "minScore": 50},
                {"scoringModelId": fit, "minScore": 30},
            ],
            "actions": {"markMarketingQualified": True, "markSalesReady": True},
        }
        async with db.uow() as uow:
            model = await qs.create_qualification_model(uow, definition)
            await uow.commit()
        started = time.perf_counter()
        async with db.uow() as uow:
            await qs.publish_qualification_model(uow, model.id)
            await uow.commit()
        ours_s = time.perf_counter() - started
        async with db.read() as r:
            events = int(await r.conn.scalar(select(func.count()).select_from(t.lead_events)) or 0)
            events -= int(before or 0)
            marked = int(
                await r.conn.scalar(
                    select(func.count())
                    .select_from(t.lead_events)
                    .where(t.lead_events.c.type == "MARKETING_QUALIFIED")
                )
                or 0
            )
            again = await r.qualification_models.preview(model, 0)
    finally:
        await db.dispose()
    ok_check = again[1] == 0 and marked == base_marked > 0
    console.print(
        f"events written: {events:,} ({marked:,} MARKETING_QUALIFIED, the baseline marks "
        f"{base_marked:,}); after publish nothing is left to mark: {again[1] == 0}"
    )
    console.print(f"baseline (hand-written SQL, rolled back): {base_s:.2f} s")
    console.print(
        f"publishQualificationModel: {ours_s:.2f} s ({leads / ours_s:,.0f} leads/s), "
        f"{ours_s / base_s:.2f} times the baseline"
    )
    goal = ours_s <= GOAL_SECONDS if leads >= 1_000_000 else True
    if leads >= 1_000_000 and url == SQLITE:
        console.print(f"goal ≤ {GOAL_SECONDS:g} s for 1,000,000 leads on SQLite: {verdict(goal)}")
    return ok_check and goal


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--leads", type=int, default=1_000_000, help="leads to seed (1000000)")
    p.add_argument("--database-url", default=SQLITE, help="'sqlite' (default) or a PostgreSQL URL")
    args = p.parse_args(argv)
    if args.leads < 100:
        p.error("--leads must be at least 100")
    console.print(f"[bold]command:[/] {command_line()}")
    console.print(f"{args.leads:,} leads on {describe(args.database_url)}")
    with fresh_database(args.database_url, "qualification") as url:
        ok = asyncio.run(run(url, args.leads))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

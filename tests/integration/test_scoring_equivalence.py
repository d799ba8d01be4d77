"""The Python evaluator and the SQL compiler give identical scores and breakdowns.

Hypothesis generates rule trees, accounts, contacts, leads and interactions; each example is
scored by `domain.scoring.evaluate` lead by lead and by `LeadScoreRepository.rescore_all`
set-based on a real database (SQLite and PostgreSQL), and the results are compared exactly.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from domain.lifecycle import ModelStatus
from domain.model import Account, Contact, Lead
from domain.scoring import Subject, build_model, decode_breakdown, evaluate, to_us
from persistence import tables as t
from persistence.database import Database
from persistence.scoring_repo import (
    InteractionRepository,
    LeadScoreRepository,
    ScoringModelRepository,
)

NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
TEXTS = ["Acme", "acme", "ACME corp", "Bêta", "", "cto", "CTO", "Chief", "x"]
NUMBERS = [0, 1, 2.5, 50, 500, -3]
ATTR_VALUES = [*TEXTS[:5], *NUMBERS[:4], True, None]
KEYS = ["tier", "size"]
TYPES = ["EMAIL_OPENED", "PAGE_VISITED", "CUSTOM"]

text_value = st.sampled_from(["acme", "ACME", "cto", "Chief", "b", "Bê"])
number_value = st.sampled_from([0, 1, 2.5, 50, 100])


def comparison(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    presence = st.fixed_dictionaries({"operator": st.sampled_from(["IS_SET", "IS_NOT_SET"])})
    text_ops = st.fixed_dictionaries(
        {
            "operator": st.sampled_from(
                ["EQ", "NEQ", "CONTAINS", "NOT_CONTAINS", "STARTS_WITH", "ENDS_WITH"]
            ),
            "value": text_value,
        }
    )
    text_lists = st.fixed_dictionaries(
        {
            "operator": st.sampled_from(["IN", "NOT_IN"]),
            "value": st.lists(text_value, min_size=1, max_size=3),
        }
    )
    num_ops = st.fixed_dictionaries(
        {
            "operator": st.sampled_from(["EQ", "NEQ", "GT", "GTE", "LT", "LTE"]),
            "value": number_value,
        }
    )
    num_lists = st.fixed_dictionaries(
        {
            "operator": st.sampled_from(["IN", "NOT_IN"]),
            "value": st.lists(number_value, min_size=1, max_size=3),
        }
    )
    between = st.tuples(number_value, number_value).map(
        lambda p: {"operator": "BETWEEN", "value": sorted(p)}
    )
    if kind == "text":
        return st.one_of(presence, text_ops, text_lists)
    if kind == "number":
        return st.one_of(presence, num_ops, num_lists, between)
    return st.one_of(presence, text_ops, text_lists, num_ops, num_lists, between)


FIELDS = [
    ("LEAD", "jobTitle", "text"),
    ("LEAD", "companyName", "text"),
    ("LEAD", "source", "text"),
    ("CONTACT", "jobTitle", "text"),
    ("CONTACT", "country", "text"),
    ("ACCOUNT", "name", "text"),
    ("ACCOUNT", "employeeCount", "number"),
    ("ACCOUNT", "annualRevenue", "number"),
    ("LEAD", "attributes.tier", "any"),
    ("CONTACT", "attributes.size", "any"),
    ("ACCOUNT", "attributes.tier", "any"),
]


@st.composite
def attribute(draw: st.DrawFn) -> dict[str, Any]:
    entity, field, kind = draw(st.sampled_from(FIELDS))
    return {"attribute": {"entity": entity, "field": field, **draw(comparison(kind))}}


@st.composite
def interaction(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"type": draw(st.sampled_from(TYPES))}
    if draw(st.booleans()):
        body["name"] = draw(st.sampled_from(["webinar", "WEBINAR"]))
    if draw(st.booleans()):
        body["withinDays"] = draw(st.sampled_from([1, 7, 30]))
    body["minCount"] = draw(st.sampled_from([1, 1, 2, 3]))
    if draw(st.booleans()):
        key = draw(st.sampled_from(["url", "n"]))
        body["properties"] = [{"key": key, **draw(comparison("any"))}]
    return {"interaction": body}


conditions = st.recursive(
    st.one_of(attribute(), interaction()),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=5,
)


@st.composite
def rule(draw: st.DrawFn, index: int) -> dict[str, Any]:
    per_occurrence = draw(st.booleans())
    condition = draw(interaction()) if per_occurrence else draw(conditions)
    return {
        "name": f"rule {index}",
        "points": draw(st.sampled_from([-5, 0, 1, 2.5, 10, 0.1])),
        "condition": condition,
        "perOccurrence": per_occurrence,
        "maxPoints": draw(st.sampled_from([None, 3, 7.5])),
    }


@st.composite
def model_input(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 4))
    return {
        "name": "m",
        "rules": [draw(rule(i)) for i in range(n)],
        "salesReadyThreshold": draw(st.sampled_from([None, 0, 5, 12.5])),
    }


attrs = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(ATTR_VALUES), max_size=2)


@st.composite
def world(draw: st.DrawFn) -> dict[str, Any]:
    n_accounts = draw(st.integers(0, 2))
    accounts = [
        {
            "name": draw(st.sampled_from(["Acme", "acme corp", "Bêta"])),
            "employee_count": draw(st.sampled_from([None, 0, 50, 500])),
            "annual_revenue": draw(st.sampled_from([None, 2.5, 1e6])),
            "attributes": draw(attrs),
        }
        for _ in range(n_accounts)
    ]
    account_ref = st.one_of(st.none(), st.integers(0, n_accounts - 1)) if n_accounts else st.none()
    n_contacts = draw(st.integers(1, 3))
    contacts = [
        {
            "account": draw(account_ref),
            "job_title": draw(st.sampled_from([None, "", "CTO", "cto", "Chief Bê"])),
            "country": draw(st.sampled_from([None, "LT", "it"])),
            "attributes": draw(attrs),
        }
        for _ in range(n_contacts)
    ]
    leads = [
        {
            "contact": draw(st.one_of(st.none(), st.integers(0, n_contacts - 1))),
            "account": draw(account_ref),
            "job_title": draw(st.sampled_from([None, "CTO", "acme"])),
            "company_name": draw(st.sampled_from([None, "Acme", "b"])),
            "attributes": draw(attrs),
        }
        for _ in range(draw(st.integers(1, 4)))
    ]
    interactions = [
        {
            "contact": draw(st.integers(0, n_contacts - 1)),
            "type": draw(st.sampled_from(TYPES)),
            "name": draw(st.sampled_from([None, "webinar", "Webinar", "other"])),
            "ago": timedelta(
                days=draw(st.sampled_from([0, 1, 6, 7, 29, 30, 45])),
                microseconds=draw(st.sampled_from([-1, 0, 1, 5_000_000])),
            ),
            "properties": draw(
                st.dictionaries(
                    st.sampled_from(["url", "n"]),
                    st.sampled_from(["/pricing", "/PRICING", "acme", 1, 2.5, "3", None]),
                    max_size=2,
                )
            ),
        }
        for _ in range(draw(st.integers(0, 8)))
    ]
    return {
        "accounts": accounts,
        "contacts": contacts,
        "leads": leads,
        "interactions": interactions,
    }


async def _check(url: str, raw_model: dict[str, Any], data: dict[str, Any]) -> None:
    db = Database(url)
    try:
        async with db.uow() as uow:
            conn = uow.conn
            for table in (
                t.lead_events,
                t.lead_scores,
                t.interactions,
                t.scoring_models,
                t.leads,
                t.contacts,
                t.accounts,
            ):
                await conn.execute(delete(table))
            accounts = []
            for a in data["accounts"]:
                accounts.append(await uow.accounts.add(Account(**a)))
            contacts = []
            for i, c in enumerate(data["contacts"]):
                account = accounts[c["account"]].id if c["account"] is not None else None
                contact, _ = await uow.contacts.add(
                    Contact(
                        email=f"c{i}@x.io",
                        account_id=account,
                        job_title=c["job_title"],
                        country=c["country"],
                        attributes=c["attributes"],
                    )
                )
                contacts.append(contact)
            leads = []
            for lead in data["leads"]:
                leads.append(
                    await uow.leads.add(
                        Lead(
                            topic="t",
                            contact_id=contacts[lead["contact"]].id
                            if lead["contact"] is not None
                            else None,
                            account_id=accounts[lead["account"]].id
                            if lead["account"] is not None
                            else None,
                            job_title=lead["job_title"],
                            company_name=lead["company_name"],
                            attributes=lead["attributes"],
                        )
                    )
                )
            rows = [
                {
                    "contact_id": contacts[i["contact"]].id,
                    "type": i["type"],
                    "name": i["name"],
                    "occurred_at": NOW - i["ago"],
                    "occurred_us": to_us(NOW - i["ago"]),
                    "properties": i["properties"],
                    "idempotency_key": None,
                    "created_at": NOW,
                }
                for i in data["interactions"]
            ]
            if rows:
                await conn.execute(insert(t.interactions), rows)
            model = build_model(raw_model)
            model.status = ModelStatus.LIVE
            model.published_rules = list(model.rules)
            model.version = 1
            await ScoringModelRepository(conn).add(model)

            expected = {}
            for lead in leads:
                if not lead.scorable:
                    continue
                contact = next((c for c in contacts if c.id == lead.contact_id), None)
                account_id = lead.account_id or (contact.account_id if contact else None)
                account = next((a for a in accounts if a.id == account_id), None)
                interactions = await InteractionRepository(conn).for_subject(
                    lead.contact_id, lead.account_id
                )
                expected[lead.id] = evaluate(
                    model, Subject(lead, contact, account, interactions), NOW
                )

            scores = LeadScoreRepository(conn)
            scored = await scores.rescore_all(model, NOW)
            assert scored == len(expected)
            stored = await scores.for_leads([lead.id for lead in leads])
            for lead in leads:
                got = stored[lead.id]
                if lead.id not in expected:
                    assert got == []
                    continue
                want = expected[lead.id]
                assert len(got) == 1
                s = got[0]
                assert s.score == want.score, (s.score, want)
                assert decode_breakdown(model, s.entries) == list(want.breakdown)
                assert s.next_expiry == want.next_expiry
                assert s.sales_ready == model.is_sales_ready(want.score)
            await uow.commit()
    finally:
        await db.dispose()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw_model=model_input(), data=world())
def test_python_and_sql_evaluators_agree(
    database_url: str, raw_model: dict[str, Any], data: dict[str, Any]
) -> None:
    asyncio.run(_check(database_url, raw_model, data))


def test_example_account_based_lead_counts_all_account_contacts(database_url: str) -> None:
    raw = {
        "name": "engagement",
        "rules": [
            {
                "name": "opens",
                "points": 2,
                "perOccurrence": True,
                "condition": {"interaction": {"type": "EMAIL_OPENED", "withinDays": 30}},
            },
            {
                "name": "cto",
                "points": 5,
                "condition": {
                    "attribute": {
                        "entity": "CONTACT",
                        "field": "jobTitle",
                        "operator": "EQ",
                        "value": "cto",
                    }
                },
            },
        ],
    }
    data = {
        "accounts": [
            {"name": "Acme", "employee_count": 10, "annual_revenue": None, "attributes": {}}
        ],
        "contacts": [
            {"account": 0, "job_title": "CTO", "country": None, "attributes": {}},
            {"account": 0, "job_title": None, "country": None, "attributes": {}},
        ],
        "leads": [
            {
                "contact": None,
                "account": 0,
                "job_title": None,
                "company_name": None,
                "attributes": {},
            }
        ],
        "interactions": [
            {
                "contact": 0,
                "type": "EMAIL_OPENED",
                "name": None,
                "ago": timedelta(days=1),
                "properties": {},
            },
            {
                "contact": 1,
                "type": "EMAIL_OPENED",
                "name": None,
                "ago": timedelta(days=2),
                "properties": {},
            },
            {
                "contact": 1,
                "type": "EMAIL_OPENED",
                "name": None,
                "ago": timedelta(days=40),
                "properties": {},
            },
        ],
    }
    asyncio.run(_check(database_url, raw, data))


@pytest.mark.parametrize("ago_days", [0, 29])
def test_example_window_expiry(database_url: str, ago_days: int) -> None:
    raw = {
        "name": "m",
        "rules": [
            {
                "name": "visit",
                "points": 3,
                "condition": {"interaction": {"type": "PAGE_VISITED", "withinDays": 30}},
            }
        ],
    }
    data = {
        "accounts": [],
        "contacts": [{"account": None, "job_title": None, "country": None, "attributes": {}}],
        "leads": [
            {
                "contact": 0,
                "account": None,
                "job_title": None,
                "company_name": None,
                "attributes": {},
            }
        ],
        "interactions": [
            {
                "contact": 0,
                "type": "PAGE_VISITED",
                "name": None,
                "ago": timedelta(days=ago_days),
                "properties": {},
            }
        ],
    }
    asyncio.run(_check(database_url, raw, data))

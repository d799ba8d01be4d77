"""Safety limits, error masking and the feature switch."""

from __future__ import annotations

import pytest

from domain.roles import Role
from tests.conftest import Api


async def test_query_depth_is_limited(api: Api) -> None:
    level = "leads { edges { node { contact { account { %s } } } } }"
    query = "{ " + level % (level % (level % "id")) + " }"  # 15 levels; the limit is 12
    errors = await api.errors(query)
    assert "exceeds maximum operation depth" in errors[0]["message"]


async def test_validation_results_are_reused_per_document(api: Api) -> None:
    """Cached validation answers a repeated query as the first time, and keeps texts apart."""
    level = "leads { edges { node { contact { account { %s } } } } }"
    deep = "{ " + level % (level % (level % "id")) + " }"
    shallow = "{ leads { edges { node { contact { account { name } } } } } }"
    for _ in range(3):
        errors = await api.errors(deep)
        assert "exceeds maximum operation depth" in errors[0]["message"]
        assert "leads" in await api(shallow)
    errors = await api.errors("{ leads { edges { node { nope } } } }")
    assert "Cannot query field 'nope'" in errors[0]["message"]


async def test_aliases_are_limited(api: Api) -> None:
    query = "{ " + " ".join(f"a{i}: viewer {{ name }}" for i in range(31)) + " }"
    errors = await api.errors(query)
    assert "aliases" in errors[0]["message"].lower()


async def test_aliases_inside_fragments_count(api: Api) -> None:
    fragment = (
        "fragment F on Query { " + " ".join(f"a{i}: viewer {{ name }}" for i in range(31)) + " }"
    )
    errors = await api.errors("{ ...F } " + fragment)
    assert "aliases" in errors[0]["message"].lower()


async def test_tokens_are_limited(api: Api) -> None:
    query = "{ viewer { " + " ".join(["name"] * 6000) + " } }"
    errors = await api.errors(query)
    assert "token" in errors[0]["message"].lower()


async def test_unexpected_errors_are_masked(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from persistence.repositories import LeadRepository

    async def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret SQL: SELECT password FROM users")

    monkeypatch.setattr(LeadRepository, "list", boom)
    errors = await api.errors("{ leads { totalCount } }")
    assert errors[0]["message"] == "Unexpected error."
    assert "secret" not in str(errors)


async def test_feature_switch_is_off_then_on(api: Api) -> None:
    assert (await api("{ settings { leadManagementEnabled } }"))["settings"] == {
        "leadManagementEnabled": False
    }
    q = "mutation($on: Boolean!) { setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: $on) { settings { leadManagementEnabled } userErrors { code } } }"
    data = await api(q, {"on": True}, role=Role.ADMIN)
    assert data["setFeatureSwitch"] == {
        "settings": {"leadManagementEnabled": True},
        "userErrors": [],
    }
    assert (await api("{ settings { leadManagementEnabled } }", role=Role.VIEWER))["settings"][
        "leadManagementEnabled"
    ] is True
    data = await api(q, {"on": False})
    assert data["setFeatureSwitch"]["settings"]["leadManagementEnabled"] is False


async def test_get_requests_cannot_run_operations(api: Api) -> None:
    response = await api.client.get(
        "/graphql",
        params={"query": "{ viewer { name } }"},
        headers={"Authorization": f"Bearer {api.keys[Role.ADMIN]}"},
    )
    assert response.status_code in (400, 405)


async def test_aliases_count_at_every_spread_of_a_fragment(api: Api) -> None:
    fragment = (
        "fragment F on Query { " + " ".join(f"a{i}: viewer {{ name }}" for i in range(16)) + " }"
    )
    assert (await api("{ ...F } " + fragment))["a0"]["name"]  # 16 aliases
    errors = await api.errors("query Twice { ...F ...F } " + fragment)
    assert errors[0]["message"] == "'Twice' uses 32 aliases; at most 30 are allowed"


async def test_fragment_bombs_are_measured_without_expanding_them(api: Api) -> None:
    """40 fragments each spreading the next twice: 2^40 aliases once expanded.

    Strawberry's own limiters walk every expansion (2^40 steps); each fragment is measured once.
    """
    n = 40
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n))
    query = (
        "query Bomb { ...F0 } " + fragments + f" fragment F{n} on Query {{ a: viewer {{ name }} }}"
    )
    errors = await api.errors(query)
    assert errors[0]["message"] == f"'Bomb' uses {2**n} aliases; at most 30 are allowed"


def test_measure_counts_depth_like_strawberry() -> None:
    from graphql import parse

    from api.limits import measure

    doc = parse(
        "query A { leads { edges { node { id } } } }"
        " query B { ...L } fragment L on Query { leads { totalCount } }"
        " query C { __schema { types { fields { name } } } }"
        " query D { viewer { name @skip(if: false) } ... on Query @include(if: true) { viewer { role } } }"
    )
    m = measure(doc)
    assert (m["A"].depth, m["B"].depth, m["C"].depth) == (3, 1, 0)
    assert m["D"].directives == 2


async def test_nested_pages_are_limited_by_the_objects_they_may_return(api: Api) -> None:
    """Depth and page size alone let one query ask for 500 x 500 x 500 leads."""
    nested = (
        "{ leads(first: 500) { edges { node { contact { leads(first: 500) { edges { node {"
        " id } } } } } } } }"
    )
    errors = await api.errors(nested)
    assert errors[0]["message"].startswith("'anonymous #1' may return 752000 objects")
    assert "at most 20000 are allowed" in errors[0]["message"]
    # A variable counts as a full page; the same shape with small literal pages runs.
    paged = (
        "query($n: Int) { leads(first: $n) { edges { node { timeline(first: $n) {"
        " edges { cursor } } } } } }"
    )
    assert "may return" in (await api.errors(paged, {"n": 5}))[0]["message"]
    small = paged.replace("$n", "20").replace("query(20: Int)", "query")
    assert (await api(small))["leads"]["edges"] == []
    assert "leads" in await api(
        "{ leads(first: 500) { edges { node { id contact { id account { name } } scores { score } } } } }"
    )
    # Without `first`, a paged field counts its default page (50).
    assert "leads" in await api("{ leads { edges { node { timeline { totalCount } } } } }")


async def test_fields_repeated_over_and_over_are_refused_before_validation(api: Api) -> None:
    """The spec's field-merging rule costs the square of a repeated field (seconds for 700
    copies of one selection, every request, whitespace defeating any cache)."""
    import time

    repeated = "{ " + " ".join(["viewer { user { name } }"] * 700) + " }"
    started = time.perf_counter()
    errors = await api.errors(repeated)
    assert time.perf_counter() - started < 1.0
    assert "selects the same fields too many times over" in errors[0]["message"]
    via_fragments = (
        "{ "
        + " ".join(f"...F{i}" for i in range(300))
        + " } "
        + " ".join(f"fragment F{i} on Query {{ viewer {{ name }} }}" for i in range(300))
    )
    assert "too many times" in (await api.errors(via_fragments))[0]["message"]
    # A few repeats, as fragments colocated with their components make, are fine.
    few = (
        "{ "
        + " ".join(["viewer { name role }"] * 8)
        + " ...V } fragment V on Query { viewer { name } }"
    )
    assert (await api(few))["viewer"]["role"]


def test_measure_counts_objects_and_merge_work() -> None:
    from graphql import parse

    from api.limits import Limits, measure

    limits = Limits(paged=frozenset({"leads", "timeline"}))
    m = measure(
        parse(
            "query A { leads(first: 10) { edges { node { id timeline(first: 3) { totalCount } } } } }"
            " query B { leads { totalCount } } query C { viewer { name } viewer { name } }"
        ),
        limits,
    )
    # Each lead, its edge, its node and its 3 timeline objects (wrappers count too).
    assert m["A"].nodes == 10 * (1 + (1 + (1 + 3)))
    assert m["B"].nodes == 50  # no `first`: the default page
    assert m["C"].nodes == 2 and m["C"].merge_work == 1 * (1 + 2 * 2)

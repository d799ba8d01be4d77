"""Hostile input to the rule language parser: always a clear userError, never a crash or hang."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import DomainError, ValidationErrors
from domain.qualification import build_qualification_model
from domain.sales import build_assignment_rule
from domain.scoring import MAX_DEPTH, MAX_NODES, build_model, parse_condition

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

OPERATORS = ["EQ", "NEQ", "IN", "NOT_IN", "CONTAINS", "NOT_CONTAINS", "STARTS_WITH",
             "ENDS_WITH", "GT", "GTE", "LT", "LTE", "BETWEEN", "IS_SET", "IS_NOT_SET"]  # fmt: skip
FIELDS = ["jobTitle", "industry", "employeeCount", "country", "attributes.tier", "email", "nope",
          "attributes.", "attributes.a b", "", "\u0000", "attributes.\u00e9t\u00e9"]  # fmt: skip

# Numbers nobody should store: NaN, infinities, huge and tiny, huge integers, bools.
nasty_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 10**20, True]),
)
text = st.text(max_size=30) | st.sampled_from(["", " ", "x" * 2000, "\ud7ff\U0010ffff", "'; DROP"])
json_leaf = st.none() | st.booleans() | nasty_numbers | text
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def attribute() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "entity": st.sampled_from(["LEAD", "CONTACT", "ACCOUNT", "lead", ""]) | json_values,
            "field": st.sampled_from(FIELDS) | json_values,
            "operator": st.sampled_from(OPERATORS) | json_values,
        },
        optional={"value": json_values},
    )


def interaction() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["EMAIL_OPENED", "CUSTOM", "nope"]) | json_values},
        optional={
            "name": json_values,
            "withinDays": nasty_numbers | json_values,
            "minCount": nasty_numbers | json_values,
            "properties": st.lists(
                st.fixed_dictionaries(
                    {"key": text | json_values, "operator": st.sampled_from(OPERATORS)},
                    optional={"value": json_values},
                ),
                max_size=3,
            )
            | json_values,
        },
    )


conditions = st.recursive(
    st.one_of(
        attribute().map(lambda a: {"attribute": a}),
        interaction().map(lambda i: {"interaction": i}),
        json_values,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: {"all": xs}),
        st.lists(inner, max_size=4).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
        st.dictionaries(
            st.sampled_from(["all", "any", "not", "attribute", "x"]), inner, max_size=3
        ),
    ),
    max_leaves=30,
)


def assert_clear(error: DomainError) -> None:
    problems = error.errors if isinstance(error, ValidationErrors) else [error]
    assert problems
    for p in problems:
        assert p.code == "INVALID", p
        assert p.message and len(p.message) < 2000
        assert p.field is None or all(isinstance(f, str) for f in p.field)


def check(raw: Any) -> None:
    try:
        build_model(raw)
    except DomainError as e:
        assert_clear(e)


@FUZZ
@given(conditions)
def test_hostile_conditions_give_clear_errors(raw: Any) -> None:
    try:
        parse_condition(raw, ["condition"])
    except DomainError as e:
        assert_clear(e)


@FUZZ
@given(
    st.fixed_dictionaries(
        {
            "name": text | json_values,
            "rules": st.lists(
                st.fixed_dictionaries(
                    {
                        "name": text | json_values,
                        "points": nasty_numbers | json_values,
                        "condition": conditions,
                    },
                    optional={
                        "perOccurrence": json_values,
                        "maxPoints": nasty_numbers | json_values,
                    },
                )
                | json_values,
                max_size=3,
            )
            | json_values,
        },
        optional={
            "description": json_values,
            "salesReadyThreshold": nasty_numbers | json_values,
            "grades": st.lists(
                st.fixed_dictionaries({"name": text | json_values, "minScore": nasty_numbers})
                | json_values,
                max_size=3,
            )
            | json_values,
        },
    )
)
def test_hostile_models_give_clear_errors(raw: dict[str, Any]) -> None:
    check(raw)


def _deep(depth: int, leaf: Any) -> Any:
    node = leaf
    for _ in range(depth):
        node = {"not": node}
    return node


ATTR = {"attribute": {"entity": "LEAD", "field": "jobTitle", "operator": "IS_SET"}}


def test_deep_nesting_is_refused_without_recursing_through_it() -> None:
    for depth in (MAX_DEPTH, MAX_DEPTH + 1, 10_000, 200_000):
        try:
            parse_condition(_deep(depth, ATTR), ["c"])
            assert depth < MAX_DEPTH
        except DomainError as e:
            assert_clear(e)
            assert "deep" in e.message


def test_huge_trees_are_refused() -> None:
    for parts in (MAX_NODES, 1_000, 100_000):
        try:
            parse_condition({"any": [ATTR] * parts}, ["c"])
            raise AssertionError(f"a tree of {parts + 1} parts was accepted")
        except DomainError as e:
            assert_clear(e)
            assert "at most" in e.message
    rules = [{"name": f"r{i}", "points": 1, "condition": ATTR} for i in range(10_000)]
    try:
        build_model({"name": "m", "rules": rules})
        raise AssertionError("10,000 rules were accepted")
    except DomainError as e:
        assert_clear(e)


def test_junk_hidden_in_a_valid_condition_is_refused() -> None:
    # Nothing that is kept as the rule's raw condition may be bigger than the limits say.
    deep_value = _deep(5_000, 1)
    for raw in (
        {"attribute": {**ATTR["attribute"], "value": deep_value}},
        {"attribute": {**ATTR["attribute"], "junk": deep_value}},
        {"attribute": {**ATTR["attribute"], "value": ["x"] * 100_000}},
    ):
        try:
            build_model({"name": "m", "rules": [{"name": "r", "points": 1, "condition": raw}]})
            raise AssertionError(f"accepted {str(raw)[:80]}")
        except DomainError as e:
            assert_clear(e)


def test_nan_inf_and_huge_numbers_are_refused_everywhere() -> None:
    for bad in (math.nan, math.inf, -math.inf, 10**400, 1e300):
        for raw in (
            {"name": "m", "rules": [{"name": "r", "points": bad, "condition": ATTR}]},
            {"name": "m", "rules": [], "salesReadyThreshold": bad},
            {"name": "m", "rules": [], "grades": [{"name": "A", "minScore": bad}]},
            {"name": "m", "rules": [{"name": "r", "points": 1, "condition": {"attribute": {
                "entity": "ACCOUNT", "field": "employeeCount", "operator": "GT", "value": bad}}}]},
        ):  # fmt: skip
            try:
                build_model(raw)
                raise AssertionError(f"accepted {bad!r}")
            except DomainError as e:
                assert_clear(e)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"name": text | json_values},
        optional={
            "match": st.sampled_from(["ALL", "ANY", "all"]) | json_values,
            "criteria": st.lists(
                st.fixed_dictionaries(
                    {"scoringModelId": st.integers() | json_values, "minScore": nasty_numbers}
                )
                | json_values,
                max_size=3,
            )
            | json_values,
            "actions": st.fixed_dictionaries(
                {"markMarketingQualified": json_values, "markSalesReady": json_values}
            )
            | json_values,
        },
    )
)
def test_hostile_qualification_models_give_clear_errors(raw: dict[str, Any]) -> None:
    try:
        build_qualification_model(raw)
    except DomainError as e:
        assert_clear(e)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"name": text | json_values, "teamId": st.integers(1, 10)},
        optional={"condition": conditions, "strategy": json_values, "priority": nasty_numbers},
    )
)
def test_hostile_assignment_rule_conditions_give_clear_errors(raw: dict[str, Any]) -> None:
    try:
        build_assignment_rule(raw)
    except DomainError as e:
        assert_clear(e)

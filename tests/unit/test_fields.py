"""domain.fields: coercion of incoming values, custom attributes, filling and merging."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.fields import (
    ACCOUNT_FIELDS,
    CONTACT_FIELDS,
    LEAD_FIELDS,
    MAX_ATTRIBUTES_BYTES,
    MAX_JSON_DEPTH,
    MAX_TEXT,
    FieldSpec,
    check_attributes,
    coerce,
    fill_empty,
    merge_attributes,
    normalize_email,
)
from domain.model import Account, Contact, Lead

TEXT = FieldSpec("firstName", "first_name")
EMAIL = FieldSpec("email", "email", "email")
INT = ACCOUNT_FIELDS["employeeCount"]
FLOAT = ACCOUNT_FIELDS["annualRevenue"]
PATH = ["input", "fields", "x"]


def invalid(spec: FieldSpec, value: Any) -> Invalid:
    with pytest.raises(Invalid) as info:
        coerce(spec, value, PATH)
    assert info.value.field == PATH
    return info.value


# ---------------------------------------------------------------- field tables


def test_field_tables_use_the_kinds_the_api_promises() -> None:
    assert CONTACT_FIELDS["email"].kind == "email"
    assert LEAD_FIELDS["email"].kind == "email"
    assert ACCOUNT_FIELDS["employeeCount"] == FieldSpec("employeeCount", "employee_count", "int")
    assert ACCOUNT_FIELDS["annualRevenue"].kind == "float"
    assert LEAD_FIELDS["marketingContext"].attr == "marketing_context"
    # every attribute exists on the record it describes
    for specs, record in ((ACCOUNT_FIELDS, Account("x")), (CONTACT_FIELDS, Contact())):
        for spec in specs.values():
            assert hasattr(record, spec.attr), spec
    for spec in LEAD_FIELDS.values():
        assert hasattr(Lead("t"), spec.attr), spec


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Ada  ", "Ada"),
        ("Ada Lovelace", "Ada Lovelace"),
        ("\tAda\n", "Ada"),
        (42, "42"),
        (1.5, "1.5"),
        ("", None),
        ("   \t\n", None),
        (None, None),
    ],
)
def test_text_is_trimmed_and_blank_means_no_value(value: Any, expected: str | None) -> None:
    assert coerce(TEXT, value, PATH) == expected


@pytest.mark.parametrize("value", [True, False, [], ["Ada"], {"a": 1}, object()])
def test_text_rejects_booleans_and_structures(value: Any) -> None:
    assert "must be a string" in invalid(TEXT, value).message


def test_text_length_is_capped_after_trimming() -> None:
    exactly = "a" * MAX_TEXT
    assert coerce(TEXT, f"  {exactly}  ", PATH) == exactly
    error = invalid(TEXT, exactly + "a")
    assert str(MAX_TEXT) in error.message
    assert "firstName" in error.message


# ---------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Ada@Example.COM ", "ada@example.com"),
        ("ADA.LOVELACE+news@Sub.Example.org", "ada.lovelace+news@sub.example.org"),
        ("x@y.io", "x@y.io"),
        ("  ", None),
        (None, None),
    ],
)
def test_email_is_trimmed_and_lower_cased(value: Any, expected: str | None) -> None:
    assert coerce(EMAIL, value, PATH) == expected


@pytest.mark.parametrize(
    "value",
    ["ada", "ada@", "@example.com", "ada@example", "ada lovelace@example.com", "a@b@c.io", 12345],
)
def test_malformed_emails_are_rejected_naming_the_value(value: Any) -> None:
    error = invalid(EMAIL, value)
    assert "not a valid email" in error.message
    assert str(value).strip().lower() in error.message


def test_email_rejects_booleans() -> None:
    invalid(EMAIL, True)


def test_normalize_email() -> None:
    assert normalize_email("  MiXeD@Case.Io ") == "mixed@case.io"


_local = st.text(
    st.characters(blacklist_categories=("Z", "C"), blacklist_characters="@"), min_size=1
)
_email_like = st.builds(
    lambda ws1, local, host, tld, ws2: f"{ws1}{local}@{host}.{tld}{ws2}",
    st.sampled_from(["", " ", "\t", "  "]),
    _local,
    _local,
    _local,
    st.sampled_from(["", " ", "\n"]),
)


@settings(database=None)
@given(st.one_of(st.emails(), _email_like, st.text()))
def test_email_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = coerce(EMAIL, raw, PATH)
    except Invalid:
        return
    assert once is None or (once == once.strip() and len(once) <= MAX_TEXT)
    assert coerce(EMAIL, once, PATH) == once


@settings(database=None)
@given(st.emails(), st.sampled_from([str.upper, str.lower, str.title, str.swapcase]))
def test_emails_differing_in_case_and_spaces_normalise_alike(email: str, case: Any) -> None:
    assert coerce(EMAIL, f"  {case(email)} ", PATH) == coerce(EMAIL, email, PATH)


def test_normalised_email_never_exceeds_the_length_limit() -> None:
    # 'İ' (U+0130) lower-cases to two code points ('i' + combining dot), so this 612-character
    # address becomes 1212 characters after normalisation: longer than MAX_TEXT (and than the
    # VARCHAR(1000) email column). The limit must hold for the value that gets stored.
    raw = "İ" * 600 + "@example.io"
    assert len(raw) <= MAX_TEXT
    try:
        stored = coerce(EMAIL, raw, PATH)
    except Invalid:
        return
    assert stored is not None and len(stored) <= MAX_TEXT
    assert coerce(EMAIL, stored, PATH) == stored  # what was accepted once is accepted again


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [("42", 42), (" 42 ", 42), (42, 42), (42.0, 42), ("0", 0), (0, 0), ("", None), ("  ", None)],
)
def test_int_fields(value: Any, expected: int | None) -> None:
    result = coerce(INT, value, PATH)
    assert result == expected
    assert result is None or type(result) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.5", 1.5), (" 2.25 ", 2.25), (3, 3.0), ("3", 3.0), (0, 0.0), ("1e3", 1000.0), ("", None)],
)
def test_float_fields(value: Any, expected: float | None) -> None:
    result = coerce(FLOAT, value, PATH)
    assert result == expected
    assert result is None or type(result) is float


@pytest.mark.parametrize("value", ["abc", "4.5", 4.5, "1,000", "12 000", [1], {"n": 1}, object()])
def test_int_rejects_what_is_not_a_whole_number(value: Any) -> None:
    error = invalid(INT, value)
    assert "employeeCount must be a whole number" in error.message


@pytest.mark.parametrize("value", ["abc", "1,5", [1.5], {"n": 1}])
def test_float_rejects_what_is_not_a_number(value: Any) -> None:
    assert "annualRevenue must be a number" in invalid(FLOAT, value).message


@pytest.mark.parametrize("spec", [INT, FLOAT])
@pytest.mark.parametrize("value", [True, False])
def test_numbers_reject_booleans(spec: FieldSpec, value: bool) -> None:
    assert "must be a number" in invalid(spec, value).message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "NaN", "inf", "-inf"])
def test_float_rejects_nan_and_infinity(value: Any) -> None:
    error = invalid(FLOAT, value)
    assert "finite" in error.message or "negative" in error.message


def test_float_overflowing_to_infinity_is_rejected() -> None:
    assert "finite" in invalid(FLOAT, "1e400").message


def test_float_rejects_an_integer_too_large_for_a_float() -> None:
    # float(10**400) raises OverflowError, which coerce does not turn into Invalid.
    invalid(FLOAT, 10**400)


@pytest.mark.parametrize("value", [math.nan, "nan", "inf"])
def test_int_rejects_nan(value: Any) -> None:
    invalid(INT, value)


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_int_rejects_infinity(value: float) -> None:
    # int(float('inf')) raises OverflowError, which coerce does not turn into Invalid.
    invalid(INT, value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30, 1e30])
def test_int_rejects_values_out_of_64_bit_range(value: Any) -> None:
    invalid(INT, value)


def test_int_accepts_the_largest_64_bit_value() -> None:
    assert coerce(INT, 2**63 - 1, PATH) == 2**63 - 1
    assert coerce(INT, str(2**63 - 1), PATH) == 2**63 - 1


@pytest.mark.parametrize("spec", [INT, FLOAT])
@pytest.mark.parametrize("value", [-1, "-1", -0.5, "-0.5", " -3 "])
def test_numbers_reject_negatives(spec: FieldSpec, value: Any) -> None:
    if spec is INT and value in (-0.5, "-0.5"):
        invalid(spec, value)  # not whole: rejected either way
        return
    assert "must not be negative" in invalid(spec, value).message


@settings(database=None)
@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_int_round_trips_non_negative_values(n: int) -> None:
    assert coerce(INT, n, PATH) == n
    assert coerce(INT, f" {n} ", PATH) == n


@settings(database=None)
@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_float_round_trips_finite_non_negative_values(x: float) -> None:
    assert coerce(FLOAT, x, PATH) == x
    assert coerce(FLOAT, repr(x), PATH) == x


_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["inf", "-inf", "nan", "1e400", "-0", "0x10", "1_000", " 7 "]),
    st.lists(st.integers(), max_size=2),
)


@settings(database=None)
@given(st.sampled_from([TEXT, EMAIL, INT, FLOAT]), _anything)
@example(INT, math.inf)
@example(FLOAT, 10**400)
def test_coerce_fails_only_with_invalid(spec: FieldSpec, value: Any) -> None:
    try:
        result = coerce(spec, value, PATH)
    except Invalid as e:
        assert e.field == PATH
        return
    if result is None:
        return
    if spec.kind in ("str", "email"):
        assert isinstance(result, str) and result == result.strip() and result
    else:
        assert isinstance(result, int if spec.kind == "int" else float)
        assert not isinstance(result, bool)
        assert math.isfinite(result) and result >= 0


# ---------------------------------------------------------------- custom attributes


def test_attributes_default_to_an_empty_object() -> None:
    assert check_attributes(None, PATH) == {}


def test_attributes_are_copied() -> None:
    given_attrs = {"tier": "gold", "score": 3, "tags": ["a"], "nested": {"x": None}}
    checked = check_attributes(given_attrs, PATH)
    assert checked == given_attrs
    assert checked is not given_attrs


@pytest.mark.parametrize("value", [[1, 2], "tier=gold", 3, True])
def test_attributes_must_be_an_object(value: Any) -> None:
    with pytest.raises(Invalid, match="JSON object") as info:
        check_attributes(value, PATH)
    assert info.value.field == PATH


@pytest.mark.parametrize(
    "value",
    [{"x": math.nan}, {"x": [1, math.inf]}, {"x": {1, 2}}, {"x": object()}, {("a", "b"): 1}],
)
def test_attributes_hold_only_finite_json_values(value: Any) -> None:
    with pytest.raises(Invalid, match="finite JSON") as info:
        check_attributes(value, PATH)
    assert info.value.field == PATH


def test_attributes_size_is_capped() -> None:
    overhead = len('{"k": ""}')
    fits = {"k": "x" * (MAX_ATTRIBUTES_BYTES - overhead)}
    assert check_attributes(fits, PATH) == fits
    with pytest.raises(Invalid, match="larger than") as info:
        check_attributes({"k": "x" * (MAX_ATTRIBUTES_BYTES - overhead + 1)}, PATH)
    assert info.value.field == PATH


def test_attributes_nest_at_most_max_json_depth_levels() -> None:
    fits: dict[str, Any] = {"leaf": [1]}
    for _ in range(MAX_JSON_DEPTH - 2):
        fits = {"a": fits}
    assert check_attributes(fits, PATH) == fits
    # Deeper JSON could be stored but never sent back (and deep enough, not even checked).
    for levels in (MAX_JSON_DEPTH + 1, 5000):
        deep: dict[str, Any] = {"leaf": 1}
        for _ in range(levels):
            deep = {"a": deep}
        with pytest.raises(Invalid, match="levels deep") as info:
            check_attributes(deep, PATH)
        assert info.value.field == PATH


@pytest.mark.parametrize("name", ["", "   ", "k" * 101])
def test_attribute_names_are_1_to_100_characters(name: str) -> None:
    with pytest.raises(Invalid, match="attribute names") as info:
        check_attributes({name: 1}, PATH)
    assert info.value.field == PATH
    assert check_attributes({"k" * 100: 1}, PATH) == {"k" * 100: 1}


# ---------------------------------------------------------------- fill_empty


def test_fill_empty_fills_only_empty_fields() -> None:
    contact = Contact(first_name="Ada", last_name="", email="ada@x.io")
    changed = fill_empty(
        contact,
        CONTACT_FIELDS,
        {"firstName": "Adaline", "lastName": "Lovelace", "jobTitle": "CTO", "email": "b@x.io"},
    )
    assert changed is True
    assert (contact.first_name, contact.last_name, contact.job_title) == ("Ada", "Lovelace", "CTO")
    assert contact.email == "ada@x.io"


def test_fill_empty_reports_no_change_when_nothing_was_empty() -> None:
    contact = Contact(first_name="Ada", email="ada@x.io")
    assert fill_empty(contact, CONTACT_FIELDS, {"firstName": "Other", "email": "o@x.io"}) is False
    assert (contact.first_name, contact.email) == ("Ada", "ada@x.io")


def test_fill_empty_ignores_none_values_and_unknown_names() -> None:
    contact = Contact()
    assert (
        fill_empty(contact, CONTACT_FIELDS, {"firstName": None, "topic": "x", "bogus": 1}) is False
    )
    assert contact == Contact(created_at=contact.created_at, updated_at=contact.updated_at)


def test_fill_empty_treats_zero_as_a_value() -> None:
    account = Account("Northwind", employee_count=0, annual_revenue=0.0)
    changed = fill_empty(account, ACCOUNT_FIELDS, {"employeeCount": 10, "annualRevenue": 2.0})
    assert changed is False
    assert (account.employee_count, account.annual_revenue) == (0, 0.0)


# ---------------------------------------------------------------- merge_attributes


def test_merge_attributes_adds_missing_keys_and_keeps_existing_ones() -> None:
    original = {"tier": "gold", "note": "", "gone": None}
    contact = Contact(attributes=original)
    changed = merge_attributes(
        contact, {"tier": "silver", "note": "hi", "gone": "back", "new": 1, "flag": False}
    )
    assert changed is True
    assert contact.attributes == {
        "tier": "gold",
        "note": "hi",
        "gone": "back",
        "new": 1,
        "flag": False,
    }
    assert original == {"tier": "gold", "note": "", "gone": None}  # not mutated in place


def test_merge_attributes_reports_no_change_when_everything_is_there() -> None:
    contact = Contact(attributes={"tier": "gold", "n": 0, "flag": False})
    assert merge_attributes(contact, {"tier": "silver", "n": 5, "flag": True}) is False
    assert merge_attributes(contact, {}) is False
    assert contact.attributes == {"tier": "gold", "n": 0, "flag": False}


@pytest.mark.parametrize(
    ("stored", "incoming"),
    [({"note": ""}, {"note": ""}), ({"note": None}, {"note": None}), ({"a": 1}, {"a": 2, "b": ""})],
)
def test_merge_attributes_does_not_report_a_change_for_empty_values(
    stored: dict[str, Any], incoming: dict[str, Any]
) -> None:
    # "True when anything changed": merging an empty value over an empty one changes nothing,
    # yet merge_attributes says it did, so every resubmission of a form carrying an empty
    # custom field saves the contact and lead again and bumps their updated_at.
    contact = Contact(attributes=dict(stored))
    changed = merge_attributes(contact, incoming)
    assert changed is (contact.attributes != stored)

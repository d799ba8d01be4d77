"""domain.matching: strategy checks, which strategies apply, match values and lock keys."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import Invalid, ValidationErrors
from domain.fields import CONTACT_FIELDS, LEAD_FIELDS
from domain.matching import (
    DEFAULT_STRATEGIES,
    MATCH_FIELDS,
    check_strategy,
    lock_keys,
    match_key,
    match_values,
    strategies_for,
)
from domain.model import MatchEntity, MatchingStrategy

C, L = MatchEntity.CONTACT, MatchEntity.LEAD


def strategy(
    fields: list[str],
    entity: MatchEntity = C,
    form_ids: list[str] | None = None,
    default: bool = False,
    id_: int = 0,
    name: str = "s",
) -> MatchingStrategy:
    return MatchingStrategy(name, entity, fields, form_ids or [], default, id_)


# ---------------------------------------------------------------- defaults


def test_default_strategies() -> None:
    by_entity = {s.entity: s for s in DEFAULT_STRATEGIES}
    assert by_entity[C].fields == ["email"] and by_entity[C].is_default
    assert by_entity[L].fields == ["email", "marketingContext"] and by_entity[L].is_default
    for s in DEFAULT_STRATEGIES:
        check_strategy(strategy(list(s.fields), s.entity, default=True, name=s.name))


def test_match_fields_are_the_record_fields() -> None:
    assert MATCH_FIELDS[C] == CONTACT_FIELDS
    assert MATCH_FIELDS[L] == LEAD_FIELDS


# ---------------------------------------------------------------- check_strategy


def test_a_valid_strategy_passes_with_name_trimmed_and_form_ids_cleaned() -> None:
    s = strategy(["phone", "lastName"], form_ids=[" fair ", "fair", "b-form", "a-form "])
    s.name = "  Fair: phone + last name  "
    check_strategy(s)
    assert s.name == "Fair: phone + last name"
    assert s.form_ids == ["a-form", "b-form", "fair"]
    assert s.fields == ["phone", "lastName"]


def test_unknown_field_names_the_allowed_ones() -> None:
    with pytest.raises(Invalid) as info:
        check_strategy(strategy(["email", "shoeSize"]))
    error = info.value
    assert error.field == ["input", "fields", "1"]
    assert "'shoeSize' is not a CONTACT field" in error.message
    assert ", ".join(sorted(CONTACT_FIELDS)) in error.message


def test_lead_strategies_know_lead_fields_only() -> None:
    check_strategy(strategy(["email", "marketingContext", "companyName"], L))
    with pytest.raises(Invalid) as info:
        check_strategy(strategy(["country"], L))  # a contact field, not a lead field
    assert "is not a LEAD field" in info.value.message
    assert "marketingContext" in info.value.message
    with pytest.raises(Invalid):
        check_strategy(strategy(["marketingContext"], C))


def test_repeated_fields_are_rejected() -> None:
    with pytest.raises(Invalid, match="must not repeat") as info:
        check_strategy(strategy(["email", "email"]))
    assert info.value.field == ["input", "fields"]


def test_a_strategy_needs_a_field() -> None:
    with pytest.raises(Invalid, match="at least one field") as info:
        check_strategy(strategy([]))
    assert info.value.field == ["input", "fields"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_name_must_be_1_to_200_characters(name: str) -> None:
    with pytest.raises(Invalid) as info:
        check_strategy(strategy(["email"], name=name))
    assert info.value.field == ["input", "name"]


def test_name_of_200_characters_is_fine() -> None:
    check_strategy(strategy(["email"], name="x" * 200))


@pytest.mark.parametrize("form_ids", [[""], ["ok", "  "], ["x" * 201]])
def test_form_ids_must_be_1_to_200_characters(form_ids: list[str]) -> None:
    with pytest.raises(Invalid) as info:
        check_strategy(strategy(["email"], form_ids=form_ids))
    assert info.value.field == ["input", "formIds"]


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ValidationErrors) as info:
        check_strategy(strategy(["nope", "nope"], name=" ", form_ids=[""]))
    fields = [e.field for e in info.value.errors]
    assert ["input", "name"] in fields
    assert ["input", "fields"] in fields  # repeated
    assert ["input", "fields", "0"] in fields and ["input", "fields", "1"] in fields
    assert ["input", "formIds"] in fields
    assert all(isinstance(e, Invalid) for e in info.value.errors)
    assert info.value.message == "; ".join(e.message for e in info.value.errors)


# ---------------------------------------------------------------- strategies_for


DEF_C = strategy(["email"], C, default=True, id_=1)
DEF_L = strategy(["email", "marketingContext"], L, default=True, id_=2)
FAIR_C = strategy(["phone", "lastName"], C, ["fair"], id_=5)
FAIR_C_OLDER = strategy(["lastName", "firstName"], C, ["fair", "expo"], id_=3)
FAIR_L = strategy(["phone"], L, ["fair"], id_=4)
UNUSED = strategy(["phone"], C, id_=6)  # neither default nor tied to a form: never applies
DEF_C_2 = strategy(["phone"], C, default=True, id_=7)
ALL = [DEF_C_2, FAIR_C, UNUSED, DEF_L, FAIR_L, FAIR_C_OLDER, DEF_C]


def test_defaults_apply_without_a_form() -> None:
    assert strategies_for(ALL, C, None) == [DEF_C, DEF_C_2]
    assert strategies_for(ALL, L, None) == [DEF_L]


def test_defaults_apply_to_forms_without_strategies_of_their_own() -> None:
    assert strategies_for(ALL, C, "newsletter") == [DEF_C, DEF_C_2]
    assert strategies_for(ALL, L, "expo") == [DEF_L]  # expo has contact strategies only


def test_a_forms_own_strategies_replace_the_defaults_oldest_first() -> None:
    assert strategies_for(ALL, C, "fair") == [FAIR_C_OLDER, FAIR_C]
    assert strategies_for(ALL, C, "expo") == [FAIR_C_OLDER]
    assert strategies_for(ALL, L, "fair") == [FAIR_L]


def test_form_ids_are_matched_exactly() -> None:
    assert strategies_for(ALL, C, "Fair") == [DEF_C, DEF_C_2]


def test_no_strategies_means_no_matching() -> None:
    assert strategies_for([], C, "fair") == []
    assert strategies_for([UNUSED], C, None) == []


# ---------------------------------------------------------------- match_values / match_key


def test_match_values_picks_the_strategy_fields() -> None:
    s = strategy(["email", "marketingContext"], L)
    values = {"email": "a@x.io", "marketingContext": "fair", "firstName": "Ada"}
    assert match_values(s, values) == {"email": "a@x.io", "marketingContext": "fair"}


@pytest.mark.parametrize(
    "values",
    [{"email": "a@x.io"}, {"email": "a@x.io", "marketingContext": None}, {"marketingContext": ""}],
)
def test_match_values_is_none_when_a_field_has_no_value(values: dict[str, Any]) -> None:
    assert match_values(strategy(["email", "marketingContext"], L), values) is None


def test_match_values_keeps_falsy_non_empty_values() -> None:
    assert match_values(strategy(["phone"]), {"phone": 0}) == {"phone": 0}


def test_match_key_is_case_insensitive_and_order_independent() -> None:
    a = match_key({"lastName": "Rossi", "phone": "+1 555"})
    b = match_key({"phone": "+1 555", "lastName": "ROSSI"})
    assert a == b
    assert hash(a) == hash(b)
    assert match_key({"lastName": "Rossi"}) != match_key({"lastName": "Rossa"})
    assert match_key({"firstName": "x"}) != match_key({"lastName": "x"})


def test_match_key_leaves_non_text_alone() -> None:
    assert match_key({"n": 5, "s": "AbC"}) == (("n", 5), ("s", "abc"))


@settings(database=None)
@given(st.dictionaries(st.sampled_from(sorted(CONTACT_FIELDS)), st.text(max_size=8)))
def test_match_key_ignores_case(values: dict[str, str]) -> None:
    upper = {k: v.upper() for k, v in values.items()}
    lower = {k: v.lower() for k, v in values.items()}
    assert match_key(upper) == match_key({k: v.upper().lower() for k, v in values.items()})
    assert match_key(lower) == match_key(values)


# ---------------------------------------------------------------- lock_keys


def test_lock_keys_include_the_contact_email_and_are_sorted() -> None:
    strategies = [strategy(["phone", "lastName"], id_=2), strategy(["email"], id_=1)]
    values = {"email": "ada@x.io", "phone": "555", "lastName": "Rossi"}
    keys = lock_keys(C, strategies, values)
    assert keys == sorted(keys)
    assert "contact-email:ada@x.io" in keys
    assert f"CONTACT:{match_key({'email': 'ada@x.io'})!r}" in keys
    assert f"CONTACT:{match_key({'phone': '555', 'lastName': 'Rossi'})!r}" in keys
    assert len(keys) == 3


def test_contact_email_lock_is_taken_even_when_no_strategy_uses_the_email() -> None:
    keys = lock_keys(C, [strategy(["phone"])], {"email": "ada@x.io"})
    assert keys == ["contact-email:ada@x.io"]


def test_lead_lock_keys_have_no_contact_email_key() -> None:
    s = strategy(["email", "marketingContext"], L)
    keys = lock_keys(L, [s], {"email": "ada@x.io", "marketingContext": "fair"})
    assert keys == [f"LEAD:{match_key({'email': 'ada@x.io', 'marketingContext': 'fair'})!r}"]


def test_lock_keys_skip_strategies_without_values_and_deduplicate() -> None:
    same = [strategy(["email"], id_=1), strategy(["email"], id_=2), strategy(["phone"], id_=3)]
    assert lock_keys(L, same, {"email": "A@x.io"}) == [f"LEAD:{match_key({'email': 'a@x.io'})!r}"]
    assert lock_keys(C, same, {}) == []


def test_lock_keys_agree_for_values_differing_in_case() -> None:
    s = [strategy(["lastName"])]
    assert lock_keys(C, s, {"lastName": "Rossi"}) == lock_keys(C, s, {"lastName": "rOSSI"})


@settings(database=None)
@given(
    st.lists(
        st.lists(st.sampled_from(sorted(CONTACT_FIELDS)), min_size=1, max_size=3, unique=True),
        max_size=4,
    ),
    st.dictionaries(st.sampled_from(sorted(CONTACT_FIELDS)), st.text(max_size=5)),
)
def test_lock_keys_are_sorted_and_unique(
    field_lists: list[list[str]], values: dict[str, str]
) -> None:
    strategies = [strategy(fields, id_=i) for i, fields in enumerate(field_lists)]
    keys = lock_keys(C, strategies, values)
    assert keys == sorted(set(keys))
    assert ("contact-email:" + values.get("email", "") in keys) == bool(values.get("email"))

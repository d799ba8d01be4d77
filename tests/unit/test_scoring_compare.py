"""Comparison.passes (specialised once per test) agrees with the reference `compare`."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.scoring import LIST_OPS, NUMBER_OPS, TEXT_OPS, Comparison, Operator, compare

words = st.sampled_from(["", "a", "A", "cto", "CTO", "Cto ", "ÄB", "äb", "x-y", "marketing"])
numbers = st.one_of(
    st.integers(-5, 5), st.floats(-5, 5, allow_nan=False), st.sampled_from([0.0, 1.0, 2.5])
)
values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    words,
    words,
    numbers,
    st.booleans(),
    st.lists(words, max_size=2),
    st.dictionaries(words, numbers, max_size=1),
)


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    op = draw(st.sampled_from(list(Operator)))
    if op in (Operator.IS_SET, Operator.IS_NOT_SET):
        return Comparison(op, None)
    if op in TEXT_OPS:
        return Comparison(op, draw(words.filter(bool)))
    if op is Operator.BETWEEN:
        low, high = sorted(draw(st.lists(numbers, min_size=2, max_size=2)))
        return Comparison(op, (float(low), float(high)))
    if op in NUMBER_OPS:
        return Comparison(op, float(draw(numbers)))
    scalars = words if draw(st.booleans()) else numbers.map(float)
    if op in LIST_OPS:
        return Comparison(op, tuple(draw(st.lists(scalars, min_size=1, max_size=4))))
    return Comparison(op, draw(scalars))


@settings(max_examples=2000)  # a pure function: thousands of cases take a second
@given(comparisons(), values)
def test_passes_is_compare(test: Comparison, value: Any) -> None:
    assert test.passes(value) == compare(test, value, "any")


def test_a_comparison_equals_its_copy_and_keeps_its_hash() -> None:
    a, b = Comparison(Operator.IN, ("x", "y")), Comparison(Operator.IN, ("x", "y"))
    assert a == b and hash(a) == hash(b) and a.passes("X") and not a.passes("z")

"""The standard fields of each record type, and how incoming values are normalised."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from domain.errors import Invalid

Kind = Literal["str", "email", "int", "float"]

MAX_TEXT = 1000
MAX_ATTRIBUTES_BYTES = 64 * 1024
MAX_ATTRIBUTE_NAME = 100
MAX_JSON_DEPTH = 20
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # the API's camelCase name
    attr: str  # the record's attribute
    kind: Kind = "str"


def _specs(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {s.name: s for s in specs}


ACCOUNT_FIELDS = _specs(
    FieldSpec("name", "name"),
    FieldSpec("industry", "industry"),
    FieldSpec("employeeCount", "employee_count", "int"),
    FieldSpec("annualRevenue", "annual_revenue", "float"),
    FieldSpec("country", "country"),
    FieldSpec("website", "website"),
)

CONTACT_FIELDS = _specs(
    FieldSpec("firstName", "first_name"),
    FieldSpec("lastName", "last_name"),
    FieldSpec("email", "email", "email"),
    FieldSpec("phone", "phone"),
    FieldSpec("jobTitle", "job_title"),
    FieldSpec("country", "country"),
)

LEAD_FIELDS = _specs(
    FieldSpec("topic", "topic"),
    FieldSpec("firstName", "first_name"),
    FieldSpec("lastName", "last_name"),
    FieldSpec("email", "email", "email"),
    FieldSpec("companyName", "company_name"),
    FieldSpec("jobTitle", "job_title"),
    FieldSpec("phone", "phone"),
    FieldSpec("marketingContext", "marketing_context"),
)


def check_search(term: str | None, path: list[str]) -> str | None:
    """A search term: no longer than the longest text it could be found in (MAX_TEXT)."""
    if term is not None and len(term) > MAX_TEXT:
        raise Invalid(f"a search is at most {MAX_TEXT} characters, got {len(term)}", path)
    return term


def normalize_email(value: str) -> str:
    """Trim and lower-case an email address."""
    return value.strip().lower()


def coerce(spec: FieldSpec, value: Any, path: list[str]) -> Any:
    """Turn an incoming value into the field's type; None or blank means 'no value'."""
    if value is None:
        return None
    if spec.kind in ("str", "email"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Invalid(f"{spec.name} must be a string", path)
        text = str(value).strip()
        if spec.kind == "email":
            # Lower-casing can lengthen text ("İ" → "i̇"), so normalise before the length check.
            text = normalize_email(text)
        if not text:
            return None
        if len(text) > MAX_TEXT:
            raise Invalid(f"{spec.name} is longer than {MAX_TEXT} characters", path)
        if spec.kind == "email" and not _EMAIL.match(text):
            raise Invalid(f"'{text}' is not a valid email address", path)
        return text
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    if isinstance(value, bool):
        raise Invalid(f"{spec.name} must be a number", path)
    try:
        number = int(value) if spec.kind == "int" else float(value)
    except (TypeError, ValueError, OverflowError):
        kind = "a whole number" if spec.kind == "int" else "a number"
        raise Invalid(f"{spec.name} must be {kind}, got {value!r}", path) from None
    if spec.kind == "int" and isinstance(value, float) and not value.is_integer():
        raise Invalid(f"{spec.name} must be a whole number, got {value!r}", path)
    if isinstance(number, float) and not math.isfinite(number):
        raise Invalid(f"{spec.name} must be a finite number", path)
    if spec.kind == "int" and not (-(2**63) <= number < 2**63):
        raise Invalid(f"{spec.name} is out of range", path)
    if number < 0:
        raise Invalid(f"{spec.name} must not be negative", path)
    return number


def check_json_object(value: Any, path: list[str], what: str, max_bytes: int) -> dict[str, Any]:
    """A client's JSON object (attributes, interaction properties): an object of finite values,
    nested at most MAX_JSON_DEPTH deep (deeper JSON could be stored but not sent back) and at
    most `max_bytes` long as JSON. `what` names it in the messages (plural)."""
    if not isinstance(value, Mapping):
        raise Invalid(f"{what} must be a JSON object", path)
    stack: list[tuple[Any, int]] = [(value, 1)]  # objects and arrays, with their depth
    while stack:  # no recursion: the depth is the client's
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise Invalid(f"{what} nest at most {MAX_JSON_DEPTH} levels deep", path)
        children = node.values() if isinstance(node, Mapping) else node
        stack.extend((v, depth + 1) for v in children if isinstance(v, Mapping | list | tuple))
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise Invalid(f"{what} must hold only finite JSON values", path) from None
    if len(encoded) > max_bytes:
        raise Invalid(f"{what} are larger than {max_bytes} bytes", path)
    return dict(value)


def check_attributes(value: Any, path: list[str]) -> dict[str, Any]:
    """Custom attributes: a JSON object of bounded depth and size, named 1 to
    MAX_ATTRIBUTE_NAME characters each."""
    if value is None:
        return {}
    attributes = check_json_object(value, path, "attributes", MAX_ATTRIBUTES_BYTES)
    for key in attributes:
        if not key.strip() or len(key) > MAX_ATTRIBUTE_NAME:
            raise Invalid(
                f"attribute names are 1 to {MAX_ATTRIBUTE_NAME} characters, got {key[:40]!r}",
                path,
            )
    return attributes


def fill_empty(record: Any, specs: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> bool:
    """Copy values into the record's empty fields only; True when anything changed."""
    changed = False
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None or value is None:
            continue
        if getattr(record, spec.attr) in (None, ""):
            setattr(record, spec.attr, value)
            changed = True
    return changed


def merge_attributes(record: Any, extra: Mapping[str, Any]) -> bool:
    """Add custom attributes the record does not have yet; True when anything changed.
    Invalid, changing nothing, when the record's attributes would grow past their limit."""
    attrs: dict[str, Any] = record.attributes
    missing = {k: v for k, v in extra.items() if v not in (None, "") and attrs.get(k) in (None, "")}
    if missing:
        record.attributes = check_attributes({**attrs, **missing}, ["attributes"])
    return bool(missing)

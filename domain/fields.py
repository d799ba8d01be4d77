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


def check_attributes(value: Any, path: list[str]) -> dict[str, Any]:
    """Custom attributes are a JSON object of bounded size."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid("attributes must be a JSON object", path)
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise Invalid("attributes must hold only finite JSON values", path) from None
    if len(encoded) > MAX_ATTRIBUTES_BYTES:
        raise Invalid(f"attributes are larger than {MAX_ATTRIBUTES_BYTES} bytes", path)
    return dict(value)


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
    """Add custom attributes the record does not have yet; True when anything changed."""
    attrs: dict[str, Any] = record.attributes
    missing = {k: v for k, v in extra.items() if v not in (None, "") and attrs.get(k) in (None, "")}
    if missing:
        record.attributes = {**attrs, **missing}
    return bool(missing)

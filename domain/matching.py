"""Matching strategies: which incoming values identify an existing contact or lead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from domain.errors import DomainError, Invalid, ValidationErrors
from domain.fields import CONTACT_FIELDS, LEAD_FIELDS, FieldSpec
from domain.model import MatchEntity, MatchingStrategy

MATCH_FIELDS: dict[MatchEntity, dict[str, FieldSpec]] = {
    MatchEntity.CONTACT: dict(CONTACT_FIELDS),
    MatchEntity.LEAD: dict(LEAD_FIELDS),
}

DEFAULT_STRATEGIES = (
    MatchingStrategy("Contacts by email", MatchEntity.CONTACT, ["email"], [], True),
    MatchingStrategy(
        "Leads by email and marketing context",
        MatchEntity.LEAD,
        ["email", "marketingContext"],
        [],
        True,
    ),
)


def check_strategy(strategy: MatchingStrategy) -> None:
    """Raise Invalid unless the strategy names known fields of its entity, once each."""
    errors: list[DomainError] = []
    strategy.name = strategy.name.strip()
    if not strategy.name or len(strategy.name) > 200:
        errors.append(Invalid("name must be 1 to 200 characters", ["input", "name"]))
    known = MATCH_FIELDS[strategy.entity]
    if not strategy.fields:
        errors.append(Invalid("a strategy needs at least one field", ["input", "fields"]))
    if len(set(strategy.fields)) != len(strategy.fields):
        errors.append(Invalid("fields must not repeat", ["input", "fields"]))
    for i, name in enumerate(strategy.fields):
        if name not in known:
            allowed = ", ".join(sorted(known))
            errors.append(
                Invalid(
                    f"'{name}' is not a {strategy.entity.value} field; use one of {allowed}",
                    ["input", "fields", str(i)],
                )
            )
    form_ids = [f.strip() for f in strategy.form_ids]
    if any(not f or len(f) > 200 for f in form_ids):
        errors.append(Invalid("formIds must be 1 to 200 characters each", ["input", "formIds"]))
    strategy.form_ids = sorted(set(form_ids))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ValidationErrors(errors)


def strategies_for(
    strategies: Sequence[MatchingStrategy], entity: MatchEntity, form_id: str | None
) -> list[MatchingStrategy]:
    """A form's own strategies for the entity, else the entity's defaults (oldest first)."""
    of_entity = sorted((s for s in strategies if s.entity is entity), key=lambda s: s.id)
    if form_id is not None:
        own = [s for s in of_entity if form_id in s.form_ids]
        if own:
            return own
    return [s for s in of_entity if s.is_default]


def match_values(strategy: MatchingStrategy, values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The values the strategy compares, or None when one of its fields has no value."""
    wanted = {name: values.get(name) for name in strategy.fields}
    if any(v is None or v == "" for v in wanted.values()):
        return None
    return wanted


def match_key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """A hashable, case-insensitive key for strategy values (for in-memory matching)."""
    return tuple(
        (name, v.lower() if isinstance(v, str) else v) for name, v in sorted(values.items())
    )


def lock_keys(
    entity: MatchEntity, strategies: Sequence[MatchingStrategy], values: Mapping[str, Any]
) -> list[str]:
    """Lock names that serialise concurrent captures of the same record (sorted: no deadlock)."""
    keys = set()
    for strategy in strategies:
        wanted = match_values(strategy, values)
        if wanted is not None:
            keys.add(f"{entity.value}:{match_key(wanted)!r}")
    if entity is MatchEntity.CONTACT and values.get("email"):
        keys.add(f"contact-email:{values['email']}")
    return sorted(keys)

"""Relay global IDs: base64 of "Type:pk"."""

from __future__ import annotations

import base64
import binascii

from api.errors import bad_input
from domain.errors import Invalid

NODE_TYPES = frozenset(
    {
        "Account",
        "Contact",
        "Lead",
        "MatchingStrategy",
        "ScoringModel",
        "Interaction",
        "QualificationModel",
        "Webhook",
        "Opportunity",
        "User",
        "Team",
        "AssignmentRule",
        "Competitor",
        "LeadEvent",
        "Activity",
        "Sequence",
        "SequenceRun",
        "Process",
    }
)


def to_global_id(type_name: str, pk: int) -> str:
    # base64.b64encode without its wrapper call: a page of 50 items makes 100 of these.
    return binascii.b2a_base64(f"{type_name}:{pk}".encode(), newline=False).decode()


def from_global_id(gid: str) -> tuple[str, int]:
    """The type name and primary key of a global ID; Invalid when it is not one of ours."""
    try:
        type_name, _, raw = base64.b64decode(gid.encode(), validate=True).decode().partition(":")
        pk = int(raw)
        # Exactly what to_global_id writes (ASCII digits; no sign, spaces, leading zeros or
        # extra padding), so one record has one ID: int() alone takes " 1", "+1" and "1_0".
        if to_global_id(type_name, pk) != gid:
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid(f"'{gid[:64]}' is not a valid ID") from None
    if type_name not in NODE_TYPES or pk <= 0 or pk >= 2**63:
        raise Invalid(f"'{gid[:64]}' is not a valid ID")
    return type_name, pk


def decode_id(gid: str, expected: str, field: list[str] | None = None) -> int:
    """The primary key of a global ID that must name an `expected` record."""
    try:
        type_name, pk = from_global_id(gid)
    except Invalid as e:
        raise Invalid(e.message, field) from None
    if type_name != expected:
        raise Invalid(f"expected an ID of a {expected}, got one of a {type_name}", field)
    return pk


def decode_arg(gid: object, expected: str, field: list[str] | None = None) -> int:
    """decode_id for a query argument: a bad ID is a BAD_USER_INPUT GraphQL error."""
    try:
        return decode_id(str(gid), expected, field)
    except Invalid as e:
        raise bad_input(e.message) from None

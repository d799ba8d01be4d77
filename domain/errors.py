"""Expected failures of use cases; the API turns each into a userError with a code."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """An expected failure: bad input, missing record, wrong state."""

    code = "INVALID"

    def __init__(self, message: str, field: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = list(field) if field is not None else None


class Invalid(DomainError):
    code = "INVALID"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class Duplicate(DomainError):
    code = "DUPLICATE"


class FeatureDisabled(DomainError):
    code = "FEATURE_DISABLED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class ValidationErrors(DomainError):
    """Several input problems found at once; nothing was changed."""

    def __init__(self, errors: Sequence[DomainError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = list(errors)


class ServiceUnavailable(Exception):
    """A service the operation needs (the database) cannot be reached; retry later.

    Not a DomainError: nothing about the request was wrong, so it is not a userError but a
    top-level error with the code SERVICE_UNAVAILABLE. Nothing was changed, except that a commit
    cut off mid-way may or may not have happened: retries must be idempotent.
    """

    code = "SERVICE_UNAVAILABLE"

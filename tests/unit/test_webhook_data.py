"""A webhook's event data: the same values the GraphQL API shows (flags, Relay IDs)."""

from __future__ import annotations

from api.ids import to_global_id
from api.webhooks import _plain


def test_flags_are_booleans_and_record_ids_are_global_ids() -> None:
    # Set-based writers store flags as 0/1 on SQLite.
    assert _plain("salesReady", 1) is True
    assert _plain("previousSalesReady", 0) is False
    assert _plain("scoringModelId", 3) == to_global_id("ScoringModel", 3)
    assert _plain("qualificationModelId", 4) == to_global_id("QualificationModel", 4)
    assert _plain("ownerId", 5) == to_global_id("User", 5)
    assert _plain("previousOwnerId", None) is None
    assert _plain("score", 12.5) == 12.5
    assert _plain("stage", "INQUIRY") == "INQUIRY"

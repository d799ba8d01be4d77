"""lead_events: drop ix_lead_events_lead (lead_id, id)

ix_lead_events_lead_time (lead_id, occurred_at, id) starts with lead_id too, so it serves every
lookup of a lead's events (its timeline, `leadEvents(leadId:)`, the ON DELETE CASCADE from
leads) as well; the second index only cost one more B-tree entry per event written — a publish
writes one event per lead whose score changed, so about a twentieth of a 100,000-lead publish.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25 03:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_lead_events_lead", table_name="lead_events")


def downgrade() -> None:
    op.create_index("ix_lead_events_lead", "lead_events", ["lead_id", "id"], unique=False)

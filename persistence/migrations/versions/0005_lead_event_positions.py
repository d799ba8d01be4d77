"""lead event positions: commit order for readers and subscriptions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 14:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lead_events") as batch:
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
    op.create_index("ux_lead_events_position", "lead_events", ["position"], unique=True)
    op.create_index(
        "ix_lead_events_unpositioned",
        "lead_events",
        ["id"],
        postgresql_where=sa.text("position IS NULL"),
        sqlite_where=sa.text("position IS NULL"),
    )
    # Events stored before this revision keep their id order as their commit order.
    op.execute("UPDATE lead_events SET position = id WHERE position IS NULL")


def downgrade() -> None:
    op.drop_index("ix_lead_events_unpositioned", table_name="lead_events")
    op.drop_index("ux_lead_events_position", table_name="lead_events")
    with op.batch_alter_table("lead_events") as batch:
        batch.drop_column("position")

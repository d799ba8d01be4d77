"""lead process checkboxes and opportunities

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.tables import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLAGS = ("teleprospecting_ready", "teleprospect_accepted", "sales_accepted")


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        for name in FLAGS:
            batch.add_column(
                sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())
            )
    op.create_table(
        "opportunities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("estimated_value", sa.Float(), nullable=True),
        sa.Column("close_date", sa.Date(), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_opportunities_created", "opportunities", ["created_at", "id"])
    op.create_index("ix_opportunities_lead", "opportunities", ["lead_id"])


def downgrade() -> None:
    op.drop_table("opportunities")
    with op.batch_alter_table("leads") as batch:
        for name in FLAGS:
            batch.drop_column(name)

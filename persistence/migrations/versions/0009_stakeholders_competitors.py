"""a lead's stakeholders and competitors

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 16:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.tables import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lead_stakeholders",
        sa.Column("id", ID, nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_lead_stakeholders", "lead_stakeholders", ["lead_id", "contact_id"], unique=True
    )
    op.create_table(
        "lead_competitors",
        sa.Column("id", ID, nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("notes", sa.String(length=5000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lead_competitors_lead", "lead_competitors", ["lead_id", "id"])


def downgrade() -> None:
    op.drop_table("lead_competitors")
    op.drop_table("lead_stakeholders")

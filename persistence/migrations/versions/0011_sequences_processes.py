"""sales sequences and their runs, custom processes, the lead's process, work-list and
timeline indexes

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from persistence.tables import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sequences",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sequences_created", "sequences", ["created_at", "id"])
    op.create_table(
        "sequence_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("sequence_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sequence_id"], ["sequences.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_sequence_runs_active",
        "sequence_runs",
        ["lead_id"],
        unique=True,
        postgresql_where=sa.text("status = 'ACTIVE'"),
        sqlite_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index("ix_sequence_runs_lead", "sequence_runs", ["lead_id", "id"])
    op.create_index("ix_sequence_runs_sequence", "sequence_runs", ["sequence_id"])
    op.create_table(
        "processes",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("stages", JSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_processes_created", "processes", ["created_at", "id"])
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("process_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("process_stage", sa.String(length=200), nullable=True))
        batch.create_foreign_key(
            "fk_leads_process_id_processes",
            "processes",
            ["process_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index("ix_lead_events_lead_time", "lead_events", ["lead_id", "occurred_at", "id"])
    op.create_index(
        "ix_activities_owner_open",
        "activities",
        ["owner_id", "kind", "completed", "occurred_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_activities_owner_open", table_name="activities")
    op.drop_index("ix_lead_events_lead_time", table_name="lead_events")
    with op.batch_alter_table("leads") as batch:
        batch.drop_constraint("fk_leads_process_id_processes", type_="foreignkey")
        batch.drop_column("process_stage")
        batch.drop_column("process_id")
    op.drop_table("processes")
    op.drop_table("sequence_runs")
    op.drop_table("sequences")

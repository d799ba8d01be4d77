"""interactions, scoring models, lead scores, lead events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:42:10.211581
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from persistence.tables import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scoring_models",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=5000), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "rules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "published_rules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "grades",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("sales_ready_threshold", sa.Float(), nullable=True),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_scoring_models_created", "scoring_models", ["created_at", "id"], unique=False
    )

    op.create_table(
        "interactions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("occurred_us", sa.BigInteger(), nullable=False),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_interactions_contact_type_time",
        "interactions",
        ["contact_id", "type", "occurred_us"],
        unique=False,
    )
    op.create_index("ix_interactions_created", "interactions", ["created_at", "id"], unique=False)
    op.create_index("ux_interactions_idempotency", "interactions", ["idempotency_key"], unique=True)

    op.create_table(
        "lead_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lead_events_lead", "lead_events", ["lead_id", "id"], unique=False)

    op.create_table(
        "lead_scores",
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("scoring_model_id", sa.BigInteger(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("sales_ready", sa.Boolean(), nullable=False),
        sa.Column(
            "breakdown",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("next_expiry_us", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["scoring_model_id"], ["scoring_models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("lead_id", "scoring_model_id"),
    )
    op.create_index("ix_lead_scores_expiry", "lead_scores", ["next_expiry_us"], unique=False)
    op.create_index(
        "ix_lead_scores_model_score",
        "lead_scores",
        ["scoring_model_id", "score", "lead_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_lead_scores_model_score", table_name="lead_scores")
    op.drop_index("ix_lead_scores_expiry", table_name="lead_scores")

    op.drop_table("lead_scores")
    op.drop_index("ix_lead_events_lead", table_name="lead_events")

    op.drop_table("lead_events")
    op.drop_index("ux_interactions_idempotency", table_name="interactions")
    op.drop_index("ix_interactions_created", table_name="interactions")
    op.drop_index("ix_interactions_contact_type_time", table_name="interactions")

    op.drop_table("interactions")
    op.drop_index("ix_scoring_models_created", table_name="scoring_models")

    op.drop_table("scoring_models")

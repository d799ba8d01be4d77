"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:18:56.835466
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from persistence.tables import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("name_key", sa.String(length=1000), nullable=False),
        sa.Column("industry", sa.String(length=1000), nullable=True),
        sa.Column("employee_count", sa.BigInteger(), nullable=True),
        sa.Column("annual_revenue", sa.Float(), nullable=True),
        sa.Column("country", sa.String(length=1000), nullable=True),
        sa.Column("website", sa.String(length=1000), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_accounts_created", "accounts", ["created_at", "id"], unique=False)
    op.create_index("ix_accounts_name_key", "accounts", ["name_key"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    strategies = op.create_table(
        "matching_strategies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column(
            "fields",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "form_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("first_name", sa.String(length=1000), nullable=True),
        sa.Column("last_name", sa.String(length=1000), nullable=True),
        sa.Column("email", sa.String(length=1000), nullable=True),
        sa.Column("phone", sa.String(length=1000), nullable=True),
        sa.Column("job_title", sa.String(length=1000), nullable=True),
        sa.Column("country", sa.String(length=1000), nullable=True),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contacts_account", "contacts", ["account_id"], unique=False)
    op.create_index("ix_contacts_created", "contacts", ["created_at", "id"], unique=False)
    op.create_index("ux_contacts_email", "contacts", ["email"], unique=True)

    op.create_table(
        "leads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic", sa.String(length=1000), nullable=False),
        sa.Column("first_name", sa.String(length=1000), nullable=True),
        sa.Column("last_name", sa.String(length=1000), nullable=True),
        sa.Column("email", sa.String(length=1000), nullable=True),
        sa.Column("company_name", sa.String(length=1000), nullable=True),
        sa.Column("job_title", sa.String(length=1000), nullable=True),
        sa.Column("phone", sa.String(length=1000), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("marketing_context", sa.String(length=1000), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.String(length=32), nullable=False),
        sa.Column("sales_ready", sa.Boolean(), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_leads_account", "leads", ["account_id"], unique=False)
    op.create_index("ix_leads_contact", "leads", ["contact_id"], unique=False)
    op.create_index("ix_leads_context", "leads", ["marketing_context"], unique=False)
    op.create_index("ix_leads_created", "leads", ["created_at", "id"], unique=False)
    op.create_index("ix_leads_email_context", "leads", ["email", "marketing_context"], unique=False)
    op.create_index("ix_leads_updated", "leads", ["updated_at", "id"], unique=False)

    # The defaults every install starts with: contacts by email, leads by email + form.
    op.bulk_insert(
        strategies,
        [
            {
                "name": "Contacts by email",
                "entity": "CONTACT",
                "fields": ["email"],
                "form_ids": [],
                "is_default": True,
            },
            {
                "name": "Leads by email and marketing context",
                "entity": "LEAD",
                "fields": ["email", "marketingContext"],
                "form_ids": [],
                "is_default": True,
            },
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_leads_updated", table_name="leads")
    op.drop_index("ix_leads_email_context", table_name="leads")
    op.drop_index("ix_leads_created", table_name="leads")
    op.drop_index("ix_leads_context", table_name="leads")
    op.drop_index("ix_leads_contact", table_name="leads")
    op.drop_index("ix_leads_account", table_name="leads")

    op.drop_table("leads")
    op.drop_index("ux_contacts_email", table_name="contacts")
    op.drop_index("ix_contacts_created", table_name="contacts")
    op.drop_index("ix_contacts_account", table_name="contacts")

    op.drop_table("contacts")
    op.drop_table("settings")
    op.drop_table("matching_strategies")
    op.drop_table("api_keys")
    op.drop_index("ix_accounts_name_key", table_name="accounts")
    op.drop_index("ix_accounts_created", table_name="accounts")

    op.drop_table("accounts")

"""API keys may belong to a user; the audit log names the actor's user

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 20:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("user_id", sa.BigInteger(), nullable=True))
        batch.create_foreign_key(
            "fk_api_keys_user_id_users", "users", ["user_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_api_keys_user", ["user_id"])
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("actor_user_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("actor_user_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_user")
        batch.drop_constraint("fk_api_keys_user_id_users", type_="foreignkey")
        batch.drop_column("user_id")

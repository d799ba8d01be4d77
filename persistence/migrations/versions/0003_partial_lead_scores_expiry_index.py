"""lead_scores: index next_expiry_us only where a score can expire

Most scores never expire (no rule with a window matched), and the expiry job only asks for
next_expiry_us <= now, which implies NOT NULL on both databases, so the index can leave the NULLs
out: every set-based re-scoring then maintains far fewer index entries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("next_expiry_us IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_lead_scores_expiry", table_name="lead_scores")
    op.create_index(
        "ix_lead_scores_expiry",
        "lead_scores",
        ["next_expiry_us"],
        unique=False,
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_lead_scores_expiry", table_name="lead_scores")
    op.create_index("ix_lead_scores_expiry", "lead_scores", ["next_expiry_us"], unique=False)
